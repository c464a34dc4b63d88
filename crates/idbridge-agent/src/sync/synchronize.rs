//! Synchronization: connector space -> metaverse -> pending exports, for changed objects (delta)
//! or all of them (full). Each object's result commits with its batch; an object whose rules fail
//! gets an error record and the run goes on.

use std::collections::{HashMap, HashSet};

use idbridge_core::Dn;
use idbridge_engine::{
    encode_values, managed_attributes, member_set, project, render, resolve_references, AdObject,
    Disposition, Projection, Rendered,
};
use idbridge_scim_client::minimal_patch;
use serde_json::json;

use super::store::{CloudObject, ExportAction, MetaverseRow, PendingExport, RunCounts, Tx};
use super::{SyncContext, SyncError};

const BATCH: i64 = 500;

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

impl SyncContext {
    /// Returns the objects it queued an export for (created or updated; deprovisions aside).
    pub(crate) async fn synchronize(
        &self,
        full: bool,
        counts: &mut RunCounts,
    ) -> Result<Vec<String>, SyncError> {
        if full {
            let mut tx = self.store.begin().await?;
            tx.mark_all_pending().await?;
            tx.commit().await?;
        }
        let pilot = match &self.scope.pilot_group {
            Some(dn) => Some(
                self.store
                    .ad_object_by_dn(dn)
                    .await?
                    .map(|g| member_set(&g))
                    .unwrap_or_default(),
            ),
            None => None,
        };
        let started = std::time::Instant::now();
        let total = self.store.pending_sync_count().await?;
        let mut after = String::new();
        let mut synced = 0u64;
        let mut queued = Vec::new();
        loop {
            let batch = self.store.pending_sync(&after, BATCH).await?;
            let Some(last) = batch.last() else { break };
            after = last.guid.to_string();
            let projected: Vec<_> = batch
                .iter()
                .map(|o| project(&self.rules, &self.scope, o, pilot.as_ref()))
                .collect();
            // Only the references this batch makes are looked up: a delta cycle does no work
            // proportional to the directory's size.
            let referenced: HashSet<String> = projected
                .iter()
                .filter_map(|p| match p {
                    Ok(Disposition::InScope(p)) => Some(p.references()),
                    _ => None,
                })
                .flatten()
                .map(|dn| dn.normalized().to_owned())
                .collect();
            let cloud_ids = self.store.cloud_ids_for(&referenced).await?;
            let guids: Vec<String> = batch.iter().map(|o| o.guid.to_string()).collect();
            let guid_refs: Vec<&str> = guids.iter().map(String::as_str).collect();
            let joined = self.store.cloud_objects_for(&guid_refs).await?;
            let mut without_errors = Vec::with_capacity(batch.len());
            let mut writes = BatchWrites::default();
            let mut tx = self.store.begin().await?;
            for ((object, projection), guid) in batch.iter().zip(projected).zip(&guid_refs) {
                let joined = joined.get(*guid);
                if self
                    .sync_object(
                        &mut tx,
                        &mut writes,
                        object,
                        projection,
                        &cloud_ids,
                        joined,
                        counts,
                    )
                    .await?
                {
                    without_errors.push(*guid);
                }
            }
            queued.extend(writes.exports.iter().map(|e| e.guid.clone()));
            writes.flush(&mut tx).await?;
            tx.clear_errors(&without_errors).await?;
            tx.clear_pending(&guid_refs).await?;
            tx.commit().await?;
            let step = batch.len() as u64;
            synced += step;
            // Beyond the count taken at the start, a running import is adding to it.
            self.progress
                .step("sync", synced, step, (synced <= total).then_some(total));
        }
        if synced > 0 {
            tracing::info!(
                objects = synced,
                ms = started.elapsed().as_millis() as u64,
                "synchronization done"
            );
        }
        Ok(queued)
    }

    /// Syncs one object of a batch; true when it went through, so its earlier errors are
    /// cleared (the caller does that, and marks the batch synchronized, in one statement each).
    /// What every in-scope object writes goes to `writes`; the rarer writes go to `tx`.
    #[allow(clippy::too_many_arguments)]
    async fn sync_object(
        &self,
        tx: &mut Tx,
        writes: &mut BatchWrites,
        object: &AdObject,
        projection: Result<Disposition, String>,
        cloud_ids: &HashMap<String, String>,
        joined: Option<&CloudObject>,
        counts: &mut RunCounts,
    ) -> Result<bool, SyncError> {
        let guid = object.guid.to_string();
        let dn = object.dn.to_string();
        match projection {
            Err(message) => {
                counts.errors += 1;
                tracing::warn!(%dn, %message, "object not synchronized");
                tx.set_error(&guid, &dn, "sync", &message, self.now())
                    .await?;
                return Ok(false);
            }
            Ok(Disposition::InScope(projection)) => {
                let rendered = render(&projection, self.scope.dialect, &|target: &Dn| {
                    cloud_ids.get(target.normalized()).cloned()
                });
                self.stage_export(writes, guid, dn, &projection, rendered, joined);
            }
            Ok(Disposition::OutOfScope(why)) => {
                tx.forget_metaverse(&guid).await?;
                match joined {
                    Some(cloud) => {
                        tracing::info!(%dn, reason = %why, "leaves sync scope: deprovision");
                        tx.put_pending_export(&PendingExport {
                            guid: guid.clone(),
                            dn,
                            kind: cloud.kind,
                            action: ExportAction::Deprovision,
                            anchor: cloud.anchor.clone(),
                            doc: json!({}),
                            join: Vec::new(),
                            unresolved: false,
                        })
                        .await?;
                    }
                    None => {
                        tx.delete_pending_export(&guid).await?;
                        if object.deleted {
                            tx.forget_ad_object(&guid).await?;
                        }
                    }
                }
            }
        }
        Ok(true)
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
                writes.unchanged.push(guid);
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
        });
    }
}

/// What a batch's in-scope objects write, gathered so that each kind of write costs one
/// statement per batch rather than one per object.
#[derive(Default)]
struct BatchWrites {
    metaverse: Vec<MetaverseRow>,
    /// Guids whose references all resolved, and those with some that did not.
    resolved: Vec<String>,
    unresolved: Vec<String>,
    exports: Vec<PendingExport>,
    /// Guids whose cloud object already matches: no export.
    unchanged: Vec<String>,
}

impl BatchWrites {
    async fn flush(self, tx: &mut Tx) -> Result<(), SyncError> {
        fn refs(guids: &[String]) -> Vec<&str> {
            guids.iter().map(String::as_str).collect()
        }
        tx.put_metaverse(&self.metaverse).await?;
        tx.set_unresolved_refs_of(&refs(&self.resolved), false)
            .await?;
        tx.set_unresolved_refs_of(&refs(&self.unresolved), true)
            .await?;
        tx.put_pending_exports(&self.exports).await?;
        tx.delete_pending_exports(&refs(&self.unchanged)).await?;
        Ok(())
    }
}
