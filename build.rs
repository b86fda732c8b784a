//! Rebuilds the crate when a migration is added or changed: `embed_migrations!` reads the
//! `migrations/` folders at compile time, and cargo does not track them otherwise.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
