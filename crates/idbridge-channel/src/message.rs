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
    serde_json::from_str(text).map_err(|e| FrameError::Malformed(redact_values(&e.to_string())))
}

/// serde's messages name fields and positions, but quote the offending string value
/// (`invalid type: string "...", expected struct Sealed`): a peer that sent a password in clear
/// where a sealed one belongs would see it in our logs. Every double-quoted span is dropped.
fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            out.push(c);
            continue;
        }
        out.push_str("<redacted>");
        // Skip to the closing quote; the value is Debug-escaped, so `\"` does not close it.
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => break,
                _ => {}
            }
        }
    }
    out
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
    use crate::seal::{open_secret, seal, seal_secret, AgentKeyPair};
    use idbridge_core::Secret;
    use rand::SeedableRng;
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

    fn sealed(rng: &mut rand::rngs::StdRng, keys: &AgentKeyPair, aad: &[u8]) -> Sealed {
        seal(&keys.public(), b"Pa55-word", aad, rng)
    }

    fn operations() -> Vec<Operation> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let keys = AgentKeyPair::generate(&mut rng);
        vec![
            Operation::SetPassword {
                user: user(),
                password: sealed(&mut rng, &keys, b""),
                require_change: true,
                unlock: false,
            },
            Operation::ChangePassword {
                user: UserRef {
                    distinguished_name: None,
                    ..user()
                },
                old_password: sealed(&mut rng, &keys, b""),
                new_password: sealed(&mut rng, &keys, b""),
            },
            Operation::Unlock { user: user() },
            Operation::VerifyPassword {
                user: user(),
                password: sealed(&mut rng, &keys, b""),
            },
        ]
    }

    #[test]
    fn every_frame_and_operation_round_trips() {
        let names: Vec<_> = operations().iter().map(Operation::name).collect();
        assert_eq!(
            names,
            [
                "set_password",
                "change_password",
                "unlock",
                "verify_password"
            ]
        );
        for operation in operations() {
            assert_eq!(operation.user().user_principal_name, "jack@lab.test");
            let frame = CloudFrame::Request {
                request_id: "r1".into(),
                operation: Box::new(operation.clone()),
            };
            let text = encode(&frame);
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(value["operation"]["op"], operation.name());
            assert_eq!(decode_cloud_frame(&text).unwrap(), frame);
        }
        for frame in [
            CloudFrame::Welcome {
                agent_id: "a1".into(),
                heartbeat_interval_ms: 30_000,
            },
            CloudFrame::HeartbeatAck { at_ms: -5 },
        ] {
            assert_eq!(decode_cloud_frame(&encode(&frame)).unwrap(), frame);
        }
        for frame in [
            AgentFrame::Hello {
                agent_id: "a1".into(),
                version: "0.1.0".into(),
            },
            AgentFrame::Heartbeat {
                at_ms: 1_700_000_000_000,
            },
        ] {
            assert_eq!(decode_agent_frame(&encode(&frame)).unwrap(), frame);
        }
        assert_eq!(
            encode(&AgentFrame::Heartbeat { at_ms: 5 }),
            r#"{"type":"heartbeat","at_ms":5}"#
        );
        assert_eq!(
            encode(&Outcome::PolicyViolation {
                message: "m".into()
            }),
            r#"{"result":"policy_violation","message":"m"}"#
        );
    }

    #[test]
    fn a_sealed_password_opens_only_in_its_request_and_field() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let keys = AgentKeyPair::generate(&mut rng);
        assert_eq!(
            seal_aad("r1", "set_password", "password"),
            b"r1\0set_password\0password"
        );
        let password = seal_secret(
            &keys.public(),
            &Secret::new("Pa55-word"),
            &seal_aad("r1", "set_password", "password"),
            &mut rng,
        );
        let frame = CloudFrame::Request {
            request_id: "r1".into(),
            operation: Box::new(Operation::SetPassword {
                user: user(),
                password,
                require_change: false,
                unlock: true,
            }),
        };
        let text = encode(&frame);
        assert!(!text.contains("Pa55"));
        let Ok(CloudFrame::Request {
            request_id,
            operation,
        }) = decode_cloud_frame(&text)
        else {
            unreachable!("a request")
        };
        let Operation::SetPassword { password, .. } = *operation else {
            unreachable!("set_password")
        };
        let aad = |r: &str, op: &str, f: &str| seal_aad(r, op, f);
        assert_eq!(
            open_secret(
                &keys,
                &password,
                &aad(&request_id, "set_password", "password")
            )
            .unwrap()
            .expose(),
            "Pa55-word"
        );
        for wrong in [
            aad("r2", "set_password", "password"),
            aad("r1", "verify_password", "password"),
            aad("r1", "change_password", "new_password"),
        ] {
            assert!(open_secret(&keys, &password, &wrong).is_err());
        }
    }

    #[test]
    fn errors_never_echo_values() {
        let user =
            r#""user":{"object_guid":"g","user_principal_name":"u","distinguished_name":null}"#;
        for text in [
            // A password sent in clear where a sealed one belongs.
            format!(
                r#"{{"type":"request","request_id":"r","operation":{{"op":"verify_password",{user},"password":"Hunter2-clear"}}}}"#
            ),
            format!(
                r#"{{"type":"request","request_id":"r","operation":{{"op":"verify_password",{user},"password":{{"v":"Hunter2\"-clear","epk":"","nonce":"","ct":""}}}}}}"#
            ),
            format!(
                r#"{{"type":"request","request_id":"r","operation":{{"op":"verify_password",{user},"password":{{"v":1,"epk":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","nonce":"AAAAAAAAAAAAAAAA","ct":"Hunter2-clear!"}}}}}}"#
            ),
        ] {
            let error = decode_cloud_frame(&text).unwrap_err().to_string();
            assert!(error.starts_with("not a valid frame: "), "{error}");
            assert!(!error.contains("Hunter2"), "{error}");
            assert!(!error.contains("clear"), "{error}");
        }
        assert_eq!(
            redact_values(r#"invalid type: string "a\"b", expected u8 at line 1 column 9"#),
            "invalid type: string <redacted>, expected u8 at line 1 column 9"
        );
        assert_eq!(redact_values(r#"x "unterminated"#), "x <redacted>");
        // What was wrong is still said.
        let error = decode_agent_frame(r#"{"type":"hello","agent_id":"a"}"#).unwrap_err();
        assert!(
            error.to_string().contains("missing field `version`"),
            "{error}"
        );
    }

    #[test]
    fn bad_frames_are_errors() {
        // Size is checked before parsing, even for well-formed JSON.
        let padded = format!(
            r#"{{"type":"hello","agent_id":"{}","version":"1"}}"#,
            "a".repeat(MAX_FRAME_BYTES)
        );
        assert_eq!(
            decode_agent_frame(&padded),
            Err(FrameError::TooLarge(padded.len()))
        );
        assert!(FrameError::TooLarge(70_000).to_string().contains("70000"));
        assert!(decode_agent_frame(r#"{"type":"heartbeat","at_ms":1,"extra":2}"#).is_err());
        assert!(decode_cloud_frame(r#"{"type":"hello","agent_id":"a","version":"1"}"#).is_err());
        assert!(decode_agent_frame(
            r#"{"type":"response","request_id":"r","outcome":{"result":"maybe"}}"#
        )
        .is_err());
        assert!(decode_cloud_frame("").is_err());
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

        #[test]
        fn decoding_json_like_text_never_panics(
            text in r#"\{("(type|op|result|request_id|operation|user|password|v|epk|nonce|ct)"|[:,\{\}\[\]0-9a-z"= ]){0,60}"#
        ) {
            let _ = decode_agent_frame(&text);
            let _ = decode_cloud_frame(&text);
        }
    }
}
