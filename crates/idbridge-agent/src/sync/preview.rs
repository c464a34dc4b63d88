//! `idbridge sync preview`: what an export would send, for everything or for one object, without
//! sending anything.

use std::borrow::Cow;

use idbridge_core::{Dn, ObjectGuid};
use idbridge_engine::{
    member_set, project, render, resolve_references, Disposition, StoredAttributes,
};
use serde::Serialize;
use serde_json::Value;

use super::store::PendingExport;
use super::{SyncContext, SyncError};

/// One object's path through the rules.
#[derive(Debug, Serialize)]
pub struct ObjectPreview {
    pub guid: String,
    pub dn: String,
    pub class: String,
    /// `in scope`, or why not.
    pub scope: String,
    pub rules_fired: Vec<String>,
    pub metaverse: Option<StoredAttributes<'static>>,
    /// The cloud resource the rules produce now (references resolved where the target exists).
    pub cloud: Option<Value>,
    pub unresolved_references: Vec<String>,
    pub pending_export: Option<PendingExport>,
    pub error: Option<String>,
}

impl SyncContext {
    pub async fn pending(&self) -> Result<Vec<PendingExport>, SyncError> {
        Ok(self.store.pending_exports().await?)
    }

    /// Previews the object named by `key`: an objectGUID, or a DN.
    pub async fn preview_object(&self, key: &str) -> Result<ObjectPreview, SyncError> {
        let object = match ObjectGuid::parse_any(key) {
            Ok(guid) => self.store.ad_object(&guid.to_string()).await?,
            Err(_) => {
                let dn = Dn::parse(key).map_err(|e| {
                    SyncError::Config(format!("{key:?} is neither an objectGUID nor a DN: {e}"))
                })?;
                self.store.ad_object_by_dn(&dn).await?
            }
        }
        .ok_or_else(|| {
            SyncError::Config(format!(
                "no object {key} in the AD connector space (run `idbridge sync full-import` first?)"
            ))
        })?;
        let guid = object.guid.to_string();
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
        let mut preview = ObjectPreview {
            guid: guid.clone(),
            dn: object.dn.to_string(),
            class: object.class.clone(),
            scope: "in scope".into(),
            rules_fired: Vec::new(),
            metaverse: None,
            cloud: None,
            unresolved_references: Vec::new(),
            pending_export: self.store.pending_export(&guid).await?,
            error: None,
        };
        match project(&self.rules, &self.scope, &object, pilot.as_ref()) {
            Err(message) => preview.error = Some(message),
            Ok(Disposition::OutOfScope(why)) => preview.scope = why.to_string(),
            Ok(Disposition::InScope(projection)) => {
                let referenced = projection
                    .references()
                    .map(|dn| dn.normalized().to_owned())
                    .collect();
                let cloud_ids = self.store.cloud_ids_for(&referenced).await?;
                let rendered = render(&projection, self.scope.dialect, &|dn: &Dn| {
                    cloud_ids.get(dn.normalized()).cloned()
                });
                let projection = *projection;
                preview.rules_fired = projection.fired;
                preview.metaverse = Some(StoredAttributes(Cow::Owned(projection.metaverse)));
                // Shown as it would be sent now; the references left out are listed apart.
                let mut doc = rendered.doc;
                resolve_references(&mut doc, &|_| None, true);
                preview.cloud = Some(doc);
                preview.unresolved_references = rendered
                    .unresolved
                    .iter()
                    .map(ToString::to_string)
                    .collect();
            }
        }
        Ok(preview)
    }

    /// Lets the next export through the deletion threshold for up to `count` deletions.
    pub async fn allow_deletes(&self, count: u64) -> Result<(), SyncError> {
        let mut tx = self.store.begin().await?;
        tx.approve_deletes(count).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn history(&self, limit: i64) -> Result<Vec<super::RunRecord>, SyncError> {
        Ok(self.store.runs(limit).await?)
    }

    pub async fn errors(&self) -> Result<Vec<super::ObjectError>, SyncError> {
        Ok(self.store.errors().await?)
    }
}
