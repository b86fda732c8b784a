//! Integration tests: one binary, every test against the real server over TLS.

mod helpers;
mod records;
mod bad_input;
mod operations;
mod examples;
