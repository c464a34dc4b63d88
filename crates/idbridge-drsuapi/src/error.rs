use idbridge_ndr::NdrError;
use idbridge_rpc::client::ClientError;
use idbridge_rpc::{FaultStatus, RpcError};
use thiserror::Error;

use crate::client::AuthMechanism;

/// Win32 errors a DC returns from DRSUAPI calls (MS-ERREF 2.2) that callers act on.
pub mod win32 {
    pub const ERROR_ACCESS_DENIED: u32 = 5;
    pub const ERROR_DS_DRA_BAD_DN: u32 = 8439;
    pub const ERROR_DS_DRA_BAD_NC: u32 = 8440;
    pub const ERROR_DS_DRA_ACCESS_DENIED: u32 = 8453;
    pub const ERROR_DS_DRA_INVALID_PARAMETER: u32 = 8437;
    pub const ERROR_DS_DRA_SOURCE_DISABLED: u32 = 8456;
    pub const ERROR_DS_CANT_FIND_EXPECTED_NC: u32 = 8559;
    pub const ERROR_DS_DRA_NOT_SUPPORTED: u32 = 8644;
}

/// Everything that can fail while replicating secrets from a DC.
#[derive(Debug, Error)]
pub enum DrsError {
    #[error("cannot reach the DC: {0}")]
    Io(#[from] std::io::Error),
    #[error("RPC: {0}")]
    Rpc(#[from] RpcError),
    #[error("NDR: {0}")]
    Ndr(#[from] NdrError),
    #[error("endpoint mapper: {0}")]
    Endpoint(String),
    /// The credentials were refused, or the security context could not be set up. Never carries
    /// a password or key.
    #[error("{mechanism} authentication failed: {reason}")]
    Authentication {
        mechanism: AuthMechanism,
        reason: String,
    },
    #[error("the DC rejected the DRSUAPI bind: {0}")]
    BindRejected(String),
    /// An RPC fault; `nca_s_*` codes and Win32 errors share this space.
    #[error("the DC answered {call} with fault {status}")]
    Fault {
        call: &'static str,
        status: FaultStatus,
    },
    /// The account may not replicate the naming context.
    #[error(
        "the DC denied {call} on {nc} (Win32 error {code}): the account lacks the \
         \"Replicating Directory Changes\" and \"Replicating Directory Changes All\" extended \
         rights on the domain root (replicating secrets requires \"Replicating Directory \
         Changes All\")"
    )]
    MissingReplicationRight {
        call: &'static str,
        nc: String,
        code: u32,
    },
    /// Any other Win32 error a DRSUAPI call returned.
    #[error("{call} failed with Win32 error {code} ({})", win32_name(*.code))]
    Win32 { call: &'static str, code: u32 },
    /// A single-object request failed for that object (no object with that GUID, not in a
    /// naming context the DC holds): the object is named, the connection stays usable.
    #[error("{call} for object {object} failed with Win32 error {code} ({})", win32_name(*.code))]
    Object {
        call: &'static str,
        object: String,
        code: u32,
    },
    /// The DC did not perform the extended operation on the object (`ulExtendedRet` other than
    /// `EXOP_ERR_SUCCESS`).
    #[error("the DC did not replicate object {object}: extended operation result {code}")]
    ExtendedOperation { object: String, code: u32 },
    /// The server sent something the protocol does not allow.
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("not a valid OID: {0}")]
    Oid(String),
    /// A secret attribute could not be decrypted; its value is never part of the message.
    #[error("cannot decrypt {attribute}: {reason}")]
    Secret {
        attribute: &'static str,
        reason: &'static str,
    },
}

impl From<ClientError> for DrsError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Io(e) => Self::Io(e),
            ClientError::Rpc(e) => Self::Rpc(e),
            ClientError::Fault(status) => Self::Fault {
                call: "a DCE/RPC call",
                status,
            },
            other => Self::Endpoint(other.to_string()),
        }
    }
}

impl DrsError {
    /// Whether the connection is still usable after this error: a failed request for one object
    /// does not stop the requests for the others, a broken or refused connection does.
    pub fn connection_usable(&self) -> bool {
        !matches!(
            self,
            Self::Io(_)
                | Self::Rpc(_)
                | Self::Endpoint(_)
                | Self::Authentication { .. }
                | Self::BindRejected(_)
        )
    }

    /// Maps a non-zero Win32 status of `call` on `nc` to its error.
    pub(crate) fn from_win32(call: &'static str, nc: &str, code: u32) -> Self {
        match code {
            win32::ERROR_DS_DRA_ACCESS_DENIED | win32::ERROR_ACCESS_DENIED => {
                Self::MissingReplicationRight {
                    call,
                    nc: nc.to_owned(),
                    code,
                }
            }
            code => Self::Win32 { call, code },
        }
    }

    /// A fault PDU for `call`; access-denied faults mean missing rights as well.
    pub(crate) fn from_fault(call: &'static str, nc: &str, status: FaultStatus) -> Self {
        match status.0 {
            win32::ERROR_ACCESS_DENIED | win32::ERROR_DS_DRA_ACCESS_DENIED => {
                Self::from_win32(call, nc, status.0)
            }
            _ => Self::Fault { call, status },
        }
    }
}

fn win32_name(code: u32) -> &'static str {
    match code {
        win32::ERROR_ACCESS_DENIED => "ERROR_ACCESS_DENIED",
        win32::ERROR_DS_DRA_BAD_DN => "ERROR_DS_DRA_BAD_DN",
        win32::ERROR_DS_DRA_BAD_NC => "ERROR_DS_DRA_BAD_NC",
        win32::ERROR_DS_DRA_ACCESS_DENIED => "ERROR_DS_DRA_ACCESS_DENIED",
        win32::ERROR_DS_DRA_INVALID_PARAMETER => "ERROR_DS_DRA_INVALID_PARAMETER",
        win32::ERROR_DS_DRA_SOURCE_DISABLED => "ERROR_DS_DRA_SOURCE_DISABLED",
        win32::ERROR_DS_CANT_FIND_EXPECTED_NC => "ERROR_DS_CANT_FIND_EXPECTED_NC",
        win32::ERROR_DS_DRA_NOT_SUPPORTED => "ERROR_DS_DRA_NOT_SUPPORTED",
        _ => "unknown",
    }
}
