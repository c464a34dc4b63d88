//! Kerberos for DCE/RPC (MS-RPCE 3.3.1.5.2, MS-KILE 3.4.5.4.1) through the `sspi` crate, in DCE
//! style: the bind carries the AP-REQ, the bind_ack the DC's AP-REP, and the client answers with
//! its own AP-REP in an auth3. Requests and responses are then sealed with RFC 4121 wrap tokens.
//!
//! `sspi` asks for KDC round trips by yielding [`NetworkRequest`]s; they are answered here over
//! TCP to one KDC address (RFC 4120 7.2.2: a 4-byte big-endian length, then the message). The
//! framing and the reading of a KRB-ERROR's code are pure functions below.

use core::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use idbridge_rpc::{AuthRegions, PduProtection, RpcError};
use sspi::generator::GeneratorState;
use sspi::{
    AuthIdentityBuffers, BufferType, ClientRequestFlags, CredentialsBuffers, DataRepresentation,
    EncryptionFlags, Kerberos, KerberosConfig, NetworkProtocol, NetworkRequest, SecurityBuffer,
    SecurityBufferFlags, SecurityBufferRef, Sspi, SspiImpl,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

/// The KDC's well-known port.
pub const KDC_PORT: u16 = 88;
/// A KDC reply is a few kilobytes (a ticket with its PAC); anything beyond this is refused.
const MAX_KDC_REPLY: usize = 1 << 20;
/// Bound on one KDC round trip (connect, send, receive).
const KDC_TIMEOUT: Duration = Duration::from_secs(10);
/// Sent as the client's NetBIOS address in the AS-REQ; informational only.
const CLIENT_NAME: &str = "IDBRIDGE";

/// The KRB-ERROR codes (RFC 4120 7.5.9) this client tells apart. `CLIENT_REVOKED`, `KEY_EXPIRED`
/// and `PREAUTH_FAILED` mean the KDC refused the account itself: NTLM with the same password
/// would fail too, and count one more bad attempt towards lockout.
pub mod krb_error {
    pub const CLIENT_REVOKED: u32 = 18;
    pub const KEY_EXPIRED: u32 = 23;
    pub const PREAUTH_FAILED: u32 = 24;
    pub const PREAUTH_REQUIRED: u32 = 25;
    pub const S_PRINCIPAL_UNKNOWN: u32 = 7;
    pub const C_PRINCIPAL_UNKNOWN: u32 = 6;
    pub const SKEW: u32 = 37;

    /// A short name for the codes worth naming in an error message.
    pub fn name(code: u32) -> Option<&'static str> {
        Some(match code {
            C_PRINCIPAL_UNKNOWN => "KDC_ERR_C_PRINCIPAL_UNKNOWN: no such account",
            S_PRINCIPAL_UNKNOWN => "KDC_ERR_S_PRINCIPAL_UNKNOWN: no account has this SPN",
            CLIENT_REVOKED => "KDC_ERR_CLIENT_REVOKED: the account is disabled or locked out",
            KEY_EXPIRED => "KDC_ERR_KEY_EXPIRED: the password has expired",
            PREAUTH_FAILED => "KDC_ERR_PREAUTH_FAILED: wrong password",
            SKEW => "KRB_AP_ERR_SKEW: the clocks differ too much",
            _ => return None,
        })
    }
}

/// Why Kerberos did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KerberosError {
    /// Kerberos cannot be used here (no KDC, unknown SPN, a DC that refuses it...); NTLM may
    /// still work.
    Unavailable(String),
    /// The KDC refused the account's credentials.
    Rejected(String),
}

impl fmt::Display for KerberosError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(m) | Self::Rejected(m) => f.write_str(m),
        }
    }
}

/// The client principal: the name sent in the AS-REQ and the realm it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `user@suffix` (sent as an enterprise name) or a plain account name.
    pub name: String,
    /// Upper case.
    pub realm: String,
}

impl Principal {
    /// From the account name the credentials carry: a UPN (`user@suffix`: the realm defaults to
    /// the upper-cased suffix) or a down-level name (`DOMAIN\user`) or a bare account name, which
    /// need `realm`.
    pub fn new(username: &str, realm: Option<&str>) -> Result<Self, String> {
        let realm = realm.map(str::trim).filter(|r| !r.is_empty());
        let not_a_name = || format!("{username:?} is not an account name");
        let (name, implied_realm) = if let Some((_, account)) = username.split_once('\\') {
            (account, None)
        } else if let Some((account, suffix)) = username.rsplit_once('@') {
            if account.is_empty() || suffix.is_empty() {
                return Err(not_a_name());
            }
            (username, Some(suffix))
        } else {
            (username, None)
        };
        if name.is_empty() {
            return Err(not_a_name());
        }
        let realm = match realm.or(implied_realm) {
            Some(r) => r.to_ascii_uppercase(),
            None => {
                return Err(format!(
                    "the realm of {username:?} is unknown: use a UPN (user@realm) or set the realm"
                ))
            }
        };
        if !realm.is_ascii() || realm.contains(['/', '@', '\\', ' ']) {
            return Err(format!("{realm:?} is not a Kerberos realm"));
        }
        Ok(Self {
            name: name.to_owned(),
            realm,
        })
    }
}

/// Checks a target SPN: `service/host`, two components, ASCII (what `sspi` can request).
pub fn check_spn(spn: &str) -> Result<(), String> {
    match spn.split_once('/') {
        Some((service, host))
            if !service.is_empty()
                && !host.is_empty()
                && !host.contains('/')
                && spn.is_ascii()
                && !spn.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{spn:?} is not a two-part service principal name (service/host, e.g. \
             host/dc1.corp.example.com)"
        )),
    }
}

/// The message inside a framed KDC request, checking that the 4-byte length prefix `sspi` put in
/// front matches it.
pub fn kdc_request_body(framed: &[u8]) -> Result<&[u8], String> {
    let (prefix, body) = framed
        .split_first_chunk::<4>()
        .ok_or("a KDC request shorter than its length prefix")?;
    let declared = u32::from_be_bytes(*prefix);
    if usize::try_from(declared).ok() != Some(body.len()) {
        return Err(format!(
            "a KDC request of {} bytes declares {declared}",
            body.len()
        ));
    }
    Ok(body)
}

/// The length a KDC's reply prefix announces; the high bit is reserved (RFC 4120 7.2.2) and
/// replies above [`MAX_KDC_REPLY`] are refused.
pub fn kdc_reply_len(prefix: [u8; 4]) -> Result<usize, String> {
    let len = u32::from_be_bytes(prefix);
    if len & 0x8000_0000 != 0 {
        return Err("the KDC set the reserved high bit of the reply length".into());
    }
    match usize::try_from(len) {
        Ok(0) => Err("the KDC sent an empty reply".into()),
        Ok(n) if n <= MAX_KDC_REPLY => Ok(n),
        _ => Err(format!(
            "the KDC announced a reply of {len} bytes (limit {MAX_KDC_REPLY})"
        )),
    }
}

/// One DER element at the start of `buf`: (tag, content, rest). Single-byte tags only, which is
/// all a KRB-ERROR uses.
fn der_element(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(count)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

/// The `error-code` of a KRB-ERROR (`[APPLICATION 30]`), or `None` for any other message.
pub fn krb_error_code(message: &[u8]) -> Option<u32> {
    let (0x7e, seq, _) = der_element(message)? else {
        return None;
    };
    let (0x30, mut fields, _) = der_element(seq)? else {
        return None;
    };
    while !fields.is_empty() {
        let (tag, content, rest) = der_element(fields)?;
        if tag == 0xa6 {
            let (0x02, int, _) = der_element(content)? else {
                return None;
            };
            if int.is_empty() || int.len() > 5 {
                return None;
            }
            let value = int.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            return u32::try_from(value).ok();
        }
        fields = rest;
    }
    None
}

/// One KDC round trip over TCP: `framed` is the length-prefixed request; the reply is returned
/// length-prefixed as well, the way `sspi` reads it.
async fn kdc_round_trip(kdc: SocketAddr, framed: &[u8]) -> Result<Vec<u8>, String> {
    kdc_request_body(framed)?;
    let exchange = async {
        let mut stream = TcpStream::connect(kdc).await?;
        stream.write_all(framed).await?;
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix).await?;
        let len = kdc_reply_len(prefix).map_err(std::io::Error::other)?;
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await?;
        let mut reply = Vec::with_capacity(len + 4);
        reply.extend_from_slice(&prefix);
        reply.extend(body);
        Ok::<_, std::io::Error>(reply)
    };
    match tokio::time::timeout(KDC_TIMEOUT, exchange).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(format!("the KDC at {kdc} is unreachable: {e}")),
        Err(_) => Err(format!(
            "the KDC at {kdc} did not answer within {} s",
            KDC_TIMEOUT.as_secs()
        )),
    }
}

/// A client-side Kerberos security context for one DCE/RPC connection.
pub struct KerberosContext {
    kerberos: Kerberos,
    credentials: <Kerberos as SspiImpl>::CredentialsHandle,
    principal: Principal,
    spn: String,
    kdc: SocketAddr,
    /// Set once the context is established: the wrap token's length.
    token_len: usize,
    /// Whether the PDU header and sec_trailer are covered by the checksum (negotiated with
    /// `PFC_SUPPORT_HEADER_SIGN` in the bind).
    header_signing: bool,
}

impl fmt::Debug for KerberosContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KerberosContext")
            .field("principal", &self.principal)
            .field("spn", &self.spn)
            .field("kdc", &self.kdc)
            .finish_non_exhaustive()
    }
}

fn flags() -> ClientRequestFlags {
    ClientRequestFlags::USE_DCE_STYLE
        | ClientRequestFlags::MUTUAL_AUTH
        | ClientRequestFlags::CONFIDENTIALITY
        | ClientRequestFlags::INTEGRITY
}

impl KerberosContext {
    /// `principal` authenticates with `password` to the KDC at `kdc` for a ticket to `spn`.
    pub fn new(
        principal: Principal,
        password: &str,
        kdc: SocketAddr,
        spn: &str,
    ) -> Result<Self, KerberosError> {
        check_spn(spn).map_err(KerberosError::Unavailable)?;
        let url = match kdc {
            SocketAddr::V4(a) => format!("tcp://{}:{}", a.ip(), a.port()),
            SocketAddr::V6(a) => format!("tcp://[{}]:{}", a.ip(), a.port()),
        };
        let config = KerberosConfig::new_with_kdc_url(&url, CLIENT_NAME.to_owned());
        let kerberos = Kerberos::new_client_from_config(config)
            .map_err(|e| KerberosError::Unavailable(format!("Kerberos client: {e}")))?;
        // A UPN goes whole into `user` (an enterprise name); `domain` carries the realm.
        let credentials = Some(CredentialsBuffers::AuthIdentity(
            AuthIdentityBuffers::from_utf8(&principal.name, &principal.realm, password),
        ));
        Ok(Self {
            kerberos,
            credentials,
            principal,
            spn: spn.to_owned(),
            kdc,
            token_len: 0,
            header_signing: false,
        })
    }

    /// The next token: the AP-REQ first (after the KDC exchanges), then the client's AP-REP in
    /// answer to the DC's.
    pub async fn step(&mut self, input: Option<&[u8]>) -> Result<Vec<u8>, KerberosError> {
        let kdc = self.kdc;
        let mut last_krb_error = None;
        let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        // The first step needs input buffers too, even if empty.
        let mut input_buffers = vec![SecurityBuffer::new(
            input.map(<[u8]>::to_vec).unwrap_or_default(),
            BufferType::Token,
        )];
        let mut builder = self
            .kerberos
            .initialize_security_context()
            .with_credentials_handle(&mut self.credentials)
            .with_context_requirements(flags())
            .with_target_data_representation(DataRepresentation::Native)
            .with_target_name(&self.spn)
            .with_input(&mut input_buffers)
            .with_output(&mut output);
        let result = {
            let mut generator = self
                .kerberos
                .initialize_security_context_impl(&mut builder)
                .map_err(|e| KerberosError::Unavailable(format!("Kerberos: {e}")))?;
            let mut state = generator.start();
            loop {
                match state {
                    GeneratorState::Completed(result) => break result,
                    GeneratorState::Suspended(request) => {
                        let reply = answer(kdc, &request).await?;
                        last_krb_error = reply.get(4..).and_then(krb_error_code);
                        state = generator.resume(Ok(reply));
                    }
                }
            }
        };
        if let Err(e) = result {
            return Err(classify(
                &self.principal,
                &self.spn,
                kdc,
                last_krb_error,
                &e,
            ));
        }
        output
            .pop()
            .map(|b| b.buffer)
            .ok_or_else(|| KerberosError::Unavailable("Kerberos produced no token".into()))
    }

    /// After the last leg: reads the wrap token length and records whether header signing was
    /// negotiated.
    pub fn finish(&mut self, header_signing: bool) -> Result<(), KerberosError> {
        let sizes = self
            .kerberos
            .query_context_sizes()
            .map_err(|e| KerberosError::Unavailable(format!("Kerberos context sizes: {e}")))?;
        self.token_len = usize::try_from(sizes.security_trailer).unwrap_or(0);
        if self.token_len == 0 {
            return Err(KerberosError::Unavailable(
                "Kerberos reported an empty wrap token".into(),
            ));
        }
        self.header_signing = header_signing;
        Ok(())
    }

    pub fn header_signing(&self) -> bool {
        self.header_signing
    }

    /// The context's session key (the sub-session key from the DC's AP-REP), which keys the DRS
    /// secret encryption.
    pub fn session_key(&self) -> Result<Zeroizing<Vec<u8>>, KerberosError> {
        let keys = self
            .kerberos
            .query_context_session_key()
            .map_err(|e| KerberosError::Unavailable(format!("Kerberos session key: {e}")))?;
        Ok(Zeroizing::new(keys.session_key.as_ref().clone()))
    }
}

/// Answers one network request of the context: only TCP to the configured KDC.
async fn answer(kdc: SocketAddr, request: &NetworkRequest) -> Result<Vec<u8>, KerberosError> {
    if request.protocol != NetworkProtocol::Tcp {
        return Err(KerberosError::Unavailable(format!(
            "Kerberos asked for a {:?} KDC exchange; only TCP to {kdc} is used",
            request.protocol
        )));
    }
    let same_host = request
        .url
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .and_then(|h| h.parse::<std::net::IpAddr>().ok())
        == Some(kdc.ip());
    if !same_host || request.url.port().unwrap_or(KDC_PORT) != kdc.port() {
        return Err(KerberosError::Unavailable(format!(
            "Kerberos asked for another KDC ({}): cross-realm referrals are not supported",
            request.url
        )));
    }
    kdc_round_trip(kdc, &request.data)
        .await
        .map_err(KerberosError::Unavailable)
}

/// Turns `sspi`'s error into ours, using the last KRB-ERROR the KDC sent to tell a refused
/// account from a Kerberos that is merely unusable.
fn classify(
    principal: &Principal,
    spn: &str,
    kdc: SocketAddr,
    krb_error: Option<u32>,
    e: &sspi::Error,
) -> KerberosError {
    let who = format!("{}@{}", principal.name, principal.realm);
    match krb_error {
        Some(
            code @ (krb_error::PREAUTH_FAILED | krb_error::CLIENT_REVOKED | krb_error::KEY_EXPIRED),
        ) => KerberosError::Rejected(format!(
            "the KDC at {kdc} refused {who} ({})",
            krb_error::name(code).unwrap_or("refused")
        )),
        Some(krb_error::S_PRINCIPAL_UNKNOWN) => KerberosError::Unavailable(format!(
            "the KDC at {kdc} knows no service principal {spn:?} ({})",
            krb_error::name(krb_error::S_PRINCIPAL_UNKNOWN).unwrap_or_default()
        )),
        Some(code) if code != krb_error::PREAUTH_REQUIRED => KerberosError::Unavailable(format!(
            "the KDC at {kdc} answered {who} with error {code}{}",
            krb_error::name(code)
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        )),
        _ => KerberosError::Unavailable(format!(
            "Kerberos for {who} to {spn}: {:?}: {}",
            e.error_type, e.description
        )),
    }
}

/// A fragment cut into disjoint slices: what precedes the stub (header), the sealed
/// stub-plus-padding, the sec_trailer, and the wrap token.
struct Parts<'a> {
    header: &'a mut [u8],
    sealed: &'a mut [u8],
    trailer: &'a mut [u8],
    token: &'a mut [u8],
}

fn split<'a>(
    pdu: &'a mut [u8],
    regions: &AuthRegions,
    token_len: usize,
) -> Result<Parts<'a>, RpcError> {
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
    if token.len() != token_len {
        return Err(RpcError::Security(format!(
            "Kerberos verifier of {} bytes, expected {token_len}",
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

/// With header signing, the checksum covers the PDU header and the sec_trailer as well as the
/// stub and padding; only the latter are encrypted.
fn buffers<'a>(p: Parts<'a>, header_signing: bool) -> Vec<SecurityBufferRef<'a>> {
    if header_signing {
        vec![
            SecurityBufferRef::data_buf(p.header)
                .with_flags(SecurityBufferFlags::SECBUFFER_READONLY_WITH_CHECKSUM),
            SecurityBufferRef::data_buf(p.sealed),
            SecurityBufferRef::data_buf(p.trailer)
                .with_flags(SecurityBufferFlags::SECBUFFER_READONLY_WITH_CHECKSUM),
            SecurityBufferRef::token_buf(p.token),
        ]
    } else {
        vec![
            SecurityBufferRef::data_buf(p.sealed),
            SecurityBufferRef::token_buf(p.token),
        ]
    }
}

impl PduProtection for KerberosContext {
    fn token_len(&self) -> usize {
        self.token_len
    }

    fn seal(&mut self, pdu: &mut [u8], regions: &AuthRegions) -> Result<(), RpcError> {
        let mut buffers = buffers(split(pdu, regions, self.token_len)?, self.header_signing);
        self.kerberos
            .encrypt_message(EncryptionFlags::empty(), &mut buffers)
            .map_err(|e| RpcError::Security(format!("Kerberos seal: {e}")))?;
        Ok(())
    }

    fn unseal(&mut self, pdu: &mut [u8], regions: &AuthRegions) -> Result<(), RpcError> {
        let mut buffers = buffers(split(pdu, regions, self.token_len)?, self.header_signing);
        self.kerberos
            .decrypt_message(&mut buffers)
            .map_err(|e| RpcError::Security(format!("Kerberos unseal: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_from_upn_down_level_and_bare_names() {
        assert_eq!(
            Principal::new("svc@corp.example.com", None).unwrap(),
            Principal {
                name: "svc@corp.example.com".into(),
                realm: "CORP.EXAMPLE.COM".into()
            }
        );
        // An alternative UPN suffix: the realm is given.
        assert_eq!(
            Principal::new("svc@example.com", Some("corp.example.com"))
                .unwrap()
                .realm,
            "CORP.EXAMPLE.COM"
        );
        assert_eq!(
            Principal::new("CORP\\svc", Some("CORP.EXAMPLE.COM")).unwrap(),
            Principal {
                name: "svc".into(),
                realm: "CORP.EXAMPLE.COM".into()
            }
        );
        assert!(Principal::new("CORP\\svc", None)
            .unwrap_err()
            .contains("realm"));
        assert!(Principal::new("svc", None).is_err());
        assert!(Principal::new("svc", Some("  ")).is_err());
        assert!(Principal::new("@corp.example.com", None).is_err());
        assert!(Principal::new("svc@", None).is_err());
        assert!(Principal::new("svc@bad realm", None).is_err());
    }

    #[test]
    fn spns_have_two_parts() {
        assert!(check_spn("host/dc1.corp.example.com").is_ok());
        assert!(check_spn("ldap/dc1.corp.example.com").is_ok());
        for bad in [
            "dc1.corp.example.com",
            "/dc1",
            "host/",
            "E3514235-4B06-11D1-AB04-00C04FC2DCD2/guid/corp.example.com",
            "host/dc 1",
            "host/dc\u{e4}",
        ] {
            assert!(check_spn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kdc_request_framing_is_checked() {
        assert_eq!(
            kdc_request_body(&[0, 0, 0, 2, 0x6a, 0]).unwrap(),
            &[0x6a, 0]
        );
        assert!(kdc_request_body(&[0, 0, 0, 3, 0x6a, 0]).is_err());
        assert!(kdc_request_body(&[0, 0, 0]).is_err());
        assert_eq!(kdc_request_body(&[0, 0, 0, 0]).unwrap(), &[] as &[u8]);
    }

    #[test]
    fn kdc_reply_length_is_bounded() {
        assert_eq!(kdc_reply_len([0, 0, 0x05, 0xdc]).unwrap(), 1500);
        assert_eq!(kdc_reply_len([0, 0x10, 0, 0]).unwrap(), MAX_KDC_REPLY);
        assert!(kdc_reply_len([0, 0x10, 0, 1]).is_err());
        assert!(kdc_reply_len([0x80, 0, 0, 1]).is_err());
        assert!(kdc_reply_len([0, 0, 0, 0]).is_err());
    }

    /// A KRB-ERROR as Samba sends it, reduced to its required fields.
    fn krb_error(code: u8) -> Vec<u8> {
        let mut fields = vec![
            0xa0, 0x03, 0x02, 0x01, 0x05, // pvno 5
            0xa1, 0x03, 0x02, 0x01, 0x1e, // msg-type 30
            0xa4, 0x11, 0x18, 0x0f, // stime
        ];
        fields.extend_from_slice(b"20260101000000Z");
        fields.extend_from_slice(&[0xa5, 0x03, 0x02, 0x01, 0x00]); // susec
        fields.extend_from_slice(&[0xa6, 0x03, 0x02, 0x01, code]); // error-code
        let mut seq = vec![0x30, u8::try_from(fields.len()).unwrap()];
        seq.extend(fields);
        let mut msg = vec![0x7e, 0x81, u8::try_from(seq.len()).unwrap()];
        msg.extend(seq);
        msg
    }

    #[test]
    fn krb_error_codes_are_read() {
        assert_eq!(
            krb_error_code(&krb_error(24)),
            Some(krb_error::PREAUTH_FAILED)
        );
        assert_eq!(
            krb_error_code(&krb_error(25)),
            Some(krb_error::PREAUTH_REQUIRED)
        );
        // Not a KRB-ERROR (an AS-REP is [APPLICATION 11]).
        let mut as_rep = krb_error(24);
        as_rep[0] = 0x6b;
        assert_eq!(krb_error_code(&as_rep), None);
        // Truncated anywhere: no code, no panic.
        let whole = krb_error(24);
        for cut in 0..whole.len() {
            assert_eq!(krb_error_code(&whole[..cut]), None, "cut at {cut}");
        }
        assert_eq!(krb_error_code(&[0x7e, 0x85, 1, 1, 1, 1, 1]), None);
    }

    #[test]
    fn kdc_errors_tell_a_refused_account_from_an_unusable_kerberos() {
        let principal = Principal::new("svc@corp.example.com", None).unwrap();
        let kdc = SocketAddr::from(([10, 0, 0, 10], 88));
        let spn = "host/dc1.corp.example.com";
        let e = sspi::Error::new(sspi::ErrorKind::KdcInvalidRequest, "from the KDC");
        let of = |code| classify(&principal, spn, kdc, code, &e);
        for code in [
            krb_error::PREAUTH_FAILED,
            krb_error::CLIENT_REVOKED,
            krb_error::KEY_EXPIRED,
        ] {
            let KerberosError::Rejected(m) = of(Some(code)) else {
                panic!("{code} is a refusal");
            };
            assert!(
                m.contains("svc@corp.example.com@CORP.EXAMPLE.COM") && m.contains("KDC_ERR_"),
                "{m}"
            );
        }
        let KerberosError::Unavailable(m) = of(Some(krb_error::S_PRINCIPAL_UNKNOWN)) else {
            panic!("an unknown SPN is not a refusal");
        };
        assert!(m.contains(spn) && m.contains("10.0.0.10:88"), "{m}");
        // PREAUTH_REQUIRED is the normal first answer: the error is sspi's.
        for code in [None, Some(krb_error::PREAUTH_REQUIRED)] {
            let KerberosError::Unavailable(m) = of(code) else {
                panic!("{code:?}");
            };
            assert!(m.contains("from the KDC"), "{m}");
        }
        assert!(matches!(of(Some(68)), KerberosError::Unavailable(m) if m.contains("error 68")));
    }

    #[tokio::test]
    async fn only_tcp_to_the_configured_kdc_is_answered() {
        let kdc = SocketAddr::from(([127, 0, 0, 1], 88));
        let request = |protocol, url: &str| NetworkRequest {
            protocol,
            url: url.parse().unwrap(),
            data: b"\0\0\0\x01x".to_vec(),
        };
        let e = answer(kdc, &request(NetworkProtocol::Tcp, "tcp://10.1.1.1:88"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cross-realm"), "{e}");
        let e = answer(kdc, &request(NetworkProtocol::Tcp, "tcp://127.0.0.1:89"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cross-realm"), "{e}");
        let e = answer(kdc, &request(NetworkProtocol::Udp, "udp://127.0.0.1:88"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("Udp"), "{e}");
    }

    #[tokio::test]
    async fn kdc_round_trip_frames_both_ways() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut prefix = [0u8; 4];
            s.read_exact(&mut prefix).await.unwrap();
            let mut body = vec![0; usize::try_from(u32::from_be_bytes(prefix)).unwrap()];
            s.read_exact(&mut body).await.unwrap();
            assert_eq!(body, b"as-req");
            s.write_all(&[0, 0, 0, 6]).await.unwrap();
            s.write_all(b"as-rep").await.unwrap();
        });
        let reply = kdc_round_trip(addr, b"\0\0\0\x06as-req").await.unwrap();
        assert_eq!(reply, b"\0\0\0\x06as-rep");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_closed_kdc_port_is_unreachable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let e = kdc_round_trip(addr, b"\0\0\0\x01x").await.unwrap_err();
        assert!(e.contains("unreachable"), "{e}");
    }
}
