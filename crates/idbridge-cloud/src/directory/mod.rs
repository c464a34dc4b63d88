//! The tenant's behaviour, between the HTTP edge and the store: who may do what, SCIM
//! resource lifecycle, licenses, passwords, sign-in and audit. No HTTP types here.

mod admin;
mod scim;
mod sspr;
mod writeback;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use idbridge_core::{Clock, Secret};
use idbridge_scim::{
    ResourceKind, ScimError, SYNC_CONTACT_SCHEMA, SYNC_GROUP_SCHEMA, SYNC_USER_SCHEMA,
};
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::CloudConfig;
use crate::error::{scim_store_error, ApiError};
use crate::hub::AgentHub;
use crate::secrets::{new_token, token_hash};
use crate::settings::TenantSettings;
use crate::store::{AuditEntry, Store, StoreError, StoredResource, TokenRecord};

pub use admin::{SigninOutcome, UserView};
pub use sspr::totp_code;
pub use writeback::{AgentRegistration, WRITEBACK_LICENSE};

/// What a bearer token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything, including the admin API.
    Admin,
    /// The sync agent: SCIM read/write, and the only writer of on-premises objects.
    Sync,
    /// SCIM reads.
    Read,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "sync" => Some(Self::Sync),
            "read" => Some(Self::Read),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Sync => "sync",
            Self::Read => "read",
        }
    }
}

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub enum Principal {
    Token {
        name: String,
        scope: Scope,
    },
    /// A signed-in user; `change_only` sessions may only change the password.
    User {
        id: String,
        user_name: String,
        change_only: bool,
    },
}

impl Principal {
    pub fn actor(&self) -> String {
        match self {
            Self::Token { name, .. } => format!("token:{name}"),
            Self::User { user_name, .. } => format!("user:{user_name}"),
        }
    }

    pub fn scope(&self) -> Option<Scope> {
        match self {
            Self::Token { scope, .. } => Some(*scope),
            Self::User { .. } => None,
        }
    }
}

/// The `source` value of objects mastered in Active Directory.
pub const ON_PREMISES: &str = "on_premises";
pub const CLOUD: &str = "cloud";

const SETTINGS_KEY: &str = "tenant";

/// How long a verified API token is trusted without asking the store again.
const TOKEN_CACHE_MS: i64 = 30_000;
const TOKEN_CACHE_MAX: usize = 10_000;

#[derive(Clone)]
pub struct Directory {
    store: Store,
    clock: Arc<dyn Clock>,
    config: Arc<CloudConfig>,
    /// token hash -> (principal, when it was looked up): saves a query on every SCIM request.
    token_cache: Arc<Mutex<HashMap<String, (Principal, i64)>>>,
    /// The agents connected over the channel.
    hub: Arc<AgentHub>,
}

impl Directory {
    /// Opens the directory over an opened store and applies the configured license SKUs.
    pub async fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        config: Arc<CloudConfig>,
    ) -> Result<Self, StoreError> {
        let mut tx = store.begin().await?;
        let skus: Vec<(String, i64)> = config
            .licenses
            .iter()
            .map(|l| (l.sku.clone(), l.seats))
            .collect();
        tx.sync_skus(&skus).await?;
        tx.commit().await?;
        Ok(Self {
            store,
            clock,
            config,
            token_cache: Arc::default(),
            hub: Arc::default(),
        })
    }

    pub fn config(&self) -> &CloudConfig {
        &self.config
    }

    pub fn hub(&self) -> &AgentHub {
        &self.hub
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Milliseconds since the epoch: the unit of every stored timestamp.
    fn now_ms(&self) -> i64 {
        i64::try_from(self.clock.now().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }

    /// Creates an API token and returns it; only its hash is stored.
    pub async fn create_token(&self, name: &str, scope: Scope) -> Result<Secret, StoreError> {
        let token = new_token("idb_", &mut rand::thread_rng());
        let record = TokenRecord {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            scope: scope.as_str().to_owned(),
        };
        let now = self.now_ms();
        let mut tx = self.store.begin().await?;
        tx.insert_token(&record, &token_hash(token.expose()), now)
            .await?;
        tx.audit(&AuditEntry {
            at: now,
            actor: "cli",
            action: "token.create",
            target: name,
            outcome: "success",
            detail: scope.as_str(),
        });
        tx.commit().await?;
        Ok(token)
    }

    /// Resolves a bearer token (API token or sign-in session); `None` if it is unknown.
    pub async fn authenticate(&self, bearer: &str) -> Result<Option<Principal>, StoreError> {
        let hash = token_hash(bearer);
        if bearer.starts_with("ids_") {
            let Some((user_id, purpose)) = self.store.session(&hash, self.now_ms()).await? else {
                return Ok(None);
            };
            let Some(user) = self.store.resource(&user_id).await? else {
                return Ok(None);
            };
            if user.deleted_at.is_some() {
                return Ok(None);
            }
            return Ok(Some(Principal::User {
                user_name: user_name(&user.doc).to_owned(),
                id: user_id,
                change_only: purpose == admin::PURPOSE_PASSWORD_CHANGE,
            }));
        }
        let now = self.now_ms();
        if let Some((principal, at)) = self.cached_token(&hash) {
            if now - at < TOKEN_CACHE_MS {
                return Ok(Some(principal));
            }
        }
        let principal = self
            .store
            .token_by_hash(&hash)
            .await?
            .and_then(|t| Some((t.name, Scope::parse(&t.scope)?)))
            .map(|(name, scope)| Principal::Token { name, scope });
        if let (Some(p), Ok(mut cache)) = (&principal, self.token_cache.lock()) {
            if cache.len() >= TOKEN_CACHE_MAX {
                cache.clear();
            }
            cache.insert(hash, (p.clone(), now));
        }
        Ok(principal)
    }

    fn cached_token(&self, hash: &str) -> Option<(Principal, i64)> {
        self.token_cache.lock().ok()?.get(hash).cloned()
    }

    pub async fn settings(&self) -> Result<TenantSettings, ApiError> {
        match self.store.setting(SETTINGS_KEY).await? {
            None => Ok(TenantSettings::default()),
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                tracing::error!(error = %e, "stored tenant settings are unreadable");
                ApiError::new(500, "internal", "stored tenant settings are unreadable")
            }),
        }
    }

    pub async fn set_settings(
        &self,
        principal: &Principal,
        value: Value,
    ) -> Result<TenantSettings, ApiError> {
        let settings = TenantSettings::from_json(value)?;
        let text = serde_json::to_string(&settings)
            .map_err(|e| ApiError::new(500, "internal", e.to_string()))?;
        let now = self.now_ms();
        let mut tx = self.store.begin().await?;
        tx.set_setting(SETTINGS_KEY, &text).await?;
        tx.audit(&AuditEntry {
            at: now,
            actor: &principal.actor(),
            action: "tenant.settings",
            target: "tenant",
            outcome: "success",
            detail: &text,
        });
        tx.commit().await?;
        Ok(settings)
    }

    /// Purges soft-deleted objects whose retention has ended; returns how many.
    pub async fn purge_expired(&self) -> Result<usize, ApiError> {
        let retention_ms = self.settings().await?.soft_delete_retention_days * 86_400_000;
        let cutoff = self.now_ms().saturating_sub(retention_ms);
        let expired = self.store.expired_deleted(cutoff).await?;
        for id in &expired {
            let mut tx = self.store.begin().await?;
            purge_in(&mut tx, id).await?;
            tx.audit(&AuditEntry {
                at: self.now_ms(),
                actor: "system",
                action: "purge.retention",
                target: id,
                outcome: "success",
                detail: "",
            });
            tx.commit().await?;
        }
        Ok(expired.len())
    }

    /// Where a resource is, as `meta.location` says.
    pub fn location(&self, kind: ResourceKind, id: &str) -> String {
        format!(
            "{}/scim/v2{}/{id}",
            self.config.public_url(),
            kind.endpoint()
        )
    }

    /// The SCIM representation of a stored resource: the document plus `id` and `meta`.
    pub fn render(&self, r: &StoredResource) -> Value {
        let mut doc = match &r.doc {
            Value::Object(o) => o.clone(),
            _ => Map::new(),
        };
        doc.insert("id".into(), json!(r.id));
        let location = self.location(r.kind, &r.id);
        doc.insert(
            "meta".into(),
            json!({
                "resourceType": r.kind.name(),
                "created": rfc3339(r.created_at),
                "lastModified": rfc3339(r.modified_at),
                "version": r.etag(),
                "location": location,
            }),
        );
        Value::Object(doc)
    }

    async fn audit(&self, entry: &AuditEntry<'_>) {
        if let Err(e) = self.store.record_audit(entry).await {
            tracing::error!(error = %e, action = entry.action, "could not write the audit log");
        }
    }
}

/// Removes a resource, its credentials and licenses, and its memberships in groups.
async fn purge_in(tx: &mut crate::store::Tx, id: &str) -> Result<(), StoreError> {
    for group in tx.groups_mentioning(id).await? {
        let mut doc = group.doc.clone();
        let before = members_len(&doc);
        if let Some(members) = doc.get_mut("members").and_then(Value::as_array_mut) {
            members.retain(|m| m.get("value").and_then(Value::as_str) != Some(id));
        }
        if members_len(&doc) == 0 {
            if let Some(obj) = doc.as_object_mut() {
                obj.remove("members");
            }
        }
        if members_len(&doc) != before {
            let write = scim::resource_write(&group.id, ResourceKind::Group, &group.source, &doc);
            tx.update_resource(&write, group.version, group.modified_at)
                .await?;
        }
    }
    tx.purge(id).await?;
    Ok(())
}

fn members_len(doc: &Value) -> usize {
    doc.get("members")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

pub(crate) fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

pub(crate) fn user_name(doc: &Value) -> &str {
    doc.get("userName").and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn sync_schema(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::User => SYNC_USER_SCHEMA,
        ResourceKind::Group => SYNC_GROUP_SCHEMA,
        ResourceKind::Contact => SYNC_CONTACT_SCHEMA,
    }
}

fn not_found(kind: ResourceKind, id: &str) -> ScimError {
    ScimError::not_found(format!("{} {id:?} does not exist", kind.name()))
}

fn store_err(e: StoreError) -> ScimError {
    scim_store_error(e)
}
