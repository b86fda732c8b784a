//! Placeholder replaced by the audit benchmark.
fn main() {}
