//! Errors of the admin API (`{"error": <code>, "message": <text>}`); SCIM routes answer with
//! [`ScimError`] instead. Both carry their HTTP status so the HTTP edge only serializes them.

use idbridge_scim::ScimError;
use serde_json::{json, Value};

use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(409, code, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "unauthorized", "a valid bearer token is required")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "forbidden", message)
    }

    pub fn to_json(&self) -> Value {
        json!({"error": self.code, "message": self.message})
    }
}

impl From<ScimError> for ApiError {
    fn from(e: ScimError) -> Self {
        let code = match (e.status, e.scim_type) {
            (_, Some(t)) => t.as_str(),
            (401, None) => "unauthorized",
            (403, None) => "forbidden",
            (404, None) => "not_found",
            (409, None) => "conflict",
            (412, None) => "precondition_failed",
            (413, None) => "payload_too_large",
            (s, None) if s >= 500 => "internal",
            _ => "invalid_request",
        };
        Self::new(e.status, code, e.detail)
    }
}

/// Storage failures never reach clients in detail (they may mention SQL); the log has them.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage failure");
        Self::new(500, "internal", "internal storage error; see the cloud log")
    }
}

pub(crate) fn scim_store_error(e: StoreError) -> ScimError {
    tracing::error!(error = %e, "storage failure");
    ScimError::internal("internal storage error; see the cloud log")
}
