//! SQLite (WAL, one file) or PostgreSQL through sqlx's `Any` driver, so one set of queries
//! serves both; only the migrations differ per backend.
//!
//! Invariant: SQLite allows one writer, so write transactions take a process-wide lock first,
//! then SQLite's write lock at `BEGIN`; no writer fails with "database is locked".

use std::sync::Arc;

use idbridge_core::Secret;
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyConnection, AnyPool, Executor, Row, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Not a `#[source]`: the text is already in the message, and logs show only messages.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("unsupported database URL (expected sqlite://... or postgres://...)")]
    UnsupportedUrl,
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}

impl DbError {
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Self::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// `sql` as this backend binds it cheapest. SQLite finds a numbered parameter (`$n`) by
    /// scanning the statement's parameter names, so binding the hundreds of a chunked statement
    /// took longer than running it; an anonymous `?` binds by position. On SQLite the numbered
    /// parameters become `?` when they appear in order, each once, outside quoted text (how the
    /// stores write them); any other statement is left as it is.
    pub fn positional(self, sql: String) -> String {
        if self != Self::Sqlite {
            return sql;
        }
        let mut out = String::with_capacity(sql.len());
        let mut next = 1usize;
        let mut quoted = false;
        let mut chars = sql.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\'' {
                quoted = !quoted;
            }
            if c != '$' || quoted {
                out.push(c);
                continue;
            }
            let mut number = String::new();
            while let Some(digit) = chars.next_if(char::is_ascii_digit) {
                number.push(digit);
            }
            if number.parse::<usize>().ok() != Some(next) {
                return sql;
            }
            next += 1;
            out.push('?');
        }
        out
    }

    fn of(url: &str) -> Result<Self, DbError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Self::Postgres)
        } else {
            Err(DbError::UnsupportedUrl)
        }
    }
}

/// A schema: its version table and numbered migration scripts per backend, applied in order.
pub struct Schema {
    pub version_table: &'static str,
    pub sqlite: &'static [(i64, &'static str)],
    pub postgres: &'static [(i64, &'static str)],
}

#[derive(Clone)]
pub struct Database {
    pool: AnyPool,
    /// SQLite with concurrent readers: the connection write transactions take, their own, so
    /// that a writer never waits for a reader's (the cloud's writer is what every write
    /// request queues for) and keeps its page cache (SQLite empties a connection's cache when
    /// another one has committed).
    writer: Option<AnyPool>,
    backend: Backend,
    write_lock: Option<Arc<Mutex<()>>>,
}

/// A write transaction (holding SQLite's writer lock for its lifetime). Dropped without
/// `commit`, it rolls back.
pub struct DbTx {
    tx: Transaction<'static, Any>,
    backend: Backend,
    _writer: Option<OwnedMutexGuard<()>>,
}

/// How a process uses its SQLite file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqliteUse {
    /// One sequence of steps that reads what it has just written (the agent's sync): one
    /// connection, since SQLite empties a connection's page cache whenever another one has
    /// committed, with a larger cache; statement journals (the pages a multi-row statement
    /// changes, kept to undo it alone) in memory, not written to a file page by page. Its
    /// statements must change bounded numbers of rows: a journal holds them all.
    Sequential,
    /// Concurrent requests (the cloud): several connections, so reads go on beside the writer,
    /// which has one of its own.
    Concurrent,
}

impl Database {
    /// Connects, and creates or upgrades `schema`.
    pub async fn open(url: &Secret, schema: &Schema, sqlite: SqliteUse) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let url = url.expose();
        let backend = Backend::of(url)?;
        let (connections, cache_kib, temp_store) = match sqlite {
            SqliteUse::Sequential => (1, 65536, "MEMORY"),
            SqliteUse::Concurrent => (4, 16384, "DEFAULT"),
        };
        let options = AnyPoolOptions::new().max_connections(match backend {
            Backend::Sqlite => connections,
            Backend::Postgres => 16,
        });
        let options = match backend {
            Backend::Sqlite => options.after_connect(move |conn, _| {
                Box::pin(async move {
                    // Page caches of 64 MiB for one connection or 16 MiB for each of several
                    // (the default is 2): a batch of hundreds of objects with random GUIDs
                    // dirties about as many pages of each index, which spilled from a smaller
                    // cache and were read back (a full sync at 100k: see BENCHMARKS.md). A WAL of
                    // 256 MiB before it is copied into the database: a page that many
                    // transactions write (an index's) is copied, and the file synced, once per
                    // checkpoint.
                    conn.execute(
                        format!(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 10000; PRAGMA cache_size = -{cache_kib}; \
                             PRAGMA wal_autocheckpoint = 65536; \
                             PRAGMA temp_store = {temp_store};"
                        )
                        .as_str(),
                    )
                    .await?;
                    Ok(())
                })
            }),
            Backend::Postgres => options,
        };
        let writer = match (backend, sqlite) {
            (Backend::Sqlite, SqliteUse::Concurrent) => {
                Some(options.clone().max_connections(1).connect(url).await?)
            }
            _ => None,
        };
        let pool = options.connect(url).await?;
        let db = Self {
            pool,
            writer,
            backend,
            write_lock: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))),
        };
        db.migrate(schema).await?;
        Ok(db)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for reads outside a transaction.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    async fn migrate(&self, schema: &Schema) -> Result<(), DbError> {
        let table = schema.version_table;
        let mut tx = self.begin().await?;
        tx.exec(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (version BIGINT NOT NULL)"
        ))
        .await?;
        let current: Option<i64> = sqlx::query(&format!("SELECT MAX(version) AS v FROM {table}"))
            .fetch_one(tx.conn())
            .await?
            .try_get("v")?;
        let migrations = match self.backend {
            Backend::Sqlite => schema.sqlite,
            Backend::Postgres => schema.postgres,
        };
        for (version, sql) in migrations {
            if current.is_some_and(|c| c >= *version) {
                continue;
            }
            sqlx::raw_sql(sql).execute(tx.conn()).await?;
            sqlx::query(&format!("INSERT INTO {table} (version) VALUES ($1)"))
                .bind(*version)
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await
    }

    pub async fn begin(&self) -> Result<DbTx, DbError> {
        let pool = self.writer.as_ref().unwrap_or(&self.pool);
        let Some(lock) = &self.write_lock else {
            return Ok(DbTx {
                tx: pool.begin().await?,
                backend: self.backend,
                _writer: None,
            });
        };
        let writer = lock.clone().lock_owned().await;
        // SQLite takes the write lock here, where it waits out `busy_timeout`: a transaction
        // dropped without commit releases the mutex before its connection has rolled back
        // (sqlx rolls back in the background), and a deferred transaction that has read fails
        // at once with "database is locked" when it meets that lock on its first write.
        Ok(DbTx {
            tx: pool.begin_with("BEGIN IMMEDIATE").await?,
            backend: self.backend,
            _writer: Some(writer),
        })
    }
}

impl DbTx {
    pub async fn commit(self) -> Result<(), DbError> {
        self.tx.commit().await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection to run queries on inside this transaction.
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Savepoints let one statement fail (a uniqueness violation, one Bulk operation) without
    /// losing the transaction: PostgreSQL aborts the whole transaction otherwise.
    pub async fn savepoint(&mut self, name: &str) -> Result<(), DbError> {
        self.exec(&format!("SAVEPOINT {name}")).await
    }

    pub async fn release(&mut self, name: &str) -> Result<(), DbError> {
        self.exec(&format!("RELEASE SAVEPOINT {name}")).await
    }

    pub async fn rollback_to(&mut self, name: &str) -> Result<(), DbError> {
        self.exec(&format!("ROLLBACK TO SAVEPOINT {name}")).await?;
        self.release(name).await
    }

    async fn exec(&mut self, sql: &str) -> Result<(), DbError> {
        sqlx::query(sql).execute(self.conn()).await?;
        Ok(())
    }
}

/// Bind parameters per statement for lists and multi-row `VALUES`: far below SQLite's and
/// PostgreSQL's limits. Not smaller: each statement is a round trip to the database (on SQLite
/// to its thread, whose reads outside a transaction may find their cache emptied by a commit),
/// and 100 made a full sync at 100k slower (binding is cheap once SQLite binds by position:
/// [`Backend::positional`]).
pub const PARAMS_MAX: usize = 500;

/// `$first, ... $(first + n - 1)`: a list of `n` parameters after `first - 1` others.
pub fn params(first: usize, n: usize) -> String {
    let mut list = String::with_capacity(n * 7);
    push_params(&mut list, first, n);
    list
}

/// `($1, .. $columns), ($columns+1, ..), ...`: `rows` rows of a multi-row `VALUES`.
pub fn value_rows(columns: usize, rows: usize) -> String {
    let mut list = String::with_capacity(rows * (columns * 7 + 4));
    for row in 0..rows {
        if row > 0 {
            list.push_str(", ");
        }
        list.push('(');
        push_params(&mut list, row * columns + 1, columns);
        list.push(')');
    }
    list
}

/// Appends [`params`]`(first, n)` to `list`: the chunked statements of the stores list
/// hundreds of parameters, each statement anew.
fn push_params(list: &mut String, first: usize, n: usize) {
    use std::fmt::Write as _;
    for i in first..first + n {
        if i > first {
            list.push_str(", ");
        }
        // Writing into a String does not fail.
        let _ = write!(list, "${i}");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sqlite_binds_parameters_in_order_by_position() {
        let sqlite = |sql: &str| Backend::Sqlite.positional(sql.to_owned());
        assert_eq!(
            sqlite("UPDATE t SET a = $1 WHERE k IN ($2, $3)"),
            "UPDATE t SET a = ? WHERE k IN (?, ?)"
        );
        assert_eq!(
            sqlite(&format!("VALUES {}", value_rows(2, 6)))
                .matches('?')
                .count(),
            12
        );
        assert_eq!(sqlite("SELECT '$1', $1"), "SELECT '$1', ?");
        for kept in ["SELECT $2, $1", "SELECT $1, $1", "SELECT $", "SELECT $x"] {
            assert_eq!(sqlite(kept), kept);
        }
        let postgres = "SELECT $1";
        assert_eq!(Backend::Postgres.positional(postgres.to_owned()), postgres);
    }

    #[test]
    fn placeholders_number_on_from_where_they_start() {
        assert_eq!(params(1, 3), "$1, $2, $3");
        assert_eq!(params(2, 2), "$2, $3");
        assert_eq!(value_rows(2, 2), "($1, $2), ($3, $4)");
    }

    const SCHEMA: Schema = Schema {
        version_table: "schema_version",
        sqlite: &[(1, "CREATE TABLE t (k BIGINT PRIMARY KEY)")],
        postgres: &[],
    };

    /// A transaction dropped without commit (on any error) releases the writer mutex at once,
    /// but its connection keeps SQLite's write lock until sqlx has rolled it back in the
    /// background. The next writer, which reads before it writes, must wait for that lock
    /// instead of failing with "database is locked".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_waits_out_a_write_lock_still_held_by_a_dropped_transaction() {
        let file = idbridge_testkit::TestSqlite::create("db").unwrap();
        let url = Secret::new(file.url());
        let db = Database::open(&url, &SCHEMA, SqliteUse::Concurrent)
            .await
            .unwrap();
        // The dropped transaction, slowed down: a connection holding the write lock a while.
        let mut lingering = db.pool().acquire().await.unwrap();
        lingering.execute("BEGIN IMMEDIATE").await.unwrap();
        lingering
            .execute("INSERT INTO t (k) VALUES (-1)")
            .await
            .unwrap();
        let rollback = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            lingering.execute("ROLLBACK").await.unwrap();
        });
        let mut next = db.begin().await.unwrap();
        sqlx::query("SELECT COUNT(*) FROM t")
            .fetch_one(next.conn())
            .await
            .unwrap();
        sqlx::query("INSERT INTO t (k) VALUES (1)")
            .execute(next.conn())
            .await
            .unwrap();
        next.commit().await.unwrap();
        rollback.await.unwrap();
        let rows: i64 = sqlx::query("SELECT COUNT(*) AS n FROM t")
            .fetch_one(db.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        assert_eq!(rows, 1, "the committed row, not the rolled back one");
    }

    /// With every reader's connection taken (long reads, say), a write still begins, commits,
    /// and is seen by the readers afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_does_not_wait_for_a_readers_connection() {
        let file = idbridge_testkit::TestSqlite::create("db").unwrap();
        let url = Secret::new(file.url());
        let db = Database::open(&url, &SCHEMA, SqliteUse::Concurrent)
            .await
            .unwrap();
        let mut readers = Vec::new();
        for _ in 0..4 {
            readers.push(db.pool().acquire().await.unwrap());
        }
        let write = async {
            let mut tx = db.begin().await.unwrap();
            sqlx::query("INSERT INTO t (k) VALUES (1)")
                .execute(tx.conn())
                .await
                .unwrap();
            tx.commit().await.unwrap();
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), write)
            .await
            .expect("the write waited for a reader's connection");
        let rows: i64 = sqlx::query("SELECT COUNT(*) AS n FROM t")
            .fetch_one(&mut *readers[0])
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        assert_eq!(rows, 1);
    }
}
