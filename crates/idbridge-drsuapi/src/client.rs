//! The tokio edge: a DRSUAPI connection sealed with NTLMv2. Protocol decisions are delegated to
//! the pure modules ([`crate::idl`], [`crate::replicate`], [`crate::crypto`]).

use core::fmt;
use std::net::{IpAddr, SocketAddr};

use idbridge_ndr::ContextHandle;
use idbridge_rpc::client::{ept_map_tcp_port, Connection};
use idbridge_rpc::{
    decode_sealed, encode_sealed, fragment, pfc, AuthLevel, AuthType, AuthVerifier, Bind,
    ContextResultCode, FaultStatus, Pdu, PduBody, PresentationContext, Reassembler, Request,
    RpcError, DRSUAPI, EPM_PORT, NDR20, SEC_TRAILER_LEN,
};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::error::{win32, DrsError};
use crate::idl::{
    self, ext, ExtensionsInt, GetNcChangesReply, GetNcChangesRequest, NTDSAPI_CLIENT_GUID,
};
use crate::ntlm::NtlmContext;
use crate::replicate::{
    build_request, process_reply, AttributeSet, CycleState, PageLimits, SecretsPage, Watermark,
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

/// A bound DRSUAPI session with a DC.
pub struct DrsClient {
    conn: Connection,
    ntlm: NtlmContext,
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
    /// Asks the endpoint mapper on `host`:135 for the DRSUAPI port, then binds there.
    pub async fn connect(host: IpAddr, creds: &Credentials) -> Result<Self, DrsError> {
        let port = ept_map_tcp_port(SocketAddr::new(host, EPM_PORT), DRSUAPI).await?;
        Self::connect_to(SocketAddr::new(host, port), creds).await
    }

    /// Binds to DRSUAPI at a known address: NTLMv2 at packet privacy, then `IDL_DRSBind`.
    pub async fn connect_to(addr: SocketAddr, creds: &Credentials) -> Result<Self, DrsError> {
        let mut conn = Connection::connect(addr).await.map_err(DrsError::from)?;
        let mut ntlm = NtlmContext::new(&creds.username, &creds.password)?;
        let max_xmit = authenticated_bind(&mut conn, &mut ntlm).await?;
        let session_key = ntlm.session_key()?;
        let mut client = Self {
            conn,
            ntlm,
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
                return Err(DrsError::Authentication(format!(
                    "the DC refused the credentials (fault {status} on the first call)"
                )))
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
        const CALL: &str = "IDL_DRSGetNCChanges";
        let request = build_request(nc_dn, self.client_dsa, state, &self.attrs, limits)?;
        let stub =
            idl::encode_get_nc_changes_request(&self.handle, &GetNcChangesRequest::V8(request))?;
        let reply = self
            .call(idl::OPNUM_GET_NC_CHANGES, stub)
            .await
            .map_err(|e| e.into_drs(CALL, nc_dn))?;
        // A failed call may leave the reply union unset: read the status first.
        let status = reply
            .last_chunk::<4>()
            .map(|b| u32::from_le_bytes(*b))
            .ok_or_else(|| DrsError::Protocol("empty DRSGetNCChanges reply".into()))?;
        if status != 0 {
            return Err(DrsError::from_win32(CALL, nc_dn, status));
        }
        let (GetNcChangesReply::V6(reply), _) = idl::decode_get_nc_changes_reply(&reply)?;
        process_reply(reply, state, &self.session_key)
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
        let reserve = SEC_TRAILER_LEN + 16;
        for pdu in fragment(call_id, &body, self.max_xmit, reserve).map_err(DrsError::from)? {
            let bytes = encode_sealed(pdu, AuthType::NTLMSSP, AUTH_CONTEXT_ID, &mut self.ntlm)
                .map_err(DrsError::from)?;
            self.conn.send_bytes(&bytes).await.map_err(DrsError::from)?;
        }
        let mut reassembler = Reassembler::new(MAX_REPLY);
        loop {
            let frame = self.conn.recv_frame().await.map_err(DrsError::from)?;
            let pdu =
                decode_sealed(frame, AuthType::NTLMSSP, &mut self.ntlm).map_err(DrsError::from)?;
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

/// bind (NEGOTIATE) -> bind_ack (CHALLENGE) -> auth3 (AUTHENTICATE); returns the fragment
/// size to send with.
async fn authenticated_bind(
    conn: &mut Connection,
    ntlm: &mut NtlmContext,
) -> Result<u16, DrsError> {
    let verifier = |token| AuthVerifier {
        auth_type: AuthType::NTLMSSP,
        auth_level: AuthLevel::PKT_PRIVACY,
        pad_length: 0,
        context_id: AUTH_CONTEXT_ID,
        token,
    };
    let bind = Bind {
        max_xmit_frag: MAX_FRAG,
        max_recv_frag: MAX_FRAG,
        assoc_group_id: 0,
        contexts: vec![PresentationContext {
            context_id: 0,
            abstract_syntax: DRSUAPI,
            transfer_syntaxes: vec![NDR20],
        }],
    };
    let pdu = Pdu {
        call_id: 1,
        flags: pfc::SINGLE_FRAG,
        body: PduBody::Bind(bind),
        auth: Some(verifier(ntlm.step(None)?)),
    };
    conn.send(&pdu).await?;
    let reply = conn.recv().await?;
    let (ack, challenge) = match (reply.body, reply.auth) {
        (PduBody::BindAck(ack), Some(auth)) => (ack, auth.token),
        (PduBody::BindAck(_), None) => {
            return Err(DrsError::Authentication(
                "bind_ack carries no NTLM challenge".into(),
            ))
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
    match ack.results.first() {
        Some(r) if r.result == ContextResultCode::ACCEPTANCE => {}
        other => return Err(DrsError::BindRejected(format!("{other:?}"))),
    }
    let authenticate = ntlm.step(Some(&challenge))?;
    let auth3 = Pdu {
        call_id: 1,
        flags: pfc::SINGLE_FRAG,
        body: PduBody::Auth3,
        auth: Some(verifier(authenticate)),
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
