//! Integration tests: one binary, every test against the real server over TLS.

mod access_requests;
mod audit;
mod bad_input;
mod decisions;
mod disclosures;
mod examples;
mod export;
mod flows;
mod helpers;
mod identity;
mod interop;
mod notifications;
mod operations;
mod records;
mod security;
mod standard_clients;
