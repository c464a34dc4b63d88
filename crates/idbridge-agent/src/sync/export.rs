//! Export: pending exports -> the SCIM server. Each confirmed export commits the cloud
//! connector-space object and removes the pending export together.
//!
//! Idempotence: a provision first looks for the object by its anchor (hard match), so an export
//! interrupted after the server created the object but before we recorded it joins that object
//! on retry instead of creating a duplicate.

mod matching;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::StreamExt as _;
use idbridge_ad::AdConnector;
use idbridge_core::{AttrName, Dn, ObjectGuid};
use idbridge_engine::{
    managed_attributes, resolve_references, unresolved_references, CloudKind, ScimDialect,
};
use idbridge_scim::ResourceKind;
use idbridge_scim_client::{minimal_patch, PatchOp, ScimClient, ScimClientError, Write};
use serde_json::{json, Value};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::Notify;

use self::matching::Matcher;
use super::store::{CloudObject, ExportAction, PendingCursor, PendingExport, RunCounts, SyncStore};
use super::{Outcome, SyncContext, SyncError};
use crate::config::Deprovision;

const CONSISTENCY_GUID: &str = "mS-DS-ConsistencyGuid";
/// The `object_errors` stage of a failed anchor writeback.
const ANCHOR_STAGE: &str = "anchor";

/// Exports per chunk, at most. A chunk's provisions cost one search per join position
/// (`matching`), its writes one Bulk request (split to the server's maxOperations and
/// maxPayloadSize) or, without Bulk, singles `REQUESTS_IN_FLIGHT` at a time, and its
/// confirmations one commit: with 200, these per-chunk costs weigh little beside the
/// per-object ones, the values fit a few `or` filters, and a Bulk request that fails as a whole
/// fails at most 200 objects (retried by the next run).
const EXPORT_CHUNK: usize = 200;

/// A chunk also ends once its documents reach this size. The chunks queued and in flight hold
/// their documents parsed, and a group's members take several times a user's attributes: a
/// chunk of users is cut by count, one of groups shorter (one large group goes alone).
const EXPORT_CHUNK_DOC_BYTES: usize = 256 << 10;

/// Chunks in flight at once (and planned ahead of them): while the server works on some, the
/// agent plans the next and commits the confirmations of the last (each side waited for the
/// other when one chunk went at a time). A chunk is confirmed as soon as it is back, in
/// whatever order: its references were resolved before it was sent, so chunks do not depend
/// on each other, and a slow one does not hold the others' confirmations (nor the chunks after
/// them).
const CHUNKS_IN_FLIGHT: usize = 8;

/// The SCIM resource type a metaverse object's kind exports to.
fn resource_kind(kind: CloudKind) -> ResourceKind {
    match kind {
        CloudKind::User => ResourceKind::User,
        CloudKind::Group => ResourceKind::Group,
        CloudKind::Contact => ResourceKind::Contact,
    }
}

/// What the export calls of one run share.
#[derive(Default)]
pub(crate) struct ExportPass {
    /// Objects that failed: not tried again in this run.
    pub failed: HashSet<String>,
    /// How many of them were deprovisions (still pending, but not deletions this run sends).
    pub failed_deletes: u64,
    /// Objects joined to a cloud object in this run (guid, DN).
    pub joined: Vec<(String, String)>,
    /// Exports held back because their references do not resolve yet, by the references they
    /// wait for: a confirmation that joins the last of them releases them into the same call.
    pub waiting: Waiting,
    /// Normalized DN -> cloud id of the objects this run exported. Most references a full cycle
    /// resolves are to them (a group's members, a user's manager), and the store would read
    /// each from a random page of its cloud objects.
    exported_ids: HashMap<String, String>,
    /// The connection to the server, kept from one call to the next: a full cycle makes
    /// several calls, and each new client read the server's configuration and opened its TLS
    /// connections again.
    client: Option<ScimClient>,
}

/// Exports held back for references, by the references they wait for: when an object is
/// joined, those waiting only for it can go.
#[derive(Default)]
pub(crate) struct Waiting {
    /// DN key -> the held objects referring to it.
    by_target: HashMap<String, Vec<String>>,
    /// Held object -> how many of its references are still missing.
    missing: HashMap<String, usize>,
}

impl Waiting {
    /// Holds `guid` until the objects of `targets` (DN keys) are joined.
    pub(crate) fn hold(&mut self, guid: String, mut targets: Vec<String>) {
        targets.sort_unstable();
        targets.dedup();
        self.missing.insert(guid.clone(), targets.len());
        for target in targets {
            self.by_target.entry(target).or_default().push(guid.clone());
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.missing.is_empty()
    }

    /// Whether `guid` is held, waiting for a reference.
    pub(crate) fn holds(&self, guid: &str) -> bool {
        self.missing.contains_key(guid)
    }

    /// How many objects are held.
    pub(crate) fn len(&self) -> usize {
        self.missing.len()
    }

    /// The held objects whose last missing reference is `key` (a normalized DN), just joined.
    pub(crate) fn exported(&mut self, key: &str, released: &mut Vec<String>) {
        for guid in self.by_target.remove(key).unwrap_or_default() {
            if let Some(missing) = self.missing.get_mut(&guid) {
                *missing = missing.saturating_sub(1);
                if *missing == 0 {
                    self.missing.remove(&guid);
                    released.push(guid);
                }
            }
        }
    }
}

/// Which pending exports an export call sends.
pub(crate) enum Exports<'a> {
    /// All of them.
    All,
    /// Those of these objects.
    Of(Vec<String>),
    /// Those of the objects synchronization queues, batch by batch, until it closes the
    /// channel (a full import's follower).
    Queued(&'a mut UnboundedReceiver<Vec<String>>),
}

/// Exports planned together: a slice of a page, sent as one chunk.
struct Chunk {
    exports: Vec<PendingExport>,
    /// The cloud objects they are joined to, by position.
    joined: Vec<Option<CloudObject>>,
    /// Those whose references were all completed before sending.
    refs_completed: HashSet<String>,
}

/// A chunk as the server answered it, to be confirmed in the store.
struct ConfirmedChunk {
    chunk: Chunk,
    results: Vec<Result<Option<CloudObject>, ExportFailure>>,
}

/// Pending exports read a page at a time: first those of the objects named (by the caller,
/// by synchronization or by a release), then, when every pending export is asked for, the
/// rest in the store's order.
struct PendingPages<'a> {
    only: Vec<String>,
    /// Reading every pending export: where the scan stands (`None` once it ended or when it
    /// is not asked for).
    scan: Option<Option<PendingCursor>>,
    /// Synchronization's queue, until it closes.
    queued: Option<&'a mut UnboundedReceiver<Vec<String>>>,
}

/// Pending exports per page (their documents are what an export holds in memory: a page being
/// planned, and the chunks queued and in flight).
const EXPORT_PAGE: usize = 2000;

/// A page also ends once its documents reach this size: a page of users stays whole, one of
/// groups with many members is cut short (parsed, it would take ~15 times as much).
const EXPORT_PAGE_DOC_BYTES: usize = 4 << 20;

impl<'a> PendingPages<'a> {
    fn new(exports: Exports<'a>) -> Self {
        let (only, scan, queued) = match exports {
            Exports::All => (Vec::new(), Some(None), None),
            Exports::Of(only) => (only, None, None),
            Exports::Queued(queued) => (Vec::new(), None, Some(queued)),
        };
        Self { only, scan, queued }
    }

    /// Takes what synchronization queued meanwhile, and notes when it is done.
    fn take_queued(&mut self) {
        let Some(queued) = self.queued.as_mut() else {
            return;
        };
        loop {
            match queued.try_recv() {
                Ok(mut batch) => self.only.append(&mut batch),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.queued = None;
                    return;
                }
            }
        }
    }

    /// Waits until synchronization queues more, closes its queue, or `other` happens.
    async fn wait(&mut self, other: impl std::future::Future<Output = ()>) {
        match self.queued.as_mut() {
            Some(queued) => tokio::select! {
                batch = queued.recv() => match batch {
                    Some(mut batch) => self.only.append(&mut batch),
                    None => self.queued = None,
                },
                () = other => {}
            },
            None => other.await,
        }
    }

    /// Nothing left to read, now or later (a release aside).
    fn exhausted(&self) -> bool {
        self.only.is_empty() && self.scan.is_none() && self.queued.is_none()
    }

    /// Stops reading: what is left stays pending.
    fn stop(&mut self) {
        self.only.clear();
        self.scan = None;
        self.queued = None;
    }

    /// The next page; `None` when nothing is to be read now.
    async fn next(&mut self, store: &SyncStore) -> Result<Option<Vec<PendingExport>>, SyncError> {
        if !self.only.is_empty() {
            let rest = self.only.split_off(self.only.len().min(EXPORT_PAGE));
            let guids: Vec<&str> = self.only.iter().map(String::as_str).collect();
            let (page, mut left) = store
                .pending_exports_of(&guids, EXPORT_PAGE_DOC_BYTES)
                .await?;
            left.extend(rest);
            self.only = left;
            return Ok(Some(page));
        }
        let Some(cursor) = &self.scan else {
            return Ok(None);
        };
        let (page, left) = store
            .pending_exports_after(cursor.as_ref(), EXPORT_PAGE as i64, EXPORT_PAGE_DOC_BYTES)
            .await?;
        self.scan = match page.last() {
            Some(last) if !left.is_empty() || page.len() == EXPORT_PAGE => {
                Some(Some(PendingCursor::after(last)))
            }
            _ => None,
        };
        Ok(Some(page))
    }
}

/// What the parts of one export call share: they run on one task, and take it only between
/// two awaits.
struct Flow<'p> {
    pass: &'p mut ExportPass,
    counts: &'p mut RunCounts,
    /// Users joined by this call (their hashes are due).
    new_users: Vec<ObjectGuid>,
    /// Held objects released by confirmations, for the next page.
    released: Vec<String>,
    /// Objects planned and not yet confirmed: a page read meanwhile skips them (their pending
    /// export is still in the store), so nothing is sent twice. The call ends when nothing is
    /// left to read and this is empty.
    unconfirmed: HashSet<String>,
    sent: u64,
    deprovisions_sent: bool,
    /// Why the call stopped sending (the deletion threshold).
    held: Option<String>,
}

/// Why an export of one object failed, in words for `idbridge sync errors`.
#[derive(Debug)]
enum ExportFailure {
    Conflict(String),
    /// Shared: one batched search may fail for several objects.
    Scim(Arc<ScimClientError>),
    /// The request carrying this object's write (a whole Bulk request) failed.
    Batch(String),
}

impl std::fmt::Display for ExportFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Conflict(m) | Self::Batch(m) => f.write_str(m),
            Self::Scim(e) => write!(f, "{e}"),
        }
    }
}

impl From<ScimClientError> for ExportFailure {
    fn from(e: ScimClientError) -> Self {
        Self::Scim(Arc::new(e))
    }
}

/// Cuts a planned page into chunks of at most `EXPORT_CHUNK` exports and, but for a first one
/// larger alone, `EXPORT_CHUNK_DOC_BYTES` of documents; in order.
fn cut_chunks(page: Vec<PendingExport>) -> Vec<Vec<PendingExport>> {
    let mut chunks: Vec<Vec<PendingExport>> = Vec::new();
    let mut doc_bytes = 0;
    for export in page {
        match chunks.last_mut() {
            Some(chunk)
                if chunk.len() < EXPORT_CHUNK
                    && doc_bytes + export.doc_bytes <= EXPORT_CHUNK_DOC_BYTES =>
            {
                doc_bytes += export.doc_bytes;
                chunk.push(export);
            }
            _ => {
                doc_bytes = export.doc_bytes;
                chunks.push(vec![export]);
            }
        }
    }
    chunks
}

fn id_of(resource: &Value) -> Option<String> {
    resource
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The first SCIM role of `resource` that names an administrator (Entra's "Global
/// Administrator", "User Administrator", ...), by value or display.
fn admin_role(resource: &Value) -> Option<&str> {
    resource
        .get("roles")?
        .as_array()?
        .iter()
        .flat_map(|role| ["value", "display"].map(|k| role.get(k).and_then(Value::as_str)))
        .flatten()
        .find(|name| name.to_ascii_lowercase().contains("admin"))
}

impl SyncContext {
    /// The deletion threshold that applies to `deletes` against `exported` joined objects.
    fn threshold_exceeded(&self, deletes: u64, exported: u64) -> bool {
        let over_count = deletes > self.deletion_threshold;
        let over_percent = self.deletion_threshold_percent.is_some_and(|p| {
            exported > 0 && deletes.saturating_mul(100) > exported.saturating_mul(u64::from(p))
        });
        over_count || over_percent
    }

    /// Why nothing more may be exported now, if the deletions pending (but those that already
    /// failed in this run) exceed the deletion threshold and were not allowed.
    async fn deletion_hold(&self, deletes: u64) -> Result<Option<String>, SyncError> {
        if deletes == 0 {
            return Ok(None);
        }
        let approved = self.store.approved_deletes().await?;
        let exported = self.store.cloud_object_count().await?;
        if deletes <= approved || !self.threshold_exceeded(deletes, exported) {
            return Ok(None);
        }
        Ok(Some(format!(
            "{deletes} deletion(s) pending exceed the deletion threshold ({}{}); nothing was \
             exported. Review them with `idbridge sync preview` and run `idbridge sync \
             allow-deletes` to let them through",
            self.deletion_threshold,
            self.deletion_threshold_percent
                .map(|p| format!(" or {p}%"))
                .unwrap_or_default()
        )))
    }

    /// Sends `exports`, except those of objects that already failed in this run
    /// (`pass.failed`) and, with `hold_unresolved`, those whose references do not all resolve
    /// yet: those wait in `pass.waiting`, and go in this same call once their targets are
    /// exported. Records failures and new joins in `pass`.
    ///
    /// Pages are read and planned while earlier chunks travel and are confirmed, so the
    /// server is kept busy from the first page to the last, across the objects synchronization
    /// queues and those confirmations release.
    pub(crate) async fn export(
        &self,
        counts: &mut RunCounts,
        pass: &mut ExportPass,
        exports: Exports<'_>,
        hold_unresolved: bool,
    ) -> Result<Outcome, SyncError> {
        let (waiting, deletes) = self.store.pending_export_counts().await?;
        if self.staging {
            return Ok(Outcome::Held(format!(
                "staging mode: {waiting} pending export(s) not sent; see `idbridge sync preview`"
            )));
        }
        let deletes = deletes.saturating_sub(pass.failed_deletes);
        if let Some(why) = self.deletion_hold(deletes).await? {
            return Ok(Outcome::Held(why));
        }
        let total = match &exports {
            Exports::All => Some(waiting),
            Exports::Of(only) => Some(only.len() as u64),
            Exports::Queued(_) => None,
        };
        if total == Some(0) {
            return Ok(Outcome::Done);
        }
        // New deletions can come only with what synchronization queues meanwhile.
        let recheck_deletions = matches!(exports, Exports::Queued(_));
        let started = std::time::Instant::now();
        let client = match pass.client.take() {
            Some(client) => client,
            None => ScimClient::connect(self.scim.clone()).await?,
        };
        let matcher = Matcher::new(&client);
        let flow = RefCell::new(Flow {
            pass,
            counts,
            new_users: Vec::new(),
            released: Vec::new(),
            unconfirmed: HashSet::new(),
            sent: 0,
            deprovisions_sent: false,
            held: None,
        });
        let confirmed = Notify::new();
        let (chunk_tx, chunk_rx) = tokio::sync::mpsc::channel::<Chunk>(CHUNKS_IN_FLIGHT);
        let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
        let plan = async {
            // Owned here: dropped when the planning ends, which ends the other two parts.
            let chunk_tx = chunk_tx;
            let mut pages = PendingPages::new(exports);
            loop {
                pages.only.append(&mut flow.borrow_mut().released);
                pages.take_queued();
                let Some(page) = pages.next(&self.store).await? else {
                    let settled = {
                        let flow = flow.borrow();
                        flow.unconfirmed.is_empty() && flow.released.is_empty()
                    };
                    if pages.exhausted() && settled {
                        return Ok::<_, SyncError>(());
                    }
                    pages.wait(confirmed.notified()).await;
                    continue;
                };
                if recheck_deletions && page.iter().any(|p| p.action == ExportAction::Deprovision) {
                    let (_, deletes) = self.store.pending_export_counts().await?;
                    let deletes = deletes.saturating_sub(flow.borrow().pass.failed_deletes);
                    if let Some(why) = self.deletion_hold(deletes).await? {
                        flow.borrow_mut().held = Some(why);
                        pages.stop();
                        continue;
                    }
                }
                for chunk in self.plan_page(page, &flow, hold_unresolved).await? {
                    // Closed only when the sender stopped because the confirmations failed.
                    if chunk_tx.send(chunk).await.is_err() {
                        return Ok(());
                    }
                }
            }
        };
        let send = async {
            let chunks = futures_util::stream::unfold(chunk_rx, |mut rx| async move {
                rx.recv().await.map(|chunk| (chunk, rx))
            });
            let exported = chunks
                .map(|mut chunk| {
                    let (client, matcher) = (&client, &matcher);
                    async move {
                        let results = self
                            .export_chunk(client, matcher, &mut chunk.exports, &chunk.joined)
                            .await;
                        ConfirmedChunk { chunk, results }
                    }
                })
                .buffer_unordered(CHUNKS_IN_FLIGHT);
            let mut exported = std::pin::pin!(exported);
            while let Some(exported) = exported.next().await {
                // The receiver is gone when a confirmation failed.
                if done_tx.send(exported).await.is_err() {
                    break;
                }
            }
            drop(done_tx);
            Ok(())
        };
        let confirm = async {
            while let Some(first) = done_rx.recv().await {
                // Chunks that came back while the last confirmation committed commit together:
                // each transaction rewrites the index pages it touches, so fewer, larger ones
                // cost the store less when it is what the export waits for.
                let mut ready = vec![first];
                while let Ok(more) = done_rx.try_recv() {
                    ready.push(more);
                }
                let objects: usize = ready.iter().map(|c| c.chunk.exports.len()).sum();
                self.confirm_chunks(ready, &flow).await?;
                confirmed.notify_one();
                let sent = flow.borrow().sent;
                self.progress.step("export", sent, objects as u64, total);
            }
            Ok(())
        };
        tokio::try_join!(plan, send, confirm)?;
        let flow = flow.into_inner();
        flow.pass.client = Some(client);
        // An allowance (`sync allow-deletes`) is for one export, even one the threshold
        // stopped halfway.
        if flow.sent > 0 && (deletes > 0 || flow.deprovisions_sent) {
            let mut tx = self.store.begin().await?;
            tx.consume_approved_deletes().await?;
            tx.commit().await?;
        }
        if let Some(why) = flow.held {
            return Ok(Outcome::Held(why));
        }
        if flow.sent == 0 {
            return Ok(Outcome::Done);
        }
        tracing::info!(
            objects = flow.sent,
            held = flow.pass.waiting.len(),
            ms = started.elapsed().as_millis() as u64,
            "export done"
        );
        // Newly joined users' hashes were replicated before they had a cloud object. The
        // daemon reads a few at once, one by one (a targeted hash sync cycle); many, or with
        // no daemon listening, take a full hash sync pass.
        let new_users = flow.new_users;
        match &self.password_changed {
            _ if new_users.is_empty() => {}
            Some(hook) if new_users.len() <= crate::phs::MAX_TARGETED => hook(&new_users),
            _ => {
                if let Err(e) = std::fs::write(&self.phs_request_path, b"") {
                    tracing::warn!(error = %e, "could not request a full password hash sync");
                }
            }
        }
        Ok(Outcome::Done)
    }

    /// Plans a page: skips what failed in this run or is already on its way, puts cloud ids
    /// into reference placeholders for targets that have a cloud object by now (from the
    /// objects this run exported, else the store), holds what still waits for a reference
    /// (with `hold_unresolved`; otherwise what does not resolve is left out, and the object
    /// is synced again once it does), and cuts the rest into chunks with their joined cloud
    /// objects.
    async fn plan_page(
        &self,
        mut page: Vec<PendingExport>,
        flow: &RefCell<Flow<'_>>,
        hold_unresolved: bool,
    ) -> Result<Vec<Chunk>, SyncError> {
        // Each export's placeholders, found once (a group's document can be long).
        let (page, refs, targets) = {
            let flow = flow.borrow();
            page.retain(|p| {
                !flow.pass.failed.contains(&p.guid) && !flow.unconfirmed.contains(&p.guid)
            });
            let refs: Vec<Vec<String>> = page
                .iter()
                .map(|p| match p.unresolved {
                    true => unresolved_references(&p.doc),
                    false => Vec::new(),
                })
                .collect();
            let targets: HashSet<String> = refs
                .iter()
                .flatten()
                .filter(|dn| !flow.pass.exported_ids.contains_key(*dn))
                .cloned()
                .collect();
            (page, refs, targets)
        };
        let stored_ids = if targets.is_empty() {
            HashMap::new()
        } else {
            self.store.cloud_ids_for(&targets).await?
        };
        let mut refs_completed = HashSet::new();
        let page = {
            let mut flow = flow.borrow_mut();
            let flow = &mut *flow;
            let pass = &mut *flow.pass;
            // Read after the lookup: confirmations that came meanwhile count.
            let exported_ids = &pass.exported_ids;
            let cloud_id = |dn: &str| exported_ids.get(dn).or_else(|| stored_ids.get(dn));
            let mut sent = Vec::with_capacity(page.len());
            for (mut export, refs) in page.into_iter().zip(refs) {
                if export.unresolved {
                    let had_refs = !refs.is_empty();
                    let missing: Vec<String> = refs
                        .into_iter()
                        .filter(|dn| cloud_id(dn).is_none())
                        .collect();
                    if had_refs && missing.is_empty() {
                        refs_completed.insert(export.guid.clone());
                    }
                    resolve_references(
                        &mut export.doc,
                        &|dn| cloud_id(dn).cloned(),
                        !hold_unresolved,
                    );
                    export.unresolved = hold_unresolved && !missing.is_empty();
                    if export.unresolved {
                        pass.waiting.hold(export.guid, missing);
                        continue;
                    }
                }
                sent.push(export);
            }
            flow.unconfirmed.extend(sent.iter().map(|p| p.guid.clone()));
            sent
        };
        if page.is_empty() {
            return Ok(Vec::new());
        }
        let guids: Vec<&str> = page.iter().map(|p| p.guid.as_str()).collect();
        let mut joined = self.store.cloud_objects_for(&guids).await?;
        let chunks = cut_chunks(page)
            .into_iter()
            .map(|exports| Chunk {
                joined: exports.iter().map(|e| joined.remove(&e.guid)).collect(),
                refs_completed: exports
                    .iter()
                    .filter(|e| refs_completed.contains(&e.guid))
                    .map(|e| e.guid.clone())
                    .collect(),
                exports,
            })
            .collect();
        Ok(chunks)
    }

    /// Writes the anchor into `mS-DS-ConsistencyGuid` of the objects joined in this run, and
    /// of those whose earlier write failed (e.g. before the right was granted), when they lack
    /// it. A failure is an error on the object, retried by later runs; the export itself
    /// stands. Returns the number of failures.
    pub(crate) async fn write_anchors(
        &self,
        joined: &[(String, String)],
    ) -> Result<i64, SyncError> {
        let mut targets = joined.to_vec();
        targets.extend(
            self.store
                .errors()
                .await?
                .into_iter()
                .filter(|e| e.stage == ANCHOR_STAGE)
                .map(|e| (e.guid, e.dn)),
        );
        let mut missing = Vec::new();
        for (guid, dn) in &targets {
            let held = self.store.ad_object(guid).await?;
            if held.is_some_and(|o| {
                !o.deleted && !o.attrs.contains_key(&AttrName::from(CONSISTENCY_GUID))
            }) {
                if let Ok(parsed) = ObjectGuid::parse(guid) {
                    missing.push((parsed, guid, dn));
                }
            }
        }
        if missing.is_empty() {
            return Ok(0);
        }
        let mut ad = AdConnector::connect(&self.ad).await?;
        let mut failures = 0;
        for (parsed, guid, dn) in missing {
            let result = ad.write_consistency_guid(&parsed).await;
            let mut tx = self.store.begin().await?;
            match result {
                Ok(()) => tx.clear_error(guid).await?,
                Err(e) => {
                    failures += 1;
                    let hint = if e.ldap_code() == Some(50) {
                        ": the agent's account needs Write on mS-DS-ConsistencyGuid of user and \
                         group objects in the synced OUs (see docs/sync.md)"
                    } else {
                        ""
                    };
                    let message =
                        format!("exported, but the anchor was not written back: {e}{hint}");
                    tracing::warn!(%dn, %message, "anchor writeback failed");
                    tx.set_error(guid, dn, ANCHOR_STAGE, &message, self.now())
                        .await?;
                }
            }
            tx.commit().await?;
        }
        if let Err(e) = ad.unbind().await {
            tracing::debug!(error = %e, "unbind after anchor writeback");
        }
        Ok(failures)
    }

    /// Records what the server confirmed for some chunks: in the run's memory first (counts,
    /// failures, new joins, the ids they got, the held exports they release), then in the
    /// store in one transaction (cloud objects joined or updated, pending exports done, errors
    /// set or cleared). A failing transaction fails the run.
    async fn confirm_chunks(
        &self,
        confirmed: Vec<ConfirmedChunk>,
        flow: &RefCell<Flow<'_>>,
    ) -> Result<(), SyncError> {
        // Sent, not yet recorded: the window the idempotence of provisions (matched through
        // the target before any create) exists for.
        crate::crash_point::crash_point("export-before-confirm");
        let mut confirmed_objects = Vec::new();
        let mut done = Vec::new();
        let mut deprovisioned = Vec::new();
        let mut failed = Vec::new();
        let mut refs_completed = HashSet::new();
        {
            let mut flow = flow.borrow_mut();
            let flow = &mut *flow;
            for ConfirmedChunk { chunk, results } in confirmed {
                refs_completed.extend(chunk.refs_completed);
                let outcomes = chunk.exports.into_iter().zip(chunk.joined).zip(results);
                for ((export, joined), result) in outcomes {
                    flow.sent += 1;
                    let confirmed = match result {
                        Ok(confirmed) => confirmed,
                        Err(failure) => {
                            flow.counts.errors += 1;
                            flow.pass.failed.insert(export.guid.clone());
                            if export.action == ExportAction::Deprovision {
                                flow.pass.failed_deletes += 1;
                            }
                            let message = failure.to_string();
                            tracing::warn!(dn = %export.dn, %message, "export failed");
                            failed.push((export, message));
                            continue;
                        }
                    };
                    let dn_key = Dn::parse(&export.dn).map(|dn| dn.normalized().to_owned());
                    match (export.action, confirmed) {
                        (ExportAction::Deprovision, _) => {
                            flow.counts.deletes += 1;
                            flow.deprovisions_sent = true;
                            if let Ok(key) = &dn_key {
                                flow.pass.exported_ids.remove(key);
                            }
                            deprovisioned.push(export.guid.clone());
                        }
                        (action, Some(cloud)) => {
                            if action == ExportAction::Provision || joined.is_none() {
                                flow.counts.adds += 1;
                                if export.kind == CloudKind::User {
                                    flow.new_users.extend(ObjectGuid::parse(&export.guid).ok());
                                }
                                flow.pass
                                    .joined
                                    .push((export.guid.clone(), export.dn.clone()));
                                if let Ok(key) = &dn_key {
                                    flow.pass.waiting.exported(key, &mut flow.released);
                                }
                            } else {
                                flow.counts.updates += 1;
                            }
                            if let Ok(key) = dn_key {
                                flow.pass.exported_ids.insert(key, cloud.cloud_id.clone());
                            }
                            confirmed_objects.push(cloud);
                        }
                        (_, None) => {}
                    }
                    done.push(export);
                }
            }
        }
        let mut tx = self.store.begin().await?;
        for guid in &deprovisioned {
            tx.delete_cloud_object(guid).await?;
            if tx.ad_object(guid).await?.is_some_and(|o| o.deleted) {
                tx.forget_ad_object(guid).await?;
            }
        }
        for (export, message) in &failed {
            tx.set_error(&export.guid, &export.dn, "export", message, self.now())
                .await?;
        }
        tx.put_cloud_objects(&confirmed_objects).await?;
        let removed = tx.delete_sent_exports(&done).await?;
        // An object synchronized again meanwhile keeps its flag: its new export decides it.
        let refs_completed: Vec<&str> = done
            .iter()
            .map(|export| export.guid.as_str())
            .filter(|guid| refs_completed.contains(*guid) && removed.contains(*guid))
            .collect();
        tx.set_unresolved_refs_of(&refs_completed, false).await?;
        let done_guids: Vec<&str> = done.iter().map(|export| export.guid.as_str()).collect();
        tx.clear_errors(&done_guids).await?;
        tx.commit().await?;
        // Only now may a page read them again (a later export of the same object).
        let mut flow = flow.borrow_mut();
        for export in done.iter().chain(failed.iter().map(|(export, _)| export)) {
            flow.unconfirmed.remove(&export.guid);
        }
        Ok(())
    }

    /// Exports a chunk: the reads (the provisions' matches, batched), then the writes together
    /// (one Bulk request when the server offers Bulk). Returns, per export, the cloud object as
    /// now confirmed (`None` for a deprovision). The exports' documents move into the creates
    /// and the confirmed objects (a group's can hold tens of thousands of members): the
    /// confirmation needs the rest of each export, not its document.
    async fn export_chunk(
        &self,
        client: &ScimClient,
        matcher: &Matcher<'_>,
        chunk: &mut [PendingExport],
        joined: &[Option<CloudObject>],
    ) -> Vec<Result<Option<CloudObject>, ExportFailure>> {
        let mut plans: Vec<Planning> = chunk
            .iter()
            .zip(joined)
            .map(
                |(export, joined)| match self.plan(export, joined.as_ref()) {
                    Some(plan) => Planning::Decided(Ok(plan)),
                    None => Planning::Matching(export),
                },
            )
            .collect();
        match_provisions(self.scope.dialect, matcher, &mut plans).await;
        let plans: Vec<_> = plans.into_iter().map(Planning::finish).collect();
        let mut outcomes = Vec::with_capacity(chunk.len());
        let mut writes = Vec::new();
        for (position, (plan, export)) in plans.into_iter().zip(chunk.iter_mut()).enumerate() {
            match plan {
                Ok(Plan::Send(write)) => {
                    writes.push((position, write));
                    outcomes.push(Ok(None));
                }
                Ok(Plan::Create) => {
                    writes.push((
                        position,
                        create(export.kind, std::mem::take(&mut export.doc)),
                    ));
                    outcomes.push(Ok(None));
                }
                Ok(Plan::Confirmed(id)) => outcomes.push(Ok(id)),
                Err(failure) => outcomes.push(Err(failure)),
            }
        }
        let (positions, sent): (Vec<usize>, Vec<Write>) = writes.into_iter().unzip();
        match client.write_all(&sent).await {
            Ok(results) => {
                for ((&position, write), result) in positions.iter().zip(&sent).zip(results) {
                    let (Some(export), Some(slot)) =
                        (chunk.get(position), outcomes.get_mut(position))
                    else {
                        continue;
                    };
                    *slot = self
                        .after_write(client, matcher, export, write, result)
                        .await;
                }
            }
            Err(e) => {
                let message = e.to_string();
                for &position in &positions {
                    if let Some(slot) = outcomes.get_mut(position) {
                        *slot = Err(ExportFailure::Batch(message.clone()));
                    }
                }
            }
        }
        // Each create's body goes back to its export: the confirmed document.
        for (position, write) in positions.into_iter().zip(sent) {
            if let (Write::Create { body, .. }, Some(export)) = (write, chunk.get_mut(position)) {
                export.doc = body;
            }
        }
        chunk
            .iter_mut()
            .zip(outcomes)
            .map(|(export, outcome)| {
                outcome.map(|id| {
                    id.filter(|_| export.action != ExportAction::Deprovision)
                        .map(|cloud_id| CloudObject {
                            guid: export.guid.clone(),
                            kind: export.kind,
                            cloud_id,
                            anchor: export.anchor.clone(),
                            doc: std::mem::take(&mut export.doc),
                        })
                })
            })
            .collect()
    }

    /// What one pending export needs from the server when that takes no search; `None` for a
    /// provision, which [`match_provisions`] plans with the rest of its chunk.
    fn plan(&self, export: &PendingExport, joined: Option<&CloudObject>) -> Option<Plan> {
        let kind = resource_kind(export.kind);
        Some(match (export.action, joined) {
            (ExportAction::Deprovision, Some(cloud)) => {
                let id = cloud.cloud_id.clone();
                Plan::Send(match (self.deprovision, export.kind) {
                    (Deprovision::Disable, CloudKind::User) => Write::Patch {
                        kind,
                        id,
                        ops: vec![PatchOp::Replace {
                            path: "active".into(),
                            value: json!(false),
                        }],
                    },
                    _ => Write::Delete { kind, id },
                })
            }
            (ExportAction::Deprovision, None) => Plan::Confirmed(None),
            (_, Some(cloud)) => patch_plan(export, &cloud.cloud_id, &cloud.doc),
            (_, None) => return None,
        })
    }

    /// What a write's result means for the object; a joined object deleted in the cloud behind
    /// our back is provisioned again.
    async fn after_write(
        &self,
        client: &ScimClient,
        matcher: &Matcher<'_>,
        export: &PendingExport,
        write: &Write,
        result: Result<Option<String>, ScimClientError>,
    ) -> Result<Option<String>, ExportFailure> {
        match result {
            Ok(id) => Ok(id),
            // Disabling a user that is already gone: deprovisioned all the same.
            Err(e) if e.status() == Some(404) && export.action == ExportAction::Deprovision => {
                Ok(None)
            }
            Err(e) if e.status() == Some(404) && matches!(write, Write::Patch { .. }) => {
                let mut plans = [Planning::Matching(export)];
                match_provisions(self.scope.dialect, matcher, &mut plans).await;
                let [plan] = plans;
                let write = match plan.finish()? {
                    Plan::Confirmed(id) => return Ok(id),
                    Plan::Send(write) => write,
                    Plan::Create => create(export.kind, export.doc.clone()),
                };
                let result = client.write_all(std::slice::from_ref(&write)).await?;
                match result.into_iter().next() {
                    Some(Ok(id)) => Ok(id),
                    Some(Err(e)) => Err(write_failure(&write, e)),
                    None => Ok(None),
                }
            }
            Err(e) => Err(write_failure(write, e)),
        }
    }
}

/// Joins the provisions among `plans` to existing cloud objects: the join conditions in
/// order (hard match on the anchor, then the soft matches), position by position for all of
/// them at once, so a position costs one batched search per resource type and path. What
/// none matches is left `Matching`, to be created.
async fn match_provisions(dialect: ScimDialect, matcher: &Matcher<'_>, plans: &mut [Planning<'_>]) {
    for position in 0.. {
        let asking: Vec<(usize, &PendingExport, &str, &str)> = plans
            .iter()
            .enumerate()
            .filter_map(|(i, plan)| match plan {
                Planning::Matching(export) => export
                    .join
                    .get(position)
                    .map(|(path, value)| (i, *export, path.as_str(), value.as_str())),
                Planning::Decided(_) => None,
            })
            .collect();
        if asking.is_empty() {
            return;
        }
        let asks: Vec<_> = asking
            .iter()
            .map(|&(_, export, path, value)| (export.kind, path, value))
            .collect();
        let found = matcher.search(&asks).await;
        for ((i, export, path, value), found) in asking.into_iter().zip(found) {
            let decided = match found {
                Ok(found) => join_found(dialect, export, position, path, value, &found),
                Err(e) => Some(Err(ExportFailure::Scim(e))),
            };
            if let (Some(decided), Some(slot)) = (decided, plans.get_mut(i)) {
                *slot = Planning::Decided(decided);
            }
        }
    }
}

/// What the search for join condition `position` (`path` = `value`) found means for
/// `export`; `None` when it joins nothing, and the next condition is tried.
fn join_found(
    dialect: ScimDialect,
    export: &PendingExport,
    position: usize,
    path: &str,
    value: &str,
    found: &[Value],
) -> Option<Result<Plan, ExportFailure>> {
    let candidate = found.first()?;
    if found.len() > 1 {
        return Some(Err(ExportFailure::Conflict(format!(
            "several cloud {}s match {path} = {value:?}; resolve the duplicate in the cloud",
            export.kind.name()
        ))));
    }
    let id = id_of(candidate)?;
    let holder_anchor = dialect.anchor_of(export.kind, candidate);
    // Soft matches (position > 0) only take cloud objects no on-premises object holds.
    if position > 0 {
        if let Some(other) = holder_anchor.filter(|a| *a != export.anchor) {
            return Some(Err(ExportFailure::Conflict(format!(
                "cloud {} {id} matches on {path} = {value:?} but is already joined to \
                 another on-premises object ({} {other})",
                export.kind.name(),
                dialect.anchor_name()
            ))));
        }
        if let Some(role) = admin_role(candidate) {
            return Some(Err(ExportFailure::Conflict(format!(
                "cloud {} {id} matches on {path} = {value:?} but holds the admin role \
                 {role:?}: soft match never takes over a cloud administrator. Remove the \
                 role, or set its {} to {} to join it by hard match",
                export.kind.name(),
                dialect.anchor_name(),
                export.anchor
            ))));
        }
        tracing::info!(dn = %export.dn, cloud_id = %id, %path, "soft match");
    }
    Some(Ok(patch_plan(export, &id, candidate)))
}

/// Where the planning of one export of a chunk stands.
enum Planning<'e> {
    Decided(Result<Plan, ExportFailure>),
    /// A provision whose join conditions are being tried.
    Matching(&'e PendingExport),
}

impl Planning<'_> {
    /// The plan; a provision no join condition matched is created.
    fn finish(self) -> Result<Plan, ExportFailure> {
        match self {
            Self::Decided(plan) => plan,
            Self::Matching(_) => Ok(Plan::Create),
        }
    }
}

/// What one pending export needs from the server, decided by reads.
enum Plan {
    /// Nothing to send: the cloud already holds it (its id; `None` for a deprovision).
    Confirmed(Option<String>),
    Send(Write),
    /// Nothing matched: the export's document creates the object.
    Create,
}

/// The create of an object of `kind` with `body` (its export's document).
fn create(kind: CloudKind, body: Value) -> Write {
    Write::Create {
        kind: resource_kind(kind),
        body,
    }
}

/// A PATCH of the attributes the rules manage, from what `id` holds now to the export's doc.
fn patch_plan(export: &PendingExport, id: &str, current: &Value) -> Plan {
    let managed = managed_attributes(&[current, &export.doc]);
    let managed: Vec<&str> = managed.iter().map(String::as_str).collect();
    let ops = minimal_patch(current, &export.doc, &managed);
    if ops.is_empty() {
        return Plan::Confirmed(Some(id.to_owned()));
    }
    Plan::Send(Write::Patch {
        kind: resource_kind(export.kind),
        id: id.to_owned(),
        ops,
    })
}

fn write_failure(write: &Write, e: ScimClientError) -> ExportFailure {
    match write {
        Write::Create { .. } if e.status() == Some(409) => ExportFailure::Conflict(format!(
            "the cloud refused to create it: {e}. Another cloud object (possibly a soft-deleted \
             one) holds the same unique value; restore, rename or purge it"
        )),
        _ => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::extract::State;
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use idbridge_core::Secret;
    use idbridge_engine::{CloudKind, ScimDialect};
    use idbridge_scim::{Filter, ResourceKind};
    use idbridge_scim_client::{RetryPolicy, ScimClient, ScimClientConfig, Write};
    use serde_json::{json, Value};

    use super::matching::Matcher;
    use super::{
        admin_role, cut_chunks, match_provisions, Plan, Planning, Waiting, EXPORT_CHUNK,
        EXPORT_CHUNK_DOC_BYTES,
    };
    use crate::sync::store::{ExportAction, PendingExport};

    const SYNC_USER: &str = "urn:idbridge:params:scim:schemas:extension:sync:2.0:User";
    const WORK_MAIL: &str = r#"emails[type eq "work"].value"#;

    fn key(dn: &str) -> String {
        idbridge_core::Dn::parse(dn)
            .unwrap()
            .normalized()
            .to_owned()
    }

    #[test]
    fn a_held_export_is_released_when_its_last_reference_is_joined() {
        let keys = |targets: &[&str]| targets.iter().map(|t| key(t)).collect();
        let mut waiting = Waiting::default();
        let (boss, peer) = ("CN=Boss,OU=Staff,DC=x", "CN=Peer,OU=Staff,DC=x");
        waiting.hold("report".into(), keys(&[boss, peer, boss]));
        waiting.hold("group".into(), keys(&[peer]));
        let mut released = Vec::new();
        waiting.exported(&key("cn=boss,ou=staff,dc=x"), &mut released);
        assert!(released.is_empty(), "the report still waits for its peer");
        waiting.exported(&key(peer), &mut released);
        released.sort();
        assert_eq!(released, ["group", "report"]);
        waiting.exported(&key(peer), &mut released);
        assert_eq!(released.len(), 2, "released once");
        assert_eq!(waiting.len(), 0);
    }

    #[test]
    fn chunks_are_cut_by_count_and_by_document_size() {
        let export = |n: usize, doc_bytes: usize| PendingExport {
            guid: n.to_string(),
            dn: format!("CN={n}"),
            kind: CloudKind::Group,
            action: ExportAction::Provision,
            anchor: n.to_string(),
            doc: json!({}),
            join: Vec::new(),
            unresolved: false,
            revision: 0,
            doc_bytes,
        };
        let small = EXPORT_CHUNK_DOC_BYTES / (4 * EXPORT_CHUNK);
        let large = EXPORT_CHUNK_DOC_BYTES / 10;
        let mut page: Vec<_> = (0..EXPORT_CHUNK + 5).map(|n| export(n, small)).collect();
        page.extend((0..25).map(|n| export(1000 + n, large)));
        page.push(export(2000, 3 * EXPORT_CHUNK_DOC_BYTES));
        page.push(export(2001, small));
        let sizes: Vec<usize> = cut_chunks(page.clone()).iter().map(Vec::len).collect();
        // 200 small; 5 small and 9 large (the 10th would pass the budget); 10 large; 6 large;
        // the oversized one alone; the last.
        assert_eq!(sizes, [EXPORT_CHUNK, 14, 10, 6, 1, 1]);
        let order: Vec<String> = cut_chunks(page.clone())
            .into_iter()
            .flatten()
            .map(|e| e.guid)
            .collect();
        let expected: Vec<String> = page.into_iter().map(|e| e.guid).collect();
        assert_eq!(order, expected, "every export once, in order");
    }

    /// A SCIM server holding `users` that answers searches by evaluating their filter; it may
    /// refuse `or` filters, or return at most `page` resources per search.
    struct Server {
        users: Vec<Value>,
        refuse_or: bool,
        page: Option<usize>,
        filters: Mutex<Vec<String>>,
    }

    async fn search(State(server): State<Arc<Server>>, body: String) -> Response {
        let request: Value = serde_json::from_str(&body).unwrap();
        let text = request["filter"].as_str().unwrap().to_owned();
        server.filters.lock().unwrap().push(text.clone());
        if server.refuse_or && text.contains(" or ") {
            let error = json!({"status": "400", "scimType": "invalidFilter", "detail": "no or"});
            return (axum::http::StatusCode::BAD_REQUEST, Json(error)).into_response();
        }
        let filter = Filter::parse(&text).unwrap();
        let matched: Vec<&Value> = server
            .users
            .iter()
            .filter(|u| filter.matches_kind(ResourceKind::User, u))
            .collect();
        let count = request["count"].as_u64().unwrap() as usize;
        let page: Vec<&Value> = matched
            .iter()
            .take(server.page.unwrap_or(count).min(count))
            .copied()
            .collect();
        Json(json!({"totalResults": matched.len(), "Resources": page})).into_response()
    }

    async fn connect(server: Arc<Server>) -> ScimClient {
        let app = Router::new()
            .route(
                "/ServiceProviderConfig",
                get(|| async { Json(json!({"patch": {"supported": true}})) }),
            )
            .route("/Users/.search", post(search))
            .with_state(server);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        ScimClient::connect(ScimClientConfig {
            base_url,
            token: Secret::new("token"),
            ca_cert_pem: None,
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        })
        .await
        .unwrap()
    }

    fn cloud_user(id: &str, user_name: &str, extra: Value) -> Value {
        let mut user = json!({"id": id, "userName": user_name});
        for (k, v) in extra.as_object().unwrap() {
            user[k] = v.clone();
        }
        user
    }

    fn work_mail(mail: &str) -> Value {
        json!([{"type": "home", "value": "x@home"}, {"type": "work", "value": mail}])
    }

    fn admin() -> Value {
        json!([{"value": "Global Administrator"}])
    }

    /// Exports (name, anchor) joining on the anchor, then `<name>@x`, then the same as work
    /// e-mail, against a cloud where each meets another rule; what each comes to, and the
    /// filters the server saw.
    async fn provision(refuse_or: bool, page: Option<usize>) -> (Vec<String>, Vec<String>) {
        let users = vec![
            cloud_user(
                "c1",
                "ann-cloud@x",
                json!({SYNC_USER: {"immutableId": "A1"}}),
            ),
            cloud_user("c2", "BOB@x", json!({})),
            cloud_user("c3", "cy@x", json!({SYNC_USER: {"immutableId": "OTHER"}})),
            cloud_user(
                "c4",
                "dee-cloud@x",
                json!({"emails": work_mail("dee@x"), "roles": admin()}),
            ),
            cloud_user("c5", "fay1@x", json!({"emails": work_mail("fay@x")})),
            cloud_user("c6", "fay2@x", json!({"emails": work_mail("FAY@x")})),
            cloud_user("c7", "gus@x", json!({SYNC_USER: {"immutableId": "G1"}})),
            cloud_user(
                "c8",
                "hal@x",
                json!({SYNC_USER: {"immutableId": "H1"}, "roles": admin()}),
            ),
        ];
        let server = Arc::new(Server {
            users,
            refuse_or,
            page,
            filters: Mutex::new(Vec::new()),
        });
        let client = connect(server.clone()).await;
        let anchor_path = ScimDialect::Idbridge.anchor_path(CloudKind::User);
        let exports: Vec<PendingExport> = [
            ("ann", "A1"),
            ("bob", "B1"),
            ("cy", "C1"),
            ("dee", "D1"),
            ("eve", "E1"),
            ("fay", "F1"),
            ("gus", "g1"),
            ("hal", "H1"),
        ]
        .into_iter()
        .map(|(name, anchor)| PendingExport {
            guid: name.into(),
            dn: format!("CN={name}"),
            kind: CloudKind::User,
            action: ExportAction::Provision,
            anchor: anchor.into(),
            doc: json!({"userName": format!("{name}@x"), "title": "new"}),
            join: vec![
                (anchor_path.clone(), anchor.into()),
                ("userName".into(), format!("{name}@x")),
                (WORK_MAIL.into(), format!("{name}@x")),
            ],
            unresolved: false,
            revision: 0,
            doc_bytes: 0,
        })
        .collect();
        let matcher = Matcher::new(&client);
        let mut plans: Vec<Planning> = exports.iter().map(Planning::Matching).collect();
        match_provisions(ScimDialect::Idbridge, &matcher, &mut plans).await;
        let outcomes = plans
            .into_iter()
            .map(|plan| match plan.finish() {
                Ok(Plan::Create) => "create".to_owned(),
                Ok(Plan::Send(Write::Patch { id, .. }) | Plan::Confirmed(Some(id))) => {
                    format!("join {id}")
                }
                Ok(_) => "something else".to_owned(),
                Err(e) => e.to_string(),
            })
            .collect();
        let filters = server.filters.lock().unwrap().clone();
        (outcomes, filters)
    }

    fn assert_rules_hold(outcomes: &[String]) {
        let expect = [
            "join c1",
            "join c2",
            "already joined to another on-premises object (immutableId OTHER)",
            "holds the admin role \"Global Administrator\"",
            "create",
            "several cloud Users match",
            "already joined to another on-premises object (immutableId G1)",
            "join c8",
        ];
        for (outcome, expected) in outcomes.iter().zip(expect) {
            assert!(outcome.contains(expected), "{outcome:?} lacks {expected:?}");
        }
        assert_eq!(outcomes.len(), expect.len());
    }

    #[tokio::test]
    async fn a_chunk_costs_one_search_per_join_position() {
        let (outcomes, filters) = provision(false, None).await;
        assert_rules_hold(&outcomes);
        assert_eq!(filters.len(), 3, "{filters:#?}");
        // The anchor is compared exactly; only the exports still unmatched ask again.
        assert_eq!(filters[0].matches(" or ").count(), 7, "{}", filters[0]);
        assert_eq!(filters[1].matches(" or ").count(), 5, "{}", filters[1]);
        assert_eq!(filters[2].matches(" or ").count(), 2, "{}", filters[2]);
    }

    #[tokio::test]
    async fn a_server_refusing_or_is_asked_one_value_at_a_time() {
        let (outcomes, filters) = provision(true, None).await;
        assert_rules_hold(&outcomes);
        let batched = filters.iter().filter(|f| f.contains(" or ")).count();
        assert_eq!(batched, 1, "refused once, not asked again: {filters:#?}");
        assert_eq!(filters.len(), 1 + 8 + 6 + 3, "{filters:#?}");
    }

    #[tokio::test]
    async fn a_server_that_pages_is_asked_one_value_at_a_time() {
        let (outcomes, filters) = provision(false, Some(2)).await;
        assert_rules_hold(&outcomes);
        // Position 0 finds two (complete); positions 1 and 2 find three: paged, asked again.
        assert_eq!(filters.len(), 1 + (1 + 6) + (1 + 3), "{filters:#?}");
    }

    #[test]
    fn admin_roles_are_recognised_by_value_or_display() {
        let admin = json!({"roles": [{"value": "helpdesk"}, {"display": "Global Administrator"}]});
        assert_eq!(admin_role(&admin), Some("Global Administrator"));
        assert_eq!(admin_role(&json!({"roles": [{"value": "employee"}]})), None);
        assert_eq!(admin_role(&json!({"userName": "x"})), None);
    }
}
