use sqlx::{Connection, Executor, PgConnection};

/// Where the machine's PostgreSQL listens (trust auth). Override with IDBRIDGE_TEST_PG.
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(
        "cannot reach PostgreSQL at {url}: {source}. Start it with \
         `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
    )]
    Unreachable { url: String, source: sqlx::Error },
    #[error("PostgreSQL refused `{statement}`: {source}")]
    Statement {
        statement: String,
        source: sqlx::Error,
    },
}

/// A database created for one test and dropped by [`TestDatabase::drop_database`] (or left behind,
/// with a unique name, if the test panics before that).
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    pub async fn create(label: &str) -> Result<Self, PgError> {
        let admin_url =
            std::env::var("IDBRIDGE_TEST_PG").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string());
        let label: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(30)
            .collect();
        let name = format!("idb_{label}_{}", crate::unique_suffix());
        execute(&admin_url, &format!("CREATE DATABASE {name}")).await?;
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&admin_url);
        let url = format!("{base}/{name}");
        Ok(Self {
            admin_url,
            name,
            url,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `test` with the URL of a database of its own, then drops the database.
    pub async fn run(label: &str, test: impl AsyncFnOnce(String)) -> Result<(), PgError> {
        let db = Self::create(label).await?;
        test(db.url.clone()).await;
        db.drop_database().await
    }

    pub async fn drop_database(self) -> Result<(), PgError> {
        execute(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await
    }
}

async fn execute(admin_url: &str, statement: &str) -> Result<(), PgError> {
    let mut conn =
        PgConnection::connect(admin_url)
            .await
            .map_err(|source| PgError::Unreachable {
                url: admin_url.to_string(),
                source,
            })?;
    conn.execute(statement)
        .await
        .map_err(|source| PgError::Statement {
            statement: statement.to_string(),
            source,
        })?;
    conn.close().await.ok();
    Ok(())
}
