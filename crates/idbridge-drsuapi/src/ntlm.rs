//! NTLMv2 for DCE/RPC (MS-RPCE 3.3.1.5.2, MS-NLMP) through the `sspi` crate: the three-leg
//! token exchange carried by bind / bind_ack / auth3, then sealing and unsealing of request and
//! response PDUs at packet-privacy level.

use core::fmt;

use idbridge_rpc::{AuthRegions, PduProtection, RpcError};
use sspi::{
    AuthIdentity, BufferType, ClientRequestFlags, CredentialUse, DataRepresentation,
    EncryptionFlags, Ntlm, SecurityBuffer, SecurityBufferFlags, SecurityBufferRef, Sspi, SspiImpl,
    Username,
};
use zeroize::Zeroizing;

use crate::client::AuthMechanism;
use crate::error::DrsError;

/// Length of an NTLMSSP message signature.
const SIGNATURE_LEN: usize = 16;

/// A client-side NTLM security context.
pub struct NtlmContext {
    ntlm: Ntlm,
    credentials: <Ntlm as SspiImpl>::CredentialsHandle,
}

impl fmt::Debug for NtlmContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NtlmContext { .. }")
    }
}

fn auth_error(step: &str, e: impl fmt::Display) -> DrsError {
    DrsError::Authentication {
        mechanism: AuthMechanism::Ntlm,
        reason: format!("{step}: {e}"),
    }
}

/// `MsvAvDnsComputerName` (MS-NLMP 2.2.2.1): the server's DNS host name, from the target info of
/// a CHALLENGE message (MS-NLMP 2.2.1.2). `None` if the message is not a CHALLENGE or carries no
/// such pair. The name is unauthenticated: it only picks the default Kerberos SPN (an explicit
/// SPN pins the DC's identity instead).
pub fn challenge_dns_computer_name(challenge: &[u8]) -> Option<String> {
    const MSV_AV_EOL: u16 = 0;
    const MSV_AV_DNS_COMPUTER_NAME: u16 = 3;
    let u16_at = |at: usize| {
        challenge
            .get(at..at + 2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)
    };
    if challenge.get(..8)? != b"NTLMSSP\0" || challenge.get(8..12)? != [2, 0, 0, 0] {
        return None;
    }
    let len = usize::from(u16_at(40)?);
    let offset =
        usize::try_from(u32::from_le_bytes(challenge.get(44..48)?.try_into().ok()?)).ok()?;
    let mut info = challenge.get(offset..offset.checked_add(len)?)?;
    while let [a, b, c, d, rest @ ..] = info {
        let id = u16::from_le_bytes([*a, *b]);
        let value_len = usize::from(u16::from_le_bytes([*c, *d]));
        let (value, rest) = rest.split_at_checked(value_len)?;
        match id {
            MSV_AV_EOL => return None,
            MSV_AV_DNS_COMPUTER_NAME => {
                if value.len() % 2 != 0 {
                    return None;
                }
                let units: Vec<u16> = value
                    .chunks_exact(2)
                    .filter_map(|u| u.try_into().ok().map(u16::from_le_bytes))
                    .collect();
                let name = String::from_utf16(&units).ok()?;
                return (!name.is_empty()).then_some(name);
            }
            _ => info = rest,
        }
    }
    None
}

impl NtlmContext {
    /// `username` is a UPN (`user@realm`) or a down-level name (`DOMAIN\user`).
    pub fn new(username: &str, password: &str) -> Result<Self, DrsError> {
        let mut ntlm = Ntlm::new();
        let identity = AuthIdentity {
            username: Username::parse(username).map_err(|e| auth_error("user name", e))?,
            password: password.to_owned().into(),
        };
        let credentials = ntlm
            .acquire_credentials_handle()
            .with_credential_use(CredentialUse::Outbound)
            .with_auth_data(&identity)
            .execute(&mut ntlm)
            .map_err(|e| auth_error("credentials", e))?
            .credentials_handle;
        Ok(Self { ntlm, credentials })
    }

    /// Produces the next token: NEGOTIATE when `input` is `None`, AUTHENTICATE in answer to the
    /// server's CHALLENGE.
    pub fn step(&mut self, input: Option<&[u8]>) -> Result<Vec<u8>, DrsError> {
        let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        let mut input_buffers = input
            .map(|token| vec![SecurityBuffer::new(token.to_vec(), BufferType::Token)])
            .unwrap_or_default();
        let mut builder = self
            .ntlm
            .initialize_security_context()
            .with_credentials_handle(&mut self.credentials)
            .with_context_requirements(
                ClientRequestFlags::CONFIDENTIALITY
                    | ClientRequestFlags::INTEGRITY
                    | ClientRequestFlags::ALLOCATE_MEMORY,
            )
            .with_target_data_representation(DataRepresentation::Native)
            .with_output(&mut output);
        if input.is_some() {
            builder = builder.with_input(&mut input_buffers);
        }
        self.ntlm
            .initialize_security_context_impl(&mut builder)
            .map_err(|e| auth_error("InitializeSecurityContext", e))?
            .resolve_to_result()
            .map_err(|e| auth_error("InitializeSecurityContext", e))?;
        output
            .pop()
            .map(|b| b.buffer)
            .ok_or_else(|| auth_error("InitializeSecurityContext", "no output token"))
    }

    /// The exported session key, which keys the DRS secret encryption.
    pub fn session_key(&self) -> Result<Zeroizing<Vec<u8>>, DrsError> {
        let keys = self
            .ntlm
            .query_context_session_key()
            .map_err(|e| auth_error("session key", e))?;
        Ok(Zeroizing::new(keys.session_key.as_ref().clone()))
    }
}

/// A fragment cut into disjoint slices: what precedes the stub (header), the sealed
/// stub-plus-padding, the sec_trailer, and the signature.
struct Parts<'a> {
    header: &'a mut [u8],
    sealed: &'a mut [u8],
    trailer: &'a mut [u8],
    token: &'a mut [u8],
}

fn split<'a>(pdu: &'a mut [u8], regions: &AuthRegions) -> Result<Parts<'a>, RpcError> {
    let bad = || RpcError::Malformed("auth regions outside the PDU".into());
    let (rest, token) = pdu
        .split_at_mut_checked(regions.token.start)
        .ok_or_else(bad)?;
    let (rest, trailer) = rest
        .split_at_mut_checked(regions.sealed.end)
        .ok_or_else(bad)?;
    let (header, sealed) = rest
        .split_at_mut_checked(regions.sealed.start)
        .ok_or_else(bad)?;
    if token.len() != SIGNATURE_LEN {
        return Err(RpcError::Security(format!(
            "NTLMSSP verifier of {} bytes",
            token.len()
        )));
    }
    Ok(Parts {
        header,
        sealed,
        trailer,
        token,
    })
}

/// The signature covers the whole fragment up to the token (header, sealed stub, sec_trailer),
/// only the stub and padding being encrypted: what Samba checks.
impl PduProtection for NtlmContext {
    fn token_len(&self) -> usize {
        SIGNATURE_LEN
    }

    fn seal(&mut self, pdu: &mut [u8], regions: &AuthRegions) -> Result<(), RpcError> {
        let p = split(pdu, regions)?;
        let mut buffers = [
            SecurityBufferRef::data_buf(p.header)
                .with_flags(SecurityBufferFlags::SECBUFFER_READONLY_WITH_CHECKSUM),
            SecurityBufferRef::data_buf(p.sealed),
            SecurityBufferRef::data_buf(p.trailer)
                .with_flags(SecurityBufferFlags::SECBUFFER_READONLY_WITH_CHECKSUM),
            SecurityBufferRef::token_buf(p.token),
        ];
        self.ntlm
            .encrypt_message(EncryptionFlags::empty(), &mut buffers)
            .map_err(|e| RpcError::Security(format!("seal: {e}")))?;
        Ok(())
    }

    fn unseal(&mut self, pdu: &mut [u8], regions: &AuthRegions) -> Result<(), RpcError> {
        let p = split(pdu, regions)?;
        let mut buffers = [
            SecurityBufferRef::data_buf(p.header)
                .with_flags(SecurityBufferFlags::SECBUFFER_READONLY_WITH_CHECKSUM),
            SecurityBufferRef::data_buf(p.sealed),
            SecurityBufferRef::data_buf(p.trailer)
                .with_flags(SecurityBufferFlags::SECBUFFER_READONLY_WITH_CHECKSUM),
            SecurityBufferRef::token_buf(p.token),
        ];
        self.ntlm
            .decrypt_message(&mut buffers)
            .map_err(|e| RpcError::Security(format!("unseal: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    /// A CHALLENGE with `pairs` as its target info.
    fn challenge(pairs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut info = Vec::new();
        for (id, value) in pairs {
            info.extend_from_slice(&id.to_le_bytes());
            info.extend_from_slice(&u16::try_from(value.len()).unwrap().to_le_bytes());
            info.extend_from_slice(value);
        }
        let mut msg = b"NTLMSSP\0".to_vec();
        msg.extend_from_slice(&2u32.to_le_bytes());
        msg.extend_from_slice(&[0; 8]); // target name fields
        msg.extend_from_slice(&[0; 4]); // flags
        msg.extend_from_slice(&[7; 8]); // server challenge
        msg.extend_from_slice(&[0; 8]); // reserved
        let len = u16::try_from(info.len()).unwrap().to_le_bytes();
        msg.extend_from_slice(&len);
        msg.extend_from_slice(&len);
        msg.extend_from_slice(&56u32.to_le_bytes());
        msg.extend_from_slice(&[0; 8]); // version
        msg.extend(info);
        msg
    }

    #[test]
    fn the_dns_computer_name_comes_from_the_target_info() {
        let msg = challenge(&[
            (2, utf16("LAB")),
            (1, utf16("DC1")),
            (3, utf16("dc1.lab.idbridge.test")),
            (0, Vec::new()),
        ]);
        assert_eq!(
            challenge_dns_computer_name(&msg).as_deref(),
            Some("dc1.lab.idbridge.test")
        );
        assert_eq!(
            challenge_dns_computer_name(&challenge(&[(1, utf16("DC1")), (0, Vec::new())])),
            None
        );
        // Truncated anywhere, or not a CHALLENGE: nothing, and no panic.
        for cut in 0..msg.len() {
            assert_eq!(
                challenge_dns_computer_name(&msg[..cut]),
                None,
                "cut at {cut}"
            );
        }
        let mut negotiate = msg.clone();
        negotiate[8] = 1;
        assert_eq!(challenge_dns_computer_name(&negotiate), None);
        // An odd-length name is malformed.
        assert_eq!(
            challenge_dns_computer_name(&challenge(&[(3, vec![0x61])])),
            None
        );
    }
}
