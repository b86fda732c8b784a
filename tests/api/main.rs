//! Integration tests: one binary, every test against the real server over TLS.

mod audit;
mod bad_input;
mod decisions;
mod examples;
mod helpers;
mod identity;
mod interop;
mod notifications;
mod operations;
mod records;
