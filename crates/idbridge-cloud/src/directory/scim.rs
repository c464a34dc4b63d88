//! SCIM resource lifecycle: create, read, replace, patch, soft delete, list.

use idbridge_core::Secret;
use std::collections::HashMap;

use idbridge_scim::{
    apply_patch, bulk_operation_result, bulk_response, if_match_satisfied, list_response,
    parse_bulk_path, project, referenced_bulk_ids, resolve_bulk_ids, sort_resources, take_password,
    validate_resource, BulkMethod, BulkOperation, BulkRequest, Filter, ListQuery, PatchRequest,
    ResourceKind, ScimError, ScimType,
};
use serde_json::{json, Map, Value};

use super::{
    not_found, store_err, sync_schema, user_name, Directory, Principal, Scope, CLOUD, ON_PREMISES,
};
use crate::secrets::{hash_password, ARGON2ID};
use crate::store::{
    AuditEntry, Column, Credential, Index, ResourceWrite, StoreError, StoredResource, Tx,
};

/// A new resource ready to be written: rules applied, password hashed.
pub(crate) struct Prepared {
    kind: ResourceKind,
    doc: Value,
    source: String,
    credential: Option<Credential>,
}

/// A Bulk operation done: its status, and the written resource's location and version.
type Written = (u16, Option<(String, String)>);

/// What a Bulk operation came to (an `Err` fails that operation only).
type BulkOutcome = Result<Written, ScimError>;

/// A password that arrived with a resource, to be hashed and stored beside it.
pub(crate) struct NewPassword {
    pub password: Secret,
    pub must_change: bool,
}

pub(crate) fn resource_write<'a>(
    id: &'a str,
    kind: ResourceKind,
    source: &'a str,
    doc: &'a Value,
) -> ResourceWrite<'a> {
    ResourceWrite {
        id,
        kind,
        // Users are unique by userName (case-insensitively); groups need not be.
        name_key: match kind {
            ResourceKind::User => Some(user_name(doc).to_lowercase()),
            ResourceKind::Group | ResourceKind::Contact => None,
        },
        external_id: doc.get("externalId").and_then(Value::as_str),
        anchor: doc
            .get(sync_schema(kind))
            .and_then(|e| e.get("immutableId"))
            .and_then(Value::as_str),
        email_key: match kind {
            ResourceKind::User => work_email(doc).map(str::to_lowercase),
            ResourceKind::Group | ResourceKind::Contact => None,
        },
        source,
        doc,
    }
}

/// A user's work e-mail, what the sync agent soft-matches on.
fn work_email(doc: &Value) -> Option<&str> {
    doc.get("emails")?
        .as_array()?
        .iter()
        .find(|e| e.get("type").and_then(Value::as_str) == Some("work"))?
        .get("value")?
        .as_str()
}

/// Puts an extension object into a document and declares its schema.
fn set_extension(doc: &mut Value, urn: &str, ext: Map<String, Value>) {
    let Some(obj) = doc.as_object_mut() else {
        return;
    };
    obj.insert(urn.to_owned(), Value::Object(ext));
    if let Some(schemas) = obj.get_mut("schemas").and_then(Value::as_array_mut) {
        if !schemas.iter().any(|s| s.as_str() == Some(urn)) {
            schemas.push(json!(urn));
        }
    }
}

fn extension(doc: &Value, urn: &str) -> Option<Map<String, Value>> {
    doc.get(urn).and_then(Value::as_object).cloned()
}

impl Directory {
    /// On-premises stays the master: only the sync agent writes on-premises objects and the sync
    /// extension. Fixes the extension of `doc` and returns the object's `source`.
    fn apply_sync_rules(
        &self,
        kind: ResourceKind,
        doc: &mut Value,
        old: Option<&StoredResource>,
        principal: &Principal,
    ) -> Result<String, ScimError> {
        let urn = sync_schema(kind);
        let sent = extension(doc, urn);
        let old_ext = old.and_then(|o| extension(&o.doc, urn));
        if principal.scope() == Some(Scope::Sync) {
            let mut ext = sent.or(old_ext).unwrap_or_default();
            if !ext.contains_key("source") {
                ext.insert("source".into(), json!(ON_PREMISES));
            }
            ext.insert("lastSyncedAt".into(), json!(super::rfc3339(self.now_ms())));
            let source = ext
                .get("source")
                .and_then(Value::as_str)
                .unwrap_or(ON_PREMISES)
                .to_owned();
            set_extension(doc, urn, ext);
            return Ok(source);
        }
        if let Some(old) = old.filter(|o| o.source == ON_PREMISES) {
            let dn = old_ext
                .as_ref()
                .and_then(|e| e.get("onPremisesDistinguishedName"))
                .and_then(Value::as_str)
                .unwrap_or("its on-premises object");
            return Err(ScimError::mutability(format!(
                "{} {} is synced from Active Directory ({dn}); change it there",
                kind.name(),
                old.id
            )));
        }
        let unchanged = match (&sent, &old_ext) {
            (None, _) => true,
            (Some(s), Some(o)) => s == o,
            (Some(s), None) => s.iter().all(|(k, v)| k == "source" && v == CLOUD),
        };
        if !unchanged {
            return Err(ScimError::mutability(format!(
                "{urn} is written only by the sync agent"
            )));
        }
        let ext = old_ext.unwrap_or_else(|| {
            let mut m = Map::new();
            m.insert("source".into(), json!(CLOUD));
            m
        });
        set_extension(doc, urn, ext);
        Ok(CLOUD.to_owned())
    }

    /// Licenses are managed through the admin API; SCIM shows them as `entitlements`.
    pub(crate) async fn set_entitlements(
        tx: &mut Tx,
        id: &str,
        kind: ResourceKind,
        doc: &mut Value,
    ) -> Result<(), StoreError> {
        if kind != ResourceKind::User {
            return Ok(());
        }
        let licenses = tx.licenses_of(id).await?;
        if let Some(obj) = doc.as_object_mut() {
            obj.remove("entitlements");
            if !licenses.is_empty() {
                let values: Vec<Value> = licenses
                    .iter()
                    .map(|sku| json!({"value": sku, "type": "license"}))
                    .collect();
                obj.insert("entitlements".into(), Value::Array(values));
            }
        }
        Ok(())
    }

    /// A 409 `uniqueness` that names who holds the userName, soft-deleted or not.
    async fn uniqueness_error(tx: &mut Tx, kind: ResourceKind, doc: &Value) -> ScimError {
        let name = user_name(doc);
        let holder = tx
            .holder_of_name(kind, &name.to_lowercase())
            .await
            .ok()
            .flatten();
        match holder {
            Some(h) if h.deleted_at.is_some() => ScimError::conflict_uniqueness(format!(
                "userName {name:?} is held by the soft-deleted user {} (deleted {}); restore it \
                 (POST /api/v1/deleted-users/{}/restore) or purge it \
                 (DELETE /api/v1/deleted-users/{})",
                h.id,
                super::rfc3339(h.deleted_at.unwrap_or_default()),
                h.id,
                h.id
            )),
            Some(h) => ScimError::conflict_uniqueness(format!(
                "userName {name:?} is already used by user {}",
                h.id
            )),
            None => ScimError::conflict_uniqueness(format!("userName {name:?} is already used")),
        }
    }

    pub(crate) async fn hash(&self, password: &Secret) -> Result<Secret, ScimError> {
        let password = password.clone();
        tokio::task::spawn_blocking(move || {
            hash_password(password.expose(), &mut rand::thread_rng())
        })
        .await
        .map_err(|e| ScimError::internal(format!("password hashing failed: {e}")))
    }

    /// Everything about a new resource that needs no transaction (rules, policy, hashing).
    pub(crate) async fn prepare(
        &self,
        kind: ResourceKind,
        mut doc: Value,
        password: Option<NewPassword>,
        principal: &Principal,
    ) -> Result<Prepared, ScimError> {
        let source = self.apply_sync_rules(kind, &mut doc, None, principal)?;
        if let Some(doc) = doc.as_object_mut() {
            doc.remove("entitlements");
        }
        let credential = match &password {
            Some(p) => {
                self.settings()
                    .await
                    .map_err(|e| ScimError::invalid_value(e.message))?
                    .password_policy
                    .check(p.password.expose())
                    .map_err(|e| ScimError::invalid_value(e.message))?;
                Some(Credential {
                    kind: ARGON2ID.into(),
                    verifier: self.hash(&p.password).await?,
                    must_change: p.must_change,
                })
            }
            None => None,
        };
        Ok(Prepared {
            kind,
            doc,
            source,
            credential,
        })
    }

    /// Runs `op` in a write transaction, committed only if it succeeds.
    async fn in_transaction<T>(
        &self,
        op: impl AsyncFnOnce(&mut Tx) -> Result<T, ScimError>,
    ) -> Result<T, ScimError> {
        let mut tx = self.store.begin().await.map_err(store_err)?;
        let out = op(&mut tx).await?;
        tx.commit().await.map_err(store_err)?;
        Ok(out)
    }

    /// Replaces a resource row at `expected_version`, inside a savepoint, so that a taken
    /// userName (a 409 that names its holder) leaves the transaction usable.
    async fn update_row(
        tx: &mut Tx,
        write: &ResourceWrite<'_>,
        expected_version: i64,
        now: i64,
    ) -> Result<(), ScimError> {
        tx.savepoint("row_write").await.map_err(store_err)?;
        match tx.update_resource(write, expected_version, now).await {
            Ok(true) => tx.release("row_write").await.map_err(store_err),
            Ok(false) => {
                tx.release("row_write").await.map_err(store_err)?;
                Err(ScimError::precondition_failed(format!(
                    "{} {} changed while this request ran; read it again and retry",
                    write.kind.name(),
                    write.id
                )))
            }
            Err(e) if e.is_unique_violation() => {
                tx.rollback_to("row_write").await.map_err(store_err)?;
                Err(Self::uniqueness_error(tx, write.kind, write.doc).await)
            }
            Err(e) => Err(store_err(e)),
        }
    }

    /// Stores a prepared resource and its password in `tx`.
    pub(crate) async fn insert_in(
        &self,
        tx: &mut Tx,
        prepared: Prepared,
        principal: &Principal,
    ) -> Result<StoredResource, ScimError> {
        let inserted = self.insert_all_in(tx, vec![prepared], principal).await?;
        inserted
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(ScimError::internal("the resource was not written")))
    }

    /// Stores prepared resources and their passwords in `tx`, their rows together: each is
    /// stored, or kept out by a taken userName (a 409 that names its holder; nothing of it is
    /// written, and the transaction stays usable). `Err` only when the database fails.
    async fn insert_all_in(
        &self,
        tx: &mut Tx,
        prepared: Vec<Prepared>,
        principal: &Principal,
    ) -> Result<Vec<Result<StoredResource, ScimError>>, ScimError> {
        let now = self.now_ms();
        let ids: Vec<String> = prepared
            .iter()
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        let writes: Vec<ResourceWrite> = prepared
            .iter()
            .zip(&ids)
            .map(|(p, id)| resource_write(id, p.kind, &p.source, &p.doc))
            .collect();
        let written = tx.insert_resources(&writes, now).await.map_err(store_err)?;
        let mut kept_out = Vec::with_capacity(writes.len());
        for (write, written) in writes.iter().zip(written) {
            kept_out.push(match written {
                true => None,
                false => Some(Self::uniqueness_error(tx, write.kind, write.doc).await),
            });
        }
        drop(writes);
        let mut inserted = Vec::with_capacity(prepared.len());
        for ((prepared, id), kept_out) in prepared.into_iter().zip(ids).zip(kept_out) {
            if let Some(taken) = kept_out {
                inserted.push(Err(taken));
                continue;
            }
            let Prepared {
                kind,
                doc,
                source,
                credential,
            } = prepared;
            if let Some(credential) = &credential {
                tx.set_credential(&id, credential, now)
                    .await
                    .map_err(store_err)?;
            }
            tx.audit(&AuditEntry {
                at: now,
                actor: &principal.actor(),
                action: &format!("{}.create", kind.name().to_lowercase()),
                target: &id,
                outcome: "success",
                detail: resource_label(kind, &doc),
            });
            // What was just written, without reading it back.
            inserted.push(Ok(StoredResource {
                id,
                kind,
                source,
                doc,
                version: 1,
                created_at: now,
                modified_at: now,
                deleted_at: None,
            }));
        }
        Ok(inserted)
    }

    /// Validates, prepares and stores a new resource in its own transaction.
    pub(crate) async fn insert(
        &self,
        kind: ResourceKind,
        doc: Value,
        password: Option<NewPassword>,
        principal: &Principal,
    ) -> Result<StoredResource, ScimError> {
        let prepared = self.prepare(kind, doc, password, principal).await?;
        self.in_transaction(async |tx| self.insert_in(tx, prepared, principal).await)
            .await
    }

    pub async fn scim_create(
        &self,
        kind: ResourceKind,
        body: &Value,
        principal: &Principal,
    ) -> Result<Value, ScimError> {
        let (doc, password) = validated_create(kind, body)?;
        let stored = match self.insert(kind, doc.clone(), password, principal).await {
            Err(e) if e.scim_type == Some(ScimType::Uniqueness) => {
                return match self.restore_by_anchor(kind, &doc, principal).await? {
                    Some(restored) => Ok(restored),
                    None => Err(e),
                };
            }
            other => other?,
        };
        Ok(self.render(&stored))
    }

    /// An on-premises user restored from its tombstone comes back with its old anchor: when the
    /// agent's create collides with a soft-deleted user holding that anchor and userName, that
    /// user is restored and updated (as Entra does) instead of the create failing.
    async fn restore_by_anchor(
        &self,
        kind: ResourceKind,
        doc: &Value,
        principal: &Principal,
    ) -> Result<Option<Value>, ScimError> {
        let urn = sync_schema(kind);
        let anchor_of = |d: &Value| d.get(urn).and_then(|e| e.get("immutableId")).cloned();
        let Some(anchor) = anchor_of(doc).filter(|_| principal.scope() == Some(Scope::Sync)) else {
            return Ok(None);
        };
        if kind != ResourceKind::User {
            return Ok(None);
        }
        self.in_transaction(async |tx| {
            let holder = tx
                .holder_of_name(kind, &user_name(doc).to_lowercase())
                .await
                .map_err(store_err)?
                .filter(|h| h.deleted_at.is_some() && anchor_of(&h.doc).as_ref() == Some(&anchor));
            let Some(holder) = holder else {
                return Ok(None);
            };
            tx.set_deleted(&holder.id, None, self.now_ms())
                .await
                .map_err(store_err)?;
            let live = StoredResource {
                version: holder.version + 1,
                deleted_at: None,
                ..holder
            };
            self.write_changed(tx, live, doc.clone(), principal, "restore")
                .await
                .map(Some)
        })
        .await
    }

    /// A live resource of `kind`, or 404.
    pub async fn live(&self, kind: ResourceKind, id: &str) -> Result<StoredResource, ScimError> {
        match self.store.resource(id).await.map_err(store_err)? {
            Some(r) if r.kind == kind && r.deleted_at.is_none() => Ok(r),
            _ => Err(not_found(kind, id)),
        }
    }

    pub async fn scim_get(&self, kind: ResourceKind, id: &str) -> Result<Value, ScimError> {
        Ok(self.render(&self.live(kind, id).await?))
    }

    /// Loads a live resource inside a write transaction and checks `If-Match`.
    async fn load_for_write(
        tx: &mut Tx,
        kind: ResourceKind,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<StoredResource, ScimError> {
        let old = match tx.resource(id).await.map_err(store_err)? {
            Some(r) if r.kind == kind && r.deleted_at.is_none() => r,
            _ => return Err(not_found(kind, id)),
        };
        if let Some(if_match) = if_match {
            let current = old.etag();
            if !if_match_satisfied(if_match, &current) {
                return Err(ScimError::precondition_failed(format!(
                    "{} {id} is at version {current}, not {if_match}",
                    kind.name()
                )));
            }
        }
        Ok(old)
    }

    /// The common tail of PUT and PATCH: rules, password, version-checked write, audit.
    async fn write_changed(
        &self,
        tx: &mut Tx,
        old: StoredResource,
        mut doc: Value,
        principal: &Principal,
        action: &str,
    ) -> Result<Value, ScimError> {
        let kind = old.kind;
        let source = self.apply_sync_rules(kind, &mut doc, Some(&old), principal)?;
        let password = take_password(&mut doc).map(Secret::from);
        if let Some(obj) = doc.as_object_mut() {
            obj.remove("id");
            obj.remove("meta");
        }
        Self::set_entitlements(tx, &old.id, kind, &mut doc)
            .await
            .map_err(store_err)?;
        let now = self.now_ms();
        if let Some(password) = password {
            self.settings()
                .await
                .map_err(|e| ScimError::invalid_value(e.message))?
                .password_policy
                .check(password.expose())
                .map_err(|e| ScimError::invalid_value(e.message))?;
            let credential = Credential {
                kind: ARGON2ID.into(),
                verifier: self.hash(&password).await?,
                must_change: false,
            };
            tx.set_credential(&old.id, &credential, now)
                .await
                .map_err(store_err)?;
            tx.end_sessions(&old.id).await.map_err(store_err)?;
        }
        let write = resource_write(&old.id, kind, &source, &doc);
        Self::update_row(tx, &write, old.version, now).await?;
        tx.audit(&AuditEntry {
            at: now,
            actor: &principal.actor(),
            action: &format!("{}.{action}", kind.name().to_lowercase()),
            target: &old.id,
            outcome: "success",
            detail: resource_label(kind, &doc),
        });
        Ok(self.render(&StoredResource {
            version: old.version + 1,
            modified_at: now,
            source,
            doc,
            ..old
        }))
    }

    pub async fn scim_replace(
        &self,
        kind: ResourceKind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
        principal: &Principal,
    ) -> Result<Value, ScimError> {
        self.in_transaction(async |tx| {
            self.replace_in(tx, kind, id, body, if_match, principal)
                .await
        })
        .await
    }

    async fn replace_in(
        &self,
        tx: &mut Tx,
        kind: ResourceKind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
        principal: &Principal,
    ) -> Result<Value, ScimError> {
        let doc = validate_resource(kind, body)?;
        let old = Self::load_for_write(tx, kind, id, if_match).await?;
        self.write_changed(tx, old, doc, principal, "replace").await
    }

    pub async fn scim_patch(
        &self,
        kind: ResourceKind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
        principal: &Principal,
    ) -> Result<Value, ScimError> {
        self.in_transaction(async |tx| self.patch_in(tx, kind, id, body, if_match, principal).await)
            .await
    }

    async fn patch_in(
        &self,
        tx: &mut Tx,
        kind: ResourceKind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
        principal: &Principal,
    ) -> Result<Value, ScimError> {
        let patch = PatchRequest::parse(body)?;
        let old = Self::load_for_write(tx, kind, id, if_match).await?;
        let mut current = old.doc.clone();
        if let Some(obj) = current.as_object_mut() {
            obj.insert("id".into(), json!(old.id));
        }
        let doc = apply_patch(kind, &current, &patch)?;
        self.write_changed(tx, old, doc, principal, "patch").await
    }

    /// Soft delete: the object leaves SCIM and sign-in but can be restored for the retention
    /// period.
    pub async fn scim_delete(
        &self,
        kind: ResourceKind,
        id: &str,
        if_match: Option<&str>,
        principal: &Principal,
    ) -> Result<(), ScimError> {
        self.in_transaction(async |tx| self.delete_in(tx, kind, id, if_match, principal).await)
            .await
    }

    async fn delete_in(
        &self,
        tx: &mut Tx,
        kind: ResourceKind,
        id: &str,
        if_match: Option<&str>,
        principal: &Principal,
    ) -> Result<(), ScimError> {
        let old = Self::load_for_write(tx, kind, id, if_match).await?;
        let mut doc = old.doc.clone();
        self.apply_sync_rules(kind, &mut doc, Some(&old), principal)?;
        let now = self.now_ms();
        tx.set_deleted(id, Some(now), now)
            .await
            .map_err(store_err)?;
        tx.end_sessions(id).await.map_err(store_err)?;
        tx.audit(&AuditEntry {
            at: now,
            actor: &principal.actor(),
            action: &format!("{}.delete", kind.name().to_lowercase()),
            target: id,
            outcome: "success",
            detail: resource_label(kind, &old.doc),
        });
        Ok(())
    }

    /// A Bulk request (RFC 7644 §3.7) in one transaction, each operation that writes more than
    /// once in its own savepoint: a failed operation changes nothing and the others stand.
    /// `bulkId` references resolve to the ids of resources created earlier in the request.
    ///
    /// Every write request waits for the write transaction, one at a time, so it holds little
    /// more than statements: creates that need nothing from it nor from the operations before
    /// them (no password, no `bulkId` reference) are validated and prepared before it begins,
    /// and consecutive ones are written together. Not under `failOnErrors`, which stops at the
    /// operation that fails.
    pub async fn scim_bulk(
        &self,
        request: BulkRequest,
        principal: &Principal,
    ) -> Result<Value, ScimError> {
        let mut staged = Vec::with_capacity(request.operations.len());
        for mut op in request.operations {
            let create = match request.fail_on_errors {
                None => self.stage_create(&mut op, principal).await,
                Some(_) => None,
            };
            staged.push((op, create));
        }
        let mut tx = self.store.begin().await.map_err(store_err)?;
        let mut resolved: HashMap<String, String> = HashMap::new();
        let mut results = Vec::with_capacity(staged.len());
        let mut errors = 0;
        let mut staged = staged.into_iter().peekable();
        while let Some((mut op, create)) = staged.next() {
            if request.fail_on_errors.is_some_and(|max| errors >= max) {
                break;
            }
            let outcomes = match create {
                Some(create) => {
                    let mut run = vec![(op, create)];
                    while let Some((op, Some(create))) = staged.next_if(|(_, c)| c.is_some()) {
                        run.push((op, create));
                    }
                    self.bulk_creates(&mut tx, run, principal, &mut resolved)
                        .await?
                }
                None => {
                    let outcome = self
                        .bulk_in_order(&mut tx, principal, &mut op, &mut resolved)
                        .await?;
                    vec![(op, outcome)]
                }
            };
            for (op, outcome) in outcomes {
                results.push(match outcome {
                    Ok((status, written)) => {
                        let (location, version) = written.unzip();
                        bulk_operation_result(
                            &op,
                            location.as_deref(),
                            version.as_deref(),
                            status,
                            None,
                        )
                    }
                    Err(e) => {
                        errors += 1;
                        bulk_operation_result(&op, None, None, e.status, Some(&e))
                    }
                });
            }
        }
        tx.commit().await.map_err(store_err)?;
        Ok(bulk_response(results))
    }

    /// A create that needs nothing from the transaction nor from the operations before it,
    /// validated and prepared (its data taken out of it); `None` for any other operation.
    async fn stage_create(
        &self,
        op: &mut BulkOperation,
        principal: &Principal,
    ) -> Option<Result<Prepared, ScimError>> {
        let independent = writes_once(op)
            && op
                .data
                .as_ref()
                .is_none_or(|data| referenced_bulk_ids(data).is_empty());
        if !independent {
            return None;
        }
        let data = op.data.take().unwrap_or(Value::Null);
        Some(match parse_bulk_path(&op.path) {
            Ok((kind, _)) => self.prepare_create(kind, &data, principal).await,
            Err(e) => Err(e),
        })
    }

    /// Staged creates, written together: each operation's outcome. `Err` when the database
    /// failed the write, which may have aborted the transaction (PostgreSQL does): nothing of
    /// the request is kept.
    async fn bulk_creates(
        &self,
        tx: &mut Tx,
        run: Vec<(BulkOperation, Result<Prepared, ScimError>)>,
        principal: &Principal,
        resolved: &mut HashMap<String, String>,
    ) -> Result<Vec<(BulkOperation, BulkOutcome)>, ScimError> {
        let mut prepared = Vec::new();
        let mut outcomes = Vec::with_capacity(run.len());
        for (op, create) in run {
            match create {
                Ok(create) => {
                    prepared.push(create);
                    outcomes.push((op, None));
                }
                Err(e) => outcomes.push((op, Some(Err(e)))),
            }
        }
        let mut inserted = self
            .insert_all_in(tx, prepared, principal)
            .await?
            .into_iter();
        Ok(outcomes
            .into_iter()
            .map(|(op, invalid)| {
                let outcome = invalid
                    .or_else(|| inserted.next())
                    .unwrap_or_else(|| Err(ScimError::internal("the resource was not written")))
                    .map(|created| self.bulk_created(&op, &created, resolved));
                (op, outcome)
            })
            .collect())
    }

    /// An operation done in its turn (its `data` taken out of it), in a savepoint of its own
    /// unless it writes once. `Err` when the database failed a write that had none, which may
    /// have aborted the transaction (PostgreSQL does): nothing of the request is kept.
    async fn bulk_in_order(
        &self,
        tx: &mut Tx,
        principal: &Principal,
        op: &mut BulkOperation,
        resolved: &mut HashMap<String, String>,
    ) -> Result<BulkOutcome, ScimError> {
        let own_savepoint = !writes_once(op);
        if own_savepoint {
            tx.savepoint("bulk_op").await.map_err(store_err)?;
        }
        let data = op.data.take();
        match self.bulk_one(tx, principal, op, data, resolved).await {
            Ok(written) => {
                if own_savepoint {
                    tx.release("bulk_op").await.map_err(store_err)?;
                }
                Ok(Ok(written))
            }
            Err(e) if !own_savepoint && e.status >= 500 => Err(e),
            Err(e) => {
                if own_savepoint {
                    tx.rollback_to("bulk_op").await.map_err(store_err)?;
                }
                Ok(Err(e))
            }
        }
    }

    /// A Bulk create done: its `bulkId` now resolves to the new id, and the answer carries
    /// where the resource is and its version (not the rendered resource).
    fn bulk_created(
        &self,
        op: &BulkOperation,
        created: &StoredResource,
        resolved: &mut HashMap<String, String>,
    ) -> Written {
        if let Some(bulk_id) = &op.bulk_id {
            resolved.insert(bulk_id.clone(), created.id.clone());
        }
        let location = self.location(created.kind, &created.id);
        (201, Some((location, created.etag())))
    }

    /// A create's data validated and prepared: rules applied, any password hashed.
    async fn prepare_create(
        &self,
        kind: ResourceKind,
        data: &Value,
        principal: &Principal,
    ) -> Result<Prepared, ScimError> {
        let (doc, password) = validated_create(kind, data)?;
        self.prepare(kind, doc, password, principal).await
    }

    /// One Bulk operation (its `data` taken out of it): the status, and the written resource's
    /// location and version.
    async fn bulk_one(
        &self,
        tx: &mut Tx,
        principal: &Principal,
        op: &BulkOperation,
        data: Option<Value>,
        resolved: &mut HashMap<String, String>,
    ) -> Result<Written, ScimError> {
        let (kind, id) = parse_bulk_path(&op.path)?;
        let id = match id {
            Some(id) => Some(match id.strip_prefix("bulkId:") {
                Some(name) => resolved
                    .get(name)
                    .cloned()
                    .ok_or_else(|| ScimError::unresolved_bulk_id(name))?,
                None => id,
            }),
            None => None,
        };
        let mut data = data.unwrap_or(Value::Null);
        resolve_bulk_ids(&mut data, resolved)
            .map_err(|name| ScimError::unresolved_bulk_id(&name))?;
        let version = op.version.as_deref();
        let id = || {
            id.clone().ok_or_else(|| {
                ScimError::invalid_value(format!(
                    "{} needs /{{id}} in its path",
                    op.method.as_str()
                ))
            })
        };
        match op.method {
            BulkMethod::Post => {
                let prepared = self.prepare_create(kind, &data, principal).await?;
                let created = self.insert_in(tx, prepared, principal).await?;
                Ok(self.bulk_created(op, &created, resolved))
            }
            BulkMethod::Put => {
                let id = id()?;
                let replaced = self.replace_in(tx, kind, &id, &data, version, principal);
                Ok((200, location_and_version(&replaced.await?)))
            }
            BulkMethod::Patch => {
                let id = id()?;
                let patched = self.patch_in(tx, kind, &id, &data, version, principal);
                Ok((200, location_and_version(&patched.await?)))
            }
            BulkMethod::Delete => {
                self.delete_in(tx, kind, &id()?, version, principal).await?;
                Ok((204, None))
            }
        }
    }

    /// A list or search: filter, sort, page, project (RFC 7644 §3.4.2).
    pub async fn scim_list(
        &self,
        kind: ResourceKind,
        query: &ListQuery,
    ) -> Result<Value, ScimError> {
        if let Some(filter) = &query.filter {
            filter.validate_for(kind)?;
        }
        let index = query.filter.as_ref().and_then(|f| index_for(kind, f));
        let stored = self
            .store
            .live_resources(kind, index)
            .await
            .map_err(store_err)?;
        let mut matched: Vec<Value> = stored
            .iter()
            .map(|r| self.render(r))
            .filter(|r| {
                query
                    .filter
                    .as_ref()
                    .is_none_or(|f| f.matches_kind(kind, r))
            })
            .collect();
        let max = self.config.limits.max_results;
        if matched.len() > max && query.count.is_none_or(|c| c > max) {
            return Err(ScimError::too_many(format!(
                "{} resources match; page through them with startIndex and count (at most {max} \
                 per page)",
                matched.len()
            )));
        }
        if let Some(sort_by) = &query.sort_by {
            sort_resources(kind, &mut matched, sort_by, query.sort_order);
        }
        let total = matched.len();
        let range = query.page_range(total);
        let page: Vec<Value> = matched
            .drain(range)
            .map(|r| project(kind, &r, &query.attributes, &query.excluded_attributes))
            .collect();
        Ok(list_response(total, query.start_index, page))
    }
}

/// A new resource's document validated, and the password it carried taken out of it.
fn validated_create(
    kind: ResourceKind,
    data: &Value,
) -> Result<(Value, Option<NewPassword>), ScimError> {
    let mut doc = validate_resource(kind, data)?;
    let password = take_password(&mut doc).map(|p| NewPassword {
        password: Secret::from(p),
        must_change: false,
    });
    Ok((doc, password))
}

/// The `meta.location` and `meta.version` of a rendered resource.
fn location_and_version(resource: &Value) -> Option<(String, String)> {
    let meta = resource.get("meta")?;
    let field = |k: &str| meta.get(k).and_then(Value::as_str).map(str::to_owned);
    Some((field("location")?, field("version")?))
}

/// Whether a Bulk operation makes a single write: a create without a password stores one row
/// (its audit entry is written at commit). It needs no savepoint of its own, since a statement
/// that fails changes nothing; the savepoints of the rest are two statements each, and every
/// statement is a round trip to the database.
fn writes_once(op: &BulkOperation) -> bool {
    op.method == BulkMethod::Post
        && op
            .data
            .as_ref()
            .and_then(Value::as_object)
            .is_none_or(|doc| !doc.keys().any(|k| k.eq_ignore_ascii_case("password")))
}

/// The index that answers `filter` (an equality, or an `or` of equalities on one attribute),
/// if one does; the filter still confirms every row it yields.
fn index_for(kind: ResourceKind, filter: &Filter) -> Option<Index> {
    let lower = |values: Vec<String>| values.iter().map(|v| v.to_lowercase()).collect();
    let (column, values) = match filter.as_indexable_eq_any() {
        Some((attr, values)) => match attr.as_str() {
            "userName" if kind == ResourceKind::User => (Column::NameKey, lower(values)),
            "externalId" => (Column::ExternalId, values),
            "id" => (Column::Id, values),
            a if a.eq_ignore_ascii_case(&format!("{}:immutableId", sync_schema(kind))) => {
                (Column::Anchor, values)
            }
            _ => return None,
        },
        None if kind == ResourceKind::User => {
            (Column::EmailKey, lower(filter.as_work_email_eq_any()?))
        }
        None => return None,
    };
    Some(Index { column, values })
}

/// What the audit log says about an object: its userName or displayName, never a secret.
pub(crate) fn resource_label(kind: ResourceKind, doc: &Value) -> &str {
    let key = match kind {
        ResourceKind::User => "userName",
        ResourceKind::Group | ResourceKind::Contact => "displayName",
    };
    doc.get(key).and_then(Value::as_str).unwrap_or("")
}
