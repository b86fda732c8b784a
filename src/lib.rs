//! consentgate: a consent-managed health-data-sharing gateway.
//!
//! Start at `README.md`, then `docs/ARCHITECTURE.md`. In code, [`startup::Application`]
//! builds the server, [`api`] holds every HTTP handler, [`records`] turns FHIR bundles and
//! resources into stored, indexed rows, and [`store`] is the only module that knows SQL.

pub mod access_request;
pub mod accounting;
pub mod amendment;
pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod consent;
pub mod cpus;
#[cfg(test)]
mod date_proptests;
pub mod decision;
pub mod deid;
pub mod delegation;
pub mod demo;
pub mod disclosure;
pub mod error;
pub mod export;
pub mod fhir_time;
pub mod gateway;
pub mod ids;
pub mod import;
pub mod institution;
pub mod labels;
pub mod net;
pub mod notify;
pub mod policy;
pub mod ratelimit;
pub mod records;
pub mod release;
pub mod sharing;
pub mod shl;
pub mod sign_in;
pub mod startup;
pub mod store;
pub mod summary;
pub mod supply;
pub mod telemetry;
pub mod tls;
pub mod web;

/// mimalloc instead of glibc's allocator, for every binary built on this crate (the server,
/// the benches, the tests), so the benches measure what runs: the request and export paths
/// allocate a JSON tree per resource, and glibc's `malloc`/`free` were a fifth to a quarter
/// of their CPU (`docs/PERFORMANCE.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
