//! Synchronization: connector space -> metaverse -> pending exports, for changed objects (delta)
//! or all of them (full). Each object's result commits with its batch; an object whose rules fail
//! gets an error record and the run goes on.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::TryStreamExt as _;
use idbridge_core::Dn;
use idbridge_engine::{
    encode_values, managed_attributes, member_set, project, render, resolve_references, AdObject,
    Disposition, Projection, Rendered, SyncScope,
};
use idbridge_rules::RuleSet;
use idbridge_scim_client::minimal_patch;
use serde_json::json;

use super::store::{
    CloudObject, ExportAction, MetaverseRow, PendingExport, PendingSync, RunCounts, Tx,
};
use super::{off_the_runtime, SyncContext, SyncError};

const BATCH: i64 = 2000;
/// Batches synchronized at once: one's rules run on a blocking thread while the store reads or
/// commits another's. Batches are disjoint sets of objects, so their order does not matter.
const BATCHES_IN_FLIGHT: usize = 2;

/// True when sending `desired` would change what the cloud was last confirmed to hold.
pub(crate) fn differs(confirmed: &serde_json::Value, desired: &serde_json::Value) -> bool {
    let managed = managed_attributes(&[confirmed, desired]);
    let managed: Vec<&str> = managed.iter().map(String::as_str).collect();
    !minimal_patch(confirmed, desired, &managed).is_empty()
}

/// `doc` as it would be sent if nothing more resolved: placeholders left out.
fn without_placeholders(doc: &serde_json::Value) -> serde_json::Value {
    let mut doc = doc.clone();
    resolve_references(&mut doc, &|_| None, true);
    doc
}

/// An object through scope and rules, or why its rules failed.
type Projected = Result<Disposition, String>;

/// Where synchronization sends, batch by batch as each commits, the objects it queued an export
/// for (created or updated; deprovisions aside).
pub(crate) type QueuedExports = tokio::sync::mpsc::UnboundedSender<Vec<String>>;

impl SyncContext {
    pub(crate) async fn synchronize(
        &self,
        full: bool,
        counts: &mut RunCounts,
        queued: Option<&QueuedExports>,
    ) -> Result<(), SyncError> {
        if full {
            let mut tx = self.store.begin().await?;
            tx.mark_all_pending().await?;
            tx.commit().await?;
        }
        let pilot = match &self.scope.pilot_group {
            Some(dn) => Some(Arc::new(
                self.store
                    .ad_object_by_dn(dn)
                    .await?
                    .map(|g| member_set(&g))
                    .unwrap_or_default(),
            )),
            None => None,
        };
        let started = std::time::Instant::now();
        let total = self.store.pending_sync_count().await?;
        // Batches in guid order, each read as soon as there is room for it.
        let batches = futures_util::stream::try_unfold(String::new(), |after| async move {
            let pending = self.store.pending_sync(&after, BATCH).await?;
            let after = pending.last().map(|last| last.key.clone());
            Ok::<_, SyncError>(after.map(|after| (pending, after)))
        });
        let synchronized = batches
            .map_ok(|pending| self.synchronize_batch(pending, pilot.clone()))
            .try_buffered(BATCHES_IN_FLIGHT);
        let mut synchronized = std::pin::pin!(synchronized);
        let mut synced = 0u64;
        while let Some(batch) = synchronized.try_next().await? {
            counts.errors += batch.errors;
            if let Some(queued) = queued.filter(|_| !batch.exports.is_empty()) {
                // The receiver is gone only when the export stopped (held, or failed).
                let _ = queued.send(batch.exports);
            }
            synced += batch.objects;
            // Beyond the count taken at the start, a running import is adding to it.
            self.progress.step(
                "sync",
                synced,
                batch.objects,
                (synced <= total).then_some(total),
            );
        }
        if synced > 0 {
            tracing::info!(
                objects = synced,
                ms = started.elapsed().as_millis() as u64,
                "synchronization done"
            );
        }
        Ok(())
    }

    /// Synchronizes one batch of pending objects and commits what it writes.
    async fn synchronize_batch(
        &self,
        pending: Vec<PendingSync>,
        pilot: Option<Arc<HashSet<String>>>,
    ) -> Result<SyncedBatch, SyncError> {
        let planner = Planner {
            rules: self.rules.clone(),
            scope: self.scope.clone(),
            pilot,
            now: self.now(),
        };
        let guids: Vec<&str> = pending.iter().map(|p| p.key.as_str()).collect();
        let joined = self.store.cloud_objects_for(&guids).await?;
        // The rules run on a blocking thread, so that the import and the export, which
        // share this task, go on meanwhile (on another core when there is one).
        let (pending, projected, joined, referenced) = off_the_runtime({
            let planner = planner.clone();
            move || {
                let (projected, referenced) = planner.project(&pending, &joined);
                (pending, projected, joined, referenced)
            }
        })
        .await?;
        let cloud_ids = self.store.cloud_ids_for(&referenced).await?;
        let (pending, writes) = off_the_runtime(move || {
            let writes = planner.plan(&pending, projected, &cloud_ids, &joined);
            (pending, writes)
        })
        .await?;
        let done = SyncedBatch {
            objects: pending.len() as u64,
            errors: writes.errors.len() as i64,
            exports: writes.exports.iter().map(|e| e.guid.clone()).collect(),
        };
        let mut tx = self.store.begin().await?;
        writes.flush(&mut tx).await?;
        tx.clear_pending(&pending).await?;
        tx.commit().await?;
        Ok(done)
    }
}

/// What synchronizing a batch did.
struct SyncedBatch {
    objects: u64,
    errors: i64,
    /// The objects it queued an export for (created or updated; deprovisions aside).
    exports: Vec<String>,
}

/// The off-runtime half of synchronizing a batch: scope, rules and rendering, pure functions
/// of the batch and of what the store said about it.
#[derive(Clone)]
struct Planner {
    rules: Arc<RuleSet>,
    scope: Arc<SyncScope>,
    /// The pilot group's members (normalized DNs), when there is one.
    pilot: Option<Arc<HashSet<String>>>,
    /// When errors found now are recorded.
    now: i64,
}

impl Planner {
    /// Each object through scope and rules, and the references (normalized DNs) that those in
    /// scope and joined to a cloud object make: only those are looked up, so a delta cycle does
    /// no work proportional to the directory's size. An object not in the cloud yet has nothing
    /// to compare with, so its references stay placeholders until the export resolves them as
    /// it sends the object (against the objects the run exported first: a full cycle's are
    /// nearly all of them).
    fn project(
        &self,
        pending: &[PendingSync],
        joined: &HashMap<String, CloudObject>,
    ) -> (Vec<Projected>, HashSet<String>) {
        let projected: Vec<Projected> = pending
            .iter()
            .map(|p| project(&self.rules, &self.scope, &p.object, self.pilot.as_deref()))
            .collect();
        let referenced = pending
            .iter()
            .zip(&projected)
            .filter(|(p, _)| joined.contains_key(&p.key))
            .filter_map(|(_, projected)| match projected {
                Ok(Disposition::InScope(p)) => Some(p.references()),
                _ => None,
            })
            .flatten()
            .map(|dn| dn.normalized().to_owned())
            .collect();
        (projected, referenced)
    }

    /// What the batch writes, given the cloud ids of its references and its joined objects.
    fn plan(
        &self,
        pending: &[PendingSync],
        projected: Vec<Projected>,
        cloud_ids: &HashMap<String, String>,
        joined: &HashMap<String, CloudObject>,
    ) -> BatchWrites {
        let mut writes = BatchWrites::default();
        for (pending, projection) in pending.iter().zip(projected) {
            let joined = joined.get(&pending.key);
            let guid = pending.key.clone();
            self.sync_object(
                &mut writes,
                &pending.object,
                guid,
                projection,
                cloud_ids,
                joined,
            );
        }
        writes
    }

    /// Syncs one object of a batch (`guid`: its objectGUID as stored) into `writes`.
    fn sync_object(
        &self,
        writes: &mut BatchWrites,
        object: &AdObject,
        guid: String,
        projection: Projected,
        cloud_ids: &HashMap<String, String>,
        joined: Option<&CloudObject>,
    ) {
        let dn = object.dn.to_string();
        match projection {
            Err(message) => {
                tracing::warn!(%dn, %message, "object not synchronized");
                writes.errors.push((guid, dn, message, self.now));
                return;
            }
            Ok(Disposition::InScope(projection)) => {
                let rendered = render(&projection, self.scope.dialect, &|target: &Dn| {
                    cloud_ids.get(target.normalized()).cloned()
                });
                self.stage_export(writes, guid.clone(), dn, &projection, rendered, joined);
            }
            Ok(Disposition::OutOfScope(why)) => {
                writes.left_scope.push(guid.clone());
                match joined {
                    Some(cloud) => {
                        tracing::info!(%dn, reason = %why, "leaves sync scope: deprovision");
                        writes.deprovisions.push(PendingExport {
                            guid: guid.clone(),
                            dn,
                            kind: cloud.kind,
                            action: ExportAction::Deprovision,
                            anchor: cloud.anchor.clone(),
                            doc: json!({}),
                            join: Vec::new(),
                            unresolved: false,
                            revision: 0,
                            doc_bytes: 0,
                        });
                    }
                    None => {
                        writes.no_export.push(guid.clone());
                        if object.deleted {
                            writes.forgotten.push(guid.clone());
                        }
                    }
                }
            }
        }
        writes.without_errors.push(guid);
    }

    fn stage_export(
        &self,
        writes: &mut BatchWrites,
        guid: String,
        dn: String,
        projection: &Projection,
        rendered: Rendered,
        joined: Option<&CloudObject>,
    ) {
        writes.metaverse.push(MetaverseRow {
            guid: guid.clone(),
            mv_type: projection.mv_type.clone(),
            anchor: projection.anchor.clone(),
            attrs: encode_values(&projection.metaverse).to_string(),
        });
        let unresolved = !rendered.unresolved.is_empty();
        match unresolved {
            true => writes.unresolved.push(guid.clone()),
            false => writes.resolved.push(guid.clone()),
        }
        let action = match joined {
            None => ExportAction::Provision,
            Some(c) if differs(&c.doc, &without_placeholders(&rendered.doc)) => {
                ExportAction::Update
            }
            Some(_) => {
                writes.no_export.push(guid);
                return;
            }
        };
        writes.exports.push(PendingExport {
            guid,
            dn,
            kind: projection.kind,
            action,
            anchor: projection.anchor.clone(),
            doc: rendered.doc,
            join: projection.join_in(self.scope.dialect),
            unresolved,
            revision: 0,
            doc_bytes: 0,
        });
    }
}

/// What a batch writes, gathered before its transaction begins so that each kind of write costs
/// one statement per batch rather than one per object (the rare ones aside).
#[derive(Default)]
struct BatchWrites {
    metaverse: Vec<MetaverseRow>,
    /// Guids whose references all resolved, and those with some that did not.
    resolved: Vec<String>,
    unresolved: Vec<String>,
    exports: Vec<PendingExport>,
    deprovisions: Vec<PendingExport>,
    /// Guids with nothing to export (their cloud object already matches, or they have none
    /// and are out of scope).
    no_export: Vec<String>,
    /// Out of scope: their metaverse rows go.
    left_scope: Vec<String>,
    /// Deleted from AD, out of scope and with no cloud object: forgotten.
    forgotten: Vec<String>,
    /// (guid, DN, message, when): objects whose rules failed.
    errors: Vec<(String, String, String, i64)>,
    /// The others: their earlier errors are cleared.
    without_errors: Vec<String>,
}

impl BatchWrites {
    async fn flush(self, tx: &mut Tx) -> Result<(), SyncError> {
        fn refs(guids: &[String]) -> Vec<&str> {
            guids.iter().map(String::as_str).collect()
        }
        for guid in &self.left_scope {
            tx.forget_metaverse(guid).await?;
        }
        tx.put_metaverse(&self.metaverse).await?;
        tx.set_unresolved_refs_of(&refs(&self.resolved), false)
            .await?;
        tx.set_unresolved_refs_of(&refs(&self.unresolved), true)
            .await?;
        tx.put_pending_exports(&self.exports).await?;
        tx.put_pending_exports(&self.deprovisions).await?;
        tx.delete_pending_exports(&refs(&self.no_export)).await?;
        for guid in &self.forgotten {
            tx.forget_ad_object(guid).await?;
        }
        for (guid, dn, message, at) in &self.errors {
            tx.set_error(guid, dn, "sync", message, *at).await?;
        }
        tx.clear_errors(&refs(&self.without_errors)).await?;
        Ok(())
    }
}
