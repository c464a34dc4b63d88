//! The sync engine's persistent state: connector spaces, metaverse, pending exports, object
//! errors, run history and the DirSync cookie, on SQLite or PostgreSQL (`idbridge-db`).
//!
//! Crash safety comes from the unit of each write: an imported batch and the cookie that covers
//! it commit together; an object's sync result (metaverse, pending export, error) commits
//! together; an export's confirmation (cloud object, pending export removed) commits together.

use std::collections::{HashMap, HashSet};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use idbridge_core::{Dn, ObjectGuid, Secret};
use idbridge_db::{params, value_rows, Database, DbError, DbTx, Schema, SqliteUse, PARAMS_MAX};
use idbridge_engine::{decode_values, AdObject, CloudKind};
use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

const LINKS_MIGRATION: &str = include_str!("../../migrations/common/0002_links.sql");
const PENDING_ORDER_MIGRATION: &str =
    include_str!("../../migrations/common/0003_pending_order.sql");
const REVISIONS_MIGRATION: &str = include_str!("../../migrations/common/0004_revisions.sql");
const INDEXES_MIGRATION: &str = include_str!("../../migrations/common/0005_indexes.sql");
const SYNC_STATE_SQLITE: &str = include_str!("../../migrations/sqlite/0006_sync_state.sql");
const SYNC_STATE_POSTGRES: &str = include_str!("../../migrations/postgres/0006_sync_state.sql");
const PENDING_SCAN_MIGRATION: &str = include_str!("../../migrations/common/0007_pending_scan.sql");
const SCHEMA: Schema = Schema {
    version_table: "agent_schema",
    sqlite: &[
        (1, include_str!("../../migrations/sqlite/0001_sync.sql")),
        (2, LINKS_MIGRATION),
        (3, PENDING_ORDER_MIGRATION),
        (4, REVISIONS_MIGRATION),
        (5, INDEXES_MIGRATION),
        (6, SYNC_STATE_SQLITE),
        (7, PENDING_SCAN_MIGRATION),
    ],
    postgres: &[
        (1, include_str!("../../migrations/postgres/0001_sync.sql")),
        (2, LINKS_MIGRATION),
        (3, PENDING_ORDER_MIGRATION),
        (4, REVISIONS_MIGRATION),
        (5, INDEXES_MIGRATION),
        (6, SYNC_STATE_POSTGRES),
        (7, PENDING_SCAN_MIGRATION),
    ],
};

const COOKIE_KEY: &str = "dirsync_cookie";
/// The DC's USN through which every change is in the store (absent in stores of older agents).
const APPLIED_USN_KEY: &str = "applied_usn";
const GENERATION_KEY: &str = "import_generation";
const APPROVED_DELETES_KEY: &str = "approved_deletes";
/// Set once `ad_links` holds the links of every stored object.
const LINKS_KEY: &str = "ad_links";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the stored object {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(DbError::Database(e))
    }
}

fn corrupt(key: &str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        key: key.to_owned(),
        reason: reason.to_string(),
    }
}

#[derive(Clone)]
pub struct SyncStore {
    db: Database,
}

pub struct Tx {
    tx: DbTx,
}

/// One object's metaverse row; `attrs` encoded.
#[derive(Clone, Debug)]
pub struct MetaverseRow {
    pub guid: String,
    pub mv_type: String,
    pub anchor: String,
    pub attrs: String,
}

/// An AD object as the store holds it, attributes still encoded.
#[derive(Clone, Debug)]
pub struct StoredAdObject {
    pub dn: String,
    pub class: String,
    pub attrs: String,
    pub deleted: bool,
}

impl StoredAdObject {
    /// Whether storing `object` would change nothing.
    pub fn holds(&self, object: &AdObject) -> bool {
        // As text: what the store holds is the same encoding of the same values.
        let encoded = object.encode_attrs().to_string();
        self.deleted == object.deleted
            && self.class == object.class
            && self.dn == object.dn.to_string()
            && self.attrs == encoded
    }
}

/// A cloud object joined to an AD object, as last confirmed by the cloud.
#[derive(Clone, Debug, PartialEq)]
pub struct CloudObject {
    pub guid: String,
    pub kind: CloudKind,
    pub cloud_id: String,
    pub anchor: String,
    pub doc: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportAction {
    Provision,
    Update,
    Deprovision,
}

impl ExportAction {
    fn as_str(self) -> &'static str {
        match self {
            Self::Provision => "provision",
            Self::Update => "update",
            Self::Deprovision => "deprovision",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        [Self::Provision, Self::Update, Self::Deprovision]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// A change the sync decided and the export has not yet confirmed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PendingExport {
    pub guid: String,
    pub dn: String,
    #[serde(serialize_with = "kind_name")]
    pub kind: CloudKind,
    pub action: ExportAction,
    pub anchor: String,
    /// The desired cloud document (empty object for a deprovision).
    pub doc: Value,
    /// Join conditions (cloud attribute path, value), hard match first.
    pub join: Vec<(String, String)>,
    /// Some references could not be resolved yet; the object is synced again after exports.
    pub unresolved: bool,
    /// The stored revision this export was read at (0 before it is stored): its confirmation
    /// removes that revision only, not one synchronization wrote meanwhile.
    #[serde(skip)]
    pub revision: i64,
    /// The stored document's length in bytes (0 before it is stored): what an export's share
    /// of memory is reckoned in.
    #[serde(skip)]
    pub doc_bytes: usize,
}

fn kind_name<S: serde::Serializer>(kind: &CloudKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.name())
}

#[derive(Clone, Debug, Serialize)]
pub struct ObjectError {
    pub guid: String,
    pub dn: String,
    pub stage: String,
    pub message: String,
    pub at: i64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct RunCounts {
    pub adds: i64,
    pub updates: i64,
    pub renames: i64,
    pub deletes: i64,
    pub errors: i64,
}

impl RunCounts {
    /// Adds the counts of a step that ran beside another (see `import_and_follow`).
    pub fn add(&mut self, other: &RunCounts) {
        self.adds += other.adds;
        self.updates += other.updates;
        self.renames += other.renames;
        self.deletes += other.deletes;
        self.errors += other.errors;
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub profile: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub status: String,
    #[serde(flatten)]
    pub counts: RunCounts,
    pub message: String,
}

fn parse_ad_object(row: &AnyRow) -> Result<AdObject, StoreError> {
    let guid: String = row.try_get("guid")?;
    let dn: String = row.try_get("dn")?;
    let attrs: String = row.try_get("attrs")?;
    Ok(AdObject {
        guid: ObjectGuid::parse(&guid).map_err(|e| corrupt(&guid, e))?,
        dn: Dn::parse(&dn).map_err(|e| corrupt(&guid, e))?,
        class: row.try_get("class")?,
        attrs: decode_values(&attrs).map_err(|e| corrupt(&guid, e))?,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
    })
}

/// An object waiting for synchronization, at the revision it was read.
pub struct PendingSync {
    pub object: AdObject,
    /// Its objectGUID as the store keys it (what every write of its batch binds).
    pub key: String,
    pub revision: i64,
}

/// The columns of a pending export, as [`parse_pending`] reads them.
const PENDING_SELECT: &str =
    "SELECT guid, dn, kind, action, anchor, doc, join_keys, unresolved, revision FROM pending_exports";

/// Where a paged read of the pending exports stopped (see [`SyncStore::pending_exports_after`]).
#[derive(Clone, Debug)]
pub struct PendingCursor {
    guid: String,
}

impl PendingCursor {
    pub fn after(export: &PendingExport) -> Self {
        Self {
            guid: export.guid.clone(),
        }
    }
}

/// The next objects waiting for synchronization, in guid order.
const PENDING_SYNC: &str = "SELECT o.guid, o.dn, o.class, o.attrs, o.deleted, p.revision \
     FROM ad_pending p JOIN ad_objects o ON o.guid = p.guid \
     WHERE p.guid > $1 ORDER BY p.guid LIMIT $2";

/// Up to `$1` objects whose references waited for targets, not yet marked: synchronized again.
const RETRY_UNRESOLVED: &str = "INSERT INTO ad_pending (guid, revision) \
     SELECT o.guid, o.revision FROM ad_unresolved u JOIN ad_objects o ON o.guid = u.guid \
     WHERE NOT EXISTS (SELECT 1 FROM ad_pending p WHERE p.guid = u.guid) LIMIT $1";

/// The condition "(guid, revision) is one of `rows`" (a multi-row `VALUES`). Written as a
/// subquery: SQLite answers a row value `IN (VALUES ...)` by reading the whole table.
fn at_revisions(rows: &str) -> String {
    format!("(guid, revision) IN (SELECT * FROM (VALUES {rows}) AS sent)")
}

/// Marks synchronized the objects at the revisions in `rows`.
fn clear_pending_sql(rows: &str) -> String {
    format!("DELETE FROM ad_pending WHERE {}", at_revisions(rows))
}

/// Removes the pending exports at the revisions in `rows`; returns the guids removed.
fn delete_sent_sql(rows: &str) -> String {
    format!(
        "DELETE FROM pending_exports WHERE {} RETURNING guid",
        at_revisions(rows)
    )
}

/// Objects per statement of the updates that may change every object.
const UPDATE_RANGE: i64 = 2_000;

/// Objects per transaction when `ad_links` is filled on upgrade.
const LINK_INDEX_PAGE: i64 = 1_000;

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    values: &[&'q str],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for value in values {
        query = query.bind(*value);
    }
    query
}

fn parse_cloud_object(row: &AnyRow) -> Result<CloudObject, StoreError> {
    let guid: String = row.try_get("guid")?;
    let kind: String = row.try_get("kind")?;
    let doc: String = row.try_get("doc")?;
    Ok(CloudObject {
        kind: CloudKind::parse(&kind).ok_or_else(|| corrupt(&guid, format!("kind {kind}")))?,
        cloud_id: row.try_get("cloud_id")?,
        anchor: row.try_get("anchor")?,
        doc: serde_json::from_str(&doc).map_err(|e| corrupt(&guid, e))?,
        guid,
    })
}

fn parse_pending(row: &AnyRow) -> Result<PendingExport, StoreError> {
    let guid: String = row.try_get("guid")?;
    let kind: String = row.try_get("kind")?;
    let action: String = row.try_get("action")?;
    let doc: String = row.try_get("doc")?;
    let join: String = row.try_get("join_keys")?;
    Ok(PendingExport {
        kind: CloudKind::parse(&kind).ok_or_else(|| corrupt(&guid, format!("kind {kind}")))?,
        action: ExportAction::parse(&action)
            .ok_or_else(|| corrupt(&guid, format!("action {action}")))?,
        dn: row.try_get("dn")?,
        anchor: row.try_get("anchor")?,
        doc: serde_json::from_str(&doc).map_err(|e| corrupt(&guid, e))?,
        join: serde_json::from_str(&join).map_err(|e| corrupt(&guid, e))?,
        unresolved: row.try_get::<i64, _>("unresolved")? != 0,
        revision: row.try_get("revision")?,
        doc_bytes: doc.len(),
        guid,
    })
}

/// A page of pending exports bounded by the size of their documents: a group's can hold tens
/// of thousands of members, and parsed, a member takes some 700 bytes. Rows are parsed in order
/// until the documents taken reach the budget (the first is always taken); the rest are left,
/// by guid, for a later page.
struct PendingWithin {
    max_doc_bytes: usize,
    doc_bytes: usize,
    taken: Vec<PendingExport>,
    left: Vec<String>,
}

impl PendingWithin {
    fn new(max_doc_bytes: usize) -> Self {
        Self {
            max_doc_bytes,
            doc_bytes: 0,
            taken: Vec::new(),
            left: Vec::new(),
        }
    }

    fn full(&self) -> bool {
        !self.taken.is_empty() && self.doc_bytes >= self.max_doc_bytes
    }

    fn take(&mut self, rows: &[AnyRow]) -> Result<(), StoreError> {
        for row in rows {
            if self.full() {
                self.left.push(row.try_get("guid")?);
                continue;
            }
            let export = parse_pending(row)?;
            self.doc_bytes += export.doc_bytes;
            self.taken.push(export);
        }
        Ok(())
    }
}

impl SyncStore {
    pub async fn open(url: &Secret) -> Result<Self, StoreError> {
        let store = Self {
            db: Database::open(url, &SCHEMA, SqliteUse::Sequential).await?,
        };
        if store.state(LINKS_KEY).await?.is_none() {
            store.index_links().await?;
        }
        Ok(store)
    }

    /// Fills `ad_links` from the objects a store made before it had the table; one pass.
    async fn index_links(&self) -> Result<(), StoreError> {
        let mut after = String::new();
        loop {
            let page = sqlx::query(
                "SELECT guid, dn, class, attrs, deleted FROM ad_objects \
                 WHERE guid > $1 ORDER BY guid LIMIT $2",
            )
            .bind(&after)
            .bind(LINK_INDEX_PAGE)
            .fetch_all(self.db.pool())
            .await?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.try_get("guid")?;
            let mut tx = self.begin().await?;
            let objects = page
                .iter()
                .map(parse_ad_object)
                .collect::<Result<Vec<_>, _>>()?;
            tx.put_links(&objects.iter().collect::<Vec<_>>()).await?;
            tx.commit().await?;
        }
        let mut tx = self.begin().await?;
        tx.set_state(LINKS_KEY, "1").await?;
        tx.commit().await
    }

    /// A chunked statement as the backend binds it cheapest ([`idbridge_db::Backend::positional`]).
    fn positional(&self, sql: String) -> String {
        self.db.backend().positional(sql)
    }

    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(Tx {
            tx: self.db.begin().await?,
        })
    }

    pub async fn cookie(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(text) = self.state(COOKIE_KEY).await? else {
            return Ok(None);
        };
        B64.decode(text)
            .map(Some)
            .map_err(|e| corrupt(COOKIE_KEY, e))
    }

    /// Every change the DC committed through this USN is in the store.
    pub async fn applied_usn(&self) -> Result<Option<u64>, StoreError> {
        self.state(APPLIED_USN_KEY)
            .await?
            .map(|text| text.parse().map_err(|e| corrupt(APPLIED_USN_KEY, e)))
            .transpose()
    }

    async fn state(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query("SELECT value FROM agent_state WHERE key = $1")
            .bind(key)
            .fetch_optional(self.db.pool())
            .await?
            .map(|r| r.try_get("value"))
            .transpose()?)
    }

    /// Objects changed since they were last synced, `limit` at a time (in GUID order after `after`).
    pub async fn pending_sync(
        &self,
        after: &str,
        limit: i64,
    ) -> Result<Vec<PendingSync>, StoreError> {
        sqlx::query(PENDING_SYNC)
            .bind(after)
            .bind(limit)
            .fetch_all(self.db.pool())
            .await?
            .iter()
            .map(|row| {
                Ok(PendingSync {
                    object: parse_ad_object(row)?,
                    key: row.try_get("guid")?,
                    revision: row.try_get("revision")?,
                })
            })
            .collect()
    }

    /// Deletions an administrator let through the threshold (`idbridge sync allow-deletes`).
    pub async fn approved_deletes(&self) -> Result<u64, StoreError> {
        Ok(self
            .state(APPROVED_DELETES_KEY)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    async fn count(&self, sql: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query(sql)
            .fetch_one(self.db.pool())
            .await?
            .try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub async fn cloud_object_count(&self) -> Result<u64, StoreError> {
        self.count("SELECT COUNT(*) AS n FROM cloud_objects").await
    }

    pub async fn pending_sync_count(&self) -> Result<u64, StoreError> {
        self.count("SELECT COUNT(*) AS n FROM ad_pending").await
    }

    pub async fn has_pending_sync(&self) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT guid FROM ad_pending LIMIT 1")
            .fetch_optional(self.db.pool())
            .await?
            .is_some())
    }

    pub async fn ad_object(&self, guid: &str) -> Result<Option<AdObject>, StoreError> {
        sqlx::query("SELECT guid, dn, class, attrs, deleted FROM ad_objects WHERE guid = $1")
            .bind(guid)
            .fetch_optional(self.db.pool())
            .await?
            .as_ref()
            .map(parse_ad_object)
            .transpose()
    }

    /// The AD object at a DN (normalized comparison).
    pub async fn ad_object_by_dn(&self, dn: &Dn) -> Result<Option<AdObject>, StoreError> {
        sqlx::query(
            "SELECT guid, dn, class, attrs, deleted FROM ad_objects WHERE dn_key = $1 AND deleted = 0",
        )
        .bind(dn.normalized())
        .fetch_optional(self.db.pool())
        .await?
        .as_ref()
        .map(parse_ad_object)
        .transpose()
    }

    /// Normalized DN -> cloud id, for the exported objects among `dn_keys` (reference resolution).
    pub async fn cloud_ids_for(
        &self,
        dn_keys: &HashSet<String>,
    ) -> Result<HashMap<String, String>, StoreError> {
        let keys: Vec<&str> = dn_keys.iter().map(String::as_str).collect();
        let mut ids = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(PARAMS_MAX) {
            let sql = self.positional(format!(
                "SELECT a.dn_key, c.cloud_id FROM ad_objects a JOIN cloud_objects c \
                 ON a.guid = c.guid WHERE a.dn_key IN ({})",
                params(1, chunk.len())
            ));
            for row in bind_all(sqlx::query(&sql), chunk)
                .fetch_all(self.db.pool())
                .await?
            {
                ids.insert(row.try_get("dn_key")?, row.try_get("cloud_id")?);
            }
        }
        Ok(ids)
    }

    /// The cloud objects joined to these AD objects, by guid.
    pub async fn cloud_objects_for(
        &self,
        guids: &[&str],
    ) -> Result<HashMap<String, CloudObject>, StoreError> {
        let mut found = HashMap::with_capacity(guids.len());
        for chunk in guids.chunks(PARAMS_MAX) {
            let sql = self.positional(format!(
                "SELECT guid, kind, cloud_id, anchor, doc FROM cloud_objects WHERE guid IN ({})",
                params(1, chunk.len())
            ));
            for row in bind_all(sqlx::query(&sql), chunk)
                .fetch_all(self.db.pool())
                .await?
            {
                let object = parse_cloud_object(&row)?;
                found.insert(object.guid.clone(), object);
            }
        }
        Ok(found)
    }

    pub async fn cloud_object(&self, guid: &str) -> Result<Option<CloudObject>, StoreError> {
        sqlx::query("SELECT guid, kind, cloud_id, anchor, doc FROM cloud_objects WHERE guid = $1")
            .bind(guid)
            .fetch_optional(self.db.pool())
            .await?
            .as_ref()
            .map(parse_cloud_object)
            .transpose()
    }

    pub async fn pending_exports(&self) -> Result<Vec<PendingExport>, StoreError> {
        sqlx::query(&format!("{PENDING_SELECT} ORDER BY kind DESC, dn"))
            .fetch_all(self.db.pool())
            .await?
            .iter()
            .map(parse_pending)
            .collect()
    }

    /// Pending exports after `after`, in guid order (the primary key's), up to `limit` and
    /// `max_doc_bytes` (a page bounded by document size); with the guids of the rows left over
    /// for the budget.
    pub async fn pending_exports_after(
        &self,
        after: Option<&PendingCursor>,
        limit: i64,
        max_doc_bytes: usize,
    ) -> Result<(Vec<PendingExport>, Vec<String>), StoreError> {
        let sql = match after {
            None => format!("{PENDING_SELECT} ORDER BY guid LIMIT $1"),
            Some(_) => format!("{PENDING_SELECT} WHERE guid > $2 ORDER BY guid LIMIT $1"),
        };
        let mut query = sqlx::query(&sql).bind(limit);
        if let Some(cursor) = after {
            query = query.bind(&cursor.guid);
        }
        let rows = query.fetch_all(self.db.pool()).await?;
        let mut page = PendingWithin::new(max_doc_bytes);
        page.take(&rows)?;
        Ok((page.taken, page.left))
    }

    /// The pending exports of these objects (those that still have one), in export order, up
    /// to `max_doc_bytes` (a page bounded by document size); with the guids left over for the
    /// budget.
    pub async fn pending_exports_of(
        &self,
        guids: &[&str],
        max_doc_bytes: usize,
    ) -> Result<(Vec<PendingExport>, Vec<String>), StoreError> {
        let mut page = PendingWithin::new(max_doc_bytes);
        for chunk in guids.chunks(PARAMS_MAX) {
            if page.full() {
                page.left.extend(chunk.iter().map(|g| g.to_string()));
                continue;
            }
            let sql = self.positional(format!(
                "{PENDING_SELECT} WHERE guid IN ({}) ORDER BY kind DESC, guid",
                params(1, chunk.len())
            ));
            let rows = bind_all(sqlx::query(&sql), chunk)
                .fetch_all(self.db.pool())
                .await?;
            page.take(&rows)?;
        }
        Ok((page.taken, page.left))
    }

    /// How many exports are pending, and how many of them are deprovisions.
    pub async fn pending_export_counts(&self) -> Result<(u64, u64), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS total, \
             COALESCE(SUM(CASE WHEN action = 'deprovision' THEN 1 ELSE 0 END), 0) AS deletes \
             FROM pending_exports",
        )
        .fetch_one(self.db.pool())
        .await?;
        let count = |name: &str| -> Result<u64, StoreError> {
            Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
        };
        Ok((count("total")?, count("deletes")?))
    }

    /// The objects with a pending export (their ids only).
    pub async fn pending_export_guids(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT guid FROM pending_exports")
            .fetch_all(self.db.pool())
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("guid"))
            .collect::<Result<_, _>>()?)
    }

    pub async fn pending_export(&self, guid: &str) -> Result<Option<PendingExport>, StoreError> {
        sqlx::query(&format!("{PENDING_SELECT} WHERE guid = $1"))
            .bind(guid)
            .fetch_optional(self.db.pool())
            .await?
            .as_ref()
            .map(parse_pending)
            .transpose()
    }

    pub async fn errors(&self) -> Result<Vec<ObjectError>, StoreError> {
        let rows =
            sqlx::query("SELECT guid, dn, stage, message, at FROM object_errors ORDER BY dn")
                .fetch_all(self.db.pool())
                .await?;
        rows.iter()
            .map(|r| {
                Ok(ObjectError {
                    guid: r.try_get("guid")?,
                    dn: r.try_get("dn")?,
                    stage: r.try_get("stage")?,
                    message: r.try_get("message")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    pub async fn runs(&self, limit: i64) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, profile, started_at, finished_at, status, adds, updates, renames, \
             deletes, errors, message FROM runs ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RunRecord {
                    id: r.try_get("id")?,
                    profile: r.try_get("profile")?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                    status: r.try_get("status")?,
                    counts: RunCounts {
                        adds: r.try_get("adds")?,
                        updates: r.try_get("updates")?,
                        renames: r.try_get("renames")?,
                        deletes: r.try_get("deletes")?,
                        errors: r.try_get("errors")?,
                    },
                    message: r.try_get("message")?,
                })
            })
            .collect()
    }

    pub async fn start_run(&self, profile: &str, now: i64) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "INSERT INTO runs (profile, started_at, status) VALUES ($1, $2, 'running') RETURNING id",
        )
        .bind(profile)
        .bind(now)
        .fetch_one(tx.tx.conn())
        .await?;
        let id = row.try_get("id")?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn finish_run(
        &self,
        id: i64,
        now: i64,
        status: &str,
        counts: &RunCounts,
        message: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE runs SET finished_at = $2, status = $3, adds = $4, updates = $5, \
             renames = $6, deletes = $7, errors = $8, message = $9 WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .bind(status)
        .bind(counts.adds)
        .bind(counts.updates)
        .bind(counts.renames)
        .bind(counts.deletes)
        .bind(counts.errors)
        .bind(message)
        .execute(tx.tx.conn())
        .await?;
        tx.commit().await
    }

    pub async fn delete_run(&self, id: i64) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM runs WHERE id = $1")
            .bind(id)
            .execute(tx.tx.conn())
            .await?;
        tx.commit().await
    }

    /// A run left `running` by a process that died is marked as interrupted.
    pub async fn close_interrupted_runs(&self, now: i64) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE runs SET status = 'interrupted', finished_at = $1 WHERE status = 'running'",
        )
        .bind(now)
        .execute(tx.tx.conn())
        .await?;
        tx.commit().await
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        Ok(self.tx.commit().await?)
    }

    /// A chunked statement as the backend binds it cheapest ([`idbridge_db::Backend::positional`]).
    fn positional(&self, sql: String) -> String {
        self.tx.backend().positional(sql)
    }

    /// The cookie the next DirSync pass starts from, and the USN through which the DC's changes
    /// are in the store (a USN read moves it; the cookie stays).
    pub async fn set_cookie(&mut self, cookie: &[u8], applied_usn: u64) -> Result<(), StoreError> {
        self.set_state(COOKIE_KEY, &B64.encode(cookie)).await?;
        self.set_state(APPLIED_USN_KEY, &applied_usn.to_string())
            .await
    }

    async fn set_state(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agent_state (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(self.tx.conn())
        .await?;
        Ok(())
    }

    /// Lets the next export delete up to `count` objects regardless of the threshold.
    pub async fn approve_deletes(&mut self, count: u64) -> Result<(), StoreError> {
        self.set_state(APPROVED_DELETES_KEY, &count.to_string())
            .await
    }

    pub async fn consume_approved_deletes(&mut self) -> Result<(), StoreError> {
        self.set_state(APPROVED_DELETES_KEY, "0").await
    }

    /// Starts a full import: returns its generation number (objects not seen again are gone).
    pub async fn next_generation(&mut self) -> Result<i64, StoreError> {
        let current: Option<String> = sqlx::query("SELECT value FROM agent_state WHERE key = $1")
            .bind(GENERATION_KEY)
            .fetch_optional(self.tx.conn())
            .await?
            .map(|r| r.try_get("value"))
            .transpose()?;
        let next = current.and_then(|c| c.parse::<i64>().ok()).unwrap_or(0) + 1;
        self.set_state(GENERATION_KEY, &next.to_string()).await?;
        Ok(next)
    }

    pub async fn ad_object(&mut self, guid: &str) -> Result<Option<AdObject>, StoreError> {
        sqlx::query("SELECT guid, dn, class, attrs, deleted FROM ad_objects WHERE guid = $1")
            .bind(guid)
            .fetch_optional(self.tx.conn())
            .await?
            .as_ref()
            .map(parse_ad_object)
            .transpose()
    }

    /// Stores an imported object, marked for sync.
    pub async fn put_ad_object(
        &mut self,
        object: &AdObject,
        generation: i64,
    ) -> Result<(), StoreError> {
        self.put_ad_objects(&[object], generation).await
    }

    /// Stores imported objects, marked for sync, with their links, in as few statements as the
    /// bind limit allows (a page of a full import costs a handful, not three per object).
    pub async fn put_ad_objects(
        &mut self,
        objects: &[&AdObject],
        generation: i64,
    ) -> Result<(), StoreError> {
        const COLUMNS: usize = 7;
        let guids: Vec<String> = objects.iter().map(|o| o.guid.to_string()).collect();
        let guid_refs: Vec<&str> = guids.iter().map(String::as_str).collect();
        for (chunk, guids) in objects
            .chunks(PARAMS_MAX / COLUMNS)
            .zip(guid_refs.chunks(PARAMS_MAX / COLUMNS))
        {
            let sql = self.positional(format!(
                "INSERT INTO ad_objects (guid, dn, dn_key, class, attrs, deleted, import_generation) \
                 VALUES {} \
                 ON CONFLICT (guid) DO UPDATE SET dn = excluded.dn, dn_key = excluded.dn_key, \
                 class = excluded.class, attrs = excluded.attrs, deleted = excluded.deleted, \
                 import_generation = excluded.import_generation, \
                 revision = ad_objects.revision + 1",
                value_rows(COLUMNS, chunk.len())
            ));
            let mut query = sqlx::query(&sql);
            for (object, guid) in chunk.iter().zip(guids) {
                query = query
                    .bind(*guid)
                    .bind(object.dn.to_string())
                    .bind(object.dn.normalized())
                    .bind(&object.class)
                    .bind(object.encode_attrs().to_string())
                    .bind(i64::from(object.deleted))
                    .bind(generation);
            }
            query.execute(self.tx.conn()).await?;
        }
        // Each at the revision just written.
        self.execute_per_chunk(&guid_refs, |list| {
            format!(
                "INSERT INTO ad_pending (guid, revision) \
                 SELECT guid, revision FROM ad_objects WHERE guid IN ({list}) \
                 ON CONFLICT (guid) DO UPDATE SET revision = excluded.revision"
            )
        })
        .await?;
        self.put_links(objects).await
    }

    /// Replaces the recorded links of `objects` by the ones they hold now.
    async fn put_links(&mut self, objects: &[&AdObject]) -> Result<(), StoreError> {
        let sources: Vec<String> = objects.iter().map(|o| o.guid.to_string()).collect();
        let source_refs: Vec<&str> = sources.iter().map(String::as_str).collect();
        self.execute_per_chunk(&source_refs, |list| {
            format!("DELETE FROM ad_links WHERE source IN ({list})")
        })
        .await?;
        let links: Vec<(&str, String)> = objects
            .iter()
            .zip(&source_refs)
            .flat_map(|(object, source)| {
                object
                    .link_targets()
                    .into_iter()
                    .map(move |target| (*source, target))
            })
            .collect();
        const COLUMNS: usize = 2;
        for chunk in links.chunks(PARAMS_MAX / COLUMNS) {
            // Two processes filling the index of an upgraded store at once write the same rows.
            let sql = self.positional(format!(
                "INSERT INTO ad_links (source, target) VALUES {} ON CONFLICT DO NOTHING",
                value_rows(COLUMNS, chunk.len())
            ));
            let mut query = sqlx::query(&sql);
            for (source, target) in chunk {
                query = query.bind(*source).bind(target);
            }
            query.execute(self.tx.conn()).await?;
        }
        Ok(())
    }

    /// The objects holding a link to `target` (a normalized DN).
    pub async fn linking_to(&mut self, target: &str) -> Result<Vec<AdObject>, StoreError> {
        sqlx::query(
            "SELECT o.guid, o.dn, o.class, o.attrs, o.deleted FROM ad_links l \
             JOIN ad_objects o ON o.guid = l.source WHERE l.target = $1",
        )
        .bind(target)
        .fetch_all(self.tx.conn())
        .await?
        .iter()
        .map(parse_ad_object)
        .collect()
    }

    /// Records that a full import saw these objects unchanged (keeps them out of the sweep).
    pub async fn touch_ad_objects(
        &mut self,
        guids: &[&str],
        generation: i64,
    ) -> Result<(), StoreError> {
        for chunk in guids.chunks(PARAMS_MAX) {
            let sql = self.positional(format!(
                "UPDATE ad_objects SET import_generation = $1 WHERE guid IN ({})",
                params(2, chunk.len())
            ));
            bind_all(sqlx::query(&sql).bind(generation), chunk)
                .execute(self.tx.conn())
                .await?;
        }
        Ok(())
    }

    /// These objects as stored, by guid: enough to tell an unchanged object, or a rename,
    /// without decoding its attributes.
    pub async fn stored_ad_objects(
        &mut self,
        guids: &[&str],
    ) -> Result<HashMap<String, StoredAdObject>, StoreError> {
        let mut found = HashMap::with_capacity(guids.len());
        for chunk in guids.chunks(PARAMS_MAX) {
            let sql = self.positional(format!(
                "SELECT guid, dn, class, attrs, deleted FROM ad_objects WHERE guid IN ({})",
                params(1, chunk.len())
            ));
            for row in bind_all(sqlx::query(&sql), chunk)
                .fetch_all(self.tx.conn())
                .await?
            {
                found.insert(
                    row.try_get("guid")?,
                    StoredAdObject {
                        dn: row.try_get("dn")?,
                        class: row.try_get("class")?,
                        attrs: row.try_get("attrs")?,
                        deleted: row.try_get::<i64, _>("deleted")? != 0,
                    },
                );
            }
        }
        Ok(found)
    }

    /// After a full import: objects it did not see are gone from AD.
    pub async fn sweep_unseen(&mut self, generation: i64) -> Result<u64, StoreError> {
        const UNSEEN: &str = "guid > $1 AND guid <= $2 AND import_generation < $3 AND deleted = 0";
        self.update_in_guid_ranges(
            &[
                // Pending at the revision the update below makes; before it, which ends the match.
                &format!(
                    "INSERT INTO ad_pending (guid, revision) \
                     SELECT guid, revision + 1 FROM ad_objects WHERE {UNSEEN} \
                     ON CONFLICT (guid) DO UPDATE SET revision = excluded.revision"
                ),
                &format!(
                    "UPDATE ad_objects SET deleted = 1, revision = revision + 1 WHERE {UNSEEN}"
                ),
            ],
            Some(generation),
        )
        .await
    }

    pub async fn mark_all_pending(&mut self) -> Result<(), StoreError> {
        self.update_in_guid_ranges(
            &["INSERT INTO ad_pending (guid, revision) \
               SELECT guid, revision FROM ad_objects WHERE guid > $1 AND guid <= $2 \
               ON CONFLICT (guid) DO NOTHING"],
            None,
        )
        .await?;
        Ok(())
    }

    /// Runs `statements`, each a write about the objects with `$1 < guid <= $2` (and `arg` as
    /// `$3`), over every object, `UPDATE_RANGE` guids at a time: on SQLite a statement's
    /// journal holds in memory every page it changes. Returns the number of objects the last
    /// statement changed.
    async fn update_in_guid_ranges(
        &mut self,
        statements: &[&str],
        arg: Option<i64>,
    ) -> Result<u64, StoreError> {
        let mut after = String::new();
        let mut changed = 0;
        loop {
            let last: Option<String> = sqlx::query(
                "SELECT MAX(guid) AS last FROM \
                 (SELECT guid FROM ad_objects WHERE guid > $1 ORDER BY guid LIMIT $2) AS next",
            )
            .bind(&after)
            .bind(UPDATE_RANGE)
            .fetch_one(self.tx.conn())
            .await?
            .try_get("last")?;
            let Some(last) = last else {
                return Ok(changed);
            };
            let mut last_changed = 0;
            for sql in statements {
                let mut query = sqlx::query(sql).bind(&after).bind(&last);
                if let Some(arg) = arg {
                    query = query.bind(arg);
                }
                last_changed = query.execute(self.tx.conn()).await?.rows_affected();
            }
            changed += last_changed;
            after = last;
        }
    }

    /// Runs the statement `sql` makes of an `IN` list for each chunk of `keys`, bound to it.
    async fn execute_per_chunk(
        &mut self,
        keys: &[&str],
        sql: impl Fn(&str) -> String,
    ) -> Result<(), StoreError> {
        for chunk in keys.chunks(PARAMS_MAX) {
            let sql = self.positional(sql(&params(1, chunk.len())));
            bind_all(sqlx::query(&sql), chunk)
                .execute(self.tx.conn())
                .await?;
        }
        Ok(())
    }

    /// Runs the statement `sql` makes of a `(guid, revision)` row list on each chunk of
    /// `revisions`; returns what it returns.
    async fn per_revision_chunk(
        &mut self,
        revisions: &[(&str, i64)],
        sql: impl Fn(&str) -> String,
    ) -> Result<Vec<AnyRow>, StoreError> {
        const COLUMNS: usize = 2;
        let mut rows = Vec::new();
        for chunk in revisions.chunks(PARAMS_MAX / COLUMNS) {
            let sql = self.positional(sql(&value_rows(COLUMNS, chunk.len())));
            let mut query = sqlx::query(&sql);
            for (guid, revision) in chunk {
                query = query.bind(*guid).bind(*revision);
            }
            rows.extend(query.fetch_all(self.tx.conn()).await?);
        }
        Ok(rows)
    }

    /// Marks these objects synchronized, each only at the revision that was synchronized (one
    /// imported again meanwhile stays pending).
    pub async fn clear_pending(&mut self, synced: &[PendingSync]) -> Result<(), StoreError> {
        let revisions: Vec<(&str, i64)> = synced
            .iter()
            .map(|p| (p.key.as_str(), p.revision))
            .collect();
        self.per_revision_chunk(&revisions, clear_pending_sql)
            .await?;
        Ok(())
    }

    /// Clears the recorded errors of these objects.
    pub async fn clear_errors(&mut self, guids: &[&str]) -> Result<(), StoreError> {
        self.execute_per_chunk(guids, |list| {
            format!("DELETE FROM object_errors WHERE guid IN ({list})")
        })
        .await
    }

    /// Forgets an AD object that is deleted and no longer joined to anything.
    pub async fn forget_ad_object(&mut self, guid: &str) -> Result<(), StoreError> {
        for table in ["ad_objects", "ad_pending", "ad_unresolved", "metaverse"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE guid = $1"))
                .bind(guid)
                .execute(self.tx.conn())
                .await?;
        }
        Ok(())
    }

    pub async fn forget_metaverse(&mut self, guid: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM metaverse WHERE guid = $1")
            .bind(guid)
            .execute(self.tx.conn())
            .await?;
        Ok(())
    }

    /// Records whether the objects' last rendering left references unresolved.
    pub async fn set_unresolved_refs_of(
        &mut self,
        guids: &[&str],
        unresolved: bool,
    ) -> Result<(), StoreError> {
        self.execute_per_chunk(guids, |list| match unresolved {
            true => format!(
                "INSERT INTO ad_unresolved (guid) SELECT guid FROM ad_objects \
                 WHERE guid IN ({list}) ON CONFLICT (guid) DO NOTHING"
            ),
            false => format!("DELETE FROM ad_unresolved WHERE guid IN ({list})"),
        })
        .await
    }

    /// New cloud objects exist: objects waiting for a reference target are synced again,
    /// `UPDATE_RANGE` per statement (see [`Self::update_in_guid_ranges`]).
    pub async fn retry_unresolved_refs(&mut self) -> Result<u64, StoreError> {
        let mut changed = 0;
        loop {
            let done = sqlx::query(RETRY_UNRESOLVED)
                .bind(UPDATE_RANGE)
                .execute(self.tx.conn())
                .await?
                .rows_affected();
            if done == 0 {
                return Ok(changed);
            }
            changed += done;
        }
    }

    /// Writes the metaverse rows of a batch in as few statements as the bind limit allows;
    /// rows that hold the same values already are not rewritten (a full sync's usual case).
    pub async fn put_metaverse(&mut self, rows: &[MetaverseRow]) -> Result<(), StoreError> {
        const COLUMNS: usize = 4;
        for chunk in rows.chunks(PARAMS_MAX / COLUMNS) {
            let sql = self.positional(format!(
                "INSERT INTO metaverse (guid, mv_type, anchor, attrs) VALUES {} \
                 ON CONFLICT (guid) DO UPDATE SET mv_type = excluded.mv_type, \
                 anchor = excluded.anchor, attrs = excluded.attrs \
                 WHERE metaverse.attrs <> excluded.attrs OR metaverse.anchor <> excluded.anchor \
                 OR metaverse.mv_type <> excluded.mv_type",
                value_rows(COLUMNS, chunk.len())
            ));
            let mut query = sqlx::query(&sql);
            for row in chunk {
                query = query
                    .bind(&row.guid)
                    .bind(&row.mv_type)
                    .bind(&row.anchor)
                    .bind(&row.attrs);
            }
            query.execute(self.tx.conn()).await?;
        }
        Ok(())
    }

    /// Writes pending exports in as few statements as the bind limit allows.
    pub async fn put_pending_exports(
        &mut self,
        exports: &[PendingExport],
    ) -> Result<(), StoreError> {
        const COLUMNS: usize = 8;
        for chunk in exports.chunks(PARAMS_MAX / COLUMNS) {
            let sql = self.positional(format!(
                "INSERT INTO pending_exports (guid, dn, kind, action, anchor, doc, join_keys, unresolved) \
                 VALUES {} \
                 ON CONFLICT (guid) DO UPDATE SET dn = excluded.dn, kind = excluded.kind, \
                 action = excluded.action, anchor = excluded.anchor, doc = excluded.doc, \
                 join_keys = excluded.join_keys, unresolved = excluded.unresolved, \
                 revision = pending_exports.revision + 1",
                value_rows(COLUMNS, chunk.len())
            ));
            let mut query = sqlx::query(&sql);
            for export in chunk {
                query = query
                    .bind(&export.guid)
                    .bind(&export.dn)
                    .bind(export.kind.name())
                    .bind(export.action.as_str())
                    .bind(&export.anchor)
                    .bind(export.doc.to_string())
                    .bind(serde_json::to_string(&export.join).unwrap_or_else(|_| "[]".into()))
                    .bind(i64::from(export.unresolved));
            }
            query.execute(self.tx.conn()).await?;
        }
        Ok(())
    }

    pub async fn delete_pending_exports(&mut self, guids: &[&str]) -> Result<(), StoreError> {
        self.execute_per_chunk(guids, |list| {
            format!("DELETE FROM pending_exports WHERE guid IN ({list})")
        })
        .await
    }

    /// Removes the pending exports a confirmation covers, each only at the revision that was
    /// sent; returns the guids removed (those not rewritten since they were read).
    pub async fn delete_sent_exports(
        &mut self,
        sent: &[PendingExport],
    ) -> Result<HashSet<String>, StoreError> {
        let revisions: Vec<(&str, i64)> = sent
            .iter()
            .map(|export| (export.guid.as_str(), export.revision))
            .collect();
        self.per_revision_chunk(&revisions, delete_sent_sql)
            .await?
            .iter()
            .map(|row| Ok(row.try_get("guid")?))
            .collect()
    }

    pub async fn put_cloud_object(&mut self, object: &CloudObject) -> Result<(), StoreError> {
        self.put_cloud_objects(std::slice::from_ref(object)).await
    }

    /// Writes cloud objects in as few statements as the bind limit allows.
    pub async fn put_cloud_objects(&mut self, objects: &[CloudObject]) -> Result<(), StoreError> {
        const COLUMNS: usize = 5;
        for chunk in objects.chunks(PARAMS_MAX / COLUMNS) {
            let sql = self.positional(format!(
                "INSERT INTO cloud_objects (guid, kind, cloud_id, anchor, doc) VALUES {} \
                 ON CONFLICT (guid) DO UPDATE SET kind = excluded.kind, \
                 cloud_id = excluded.cloud_id, anchor = excluded.anchor, doc = excluded.doc",
                value_rows(COLUMNS, chunk.len())
            ));
            let mut query = sqlx::query(&sql);
            for object in chunk {
                query = query
                    .bind(&object.guid)
                    .bind(object.kind.name())
                    .bind(&object.cloud_id)
                    .bind(&object.anchor)
                    .bind(object.doc.to_string());
            }
            query.execute(self.tx.conn()).await?;
        }
        Ok(())
    }

    pub async fn delete_cloud_object(&mut self, guid: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM cloud_objects WHERE guid = $1")
            .bind(guid)
            .execute(self.tx.conn())
            .await?;
        Ok(())
    }

    pub async fn set_error(
        &mut self,
        guid: &str,
        dn: &str,
        stage: &str,
        message: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO object_errors (guid, dn, stage, message, at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (guid) DO UPDATE SET dn = excluded.dn, stage = excluded.stage, \
             message = excluded.message, at = excluded.at",
        )
        .bind(guid)
        .bind(dn)
        .bind(stage)
        .bind(message)
        .bind(at)
        .execute(self.tx.conn())
        .await?;
        Ok(())
    }

    pub async fn clear_error(&mut self, guid: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM object_errors WHERE guid = $1")
            .bind(guid)
            .execute(self.tx.conn())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use idbridge_core::ObjectGuid;
    use idbridge_rules::Value as AttrValue;

    use super::*;

    fn object(guid: u8, dn: &str, members: &[&str]) -> AdObject {
        let mut attrs = idbridge_engine::Attributes::new();
        if !members.is_empty() {
            let values = members
                .iter()
                .map(|m| AttrValue::Str((*m).into()))
                .collect();
            attrs.insert("member".into(), values);
        }
        AdObject {
            guid: ObjectGuid::from_bytes(&[guid; 16]).unwrap(),
            dn: Dn::parse(dn).unwrap(),
            class: "group".into(),
            attrs,
            deleted: false,
        }
    }

    fn holders(found: &[AdObject]) -> Vec<String> {
        found.iter().map(|o| o.dn.to_string()).collect()
    }

    async fn links_are_indexed_and_filled_on_upgrade(url: Secret) {
        let ann = Dn::parse("CN=Ann,OU=Staff,DC=lab").unwrap();
        let store = SyncStore::open(&url).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        tx.put_ad_object(&object(1, "CN=Team,DC=lab", &["cn=ann,ou=staff,dc=lab"]), 0)
            .await
            .unwrap();
        tx.put_ad_object(&object(2, "CN=All,DC=lab", &["CN=Team,DC=lab"]), 0)
            .await
            .unwrap();
        assert_eq!(
            holders(&tx.linking_to(ann.normalized()).await.unwrap()),
            ["CN=Team,DC=lab"]
        );
        // A store made before the index: the next open fills it.
        sqlx::query("DELETE FROM ad_links")
            .execute(tx.tx.conn())
            .await
            .unwrap();
        sqlx::query("DELETE FROM agent_state WHERE key = $1")
            .bind(LINKS_KEY)
            .execute(tx.tx.conn())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        drop(store);
        let store = SyncStore::open(&url).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        assert_eq!(
            holders(&tx.linking_to(ann.normalized()).await.unwrap()),
            ["CN=Team,DC=lab"]
        );
        // Rewritten without the link: no longer a holder.
        tx.put_ad_object(&object(1, "CN=Team,DC=lab", &[]), 0)
            .await
            .unwrap();
        assert!(tx.linking_to(ann.normalized()).await.unwrap().is_empty());
        tx.commit().await.unwrap();
    }

    /// A store made before synchronization state had tables of its own keeps it on upgrade:
    /// what waited for synchronization still waits, at its revision, and what waited for a
    /// reference is retried.
    async fn sync_state_leaves_the_rows_on_upgrade(url: Secret) {
        const BEFORE: Schema = Schema {
            version_table: SCHEMA.version_table,
            sqlite: SCHEMA.sqlite.split_at(5).0,
            postgres: SCHEMA.postgres.split_at(5).0,
        };
        let old = Database::open(&url, &BEFORE, SqliteUse::Sequential)
            .await
            .unwrap();
        for (i, (name, pending, unresolved)) in [("a", 1, 0), ("b", 0, 1), ("c", 0, 0)]
            .into_iter()
            .enumerate()
        {
            let guid = ObjectGuid::from_bytes(&[i as u8 + 1; 16])
                .unwrap()
                .to_string();
            sqlx::query(
                "INSERT INTO ad_objects (guid, dn, dn_key, class, attrs, pending_sync, \
                 unresolved_refs, revision) VALUES ($1, $2, $3, 'user', '{}', $4, $5, 3)",
            )
            .bind(guid)
            .bind(format!("CN={name},DC=lab"))
            .bind(format!("cn={name},dc=lab"))
            .bind(pending)
            .bind(unresolved)
            .execute(old.pool())
            .await
            .unwrap();
        }
        drop(old);
        let store = SyncStore::open(&url).await.unwrap();
        let pending = store.pending_sync("", 10).await.unwrap();
        let waiting: Vec<(String, i64)> = pending
            .iter()
            .map(|p| (p.object.dn.to_string(), p.revision))
            .collect();
        assert_eq!(waiting, [("CN=a,DC=lab".to_owned(), 3)]);
        let mut tx = store.begin().await.unwrap();
        assert_eq!(tx.retry_unresolved_refs().await.unwrap(), 1);
        tx.commit().await.unwrap();
        assert_eq!(store.pending_sync_count().await.unwrap(), 2);
    }

    /// More objects than one statement holds: every row and link lands, and writing a page again
    /// replaces the links of exactly its objects.
    async fn a_page_is_written_in_chunks(url: Secret) {
        let team = Dn::parse("CN=Team,DC=lab").unwrap();
        let groups: Vec<AdObject> = (0..150u8)
            .map(|i| object(i, &format!("CN=G{i},DC=lab"), &["CN=Team,DC=lab"]))
            .collect();
        let store = SyncStore::open(&url).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        tx.put_ad_objects(&groups.iter().collect::<Vec<_>>(), 7)
            .await
            .unwrap();
        assert_eq!(tx.linking_to(team.normalized()).await.unwrap().len(), 150);
        let emptied: Vec<AdObject> = (0..100u8)
            .map(|i| object(i, &format!("CN=G{i},DC=lab"), &[]))
            .collect();
        tx.put_ad_objects(&emptied.iter().collect::<Vec<_>>(), 8)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        assert_eq!(tx.linking_to(team.normalized()).await.unwrap().len(), 50);
        tx.commit().await.unwrap();
        assert_eq!(store.pending_sync_count().await.unwrap(), 150);
        let g149 = ObjectGuid::from_bytes(&[149; 16]).unwrap().to_string();
        assert_eq!(
            store
                .ad_object(&g149)
                .await
                .unwrap()
                .unwrap()
                .dn
                .to_string(),
            "CN=G149,DC=lab"
        );
    }

    fn export(guid: &str, title: &str) -> PendingExport {
        PendingExport {
            guid: guid.into(),
            dn: format!("CN={guid},DC=lab"),
            kind: CloudKind::User,
            action: ExportAction::Provision,
            anchor: guid.into(),
            doc: serde_json::json!({"userName": format!("{guid}@lab"), "title": title}),
            join: Vec::new(),
            unresolved: false,
            revision: 0,
            doc_bytes: 0,
        }
    }

    /// An export rewritten while an earlier version was sent stays pending when the sent
    /// version is confirmed; one left alone is removed. Likewise for synchronization.
    async fn done_marks_only_the_revision_read(url: Secret) {
        let store = SyncStore::open(&url).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        tx.put_pending_exports(&[export("ann", "old"), export("bob", "old")])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let (sent, _) = store
            .pending_exports_of(&["ann", "bob"], usize::MAX)
            .await
            .unwrap();
        assert_eq!(sent.len(), 2);
        // Synchronized again while on the wire.
        let mut tx = store.begin().await.unwrap();
        tx.put_pending_exports(&[export("ann", "new")])
            .await
            .unwrap();
        let removed = tx.delete_sent_exports(&sent).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(removed, HashSet::from(["bob".to_string()]));
        let left = store.pending_exports().await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].guid, "ann");
        assert_eq!(left[0].doc["title"], "new");
        let mut tx = store.begin().await.unwrap();
        let removed = tx.delete_sent_exports(&left[..1]).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(removed.len(), 1);
        assert!(store.pending_exports().await.unwrap().is_empty());

        // Likewise an object imported again while it was synchronized stays pending.
        let team = object(1, "CN=Team,DC=lab", &[]);
        let mut tx = store.begin().await.unwrap();
        tx.put_ad_object(&team, 1).await.unwrap();
        tx.commit().await.unwrap();
        let read = store.pending_sync("", 10).await.unwrap();
        assert_eq!(read.len(), 1);
        let mut tx = store.begin().await.unwrap();
        tx.put_ad_object(&object(1, "CN=Team,DC=lab", &["CN=Ann,DC=lab"]), 2)
            .await
            .unwrap();
        tx.clear_pending(&read).await.unwrap();
        tx.commit().await.unwrap();
        let read = store.pending_sync("", 10).await.unwrap();
        assert_eq!(
            read.len(),
            1,
            "the second import is still to be synchronized"
        );
        assert!(read[0].object.attrs.contains_key(&"member".into()));
        let mut tx = store.begin().await.unwrap();
        tx.clear_pending(&read).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(store.pending_sync_count().await.unwrap(), 0);
    }

    /// A page of pending exports ends when its documents reach the budget; what is left over
    /// is named, and nothing is lost or read twice.
    async fn export_pages_are_bounded_by_document_size(url: Secret) {
        let store = SyncStore::open(&url).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let big = "x".repeat(1000);
        tx.put_pending_exports(&[export("ann", &big), export("bob", &big), export("cy", &big)])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        // Two documents pass 1,500 bytes: the page stops after the second.
        let (page, left) = store.pending_exports_after(None, 10, 1500).await.unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!(left.len(), 1);
        let cursor = PendingCursor::after(&page[1]);
        let (rest, left) = store
            .pending_exports_after(Some(&cursor), 10, 1500)
            .await
            .unwrap();
        assert_eq!(rest.len(), 1);
        assert!(left.is_empty());
        let mut seen: Vec<String> = page.iter().chain(&rest).map(|e| e.guid.clone()).collect();
        seen.sort();
        assert_eq!(seen, ["ann", "bob", "cy"]);
        // By guid: one document over the budget still makes a page of one.
        let (page, mut left) = store
            .pending_exports_of(&["cy", "ann", "gone", "bob"], 10)
            .await
            .unwrap();
        assert_eq!(page.len(), 1);
        left.sort();
        let mut expected: Vec<String> = ["ann", "bob", "cy"]
            .into_iter()
            .filter(|g| *g != page[0].guid)
            .map(String::from)
            .collect();
        expected.sort();
        assert_eq!(
            left, expected,
            "the absent guid is not left over, the others are"
        );
    }

    /// What a sync batch runs per object finds its rows through an index: on SQLite a
    /// statement that reads the whole connector space (hundreds of MB at 100k objects) per
    /// batch made the full sync spend most of its time reading.
    #[tokio::test]
    async fn sqlite_finds_the_rows_of_a_batch_through_indexes() {
        let file = idbridge_testkit::TestSqlite::create("plans").unwrap();
        let store = SyncStore::open(&Secret::new(file.url())).await.unwrap();
        let rows = value_rows(2, 3);
        let statements = [
            PENDING_SYNC.to_owned(),
            RETRY_UNRESOLVED.to_owned(),
            clear_pending_sql(&rows),
            delete_sent_sql(&rows),
        ];
        for sql in statements {
            let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                .fetch_all(store.db.pool())
                .await
                .unwrap()
                .iter()
                .map(|row| row.try_get::<String, _>(3).unwrap())
                .collect();
            let scans = [
                "SCAN ad_objects",
                "SCAN o",
                "SCAN pending_exports",
                "SCAN ad_pending",
                "SCAN p",
            ];
            assert!(
                plan.iter().all(|step| !scans.contains(&step.as_str())),
                "{sql}: {plan:?}"
            );
            assert!(
                plan.iter()
                    .any(|step| step.contains("INDEX") || step.contains("PRIMARY KEY")),
                "{sql}: {plan:?}"
            );
        }
    }

    /// The scan of every pending export pages through them in guid order whatever their kind:
    /// each once, users and groups interleaved as their guids fall.
    async fn export_scan_reads_every_kind_in_guid_order(url: Secret) {
        let store = SyncStore::open(&url).await.unwrap();
        let group = |guid: &str| PendingExport {
            kind: CloudKind::Group,
            ..export(guid, "group")
        };
        let mut tx = store.begin().await.unwrap();
        tx.put_pending_exports(&[export("d", "u"), group("b"), export("a", "u"), group("c")])
            .await
            .unwrap();
        tx.put_pending_exports(&[export("e", "u")]).await.unwrap();
        tx.commit().await.unwrap();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let (page, left) = store
                .pending_exports_after(cursor.as_ref(), 2, usize::MAX)
                .await
                .unwrap();
            assert!(left.is_empty());
            let Some(last) = page.last() else { break };
            cursor = Some(PendingCursor::after(last));
            seen.extend(page.iter().map(|e| (e.guid.clone(), e.kind)));
        }
        let expected: Vec<(String, CloudKind)> = [
            ("a", CloudKind::User),
            ("b", CloudKind::Group),
            ("c", CloudKind::Group),
            ("d", CloudKind::User),
            ("e", CloudKind::User),
        ]
        .into_iter()
        .map(|(guid, kind)| (guid.to_owned(), kind))
        .collect();
        assert_eq!(seen, expected);
    }

    idbridge_testkit::on_sqlite_and_postgres!(
        export_scan_on_sqlite,
        export_scan_on_postgres,
        "export scan",
        async |url: String| export_scan_reads_every_kind_in_guid_order(Secret::new(url)).await
    );

    idbridge_testkit::on_sqlite_and_postgres!(
        export_pages_on_sqlite,
        export_pages_on_postgres,
        "export pages",
        async |url: String| export_pages_are_bounded_by_document_size(Secret::new(url)).await
    );

    idbridge_testkit::on_sqlite_and_postgres!(
        revisions_on_sqlite,
        revisions_on_postgres,
        "revisions",
        async |url: String| done_marks_only_the_revision_read(Secret::new(url)).await
    );

    idbridge_testkit::on_sqlite_and_postgres!(
        pages_on_sqlite,
        pages_on_postgres,
        "pages",
        async |url: String| a_page_is_written_in_chunks(Secret::new(url)).await
    );

    /// The updates that may change every object reach every object, over more ranges than one
    /// statement takes.
    async fn updates_of_every_object_go_in_ranges(url: Secret) {
        let count = UPDATE_RANGE as u64 * 2 + 7;
        let objects: Vec<AdObject> = (0..count)
            .map(|i| {
                let mut guid = [0u8; 16];
                guid[..8].copy_from_slice(&i.to_be_bytes());
                AdObject {
                    guid: ObjectGuid::from_bytes(&guid).unwrap(),
                    dn: Dn::parse(&format!("CN=U{i},DC=lab")).unwrap(),
                    class: "user".into(),
                    attrs: idbridge_engine::Attributes::new(),
                    deleted: false,
                }
            })
            .collect();
        let store = SyncStore::open(&url).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        tx.put_ad_objects(&objects.iter().collect::<Vec<_>>(), 1)
            .await
            .unwrap();
        sqlx::query("DELETE FROM ad_pending")
            .execute(tx.tx.conn())
            .await
            .unwrap();
        tx.mark_all_pending().await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(store.pending_sync_count().await.unwrap(), count);
        let mut tx = store.begin().await.unwrap();
        for sql in [
            "DELETE FROM ad_pending",
            "INSERT INTO ad_unresolved (guid) SELECT guid FROM ad_objects",
        ] {
            sqlx::query(sql).execute(tx.tx.conn()).await.unwrap();
        }
        assert_eq!(tx.retry_unresolved_refs().await.unwrap(), count);
        assert_eq!(tx.sweep_unseen(2).await.unwrap(), count);
        assert_eq!(tx.sweep_unseen(2).await.unwrap(), 0);
        tx.commit().await.unwrap();
        assert_eq!(store.pending_sync_count().await.unwrap(), count);
    }

    idbridge_testkit::on_sqlite_and_postgres!(
        ranges_on_sqlite,
        ranges_on_postgres,
        "ranges",
        async |url: String| updates_of_every_object_go_in_ranges(Secret::new(url)).await
    );

    idbridge_testkit::on_sqlite_and_postgres!(
        sync_state_upgrade_on_sqlite,
        sync_state_upgrade_on_postgres,
        "sync state upgrade",
        async |url: String| sync_state_leaves_the_rows_on_upgrade(Secret::new(url)).await
    );

    idbridge_testkit::on_sqlite_and_postgres!(
        links_on_sqlite,
        links_on_postgres,
        "links",
        async |url: String| links_are_indexed_and_filled_on_upgrade(Secret::new(url)).await
    );
}
