//! The `sec_trailer` and authentication verifier that close an authenticated PDU
//! (MS-RPCE 2.2.2.11).

use core::fmt;

use crate::error::RpcError;
use crate::pdu::{decode_pdu, AuthRegions, PacketType, Pdu, PduHeader};

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

/// A security context that protects request and response PDUs at [`AuthLevel::PKT_PRIVACY`]
/// (MS-RPCE 3.3.1.5.2): the provider (NTLMSSP, Kerberos...) lives outside this crate.
pub trait PduProtection {
    /// Length of the verifier token the provider appends (16 for NTLMSSP).
    fn token_len(&self) -> usize;

    /// Encrypts `pdu[regions.sealed]` in place and writes the signature into
    /// `pdu[regions.token]`. The provider decides whether the signature also covers the rest of
    /// `regions.signed` (header signing).
    fn seal(&mut self, pdu: &mut [u8], regions: &AuthRegions) -> Result<(), RpcError>;

    /// Checks the signature in `pdu[regions.token]` and decrypts `pdu[regions.sealed]` in place.
    fn unseal(&mut self, pdu: &mut [u8], regions: &AuthRegions) -> Result<(), RpcError>;
}

/// Encodes one request or response fragment (see [`crate::fragment`], with
/// `auth_reserve = SEC_TRAILER_LEN + token_len`) as a sealed PDU: the stub is padded to
/// [`AUTH_PAD_ALIGNMENT`], a verifier of `auth_type` / [`AuthLevel::PKT_PRIVACY`] is appended and
/// the provider seals it.
pub fn encode_sealed(
    mut pdu: Pdu,
    auth_type: AuthType,
    context_id: u32,
    protection: &mut impl PduProtection,
) -> Result<Vec<u8>, RpcError> {
    let stub_len = pdu
        .body
        .stub()
        .ok_or_else(|| RpcError::Unexpected(format!("{:?} has no stub", pdu.body.packet_type())))?
        .len();
    pdu.auth = Some(AuthVerifier {
        auth_type,
        auth_level: AuthLevel::PKT_PRIVACY,
        pad_length: auth_pad_length(stub_len),
        context_id,
        token: vec![0; protection.token_len()],
    });
    let mut bytes = pdu.encode()?;
    let regions = AuthRegions::of(&bytes)?;
    protection.seal(&mut bytes, &regions)?;
    Ok(bytes)
}

/// Decodes one fragment received on a connection bound at [`AuthLevel::PKT_PRIVACY`]: a request
/// or response must carry a verifier of `auth_type` at that level and is unsealed in place; the
/// stub returned excludes the auth padding. Other PDUs (faults, which servers send without a
/// verifier, and shutdowns) are decoded as they are.
pub fn decode_sealed(
    mut frame: Vec<u8>,
    auth_type: AuthType,
    protection: &mut impl PduProtection,
) -> Result<Pdu, RpcError> {
    let header = PduHeader::decode(&frame)?;
    let sealed_type = matches!(header.ptype, PacketType::Request | PacketType::Response);
    if header.auth_length == 0 {
        if sealed_type {
            return Err(RpcError::Security(format!(
                "{:?} without a verifier on a sealed connection",
                header.ptype
            )));
        }
        return decode_pdu(&frame).map(|(pdu, _)| pdu);
    }
    let (pdu, _) = decode_pdu(&frame)?;
    let Some(verifier) = pdu.auth else {
        return Err(RpcError::Malformed(
            "auth_length set but no verifier".into(),
        ));
    };
    if verifier.auth_type != auth_type || verifier.auth_level != AuthLevel::PKT_PRIVACY {
        return Err(RpcError::Security(format!(
            "verifier {:?}/{:?}, expected {auth_type:?}/{:?}",
            verifier.auth_type,
            verifier.auth_level,
            AuthLevel::PKT_PRIVACY
        )));
    }
    if !sealed_type {
        return decode_pdu(&frame).map(|(pdu, _)| pdu);
    }
    let regions = AuthRegions::of(&frame)?;
    protection.unseal(&mut frame, &regions)?;
    decode_pdu(&frame).map(|(pdu, _)| pdu)
}
