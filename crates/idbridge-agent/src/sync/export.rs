//! Export: pending exports -> the SCIM server. Each confirmed export commits the cloud
//! connector-space object and removes the pending export together.
//!
//! Idempotence: a provision first looks for the object by its anchor (hard match), so an export
//! interrupted after the server created the object but before we recorded it joins that object
//! on retry instead of creating a duplicate.

mod matching;

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

use self::matching::Matcher;
use super::follow::Waiting;
use super::store::{CloudObject, ExportAction, PendingCursor, PendingExport, RunCounts, SyncStore};
use super::{Outcome, SyncContext, SyncError};
use crate::config::Deprovision;

const CONSISTENCY_GUID: &str = "mS-DS-ConsistencyGuid";
/// The `object_errors` stage of a failed anchor writeback.
const ANCHOR_STAGE: &str = "anchor";

/// Exports per chunk. A chunk's provisions cost one search per join position (`matching`), its
/// writes one Bulk request (split to the server's maxOperations and maxPayloadSize) or, without
/// Bulk, singles `REQUESTS_IN_FLIGHT` at a time, and its confirmations one commit. 100, up from
/// 16 when every provision searched alone and the chunk bounded the searches in flight: these
/// per-chunk costs then weigh little beside the per-object ones, the values fit one to three
/// `or` filters, and a Bulk request that fails as a whole fails at most 100 objects (retried
/// by the next run).
const EXPORT_CHUNK: usize = 100;

/// Chunks of a page in flight at once: while the server works on some, the agent plans the
/// next and commits the confirmations of the last (each side waited for the other when one
/// chunk went at a time). A chunk is confirmed as soon as it is back, in whatever order: the
/// page's references were resolved before any was sent, so chunks do not depend on each other,
/// and a slow one does not hold the others' confirmations (nor the chunks after them).
const CHUNKS_IN_FLIGHT: usize = 8;

/// The SCIM resource type a metaverse object's kind exports to.
fn resource_kind(kind: CloudKind) -> ResourceKind {
    match kind {
        CloudKind::User => ResourceKind::User,
        CloudKind::Group => ResourceKind::Group,
        CloudKind::Contact => ResourceKind::Contact,
    }
}

/// What the export passes of one run share.
#[derive(Default)]
pub(crate) struct ExportPass {
    /// Objects that failed: not tried again in this run.
    pub failed: HashSet<String>,
    /// How many of them were deprovisions (still pending, but not deletions this run sends).
    pub failed_deletes: u64,
    /// Objects joined to a cloud object in this run (guid, DN).
    pub joined: Vec<(String, String)>,
    /// Objects whose exports the last call held back because their references do not resolve
    /// yet.
    pub held: Vec<Held>,
    /// The objects whose pending exports the next call sends; all of them when empty. Waves
    /// set it to the held ones their predecessors released (nothing else changes the pending
    /// exports between two waves).
    pub next: Vec<String>,
    /// The held exports of earlier calls, by the references they wait for.
    pub waiting: Waiting,
    /// Normalized DN -> cloud id of the objects this run exported. Most references a full cycle
    /// resolves are to them (a group's members, a user's manager), and the store would read
    /// each from a random page of its cloud objects.
    exported_ids: HashMap<String, String>,
    /// The connection to the server, kept from one call to the next: a full cycle makes dozens
    /// of calls, and each new client read the server's configuration and opened its TLS
    /// connections again.
    client: Option<ScimClient>,
}

impl ExportPass {
    /// Files the exports the last call held under the references they wait for, and adds to
    /// `released` those whose last missing reference was joined since `joined_seen`.
    pub(crate) fn wait_for_references(
        &mut self,
        joined_seen: &mut usize,
        released: &mut Vec<String>,
    ) {
        for held in self.held.drain(..) {
            self.waiting.hold(held);
        }
        for (_, dn) in self.joined.iter().skip(*joined_seen) {
            self.waiting.exported(dn, released);
        }
        *joined_seen = self.joined.len();
    }
}

/// An export held back, and the references (DN keys) it waits for.
pub(crate) struct Held {
    pub guid: String,
    pub waiting_for: Vec<String>,
}

/// A chunk of exports as the server answered it, to be confirmed in the store.
struct ConfirmedChunk<'a> {
    chunk: &'a [PendingExport],
    joined: &'a [Option<CloudObject>],
    results: Vec<Result<Option<CloudObject>, ExportFailure>>,
}

/// Pending exports read a page at a time: those of the given objects, or else all of them.
struct PendingPages {
    only: Vec<String>,
    cursor: Option<PendingCursor>,
    done: bool,
}

/// Pending exports per page (their documents are what an export holds in memory: two pages of
/// a few MB, the one in flight and the next). The chunks in flight drain at the end of each
/// page, so pages are not small.
const EXPORT_PAGE: usize = 2000;

/// A page also ends once its documents reach this size: a page of users stays whole, one of
/// groups with many members is cut short (parsed, it would take ~15 times as much).
const EXPORT_PAGE_DOC_BYTES: usize = 4 << 20;

impl PendingPages {
    fn new(only: Vec<String>) -> Self {
        Self {
            only,
            cursor: None,
            done: false,
        }
    }

    async fn next(&mut self, store: &SyncStore) -> Result<Option<Vec<PendingExport>>, SyncError> {
        if self.done {
            return Ok(None);
        }
        let page = if self.only.is_empty() {
            let (page, left) = store
                .pending_exports_after(
                    self.cursor.as_ref(),
                    EXPORT_PAGE as i64,
                    EXPORT_PAGE_DOC_BYTES,
                )
                .await?;
            self.cursor = page.last().map(PendingCursor::after);
            self.done = left.is_empty() && page.len() < EXPORT_PAGE;
            page
        } else {
            let rest = self.only.split_off(self.only.len().min(EXPORT_PAGE));
            let guids: Vec<&str> = self.only.iter().map(String::as_str).collect();
            let (page, mut left) = store
                .pending_exports_of(&guids, EXPORT_PAGE_DOC_BYTES)
                .await?;
            left.extend(rest);
            self.only = left;
            self.done = self.only.is_empty();
            page
        };
        Ok(Some(page))
    }
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

    /// Sends the pending exports (of `pass.next`, or all), except those of objects that
    /// already failed in this run (`pass.failed`) and, with `hold_unresolved`, those whose
    /// references do not all resolve yet (kept in `pass.held`); records failures and new joins
    /// in `pass`.
    pub(crate) async fn export(
        &self,
        counts: &mut RunCounts,
        pass: &mut ExportPass,
        hold_unresolved: bool,
    ) -> Result<Outcome, SyncError> {
        let only = std::mem::take(&mut pass.next);
        pass.held.clear();
        let (waiting, deletes) = self.store.pending_export_counts().await?;
        let deletes = deletes.saturating_sub(pass.failed_deletes);
        if self.staging {
            return Ok(Outcome::Held(format!(
                "staging mode: {waiting} pending export(s) not sent; see `idbridge sync preview`"
            )));
        }
        if deletes > 0 {
            let approved = self.store.approved_deletes().await?;
            let exported = self.store.cloud_object_count().await?;
            if deletes > approved && self.threshold_exceeded(deletes, exported) {
                return Ok(Outcome::Held(format!(
                    "{deletes} deletion(s) pending exceed the deletion threshold ({}{}); \
                     nothing was exported. Review them with `idbridge sync preview` and run \
                     `idbridge sync allow-deletes` to let them through",
                    self.deletion_threshold,
                    self.deletion_threshold_percent
                        .map(|p| format!(" or {p}%"))
                        .unwrap_or_default()
                )));
            }
        }
        let total = match only.len() {
            0 => waiting,
            only => only as u64,
        };
        let started = std::time::Instant::now();
        if total == 0 {
            return Ok(Outcome::Done);
        }
        let client = match pass.client.take() {
            Some(client) => client,
            None => ScimClient::connect(self.scim.clone()).await?,
        };
        let matcher = Matcher::new(&client);
        let mut new_users = Vec::new();
        let mut sent = 0u64;
        // A page at a time (and the next, read meanwhile), so memory holds two pages of
        // documents, not every pending export.
        let mut pages = PendingPages::new(only);
        let mut next = pages.next(&self.store).await?;
        while let Some(mut page) = next.take() {
            page.retain(|p| !pass.failed.contains(&p.guid));
            let completed = self
                .resolve_pending_references(&mut page, &pass.exported_ids, !hold_unresolved)
                .await?;
            let (held, page): (Vec<_>, Vec<_>) = page.into_iter().partition(|p| p.unresolved);
            pass.held.extend(held.into_iter().map(|p| Held {
                waiting_for: unresolved_references(&p.doc),
                guid: p.guid,
            }));
            if page.is_empty() {
                next = pages.next(&self.store).await?;
                continue;
            }
            let guids: Vec<&str> = page.iter().map(|p| p.guid.as_str()).collect();
            let mut joined_page = self.store.cloud_objects_for(&guids).await?;
            let chunks: Vec<(&[PendingExport], Vec<Option<CloudObject>>)> = page
                .chunks(EXPORT_CHUNK)
                .map(|chunk| {
                    let joined = chunk
                        .iter()
                        .map(|export| joined_page.remove(&export.guid))
                        .collect();
                    (chunk, joined)
                })
                .collect();
            // Requests of a chunk travel concurrently, a few chunks at a time; a chunk's
            // confirmations commit together when it is back, while the next chunks travel.
            let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
            let send = async {
                let mut exported = futures_util::stream::iter(&chunks)
                    .map(|(chunk, joined)| {
                        let (client, matcher) = (&client, &matcher);
                        async move {
                            let results = self.export_chunk(client, matcher, chunk, joined).await;
                            ConfirmedChunk {
                                chunk,
                                joined,
                                results,
                            }
                        }
                    })
                    .buffer_unordered(CHUNKS_IN_FLIGHT);
                while let Some(exported) = exported.next().await {
                    // The receiver is gone when a confirmation failed.
                    if done_tx.send(exported).await.is_err() {
                        break;
                    }
                }
                drop(done_tx);
            };
            let confirm = async {
                while let Some(first) = done_rx.recv().await {
                    // Chunks that came back while the last confirmation committed commit
                    // together: each transaction rewrites the index pages it touches, so
                    // fewer, larger ones cost the store less when it is what the export waits
                    // for.
                    let mut ready = vec![first];
                    while let Ok(more) = done_rx.try_recv() {
                        ready.push(more);
                    }
                    let objects: usize = ready.iter().map(|c| c.chunk.len()).sum();
                    self.confirm_chunks(ready, &completed, counts, pass, &mut new_users)
                        .await?;
                    sent += objects as u64;
                    self.progress
                        .step("export", sent, objects as u64, Some(total));
                }
                // Dropped here on failure, so the sender stops.
                drop(done_rx);
                Ok::<_, SyncError>(())
            };
            // The next page is read while this one travels: the chunks in flight drain at the
            // end of a page, and the server would wait for the read too. (Its references are
            // resolved only once this page is confirmed, which may complete them.)
            let fetch = pages.next(&self.store);
            let ((), confirmed, fetched) = tokio::join!(send, confirm, fetch);
            confirmed?;
            next = fetched?;
        }
        pass.client = Some(client);
        if sent == 0 {
            return Ok(Outcome::Done);
        }
        let mut tx = self.store.begin().await?;
        if deletes > 0 {
            tx.consume_approved_deletes().await?;
        }
        tx.commit().await?;
        tracing::info!(
            objects = sent,
            held = pass.held.len(),
            ms = started.elapsed().as_millis() as u64,
            "export done"
        );
        // Newly joined users' hashes were replicated before they had a cloud object. The
        // daemon reads a few at once, one by one (a targeted hash sync cycle); many, or with
        // no daemon listening, take a full hash sync pass.
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

    /// Puts cloud ids into the reference placeholders of `pending` for targets that have a
    /// cloud object by now (exported earlier in this run, say: those are in `exported_ids`). An
    /// export whose references all resolve is no longer `unresolved`; with `drop_unresolved`,
    /// none is (what does not resolve is left out, and the object is synced again once it
    /// does). Returns the exports whose references were all completed here.
    async fn resolve_pending_references(
        &self,
        pending: &mut [PendingExport],
        exported_ids: &HashMap<String, String>,
        drop_unresolved: bool,
    ) -> Result<HashSet<String>, SyncError> {
        let targets: HashSet<String> = pending
            .iter()
            .filter(|p| p.unresolved)
            .flat_map(|p| unresolved_references(&p.doc))
            .filter(|dn| !exported_ids.contains_key(dn))
            .collect();
        let stored_ids = if targets.is_empty() {
            Default::default()
        } else {
            self.store.cloud_ids_for(&targets).await?
        };
        let cloud_id = |dn: &str| exported_ids.get(dn).or_else(|| stored_ids.get(dn));
        let mut completed = HashSet::new();
        for export in pending.iter_mut().filter(|p| p.unresolved) {
            let refs = unresolved_references(&export.doc);
            if !refs.is_empty() && refs.iter().all(|dn| cloud_id(dn).is_some()) {
                completed.insert(export.guid.clone());
            }
            let left = resolve_references(
                &mut export.doc,
                &|dn| cloud_id(dn).cloned(),
                drop_unresolved,
            );
            export.unresolved = left > 0;
        }
        Ok(completed)
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

    /// Records what the server confirmed for some chunks, in one transaction: cloud objects
    /// joined or updated, pending exports done, errors set or cleared. `completed`: the
    /// exports whose references were all completed before sending.
    async fn confirm_chunks(
        &self,
        confirmed: Vec<ConfirmedChunk<'_>>,
        completed: &HashSet<String>,
        counts: &mut RunCounts,
        pass: &mut ExportPass,
        new_users: &mut Vec<ObjectGuid>,
    ) -> Result<(), SyncError> {
        // Sent, not yet recorded: the window the idempotence of provisions (matched through
        // the target before any create) exists for.
        crate::crash_point::crash_point("export-before-confirm");
        let mut tx = self.store.begin().await?;
        // What every confirmed export writes, one statement each for the chunks.
        let mut confirmed_objects = Vec::new();
        let mut done = Vec::new();
        let outcomes = confirmed
            .into_iter()
            .flat_map(|c| c.chunk.iter().zip(c.joined).zip(c.results));
        for ((export, joined), result) in outcomes {
            match result {
                Ok(confirmed) => {
                    let dn_key = Dn::parse(&export.dn).map(|dn| dn.normalized().to_owned());
                    match (export.action, confirmed) {
                        (ExportAction::Deprovision, _) => {
                            counts.deletes += 1;
                            if let Ok(key) = &dn_key {
                                pass.exported_ids.remove(key);
                            }
                            tx.delete_cloud_object(&export.guid).await?;
                            if tx.ad_object(&export.guid).await?.is_some_and(|o| o.deleted) {
                                tx.forget_ad_object(&export.guid).await?;
                            }
                        }
                        (action, Some(cloud)) => {
                            if action == ExportAction::Provision || joined.is_none() {
                                counts.adds += 1;
                                if export.kind == CloudKind::User {
                                    new_users.extend(ObjectGuid::parse(&export.guid).ok());
                                }
                                pass.joined.push((export.guid.clone(), export.dn.clone()));
                            } else {
                                counts.updates += 1;
                            }
                            if let Ok(key) = dn_key {
                                pass.exported_ids.insert(key, cloud.cloud_id.clone());
                            }
                            confirmed_objects.push(cloud);
                        }
                        (_, None) => {}
                    }
                    done.push(export);
                }
                Err(failure) => {
                    counts.errors += 1;
                    pass.failed.insert(export.guid.clone());
                    if export.action == ExportAction::Deprovision {
                        pass.failed_deletes += 1;
                    }
                    let message = failure.to_string();
                    tracing::warn!(dn = %export.dn, %message, "export failed");
                    tx.set_error(&export.guid, &export.dn, "export", &message, self.now())
                        .await?;
                }
            }
        }
        tx.put_cloud_objects(&confirmed_objects).await?;
        let removed = tx.delete_sent_exports(&done).await?;
        // An object synchronized again meanwhile keeps its flag: its new export decides it.
        let refs_completed: Vec<&str> = done
            .iter()
            .map(|export| export.guid.as_str())
            .filter(|guid| completed.contains(*guid) && removed.contains(*guid))
            .collect();
        tx.set_unresolved_refs_of(&refs_completed, false).await?;
        let done: Vec<&str> = done.iter().map(|export| export.guid.as_str()).collect();
        tx.clear_errors(&done).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Exports a chunk: the reads (the provisions' matches, batched), then the writes together
    /// (one Bulk request when the server offers Bulk). Returns, per export, the cloud object as
    /// now confirmed (`None` for a deprovision).
    async fn export_chunk(
        &self,
        client: &ScimClient,
        matcher: &Matcher<'_>,
        chunk: &[PendingExport],
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
        let mut outcomes = Vec::with_capacity(chunk.len());
        let mut writes = Vec::new();
        for (position, plan) in plans.into_iter().map(Planning::finish).enumerate() {
            match plan {
                Ok(Plan::Send(write)) => {
                    writes.push((position, write));
                    outcomes.push(Ok(None));
                }
                Ok(Plan::Confirmed(id)) => outcomes.push(Ok(id)),
                Err(failure) => outcomes.push(Err(failure)),
            }
        }
        // Documents are not copied more than needed: a group's can hold tens of thousands of
        // members. A created object's confirmed document is the body that created it.
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
        let mut created: Vec<Option<Value>> = vec![None; chunk.len()];
        for (position, write) in positions.into_iter().zip(sent) {
            if let (Write::Create { body, .. }, Some(slot)) = (write, created.get_mut(position)) {
                *slot = Some(body);
            }
        }
        chunk
            .iter()
            .zip(outcomes)
            .zip(created)
            .map(|((export, outcome), created)| {
                outcome.map(|id| {
                    id.filter(|_| export.action != ExportAction::Deprovision)
                        .map(|cloud_id| CloudObject {
                            guid: export.guid.clone(),
                            kind: export.kind,
                            cloud_id,
                            anchor: export.anchor.clone(),
                            doc: created.unwrap_or_else(|| export.doc.clone()),
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
                match plan.finish()? {
                    Plan::Confirmed(id) => Ok(id),
                    Plan::Send(write) => {
                        let result = client.write_all(std::slice::from_ref(&write)).await?;
                        match result.into_iter().next() {
                            Some(Ok(id)) => Ok(id),
                            Some(Err(e)) => Err(write_failure(&write, e)),
                            None => Ok(None),
                        }
                    }
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
            Self::Matching(export) => Ok(Plan::Send(Write::Create {
                kind: resource_kind(export.kind),
                body: export.doc.clone(),
            })),
        }
    }
}

/// What one pending export needs from the server, decided by reads.
enum Plan {
    /// Nothing to send: the cloud already holds it (its id; `None` for a deprovision).
    Confirmed(Option<String>),
    Send(Write),
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
    use super::{admin_role, match_provisions, Plan, Planning};
    use crate::sync::store::{ExportAction, PendingExport};

    const SYNC_USER: &str = "urn:idbridge:params:scim:schemas:extension:sync:2.0:User";
    const WORK_MAIL: &str = r#"emails[type eq "work"].value"#;

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
        })
        .collect();
        let matcher = Matcher::new(&client);
        let mut plans: Vec<Planning> = exports.iter().map(Planning::Matching).collect();
        match_provisions(ScimDialect::Idbridge, &matcher, &mut plans).await;
        let outcomes = plans
            .into_iter()
            .map(|plan| match plan.finish() {
                Ok(Plan::Send(Write::Create { .. })) => "create".to_owned(),
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
