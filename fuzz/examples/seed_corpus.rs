//! Writes well-formed starting inputs into `corpus/<target>/`, encoded with the crates' own
//! encoders: from random bytes alone the fuzzer seldom builds a whole DRSGetNCChanges reply (a
//! linked list of objects under a prefix table) or a sealed, fragmented RPC response, so the
//! code behind them would go unexercised.
//!
//! `cargo +nightly run --example seed_corpus` (from `fuzz/`), then `cargo +nightly fuzz run`.

use std::path::Path;

use idbridge_drsuapi::idl::{
    Attr, AttrBlock, AttrVal, AttrValBlock, DsName, EntInf, ExtensionsInt, GetNcChangesReply,
    GetNcChangesReplyV6, ObjectList, OidT, PrefixTableEntry, PropertyMetaDataExt,
    PropertyMetaDataExtVector, ReplEntInf, ReplValInfV1, SchemaPrefixTable, UptodateCursorV2,
    UptodateVectorV2Ext, UsnVector, ValueMetaDataExtV1,
};
use idbridge_ndr::{ByteArray, ContextHandle, NdrEncoder, Ref};
use idbridge_rpc::{
    encode_sealed, fragment, AuthRegions, AuthType, BindAck, ContextResult, ContextResultCode,
    EptMapResponse, Fault, FaultStatus, Pdu, PduBody, PduProtection, Response, RpcError, TcpTower,
    Twr, DRSUAPI, NDR20,
};
use uuid::Uuid;

/// `1.2.840.113556.1.4`, index 9 in every DC's prefix table.
const AD_PREFIX: [u8; 8] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x14, 0x01, 0x04];
const ATT_SAM_ACCOUNT_NAME: u32 = 0x0009_00dd;
const ATT_USER_ACCOUNT_CONTROL: u32 = 0x0009_0008;
const ATT_OBJECT_SID: u32 = 0x0009_0092;
const ATT_UNICODE_PWD: u32 = 0x0009_005a;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let ndr = Path::new("corpus/ndr_decode");
    std::fs::create_dir_all(ndr)?;
    write(ndr, "seed-getnc-accounts", &get_nc_changes_stub(false)?)?;
    write(ndr, "seed-getnc-secret", &get_nc_changes_stub(true)?)?;
    write(ndr, "seed-bind", &bind_stub()?)?;
    write(ndr, "seed-unbind", &unbind_stub()?)?;

    let rpc = Path::new("corpus/rpc_pdu");
    std::fs::create_dir_all(rpc)?;
    write(rpc, "seed-bind-ack", &bind_ack()?)?;
    write(rpc, "seed-epm-fragmented", &epm_response(false)?)?;
    write(rpc, "seed-epm-sealed", &epm_response(true)?)?;
    write(rpc, "seed-fault", &fault()?)?;
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(dir.join(name), bytes)?;
    Ok(())
}

fn value(bytes: Vec<u8>) -> AttrVal {
    AttrVal {
        val_len: bytes.len() as u32,
        val: Some(ByteArray(bytes)),
    }
}

fn attr(attr_typ: u32, bytes: Vec<u8>) -> Attr {
    Attr {
        attr_typ,
        val_block: AttrValBlock {
            val_count: 1,
            vals: Some(vec![value(bytes)]),
        },
    }
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// `S-1-5-21-1-2-3-<rid>` in binary form.
fn sid(rid: u32) -> Vec<u8> {
    let mut sid = vec![1, 5, 0, 0, 0, 0, 0, 5];
    for sub in [21, 1, 2, 3, rid] {
        sid.extend_from_slice(&u32::to_le_bytes(sub));
    }
    sid
}

fn account(n: u8, with_secret: bool) -> Result<ReplEntInf, Error> {
    let mut name = DsName::from_dn(&format!("CN=user{n},OU=Staff,DC=lab,DC=test"))?;
    name.guid = Uuid::from_bytes([n; 16]);
    let mut attrs = vec![
        attr(ATT_SAM_ACCOUNT_NAME, utf16(&format!("user{n}"))),
        attr(ATT_USER_ACCOUNT_CONTROL, 512u32.to_le_bytes().to_vec()),
        attr(ATT_OBJECT_SID, sid(1100 + u32::from(n))),
    ];
    if with_secret {
        // Salt, then CRC and two DES blocks under RC4: not decryptable, but the right shape.
        attrs.push(attr(ATT_UNICODE_PWD, vec![n; 16 + 4 + 16]));
    }
    Ok(ReplEntInf {
        entinf: EntInf {
            name: Some(name),
            flags: 0,
            attr_block: AttrBlock {
                attr_count: u32::try_from(attrs.len())?,
                attrs: Some(attrs),
            },
        },
        is_nc_prefix: 0,
        parent_guid: Some(Uuid::from_bytes([0xaa; 16])),
        meta_data_ext: Some(PropertyMetaDataExtVector {
            num_props: 1,
            meta_data: vec![PropertyMetaDataExt {
                version: 1,
                time_changed: 13_000_000_000,
                uuid_dsa_originating: Uuid::from_bytes([7; 16]),
                usn_originating: 100 + i64::from(n),
            }],
        }),
    })
}

fn get_nc_changes_stub(with_secret: bool) -> Result<Vec<u8>, Error> {
    let objects = (1..=3)
        .map(|n| account(n, with_secret && n == 3))
        .collect::<Result<Vec<_>, _>>()?;
    let mut schema_info = vec![0; 21];
    schema_info[0] = 0xff;
    let entries = vec![
        PrefixTableEntry {
            ndx: 9,
            prefix: OidT {
                length: 8,
                elements: Some(ByteArray(AD_PREFIX.to_vec())),
            },
        },
        PrefixTableEntry {
            ndx: 0,
            prefix: OidT {
                length: 21,
                elements: Some(ByteArray(schema_info)),
            },
        },
    ];
    let usn = UsnVector {
        usn_high_obj_update: 4242,
        usn_reserved: 0,
        usn_high_prop_update: 4242,
    };
    let reply = GetNcChangesReply::V6(GetNcChangesReplyV6 {
        uuid_dsa_obj_src: Uuid::from_bytes([1; 16]),
        uuid_invoc_id_src: Uuid::from_bytes([2; 16]),
        nc: Some(DsName::from_dn("DC=lab,DC=test")?),
        usnvec_from: UsnVector::default(),
        usnvec_to: usn,
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
            prefix_count: 2,
            entries: Some(entries),
        },
        extended_ret: 0,
        num_objects: 3,
        num_bytes: 0,
        objects: ObjectList(objects),
        more_data: 0,
        num_nc_size_objects: 0,
        num_nc_size_values: 0,
        num_values: 1,
        values: Some(vec![ReplValInfV1 {
            object: Ref(DsName::from_dn("CN=group,DC=lab,DC=test")?),
            attr_typ: 0x0002_001f,
            aval: value(vec![1, 2]),
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
    });
    let mut enc = NdrEncoder::new();
    enc.write_u32(6);
    enc.encode(&reply)?;
    enc.write_u32(0);
    Ok(enc.finish())
}

fn bind_stub() -> Result<Vec<u8>, Error> {
    let ext = ExtensionsInt {
        flags: 0x0400_8401,
        pid: 1234,
        ..ExtensionsInt::default()
    };
    let handle = ContextHandle {
        attributes: 0,
        uuid: Uuid::from_bytes([9; 16]),
    };
    let mut enc = NdrEncoder::new();
    enc.encode(&Some(ext.to_extensions()))?;
    enc.encode(&handle)?;
    enc.write_u32(0);
    Ok(enc.finish())
}

fn unbind_stub() -> Result<Vec<u8>, Error> {
    let mut enc = NdrEncoder::new();
    enc.encode(&ContextHandle::default())?;
    enc.write_u32(0);
    Ok(enc.finish())
}

/// Leaves PDUs as they are: the fuzz target's provider does the same on the way back.
struct Transparent;

impl PduProtection for Transparent {
    fn token_len(&self) -> usize {
        16
    }

    fn seal(&mut self, _pdu: &mut [u8], _regions: &AuthRegions) -> Result<(), RpcError> {
        Ok(())
    }

    fn unseal(&mut self, _pdu: &mut [u8], _regions: &AuthRegions) -> Result<(), RpcError> {
        Ok(())
    }
}

fn bind_ack() -> Result<Vec<u8>, Error> {
    let ack = BindAck {
        max_xmit_frag: 5840,
        max_recv_frag: 5840,
        assoc_group_id: 0x1234,
        secondary_address: "49152".into(),
        results: vec![ContextResult {
            result: ContextResultCode::ACCEPTANCE,
            reason: 0,
            transfer_syntax: NDR20,
        }],
    };
    Ok(Pdu::new(1, PduBody::BindAck(ack)).encode()?)
}

/// An `ept_map` answer with one `ncacn_ip_tcp` tower, in three fragments.
fn epm_response(sealed: bool) -> Result<Vec<u8>, Error> {
    let octets = TcpTower {
        interface: DRSUAPI,
        port: 49152,
        address: [127, 0, 0, 1].into(),
    }
    .to_octets();
    let stub = EptMapResponse {
        entry_handle: ContextHandle::default(),
        towers: vec![Twr {
            tower_length: octets.len() as u32,
            tower_octet_string: ByteArray(octets),
        }],
        status: 0,
    }
    .encode()?;
    let body = PduBody::Response(Response {
        alloc_hint: 0,
        context_id: 0,
        cancel_count: 0,
        stub,
    });
    let max_frag = 24 + 48 + if sealed { 24 } else { 0 };
    let mut out = Vec::new();
    for pdu in fragment(2, &body, max_frag, if sealed { 24 } else { 0 })? {
        match sealed {
            true => out.extend(encode_sealed(pdu, AuthType::NTLMSSP, 0, &mut Transparent)?),
            false => out.extend(pdu.encode()?),
        }
    }
    Ok(out)
}

fn fault() -> Result<Vec<u8>, Error> {
    let fault = Fault {
        alloc_hint: 0,
        context_id: 0,
        cancel_count: 0,
        flags: 0,
        status: FaultStatus::ACCESS_DENIED,
        stub: Vec::new(),
    };
    Ok(Pdu::new(2, PduBody::Fault(fault)).encode()?)
}
