//! Integration-test harness.
//!
//! Invariant: every test gets resources nobody else uses (its own OU on the shared lab DC, its own
//! PostgreSQL database) and a missing lab is a loud failure, never a skip.

mod lab;
mod pg;

pub use lab::{Lab, LabError, TestOu};
pub use pg::{PgError, TestDatabase};

/// A short random suffix for names that must not collide between parallel tests.
pub fn unique_suffix() -> String {
    uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .chars()
        .take(10)
        .collect()
}
