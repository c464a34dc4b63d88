//! The cloud's tables and queries, on SQLite or PostgreSQL (see `idbridge-db`).

use std::collections::HashMap;

use idbridge_core::Secret;
pub use idbridge_db::Backend;
use idbridge_db::{Database, DbError, DbTx, Schema, SqliteUse};
use idbridge_scim::ResourceKind;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

mod agents;
pub use agents::{AgentRecord, WritebackRecord};

const SCHEMA: Schema = Schema {
    version_table: "idbridge_schema",
    sqlite: &[
        (1, include_str!("../migrations/sqlite/0001_init.sql")),
        (2, AGENTS_MIGRATION),
        (
            3,
            include_str!("../migrations/sqlite/0003_match_indexes.sql"),
        ),
    ],
    postgres: &[
        (1, include_str!("../migrations/postgres/0001_init.sql")),
        (2, AGENTS_MIGRATION),
        (
            3,
            include_str!("../migrations/postgres/0003_match_indexes.sql"),
        ),
    ],
};
/// Plain types only: the same text on both databases.
const AGENTS_MIGRATION: &str = include_str!("../migrations/common/0002_agents.sql");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the stored row {id} is corrupt: {reason}")]
    Corrupt { id: String, reason: String },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(DbError::Database(e))
    }
}

impl StoreError {
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Self::Db(e) if e.is_unique_violation())
    }
}

#[derive(Clone)]
pub struct Store {
    db: Database,
}

/// A write transaction (holding SQLite's writer lock for its lifetime).
pub struct Tx {
    tx: DbTx,
    /// Audit entries, written at commit in a few multi-row statements: each statement is a
    /// round trip to SQLite's thread or PostgreSQL's server, and a Bulk request of 100
    /// creates would otherwise make 100 of them for the audit alone.
    audit: Vec<OwnedAuditEntry>,
    /// The open savepoints and how many audit entries preceded each, so a rollback to one also
    /// drops the entries of the work it undid.
    savepoints: Vec<(String, usize)>,
}

/// A resource row: the canonical SCIM document (without `meta`) and its bookkeeping.
#[derive(Clone, Debug)]
pub struct StoredResource {
    pub id: String,
    pub kind: ResourceKind,
    pub source: String,
    pub doc: Value,
    pub version: i64,
    pub created_at: i64,
    pub modified_at: i64,
    pub deleted_at: Option<i64>,
}

impl StoredResource {
    /// Its entity tag, as `meta.version` and `ETag` carry it.
    pub fn etag(&self) -> String {
        idbridge_scim::etag(u64::try_from(self.version).unwrap_or(0))
    }
}

/// Where a new or changed resource's indexed columns come from.
pub struct ResourceWrite<'a> {
    pub id: &'a str,
    pub kind: ResourceKind,
    pub name_key: Option<String>,
    pub external_id: Option<&'a str>,
    pub anchor: Option<&'a str>,
    pub email_key: Option<String>,
    pub source: &'a str,
    pub doc: &'a Value,
}

#[derive(Clone, Debug)]
pub struct Credential {
    pub kind: String,
    pub verifier: Secret,
    pub must_change: bool,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct SigninState {
    pub failures: i64,
    pub window_start: i64,
    pub locked_until: i64,
}

/// A user's password, lockout and licenses, as listings show them.
#[derive(Default)]
pub struct AccountSummary {
    pub has_password: bool,
    pub must_change_password: bool,
    /// Epoch milliseconds; 0 when never locked.
    pub locked_until: i64,
    pub licenses: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub scope: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct AuditEvent {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub detail: String,
}

/// The indexed columns a lookup may use instead of scanning every resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Id,
    NameKey,
    ExternalId,
    /// The sync extension's `immutableId`.
    Anchor,
    /// A user's work e-mail, lower-cased.
    EmailKey,
}

impl Column {
    fn name(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::NameKey => "name_key",
            Self::ExternalId => "external_id",
            Self::Anchor => "anchor",
            Self::EmailKey => "email_key",
        }
    }
}

/// A lookup through an index: the resources whose `column` holds one of `values` (several for
/// an `or` of equalities, such as the sync agent's batched matches).
#[derive(Clone, Debug)]
pub struct Index {
    pub column: Column,
    pub values: Vec<String>,
}

impl Index {
    pub fn one(column: Column, value: impl Into<String>) -> Self {
        Self {
            column,
            values: vec![value.into()],
        }
    }
}

const RESOURCE_COLUMNS: &str =
    "id, kind, source, doc, version, created_at, modified_at, deleted_at";

fn kind_str(kind: ResourceKind) -> &'static str {
    kind.name()
}

fn parse_resource(row: &AnyRow) -> Result<StoredResource, StoreError> {
    let id: String = row.try_get("id")?;
    let corrupt = |reason: String| StoreError::Corrupt {
        id: id.clone(),
        reason,
    };
    let kind: String = row.try_get("kind")?;
    let kind = ResourceKind::ALL
        .iter()
        .copied()
        .find(|k| k.name() == kind)
        .ok_or_else(|| corrupt(format!("unknown kind {kind:?}")))?;
    let doc: String = row.try_get("doc")?;
    let doc = serde_json::from_str(&doc).map_err(|e| corrupt(e.to_string()))?;
    Ok(StoredResource {
        id: id.clone(),
        kind,
        source: row.try_get("source")?,
        doc,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        modified_at: row.try_get("modified_at")?,
        deleted_at: row.try_get("deleted_at")?,
    })
}

/// The query of [`Store::live_resources`]: `kind` is `$1`, the index's values `$2`, `$3`, ...
/// (`column IN (...)`, which both databases answer from the `(kind, column)` index; a filter's
/// length bounds the number of values far below either's limit on parameters).
fn live_resources_sql(index: Option<&Index>) -> String {
    let clause = index
        .map(|i| {
            format!(
                " AND {} IN ({})",
                i.column.name(),
                idbridge_db::params(2, i.values.len())
            )
        })
        .unwrap_or_default();
    format!(
        "SELECT {RESOURCE_COLUMNS} FROM resources \
         WHERE kind = $1 AND deleted_at IS NULL{clause} ORDER BY created_at, id"
    )
}

async fn fetch_resource<'e, E: Executor<'e, Database = Any>>(
    e: E,
    id: &str,
) -> Result<Option<StoredResource>, StoreError> {
    let sql = format!("SELECT {RESOURCE_COLUMNS} FROM resources WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(e).await?;
    row.as_ref().map(parse_resource).transpose()
}

impl Store {
    /// Connects, and creates or upgrades the schema.
    pub async fn open(url: &Secret) -> Result<Self, StoreError> {
        Ok(Self {
            db: Database::open(url, &SCHEMA, SqliteUse::Concurrent).await?,
        })
    }

    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(Tx {
            tx: self.db.begin().await?,
            audit: Vec::new(),
            savepoints: Vec::new(),
        })
    }

    pub async fn resource(&self, id: &str) -> Result<Option<StoredResource>, StoreError> {
        fetch_resource(self.db.pool(), id).await
    }

    /// Live (not soft-deleted) resources of `kind`, optionally narrowed by an indexed column.
    pub async fn live_resources(
        &self,
        kind: ResourceKind,
        index: Option<Index>,
    ) -> Result<Vec<StoredResource>, StoreError> {
        if index.as_ref().is_some_and(|i| i.values.is_empty()) {
            return Ok(Vec::new());
        }
        let sql = self
            .backend()
            .positional(live_resources_sql(index.as_ref()));
        let mut query = sqlx::query(&sql).bind(kind_str(kind));
        for value in index.iter().flat_map(|i| &i.values) {
            query = query.bind(value.as_str());
        }
        let rows = query.fetch_all(self.db.pool()).await?;
        rows.iter().map(parse_resource).collect()
    }

    pub async fn deleted_resources(
        &self,
        kind: ResourceKind,
    ) -> Result<Vec<StoredResource>, StoreError> {
        let sql = format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources \
             WHERE kind = $1 AND deleted_at IS NOT NULL ORDER BY deleted_at, id"
        );
        let rows = sqlx::query(&sql)
            .bind(kind_str(kind))
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(parse_resource).collect()
    }

    /// Soft-deleted resources whose retention ended before `cutoff`.
    pub async fn expired_deleted(&self, cutoff: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM resources WHERE deleted_at < $1")
            .bind(cutoff)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(StoreError::from))
            .collect()
    }

    pub async fn credential(&self, user_id: &str) -> Result<Option<Credential>, StoreError> {
        let row =
            sqlx::query("SELECT kind, verifier, must_change FROM credentials WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(self.db.pool())
                .await?;
        row.map(|r| {
            Ok(Credential {
                kind: r.try_get("kind")?,
                verifier: Secret::new(r.try_get::<String, _>("verifier")?),
                must_change: r.try_get::<i64, _>("must_change")? != 0,
            })
        })
        .transpose()
    }

    pub async fn signin_state(&self, user_id: &str) -> Result<SigninState, StoreError> {
        let row = sqlx::query(
            "SELECT failures, window_start, locked_until FROM signin_state WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(match row {
            Some(r) => SigninState {
                failures: r.try_get("failures")?,
                window_start: r.try_get("window_start")?,
                locked_until: r.try_get("locked_until")?,
            },
            None => SigninState::default(),
        })
    }

    /// What a user listing shows of every user beside the resource (password, lockout,
    /// licenses), by user id, in three queries rather than three per user: users without any
    /// are absent.
    pub async fn account_summaries(&self) -> Result<HashMap<String, AccountSummary>, StoreError> {
        let mut out: HashMap<String, AccountSummary> = HashMap::new();
        for r in sqlx::query("SELECT user_id, must_change FROM credentials")
            .fetch_all(self.db.pool())
            .await?
        {
            let summary = out.entry(r.try_get("user_id")?).or_default();
            summary.has_password = true;
            summary.must_change_password = r.try_get::<i64, _>("must_change")? != 0;
        }
        for r in sqlx::query("SELECT user_id, locked_until FROM signin_state")
            .fetch_all(self.db.pool())
            .await?
        {
            out.entry(r.try_get("user_id")?).or_default().locked_until =
                r.try_get("locked_until")?;
        }
        for r in sqlx::query("SELECT user_id, sku FROM licenses ORDER BY user_id, sku")
            .fetch_all(self.db.pool())
            .await?
        {
            let sku = r.try_get("sku")?;
            out.entry(r.try_get("user_id")?)
                .or_default()
                .licenses
                .push(sku);
        }
        Ok(out)
    }

    /// [`Store::account_summaries`] of one user.
    pub async fn account_summary(&self, user_id: &str) -> Result<AccountSummary, StoreError> {
        let credential = self.credential(user_id).await?;
        Ok(AccountSummary {
            has_password: credential.is_some(),
            must_change_password: credential.is_some_and(|c| c.must_change),
            locked_until: self.signin_state(user_id).await?.locked_until,
            licenses: self.licenses_of(user_id).await?,
        })
    }

    pub async fn licenses_of(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT sku FROM licenses WHERE user_id = $1 ORDER BY sku")
            .bind(user_id)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|r| r.try_get("sku").map_err(StoreError::from))
            .collect()
    }

    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, scope FROM tokens WHERE hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|r| {
            Ok(TokenRecord {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                scope: r.try_get("scope")?,
            })
        })
        .transpose()
    }

    /// The user and purpose of a live session token.
    pub async fn session(
        &self,
        hash: &str,
        now: i64,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT user_id, purpose FROM sessions WHERE hash = $1 AND expires_at > $2",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|r| Ok((r.try_get("user_id")?, r.try_get("purpose")?)))
            .transpose()
    }

    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(self.db.pool())
            .await?;
        row.map(|r| r.try_get("value").map_err(StoreError::from))
            .transpose()
    }

    /// Newest first; `before` pages backwards by sequence number.
    pub async fn audit(
        &self,
        limit: i64,
        before: Option<i64>,
        action_prefix: Option<&str>,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, target, outcome, detail FROM audit \
             WHERE seq < $1 AND action LIKE $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(format!("{}%", action_prefix.unwrap_or("")))
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEvent {
                    seq: r.try_get("seq")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    outcome: r.try_get("outcome")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// Audit entries outside a transaction (sign-in failures, refused requests).
    pub async fn record_audit(&self, entry: &AuditEntry<'_>) -> Result<(), StoreError> {
        insert_audit(self.db.pool(), self.backend(), &[entry.into()]).await
    }
}

/// One audit record; never carries a secret.
pub struct AuditEntry<'a> {
    pub at: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub outcome: &'a str,
    pub detail: &'a str,
}

const AUDIT_COLUMNS: usize = 6;

/// Audit entries in one statement.
async fn insert_audit<'e, E: Executor<'e, Database = Any>>(
    e: E,
    backend: Backend,
    entries: &[OwnedAuditEntry],
) -> Result<(), StoreError> {
    let sql = backend.positional(format!(
        "INSERT INTO audit (at, actor, action, target, outcome, detail) VALUES {}",
        idbridge_db::value_rows(AUDIT_COLUMNS, entries.len())
    ));
    let mut query = sqlx::query(&sql);
    for entry in entries {
        query = query
            .bind(entry.at)
            .bind(entry.actor.as_str())
            .bind(entry.action.as_str())
            .bind(entry.target.as_str())
            .bind(entry.outcome.as_str())
            .bind(entry.detail.as_str());
    }
    query.execute(e).await?;
    Ok(())
}

/// An audit entry held by a transaction until it commits.
struct OwnedAuditEntry {
    at: i64,
    actor: String,
    action: String,
    target: String,
    outcome: String,
    detail: String,
}

impl From<&AuditEntry<'_>> for OwnedAuditEntry {
    fn from(entry: &AuditEntry<'_>) -> Self {
        Self {
            at: entry.at,
            actor: entry.actor.to_owned(),
            action: entry.action.to_owned(),
            target: entry.target.to_owned(),
            outcome: entry.outcome.to_owned(),
            detail: entry.detail.to_owned(),
        }
    }
}

impl Tx {
    pub async fn commit(mut self) -> Result<(), StoreError> {
        let backend = self.tx.backend();
        for chunk in self.audit.chunks(idbridge_db::PARAMS_MAX / AUDIT_COLUMNS) {
            insert_audit(self.tx.conn(), backend, chunk).await?;
        }
        Ok(self.tx.commit().await?)
    }

    pub async fn resource(&mut self, id: &str) -> Result<Option<StoredResource>, StoreError> {
        fetch_resource(self.tx.conn(), id).await
    }

    pub async fn savepoint(&mut self, name: &str) -> Result<(), StoreError> {
        self.tx.savepoint(name).await?;
        self.savepoints.push((name.to_owned(), self.audit.len()));
        Ok(())
    }

    pub async fn release(&mut self, name: &str) -> Result<(), StoreError> {
        self.tx.release(name).await?;
        self.close_savepoint(name);
        Ok(())
    }

    /// Undoes the work since savepoint `name`, its audit entries with it, and releases it.
    pub async fn rollback_to(&mut self, name: &str) -> Result<(), StoreError> {
        self.tx.rollback_to(name).await?;
        if let Some(audited) = self.close_savepoint(name) {
            self.audit.truncate(audited);
        }
        Ok(())
    }

    /// Forgets savepoint `name` and those opened after it (as SQL does); returns how many
    /// audit entries preceded it.
    fn close_savepoint(&mut self, name: &str) -> Option<usize> {
        let at = self.savepoints.iter().rposition(|(open, _)| open == name)?;
        self.savepoints
            .drain(at..)
            .next()
            .map(|(_, audited)| audited)
    }

    /// The resource (live or soft-deleted) holding a userName, for uniqueness messages.
    pub async fn holder_of_name(
        &mut self,
        kind: ResourceKind,
        name_key: &str,
    ) -> Result<Option<StoredResource>, StoreError> {
        let sql =
            format!("SELECT {RESOURCE_COLUMNS} FROM resources WHERE kind = $1 AND name_key = $2");
        let row = sqlx::query(&sql)
            .bind(kind_str(kind))
            .bind(name_key)
            .fetch_optional(self.tx.conn())
            .await?;
        row.as_ref().map(parse_resource).transpose()
    }

    /// Inserts resources (each with a new id), as many per statement as the parameters allow;
    /// per resource, false with nothing written when a unique key (its userName, say) is taken,
    /// by a resource stored before or one earlier in `writes`. Not an error, so the transaction
    /// stays usable without a savepoint (a failed statement aborts a PostgreSQL transaction).
    pub async fn insert_resources(
        &mut self,
        writes: &[ResourceWrite<'_>],
        now: i64,
    ) -> Result<Vec<bool>, StoreError> {
        const COLUMNS: usize = 10;
        let backend = self.tx.backend();
        let mut kept_out = std::collections::HashSet::new();
        for chunk in writes.chunks(idbridge_db::PARAMS_MAX / COLUMNS) {
            // Not `value_rows`: the version is a literal, not a parameter, so that 50 rows fit
            // in `PARAMS_MAX` parameters.
            let rows: Vec<String> = (0..chunk.len())
                .map(|row| format!("({}, 1)", idbridge_db::params(row * COLUMNS + 1, COLUMNS)))
                .collect();
            let sql = backend.positional(format!(
                "INSERT INTO resources \
                 (id, kind, name_key, external_id, source, doc, created_at, modified_at, \
                  anchor, email_key, version) \
                 VALUES {} ON CONFLICT DO NOTHING",
                rows.join(", ")
            ));
            let mut query = sqlx::query(&sql);
            for w in chunk {
                query = query
                    .bind(w.id)
                    .bind(kind_str(w.kind))
                    .bind(w.name_key.as_deref())
                    .bind(w.external_id)
                    .bind(w.source)
                    .bind(w.doc.to_string())
                    .bind(now)
                    .bind(now)
                    .bind(w.anchor)
                    .bind(w.email_key.as_deref());
            }
            let done = query.execute(self.tx.conn()).await?;
            // Rarely short, so not asked of every statement: on SQLite each row returned is
            // its own hand-over from the database's thread, while the writer waits.
            if done.rows_affected() < chunk.len() as u64 {
                let sql = backend.positional(format!(
                    "SELECT id FROM resources WHERE id IN ({})",
                    idbridge_db::params(1, chunk.len())
                ));
                let mut query = sqlx::query(&sql);
                for w in chunk {
                    query = query.bind(w.id);
                }
                let stored: std::collections::HashSet<String> = query
                    .fetch_all(self.tx.conn())
                    .await?
                    .iter()
                    .map(|row| row.try_get("id"))
                    .collect::<Result<_, _>>()?;
                kept_out.extend(
                    chunk
                        .iter()
                        .map(|w| w.id)
                        .filter(|id| !stored.contains(*id)),
                );
            }
        }
        Ok(writes.iter().map(|w| !kept_out.contains(w.id)).collect())
    }

    /// Replaces a resource if it is still at `version`; false if someone else won the race.
    pub async fn update_resource(
        &mut self,
        w: &ResourceWrite<'_>,
        version: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE resources SET name_key = $1, external_id = $2, source = $3, doc = $4, \
             version = version + 1, modified_at = $5, anchor = $8, email_key = $9 \
             WHERE id = $6 AND version = $7",
        )
        .bind(w.name_key.as_deref())
        .bind(w.external_id)
        .bind(w.source)
        .bind(w.doc.to_string())
        .bind(now)
        .bind(w.id)
        .bind(version)
        .bind(w.anchor)
        .bind(w.email_key.as_deref())
        .execute(self.tx.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets or clears `deleted_at` (soft delete and restore); bumps the version.
    pub async fn set_deleted(
        &mut self,
        id: &str,
        deleted_at: Option<i64>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE resources SET deleted_at = $1, version = version + 1, modified_at = $2 \
             WHERE id = $3",
        )
        .bind(deleted_at)
        .bind(now)
        .bind(id)
        .execute(self.tx.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes a resource and everything hanging off it.
    pub async fn purge(&mut self, id: &str) -> Result<bool, StoreError> {
        for table in ["credentials", "signin_state", "licenses", "sessions"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(id)
                .execute(self.tx.conn())
                .await?;
        }
        let done = sqlx::query("DELETE FROM resources WHERE id = $1")
            .bind(id)
            .execute(self.tx.conn())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Groups (live or deleted) whose `members` mention `member_id`; a cheap pre-filter on the
    /// JSON text, confirmed by the caller.
    pub async fn groups_mentioning(
        &mut self,
        member_id: &str,
    ) -> Result<Vec<StoredResource>, StoreError> {
        let sql =
            format!("SELECT {RESOURCE_COLUMNS} FROM resources WHERE kind = $1 AND doc LIKE $2");
        let rows = sqlx::query(&sql)
            .bind(kind_str(ResourceKind::Group))
            .bind(format!("%\"{member_id}\"%"))
            .fetch_all(self.tx.conn())
            .await?;
        rows.iter().map(parse_resource).collect()
    }

    pub async fn set_credential(
        &mut self,
        user_id: &str,
        credential: &Credential,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO credentials (user_id, kind, verifier, must_change, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO UPDATE SET \
             kind = excluded.kind, verifier = excluded.verifier, \
             must_change = excluded.must_change, updated_at = excluded.updated_at",
        )
        .bind(user_id)
        .bind(&credential.kind)
        .bind(credential.verifier.expose())
        .bind(i64::from(credential.must_change))
        .bind(now)
        .execute(self.tx.conn())
        .await?;
        Ok(())
    }

    pub async fn set_signin_state(
        &mut self,
        user_id: &str,
        state: SigninState,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO signin_state (user_id, failures, window_start, locked_until) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE SET \
             failures = excluded.failures, window_start = excluded.window_start, \
             locked_until = excluded.locked_until",
        )
        .bind(user_id)
        .bind(state.failures)
        .bind(state.window_start)
        .bind(state.locked_until)
        .execute(self.tx.conn())
        .await?;
        Ok(())
    }

    /// Makes the SKU table match the configuration (seat counts may change between starts).
    pub async fn sync_skus(&mut self, skus: &[(String, i64)]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM skus")
            .execute(self.tx.conn())
            .await?;
        for (sku, seats) in skus {
            sqlx::query("INSERT INTO skus (sku, seats) VALUES ($1, $2)")
                .bind(sku)
                .bind(*seats)
                .execute(self.tx.conn())
                .await?;
        }
        Ok(())
    }

    /// Seats of a SKU (`None`: no such SKU) and how many are assigned. On PostgreSQL the SKU
    /// row stays locked until commit so concurrent assignments cannot oversubscribe it.
    pub async fn seats(
        &mut self,
        sku: &str,
        backend: Backend,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let lock = match backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let Some(row) = sqlx::query(&format!("SELECT seats FROM skus WHERE sku = $1{lock}"))
            .bind(sku)
            .fetch_optional(self.tx.conn())
            .await?
        else {
            return Ok(None);
        };
        let used: i64 = sqlx::query("SELECT COUNT(*) AS n FROM licenses WHERE sku = $1")
            .bind(sku)
            .fetch_one(self.tx.conn())
            .await?
            .try_get("n")?;
        Ok(Some((row.try_get("seats")?, used)))
    }

    /// Adds a license; false if the user already had it.
    pub async fn add_license(
        &mut self,
        user_id: &str,
        sku: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO licenses (user_id, sku, assigned_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, sku) DO NOTHING",
        )
        .bind(user_id)
        .bind(sku)
        .bind(now)
        .execute(self.tx.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn remove_license(&mut self, user_id: &str, sku: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM licenses WHERE user_id = $1 AND sku = $2")
            .bind(user_id)
            .bind(sku)
            .execute(self.tx.conn())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn licenses_of(&mut self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT sku FROM licenses WHERE user_id = $1 ORDER BY sku")
            .bind(user_id)
            .fetch_all(self.tx.conn())
            .await?;
        rows.iter()
            .map(|r| r.try_get("sku").map_err(StoreError::from))
            .collect()
    }

    pub async fn insert_token(
        &mut self,
        record: &TokenRecord,
        hash: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tokens (id, name, scope, hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&record.id)
        .bind(&record.name)
        .bind(&record.scope)
        .bind(hash)
        .bind(now)
        .execute(self.tx.conn())
        .await?;
        Ok(())
    }

    pub async fn insert_session(
        &mut self,
        hash: &str,
        user_id: &str,
        purpose: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (hash, user_id, purpose, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(hash)
        .bind(user_id)
        .bind(purpose)
        .bind(expires_at)
        .execute(self.tx.conn())
        .await?;
        Ok(())
    }

    /// Ends every session of a user (after a password change or reset).
    pub async fn end_sessions(&mut self, user_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(self.tx.conn())
            .await?;
        Ok(())
    }

    pub async fn set_setting(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(self.tx.conn())
        .await?;
        Ok(())
    }

    /// Records an audit entry, written when the transaction commits.
    pub fn audit(&mut self, entry: &AuditEntry<'_>) {
        self.audit.push(entry.into());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A table of 20,000 users with distinct indexed values, written in one statement
    /// (PostgreSQL's statistics then taken, as autovacuum would; SQLite's planner has none, as in
    /// production).
    async fn populated(store: &Store) {
        store
            .db
            .pool()
            .execute(
                "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 19999) \
                 INSERT INTO resources (id, kind, name_key, external_id, source, doc, version, \
                 created_at, modified_at, anchor, email_key) \
                 SELECT 'id' || i, 'User', 'u' || i, 'e' || i, 'on_premises', '{}', 1, 0, 0, \
                 'a' || i, 'm' || i FROM n",
            )
            .await
            .unwrap();
        if store.backend() == Backend::Postgres {
            store.db.pool().execute("ANALYZE resources").await.unwrap();
        }
    }

    /// The plan for a lookup of `n` values of `column` (`or` of 100 equalities, say).
    async fn plan(store: &Store, column: Column, n: usize) -> String {
        let index = Index {
            column,
            values: (0..n).map(|i| format!("v{i}")).collect(),
        };
        let (explain, detail) = match store.backend() {
            Backend::Sqlite => ("EXPLAIN QUERY PLAN", 3),
            Backend::Postgres => ("EXPLAIN", 0),
        };
        let sql = format!("{explain} {}", live_resources_sql(Some(&index)));
        let mut query = sqlx::query(&sql).bind("User");
        for value in &index.values {
            query = query.bind(value.as_str());
        }
        let rows = query.fetch_all(store.db.pool()).await.unwrap();
        let lines: Vec<String> = rows
            .iter()
            .map(|r| r.try_get::<String, _>(detail).unwrap())
            .collect();
        lines.join("\n")
    }

    /// Every lookup the SCIM filters use goes through the index on its column; `or` lists of
    /// the columns the sync agent matches on as well.
    async fn lookups_use_their_index(store: &Store) {
        populated(store).await;
        let lookups = [
            (Column::Id, 1),
            (Column::NameKey, 1),
            (Column::NameKey, 100),
            (Column::ExternalId, 100),
            (Column::Anchor, 100),
            (Column::EmailKey, 100),
        ];
        for (column, n) in lookups {
            let plan = plan(store, column, n).await;
            let name = column.name();
            let indexed = match store.backend() {
                Backend::Sqlite => plan.contains(&format!("{name}=?")),
                Backend::Postgres => plan
                    .lines()
                    .any(|l| l.contains("Index Cond") && l.contains(&format!("({name} = "))),
            };
            assert!(indexed, "{column:?} x{n}: {plan}");
            assert!(!plan.contains("Seq Scan"), "{column:?} x{n}: {plan}");
        }
    }

    /// Audit entries wait for the commit; a rollback to a savepoint drops those recorded after
    /// it (and the savepoints opened after it), a release keeps them; more entries than one
    /// statement holds are all written, in order.
    async fn audit_follows_savepoints(store: &Store) {
        let entry = |target: &'static str| AuditEntry {
            at: 1,
            actor: "test",
            action: "user.create",
            target,
            outcome: "success",
            detail: "",
        };
        let mut tx = store.begin().await.unwrap();
        tx.audit(&entry("kept-before"));
        tx.savepoint("first").await.unwrap();
        tx.audit(&entry("undone"));
        tx.savepoint("second").await.unwrap();
        tx.audit(&entry("undone-inner"));
        tx.rollback_to("first").await.unwrap();
        tx.savepoint("op").await.unwrap();
        tx.audit(&entry("released"));
        tx.release("op").await.unwrap();
        for _ in 0..40 {
            tx.audit(&entry("many"));
        }
        tx.commit().await.unwrap();
        let mut targets: Vec<String> = store
            .audit(100, None, None)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.target)
            .collect();
        targets.reverse();
        let mut expected = vec!["kept-before".to_owned(), "released".to_owned()];
        expected.extend(std::iter::repeat_n("many".to_owned(), 40));
        assert_eq!(targets, expected);
        // Dropped without commit: nothing.
        let mut tx = store.begin().await.unwrap();
        tx.audit(&entry("dropped"));
        drop(tx);
        assert_eq!(store.audit(100, None, None).await.unwrap().len(), 42);
    }

    idbridge_testkit::on_sqlite_and_postgres!(
        audit_follows_savepoints_on_sqlite,
        audit_follows_savepoints_on_postgres,
        "audit",
        async |url: String| {
            audit_follows_savepoints(&Store::open(&Secret::new(url)).await.unwrap()).await
        }
    );

    idbridge_testkit::on_sqlite_and_postgres!(
        lookups_use_their_index_on_sqlite,
        lookups_use_their_index_on_postgres,
        "plan",
        async |url: String| {
            lookups_use_their_index(&Store::open(&Secret::new(url)).await.unwrap()).await
        }
    );
}
