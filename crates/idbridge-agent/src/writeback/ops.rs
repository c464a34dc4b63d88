//! One request from the cloud, carried out on the DC as the agent's service account.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use idbridge_ad::{AdConnector, AdError, AdSettings};
use idbridge_channel::{
    open_secret, outcome_of_bind_failure, seal_aad, AgentKeyPair, Operation, Outcome, Sealed,
};
use idbridge_core::{Dn, Secret};

/// Where and as whom the agent writes.
pub(super) struct Dc {
    pub ad: AdSettings,
    pub base_dn: Dn,
}

fn open(
    keys: &[AgentKeyPair],
    sealed: &Sealed,
    request_id: &str,
    op: &str,
    field: &str,
) -> Result<Secret, Outcome> {
    let aad = seal_aad(request_id, op, field);
    keys.iter()
        .find_map(|k| open_secret(k, sealed, &aad).ok())
        .ok_or_else(|| Outcome::Failed {
            message: format!(
                "the {field} does not open with this agent's key (was the key rotated elsewhere?)"
            ),
        })
}

/// What a failed LDAP write means for the cloud; the DC's own words where they help the user.
fn write_failure(e: &AdError, action: &str, dn: &str) -> Outcome {
    let message = match e {
        AdError::Ldap { message, .. } | AdError::Bind { message, .. } => message.clone(),
        other => other.to_string(),
    };
    match e.ldap_code() {
        // Windows error 86 (ERROR_INVALID_PASSWORD): the old password of a change is wrong.
        Some(19) if message.starts_with("00000056") => Outcome::InvalidCredentials,
        Some(19 | 53) => Outcome::PolicyViolation { message },
        Some(50) => Outcome::AccessDenied {
            message: format!(
                "the agent's account may not {action} {dn} ({message}); grant it the rights in \
                 docs/writeback.md"
            ),
        },
        Some(32) => Outcome::NotFound { message },
        _ => Outcome::Failed {
            message: format!("{action} {dn}: {e}"),
        },
    }
}

impl Dc {
    /// Carries out one operation; every failure is an [`Outcome`] naming what went wrong.
    pub(super) async fn execute(
        &self,
        keys: &[AgentKeyPair],
        request_id: &str,
        operation: &Operation,
    ) -> Outcome {
        match self.try_execute(keys, request_id, operation).await {
            Ok(outcome) | Err(outcome) => outcome,
        }
    }

    async fn try_execute(
        &self,
        keys: &[AgentKeyPair],
        request_id: &str,
        operation: &Operation,
    ) -> Result<Outcome, Outcome> {
        let op = operation.name();
        let user = operation.user();
        let anchor = B64
            .decode(&user.object_guid)
            .map_err(|_| Outcome::NotFound {
                message: format!("the anchor {:?} is not base64", user.object_guid),
            })?;
        let mut ad = AdConnector::connect(&self.ad)
            .await
            .map_err(|e| Outcome::Failed {
                message: format!("the DC is unreachable: {e}"),
            })?;
        let dn = ad
            .find_by_anchor(&self.base_dn, &anchor)
            .await
            .map_err(|e| write_failure(&e, "search for", &user.user_principal_name))?
            .ok_or_else(|| Outcome::NotFound {
                message: format!(
                    "no user with the anchor of {} under {}",
                    user.user_principal_name, self.base_dn
                ),
            })?;
        let result = match operation {
            Operation::SetPassword {
                password,
                require_change,
                unlock,
                ..
            } => {
                let password = open(keys, password, request_id, op, "password")?;
                ad.reset_password(&dn, &password, *require_change, *unlock)
                    .await
                    .map_err(|e| write_failure(&e, "reset the password of", &dn))
            }
            Operation::ChangePassword {
                old_password,
                new_password,
                ..
            } => {
                let old = open(keys, old_password, request_id, op, "old_password")?;
                let new = open(keys, new_password, request_id, op, "new_password")?;
                ad.change_password(&dn, &old, &new)
                    .await
                    .map_err(|e| write_failure(&e, "change the password of", &dn))
            }
            Operation::Unlock { .. } => ad
                .unlock(&dn)
                .await
                .map_err(|e| write_failure(&e, "unlock", &dn)),
            Operation::VerifyPassword { password, .. } => {
                let password = open(keys, password, request_id, op, "password")?;
                let settings = AdSettings {
                    bind_upn: dn.clone(),
                    password,
                    ..self.ad.clone()
                };
                match AdConnector::connect(&settings).await {
                    Ok(session) => {
                        let _ = session.unbind().await;
                        Ok(())
                    }
                    Err(AdError::Bind { code, message, .. }) => {
                        Err(outcome_of_bind_failure(code, &message))
                    }
                    Err(e) => Err(Outcome::Failed {
                        message: format!("the DC is unreachable: {e}"),
                    }),
                }
            }
        };
        let _ = ad.unbind().await;
        result.map(|()| Outcome::Done)
    }
}
