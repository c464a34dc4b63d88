//! Crash points for the crash-recovery tests: with `IDBRIDGE_CRASH_AT=<name>` the process aborts
//! at the named point, as a `kill -9` there would. Unset (always, outside those tests), a point
//! costs one comparison.

use std::sync::OnceLock;

/// The environment variable naming the point to crash at.
pub const ENV: &str = "IDBRIDGE_CRASH_AT";

/// Aborts the process when `IDBRIDGE_CRASH_AT` names this point.
pub fn crash_point(name: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    if AT.get_or_init(|| std::env::var(ENV).ok()).as_deref() == Some(name) {
        eprintln!("idbridge: crash point {name} reached ({ENV}); aborting");
        std::process::abort();
    }
}
