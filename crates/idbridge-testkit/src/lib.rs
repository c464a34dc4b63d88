//! Integration-test harness.
//!
//! Invariant: every test gets resources nobody else uses (its own OU on the shared lab DC, its own
//! PostgreSQL database) and a missing lab is a loud failure, never a skip.

mod lab;
mod pg;

pub use lab::{Lab, LabError, TestOu};
pub use pg::{PgError, TestDatabase};

/// A SQLite database in a directory of its own under the system's temporary directory; the
/// directory goes when this is dropped.
pub struct TestSqlite {
    dir: std::path::PathBuf,
    url: String,
}

impl TestSqlite {
    pub fn create(label: &str) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("idbridge-{label}-{}", unique_suffix()));
        std::fs::create_dir_all(&dir)?;
        let url = format!("sqlite://{}?mode=rwc", dir.join("test.db").display());
        Ok(Self { dir, url })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestSqlite {
    fn drop(&mut self) {
        // A leftover temporary directory is harmless; a panic in a drop is not.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Two tests of one check, named `$sqlite` and `$postgres`: `$check` (an async closure taking a
/// database URL) runs on a SQLite database and on a PostgreSQL database of its own.
#[macro_export]
macro_rules! on_sqlite_and_postgres {
    ($sqlite:ident, $postgres:ident, $label:literal, $check:expr) => {
        #[tokio::test]
        async fn $sqlite() {
            let db = $crate::TestSqlite::create($label).unwrap();
            ($check)(db.url().to_owned()).await;
        }

        #[tokio::test]
        async fn $postgres() {
            $crate::TestDatabase::run($label, $check).await.unwrap();
        }
    };
}

/// A short random suffix for names that must not collide between parallel tests.
pub fn unique_suffix() -> String {
    uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .chars()
        .take(10)
        .collect()
}
