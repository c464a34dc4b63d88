//! Writing back to Active Directory through a connected agent (admin reset, the user's own
//! change, unlock; self-service reset builds on these), pass-through sign-in, and agent
//! registration.
//!
//! A writeback either changes both sides or neither: the cloud's verifier changes only after
//! the agent reports that the DC took the password, and the DC's answer (policy text included)
//! is the answer. Requests have ids: a retry with the same id gets the first outcome.

use std::time::Duration;

use idbridge_channel::{seal_aad, seal_secret, AgentPublicKey, Operation, Outcome, UserRef};
use idbridge_core::Secret;
use serde_json::{json, Value};

use super::{user_name, Directory, Principal, ON_PREMISES};
use crate::error::ApiError;
use crate::hub::{CallError, PendingCall};
use crate::secrets::{new_token, token_hash};
use crate::store::{AgentRecord, AuditEntry, SigninState, StoredResource};

/// How long a registration token stays usable.
const REGISTRATION_TTL_MS: i64 = 24 * 3600 * 1000;
/// How long an HTTP caller waits for the agent's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);
/// How long a request that outlived its caller is still waited for and recorded.
const LATE_ANSWER_WITHIN: Duration = Duration::from_secs(120);
/// The license that entitles a synced user to password writeback.
pub const WRITEBACK_LICENSE: &str = "premium";

/// What a registered agent is given, once.
pub struct AgentRegistration {
    pub agent_id: String,
    pub credential: Secret,
}

/// What the cloud does when the DC took a writeback.
#[derive(Clone)]
pub(crate) enum AfterWriteback {
    /// Store the new password's verifier (the DC accepted it) and clear any cloud lockout.
    Password { password: Secret, must_change: bool },
    /// Clear the cloud's own lockout too.
    Unlock,
}

/// The error an HTTP caller gets for an agent's refusal.
pub(crate) fn refusal(outcome: &Outcome) -> Option<ApiError> {
    Some(match outcome {
        Outcome::Done => return None,
        Outcome::PolicyViolation { message } => ApiError::new(422, "policy_violation", message),
        Outcome::InvalidCredentials => {
            ApiError::new(401, "invalid_credentials", "the password is wrong")
        }
        Outcome::PasswordChangeRequired => ApiError::new(
            403,
            "password_change_required",
            "the password must be changed",
        ),
        Outcome::Locked => {
            ApiError::new(423, "locked", "the account is locked in Active Directory")
        }
        Outcome::Disabled => ApiError::new(
            403,
            "account_disabled",
            "the account is disabled in Active Directory",
        ),
        Outcome::Expired => ApiError::new(
            403,
            "password_expired",
            "the password has expired in Active Directory",
        ),
        Outcome::NotFound { message } => ApiError::new(
            404,
            "not_found_on_premises",
            format!("the user's Active Directory object was not found: {message}"),
        ),
        Outcome::AccessDenied { message } => ApiError::new(
            502,
            "agent_access_denied",
            format!("the agent's account may not do this: {message}"),
        ),
        Outcome::Failed { message } => ApiError::new(
            502,
            "writeback_failed",
            format!("the agent failed: {message}"),
        ),
    })
}

fn offline() -> ApiError {
    ApiError::new(
        503,
        "agent_offline",
        "no agent is connected to write the password back to Active Directory; nothing was changed",
    )
}

fn pending(id: &str) -> ApiError {
    ApiError::new(
        504,
        "writeback_pending",
        format!(
            "the agent has not answered yet (request {id}); ask again with the same request_id \
             to learn the outcome"
        ),
    )
}

fn result_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Done => "done",
        Outcome::PolicyViolation { .. } => "policy_violation",
        Outcome::InvalidCredentials => "invalid_credentials",
        Outcome::PasswordChangeRequired => "password_change_required",
        Outcome::Locked => "locked",
        Outcome::Disabled => "disabled",
        Outcome::Expired => "expired",
        Outcome::NotFound { .. } => "not_found",
        Outcome::AccessDenied { .. } => "access_denied",
        Outcome::Failed { .. } => "failed",
    }
}

impl Directory {
    // ---- agents ------------------------------------------------------------------------------

    /// A one-time token an agent registers with (`idbridge agent register`).
    pub async fn create_agent_registration(
        &self,
        actor: &str,
        name: &str,
    ) -> Result<(Secret, i64), ApiError> {
        let token = new_token("idr_", &mut rand::thread_rng());
        let now = self.now_ms();
        let expires_at = now + REGISTRATION_TTL_MS;
        let mut tx = self.store.begin().await?;
        tx.insert_registration(&token_hash(token.expose()), name, expires_at)
            .await?;
        tx.audit(&AuditEntry {
            at: now,
            actor,
            action: "agent.registration.create",
            target: name,
            outcome: "success",
            detail: "",
        });
        tx.commit().await?;
        Ok((token, expires_at))
    }

    /// Registers an agent's public key against a one-time token; returns its credential.
    pub async fn register_agent(
        &self,
        token: &Secret,
        public_key: &str,
    ) -> Result<AgentRegistration, ApiError> {
        let key: AgentPublicKey = public_key
            .parse()
            .map_err(|e| ApiError::bad_request(format!("public_key: {e}")))?;
        let now = self.now_ms();
        let credential = new_token("ida_", &mut rand::thread_rng());
        let mut tx = self.store.begin().await?;
        let Some(name) = tx
            .take_registration(&token_hash(token.expose()), now)
            .await?
        else {
            return Err(ApiError::new(
                401,
                "invalid_registration_token",
                "the registration token is unknown, used or expired; create a new one",
            ));
        };
        let agent = AgentRecord {
            id: uuid::Uuid::new_v4().to_string(),
            name,
            public_key: key.to_string(),
            registered_at: now,
            key_rotated_at: now,
        };
        tx.insert_agent(&agent, &token_hash(credential.expose()))
            .await?;
        tx.audit(&AuditEntry {
            at: now,
            actor: &format!("agent:{}", agent.name),
            action: "agent.register",
            target: &agent.id,
            outcome: "success",
            detail: "",
        });
        tx.commit().await?;
        Ok(AgentRegistration {
            agent_id: agent.id,
            credential,
        })
    }

    pub async fn authenticate_agent(&self, bearer: &str) -> Result<Option<AgentRecord>, ApiError> {
        if !bearer.starts_with("ida_") {
            return Ok(None);
        }
        Ok(self.store.agent_by_credential(&token_hash(bearer)).await?)
    }

    /// Replaces an agent's public key; requests sealed from now on use the new one.
    pub async fn rotate_agent_key(
        &self,
        agent: &AgentRecord,
        public_key: &str,
    ) -> Result<(), ApiError> {
        let key: AgentPublicKey = public_key
            .parse()
            .map_err(|e| ApiError::bad_request(format!("public_key: {e}")))?;
        let now = self.now_ms();
        let mut tx = self.store.begin().await?;
        tx.set_agent_key(&agent.id, &key.to_string(), now).await?;
        tx.audit(&AuditEntry {
            at: now,
            actor: &format!("agent:{}", agent.name),
            action: "agent.key.rotate",
            target: &agent.id,
            outcome: "success",
            detail: "",
        });
        tx.commit().await?;
        self.hub.rekey(&agent.id, key);
        Ok(())
    }

    /// Registered agents and their connections, for the admin API and `idbridge agent status`.
    pub async fn agent_status(&self) -> Result<Value, ApiError> {
        let presence = self.hub.presence();
        let agents: Vec<Value> = self
            .store
            .agents()
            .await?
            .into_iter()
            .map(|a| {
                let connections: Vec<&crate::hub::Presence> =
                    presence.iter().filter(|p| p.agent_id == a.id).collect();
                json!({
                    "id": a.id,
                    "name": a.name,
                    "registered_at": super::rfc3339(a.registered_at),
                    "key_rotated_at": super::rfc3339(a.key_rotated_at),
                    "online": connections.iter().any(|p| p.healthy),
                    "connections": connections,
                })
            })
            .collect();
        Ok(json!({"online": self.hub.any_healthy(), "agents": agents}))
    }

    // ---- writeback ---------------------------------------------------------------------------

    /// The user as the agent finds it in AD; refuses users writeback is not for.
    pub(crate) async fn writeback_target(
        &self,
        user: &StoredResource,
    ) -> Result<UserRef, ApiError> {
        let not_eligible = |why: &str| ApiError::new(403, "not_eligible", why.to_owned());
        if user.source != ON_PREMISES {
            return Err(not_eligible("the user is not synced from Active Directory"));
        }
        let ext = user.doc.get(super::SYNC_USER_SCHEMA);
        let text = |key: &str| ext.and_then(|e| e.get(key)).and_then(Value::as_str);
        let Some(anchor) = text("immutableId") else {
            return Err(not_eligible("the synced user has no anchor (immutableId)"));
        };
        if !self
            .store
            .licenses_of(&user.id)
            .await?
            .iter()
            .any(|l| l == WRITEBACK_LICENSE)
        {
            return Err(not_eligible(
                "password writeback needs the premium license; assign it to the user",
            ));
        }
        Ok(UserRef {
            object_guid: anchor.to_owned(),
            user_principal_name: user_name(&user.doc).to_owned(),
            distinguished_name: text("onPremisesDistinguishedName").map(str::to_owned),
        })
    }

    /// Sends one writeback and applies its result: see the module docs. `build` makes the
    /// operation for the chosen agent's key and the request id. Returns false when the request
    /// id had already succeeded (nothing was sent again).
    pub(crate) async fn writeback(
        &self,
        principal: &Principal,
        user: &StoredResource,
        request_id: Option<String>,
        operation: &'static str,
        after: AfterWriteback,
        build: impl FnOnce(&AgentPublicKey, &str) -> Operation,
    ) -> Result<bool, ApiError> {
        let id = request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if let Some(earlier) = self.store.writeback_request(&id).await? {
            if earlier.user_id != user.id || earlier.operation != operation {
                return Err(ApiError::conflict(
                    "request_id_reused",
                    format!("request id {id} belongs to another request"),
                ));
            }
            return match (earlier.state.as_str(), earlier.outcome) {
                ("done", _) => Ok(false),
                ("failed", Some(outcome)) => Err(serde_json::from_str::<Outcome>(&outcome)
                    .ok()
                    .as_ref()
                    .and_then(refusal)
                    .unwrap_or_else(|| ApiError::new(502, "writeback_failed", outcome))),
                _ => Err(pending(&id)),
            };
        }
        let now = self.now_ms();
        let mut tx = self.store.begin().await?;
        if !tx.insert_writeback(&id, &user.id, operation, now).await? {
            return Err(pending(&id));
        }
        tx.commit().await?;
        let mut call = match self.hub.call(&id, |key| build(key, &id)) {
            Ok(call) => call,
            Err(_) => {
                // Nothing left this process: forget the request so a retry can try again.
                let mut tx = self.store.begin().await?;
                tx.delete_writeback(&id).await?;
                tx.commit().await?;
                self.audit_writeback(principal, user, operation, "failure", "agent_offline")
                    .await;
                return Err(offline());
            }
        };
        match call.answer(ANSWER_WITHIN).await {
            Ok(outcome) => {
                self.finish_writeback(principal, user, &id, operation, &after, &outcome)
                    .await?;
                refusal(&outcome).map_or(Ok(true), Err)
            }
            Err(CallError::Timeout | CallError::Disconnected | CallError::Offline) => {
                self.keep_waiting(
                    principal.clone(),
                    user.clone(),
                    id.clone(),
                    operation,
                    after,
                    call,
                );
                Err(pending(&id))
            }
        }
    }

    /// Records the answer of a request whose caller stopped waiting, when it comes.
    fn keep_waiting(
        &self,
        principal: Principal,
        user: StoredResource,
        id: String,
        operation: &'static str,
        after: AfterWriteback,
        mut call: PendingCall,
    ) {
        let directory = self.clone();
        tokio::spawn(async move {
            let outcome =
                call.answer(LATE_ANSWER_WITHIN)
                    .await
                    .unwrap_or_else(|e| Outcome::Failed {
                        message: format!("{e}; the outcome on the DC is unknown"),
                    });
            if let Err(e) = directory
                .finish_writeback(&principal, &user, &id, operation, &after, &outcome)
                .await
            {
                tracing::warn!(request = %id, error = %e.message, "recording a late writeback answer failed");
            }
        });
    }

    async fn finish_writeback(
        &self,
        principal: &Principal,
        user: &StoredResource,
        id: &str,
        operation: &'static str,
        after: &AfterWriteback,
        outcome: &Outcome,
    ) -> Result<(), ApiError> {
        let done = *outcome == Outcome::Done;
        if done {
            match after {
                AfterWriteback::Password {
                    password,
                    must_change,
                } => {
                    self.store_verifier(principal, user, password, *must_change, "password.set")
                        .await?
                }
                AfterWriteback::Unlock => {
                    let mut tx = self.store.begin().await?;
                    tx.set_signin_state(&user.id, SigninState::default())
                        .await?;
                    tx.commit().await?;
                }
            }
        }
        let now = self.now_ms();
        let mut tx = self.store.begin().await?;
        tx.finish_writeback(
            id,
            if done { "done" } else { "failed" },
            &serde_json::to_string(outcome).unwrap_or_default(),
            now,
        )
        .await?;
        tx.commit().await?;
        self.audit_writeback(
            principal,
            user,
            operation,
            if done { "success" } else { "failure" },
            result_name(outcome),
        )
        .await;
        Ok(())
    }

    async fn audit_writeback(
        &self,
        principal: &Principal,
        user: &StoredResource,
        operation: &str,
        outcome: &str,
        detail: &str,
    ) {
        let entry = AuditEntry {
            at: self.now_ms(),
            actor: &principal.actor(),
            action: &format!("writeback.{operation}"),
            target: &user.id,
            outcome,
            detail,
        };
        let recorded = async {
            let mut tx = self.store.begin().await?;
            tx.audit(&entry);
            tx.commit().await
        };
        if let Err(e) = recorded.await {
            tracing::warn!(error = %e, "could not audit a writeback");
        }
    }

    /// Admin reset of a synced user's password, written to AD (reset semantics).
    pub(crate) async fn reset_on_premises(
        &self,
        principal: &Principal,
        user: &StoredResource,
        password: &Secret,
        require_change: bool,
        unlock: bool,
        request_id: Option<String>,
    ) -> Result<bool, ApiError> {
        let target = self.writeback_target(user).await?;
        let after = AfterWriteback::Password {
            password: password.clone(),
            must_change: require_change,
        };
        self.writeback(
            principal,
            user,
            request_id,
            "set_password",
            after,
            |key, id| Operation::SetPassword {
                user: target,
                password: seal_secret(
                    key,
                    password,
                    &seal_aad(id, "set_password", "password"),
                    &mut rand::thread_rng(),
                ),
                require_change,
                unlock,
            },
        )
        .await
    }

    /// The user's own change, written to AD (change semantics: the DC checks the old one).
    pub(crate) async fn change_on_premises(
        &self,
        principal: &Principal,
        user: &StoredResource,
        old_password: &Secret,
        new_password: &Secret,
    ) -> Result<(), ApiError> {
        let target = self.writeback_target(user).await?;
        let after = AfterWriteback::Password {
            password: new_password.clone(),
            must_change: false,
        };
        self.writeback(
            principal,
            user,
            None,
            "change_password",
            after,
            |key, id| {
                let mut rng = rand::thread_rng();
                Operation::ChangePassword {
                    user: target,
                    old_password: seal_secret(
                        key,
                        old_password,
                        &seal_aad(id, "change_password", "old_password"),
                        &mut rng,
                    ),
                    new_password: seal_secret(
                        key,
                        new_password,
                        &seal_aad(id, "change_password", "new_password"),
                        &mut rng,
                    ),
                }
            },
        )
        .await
        .map(|_| ())
    }

    /// `POST /api/v1/users/{id}/unlock`: clears the cloud lockout, and AD's for synced users.
    pub async fn unlock_user(
        &self,
        principal: &Principal,
        user_id: &str,
    ) -> Result<bool, ApiError> {
        let user = self.live_user(user_id).await?;
        if user.source != ON_PREMISES {
            let mut tx = self.store.begin().await?;
            tx.set_signin_state(&user.id, SigninState::default())
                .await?;
            tx.commit().await?;
            self.audit_writeback(principal, &user, "unlock", "success", "cloud only")
                .await;
            return Ok(false);
        }
        let target = self.writeback_target(&user).await?;
        self.writeback(
            principal,
            &user,
            None,
            "unlock",
            AfterWriteback::Unlock,
            |_, _| Operation::Unlock { user: target },
        )
        .await?;
        Ok(true)
    }

    /// Pass-through sign-in: the DC judges the password, through an agent.
    pub(crate) async fn verify_on_premises(
        &self,
        user: &StoredResource,
        password: &Secret,
    ) -> Result<Outcome, ApiError> {
        let ext = user.doc.get(super::SYNC_USER_SCHEMA);
        let text = |key: &str| ext.and_then(|e| e.get(key)).and_then(Value::as_str);
        let target = UserRef {
            object_guid: text("immutableId").unwrap_or_default().to_owned(),
            user_principal_name: user_name(&user.doc).to_owned(),
            distinguished_name: text("onPremisesDistinguishedName").map(str::to_owned),
        };
        let id = uuid::Uuid::new_v4().to_string();
        let mut call = self
            .hub
            .call(&id, |key| Operation::VerifyPassword {
                user: target,
                password: seal_secret(
                    key,
                    password,
                    &seal_aad(&id, "verify_password", "password"),
                    &mut rand::thread_rng(),
                ),
            })
            .map_err(|_| offline())?;
        call.answer(ANSWER_WITHIN).await.map_err(|e| {
            ApiError::new(
                503,
                "agent_unavailable",
                format!("pass-through sign-in could not ask an agent: {e}"),
            )
        })
    }
}
