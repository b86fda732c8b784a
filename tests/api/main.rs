//! Integration tests: one binary, every test against the real server over TLS.

// The tests' own blocking work runs on their runtimes, whose threads are never pinned; the
// rule that blocking work goes through `consentgate::cpus::spawn_blocking` is the server's.
#![allow(clippy::disallowed_methods)]

mod access_requests;
mod advance_directives;
mod amendment_sources;
mod amendments;
mod audit;
mod bad_input;
mod browser;
mod decisions;
mod delegates;
mod demo_load;
mod disclosures;
mod examples;
mod export;
mod export_withheld;
mod faults;
mod flows;
mod helpers;
mod hostile;
mod hot_path;
mod identity;
mod interop;
mod multi_instance;
mod notifications;
mod openapi;
mod operations;
mod patient_export;
mod placement;
mod records;
mod release;
mod security;
mod served;
mod share_links;
mod share_links_page;
mod spec_replay;
mod standard_clients;
mod summary;
mod web;
mod web_records;
