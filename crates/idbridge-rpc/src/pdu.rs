//! Connection-oriented PDUs (C706 12.6, MS-RPCE 2.2.2): the common header and every body.

use core::fmt;
use core::ops::Range;

use idbridge_ndr::{ndr_struct, NdrDecoder, NdrEncoder};
use uuid::Uuid;

use crate::auth::{AuthLevel, AuthType, AuthVerifier, SEC_TRAILER_LEN};
use crate::error::RpcError;

pub const RPC_VERSION_MAJOR: u8 = 5;
pub const RPC_VERSION_MINOR: u8 = 0;
/// Size of the common header.
pub const HEADER_LEN: usize = 16;
/// Little-endian integers, ASCII characters, IEEE floats: what this crate writes.
pub const DREP_LE: [u8; 4] = [0x10, 0, 0, 0];

/// `pfc_flags` bits.
pub mod pfc {
    pub const FIRST_FRAG: u8 = 0x01;
    pub const LAST_FRAG: u8 = 0x02;
    /// In request/response PDUs: a cancel is pending.
    pub const PENDING_CANCEL: u8 = 0x04;
    /// Same bit, in bind/alter_context PDUs: header signing is supported (MS-RPCE 2.2.2.3).
    pub const SUPPORT_HEADER_SIGN: u8 = 0x04;
    pub const CONC_MPX: u8 = 0x10;
    pub const DID_NOT_EXECUTE: u8 = 0x20;
    pub const MAYBE: u8 = 0x40;
    pub const OBJECT_UUID: u8 = 0x80;
    /// A PDU that is a whole call by itself.
    pub const SINGLE_FRAG: u8 = FIRST_FRAG | LAST_FRAG;
}

/// `PTYPE` of the connection-oriented PDUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    Request = 0,
    Response = 2,
    Fault = 3,
    Bind = 11,
    BindAck = 12,
    BindNak = 13,
    AlterContext = 14,
    AlterContextResp = 15,
    Auth3 = 16,
    Shutdown = 17,
    CoCancel = 18,
    Orphaned = 19,
}

impl TryFrom<u8> for PacketType {
    type Error = RpcError;

    fn try_from(v: u8) -> Result<Self, RpcError> {
        Ok(match v {
            0 => Self::Request,
            2 => Self::Response,
            3 => Self::Fault,
            11 => Self::Bind,
            12 => Self::BindAck,
            13 => Self::BindNak,
            14 => Self::AlterContext,
            15 => Self::AlterContextResp,
            16 => Self::Auth3,
            17 => Self::Shutdown,
            18 => Self::CoCancel,
            19 => Self::Orphaned,
            other => return Err(RpcError::UnknownPacketType(other)),
        })
    }
}

/// The common 16-byte header, as found on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PduHeader {
    pub ptype: PacketType,
    pub flags: u8,
    pub drep: [u8; 4],
    pub frag_length: u16,
    pub auth_length: u16,
    pub call_id: u32,
}

impl PduHeader {
    /// Parses the header at the start of `buf`; [`RpcError::Incomplete`] if fewer than 16 bytes.
    pub fn decode(buf: &[u8]) -> Result<Self, RpcError> {
        let (Some(&[major, minor, ptype, flags, d0, d1, d2, d3]), true) =
            (buf.first_chunk::<8>(), buf.len() >= HEADER_LEN)
        else {
            return Err(RpcError::Incomplete {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        };
        if major != RPC_VERSION_MAJOR || minor > 1 {
            return Err(RpcError::Version { major, minor });
        }
        let ptype = PacketType::try_from(ptype)?;
        let drep = [d0, d1, d2, d3];
        let mut dec = NdrDecoder::with_drep(buf, drep)?;
        dec.read_bytes(8)?;
        let frag_length = dec.read_u16()?;
        let auth_length = dec.read_u16()?;
        let call_id = dec.read_u32()?;
        Ok(Self {
            ptype,
            flags,
            drep,
            frag_length,
            auth_length,
            call_id,
        })
    }
}

ndr_struct! {
    /// `p_syntax_id_t`: an interface or transfer syntax and its version. The `u32` version is
    /// `major | minor << 16`, i.e. two little-endian `u16`s in this order.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct SyntaxId {
        uuid: Uuid,
        major: u16,
        minor: u16,
    }
}

impl SyntaxId {
    pub const fn new(uuid: Uuid, major: u16, minor: u16) -> Self {
        Self { uuid, major, minor }
    }
}

/// The NDR20 transfer syntax.
pub const NDR20: SyntaxId = SyntaxId::new(idbridge_ndr::NDR20_SYNTAX, 2, 0);

/// `p_cont_elem_t`: one presentation context proposed in a bind or alter_context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentationContext {
    pub context_id: u16,
    pub abstract_syntax: SyntaxId,
    pub transfer_syntaxes: Vec<SyntaxId>,
}

/// Body of bind and alter_context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub max_xmit_frag: u16,
    pub max_recv_frag: u16,
    /// 0 asks the server for a new association group.
    pub assoc_group_id: u32,
    pub contexts: Vec<PresentationContext>,
}

/// `p_cont_def_result_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContextResultCode(pub u16);

impl ContextResultCode {
    pub const ACCEPTANCE: Self = Self(0);
    pub const USER_REJECTION: Self = Self(1);
    pub const PROVIDER_REJECTION: Self = Self(2);
    /// Bind-time feature negotiation answer (MS-RPCE 3.3.1.5.3).
    pub const NEGOTIATE_ACK: Self = Self(3);
}

/// `p_result_t`: the server's answer to one proposed presentation context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextResult {
    pub result: ContextResultCode,
    /// `p_provider_reason_t` (e.g. 1 = abstract syntax not supported), 0 when accepted.
    pub reason: u16,
    pub transfer_syntax: SyntaxId,
}

/// Body of bind_ack and alter_context_resp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindAck {
    pub max_xmit_frag: u16,
    pub max_recv_frag: u16,
    pub assoc_group_id: u32,
    /// `sec_addr`: the server's port as a string, without its NUL (empty in alter_context_resp).
    pub secondary_address: String,
    pub results: Vec<ContextResult>,
}

/// Body of bind_nak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindNak {
    pub reject_reason: u16,
    /// Supported protocol versions (major, minor).
    pub versions: Vec<(u8, u8)>,
}

/// Body of a request PDU (one fragment's worth of stub, or a reassembled call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Total stub bytes of the call from this fragment on, a hint for the receiver.
    pub alloc_hint: u32,
    pub context_id: u16,
    pub opnum: u16,
    /// Present iff `PFC_OBJECT_UUID` is set; [`Pdu::encode`] sets the flag from it.
    pub object: Option<Uuid>,
    pub stub: Vec<u8>,
}

/// Body of a response PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub alloc_hint: u32,
    pub context_id: u16,
    pub cancel_count: u8,
    pub stub: Vec<u8>,
}

/// `status` of a fault PDU: an open set of NCA and Win32 codes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultStatus(pub u32);

impl FaultStatus {
    pub const ACCESS_DENIED: Self = Self(0x0000_0005);
    pub const CANT_PERFORM: Self = Self(0x0000_06d8);
    /// `nca_s_fault_ndr` / `RPC_X_BAD_STUB_DATA`: the server could not unmarshal the stub.
    pub const NDR: Self = Self(0x0000_06f7);
    pub const SEC_PKG_ERROR: Self = Self(0x0000_0721);
    pub const INT_DIV_BY_ZERO: Self = Self(0x1c00_0001);
    pub const ADDR_ERROR: Self = Self(0x1c00_0002);
    pub const INVALID_TAG: Self = Self(0x1c00_0006);
    pub const INVALID_BOUND: Self = Self(0x1c00_0007);
    pub const RPC_VERSION_MISMATCH: Self = Self(0x1c00_0008);
    pub const UNSPEC_REJECT: Self = Self(0x1c00_0009);
    pub const BAD_ACTID: Self = Self(0x1c00_000a);
    pub const CANCEL: Self = Self(0x1c00_000d);
    pub const UNSPEC: Self = Self(0x1c00_0012);
    pub const REMOTE_COMM_FAILURE: Self = Self(0x1c00_0013);
    pub const CONTEXT_MISMATCH: Self = Self(0x1c00_001a);
    pub const REMOTE_NO_MEMORY: Self = Self(0x1c00_001b);
    /// `nca_s_op_rng_error`: opnum out of range for the interface.
    pub const OP_RNG_ERROR: Self = Self(0x1c01_0002);
    /// `nca_s_unk_if`: unknown interface.
    pub const UNK_IF: Self = Self(0x1c01_0003);
    pub const PROTO_ERROR: Self = Self(0x1c01_000b);
    pub const OUT_ARGS_TOO_BIG: Self = Self(0x1c01_0013);
    pub const SERVER_TOO_BUSY: Self = Self(0x1c01_0014);
    pub const UNSUPPORTED_TYPE: Self = Self(0x1c01_0017);

    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::ACCESS_DENIED => "access denied",
            Self::CANT_PERFORM => "cannot perform",
            Self::NDR => "nca_s_fault_ndr (bad stub data)",
            Self::SEC_PKG_ERROR => "security package error",
            Self::INT_DIV_BY_ZERO => "nca_s_fault_int_div_by_zero",
            Self::ADDR_ERROR => "nca_s_fault_addr_error",
            Self::INVALID_TAG => "nca_s_fault_invalid_tag",
            Self::INVALID_BOUND => "nca_s_fault_invalid_bound",
            Self::RPC_VERSION_MISMATCH => "nca_s_rpc_version_mismatch",
            Self::UNSPEC_REJECT => "nca_s_unspec_reject",
            Self::BAD_ACTID => "nca_s_bad_actid",
            Self::CANCEL => "nca_s_fault_cancel",
            Self::UNSPEC => "nca_s_fault_unspec",
            Self::REMOTE_COMM_FAILURE => "nca_s_fault_remote_comm_failure",
            Self::CONTEXT_MISMATCH => "nca_s_fault_context_mismatch",
            Self::REMOTE_NO_MEMORY => "nca_s_fault_remote_no_memory",
            Self::OP_RNG_ERROR => "nca_s_op_rng_error",
            Self::UNK_IF => "nca_s_unk_if",
            Self::PROTO_ERROR => "nca_s_proto_error",
            Self::OUT_ARGS_TOO_BIG => "nca_s_out_args_too_big",
            Self::SERVER_TOO_BUSY => "nca_s_server_too_busy",
            Self::UNSUPPORTED_TYPE => "nca_s_unsupported_type",
            _ => return None,
        })
    }
}

impl fmt::Debug for FaultStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for FaultStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{:#010x} ({name})", self.0),
            None => write!(f, "{:#010x}", self.0),
        }
    }
}

/// Body of a fault PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub alloc_hint: u32,
    pub context_id: u16,
    pub cancel_count: u8,
    /// MS-RPCE 2.2.2.13 `reserved`/flags octet (0x01: extended error info present).
    pub flags: u8,
    pub status: FaultStatus,
    pub stub: Vec<u8>,
}

/// Every connection-oriented PDU body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PduBody {
    Request(Request),
    Response(Response),
    Fault(Fault),
    Bind(Bind),
    BindAck(BindAck),
    BindNak(BindNak),
    AlterContext(Bind),
    AlterContextResp(BindAck),
    /// Third leg of a three-way authentication; the token is in the PDU's verifier.
    Auth3,
    Shutdown,
    CoCancel,
    Orphaned,
}

impl PduBody {
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Request(_) => PacketType::Request,
            Self::Response(_) => PacketType::Response,
            Self::Fault(_) => PacketType::Fault,
            Self::Bind(_) => PacketType::Bind,
            Self::BindAck(_) => PacketType::BindAck,
            Self::BindNak(_) => PacketType::BindNak,
            Self::AlterContext(_) => PacketType::AlterContext,
            Self::AlterContextResp(_) => PacketType::AlterContextResp,
            Self::Auth3 => PacketType::Auth3,
            Self::Shutdown => PacketType::Shutdown,
            Self::CoCancel => PacketType::CoCancel,
            Self::Orphaned => PacketType::Orphaned,
        }
    }

    fn encode(&self, enc: &mut NdrEncoder) -> Result<(), RpcError> {
        match self {
            Self::Request(r) => {
                enc.write_u32(r.alloc_hint);
                enc.write_u16(r.context_id);
                enc.write_u16(r.opnum);
                if let Some(object) = &r.object {
                    enc.encode(object)?;
                }
                enc.write_bytes(&r.stub);
            }
            Self::Response(r) => {
                enc.write_u32(r.alloc_hint);
                enc.write_u16(r.context_id);
                enc.write_u8(r.cancel_count);
                enc.write_u8(0);
                enc.write_bytes(&r.stub);
            }
            Self::Fault(f) => {
                enc.write_u32(f.alloc_hint);
                enc.write_u16(f.context_id);
                enc.write_u8(f.cancel_count);
                enc.write_u8(f.flags);
                enc.write_u32(f.status.0);
                enc.write_u32(0);
                enc.write_bytes(&f.stub);
            }
            Self::Bind(b) | Self::AlterContext(b) => encode_bind(b, enc)?,
            Self::BindAck(a) | Self::AlterContextResp(a) => encode_bind_ack(a, enc)?,
            Self::BindNak(n) => {
                enc.write_u16(n.reject_reason);
                enc.write_u8(count_u8("bind_nak versions", n.versions.len())?);
                for &(major, minor) in &n.versions {
                    enc.write_u8(major);
                    enc.write_u8(minor);
                }
            }
            // MS-RPCE 2.2.2.10: four octets of padding precede the trailer.
            Self::Auth3 => enc.write_u32(0),
            Self::Shutdown | Self::CoCancel | Self::Orphaned => {}
        }
        Ok(())
    }

    /// Decodes the body of a PDU of type `ptype`; `dec` is positioned just after the header
    /// and ends where the auth padding (if any) starts.
    fn decode(ptype: PacketType, flags: u8, dec: &mut NdrDecoder<'_>) -> Result<Self, RpcError> {
        Ok(match ptype {
            PacketType::Request => {
                let alloc_hint = dec.read_u32()?;
                let context_id = dec.read_u16()?;
                let opnum = dec.read_u16()?;
                let object = if flags & pfc::OBJECT_UUID != 0 {
                    Some(dec.decode::<Uuid>()?)
                } else {
                    None
                };
                Self::Request(Request {
                    alloc_hint,
                    context_id,
                    opnum,
                    object,
                    stub: rest(dec)?,
                })
            }
            PacketType::Response => {
                let alloc_hint = dec.read_u32()?;
                let context_id = dec.read_u16()?;
                let cancel_count = dec.read_u8()?;
                dec.read_u8()?;
                Self::Response(Response {
                    alloc_hint,
                    context_id,
                    cancel_count,
                    stub: rest(dec)?,
                })
            }
            PacketType::Fault => {
                let alloc_hint = dec.read_u32()?;
                let context_id = dec.read_u16()?;
                let cancel_count = dec.read_u8()?;
                let flags = dec.read_u8()?;
                let status = FaultStatus(dec.read_u32()?);
                // Lenient: accept a fault that ends right after `status`.
                if dec.remaining() >= 4 {
                    dec.read_u32()?;
                }
                Self::Fault(Fault {
                    alloc_hint,
                    context_id,
                    cancel_count,
                    flags,
                    status,
                    stub: rest(dec)?,
                })
            }
            PacketType::Bind => Self::Bind(decode_bind(dec)?),
            PacketType::AlterContext => Self::AlterContext(decode_bind(dec)?),
            PacketType::BindAck => Self::BindAck(decode_bind_ack(dec)?),
            PacketType::AlterContextResp => Self::AlterContextResp(decode_bind_ack(dec)?),
            PacketType::BindNak => {
                let reject_reason = dec.read_u16()?;
                let versions = if dec.remaining() == 0 {
                    Vec::new()
                } else {
                    let n = dec.read_u8()?;
                    (0..n)
                        .map(|_| Ok((dec.read_u8()?, dec.read_u8()?)))
                        .collect::<Result<_, RpcError>>()?
                };
                Self::BindNak(BindNak {
                    reject_reason,
                    versions,
                })
            }
            PacketType::Auth3 => Self::Auth3,
            PacketType::Shutdown => Self::Shutdown,
            PacketType::CoCancel => Self::CoCancel,
            PacketType::Orphaned => Self::Orphaned,
        })
    }
}

fn count_u8(what: &'static str, len: usize) -> Result<u8, RpcError> {
    u8::try_from(len).map_err(|_| RpcError::TooLarge {
        what,
        len,
        max: usize::from(u8::MAX),
    })
}

fn rest(dec: &mut NdrDecoder<'_>) -> Result<Vec<u8>, RpcError> {
    Ok(dec.read_bytes(dec.remaining())?.to_vec())
}

fn encode_bind(b: &Bind, enc: &mut NdrEncoder) -> Result<(), RpcError> {
    enc.write_u16(b.max_xmit_frag);
    enc.write_u16(b.max_recv_frag);
    enc.write_u32(b.assoc_group_id);
    enc.write_u8(count_u8("presentation contexts", b.contexts.len())?);
    enc.write_u8(0);
    enc.write_u16(0);
    for ctx in &b.contexts {
        enc.write_u16(ctx.context_id);
        let n = count_u8("transfer syntaxes", ctx.transfer_syntaxes.len())?;
        enc.write_u8(n);
        enc.write_u8(0);
        enc.encode(&ctx.abstract_syntax)?;
        ctx.transfer_syntaxes
            .iter()
            .try_for_each(|ts| enc.encode(ts))?;
    }
    Ok(())
}

fn decode_bind(dec: &mut NdrDecoder<'_>) -> Result<Bind, RpcError> {
    let max_xmit_frag = dec.read_u16()?;
    let max_recv_frag = dec.read_u16()?;
    let assoc_group_id = dec.read_u32()?;
    let n_contexts = dec.read_u8()?;
    dec.read_u8()?;
    dec.read_u16()?;
    // Counts are single octets, so these loops are bounded by 255 and by the input.
    let contexts = (0..n_contexts)
        .map(|_| {
            let context_id = dec.read_u16()?;
            let n_transfer = dec.read_u8()?;
            dec.read_u8()?;
            let abstract_syntax = dec.decode()?;
            let transfer_syntaxes = (0..n_transfer)
                .map(|_| dec.decode())
                .collect::<Result<_, _>>()?;
            Ok(PresentationContext {
                context_id,
                abstract_syntax,
                transfer_syntaxes,
            })
        })
        .collect::<Result<_, RpcError>>()?;
    Ok(Bind {
        max_xmit_frag,
        max_recv_frag,
        assoc_group_id,
        contexts,
    })
}

fn encode_bind_ack(a: &BindAck, enc: &mut NdrEncoder) -> Result<(), RpcError> {
    enc.write_u16(a.max_xmit_frag);
    enc.write_u16(a.max_recv_frag);
    enc.write_u32(a.assoc_group_id);
    // `port_any_t`: length including the NUL; an empty address is sent as length 0.
    if a.secondary_address.is_empty() {
        enc.write_u16(0);
    } else {
        let len = a.secondary_address.len() + 1;
        let len = u16::try_from(len).map_err(|_| RpcError::TooLarge {
            what: "secondary address",
            len,
            max: usize::from(u16::MAX),
        })?;
        enc.write_u16(len);
        enc.write_bytes(a.secondary_address.as_bytes());
        enc.write_u8(0);
    }
    enc.align(4);
    enc.write_u8(count_u8("context results", a.results.len())?);
    enc.write_u8(0);
    enc.write_u16(0);
    for r in &a.results {
        enc.write_u16(r.result.0);
        enc.write_u16(r.reason);
        enc.encode(&r.transfer_syntax)?;
    }
    Ok(())
}

fn decode_bind_ack(dec: &mut NdrDecoder<'_>) -> Result<BindAck, RpcError> {
    let max_xmit_frag = dec.read_u16()?;
    let max_recv_frag = dec.read_u16()?;
    let assoc_group_id = dec.read_u32()?;
    let addr_len = usize::from(dec.read_u16()?);
    let addr = dec.read_bytes(addr_len)?;
    let addr = addr.strip_suffix(&[0]).unwrap_or(addr);
    let secondary_address = String::from_utf8_lossy(addr).into_owned();
    dec.align(4)?;
    let n_results = dec.read_u8()?;
    dec.read_u8()?;
    dec.read_u16()?;
    let results = (0..n_results)
        .map(|_| {
            Ok(ContextResult {
                result: ContextResultCode(dec.read_u16()?),
                reason: dec.read_u16()?,
                transfer_syntax: dec.decode()?,
            })
        })
        .collect::<Result<_, RpcError>>()?;
    Ok(BindAck {
        max_xmit_frag,
        max_recv_frag,
        assoc_group_id,
        secondary_address,
        results,
    })
}

/// A whole PDU: header fields that are not derived from the body, the body, and the optional
/// authentication verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    pub call_id: u32,
    /// `pfc_flags`; in a request, `PFC_OBJECT_UUID` is derived from [`Request::object`] when
    /// encoding.
    pub flags: u8,
    pub body: PduBody,
    pub auth: Option<AuthVerifier>,
}

impl Pdu {
    /// An unauthenticated single-fragment PDU.
    pub fn new(call_id: u32, body: PduBody) -> Self {
        Self {
            call_id,
            flags: pfc::SINGLE_FRAG,
            body,
            auth: None,
        }
    }

    /// Encodes the PDU with [`DREP_LE`], computing `frag_length` and `auth_length`.
    pub fn encode(&self) -> Result<Vec<u8>, RpcError> {
        let mut body = NdrEncoder::new();
        // The body starts 16 bytes in, so alignment relative to it equals alignment relative
        // to the PDU.
        self.body.encode(&mut body)?;
        let body = body.finish();

        let auth_len = self.auth.as_ref().map_or(0, |a| a.token.len());
        let trailer_len = self
            .auth
            .as_ref()
            .map_or(0, |a| usize::from(a.pad_length) + SEC_TRAILER_LEN);
        let frag_len = HEADER_LEN + body.len() + trailer_len + auth_len;
        let too_large = |what, len| RpcError::TooLarge {
            what,
            len,
            max: usize::from(u16::MAX),
        };
        let frag_length = u16::try_from(frag_len).map_err(|_| too_large("PDU", frag_len))?;
        let auth_length = u16::try_from(auth_len).map_err(|_| too_large("auth token", auth_len))?;

        let flags = match &self.body {
            PduBody::Request(r) if r.object.is_some() => self.flags | pfc::OBJECT_UUID,
            PduBody::Request(_) => self.flags & !pfc::OBJECT_UUID,
            _ => self.flags,
        };
        let mut out = Vec::with_capacity(frag_len);
        out.extend_from_slice(&[
            RPC_VERSION_MAJOR,
            RPC_VERSION_MINOR,
            self.body.packet_type() as u8,
            flags,
        ]);
        out.extend_from_slice(&DREP_LE);
        out.extend_from_slice(&frag_length.to_le_bytes());
        out.extend_from_slice(&auth_length.to_le_bytes());
        out.extend_from_slice(&self.call_id.to_le_bytes());
        out.extend_from_slice(&body);
        if let Some(auth) = &self.auth {
            out.resize(out.len() + usize::from(auth.pad_length), 0);
            out.extend_from_slice(&[auth.auth_type.0, auth.auth_level.0, auth.pad_length, 0]);
            out.extend_from_slice(&auth.context_id.to_le_bytes());
            out.extend_from_slice(&auth.token);
        }
        Ok(out)
    }
}

/// Offset of the stub (or, for PDUs without one, of the end of the header) in a PDU.
pub(crate) fn stub_offset(ptype: PacketType, has_object: bool) -> usize {
    match ptype {
        PacketType::Request if has_object => HEADER_LEN + 8 + 16,
        PacketType::Request | PacketType::Response => HEADER_LEN + 8,
        PacketType::Fault => HEADER_LEN + 16,
        _ => HEADER_LEN,
    }
}

/// Where the protected parts of an encoded, authenticated fragment lie, so a security provider
/// can seal and sign it in place (MS-RPCE 3.3.1.5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRegions {
    /// Stub plus auth padding: what `PKT_PRIVACY` encrypts.
    pub sealed: Range<usize>,
    /// From the first header byte to the end of the `sec_trailer`: what the signature covers
    /// when header signing is in effect (otherwise only `sealed` is signed).
    pub signed: Range<usize>,
    /// The auth token: the signature, to be filled in or checked.
    pub token: Range<usize>,
}

impl AuthRegions {
    /// Locates the regions of the fragment at the start of `buf`; fails if it has no verifier.
    pub fn of(buf: &[u8]) -> Result<Self, RpcError> {
        let header = PduHeader::decode(buf)?;
        let frag = buf
            .get(..usize::from(header.frag_length))
            .ok_or(RpcError::Incomplete {
                needed: usize::from(header.frag_length),
                available: buf.len(),
            })?;
        let (body_end, Some(auth)) = split_verifier(frag, &header)? else {
            return Err(RpcError::Unexpected(
                "PDU has no authentication verifier".into(),
            ));
        };
        let trailer_start = body_end + usize::from(auth.pad_length);
        let token_start = trailer_start + SEC_TRAILER_LEN;
        let stub_start = stub_offset(header.ptype, header.flags & pfc::OBJECT_UUID != 0);
        if stub_start > body_end {
            return Err(RpcError::Malformed(format!(
                "stub would start at {stub_start}, after the body's end at {body_end}"
            )));
        }
        Ok(Self {
            sealed: stub_start..trailer_start,
            signed: 0..token_start,
            token: token_start..frag.len(),
        })
    }
}

/// Decodes the PDU at the start of `buf`, returning it and the number of bytes it occupied.
///
/// [`RpcError::Incomplete`] means `buf` is a valid prefix and more bytes are needed; every other
/// error means the stream is corrupt.
pub fn decode_pdu(buf: &[u8]) -> Result<(Pdu, usize), RpcError> {
    let header = PduHeader::decode(buf)?;
    let frag_len = usize::from(header.frag_length);
    if frag_len < HEADER_LEN {
        return Err(RpcError::Malformed(format!(
            "frag_length {frag_len} is shorter than the header"
        )));
    }
    let frag = buf.get(..frag_len).ok_or(RpcError::Incomplete {
        needed: frag_len,
        available: buf.len(),
    })?;

    let (body_end, auth) = split_verifier(frag, &header)?;
    let body_bytes = frag.get(..body_end).ok_or_else(|| {
        RpcError::Malformed(format!("body end {body_end} beyond fragment of {frag_len}"))
    })?;
    let mut dec = NdrDecoder::with_drep(body_bytes, header.drep)?;
    dec.read_bytes(HEADER_LEN)?;
    let body = PduBody::decode(header.ptype, header.flags, &mut dec)?;
    Ok((
        Pdu {
            call_id: header.call_id,
            flags: header.flags,
            body,
            auth,
        },
        frag_len,
    ))
}

/// Locates the authentication verifier at the end of `frag`. Returns where the body (without
/// auth padding) ends, and the verifier.
fn split_verifier(
    frag: &[u8],
    header: &PduHeader,
) -> Result<(usize, Option<AuthVerifier>), RpcError> {
    let auth_len = usize::from(header.auth_length);
    if auth_len == 0 {
        return Ok((frag.len(), None));
    }
    let malformed = || {
        RpcError::Malformed(format!(
            "auth_length {auth_len} does not fit in a {}-byte fragment",
            frag.len()
        ))
    };
    let trailer_start = frag
        .len()
        .checked_sub(auth_len + SEC_TRAILER_LEN)
        .filter(|&start| start >= HEADER_LEN)
        .ok_or_else(malformed)?;
    let (head, trailer_and_token) = frag.split_at_checked(trailer_start).ok_or_else(malformed)?;
    let (trailer, token) = trailer_and_token
        .split_at_checked(SEC_TRAILER_LEN)
        .ok_or_else(malformed)?;
    let [auth_type, auth_level, pad_length, _reserved, c0, c1, c2, c3] = *trailer else {
        return Err(malformed());
    };
    let context_id = if header.drep[0] >> 4 == 0 {
        u32::from_be_bytes([c0, c1, c2, c3])
    } else {
        u32::from_le_bytes([c0, c1, c2, c3])
    };
    let body_end = head
        .len()
        .checked_sub(usize::from(pad_length))
        .filter(|&end| end >= HEADER_LEN)
        .ok_or_else(|| {
            RpcError::Malformed(format!("auth_pad_length {pad_length} exceeds the body"))
        })?;
    Ok((
        body_end,
        Some(AuthVerifier {
            auth_type: AuthType(auth_type),
            auth_level: AuthLevel(auth_level),
            pad_length,
            context_id,
            token: token.to_vec(),
        }),
    ))
}
