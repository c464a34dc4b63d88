//! The frames of the channel (JSON text messages) and what requests and answers carry.

use serde::{Deserialize, Serialize};

use crate::seal::Sealed;

/// Frames larger than this are refused before parsing.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Agent -> cloud.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentFrame {
    Hello {
        agent_id: String,
        version: String,
    },
    Heartbeat {
        at_ms: i64,
    },
    Response {
        request_id: String,
        outcome: Outcome,
    },
}

/// Cloud -> agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CloudFrame {
    Welcome {
        agent_id: String,
        heartbeat_interval_ms: u64,
    },
    Request {
        request_id: String,
        operation: Box<Operation>,
    },
    HeartbeatAck {
        at_ms: i64,
    },
}

/// Which on-premises user a request is about: its anchor first (the objectGUID, base64, as the
/// cloud holds it), then the names the cloud knows it by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRef {
    pub object_guid: String,
    pub user_principal_name: String,
    pub distinguished_name: Option<String>,
}

/// What the cloud asks an agent to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Operation {
    /// Reset semantics (admin reset, self-service reset): no old password, no history check.
    SetPassword {
        user: UserRef,
        password: Sealed,
        require_change: bool,
        unlock: bool,
    },
    /// Change semantics (the user's own change): the DC checks the old password, history and
    /// minimum age.
    ChangePassword {
        user: UserRef,
        old_password: Sealed,
        new_password: Sealed,
    },
    Unlock {
        user: UserRef,
    },
    /// Pass-through sign-in: does the DC accept this password?
    VerifyPassword {
        user: UserRef,
        password: Sealed,
    },
}

impl Operation {
    pub fn name(&self) -> &'static str {
        match self {
            Operation::SetPassword { .. } => "set_password",
            Operation::ChangePassword { .. } => "change_password",
            Operation::Unlock { .. } => "unlock",
            Operation::VerifyPassword { .. } => "verify_password",
        }
    }

    pub fn user(&self) -> &UserRef {
        match self {
            Operation::SetPassword { user, .. }
            | Operation::ChangePassword { user, .. }
            | Operation::Unlock { user }
            | Operation::VerifyPassword { user, .. } => user,
        }
    }
}

/// How a request ended on the DC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case", deny_unknown_fields)]
pub enum Outcome {
    Done,
    /// The DC refused the password; `message` is its own text.
    PolicyViolation {
        message: String,
    },
    InvalidCredentials,
    PasswordChangeRequired,
    Locked,
    Disabled,
    Expired,
    NotFound {
        message: String,
    },
    /// The agent's account lacks a right; the message names it.
    AccessDenied {
        message: String,
    },
    Failed {
        message: String,
    },
}

/// The associated data a sealed field is bound to: one request, one operation, one field.
pub fn seal_aad(request_id: &str, op: &str, field: &str) -> Vec<u8> {
    format!("{request_id}\0{op}\0{field}").into_bytes()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a frame of {0} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("not a valid frame: {0}")]
    Malformed(String),
}

pub fn encode<T: Serialize>(frame: &T) -> String {
    // Frames are plain data (strings, numbers, enums): serialization cannot fail.
    serde_json::to_string(frame).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, FrameError> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(text.len()));
    }
    // serde's message names the field and position, never a value.
    serde_json::from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))
}

pub fn decode_agent_frame(text: &str) -> Result<AgentFrame, FrameError> {
    decode(text)
}

pub fn decode_cloud_frame(text: &str) -> Result<CloudFrame, FrameError> {
    decode(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn user() -> UserRef {
        UserRef {
            object_guid: "AAECAwQFBgcICQoLDA0ODw==".into(),
            user_principal_name: "jack@lab.test".into(),
            distinguished_name: Some("CN=Jack,OU=Staff,DC=lab,DC=test".into()),
        }
    }

    #[test]
    fn frames_have_a_stable_shape() {
        let frame = CloudFrame::Request {
            request_id: "r1".into(),
            operation: Box::new(Operation::Unlock { user: user() }),
        };
        let value: serde_json::Value = serde_json::from_str(&encode(&frame)).unwrap();
        assert_eq!(
            value,
            json!({"type": "request", "request_id": "r1", "operation": {"op": "unlock",
                "user": {"object_guid": "AAECAwQFBgcICQoLDA0ODw==",
                         "user_principal_name": "jack@lab.test",
                         "distinguished_name": "CN=Jack,OU=Staff,DC=lab,DC=test"}}})
        );
        assert_eq!(decode_cloud_frame(&encode(&frame)).unwrap(), frame);
    }

    #[test]
    fn every_outcome_round_trips() {
        for outcome in [
            Outcome::Done,
            Outcome::PolicyViolation {
                message: "too short".into(),
            },
            Outcome::InvalidCredentials,
            Outcome::PasswordChangeRequired,
            Outcome::Locked,
            Outcome::Disabled,
            Outcome::Expired,
            Outcome::NotFound {
                message: "gone".into(),
            },
            Outcome::AccessDenied {
                message: "Reset Password".into(),
            },
            Outcome::Failed {
                message: "x".into(),
            },
        ] {
            let frame = AgentFrame::Response {
                request_id: "r".into(),
                outcome,
            };
            assert_eq!(decode_agent_frame(&encode(&frame)).unwrap(), frame);
        }
    }

    #[test]
    fn bad_frames_are_errors() {
        let big = "x".repeat(MAX_FRAME_BYTES + 1);
        assert_eq!(
            decode_agent_frame(&big),
            Err(FrameError::TooLarge(MAX_FRAME_BYTES + 1))
        );
        assert!(decode_agent_frame("{\"type\":\"hello\"}").is_err());
        assert!(decode_agent_frame("{\"type\":\"nope\"}").is_err());
        assert!(decode_cloud_frame("[").is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_text_never_panics(text in ".{0,300}") {
            let _ = decode_agent_frame(&text);
            let _ = decode_cloud_frame(&text);
        }
    }
}
