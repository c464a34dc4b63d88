//! Tenant settings, changed at run time through `PUT /api/v1/tenant/settings`.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::secrets::PasswordPolicy;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantSettings {
    pub password_policy: PasswordPolicy,
    pub lockout: LockoutPolicy,
    /// How long soft-deleted users and groups can be restored before they are purged.
    pub soft_delete_retention_days: i64,
    pub session_lifetime_seconds: i64,
    /// How synced (on-premises) users' passwords are checked at sign-in.
    pub signin_method: SigninMethod,
}

/// Password hash sync checks the verifier the agent sent; pass-through asks the agent to bind
/// to AD with the password, so the DC decides (and no hash is kept in the cloud).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SigninMethod {
    #[default]
    PasswordHashSync,
    PassThrough,
}

/// Smart-lockout-like: `threshold` failed sign-ins within `window_seconds` lock the account
/// for `duration_seconds`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutPolicy {
    pub threshold: i64,
    pub window_seconds: i64,
    pub duration_seconds: i64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            threshold: 10,
            window_seconds: 600,
            duration_seconds: 60,
        }
    }
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            password_policy: PasswordPolicy::default(),
            lockout: LockoutPolicy::default(),
            soft_delete_retention_days: 30,
            session_lifetime_seconds: 3600,
            signin_method: SigninMethod::default(),
        }
    }
}

impl TenantSettings {
    pub fn from_json(value: serde_json::Value) -> Result<Self, ApiError> {
        let settings: Self = serde_json::from_value(value)
            .map_err(|e| ApiError::bad_request(format!("tenant settings: {e}")))?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), ApiError> {
        let positive = [
            ("lockout.threshold", self.lockout.threshold),
            ("lockout.window_seconds", self.lockout.window_seconds),
            ("lockout.duration_seconds", self.lockout.duration_seconds),
            (
                "soft_delete_retention_days",
                self.soft_delete_retention_days,
            ),
            ("session_lifetime_seconds", self.session_lifetime_seconds),
        ];
        if let Some((name, value)) = positive.iter().find(|(_, v)| *v < 1) {
            return Err(ApiError::bad_request(format!(
                "tenant settings: {name} must be at least 1, not {value}"
            )));
        }
        if !(1..=256).contains(&self.password_policy.min_length) {
            return Err(ApiError::bad_request(
                "tenant settings: password_policy.min_length must be between 1 and 256",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn partial_settings_take_defaults_and_bad_ones_are_named() {
        let s = TenantSettings::from_json(json!({"lockout": {"threshold": 3}})).unwrap();
        assert_eq!(s.lockout.threshold, 3);
        assert_eq!(s.lockout.window_seconds, 600);
        let e = TenantSettings::from_json(json!({"lockout": {"treshold": 3}})).unwrap_err();
        assert!(e.message.contains("treshold"), "{}", e.message);
        let e = TenantSettings::from_json(json!({"soft_delete_retention_days": 0})).unwrap_err();
        assert!(e.message.contains("soft_delete_retention_days"));
    }
}
