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
    DrsError::Authentication(format!("{step}: {e}"))
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
