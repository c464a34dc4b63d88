//! Export: pending exports -> the SCIM server. Each confirmed export commits the cloud
//! connector-space object and removes the pending export together.
//!
//! Idempotence: a provision first looks for the object by its anchor (hard match), so an export
//! interrupted after the server created the object but before we recorded it joins that object
//! on retry instead of creating a duplicate.

use std::collections::HashSet;

use idbridge_ad::AdConnector;
use idbridge_core::{AttrName, ObjectGuid};
use idbridge_engine::{managed_attributes, resolve_references, unresolved_references, CloudKind};
use idbridge_scim_client::{
    minimal_patch, PatchOp, ResourceType, ScimClient, ScimClientError, Write,
};
use serde_json::{json, Value};

use super::store::{CloudObject, ExportAction, PendingCursor, PendingExport, RunCounts, SyncStore};
use super::{Outcome, SyncContext, SyncError};
use crate::config::Deprovision;

const CONSISTENCY_GUID: &str = "mS-DS-ConsistencyGuid";
/// The `object_errors` stage of a failed anchor writeback.
const ANCHOR_STAGE: &str = "anchor";

/// SCIM requests in flight at once during an export.
const EXPORT_CONCURRENCY: usize = 16;

fn resource_type(kind: CloudKind) -> ResourceType {
    match kind {
        CloudKind::User => ResourceType::User,
        CloudKind::Group => ResourceType::Group,
        CloudKind::Contact => ResourceType::Contact,
    }
}

/// A SCIM filter comparing `path` with a string value. A value path with a sub-attribute
/// (`emails[type eq "work"].value`) becomes `emails[type eq "work" and value eq "..."]`, the
/// form RFC 7644's grammar allows.
fn eq_filter(path: &str, value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    match path.split_once('[').zip(path.rsplit_once("].")) {
        Some(((attr, _), (head, sub))) => {
            let inner = head.get(attr.len() + 1..).unwrap_or_default();
            format!("{attr}[{inner} and {sub} eq \"{escaped}\"]")
        }
        None => format!("{path} eq \"{escaped}\""),
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
    /// yet; the next call starts from them (nothing else changes the pending exports between
    /// two waves).
    pub held: Vec<String>,
}

/// Pending exports read a page at a time: the objects a wave held back, or else all of them.
struct PendingPages {
    held: Vec<String>,
    cursor: Option<PendingCursor>,
    done: bool,
}

/// Pending exports per page (their documents are what an export holds in memory).
const EXPORT_PAGE: usize = 500;

impl PendingPages {
    fn new(held: Vec<String>) -> Self {
        Self {
            held,
            cursor: None,
            done: false,
        }
    }

    async fn next(&mut self, store: &SyncStore) -> Result<Option<Vec<PendingExport>>, SyncError> {
        if self.done {
            return Ok(None);
        }
        let page = if self.held.is_empty() {
            let page = store
                .pending_exports_after(self.cursor.as_ref(), EXPORT_PAGE as i64)
                .await?;
            self.cursor = page.last().map(PendingCursor::after);
            self.done = page.len() < EXPORT_PAGE;
            page
        } else {
            let rest = self.held.split_off(self.held.len().min(EXPORT_PAGE));
            let guids: Vec<&str> = self.held.iter().map(String::as_str).collect();
            let page = store.pending_exports_of(&guids).await?;
            self.held = rest;
            self.done = self.held.is_empty();
            page
        };
        Ok(Some(page))
    }
}

/// Why an export of one object failed, in words for `idbridge sync errors`.
#[derive(Debug)]
enum ExportFailure {
    Conflict(String),
    Scim(ScimClientError),
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
        Self::Scim(e)
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

    /// Sends the pending exports, except those of objects that already failed in this run
    /// (`pass.failed`) and, with `hold_unresolved`, those whose references do not all resolve
    /// yet (kept in `pass.held`); records failures and new joins in `pass`.
    pub(crate) async fn export(
        &self,
        counts: &mut RunCounts,
        pass: &mut ExportPass,
        hold_unresolved: bool,
    ) -> Result<Outcome, SyncError> {
        let held_before = std::mem::take(&mut pass.held);
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
        let total = match held_before.len() {
            0 => waiting,
            held => held as u64,
        };
        let started = std::time::Instant::now();
        let mut client = None;
        let mut provisioned = 0u64;
        let mut sent = 0u64;
        // A page at a time, so memory holds a page of documents, not every pending export.
        let mut pages = PendingPages::new(held_before);
        while let Some(mut page) = pages.next(&self.store).await? {
            page.retain(|p| !pass.failed.contains(&p.guid));
            let completed = self
                .resolve_pending_references(&mut page, !hold_unresolved)
                .await?;
            let (held, page): (Vec<_>, Vec<_>) = page.into_iter().partition(|p| p.unresolved);
            pass.held.extend(held.into_iter().map(|p| p.guid));
            if page.is_empty() {
                continue;
            }
            let client = match &mut client {
                Some(client) => client,
                None => client.insert(ScimClient::connect(self.scim.clone()).await?),
            };
            let guids: Vec<&str> = page.iter().map(|p| p.guid.as_str()).collect();
            let mut joined_page = self.store.cloud_objects_for(&guids).await?;
            // Requests of a chunk travel concurrently; their confirmations commit together.
            for chunk in page.chunks(EXPORT_CONCURRENCY) {
                let joined: Vec<Option<CloudObject>> = chunk
                    .iter()
                    .map(|export| joined_page.remove(&export.guid))
                    .collect();
                let results = self.export_chunk(client, chunk, &joined).await;
                // The window the idempotence above exists for: sent, not yet recorded.
                crate::crash_point::crash_point("export-before-confirm");
                let mut tx = self.store.begin().await?;
                for ((export, joined), result) in chunk.iter().zip(&joined).zip(results) {
                    match result {
                        Ok(confirmed) => {
                            match (export.action, confirmed) {
                                (ExportAction::Deprovision, _) => {
                                    counts.deletes += 1;
                                    tx.delete_cloud_object(&export.guid).await?;
                                    if tx.ad_object(&export.guid).await?.is_some_and(|o| o.deleted)
                                    {
                                        tx.forget_ad_object(&export.guid).await?;
                                    }
                                }
                                (action, Some(cloud)) => {
                                    if action == ExportAction::Provision || joined.is_none() {
                                        counts.adds += 1;
                                        provisioned += 1;
                                        pass.joined.push((export.guid.clone(), export.dn.clone()));
                                    } else {
                                        counts.updates += 1;
                                    }
                                    tx.put_cloud_object(&cloud).await?;
                                }
                                (_, None) => {}
                            }
                            if completed.contains(&export.guid) {
                                tx.set_unresolved_refs(&export.guid, false).await?;
                            }
                            tx.delete_pending_export(&export.guid).await?;
                            tx.clear_error(&export.guid).await?;
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
                tx.commit().await?;
                sent += chunk.len() as u64;
                self.progress
                    .step("export", sent, chunk.len() as u64, Some(total));
            }
        }
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
        if provisioned > 0 {
            // Newly joined users' hashes were replicated before they had a cloud object: ask
            // password hash sync for a full pass (it runs on its own schedule).
            if let Err(e) = std::fs::write(&self.phs_request_path, b"") {
                tracing::warn!(error = %e, "could not request a full password hash sync");
            }
        }
        Ok(Outcome::Done)
    }

    /// Puts cloud ids into the reference placeholders of `pending` for targets that have a
    /// cloud object by now (exported earlier in this run, say). An export whose references all
    /// resolve is no longer `unresolved`; with `drop_unresolved`, none is (what does not resolve
    /// is left out, and the object is synced again once it does). Returns the exports whose
    /// references were all completed here.
    async fn resolve_pending_references(
        &self,
        pending: &mut [PendingExport],
        drop_unresolved: bool,
    ) -> Result<HashSet<String>, SyncError> {
        let targets: HashSet<String> = pending
            .iter()
            .filter(|p| p.unresolved)
            .flat_map(|p| unresolved_references(&p.doc))
            .collect();
        let cloud_ids = if targets.is_empty() {
            Default::default()
        } else {
            self.store.cloud_ids_for(&targets).await?
        };
        let mut completed = HashSet::new();
        for export in pending.iter_mut().filter(|p| p.unresolved) {
            let refs = unresolved_references(&export.doc);
            if !refs.is_empty() && refs.iter().all(|dn| cloud_ids.contains_key(dn)) {
                completed.insert(export.guid.clone());
            }
            let left = resolve_references(
                &mut export.doc,
                &|dn| cloud_ids.get(dn).cloned(),
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

    /// Exports a chunk: the reads (matches) concurrently, then the writes together (one Bulk
    /// request when the server offers Bulk). Returns, per export, the cloud object as now
    /// confirmed (`None` for a deprovision).
    async fn export_chunk(
        &self,
        client: &ScimClient,
        chunk: &[PendingExport],
        joined: &[Option<CloudObject>],
    ) -> Vec<Result<Option<CloudObject>, ExportFailure>> {
        let plans = futures_util::future::join_all(
            chunk
                .iter()
                .zip(joined)
                .map(|(export, joined)| self.plan(client, export, joined.as_ref())),
        )
        .await;
        let mut outcomes = Vec::with_capacity(chunk.len());
        let mut writes = Vec::new();
        for (position, plan) in plans.into_iter().enumerate() {
            match plan {
                Ok(Plan::Send(write)) => {
                    writes.push((position, write));
                    outcomes.push(Ok(None));
                }
                Ok(Plan::Confirmed(id)) => outcomes.push(Ok(id)),
                Err(failure) => outcomes.push(Err(failure)),
            }
        }
        let sent: Vec<Write> = writes.iter().map(|(_, w)| w.clone()).collect();
        match client.write_all(&sent).await {
            Ok(results) => {
                for ((position, write), result) in writes.into_iter().zip(results) {
                    let (Some(export), Some(slot)) =
                        (chunk.get(position), outcomes.get_mut(position))
                    else {
                        continue;
                    };
                    *slot = self.after_write(client, export, &write, result).await;
                }
            }
            Err(e) => {
                let message = e.to_string();
                for (position, _) in writes {
                    if let Some(slot) = outcomes.get_mut(position) {
                        *slot = Err(ExportFailure::Batch(message.clone()));
                    }
                }
            }
        }
        chunk
            .iter()
            .zip(outcomes)
            .map(|(export, outcome)| {
                outcome.map(|id| {
                    id.filter(|_| export.action != ExportAction::Deprovision)
                        .map(|cloud_id| CloudObject {
                            guid: export.guid.clone(),
                            kind: export.kind,
                            cloud_id,
                            anchor: export.anchor.clone(),
                            doc: export.doc.clone(),
                        })
                })
            })
            .collect()
    }

    /// Decides what one pending export needs from the server.
    async fn plan(
        &self,
        client: &ScimClient,
        export: &PendingExport,
        joined: Option<&CloudObject>,
    ) -> Result<Plan, ExportFailure> {
        let kind = resource_type(export.kind);
        Ok(match (export.action, joined) {
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
            (_, None) => self.provision_plan(client, export).await?,
        })
    }

    /// What a write's result means for the object; a joined object deleted in the cloud behind
    /// our back is provisioned again.
    async fn after_write(
        &self,
        client: &ScimClient,
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
                match self.provision_plan(client, export).await? {
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

    /// Joins an existing cloud object (hard match on the anchor, then the soft matches) or
    /// plans its creation.
    async fn provision_plan(
        &self,
        client: &ScimClient,
        export: &PendingExport,
    ) -> Result<Plan, ExportFailure> {
        let kind = resource_type(export.kind);
        for (position, (path, value)) in export.join.iter().enumerate() {
            let found = client.search(kind, &eq_filter(path, value), 2).await?;
            let Some(candidate) = found.first() else {
                continue;
            };
            if found.len() > 1 {
                return Err(ExportFailure::Conflict(format!(
                    "several cloud {}s match {path} = {value:?}; resolve the duplicate in the cloud",
                    export.kind.name()
                )));
            }
            let Some(id) = id_of(candidate) else { continue };
            let holder_anchor = self.scope.dialect.anchor_of(export.kind, candidate);
            // Soft matches (position > 0) only take cloud objects no on-premises object holds.
            if position > 0 {
                if let Some(other) = holder_anchor.filter(|a| *a != export.anchor) {
                    return Err(ExportFailure::Conflict(format!(
                        "cloud {} {id} matches on {path} = {value:?} but is already joined to \
                         another on-premises object ({} {other})",
                        export.kind.name(),
                        self.scope.dialect.anchor_name()
                    )));
                }
                if let Some(role) = admin_role(candidate) {
                    return Err(ExportFailure::Conflict(format!(
                        "cloud {} {id} matches on {path} = {value:?} but holds the admin role \
                         {role:?}: soft match never takes over a cloud administrator. Remove the \
                         role, or set its {} to {} to join it by hard match",
                        export.kind.name(),
                        self.scope.dialect.anchor_name(),
                        export.anchor
                    )));
                }
                tracing::info!(dn = %export.dn, cloud_id = %id, %path, "soft match");
            }
            return Ok(patch_plan(export, &id, candidate));
        }
        Ok(Plan::Send(Write::Create {
            kind,
            body: export.doc.clone(),
        }))
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
        kind: resource_type(export.kind),
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
        _ => ExportFailure::Scim(e),
    }
}

#[cfg(test)]
mod tests {
    use super::{admin_role, eq_filter};
    use serde_json::json;

    #[test]
    fn admin_roles_are_recognised_by_value_or_display() {
        let admin = json!({"roles": [{"value": "helpdesk"}, {"display": "Global Administrator"}]});
        assert_eq!(admin_role(&admin), Some("Global Administrator"));
        assert_eq!(admin_role(&json!({"roles": [{"value": "employee"}]})), None);
        assert_eq!(admin_role(&json!({"userName": "x"})), None);
    }

    #[test]
    fn filters_follow_the_scim_grammar() {
        assert_eq!(eq_filter("userName", "a\"b\\c"), r#"userName eq "a\"b\\c""#);
        assert_eq!(
            eq_filter(r#"emails[type eq "work"].value"#, "x@y"),
            r#"emails[type eq "work" and value eq "x@y"]"#
        );
    }
}
