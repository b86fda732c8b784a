//! Integration tests: one binary, every test against the real server over TLS.

mod bad_input;
mod examples;
mod helpers;
mod identity;
mod interop;
mod operations;
mod records;
