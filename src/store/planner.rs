//! SQLite's query planner stability guarantee (`SQLITE_DBCONFIG_ENABLE_QPSG`) on every
//! SQLite connection this process opens, so that a statement diesel keeps prepared stays
//! prepared.
//!
//! Without it, the bundled SQLite (3.50) plans a statement with the values bound to it
//! wherever a value could change the plan: every `LIMIT ?` (diesel's `.first()`, every
//! page size) and, once STAT4 samples exist, every indexed comparison. Such a statement
//! is marked expired each time a parameter is bound and is parsed and planned again on its
//! next step (`sqlite3Reprepare`), so diesel's statement cache saved nothing for it: 11 %
//! of the server's CPU on the consent-checked read went to re-parsing the client
//! registration, resource and Patient lookups (`docs/PERFORMANCE.md`, "Third step"). With
//! the guarantee a statement's plan does not depend on its bindings. No plan here loses by
//! it: the gateway never runs `ANALYZE` (no STAT4 samples to consult), matches no bound
//! `LIKE`/`GLOB` pattern against an index, and its `LIMIT`s cap result sizes rather than
//! steer index choice.
//!
//! diesel does not hand out its raw connection handle, so the setting is applied by an
//! automatic extension (`sqlite3_auto_extension`), which SQLite runs on each connection it
//! opens, registered once before the first connection ([`install`]).

use std::os::raw::{c_char, c_int};
use std::sync::OnceLock;

use libsqlite3_sys as ffi;

/// Registers the automatic extension, once per process; SQLite's answer to the
/// registration, kept for every later caller. Call before opening a SQLite connection.
pub fn install() -> Result<(), String> {
    static INSTALLED: OnceLock<c_int> = OnceLock::new();
    // SAFETY: `stability_guarantee` has the entry point signature SQLite expects and stays
    // valid for the life of the process; registering it is thread-safe in SQLite.
    let rc = *INSTALLED
        .get_or_init(|| unsafe { ffi::sqlite3_auto_extension(Some(stability_guarantee)) });
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(format!(
            "SQLite refused the planner setting extension (code {rc})"
        ))
    }
}

/// The automatic extension: turns the guarantee on for the connection being opened. A
/// failure fails the open, rather than leaving a connection that re-parses its statements.
unsafe extern "C" fn stability_guarantee(
    db: *mut ffi::sqlite3,
    _error: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    // SAFETY: SQLite calls this with the connection it is opening, valid for the call;
    // `SQLITE_DBCONFIG_ENABLE_QPSG` takes an int and an optional int pointer for the result.
    unsafe {
        ffi::sqlite3_db_config(
            db,
            ffi::SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as c_int,
            std::ptr::null_mut::<c_int>(),
        )
    }
}

#[cfg(test)]
mod tests {
    //! Raw SQLite calls: diesel hides both the handle and the statement counters these
    //! tests read.

    use super::*;

    /// A raw in-memory connection opened after [`install`], closed on drop.
    struct Raw(*mut ffi::sqlite3);

    impl Raw {
        fn open() -> Raw {
            install().expect("installed");
            let mut db = std::ptr::null_mut();
            let name = c":memory:";
            // SAFETY: a valid C string and an out pointer.
            let rc = unsafe { ffi::sqlite3_open(name.as_ptr(), &mut db) };
            assert_eq!(rc, ffi::SQLITE_OK);
            Raw(db)
        }

        fn guarantee(&self) -> c_int {
            let mut on: c_int = -1;
            // SAFETY: an open connection; -1 only reads the setting into `on`.
            let rc = unsafe {
                ffi::sqlite3_db_config(self.0, ffi::SQLITE_DBCONFIG_ENABLE_QPSG, -1, &mut on)
            };
            assert_eq!(rc, ffi::SQLITE_OK);
            on
        }

        fn set_guarantee(&self, on: c_int) {
            // SAFETY: as above.
            let rc = unsafe {
                ffi::sqlite3_db_config(
                    self.0,
                    ffi::SQLITE_DBCONFIG_ENABLE_QPSG,
                    on,
                    std::ptr::null_mut::<c_int>(),
                )
            };
            assert_eq!(rc, ffi::SQLITE_OK);
        }

        /// Runs one prepared `LIMIT ?` statement three times with new bindings, as diesel
        /// runs a cached statement; returns how often SQLite re-prepared it.
        fn reprepares_of_a_rebound_limit(&self) -> c_int {
            let sql = c"SELECT v FROM (SELECT 1 AS v UNION ALL SELECT 2) ORDER BY v LIMIT ?1";
            let mut stmt = std::ptr::null_mut();
            // SAFETY: an open connection, a valid C string, out pointers; the statement is
            // stepped, reset and finalised on this thread before the connection closes.
            unsafe {
                let rc = ffi::sqlite3_prepare_v2(
                    self.0,
                    sql.as_ptr(),
                    -1,
                    &mut stmt,
                    std::ptr::null_mut(),
                );
                assert_eq!(rc, ffi::SQLITE_OK);
                for limit in [1, 2, 1] {
                    assert_eq!(ffi::sqlite3_bind_int(stmt, 1, limit), ffi::SQLITE_OK);
                    let mut rows = 0;
                    while ffi::sqlite3_step(stmt) == ffi::SQLITE_ROW {
                        rows += 1;
                    }
                    assert_eq!(rows, limit, "the bound limit is honoured");
                    ffi::sqlite3_reset(stmt);
                }
                let reprepared =
                    ffi::sqlite3_stmt_status(stmt, ffi::SQLITE_STMTSTATUS_REPREPARE, 0);
                ffi::sqlite3_finalize(stmt);
                reprepared
            }
        }
    }

    impl Drop for Raw {
        fn drop(&mut self) {
            // SAFETY: every statement on it was finalised.
            unsafe { ffi::sqlite3_close(self.0) };
        }
    }

    #[test]
    fn every_connection_opened_after_install_has_the_guarantee() {
        assert_eq!(Raw::open().guarantee(), 1);
    }

    #[test]
    fn a_rebound_statement_is_not_reprepared_with_the_guarantee() {
        let raw = Raw::open();
        assert_eq!(raw.reprepares_of_a_rebound_limit(), 0);
    }

    #[test]
    fn without_the_guarantee_every_rebinding_reprepares() {
        // The cost this module removes: the same statement, the guarantee turned off.
        let raw = Raw::open();
        raw.set_guarantee(0);
        assert!(raw.reprepares_of_a_rebound_limit() >= 3);
    }
}
