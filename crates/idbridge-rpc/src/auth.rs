//! The `sec_trailer` and authentication verifier that close an authenticated PDU
//! (MS-RPCE 2.2.2.11).

use core::fmt;

/// Alignment, relative to the start of the stub, that the stub plus auth padding reaches: NTLM
/// and Kerberos sealing work on 16-byte blocks.
pub const AUTH_PAD_ALIGNMENT: usize = 16;

/// Size of the `sec_trailer` that precedes the auth token.
pub const SEC_TRAILER_LEN: usize = 8;

/// `auth_type`: the security provider (an open set, so unknown values survive a round trip).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AuthType(pub u8);

impl AuthType {
    pub const NONE: Self = Self(0);
    pub const SPNEGO: Self = Self(9);
    pub const NTLMSSP: Self = Self(10);
    pub const KERBEROS: Self = Self(16);
    pub const NETLOGON: Self = Self(68);

    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::NONE => "none",
            Self::SPNEGO => "SPNEGO",
            Self::NTLMSSP => "NTLMSSP",
            Self::KERBEROS => "Kerberos",
            Self::NETLOGON => "Netlogon",
            _ => return None,
        })
    }
}

/// `auth_level`: how much of each PDU the security provider protects.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct AuthLevel(pub u8);

impl AuthLevel {
    pub const DEFAULT: Self = Self(0);
    pub const NONE: Self = Self(1);
    pub const CONNECT: Self = Self(2);
    pub const CALL: Self = Self(3);
    pub const PKT: Self = Self(4);
    pub const PKT_INTEGRITY: Self = Self(5);
    pub const PKT_PRIVACY: Self = Self(6);

    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::DEFAULT => "default",
            Self::NONE => "none",
            Self::CONNECT => "connect",
            Self::CALL => "call",
            Self::PKT => "packet",
            Self::PKT_INTEGRITY => "packet integrity",
            Self::PKT_PRIVACY => "packet privacy",
            _ => return None,
        })
    }
}

/// Shows the symbolic name when there is one, the raw value otherwise.
macro_rules! impl_named_debug {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(name) => write!(f, "{}({name})", stringify!($t)),
                    None => write!(f, "{}({})", stringify!($t), self.0),
                }
            }
        }
    )*};
}

impl_named_debug!(AuthType, AuthLevel);

/// The authentication part of a PDU: `auth_pad_length` zero bytes after the body, the
/// `sec_trailer`, then `token` (`auth_length` bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthVerifier {
    pub auth_type: AuthType,
    pub auth_level: AuthLevel,
    /// Padding between the body and the trailer; see [`auth_pad_length`].
    pub pad_length: u8,
    pub context_id: u32,
    pub token: Vec<u8>,
}

/// Padding that brings a stub of `stub_len` bytes to a multiple of [`AUTH_PAD_ALIGNMENT`], as
/// sealing requires for request and response PDUs.
pub fn auth_pad_length(stub_len: usize) -> u8 {
    let pad = (AUTH_PAD_ALIGNMENT - stub_len % AUTH_PAD_ALIGNMENT) % AUTH_PAD_ALIGNMENT;
    // Always below 16.
    u8::try_from(pad).unwrap_or(0)
}
