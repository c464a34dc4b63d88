//! The DRSUAPI structures this crate sends and receives (MS-DRSR 4.1.1, 4.1.3, 4.1.10, 5), as
//! NDR20 types, and the stubs of `IDL_DRSBind` (opnum 0), `IDL_DRSUnbind` (1) and
//! `IDL_DRSGetNCChanges` (3).

use idbridge_ndr::{
    ndr_struct, ndr_union, ByteArray, ContextHandle, NdrDecode, NdrDecoder, NdrEncode, NdrEncoder,
    NdrError, NdrType, Ref,
};
use uuid::{uuid, Uuid};

use crate::error::DrsError;

pub const OPNUM_BIND: u16 = 0;
pub const OPNUM_UNBIND: u16 = 1;
pub const OPNUM_GET_NC_CHANGES: u16 = 3;

/// `NTDSAPI_CLIENT_GUID`: the `puuidClientDsa` of a client that is not a DC.
pub const NTDSAPI_CLIENT_GUID: Uuid = uuid!("e24d201a-4fd6-11d1-a3da-0000f875ae0d");

/// `DRS_EXTENSIONS_INT.dwFlags` bits (MS-DRSR 5.39) this client advertises or checks.
pub mod ext {
    pub const BASE: u32 = 0x0000_0001;
    pub const ASYNCREPL: u32 = 0x0000_0002;
    pub const LINKED_VALUE_REPLICATION: u32 = 0x0000_0400;
    /// Secrets are encrypted with MD5(session key, salt) + RC4 (MS-DRSR 4.1.10.6.12).
    pub const STRONG_ENCRYPTION: u32 = 0x0000_8000;
    pub const POST_BETA3: u32 = 0x0008_0000;
    pub const GETCHGREQ_V8: u32 = 0x0100_0000;
    pub const GETCHGREPLY_V6: u32 = 0x0400_0000;
}

/// `ulFlags` of a `DRSGetNCChanges` request (MS-DRSR 5.41 `DRS_OPTIONS`).
pub mod drs {
    pub const WRIT_REP: u32 = 0x0000_0010;
    pub const INIT_SYNC: u32 = 0x0000_0020;
    pub const GET_ANC: u32 = 0x0000_0800;
}

/// `ulExtendedOp` of a `DRSGetNCChanges` request and `ulExtendedRet` of its reply (MS-DRSR
/// 4.1.10.2.22, 4.1.10.2.21).
pub mod exop {
    /// `EXOP_REPL_OBJ`: replicate the single object the request's naming context names.
    pub const REPL_OBJ: u32 = 6;
    /// `EXOP_ERR_SUCCESS`.
    pub const ERR_SUCCESS: u32 = 1;
}

ndr_struct! {
    /// `DRS_EXTENSIONS`: a counted opaque blob (`DRS_EXTENSIONS_INT` inside).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct DrsExtensions {
        cb: u32,
        [conformant] rgb: ByteArray,
    }
}

/// The parts of `DRS_EXTENSIONS_INT` this client reads or sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtensionsInt {
    pub flags: u32,
    pub site_obj_guid: Uuid,
    pub pid: u32,
    pub repl_epoch: u32,
    pub flags_ext: u32,
    pub config_obj_guid: Uuid,
}

impl ExtensionsInt {
    /// Serialised up to `ConfigObjGUID` (48 bytes), a length every DC accepts.
    pub fn to_extensions(self) -> DrsExtensions {
        let mut rgb = Vec::with_capacity(48);
        rgb.extend_from_slice(&self.flags.to_le_bytes());
        rgb.extend_from_slice(&self.site_obj_guid.to_bytes_le());
        rgb.extend_from_slice(&self.pid.to_le_bytes());
        rgb.extend_from_slice(&self.repl_epoch.to_le_bytes());
        rgb.extend_from_slice(&self.flags_ext.to_le_bytes());
        rgb.extend_from_slice(&self.config_obj_guid.to_bytes_le());
        DrsExtensions {
            cb: 48,
            rgb: ByteArray(rgb),
        }
    }

    /// Reads however many fields the peer sent (at least `dwFlags`); missing ones are zero.
    pub fn parse(ext: &DrsExtensions) -> Result<Self, DrsError> {
        let b = ext.rgb.0.as_slice();
        if usize::try_from(ext.cb).ok() != Some(b.len()) || b.len() < 4 {
            return Err(DrsError::Protocol(format!(
                "DRS_EXTENSIONS cb {} for {} bytes",
                ext.cb,
                b.len()
            )));
        }
        let u32_at = |at: usize| {
            b.get(at..at + 4)
                .and_then(|s| <[u8; 4]>::try_from(s).ok())
                .map_or(0, u32::from_le_bytes)
        };
        let guid_at = |at: usize| {
            b.get(at..at + 16)
                .and_then(|s| <[u8; 16]>::try_from(s).ok())
                .map_or(Uuid::nil(), Uuid::from_bytes_le)
        };
        Ok(Self {
            flags: u32_at(0),
            site_obj_guid: guid_at(4),
            pid: u32_at(20),
            repl_epoch: u32_at(24),
            flags_ext: u32_at(28),
            config_obj_guid: guid_at(32),
        })
    }
}

ndr_struct! {
    /// `DSNAME`: a directory object named by GUID, SID and/or DN.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct DsName {
        struct_len: u32,
        sid_len: u32,
        guid: Uuid,
        sid: [u8; 28],
        name_len: u32,
        [conformant]
        /// UTF-16 DN including its terminating NUL (`size_is(NameLen + 1)`).
        string_name: Vec<u16>,
    }
}

impl DsName {
    /// A DSNAME that names an object by DN only.
    pub fn from_dn(dn: &str) -> Result<Self, DrsError> {
        let mut string_name: Vec<u16> = dn.encode_utf16().collect();
        let too_long = || DrsError::Protocol(format!("DN of {} characters", string_name.len()));
        let name_len = u32::try_from(string_name.len()).map_err(|_| too_long())?;
        // structLen is the in-memory size: 56 fixed bytes plus the NUL-terminated name.
        let struct_len = name_len
            .checked_add(1)
            .and_then(|n| n.checked_mul(2))
            .and_then(|n| n.checked_add(56))
            .ok_or_else(too_long)?;
        string_name.push(0);
        Ok(Self {
            struct_len,
            sid_len: 0,
            guid: Uuid::nil(),
            sid: [0; 28],
            name_len,
            string_name,
        })
    }

    /// A DSNAME that names an object by GUID only (empty DN): the object is found wherever it is,
    /// even after a rename or move.
    pub fn from_guid(guid: Uuid) -> Self {
        Self {
            // 56 fixed bytes plus the empty name's NUL.
            struct_len: 58,
            sid_len: 0,
            guid,
            sid: [0; 28],
            name_len: 0,
            string_name: vec![0],
        }
    }

    /// The DN, without the NUL; empty when the server named the object by GUID only.
    pub fn dn(&self) -> Result<String, DrsError> {
        let units = match self.string_name.split_last() {
            Some((0, rest)) => rest,
            _ => self.string_name.as_slice(),
        };
        String::from_utf16(units).map_err(|_| DrsError::Protocol("DN is not valid UTF-16".into()))
    }

    /// The binary SID, if the name carries one.
    pub fn sid_bytes(&self) -> Result<Option<&[u8]>, DrsError> {
        match self.sid_len {
            0 => Ok(None),
            n => usize::try_from(n)
                .ok()
                .and_then(|n| self.sid.get(..n))
                .map(Some)
                .ok_or_else(|| DrsError::Protocol(format!("SidLen {n} exceeds 28"))),
        }
    }
}

ndr_struct! {
    /// `USN_VECTOR`: the high-water mark of a replication cycle.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct UsnVector {
        usn_high_obj_update: i64,
        usn_reserved: i64,
        usn_high_prop_update: i64,
    }
}

ndr_struct! {
    /// `UPTODATE_CURSOR_V1`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct UptodateCursorV1 {
        uuid_dsa: Uuid,
        usn_high_prop_update: i64,
    }
}

ndr_struct! {
    /// `UPTODATE_VECTOR_V1_EXT` (`dwVersion` 1).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct UptodateVectorV1Ext {
        version: u32,
        reserved1: u32,
        num_cursors: u32,
        reserved2: u32,
        [conformant] cursors: Vec<UptodateCursorV1>,
    }
}

ndr_struct! {
    /// `UPTODATE_CURSOR_V2`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct UptodateCursorV2 {
        uuid_dsa: Uuid,
        usn_high_prop_update: i64,
        time_last_sync_success: i64,
    }
}

ndr_struct! {
    /// `UPTODATE_VECTOR_V2_EXT` (`dwVersion` 2).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct UptodateVectorV2Ext {
        version: u32,
        reserved1: u32,
        num_cursors: u32,
        reserved2: u32,
        [conformant] cursors: Vec<UptodateCursorV2>,
    }
}

ndr_struct! {
    /// `PARTIAL_ATTR_VECTOR_V1_EXT`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct PartialAttrVectorV1Ext {
        version: u32,
        reserved1: u32,
        num_attrs: u32,
        [conformant] attrs: Vec<u32>,
    }
}

ndr_struct! {
    /// `OID_t`: BER content octets of an OID prefix.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct OidT {
        length: u32,
        elements: Option<ByteArray>,
    }
}

ndr_struct! {
    /// `PrefixTableEntry`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct PrefixTableEntry {
        ndx: u32,
        prefix: OidT,
    }
}

ndr_struct! {
    /// `SCHEMA_PREFIX_TABLE`.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct SchemaPrefixTable {
        prefix_count: u32,
        entries: Option<Vec<PrefixTableEntry>>,
    }
}

ndr_struct! {
    /// `DRS_MSG_GETCHGREQ_V8`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct GetNcChangesRequestV8 {
        uuid_dsa_obj_dest: Uuid,
        uuid_invoc_id_src: Uuid,
        nc: Ref<DsName>,
        usnvec_from: UsnVector,
        up_to_date_vec_dest: Option<UptodateVectorV1Ext>,
        flags: u32,
        max_objects: u32,
        max_bytes: u32,
        extended_op: u32,
        fsmo_info: u64,
        partial_attr_set: Option<PartialAttrVectorV1Ext>,
        partial_attr_set_ex: Option<PartialAttrVectorV1Ext>,
        prefix_table_dest: SchemaPrefixTable,
    }
}

ndr_union! {
    /// `DRS_MSG_GETCHGREQ`, of which this client sends version 8 only.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum GetNcChangesRequest: u32 {
        8 => V8(GetNcChangesRequestV8),
    }
}

ndr_struct! {
    /// `ATTRVAL`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AttrVal {
        val_len: u32,
        val: Option<ByteArray>,
    }
}

ndr_struct! {
    /// `ATTRVALBLOCK`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AttrValBlock {
        val_count: u32,
        vals: Option<Vec<AttrVal>>,
    }
}

ndr_struct! {
    /// `ATTR`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Attr {
        attr_typ: u32,
        val_block: AttrValBlock,
    }
}

ndr_struct! {
    /// `ATTRBLOCK`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AttrBlock {
        attr_count: u32,
        attrs: Option<Vec<Attr>>,
    }
}

ndr_struct! {
    /// `ENTINF`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct EntInf {
        name: Option<DsName>,
        flags: u32,
        attr_block: AttrBlock,
    }
}

ndr_struct! {
    /// `PROPERTY_META_DATA_EXT`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct PropertyMetaDataExt {
        version: u32,
        time_changed: i64,
        uuid_dsa_originating: Uuid,
        usn_originating: i64,
    }
}

ndr_struct! {
    /// `PROPERTY_META_DATA_EXT_VECTOR`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct PropertyMetaDataExtVector {
        num_props: u32,
        [conformant] meta_data: Vec<PropertyMetaDataExt>,
    }
}

ndr_struct! {
    /// One `REPLENTINFLIST` node without its `pNextEntInf` link (see [`ObjectList`]).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ReplEntInf {
        entinf: EntInf,
        is_nc_prefix: u32,
        parent_guid: Option<Uuid>,
        meta_data_ext: Option<PropertyMetaDataExtVector>,
    }
}

/// `REPLENTINFLIST*`: the linked list of replicated objects.
///
/// Each node's `pNextEntInf` referent is the next node, deferred before the node's other
/// referents, so the wire holds every node's inline part first and then their pointer data
/// from the last node back to the first. Decoding walks that iteratively: a long page costs no
/// recursion depth.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectList(pub Vec<ReplEntInf>);

impl NdrType for ObjectList {
    const ALIGN: usize = 4;
    const MIN_WIRE_SIZE: usize = 4;
}

impl NdrEncode for ObjectList {
    fn encode_primary(&self, enc: &mut NdrEncoder) -> idbridge_ndr::Result<()> {
        match self.0.is_empty() {
            true => enc.write_u32(0),
            false => enc.write_referent_id(),
        }
        Ok(())
    }

    fn encode_deferred(&self, enc: &mut NdrEncoder) -> idbridge_ndr::Result<()> {
        let last = self.0.len().saturating_sub(1);
        for (i, node) in self.0.iter().enumerate() {
            enc.align(4);
            match i < last {
                true => enc.write_referent_id(),
                false => enc.write_u32(0),
            }
            node.encode_primary(enc)?;
        }
        self.0.iter().rev().try_for_each(|n| n.encode_deferred(enc))
    }
}

impl NdrDecode for ObjectList {
    type Primary = bool;

    fn decode_primary(dec: &mut NdrDecoder<'_>) -> idbridge_ndr::Result<bool> {
        Ok(dec.read_u32()? != 0)
    }

    fn decode_deferred(non_null: bool, dec: &mut NdrDecoder<'_>) -> idbridge_ndr::Result<Self> {
        let mut primaries = Vec::new();
        let mut more = non_null;
        while more {
            // Every node consumes input, so the input bounds this loop and the vector.
            dec.align(4)?;
            more = dec.read_u32()? != 0;
            primaries.push(ReplEntInf::decode_primary(dec)?);
        }
        let mut nodes = primaries
            .into_iter()
            .rev()
            .map(|p| ReplEntInf::decode_deferred(p, dec))
            .collect::<idbridge_ndr::Result<Vec<_>>>()?;
        nodes.reverse();
        Ok(Self(nodes))
    }
}

ndr_struct! {
    /// `VALUE_META_DATA_EXT_V1`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ValueMetaDataExtV1 {
        time_created: i64,
        meta_data: PropertyMetaDataExt,
    }
}

ndr_struct! {
    /// `REPLVALINF_V1`: one linked-value change.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ReplValInfV1 {
        object: Ref<DsName>,
        attr_typ: u32,
        aval: AttrVal,
        is_present: u32,
        meta_data: ValueMetaDataExtV1,
    }
}

ndr_struct! {
    /// `DRS_MSG_GETCHGREPLY_V6`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct GetNcChangesReplyV6 {
        uuid_dsa_obj_src: Uuid,
        uuid_invoc_id_src: Uuid,
        nc: Option<DsName>,
        usnvec_from: UsnVector,
        usnvec_to: UsnVector,
        up_to_date_vec_src: Option<UptodateVectorV2Ext>,
        prefix_table_src: SchemaPrefixTable,
        extended_ret: u32,
        num_objects: u32,
        num_bytes: u32,
        objects: ObjectList,
        more_data: u32,
        num_nc_size_objects: u32,
        num_nc_size_values: u32,
        num_values: u32,
        values: Option<Vec<ReplValInfV1>>,
        drs_error: u32,
    }
}

ndr_union! {
    /// `DRS_MSG_GETCHGREPLY`, of which this client accepts version 6 only (it advertises no
    /// compression and no V7/V9 replies).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum GetNcChangesReply: u32 {
        6 => V6(GetNcChangesReplyV6),
    }
}

/// Stub of `IDL_DRSBind`'s request.
pub fn encode_bind_request(client_dsa: Uuid, ext: &DrsExtensions) -> Result<Vec<u8>, DrsError> {
    let mut enc = NdrEncoder::new();
    enc.encode(&Some(client_dsa))?;
    enc.encode(&Some(ext.clone()))?;
    Ok(enc.finish())
}

/// `IDL_DRSBind`'s reply: the server's extensions, the handle and the Win32 status.
pub fn decode_bind_reply(
    stub: &[u8],
) -> Result<(Option<DrsExtensions>, ContextHandle, u32), DrsError> {
    let mut dec = NdrDecoder::new(stub);
    let ext = dec.decode::<Option<DrsExtensions>>()?;
    let handle = dec.decode::<ContextHandle>()?;
    let status = dec.read_u32()?;
    expect_end(&dec)?;
    Ok((ext, handle, status))
}

/// Stub of `IDL_DRSUnbind`'s request.
pub fn encode_unbind_request(handle: &ContextHandle) -> Result<Vec<u8>, DrsError> {
    Ok(idbridge_ndr::to_bytes(handle)?)
}

/// `IDL_DRSUnbind`'s reply: the (null) handle and the Win32 status.
pub fn decode_unbind_reply(stub: &[u8]) -> Result<(ContextHandle, u32), DrsError> {
    let mut dec = NdrDecoder::new(stub);
    let handle = dec.decode::<ContextHandle>()?;
    let status = dec.read_u32()?;
    expect_end(&dec)?;
    Ok((handle, status))
}

/// Stub of `IDL_DRSGetNCChanges`'s request.
pub fn encode_get_nc_changes_request(
    handle: &ContextHandle,
    request: &GetNcChangesRequest,
) -> Result<Vec<u8>, DrsError> {
    let mut enc = NdrEncoder::new();
    enc.encode(handle)?;
    enc.write_u32(request.discriminant());
    enc.encode(request)?;
    Ok(enc.finish())
}

/// `IDL_DRSGetNCChanges`'s reply and Win32 status.
pub fn decode_get_nc_changes_reply(stub: &[u8]) -> Result<(GetNcChangesReply, u32), DrsError> {
    let mut dec = NdrDecoder::new(stub);
    let version = dec.read_u32()?;
    let reply = dec.decode::<GetNcChangesReply>().map_err(|e| match e {
        NdrError::UnknownDiscriminant { value, .. } => DrsError::Protocol(format!(
            "DRSGetNCChanges reply version {value} (only 6 was negotiated)"
        )),
        e => e.into(),
    })?;
    if reply.discriminant() != version {
        return Err(DrsError::Protocol(format!(
            "reply version {version} but union arm {}",
            reply.discriminant()
        )));
    }
    let status = dec.read_u32()?;
    expect_end(&dec)?;
    Ok((reply, status))
}

fn expect_end(dec: &NdrDecoder<'_>) -> Result<(), DrsError> {
    match dec.remaining() {
        0 => Ok(()),
        n => Err(DrsError::Protocol(format!(
            "{n} trailing bytes after the reply"
        ))),
    }
}

#[cfg(test)]
pub(crate) mod samples {
    //! Replies as a DC sends them, for the tests of this module and of `replicate`.
    use super::*;

    pub(crate) fn sample_object(n: u8, with_secret: bool) -> ReplEntInf {
        let mut name = DsName::from_dn(&format!("CN=u{n},DC=x")).unwrap();
        name.guid = Uuid::from_bytes([n; 16]);
        let value = |bytes: Vec<u8>| AttrVal {
            val_len: bytes.len() as u32,
            val: Some(ByteArray(bytes)),
        };
        let mut attrs = vec![Attr {
            attr_typ: 0x0009_00dd,
            val_block: AttrValBlock {
                val_count: 1,
                vals: Some(vec![value(vec![b'u', 0, n, 0])]),
            },
        }];
        if with_secret {
            attrs.push(Attr {
                attr_typ: 0x0009_005a,
                val_block: AttrValBlock {
                    val_count: 1,
                    vals: Some(vec![value(vec![n; 36])]),
                },
            });
        }
        ReplEntInf {
            entinf: EntInf {
                name: Some(name),
                flags: 0,
                attr_block: AttrBlock {
                    attr_count: attrs.len() as u32,
                    attrs: Some(attrs),
                },
            },
            is_nc_prefix: u32::from(n == 0),
            parent_guid: (n > 0).then(|| Uuid::from_bytes([0xaa; 16])),
            meta_data_ext: Some(PropertyMetaDataExtVector {
                num_props: 1,
                meta_data: vec![PropertyMetaDataExt {
                    version: 1,
                    time_changed: 13_000_000_000,
                    uuid_dsa_originating: Uuid::from_bytes([7; 16]),
                    usn_originating: i64::from(n) + 100,
                }],
            }),
        }
    }

    pub(crate) fn sample_reply(objects: Vec<ReplEntInf>) -> GetNcChangesReply {
        GetNcChangesReply::V6(GetNcChangesReplyV6 {
            uuid_dsa_obj_src: Uuid::from_bytes([1; 16]),
            uuid_invoc_id_src: Uuid::from_bytes([2; 16]),
            nc: Some(DsName::from_dn("DC=x").unwrap()),
            usnvec_from: UsnVector::default(),
            usnvec_to: UsnVector {
                usn_high_obj_update: 4242,
                usn_reserved: 0,
                usn_high_prop_update: 4242,
            },
            up_to_date_vec_src: Some(UptodateVectorV2Ext {
                version: 2,
                reserved1: 0,
                num_cursors: 1,
                reserved2: 0,
                cursors: vec![UptodateCursorV2 {
                    uuid_dsa: Uuid::from_bytes([2; 16]),
                    usn_high_prop_update: 4242,
                    time_last_sync_success: 13_000_000_000,
                }],
            }),
            prefix_table_src: SchemaPrefixTable {
                prefix_count: 1,
                entries: Some(vec![PrefixTableEntry {
                    ndx: 9,
                    prefix: OidT {
                        length: 8,
                        elements: Some(ByteArray(vec![
                            0x2a, 0x86, 0x48, 0x86, 0xf7, 0x14, 0x01, 0x04,
                        ])),
                    },
                }]),
            },
            extended_ret: 0,
            num_objects: objects.len() as u32,
            num_bytes: 0,
            objects: ObjectList(objects),
            more_data: 1,
            num_nc_size_objects: 0,
            num_nc_size_values: 0,
            num_values: 1,
            values: Some(vec![ReplValInfV1 {
                object: Ref(DsName::from_dn("CN=g,DC=x").unwrap()),
                attr_typ: 0x0002_001f,
                aval: AttrVal {
                    val_len: 2,
                    val: Some(ByteArray(vec![1, 2])),
                },
                is_present: 1,
                meta_data: ValueMetaDataExtV1 {
                    time_created: 1,
                    meta_data: PropertyMetaDataExt {
                        version: 1,
                        time_changed: 2,
                        uuid_dsa_originating: Uuid::nil(),
                        usn_originating: 3,
                    },
                },
            }]),
            drs_error: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::samples::{sample_object, sample_reply};
    use super::*;

    fn reply_stub(reply: &GetNcChangesReply) -> Vec<u8> {
        let mut enc = NdrEncoder::new();
        enc.write_u32(reply.discriminant());
        enc.encode(reply).unwrap();
        enc.write_u32(0);
        enc.finish()
    }

    #[test]
    fn dsname_layout_and_dn() {
        let name = DsName::from_dn("DC=lab").unwrap();
        assert_eq!(name.struct_len, 56 + 2 * 7);
        assert_eq!(name.name_len, 6);
        let bytes = idbridge_ndr::to_bytes(&name).unwrap();
        // Conformance (7) first, then structLen.
        assert_eq!(bytes.get(..8), Some([7, 0, 0, 0, 70, 0, 0, 0].as_slice()));
        let back: DsName = idbridge_ndr::from_bytes(&bytes).unwrap();
        assert_eq!(back.dn().unwrap(), "DC=lab");
        assert_eq!(back.sid_bytes().unwrap(), None);
    }

    #[test]
    fn extensions_round_trip_and_short_forms_parse() {
        let ours = ExtensionsInt {
            flags: ext::BASE | ext::GETCHGREQ_V8,
            pid: 7,
            ..Default::default()
        };
        let stub = encode_bind_request(NTDSAPI_CLIENT_GUID, &ours.to_extensions()).unwrap();
        let mut dec = NdrDecoder::new(&stub);
        assert_eq!(
            dec.decode::<Option<Uuid>>().unwrap(),
            Some(NTDSAPI_CLIENT_GUID)
        );
        let ext = dec.decode::<Option<DrsExtensions>>().unwrap().unwrap();
        assert_eq!(ExtensionsInt::parse(&ext).unwrap(), ours);
        // A 28-byte DRS_EXTENSIONS_INT, as older DCs send.
        let short = DrsExtensions {
            cb: 28,
            rgb: ByteArray([0x01, 0, 0, 0x04].into_iter().chain([0; 24]).collect()),
        };
        assert_eq!(ExtensionsInt::parse(&short).unwrap().flags, 0x0400_0001);
        let lying = DrsExtensions {
            cb: 52,
            rgb: ByteArray(vec![0; 4]),
        };
        assert!(ExtensionsInt::parse(&lying).is_err());
    }

    #[test]
    fn request_v8_round_trips() {
        let request = GetNcChangesRequest::V8(GetNcChangesRequestV8 {
            uuid_dsa_obj_dest: Uuid::from_bytes([3; 16]),
            uuid_invoc_id_src: Uuid::nil(),
            nc: Ref(DsName::from_dn("DC=lab,DC=test").unwrap()),
            usnvec_from: UsnVector::default(),
            up_to_date_vec_dest: Some(UptodateVectorV1Ext {
                version: 1,
                reserved1: 0,
                num_cursors: 1,
                reserved2: 0,
                cursors: vec![UptodateCursorV1 {
                    uuid_dsa: Uuid::from_bytes([4; 16]),
                    usn_high_prop_update: 99,
                }],
            }),
            flags: drs::WRIT_REP | drs::INIT_SYNC,
            max_objects: 1000,
            max_bytes: 1 << 20,
            extended_op: 0,
            fsmo_info: 0,
            partial_attr_set: Some(PartialAttrVectorV1Ext {
                version: 1,
                reserved1: 0,
                num_attrs: 2,
                attrs: vec![0x0009_005a, 0x0009_00dd],
            }),
            partial_attr_set_ex: None,
            prefix_table_dest: SchemaPrefixTable::default(),
        });
        let handle = ContextHandle::default();
        let stub = encode_get_nc_changes_request(&handle, &request).unwrap();
        let mut dec = NdrDecoder::new(&stub);
        assert_eq!(dec.decode::<ContextHandle>().unwrap(), handle);
        assert_eq!(dec.read_u32().unwrap(), 8);
        assert_eq!(dec.decode::<GetNcChangesRequest>().unwrap(), request);
        assert_eq!(dec.remaining(), 0);
    }

    #[test]
    fn reply_v6_with_an_object_list_round_trips() {
        for n in [0, 1, 3, 200] {
            let reply = sample_reply((0..n).map(|i| sample_object(i, i % 2 == 0)).collect());
            let stub = reply_stub(&reply);
            let (back, status) = decode_get_nc_changes_reply(&stub).unwrap();
            assert_eq!(status, 0);
            assert_eq!(back, reply, "{n} objects");
        }
    }

    #[test]
    fn a_long_object_list_needs_no_recursion() {
        let objects = (0..5000)
            .map(|i| sample_object((i % 250) as u8, false))
            .collect();
        let stub = reply_stub(&sample_reply(objects));
        let (GetNcChangesReply::V6(back), _) = decode_get_nc_changes_reply(&stub).unwrap();
        assert_eq!(back.objects.0.len(), 5000);
    }

    #[test]
    fn hostile_replies_are_errors() {
        let stub = reply_stub(&sample_reply(vec![
            sample_object(1, true),
            sample_object(2, true),
        ]));
        // Every truncation fails cleanly.
        for len in 0..stub.len() {
            assert!(
                decode_get_nc_changes_reply(stub.get(..len).unwrap()).is_err(),
                "{len}"
            );
        }
        // An unsupported reply version.
        let mut other = stub.clone();
        other.splice(..8, [1, 0, 0, 0, 1, 0, 0, 0]);
        assert!(matches!(
            decode_get_nc_changes_reply(&other),
            Err(DrsError::Protocol(_))
        ));
        // A mismatch between the version and the union arm.
        let mut mismatch = stub.clone();
        mismatch.splice(..4, [7, 0, 0, 0]);
        assert!(decode_get_nc_changes_reply(&mismatch).is_err());
        // Flipping any single byte never panics.
        for i in 0..stub.len() {
            let mut bad = stub.clone();
            if let Some(b) = bad.get_mut(i) {
                *b ^= 0xff;
            }
            let _ = decode_get_nc_changes_reply(&bad);
        }
    }
}
