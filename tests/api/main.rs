//! Integration tests: one binary, every test against the real server over TLS.

mod access_requests;
mod audit;
mod bad_input;
mod browser;
mod decisions;
mod disclosures;
mod examples;
mod export;
mod faults;
mod flows;
mod helpers;
mod hostile;
mod hot_path;
mod identity;
mod interop;
mod multi_instance;
mod notifications;
mod operations;
mod records;
mod release;
mod security;
mod served;
mod spec_replay;
mod standard_clients;
mod web;
