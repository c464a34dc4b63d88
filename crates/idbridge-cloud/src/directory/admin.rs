//! The admin API's operations, sign-in and self-service password change.

use idbridge_channel::Outcome;
use idbridge_core::Secret;
use idbridge_phs::PhsVerifier;
use idbridge_scim::{ResourceKind, USER_SCHEMA};
use serde::Serialize;
use serde_json::{json, Value};

use super::scim::NewPassword;
use super::{purge_in, rfc3339, user_name, Directory, Principal, ON_PREMISES};
use crate::error::ApiError;
use crate::secrets::{
    new_token, temporary_password, token_hash, verify_password, ARGON2ID, PPH1_MD4,
};
use crate::settings::{SigninMethod, TenantSettings};
use crate::store::{
    AccountSummary, AuditEntry, Column, Credential, Index, SigninState, StoredResource,
};

pub(crate) const PURPOSE_SESSION: &str = "session";
pub(crate) const PURPOSE_PASSWORD_CHANGE: &str = "password_change";
const PASSWORD_CHANGE_SESSION_MS: i64 = 10 * 60 * 1000;

/// A user as the admin API shows it.
#[derive(Debug, Serialize)]
pub struct UserView {
    pub id: String,
    #[serde(rename = "userPrincipalName")]
    pub user_principal_name: String,
    #[serde(rename = "displayName")]
    pub display_name: Option<String>,
    pub source: String,
    #[serde(rename = "accountEnabled")]
    pub account_enabled: bool,
    pub licenses: Vec<String>,
    #[serde(rename = "hasPassword")]
    pub has_password: bool,
    #[serde(rename = "mustChangePassword")]
    pub must_change_password: bool,
    #[serde(rename = "lockedUntil", skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<String>,
    #[serde(rename = "deletedAt", skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temporary_password: Option<String>,
}

pub enum SigninOutcome {
    Session {
        token: Secret,
        expires_at: String,
    },
    /// The password was right but must be changed: a token good only for that.
    ChangeRequired {
        change_token: Secret,
    },
}

fn is_active(doc: &Value) -> bool {
    doc.get("active").and_then(Value::as_bool).unwrap_or(true)
}

fn kind_noun(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::User => "user",
        ResourceKind::Group => "group",
        ResourceKind::Contact => "contact",
    }
}

impl Directory {
    pub async fn user_view(&self, user: &StoredResource) -> Result<UserView, ApiError> {
        let summary = self.store.account_summary(&user.id).await?;
        Ok(self.view_of(user, summary))
    }

    fn view_of(&self, user: &StoredResource, summary: AccountSummary) -> UserView {
        UserView {
            id: user.id.clone(),
            user_principal_name: user_name(&user.doc).to_owned(),
            display_name: user
                .doc
                .get("displayName")
                .and_then(Value::as_str)
                .map(str::to_owned),
            source: user.source.clone(),
            account_enabled: is_active(&user.doc),
            licenses: summary.licenses,
            has_password: summary.has_password,
            must_change_password: summary.must_change_password,
            locked_until: (summary.locked_until > self.now_ms())
                .then(|| rfc3339(summary.locked_until)),
            deleted_at: user.deleted_at.map(rfc3339),
            temporary_password: None,
        }
    }

    pub async fn live_user(&self, id: &str) -> Result<StoredResource, ApiError> {
        Ok(self.live(ResourceKind::User, id).await?)
    }

    /// `POST /api/v1/users`: a cloud-only user; without a password, a temporary one that must
    /// be changed at first sign-in.
    pub async fn create_cloud_user(
        &self,
        principal: &Principal,
        body: &Value,
    ) -> Result<UserView, ApiError> {
        let field = |name: &str| body.get(name).and_then(Value::as_str);
        let upn = field("userPrincipalName")
            .filter(|u| u.contains('@'))
            .ok_or_else(|| ApiError::bad_request("userPrincipalName (user@domain) is required"))?;
        let require_change = match body.get("require_change") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(ApiError::bad_request("require_change must be a boolean")),
        };
        let scim = json!({
            "schemas": [USER_SCHEMA],
            "userName": upn,
            "active": true,
            "displayName": field("displayName"),
        });
        let doc = idbridge_scim::validate_resource(ResourceKind::User, &scim)?;
        let (password, temporary) = match body.get("password") {
            Some(Value::String(p)) => (Secret::new(p.as_str()), None),
            None | Some(Value::Null) => {
                let t = temporary_password(&mut rand::thread_rng());
                (t.clone(), Some(t))
            }
            Some(_) => return Err(ApiError::bad_request("password must be a string")),
        };
        let must_change = require_change.unwrap_or(temporary.is_some());
        let stored = self
            .insert(
                ResourceKind::User,
                doc,
                Some(NewPassword {
                    password,
                    must_change,
                }),
                principal,
            )
            .await
            .map_err(|e| {
                let e = ApiError::from(e);
                // The policy check reports through SCIM's invalidValue; keep the admin API's code.
                if e.message.contains("password") && e.status == 400 {
                    ApiError::new(400, "policy_violation", e.message)
                } else {
                    e
                }
            })?;
        let mut view = self.user_view(&stored).await?;
        view.temporary_password = temporary.map(|t| t.expose().to_owned());
        Ok(view)
    }

    pub async fn list_users(&self) -> Result<Vec<UserView>, ApiError> {
        let mut summaries = self.store.account_summaries().await?;
        let users = self.store.live_resources(ResourceKind::User, None).await?;
        Ok(users
            .iter()
            .map(|user| self.view_of(user, summaries.remove(&user.id).unwrap_or_default()))
            .collect())
    }

    pub async fn assign_license(
        &self,
        principal: &Principal,
        user_id: &str,
        sku: &str,
    ) -> Result<UserView, ApiError> {
        self.change_license(principal, user_id, sku, true).await
    }

    pub async fn remove_license(
        &self,
        principal: &Principal,
        user_id: &str,
        sku: &str,
    ) -> Result<UserView, ApiError> {
        self.change_license(principal, user_id, sku, false).await
    }

    async fn change_license(
        &self,
        principal: &Principal,
        user_id: &str,
        sku: &str,
        assign: bool,
    ) -> Result<UserView, ApiError> {
        let now = self.now_ms();
        let mut tx = self.store.begin().await?;
        let user = match tx.resource(user_id).await? {
            Some(u) if u.kind == ResourceKind::User && u.deleted_at.is_none() => u,
            _ => {
                return Err(ApiError::not_found(format!(
                    "user {user_id:?} does not exist"
                )))
            }
        };
        let changed = if assign {
            let Some((seats, used)) = tx.seats(sku, self.store.backend()).await? else {
                let known: Vec<&str> = self
                    .config
                    .licenses
                    .iter()
                    .map(|l| l.sku.as_str())
                    .collect();
                return Err(ApiError::new(
                    400,
                    "unknown_sku",
                    format!(
                        "the tenant has no SKU {sku:?}; it has: {}",
                        known.join(", ")
                    ),
                ));
            };
            let has = tx.licenses_of(user_id).await?.iter().any(|s| s == sku);
            if !has && used >= seats {
                return Err(ApiError::conflict(
                    "no_seats",
                    format!(
                        "all {seats} seats of {sku:?} are assigned; remove one or buy more seats"
                    ),
                ));
            }
            tx.add_license(user_id, sku, now).await?
        } else {
            if !tx.remove_license(user_id, sku).await? {
                return Err(ApiError::not_found(format!(
                    "user {user_id} has no license {sku:?}"
                )));
            }
            true
        };
        if changed {
            let mut doc = user.doc.clone();
            Self::set_entitlements(&mut tx, user_id, ResourceKind::User, &mut doc).await?;
            let write =
                super::scim::resource_write(user_id, ResourceKind::User, &user.source, &doc);
            tx.update_resource(&write, user.version, now).await?;
            tx.audit(&AuditEntry {
                at: now,
                actor: &principal.actor(),
                action: if assign {
                    "license.assign"
                } else {
                    "license.remove"
                },
                target: user_id,
                outcome: "success",
                detail: sku,
            });
        }
        tx.commit().await?;
        let user = self.live_user(user_id).await?;
        self.user_view(&user).await
    }

    /// Admin reset of a user's password: a synced user's goes to AD through an agent (and
    /// `written_back` is true), a cloud user's stays in the cloud. Returns the generated
    /// temporary password when none was given.
    pub async fn reset_password(
        &self,
        principal: &Principal,
        user_id: &str,
        new_password: Option<Secret>,
        require_change: bool,
        request_id: Option<String>,
    ) -> Result<(Option<Secret>, bool), ApiError> {
        let user = self.live_user(user_id).await?;
        let (password, temporary) = match new_password {
            Some(p) => (p, None),
            None => {
                let t = temporary_password(&mut rand::thread_rng());
                (t.clone(), Some(t))
            }
        };
        if user.source == ON_PREMISES {
            let fresh = self
                .reset_on_premises(
                    principal,
                    &user,
                    &password,
                    require_change,
                    false,
                    request_id,
                )
                .await?;
            // A replayed request id set no new password: there is nothing to show.
            return Ok((temporary.filter(|_| fresh), true));
        }
        self.store_password(
            principal,
            &user,
            &password,
            require_change,
            "password.reset",
        )
        .await?;
        Ok((temporary, false))
    }

    /// Checks the cloud's policy, then stores (see [`Self::store_verifier`]).
    async fn store_password(
        &self,
        principal: &Principal,
        user: &StoredResource,
        password: &Secret,
        must_change: bool,
        action: &str,
    ) -> Result<(), ApiError> {
        self.settings()
            .await?
            .password_policy
            .check(password.expose())?;
        self.store_verifier(principal, user, password, must_change, action)
            .await
    }

    /// Hashes, stores, unlocks, ends sessions, audits. No policy check: for synced users the
    /// DC's policy, which already accepted the password, is the one that applies.
    pub(crate) async fn store_verifier(
        &self,
        principal: &Principal,
        user: &StoredResource,
        password: &Secret,
        must_change: bool,
        action: &str,
    ) -> Result<(), ApiError> {
        let verifier = self.hash(password).await?;
        let now = self.now_ms();
        let mut tx = self.store.begin().await?;
        tx.set_credential(
            &user.id,
            &Credential {
                kind: ARGON2ID.into(),
                verifier,
                must_change,
            },
            now,
        )
        .await?;
        tx.set_signin_state(&user.id, SigninState::default())
            .await?;
        tx.end_sessions(&user.id).await?;
        tx.audit(&AuditEntry {
            at: now,
            actor: &principal.actor(),
            action,
            target: &user.id,
            outcome: "success",
            detail: if must_change { "require_change" } else { "" },
        });
        tx.commit().await?;
        Ok(())
    }

    /// The sync agent's password hash sync: a salted verifier of the on-premises NT hash.
    pub async fn set_password_verifier(
        &self,
        principal: &Principal,
        user_id: &str,
        verifier: &str,
    ) -> Result<(), ApiError> {
        let parsed = PhsVerifier::parse(verifier).map_err(|e| {
            ApiError::bad_request(format!(
                "verifier: {e} (expected v1;PPH1_MD4,<salt hex>,<iterations>,<hash hex>;)"
            ))
        })?;
        let user = self.live_user(user_id).await?;
        if user.source != ON_PREMISES {
            return Err(ApiError::conflict(
                "not_synced",
                format!("user {user_id} is a cloud user; hash sync only applies to synced users"),
            ));
        }
        let now = self.now_ms();
        let mut tx = self.store.begin().await?;
        tx.set_credential(
            user_id,
            &Credential {
                kind: PPH1_MD4.into(),
                verifier: Secret::new(parsed.to_string()),
                must_change: false,
            },
            now,
        )
        .await?;
        tx.audit(&AuditEntry {
            at: now,
            actor: &principal.actor(),
            action: "phs.set",
            target: user_id,
            outcome: "success",
            detail: &format!("iterations={}", parsed.iterations()),
        });
        tx.commit().await?;
        Ok(())
    }

    /// Soft delete through the admin API (the same rules as SCIM DELETE).
    pub async fn soft_delete(
        &self,
        principal: &Principal,
        kind: ResourceKind,
        id: &str,
    ) -> Result<(), ApiError> {
        Ok(self.scim_delete(kind, id, None, principal).await?)
    }

    pub async fn deleted(&self, kind: ResourceKind) -> Result<Vec<Value>, ApiError> {
        let rows = self.store.deleted_resources(kind).await?;
        let retention_ms = self.settings().await?.soft_delete_retention_days * 86_400_000;
        Ok(rows
            .iter()
            .map(|r| {
                let deleted = r.deleted_at.unwrap_or_default();
                json!({
                    "id": r.id,
                    "name": super::scim::resource_label(kind, &r.doc),
                    "source": r.source,
                    "deletedAt": rfc3339(deleted),
                    "purgeAfter": rfc3339(deleted.saturating_add(retention_ms)),
                })
            })
            .collect())
    }

    async fn deleted_one(&self, kind: ResourceKind, id: &str) -> Result<StoredResource, ApiError> {
        match self.store.resource(id).await? {
            Some(r) if r.kind == kind && r.deleted_at.is_some() => Ok(r),
            _ => Err(ApiError::not_found(format!(
                "no soft-deleted {} {id:?}",
                kind_noun(kind)
            ))),
        }
    }

    pub async fn restore(
        &self,
        principal: &Principal,
        kind: ResourceKind,
        id: &str,
    ) -> Result<StoredResource, ApiError> {
        self.deleted_one(kind, id).await?;
        let now = self.now_ms();
        let mut tx = self.store.begin().await?;
        tx.set_deleted(id, None, now).await?;
        tx.audit(&AuditEntry {
            at: now,
            actor: &principal.actor(),
            action: &format!("{}.restore", kind_noun(kind)),
            target: id,
            outcome: "success",
            detail: "",
        });
        tx.commit().await?;
        Ok(self.live(kind, id).await?)
    }

    pub async fn purge(
        &self,
        principal: &Principal,
        kind: ResourceKind,
        id: &str,
    ) -> Result<(), ApiError> {
        self.deleted_one(kind, id).await?;
        let now = self.now_ms();
        let mut tx = self.store.begin().await?;
        purge_in(&mut tx, id).await?;
        tx.audit(&AuditEntry {
            at: now,
            actor: &principal.actor(),
            action: &format!("{}.purge", kind_noun(kind)),
            target: id,
            outcome: "success",
            detail: "",
        });
        tx.commit().await?;
        Ok(())
    }

    /// `POST /api/v1/signin`. Unknown, deleted and wrong-password users are indistinguishable.
    pub async fn sign_in(
        &self,
        username: &str,
        password: &Secret,
    ) -> Result<SigninOutcome, ApiError> {
        let invalid = || {
            ApiError::new(
                401,
                "invalid_credentials",
                "the user name or password is wrong",
            )
        };
        let key = username.to_lowercase();
        let user = self
            .store
            .live_resources(ResourceKind::User, Some(Index::one(Column::NameKey, key)))
            .await?
            .into_iter()
            .next();
        let settings = self.settings().await?;
        let pass_through = settings.signin_method == SigninMethod::PassThrough
            && user.as_ref().is_some_and(|u| u.source == ON_PREMISES);
        let credential = match &user {
            Some(u) if !pass_through => self.store.credential(&u.id).await?,
            _ => None,
        };
        let Some(user) = user.filter(|_| pass_through || credential.is_some()) else {
            // Spend the time a real check takes, so timing does not reveal who exists.
            self.check_password(ARGON2ID, &Secret::new(DUMMY_ARGON2), password)
                .await;
            self.audit_signin(username, "failure", "unknown user or no password")
                .await;
            return Err(invalid());
        };
        let now = self.now_ms();
        let state = self.store.signin_state(&user.id).await?;
        if state.locked_until > now {
            self.audit_signin(username, "locked", "").await;
            return Err(ApiError::new(
                423,
                "locked",
                "the account is locked after repeated failed sign-ins; try again later or ask an \
                 administrator",
            ));
        }
        // The password check: the cloud's verifier, or the DC through an agent.
        let (right, must_change, method) = match &credential {
            Some(c) => (
                self.check_password(&c.kind, &c.verifier, password).await,
                c.must_change,
                c.kind.as_str(),
            ),
            None => match self.verify_on_premises(&user, password).await? {
                Outcome::Done => (true, false, "pass_through"),
                Outcome::PasswordChangeRequired => (true, true, "pass_through"),
                Outcome::InvalidCredentials => (false, false, "pass_through"),
                refused => {
                    let error = super::writeback::refusal(&refused)
                        .unwrap_or_else(|| ApiError::new(500, "internal", "unexpected outcome"));
                    self.audit_signin(username, "refused", error.code).await;
                    return Err(error);
                }
            },
        };
        if !right {
            let locked = self.count_failure(&user.id, &settings, state).await?;
            self.audit_signin(username, "failure", if locked { "now locked" } else { "" })
                .await;
            return Err(invalid());
        }
        if !is_active(&user.doc) {
            self.audit_signin(username, "refused", "account disabled")
                .await;
            return Err(ApiError::new(
                403,
                "account_disabled",
                "the account is disabled",
            ));
        }
        let mut tx = self.store.begin().await?;
        if state.failures > 0 {
            tx.set_signin_state(&user.id, SigninState::default())
                .await?;
        }
        let token = new_token("ids_", &mut rand::thread_rng());
        let outcome = if must_change {
            tx.insert_session(
                &token_hash(token.expose()),
                &user.id,
                PURPOSE_PASSWORD_CHANGE,
                now + PASSWORD_CHANGE_SESSION_MS,
            )
            .await?;
            SigninOutcome::ChangeRequired {
                change_token: token,
            }
        } else {
            let expires = now + settings.session_lifetime_seconds * 1000;
            tx.insert_session(
                &token_hash(token.expose()),
                &user.id,
                PURPOSE_SESSION,
                expires,
            )
            .await?;
            SigninOutcome::Session {
                token,
                expires_at: rfc3339(expires),
            }
        };
        tx.commit().await?;
        let outcome_name = match outcome {
            SigninOutcome::Session { .. } => "success",
            SigninOutcome::ChangeRequired { .. } => "password_change_required",
        };
        self.audit_signin(username, outcome_name, method).await;
        Ok(outcome)
    }

    async fn check_password(&self, kind: &str, verifier: &Secret, password: &Secret) -> bool {
        let (kind, verifier, password) = (kind.to_owned(), verifier.clone(), password.clone());
        tokio::task::spawn_blocking(move || verify_password(&kind, &verifier, password.expose()))
            .await
            .unwrap_or(false)
    }

    /// Smart lockout: one more failed proof of identity (a sign-in, a self-service reset code);
    /// `threshold` of them within the window lock the account for a while. True if now locked.
    pub(crate) async fn count_failure(
        &self,
        user_id: &str,
        settings: &TenantSettings,
        mut state: SigninState,
    ) -> Result<bool, ApiError> {
        let now = self.now_ms();
        if now - state.window_start > settings.lockout.window_seconds * 1000 {
            state = SigninState {
                failures: 0,
                window_start: now,
                locked_until: 0,
            };
        }
        state.failures += 1;
        let locked = state.failures >= settings.lockout.threshold;
        if locked {
            state.locked_until = now + settings.lockout.duration_seconds * 1000;
            state.failures = 0;
        }
        let mut tx = self.store.begin().await?;
        tx.set_signin_state(user_id, state).await?;
        tx.commit().await?;
        Ok(locked)
    }

    async fn audit_signin(&self, username: &str, outcome: &str, detail: &str) {
        self.audit(&AuditEntry {
            at: self.now_ms(),
            actor: &format!("user:{username}"),
            action: "signin",
            target: username,
            outcome,
            detail,
        })
        .await;
    }

    /// `POST /api/v1/me/password`: the signed-in user changes their own password.
    pub async fn change_own_password(
        &self,
        principal: &Principal,
        old_password: &Secret,
        new_password: &Secret,
    ) -> Result<bool, ApiError> {
        let Principal::User { id, .. } = principal else {
            return Err(ApiError::forbidden(
                "sign in as the user to change their password",
            ));
        };
        let user = self.live_user(id).await?;
        if user.source == ON_PREMISES {
            // The DC checks the old password, history and minimum age.
            self.change_on_premises(principal, &user, old_password, new_password)
                .await?;
            return Ok(true);
        }
        let credential = self.store.credential(id).await?;
        let right = match &credential {
            Some(c) => {
                self.check_password(&c.kind, &c.verifier, old_password)
                    .await
            }
            None => false,
        };
        if !right {
            return Err(ApiError::new(
                401,
                "invalid_credentials",
                "the old password is wrong",
            ));
        }
        if old_password.expose() == new_password.expose() {
            return Err(ApiError::new(
                400,
                "policy_violation",
                "the new password must differ from the old one",
            ));
        }
        self.store_password(principal, &user, new_password, false, "password.change")
            .await?;
        Ok(false)
    }
}

/// An argon2id hash of a random string nobody knows, verified against for unknown users.
const DUMMY_ARGON2: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3T1yvqDNlTSS5O6BAtXhL2ySJkqT6Zl0nqBMOYYmNq0";
