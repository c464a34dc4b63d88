//! The tokio edge: a DRSUAPI connection sealed with Kerberos or NTLMv2 ([`RpcAuth`]). Protocol
//! decisions are delegated to the pure modules ([`crate::idl`], [`crate::replicate`],
//! [`crate::crypto`]).

use core::fmt;
use std::net::{IpAddr, SocketAddr};

use idbridge_core::ObjectGuid;
use idbridge_ndr::ContextHandle;
use idbridge_rpc::client::{ept_map_tcp_port, Connection};
use idbridge_rpc::{
    decode_sealed, encode_sealed, fragment, pfc, AuthLevel, AuthRegions, AuthType, AuthVerifier,
    Bind, BindAck, ContextResultCode, FaultStatus, Pdu, PduBody, PduProtection,
    PresentationContext, Reassembler, Request, RpcError, DRSUAPI, EPM_PORT, NDR20, SEC_TRAILER_LEN,
};
use serde::Deserialize;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::error::{win32, DrsError};
use crate::idl::{
    self, ext, ExtensionsInt, GetNcChangesReply, GetNcChangesReplyV6, GetNcChangesRequest,
    GetNcChangesRequestV8, NTDSAPI_CLIENT_GUID,
};
use crate::kerberos::{KerberosContext, KerberosError, Principal, KDC_PORT};
use crate::ntlm::{challenge_dns_computer_name, NtlmContext};
use crate::replicate::{
    about_object, build_object_request, build_request, process_object_reply, process_reply,
    AttributeSet, CycleState, ObjectSecrets, PageLimits, SecretsPage, Watermark,
};

/// Fragment size we offer and accept.
const MAX_FRAG: u16 = 4280;
/// Bound on one reassembled reply; a page is limited to `max_bytes` (8 MiB by default) plus
/// NDR overhead.
const MAX_REPLY: usize = 64 << 20;
/// `auth_context_id` of our single security context.
const AUTH_CONTEXT_ID: u32 = 1;

/// Credentials of the replicating account.
#[derive(Clone)]
pub struct Credentials {
    /// UPN (`user@realm`) or down-level name (`DOMAIN\user`).
    pub username: String,
    pub password: Zeroizing<String>,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: Zeroizing::new(password.into()),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Which mechanism authenticates the RPC connection (`[ad] rpc_auth` in the agent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RpcAuth {
    /// Kerberos; NTLMv2 when Kerberos cannot be used (no KDC, no SPN, a DC that refuses it),
    /// keeping the reason ([`DrsClient::kerberos_fallback`]) for the caller to log. Not when the
    /// KDC refused the credentials.
    #[default]
    Negotiate,
    /// Kerberos only.
    Kerberos,
    /// NTLMv2 only.
    Ntlm,
}

/// The mechanism a connection authenticated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMechanism {
    Kerberos,
    Ntlm,
}

impl fmt::Display for AuthMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Kerberos => "Kerberos",
            Self::Ntlm => "NTLM",
        })
    }
}

/// How to authenticate, and what Kerberos needs besides the credentials. Every field has a
/// default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthOptions {
    pub mechanism: RpcAuth,
    /// The account's realm; default: the UPN suffix, upper-cased.
    pub realm: Option<String>,
    /// The KDC; default: the DC's address, port 88.
    pub kdc: Option<SocketAddr>,
    /// The DC's service principal name, `service/host` (e.g. `host/dc1.corp.example.com`);
    /// default: `host/` and the DNS name the DC gives in an NTLM challenge.
    pub spn: Option<String>,
}

/// A bound DRSUAPI session with a DC.
pub struct DrsClient {
    conn: Connection,
    security: Security,
    /// Why Kerberos was not used, when `negotiate` fell back to NTLM.
    kerberos_fallback: Option<String>,
    session_key: Zeroizing<Vec<u8>>,
    handle: ContextHandle,
    server_extensions: ExtensionsInt,
    max_xmit: u16,
    call_id: u32,
    client_dsa: Uuid,
    attrs: AttributeSet,
}

impl fmt::Debug for DrsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrsClient")
            .field("server_extensions", &self.server_extensions)
            .field("call_id", &self.call_id)
            .finish_non_exhaustive()
    }
}

impl DrsClient {
    /// Asks the endpoint mapper on `host`:135 for the DRSUAPI port, then binds there with the
    /// default [`AuthOptions`] (Kerberos, else NTLMv2).
    pub async fn connect(host: IpAddr, creds: &Credentials) -> Result<Self, DrsError> {
        Self::connect_with(host, creds, &AuthOptions::default()).await
    }

    /// [`DrsClient::connect`] with explicit authentication options.
    pub async fn connect_with(
        host: IpAddr,
        creds: &Credentials,
        options: &AuthOptions,
    ) -> Result<Self, DrsError> {
        let port = ept_map_tcp_port(SocketAddr::new(host, EPM_PORT), DRSUAPI).await?;
        Self::connect_to_with(SocketAddr::new(host, port), creds, options).await
    }

    /// Binds to DRSUAPI at a known address with the default [`AuthOptions`].
    pub async fn connect_to(addr: SocketAddr, creds: &Credentials) -> Result<Self, DrsError> {
        Self::connect_to_with(addr, creds, &AuthOptions::default()).await
    }

    /// Binds to DRSUAPI at a known address at packet privacy (Kerberos or NTLMv2, as `options`
    /// say), then calls `IDL_DRSBind`.
    pub async fn connect_to_with(
        addr: SocketAddr,
        creds: &Credentials,
        options: &AuthOptions,
    ) -> Result<Self, DrsError> {
        if options.mechanism == RpcAuth::Ntlm {
            return Self::connect_ntlm(addr, creds).await;
        }
        let client = match Self::connect_kerberos(addr, creds, options).await {
            Ok(client) => client,
            Err(KerberosFailure::Fatal(e)) => return Err(e),
            Err(KerberosFailure::Kerberos(e)) => {
                let reason = after_kerberos_failure(options.mechanism, e)?;
                let mut client = Self::connect_ntlm(addr, creds).await?;
                client.kerberos_fallback = Some(reason);
                client
            }
        };
        Ok(client)
    }

    /// The mechanism this connection authenticated with.
    pub fn mechanism(&self) -> AuthMechanism {
        match self.security {
            Security::Kerberos(_) => AuthMechanism::Kerberos,
            Security::Ntlm(_) => AuthMechanism::Ntlm,
        }
    }

    /// Why Kerberos was not used, when [`RpcAuth::Negotiate`] fell back to NTLMv2.
    pub fn kerberos_fallback(&self) -> Option<&str> {
        self.kerberos_fallback.as_deref()
    }

    /// NTLMv2: bind (NEGOTIATE) -> bind_ack (CHALLENGE) -> auth3 (AUTHENTICATE).
    async fn connect_ntlm(addr: SocketAddr, creds: &Credentials) -> Result<Self, DrsError> {
        let mut conn = Connection::connect(addr).await.map_err(DrsError::from)?;
        let mut ntlm = NtlmContext::new(&creds.username, &creds.password)?;
        let max_xmit = authenticated_bind(&mut conn, &mut ntlm).await?;
        let session_key = ntlm.session_key()?;
        Self::finish_connect(conn, Security::Ntlm(Box::new(ntlm)), session_key, max_xmit).await
    }

    /// Kerberos, DCE style: bind (AP-REQ) -> bind_ack (AP-REP) -> auth3 (AP-REP).
    async fn connect_kerberos(
        addr: SocketAddr,
        creds: &Credentials,
        options: &AuthOptions,
    ) -> Result<Self, KerberosFailure> {
        let unavailable = |m: String| KerberosFailure::Kerberos(KerberosError::Unavailable(m));
        let principal =
            Principal::new(&creds.username, options.realm.as_deref()).map_err(unavailable)?;
        let spn = match &options.spn {
            Some(spn) => spn.clone(),
            None => format!(
                "host/{}",
                discover_dc_name(addr, creds).await.map_err(unavailable)?
            ),
        };
        let kdc = options
            .kdc
            .unwrap_or_else(|| SocketAddr::new(addr.ip(), KDC_PORT));
        let mut kerberos = KerberosContext::new(principal, &creds.password, kdc, &spn)
            .map_err(KerberosFailure::Kerberos)?;
        let mut conn = Connection::connect(addr)
            .await
            .map_err(|e| KerberosFailure::Fatal(e.into()))?;
        let max_xmit = kerberos_bind(&mut conn, &mut kerberos).await?;
        let session_key = kerberos.session_key().map_err(KerberosFailure::Kerberos)?;
        let security = Security::Kerberos(Box::new(kerberos));
        match Self::finish_connect(conn, security, session_key, max_xmit).await {
            Ok(client) => Ok(client),
            // The DC did not accept the context the KDC vouched for.
            Err(DrsError::Authentication { reason, .. }) => Err(unavailable(format!(
                "the DC refused the Kerberos authentication for {spn}: {reason}"
            ))),
            Err(e) => Err(KerberosFailure::Fatal(e)),
        }
    }

    async fn finish_connect(
        conn: Connection,
        security: Security,
        session_key: Zeroizing<Vec<u8>>,
        max_xmit: u16,
    ) -> Result<Self, DrsError> {
        let mut client = Self {
            conn,
            security,
            kerberos_fallback: None,
            session_key,
            handle: ContextHandle::default(),
            server_extensions: ExtensionsInt::default(),
            max_xmit,
            call_id: 1,
            client_dsa: Uuid::new_v4(),
            attrs: AttributeSet::hash_sync()?,
        };
        client.drs_bind().await?;
        Ok(client)
    }

    /// The DC's `DRS_EXTENSIONS_INT` from `IDL_DRSBind`.
    pub fn server_extensions(&self) -> ExtensionsInt {
        self.server_extensions
    }

    async fn drs_bind(&mut self) -> Result<(), DrsError> {
        let ours = ExtensionsInt {
            flags: ext::BASE
                | ext::ASYNCREPL
                | ext::LINKED_VALUE_REPLICATION
                | ext::STRONG_ENCRYPTION
                | ext::POST_BETA3
                | ext::GETCHGREQ_V8
                | ext::GETCHGREPLY_V6,
            ..ExtensionsInt::default()
        };
        let stub = idl::encode_bind_request(NTDSAPI_CLIENT_GUID, &ours.to_extensions())?;
        let reply = match self.call(idl::OPNUM_BIND, stub).await {
            // Samba answers the first call after a failed auth3 with nca_s_proto_error.
            Err(CallError::Fault(status))
                if status.0 == win32::ERROR_ACCESS_DENIED || status == FaultStatus::PROTO_ERROR =>
            {
                return Err(DrsError::Authentication {
                    mechanism: self.mechanism(),
                    reason: format!(
                        "the DC refused the credentials (fault {status} on the first call)"
                    ),
                })
            }
            Err(CallError::Fault(status)) => {
                return Err(DrsError::Fault {
                    call: "IDL_DRSBind",
                    status,
                })
            }
            Err(CallError::Drs(e)) => return Err(e),
            Ok(stub) => stub,
        };
        let (server_ext, handle, status) = idl::decode_bind_reply(&reply)?;
        if status != 0 {
            return Err(DrsError::from_win32("IDL_DRSBind", "", status));
        }
        let server_ext = server_ext
            .ok_or_else(|| DrsError::Protocol("IDL_DRSBind returned no extensions".into()))?;
        self.server_extensions = ExtensionsInt::parse(&server_ext)?;
        let needed = ext::GETCHGREQ_V8 | ext::STRONG_ENCRYPTION;
        if self.server_extensions.flags & needed != needed {
            return Err(DrsError::Protocol(format!(
                "the DC lacks GetNCChanges V8 or strong encryption (extensions {:#010x})",
                self.server_extensions.flags
            )));
        }
        self.handle = handle;
        Ok(())
    }

    /// Replicates the naming context `nc_dn` (the domain's base DN) from `since` (or from the
    /// start), page by page; call [`Replication::next_page`] until it returns `None`.
    pub fn replicate_secrets(&mut self, nc_dn: &str, since: Option<&Watermark>) -> Replication<'_> {
        Replication {
            client: self,
            nc_dn: nc_dn.to_owned(),
            state: CycleState::start(since),
            limits: PageLimits::default(),
            done: false,
        }
    }

    /// `IDL_DRSUnbind`, then closes the connection.
    pub async fn unbind(mut self) -> Result<(), DrsError> {
        let stub = idl::encode_unbind_request(&self.handle)?;
        let reply = self
            .call(idl::OPNUM_UNBIND, stub)
            .await
            .map_err(|e| e.into_drs("IDL_DRSUnbind", ""))?;
        match idl::decode_unbind_reply(&reply)? {
            (_, 0) => Ok(()),
            (_, status) => Err(DrsError::from_win32("IDL_DRSUnbind", "", status)),
        }
    }

    async fn get_page(
        &mut self,
        nc_dn: &str,
        state: &mut CycleState,
        limits: PageLimits,
    ) -> Result<SecretsPage, DrsError> {
        let request = build_request(nc_dn, self.client_dsa, state, &self.attrs, limits)?;
        let reply = self.get_nc_changes(request, nc_dn).await?;
        process_reply(reply, state, &self.session_key)
    }

    /// Replicates the hash-sync attributes of one object, by objectGUID, with the extended
    /// operation `EXOP_REPL_OBJ`: the DC reads just that object, where a delta from a watermark
    /// makes it look for changes in the whole domain. The same rights as
    /// [`DrsClient::replicate_secrets`] are needed (checked on the object's naming context).
    /// A failure that concerns the object is [`DrsError::Object`] or
    /// [`DrsError::ExtendedOperation`]; see [`DrsError::connection_usable`].
    pub async fn replicate_object(
        &mut self,
        object: ObjectGuid,
    ) -> Result<ObjectSecrets, DrsError> {
        let request = build_object_request(object, self.client_dsa, &self.attrs)?;
        let target = format!("<GUID={object}>");
        let reply = self
            .get_nc_changes(request, &target)
            .await
            .map_err(|e| about_object(e, object))?;
        process_object_reply(reply, object, &self.session_key)
    }

    /// One `IDL_DRSGetNCChanges` call about `target` (a naming context or an object).
    async fn get_nc_changes(
        &mut self,
        request: GetNcChangesRequestV8,
        target: &str,
    ) -> Result<GetNcChangesReplyV6, DrsError> {
        const CALL: &str = "IDL_DRSGetNCChanges";
        let stub =
            idl::encode_get_nc_changes_request(&self.handle, &GetNcChangesRequest::V8(request))?;
        let reply = self
            .call(idl::OPNUM_GET_NC_CHANGES, stub)
            .await
            .map_err(|e| e.into_drs(CALL, target))?;
        // A failed call may leave the reply union unset: read the status first.
        let status = reply
            .last_chunk::<4>()
            .map(|b| u32::from_le_bytes(*b))
            .ok_or_else(|| DrsError::Protocol("empty DRSGetNCChanges reply".into()))?;
        if status != 0 {
            return Err(DrsError::from_win32(CALL, target, status));
        }
        let (GetNcChangesReply::V6(reply), _) = idl::decode_get_nc_changes_reply(&reply)?;
        Ok(reply)
    }

    /// One sealed request/response exchange.
    async fn call(&mut self, opnum: u16, stub: Vec<u8>) -> Result<Vec<u8>, CallError> {
        self.call_id = self.call_id.wrapping_add(1);
        let call_id = self.call_id;
        let body = PduBody::Request(Request {
            alloc_hint: 0,
            context_id: 0,
            opnum,
            object: None,
            stub,
        });
        let reserve = SEC_TRAILER_LEN + self.security.token_len();
        let auth_type = self.security.auth_type();
        for pdu in fragment(call_id, &body, self.max_xmit, reserve).map_err(DrsError::from)? {
            let bytes = encode_sealed(pdu, auth_type, AUTH_CONTEXT_ID, &mut self.security)
                .map_err(DrsError::from)?;
            self.conn.send_bytes(&bytes).await.map_err(DrsError::from)?;
        }
        let mut reassembler = Reassembler::new(MAX_REPLY);
        loop {
            let frame = self.conn.recv_frame().await.map_err(DrsError::from)?;
            let pdu =
                decode_sealed(frame, auth_type, &mut self.security).map_err(DrsError::from)?;
            if pdu.call_id != call_id {
                return Err(DrsError::Protocol(format!(
                    "reply for call {} while waiting for {call_id}",
                    pdu.call_id
                ))
                .into());
            }
            let Some(whole) = reassembler.push(pdu).map_err(DrsError::from)? else {
                continue;
            };
            return match whole.body {
                PduBody::Response(r) => Ok(r.stub),
                PduBody::Fault(f) => Err(CallError::Fault(f.status)),
                other => Err(DrsError::from(RpcError::Unexpected(format!(
                    "{:?} in answer to a request",
                    other.packet_type()
                )))
                .into()),
            };
        }
    }
}

/// What a failed Kerberos attempt leads to under `policy`: the reason to log before falling back
/// to NTLMv2, or the error to return. A KDC that refused the credentials ends the attempt: NTLM
/// would be refused too, and count one more bad password towards lockout.
fn after_kerberos_failure(policy: RpcAuth, failure: KerberosError) -> Result<String, DrsError> {
    match (policy, failure) {
        (RpcAuth::Negotiate, KerberosError::Unavailable(reason)) => Ok(reason),
        (_, KerberosError::Unavailable(reason) | KerberosError::Rejected(reason)) => {
            Err(DrsError::Authentication {
                mechanism: AuthMechanism::Kerberos,
                reason,
            })
        }
    }
}

/// The security context of a connection.
enum Security {
    Ntlm(Box<NtlmContext>),
    Kerberos(Box<KerberosContext>),
}

impl Security {
    fn auth_type(&self) -> AuthType {
        match self {
            Self::Ntlm(_) => AuthType::NTLMSSP,
            Self::Kerberos(_) => AuthType::KERBEROS,
        }
    }
}

impl PduProtection for Security {
    fn token_len(&self) -> usize {
        match self {
            Self::Ntlm(c) => c.token_len(),
            Self::Kerberos(c) => c.token_len(),
        }
    }

    fn seal(&mut self, pdu: &mut [u8], regions: &AuthRegions) -> Result<(), RpcError> {
        match self {
            Self::Ntlm(c) => c.seal(pdu, regions),
            Self::Kerberos(c) => c.seal(pdu, regions),
        }
    }

    fn unseal(&mut self, pdu: &mut [u8], regions: &AuthRegions) -> Result<(), RpcError> {
        match self {
            Self::Ntlm(c) => c.unseal(pdu, regions),
            Self::Kerberos(c) => c.unseal(pdu, regions),
        }
    }
}

/// Why a Kerberos connection was not made.
enum KerberosFailure {
    /// Kerberos itself failed; see [`KerberosError`] for which failures NTLM may survive.
    Kerberos(KerberosError),
    /// Anything else (the DC unreachable, a broken reply): NTLM would not fare better.
    Fatal(DrsError),
}

/// A call's failure before its stub is interpreted.
enum CallError {
    Fault(FaultStatus),
    Drs(DrsError),
}

impl From<DrsError> for CallError {
    fn from(e: DrsError) -> Self {
        Self::Drs(e)
    }
}

impl CallError {
    fn into_drs(self, call: &'static str, nc: &str) -> DrsError {
        match self {
            Self::Fault(status) => DrsError::from_fault(call, nc, status),
            Self::Drs(e) => e,
        }
    }
}

/// The bind that opens every connection to DRSUAPI.
fn drsuapi_bind() -> Bind {
    Bind {
        max_xmit_frag: MAX_FRAG,
        max_recv_frag: MAX_FRAG,
        assoc_group_id: 0,
        contexts: vec![PresentationContext {
            context_id: 0,
            abstract_syntax: DRSUAPI,
            transfer_syntaxes: vec![NDR20],
        }],
    }
}

fn verifier(auth_type: AuthType, token: Vec<u8>) -> AuthVerifier {
    AuthVerifier {
        auth_type,
        auth_level: AuthLevel::PKT_PRIVACY,
        pad_length: 0,
        context_id: AUTH_CONTEXT_ID,
        token,
    }
}

/// The DC's DNS host name, for the default SPN: a bind with an NTLM NEGOTIATE (no secret in it),
/// whose CHALLENGE names the server; the connection is then dropped.
async fn discover_dc_name(addr: SocketAddr, creds: &Credentials) -> Result<String, String> {
    let why = |e: &dyn fmt::Display| format!("cannot learn the DC's DNS name for the SPN: {e}");
    let mut conn = Connection::connect(addr).await.map_err(|e| why(&e))?;
    let mut ntlm = NtlmContext::new(&creds.username, &creds.password).map_err(|e| why(&e))?;
    let negotiate = ntlm.step(None).map_err(|e| why(&e))?;
    let pdu = Pdu {
        call_id: 1,
        flags: pfc::SINGLE_FRAG,
        body: PduBody::Bind(drsuapi_bind()),
        auth: Some(verifier(AuthType::NTLMSSP, negotiate)),
    };
    conn.send(&pdu).await.map_err(|e| why(&e))?;
    let reply = conn.recv().await.map_err(|e| why(&e))?;
    reply
        .auth
        .and_then(|auth| challenge_dns_computer_name(&auth.token))
        .map(|name| name.to_ascii_lowercase())
        .ok_or_else(|| why(&"the DC's NTLM challenge names no DNS host; set the SPN"))
}

/// Checks a bind_ack: the presentation context accepted.
fn check_ack(ack: &BindAck) -> Result<(), String> {
    match ack.results.first() {
        Some(r) if r.result == ContextResultCode::ACCEPTANCE => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// bind (AP-REQ) -> bind_ack (AP-REP) -> auth3 (the client's AP-REP), offering header signing;
/// returns the fragment size to send with.
async fn kerberos_bind(
    conn: &mut Connection,
    kerberos: &mut KerberosContext,
) -> Result<u16, KerberosFailure> {
    let unavailable = |m: String| KerberosFailure::Kerberos(KerberosError::Unavailable(m));
    let ap_req = kerberos
        .step(None)
        .await
        .map_err(KerberosFailure::Kerberos)?;
    let pdu = Pdu {
        call_id: 1,
        flags: pfc::SINGLE_FRAG | pfc::SUPPORT_HEADER_SIGN,
        body: PduBody::Bind(drsuapi_bind()),
        auth: Some(verifier(AuthType::KERBEROS, ap_req)),
    };
    conn.send(&pdu)
        .await
        .map_err(|e| KerberosFailure::Fatal(e.into()))?;
    let reply = conn
        .recv()
        .await
        .map_err(|e| unavailable(format!("the DC answered a Kerberos bind with: {e}")))?;
    let header_signing = reply.flags & pfc::SUPPORT_HEADER_SIGN != 0;
    let (ack, ap_rep) = match (reply.body, reply.auth) {
        (PduBody::BindAck(ack), Some(auth)) if auth.auth_type == AuthType::KERBEROS => {
            (ack, auth.token)
        }
        (PduBody::BindAck(_), _) => {
            return Err(unavailable(
                "the DC's bind_ack carries no Kerberos AP-REP".into(),
            ))
        }
        (PduBody::BindNak(nak), _) => {
            return Err(unavailable(format!(
                "the DC refused a Kerberos bind (bind_nak reason {})",
                nak.reject_reason
            )))
        }
        (other, _) => {
            return Err(unavailable(format!(
                "the DC answered a Kerberos bind with {:?}",
                other.packet_type()
            )))
        }
    };
    check_ack(&ack).map_err(|e| KerberosFailure::Fatal(DrsError::BindRejected(e)))?;
    // Checks the DC's AP-REP (mutual authentication) and answers it.
    let own_ap_rep = kerberos
        .step(Some(&ap_rep))
        .await
        .map_err(KerberosFailure::Kerberos)?;
    let auth3 = Pdu {
        call_id: 1,
        flags: pfc::SINGLE_FRAG,
        body: PduBody::Auth3,
        auth: Some(verifier(AuthType::KERBEROS, own_ap_rep)),
    };
    conn.send(&auth3)
        .await
        .map_err(|e| KerberosFailure::Fatal(e.into()))?;
    kerberos
        .finish(header_signing)
        .map_err(KerberosFailure::Kerberos)?;
    Ok(ack.max_recv_frag.clamp(1024, MAX_FRAG))
}

/// bind (NEGOTIATE) -> bind_ack (CHALLENGE) -> auth3 (AUTHENTICATE); returns the fragment
/// size to send with.
async fn authenticated_bind(
    conn: &mut Connection,
    ntlm: &mut NtlmContext,
) -> Result<u16, DrsError> {
    let pdu = Pdu {
        call_id: 1,
        flags: pfc::SINGLE_FRAG,
        body: PduBody::Bind(drsuapi_bind()),
        auth: Some(verifier(AuthType::NTLMSSP, ntlm.step(None)?)),
    };
    conn.send(&pdu).await?;
    let reply = conn.recv().await?;
    let (ack, challenge) = match (reply.body, reply.auth) {
        (PduBody::BindAck(ack), Some(auth)) => (ack, auth.token),
        (PduBody::BindAck(_), None) => {
            return Err(DrsError::Authentication {
                mechanism: AuthMechanism::Ntlm,
                reason: "bind_ack carries no NTLM challenge".into(),
            })
        }
        (PduBody::BindNak(nak), _) => {
            return Err(DrsError::BindRejected(format!(
                "bind_nak reason {}",
                nak.reject_reason
            )))
        }
        (other, _) => {
            return Err(RpcError::Unexpected(format!("{:?} to bind", other.packet_type())).into())
        }
    };
    check_ack(&ack).map_err(DrsError::BindRejected)?;
    let authenticate = ntlm.step(Some(&challenge))?;
    let auth3 = Pdu {
        call_id: 1,
        flags: pfc::SINGLE_FRAG,
        body: PduBody::Auth3,
        auth: Some(verifier(AuthType::NTLMSSP, authenticate)),
    };
    conn.send(&auth3).await?;
    Ok(ack.max_recv_frag.clamp(1024, MAX_FRAG))
}

/// A replication cycle in progress.
pub struct Replication<'a> {
    client: &'a mut DrsClient,
    nc_dn: String,
    state: CycleState,
    limits: PageLimits,
    done: bool,
}

impl fmt::Debug for Replication<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replication")
            .field("nc_dn", &self.nc_dn)
            .field("state", &self.state)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Replication<'_> {
    /// Caps the objects per page (the DC may send somewhat fewer or, with ancestors, more).
    pub fn with_max_objects(mut self, max_objects: u32) -> Self {
        self.limits.max_objects = max_objects.max(1);
        self
    }

    /// The next page, or `None` once the cycle is complete. The last page's watermark is the
    /// one to persist for the next delta.
    pub async fn next_page(&mut self) -> Result<Option<SecretsPage>, DrsError> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .client
            .get_page(&self.nc_dn, &mut self.state, self.limits)
            .await;
        // An error ends the cycle: the state may be half-advanced.
        self.done = page.as_ref().map_or(true, |p| !p.more_data);
        page.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiate_falls_back_only_when_kerberos_is_unusable() {
        let unavailable = || KerberosError::Unavailable("the KDC is unreachable".into());
        let rejected = || KerberosError::Rejected("wrong password".into());
        assert_eq!(
            after_kerberos_failure(RpcAuth::Negotiate, unavailable()).unwrap(),
            "the KDC is unreachable"
        );
        for (policy, failure) in [
            (RpcAuth::Negotiate, rejected()),
            (RpcAuth::Kerberos, rejected()),
            (RpcAuth::Kerberos, unavailable()),
        ] {
            let e = after_kerberos_failure(policy, failure).unwrap_err();
            assert!(
                matches!(
                    e,
                    DrsError::Authentication {
                        mechanism: AuthMechanism::Kerberos,
                        ..
                    }
                ),
                "{e:?}"
            );
            assert!(
                e.to_string()
                    .starts_with("Kerberos authentication failed: "),
                "{e}"
            );
        }
    }

    #[test]
    fn the_default_is_negotiate_with_everything_derived() {
        let options = AuthOptions::default();
        assert_eq!(options.mechanism, RpcAuth::Negotiate);
        assert_eq!(
            (options.realm, options.kdc, options.spn),
            (None, None, None)
        );
    }

    #[test]
    fn connecting_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let creds = Credentials::new("svc@corp.example.com", "pw");
        let options = AuthOptions::default();
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let connecting = DrsClient::connect_to_with(addr, &creds, &options);
        assert_send(&connecting);
    }
}
