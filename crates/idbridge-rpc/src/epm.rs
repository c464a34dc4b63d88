//! Endpoint mapper (`ept_map`, C706 appendix L and O) for `ncacn_ip_tcp`: ask port 135 on which
//! TCP port an interface listens.

use core::net::Ipv4Addr;

use idbridge_ndr::{
    ndr_struct, ByteArray, ConformantVaryingArray, ContextHandle, FullPtr, NdrDecoder, NdrEncoder,
};
use uuid::{uuid, Uuid};

use crate::error::RpcError;
use crate::pdu::{SyntaxId, NDR20};

/// The endpoint mapper interface, v3.0.
pub const EPM: SyntaxId = SyntaxId::new(uuid!("e1af8308-5d1f-11c9-91a4-08002b14a0fa"), 3, 0);
/// MS-DRSR `drsuapi`, v4.0.
pub const DRSUAPI: SyntaxId = SyntaxId::new(uuid!("e3514235-4b06-11d1-ab04-00c04fc2dcd2"), 4, 0);
/// Opnum of `ept_map`.
pub const EPT_MAP_OPNUM: u16 = 3;
/// The well-known endpoint-mapper TCP port.
pub const EPM_PORT: u16 = 135;

/// Tower floor protocol identifiers (C706 appendix I).
mod protocol {
    pub const UUID: u8 = 0x0d;
    pub const RPC_CO: u8 = 0x0b;
    pub const TCP: u8 = 0x07;
    pub const IP: u8 = 0x09;
}

ndr_struct! {
    /// `twr_t`: an opaque protocol tower.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Twr {
        tower_length: u32,
        [conformant] tower_octet_string: ByteArray,
    }
}

impl Twr {
    fn new(octets: Vec<u8>) -> Result<Self, RpcError> {
        let len = octets.len();
        Ok(Self {
            tower_length: u32::try_from(len).map_err(|_| RpcError::TooLarge {
                what: "tower",
                len,
                max: u32::MAX as usize,
            })?,
            tower_octet_string: ByteArray(octets),
        })
    }
}

/// An `ncacn_ip_tcp` protocol tower: interface, NDR20, connection-oriented RPC, TCP port,
/// IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpTower {
    pub interface: SyntaxId,
    pub port: u16,
    pub address: Ipv4Addr,
}

impl TcpTower {
    /// Tower octets: a little-endian floor count, then per floor a little-endian LHS length,
    /// LHS, little-endian RHS length, RHS. Port and address are in network byte order.
    pub fn to_octets(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(75);
        out.extend_from_slice(&5u16.to_le_bytes());
        for syntax in [self.interface, NDR20] {
            let mut lhs = vec![protocol::UUID];
            lhs.extend_from_slice(&syntax.uuid.to_bytes_le());
            lhs.extend_from_slice(&syntax.major.to_le_bytes());
            push_floor(&mut out, &lhs, &syntax.minor.to_le_bytes());
        }
        push_floor(&mut out, &[protocol::RPC_CO], &0u16.to_le_bytes());
        push_floor(&mut out, &[protocol::TCP], &self.port.to_be_bytes());
        push_floor(&mut out, &[protocol::IP], &self.address.octets());
        out
    }

    /// Parses an `ncacn_ip_tcp` tower; `None` if the octets describe another protocol sequence.
    pub fn from_octets(octets: &[u8]) -> Result<Option<Self>, RpcError> {
        let mut rest = octets;
        let floor_count = take_u16_le(&mut rest)?;
        let mut floors = Vec::new();
        for _ in 0..floor_count {
            let lhs_len = usize::from(take_u16_le(&mut rest)?);
            let lhs = take(&mut rest, lhs_len)?;
            let rhs_len = usize::from(take_u16_le(&mut rest)?);
            let rhs = take(&mut rest, rhs_len)?;
            floors.push((lhs, rhs));
        }
        let [(iface_lhs, iface_rhs), _, (co, _), (tcp, port), (ip, addr)] = floors.as_slice()
        else {
            return Ok(None);
        };
        if *co != [protocol::RPC_CO] || *tcp != [protocol::TCP] || *ip != [protocol::IP] {
            return Ok(None);
        }
        let (Some(interface), Ok(minor), Ok(port), Ok(addr)) = (
            uuid_floor(iface_lhs),
            <[u8; 2]>::try_from(*iface_rhs),
            <[u8; 2]>::try_from(*port),
            <[u8; 4]>::try_from(*addr),
        ) else {
            return Err(RpcError::Malformed(
                "malformed ncacn_ip_tcp tower floor".into(),
            ));
        };
        let (uuid, major) = interface;
        Ok(Some(Self {
            interface: SyntaxId::new(uuid, major, u16::from_le_bytes(minor)),
            port: u16::from_be_bytes(port),
            address: Ipv4Addr::from(addr),
        }))
    }
}

fn push_floor(out: &mut Vec<u8>, lhs: &[u8], rhs: &[u8]) {
    // Floors are a few bytes long; the casts cannot truncate.
    out.extend_from_slice(&(lhs.len() as u16).to_le_bytes());
    out.extend_from_slice(lhs);
    out.extend_from_slice(&(rhs.len() as u16).to_le_bytes());
    out.extend_from_slice(rhs);
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], RpcError> {
    let (head, tail) = rest
        .split_at_checked(n)
        .ok_or_else(|| RpcError::Malformed(format!("tower floor truncated: need {n} bytes")))?;
    *rest = tail;
    Ok(head)
}

fn take_u16_le(rest: &mut &[u8]) -> Result<u16, RpcError> {
    let bytes = take(rest, 2)?;
    let [a, b] = *bytes else {
        return Err(RpcError::Malformed("tower floor truncated".into()));
    };
    Ok(u16::from_le_bytes([a, b]))
}

/// Parses a UUID floor's LHS: protocol id, UUID, major version.
fn uuid_floor(lhs: &[u8]) -> Option<(Uuid, u16)> {
    let (&id, rest) = lhs.split_first()?;
    let (uuid, major) = rest.split_at_checked(16)?;
    if id != protocol::UUID {
        return None;
    }
    let uuid = Uuid::from_bytes_le(<[u8; 16]>::try_from(uuid).ok()?);
    Some((uuid, u16::from_le_bytes(<[u8; 2]>::try_from(major).ok()?)))
}

/// `ept_map` request: which `ncacn_ip_tcp` endpoint serves `interface`?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EptMapRequest {
    pub interface: SyntaxId,
    /// Continuation handle: null on the first call.
    pub entry_handle: ContextHandle,
    pub max_towers: u32,
}

impl EptMapRequest {
    pub fn new(interface: SyntaxId) -> Self {
        Self {
            interface,
            entry_handle: ContextHandle::default(),
            max_towers: 4,
        }
    }

    /// The request stub:
    /// `[in, ptr] uuid_t *object, [in, ptr] twr_t *map_tower,
    ///  [in, out] ept_lookup_handle_t *entry_handle, [in] unsigned32 max_towers`.
    pub fn encode(&self) -> Result<Vec<u8>, RpcError> {
        let tower = TcpTower {
            interface: self.interface,
            port: 0,
            address: Ipv4Addr::UNSPECIFIED,
        };
        let mut enc = NdrEncoder::new();
        // Windows and Samba send a nil object UUID rather than a null pointer.
        enc.encode(&FullPtr(Some(Uuid::nil().into())))?;
        enc.encode(&FullPtr(Some(Twr::new(tower.to_octets())?.into())))?;
        enc.encode(&self.entry_handle)?;
        enc.encode(&self.max_towers)?;
        Ok(enc.finish())
    }
}

/// `ept_map` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EptMapResponse {
    pub entry_handle: ContextHandle,
    /// Raw towers, in the server's order (null entries skipped).
    pub towers: Vec<Twr>,
    /// `error_status_t`: 0 on success, `EPT_S_NOT_REGISTERED` (0x16c9a0d6) if unknown.
    pub status: u32,
}

/// `ept_map` status: the interface has no registered endpoint.
pub const EPT_S_NOT_REGISTERED: u32 = 0x16c9_a0d6;

impl EptMapResponse {
    /// The response stub: `entry_handle, unsigned32 num_towers,
    /// [size_is(max_towers), length_is(*num_towers)] twr_p_t towers[], error_status_t status`.
    pub fn decode(stub: &[u8]) -> Result<Self, RpcError> {
        let mut dec = NdrDecoder::new(stub);
        let entry_handle = dec.decode::<ContextHandle>()?;
        let num_towers = dec.decode::<u32>()?;
        let towers = dec.decode::<ConformantVaryingArray<FullPtr<Twr>>>()?;
        if u64::from(num_towers) != towers.items.len() as u64 {
            return Err(RpcError::Malformed(format!(
                "num_towers {num_towers} but {} towers sent",
                towers.items.len()
            )));
        }
        let status = dec.decode::<u32>()?;
        Ok(Self {
            entry_handle,
            towers: towers
                .items
                .into_iter()
                .filter_map(|t| t.0.map(|t| (*t).clone()))
                .collect(),
            status,
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>, RpcError> {
        let mut enc = NdrEncoder::new();
        enc.encode(&self.entry_handle)?;
        let towers = self
            .towers
            .iter()
            .map(|t| FullPtr(Some(t.clone().into())))
            .collect();
        let towers = ConformantVaryingArray::new(towers)?;
        // num_towers, then the array (whose maximum count is the request's max_towers; here
        // the array is sent full).
        enc.encode(&towers.max_count)?;
        enc.encode(&towers)?;
        enc.encode(&self.status)?;
        Ok(enc.finish())
    }

    /// The TCP ports of the `ncacn_ip_tcp` towers, in order.
    pub fn tcp_ports(&self) -> Result<Vec<u16>, RpcError> {
        self.towers
            .iter()
            .filter_map(|t| TcpTower::from_octets(&t.tower_octet_string.0).transpose())
            .map(|t| t.map(|t| t.port))
            .collect()
    }
}
