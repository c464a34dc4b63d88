//! Synchronization: connector space -> metaverse -> pending exports, for changed objects (delta)
//! or all of them (full). Each object's result commits with its batch; an object whose rules fail
//! gets an error record and the run goes on.

use std::collections::{HashMap, HashSet};

use idbridge_core::Dn;
use idbridge_engine::{
    encode_values, managed_attributes, member_set, project, render, AdObject, Disposition,
    Projection, Rendered,
};
use idbridge_scim_client::minimal_patch;
use serde_json::json;

use super::store::{CloudObject, ExportAction, PendingExport, RunCounts, Tx};
use super::{SyncContext, SyncError};

const BATCH: i64 = 500;

/// True when sending `desired` would change what the cloud was last confirmed to hold.
pub(crate) fn differs(confirmed: &serde_json::Value, desired: &serde_json::Value) -> bool {
    let managed = managed_attributes(&[confirmed, desired]);
    let managed: Vec<&str> = managed.iter().map(String::as_str).collect();
    !minimal_patch(confirmed, desired, &managed).is_empty()
}

impl SyncContext {
    pub(crate) async fn synchronize(
        &self,
        full: bool,
        counts: &mut RunCounts,
    ) -> Result<(), SyncError> {
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
        let total = self.store.pending_sync_count().await?;
        let mut after = String::new();
        let mut synced = 0u64;
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
            let mut tx = self.store.begin().await?;
            for (object, projection) in batch.iter().zip(projected) {
                self.sync_object(&mut tx, object, projection, &cloud_ids, counts)
                    .await?;
            }
            tx.commit().await?;
            let step = batch.len() as u64;
            synced += step;
            self.progress
                .step("sync", synced, step, Some(total.max(synced)));
        }
        Ok(())
    }

    async fn sync_object(
        &self,
        tx: &mut Tx,
        object: &AdObject,
        projection: Result<Disposition, String>,
        cloud_ids: &HashMap<String, String>,
        counts: &mut RunCounts,
    ) -> Result<(), SyncError> {
        let guid = object.guid.to_string();
        let dn = object.dn.to_string();
        let joined = self.store.cloud_object(&guid).await?;
        match projection {
            Err(message) => {
                counts.errors += 1;
                tracing::warn!(%dn, %message, "object not synchronized");
                tx.set_error(&guid, &dn, "sync", &message, self.now())
                    .await?;
            }
            Ok(Disposition::InScope(projection)) => {
                let rendered = render(&projection, self.dialect, &|target: &Dn| {
                    cloud_ids.get(target.normalized()).cloned()
                });
                self.stage_export(tx, &guid, &dn, &projection, rendered, joined.as_ref())
                    .await?;
                tx.clear_error(&guid).await?;
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
                            anchor: cloud.anchor,
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
                tx.clear_error(&guid).await?;
            }
        }
        tx.clear_pending(&guid).await?;
        Ok(())
    }

    async fn stage_export(
        &self,
        tx: &mut Tx,
        guid: &str,
        dn: &str,
        projection: &Projection,
        rendered: Rendered,
        joined: Option<&CloudObject>,
    ) -> Result<(), SyncError> {
        tx.put_metaverse(
            guid,
            &projection.mv_type,
            &projection.anchor,
            &encode_values(&projection.metaverse),
        )
        .await?;
        tx.set_unresolved_refs(guid, !rendered.unresolved.is_empty())
            .await?;
        let action = match joined {
            None => ExportAction::Provision,
            Some(c) if differs(&c.doc, &rendered.doc) => ExportAction::Update,
            Some(_) => {
                tx.delete_pending_export(guid).await?;
                return Ok(());
            }
        };
        tx.put_pending_export(&PendingExport {
            guid: guid.to_owned(),
            dn: dn.to_owned(),
            kind: projection.kind,
            action,
            anchor: projection.anchor.clone(),
            doc: rendered.doc,
            join: projection.join_in(self.dialect),
            unresolved: !rendered.unresolved.is_empty(),
        })
        .await
        .map_err(Into::into)
    }
}
