//! Pure replication logic: the `DRSGetNCChanges` V8 request for a page, and the accounts and
//! watermark a V6 reply yields.

use core::fmt;

use idbridge_core::{ObjectGuid, Sid};
use idbridge_ndr::{ByteArray, Ref};
use idbridge_phs::NtHash;
use uuid::Uuid;

use crate::crypto::nt_hash_from_unicode_pwd;
use crate::error::DrsError;
use crate::idl::{
    drs, exop, AttrVal, DsName, GetNcChangesReplyV6, GetNcChangesRequestV8, OidT,
    PartialAttrVectorV1Ext, PrefixTableEntry, SchemaPrefixTable, UptodateCursorV1,
    UptodateVectorV1Ext, UsnVector,
};
use crate::prefix::{AttrTyp, PrefixTable};

/// Attributes hash sync reads, by OID; index 9 of every DC's default prefix table holds their
/// common prefix `1.2.840.113556.1.4`.
mod oid {
    pub const OBJECT_SID: &str = "1.2.840.113556.1.4.146";
    pub const SAM_ACCOUNT_NAME: &str = "1.2.840.113556.1.4.221";
    pub const USER_ACCOUNT_CONTROL: &str = "1.2.840.113556.1.4.8";
    pub const UNICODE_PWD: &str = "1.2.840.113556.1.4.90";
    pub const OBJECT_GUID: &str = "1.2.840.113556.1.4.2";
}
const DEFAULT_PREFIX_NDX: u16 = 9;

/// A schemaInfo entry closes a prefix table: 0xFF, a 4-byte schema revision, a DSA GUID.
const SCHEMA_INFO_LEN: usize = 21;
const SCHEMA_INFO_MARKER: u8 = 0xff;

fn schema_info_placeholder() -> Vec<u8> {
    let mut blob = vec![0; SCHEMA_INFO_LEN];
    if let Some(b) = blob.first_mut() {
        *b = SCHEMA_INFO_MARKER;
    }
    blob
}

fn is_schema_info(prefix: &[u8]) -> bool {
    prefix.len() == SCHEMA_INFO_LEN && prefix.first() == Some(&SCHEMA_INFO_MARKER)
}

/// One up-to-dateness cursor: every change originated by `invocation_id` up to `usn` is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UpToDateCursor {
    pub invocation_id: Uuid,
    pub usn: i64,
}

/// Where a replication stopped, to persist and pass back as `since` for the next delta.
///
/// It is only meaningful for the same DC (`source_invocation_id`): a DC that sees another
/// invocation id starts over from USN 0.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Watermark {
    /// `uuidInvocIdSrc` of the DC that issued the watermark.
    pub source_invocation_id: Uuid,
    /// `usnvecTo.usnHighObjUpdate`.
    pub high_obj_update: i64,
    /// `usnvecTo.usnHighPropUpdate`.
    pub high_prop_update: i64,
    /// The up-to-dateness vector: filters out changes already seen via other DCs.
    pub up_to_date: Vec<UpToDateCursor>,
}

/// A replicated object carrying at least one hash-sync attribute. In a delta, only the changed
/// attributes are present (`None` otherwise); key records by `object_guid`.
pub struct ReplicatedAccount {
    pub object_guid: ObjectGuid,
    pub dn: String,
    pub sid: Option<Sid>,
    pub sam_account_name: Option<String>,
    pub user_account_control: Option<u32>,
    /// `Some` when `unicodePwd` was replicated with a value.
    pub nt_hash: Option<NtHash>,
}

impl fmt::Debug for ReplicatedAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicatedAccount")
            .field("object_guid", &self.object_guid)
            .field("dn", &self.dn)
            .field("sid", &self.sid)
            .field("sam_account_name", &self.sam_account_name)
            .field("user_account_control", &self.user_account_control)
            .field("nt_hash", &self.nt_hash.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One page of a replication cycle.
#[derive(Debug)]
pub struct SecretsPage {
    pub accounts: Vec<ReplicatedAccount>,
    /// Objects the DC sent in this page (accounts or not).
    pub objects_in_page: usize,
    /// Resume point after this page; after the last page, the one to persist.
    pub watermark: Watermark,
    /// `fMoreData`: further pages follow in this cycle.
    pub more_data: bool,
}

/// The attributes requested and how the client's prefix table names them.
#[derive(Debug, Clone)]
pub struct AttributeSet {
    table: PrefixTable,
    attids: Vec<AttrTyp>,
}

impl AttributeSet {
    pub fn hash_sync() -> Result<Self, DrsError> {
        let mut table = PrefixTable::default();
        let mut attids = [
            oid::OBJECT_GUID,
            oid::OBJECT_SID,
            oid::SAM_ACCOUNT_NAME,
            oid::USER_ACCOUNT_CONTROL,
            oid::UNICODE_PWD,
        ]
        .iter()
        .map(|o| table.attid_for(o, DEFAULT_PREFIX_NDX))
        .collect::<Result<Vec<_>, _>>()?;
        // DCs binary-search the partial attribute set.
        attids.sort_unstable();
        Ok(Self { table, attids })
    }

    fn prefix_table(&self) -> Result<SchemaPrefixTable, DrsError> {
        let entries = self
            .table
            .entries()
            .iter()
            .map(|(ndx, prefix)| {
                Ok(PrefixTableEntry {
                    ndx: u32::from(*ndx),
                    prefix: OidT {
                        length: count(prefix.len())?,
                        elements: Some(ByteArray(prefix.clone())),
                    },
                })
            })
            .collect::<Result<Vec<_>, DrsError>>()?;
        let mut entries = entries;
        // Samba rejects a prefix table that does not end with a schemaInfo entry; our
        // revision 0 claims no particular schema version.
        entries.push(PrefixTableEntry {
            ndx: 0,
            prefix: OidT {
                length: count(SCHEMA_INFO_LEN)?,
                elements: Some(ByteArray(schema_info_placeholder())),
            },
        });
        Ok(SchemaPrefixTable {
            prefix_count: count(entries.len())?,
            entries: Some(entries),
        })
    }
}

fn count(n: usize) -> Result<u32, DrsError> {
    u32::try_from(n).map_err(|_| DrsError::Protocol(format!("count {n} exceeds 32 bits")))
}

/// Where the next request of a cycle starts.
#[derive(Debug, Clone)]
pub struct CycleState {
    /// `uuidInvocIdSrc` to send (nil on a first full replication).
    pub invocation_id: Uuid,
    pub usn_from: UsnVector,
    /// The vector the cycle started with; it stays the same on every page.
    pub up_to_date: Vec<UpToDateCursor>,
}

impl CycleState {
    pub fn start(since: Option<&Watermark>) -> Self {
        match since {
            None => Self {
                invocation_id: Uuid::nil(),
                usn_from: UsnVector::default(),
                up_to_date: Vec::new(),
            },
            Some(w) => Self {
                invocation_id: w.source_invocation_id,
                usn_from: UsnVector {
                    usn_high_obj_update: w.high_obj_update,
                    usn_reserved: 0,
                    usn_high_prop_update: w.high_prop_update,
                },
                up_to_date: w.up_to_date.clone(),
            },
        }
    }
}

/// Page size limits of a request.
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    pub max_objects: u32,
    pub max_bytes: u32,
}

impl Default for PageLimits {
    fn default() -> Self {
        Self {
            max_objects: 1000,
            max_bytes: 8 << 20,
        }
    }
}

/// The request fields every `DRSGetNCChanges` of ours shares: the partial attribute set of hash
/// sync, our prefix table, writable replica semantics, no watermark.
fn base_request(
    nc: DsName,
    client_dsa: Uuid,
    attrs: &AttributeSet,
    limits: PageLimits,
) -> Result<GetNcChangesRequestV8, DrsError> {
    Ok(GetNcChangesRequestV8 {
        uuid_dsa_obj_dest: client_dsa,
        uuid_invoc_id_src: Uuid::nil(),
        nc: Ref(nc),
        usnvec_from: UsnVector::default(),
        up_to_date_vec_dest: None,
        flags: drs::WRIT_REP,
        max_objects: limits.max_objects,
        max_bytes: limits.max_bytes,
        extended_op: 0,
        fsmo_info: 0,
        partial_attr_set: Some(PartialAttrVectorV1Ext {
            version: 1,
            reserved1: 0,
            num_attrs: count(attrs.attids.len())?,
            attrs: attrs.attids.clone(),
        }),
        partial_attr_set_ex: None,
        prefix_table_dest: attrs.prefix_table()?,
    })
}

/// The V8 request for the next page of the naming context `nc_dn`.
pub fn build_request(
    nc_dn: &str,
    client_dsa: Uuid,
    state: &CycleState,
    attrs: &AttributeSet,
    limits: PageLimits,
) -> Result<GetNcChangesRequestV8, DrsError> {
    let full = state.usn_from == UsnVector::default();
    let utd = (!state.up_to_date.is_empty())
        .then(|| {
            let cursors: Vec<_> = state
                .up_to_date
                .iter()
                .map(|c| UptodateCursorV1 {
                    uuid_dsa: c.invocation_id,
                    usn_high_prop_update: c.usn,
                })
                .collect();
            Ok::<_, DrsError>(UptodateVectorV1Ext {
                version: 1,
                reserved1: 0,
                num_cursors: count(cursors.len())?,
                reserved2: 0,
                cursors,
            })
        })
        .transpose()?;
    let mut request = base_request(DsName::from_dn(nc_dn)?, client_dsa, attrs, limits)?;
    request.uuid_invoc_id_src = state.invocation_id;
    request.usnvec_from = state.usn_from;
    request.up_to_date_vec_dest = utd;
    request.flags |= drs::GET_ANC | if full { drs::INIT_SYNC } else { 0 };
    Ok(request)
}

/// The V8 request for one object by objectGUID (`EXOP_REPL_OBJ`): the "naming context" is the
/// object itself, and the DC reads just it instead of scanning the domain for changes. No
/// watermark or up-to-dateness vector is sent, so every requested attribute comes back whatever
/// was replicated before, and none is received, so a cycle's watermark is left alone.
pub fn build_object_request(
    object: ObjectGuid,
    client_dsa: Uuid,
    attrs: &AttributeSet,
) -> Result<GetNcChangesRequestV8, DrsError> {
    let limits = PageLimits {
        max_objects: 1,
        ..PageLimits::default()
    };
    let nc = DsName::from_guid(Uuid::from_bytes_le(*object.as_bytes()));
    let mut request = base_request(nc, client_dsa, attrs, limits)?;
    request.extended_op = exop::REPL_OBJ;
    Ok(request)
}

/// The hash-sync attributes of the objects in a reply, secrets decrypted; every reply,
/// paged or single-object, is read here.
fn accounts_of_reply(
    reply: &GetNcChangesReplyV6,
    session_key: &[u8],
) -> Result<Vec<ReplicatedAccount>, DrsError> {
    if reply.drs_error != 0 {
        return Err(DrsError::Win32 {
            call: "IDL_DRSGetNCChanges",
            code: reply.drs_error,
        });
    }
    let table = server_prefix_table(&reply.prefix_table_src)?;
    reply
        .objects
        .0
        .iter()
        .map(|node| account_of(&node.entinf, &table, session_key))
        .filter_map(Result::transpose)
        .collect()
}

/// Turns a reply into a page and advances `state` to the next request of the cycle.
pub fn process_reply(
    reply: GetNcChangesReplyV6,
    state: &mut CycleState,
    session_key: &[u8],
) -> Result<SecretsPage, DrsError> {
    let accounts = accounts_of_reply(&reply, session_key)?;
    let objects_in_page = reply.objects.0.len();
    let more_data = reply.more_data != 0;
    state.invocation_id = reply.uuid_invoc_id_src;
    state.usn_from = reply.usnvec_to;
    let up_to_date = match (&reply.up_to_date_vec_src, more_data) {
        (Some(v), false) => {
            if usize::try_from(v.num_cursors).ok() != Some(v.cursors.len()) {
                return Err(DrsError::Protocol(
                    "up-to-dateness vector count mismatch".into(),
                ));
            }
            v.cursors
                .iter()
                .map(|c| UpToDateCursor {
                    invocation_id: c.uuid_dsa,
                    usn: c.usn_high_prop_update,
                })
                .collect()
        }
        _ => state.up_to_date.clone(),
    };
    Ok(SecretsPage {
        accounts,
        objects_in_page,
        watermark: Watermark {
            source_invocation_id: reply.uuid_invoc_id_src,
            high_obj_update: reply.usnvec_to.usn_high_obj_update,
            high_prop_update: reply.usnvec_to.usn_high_prop_update,
            up_to_date,
        },
        more_data,
    })
}

/// What a single-object request brought back. Deliberately no watermark: the reply's USNs say
/// nothing about the rest of the domain.
#[derive(Debug)]
pub struct ObjectSecrets {
    /// The object, if it carries hash-sync attributes (an empty list otherwise).
    pub accounts: Vec<ReplicatedAccount>,
    /// Objects the DC sent (the requested one, or none).
    pub objects_in_reply: usize,
}

/// Names `object` in a Win32 failure of a single-object request.
pub(crate) fn about_object(e: DrsError, object: ObjectGuid) -> DrsError {
    match e {
        DrsError::Win32 { call, code } => DrsError::Object {
            call,
            object: object.to_string(),
            code,
        },
        e => e,
    }
}

/// Reads the reply to [`build_object_request`] for `object`.
pub fn process_object_reply(
    reply: GetNcChangesReplyV6,
    object: ObjectGuid,
    session_key: &[u8],
) -> Result<ObjectSecrets, DrsError> {
    if reply.extended_ret != exop::ERR_SUCCESS {
        return Err(DrsError::ExtendedOperation {
            object: object.to_string(),
            code: reply.extended_ret,
        });
    }
    // One object never spans pages; a DC that says otherwise is not answering this request.
    if reply.more_data != 0 {
        return Err(DrsError::Protocol(format!(
            "more data announced for the single object {object}"
        )));
    }
    let accounts = accounts_of_reply(&reply, session_key).map_err(|e| about_object(e, object))?;
    if let Some(other) = accounts.iter().find(|a| a.object_guid != object) {
        return Err(DrsError::Protocol(format!(
            "asked for object {object}, the DC sent {} ({})",
            other.object_guid, other.dn
        )));
    }
    Ok(ObjectSecrets {
        accounts,
        objects_in_reply: reply.objects.0.len(),
    })
}

fn server_prefix_table(t: &SchemaPrefixTable) -> Result<PrefixTable, DrsError> {
    let entries = t.entries.as_deref().unwrap_or_default();
    if usize::try_from(t.prefix_count).ok() != Some(entries.len()) {
        return Err(DrsError::Protocol("prefix table count mismatch".into()));
    }
    let pairs = entries
        .iter()
        .map(|e| {
            let bytes = e
                .prefix
                .elements
                .as_ref()
                .map(|b| b.0.clone())
                .unwrap_or_default();
            if usize::try_from(e.prefix.length).ok() != Some(bytes.len()) {
                return Err(DrsError::Protocol("prefix length mismatch".into()));
            }
            Ok((e.ndx, bytes))
        })
        .collect::<Result<Vec<_>, DrsError>>()?;
    // The trailing schemaInfo entry is no OID prefix.
    let mut pairs = pairs;
    if pairs.last().is_some_and(|(_, p)| is_schema_info(p)) {
        pairs.pop();
    }
    PrefixTable::from_entries(pairs)
}

/// The values of one attribute, checking the counts the server declared.
fn values(attr: &crate::idl::Attr) -> Result<Vec<&[u8]>, DrsError> {
    let vals = attr.val_block.vals.as_deref().unwrap_or_default();
    if usize::try_from(attr.val_block.val_count).ok() != Some(vals.len()) {
        return Err(DrsError::Protocol(format!(
            "attribute {:#x}: value count mismatch",
            attr.attr_typ
        )));
    }
    vals.iter()
        .map(|AttrVal { val_len, val }| {
            let bytes = val.as_ref().map(|b| b.0.as_slice()).unwrap_or_default();
            match usize::try_from(*val_len).ok() == Some(bytes.len()) {
                true => Ok(bytes),
                false => Err(DrsError::Protocol(format!(
                    "attribute {:#x}: value length mismatch",
                    attr.attr_typ
                ))),
            }
        })
        .collect()
}

fn single<'a>(vals: &[&'a [u8]], name: &str) -> Result<Option<&'a [u8]>, DrsError> {
    match vals {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(DrsError::Protocol(format!("{name} has several values"))),
    }
}

fn account_of(
    entinf: &crate::idl::EntInf,
    table: &PrefixTable,
    session_key: &[u8],
) -> Result<Option<ReplicatedAccount>, DrsError> {
    let name = entinf
        .name
        .as_ref()
        .ok_or_else(|| DrsError::Protocol("replicated object without a name".into()))?;
    let object_guid = ObjectGuid::from_bytes(&name.guid.to_bytes_le())
        .map_err(|e| DrsError::Protocol(e.to_string()))?;
    let dn = name.dn()?;
    let mut sid = name
        .sid_bytes()?
        .map(Sid::from_bytes)
        .transpose()
        .map_err(|e| DrsError::Protocol(format!("{dn}: {e}")))?;
    let attrs = entinf.attr_block.attrs.as_deref().unwrap_or_default();
    if usize::try_from(entinf.attr_block.attr_count).ok() != Some(attrs.len()) {
        return Err(DrsError::Protocol(format!(
            "{dn}: attribute count mismatch"
        )));
    }
    let mut sam_account_name = None;
    let mut user_account_control = None;
    let mut unicode_pwd = None;
    let mut relevant = false;
    for attr in attrs {
        let Some(oid) = table.oid_of(attr.attr_typ) else {
            continue;
        };
        let vals = values(attr)?;
        match oid.as_str() {
            oid::SAM_ACCOUNT_NAME => {
                relevant = true;
                sam_account_name = single(&vals, "sAMAccountName")?
                    .map(utf16le)
                    .transpose()
                    .map_err(|_| DrsError::Protocol(format!("{dn}: sAMAccountName")))?;
            }
            oid::USER_ACCOUNT_CONTROL => {
                relevant = true;
                user_account_control = single(&vals, "userAccountControl")?
                    .map(|v| <[u8; 4]>::try_from(v).map(u32::from_le_bytes))
                    .transpose()
                    .map_err(|_| DrsError::Protocol(format!("{dn}: userAccountControl")))?;
            }
            oid::OBJECT_SID => {
                if let Some(v) = single(&vals, "objectSid")? {
                    sid = Some(
                        Sid::from_bytes(v).map_err(|e| DrsError::Protocol(format!("{dn}: {e}")))?,
                    );
                }
            }
            oid::UNICODE_PWD => {
                relevant = true;
                unicode_pwd = single(&vals, "unicodePwd")?;
            }
            _ => {}
        }
    }
    if !relevant {
        return Ok(None);
    }
    let nt_hash = unicode_pwd
        .map(|payload| {
            let rid = sid.as_ref().and_then(Sid::rid).ok_or_else(|| {
                DrsError::Protocol(format!("{dn}: unicodePwd without an objectSid"))
            })?;
            nt_hash_from_unicode_pwd(session_key, payload, rid)
        })
        .transpose()?;
    Ok(Some(ReplicatedAccount {
        object_guid,
        dn,
        sid,
        sam_account_name,
        user_account_control,
        nt_hash,
    }))
}

fn utf16le(bytes: &[u8]) -> Result<String, ()> {
    let chunks = bytes.chunks_exact(2);
    if !chunks.remainder().is_empty() {
        return Err(());
    }
    let units: Vec<u16> = chunks
        .filter_map(|c| <[u8; 2]>::try_from(c).ok())
        .map(u16::from_le_bytes)
        .collect();
    String::from_utf16(&units).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idl::samples::{sample_object, sample_reply};
    use crate::idl::GetNcChangesReply;

    fn reply(objects: Vec<crate::idl::ReplEntInf>) -> GetNcChangesReplyV6 {
        let GetNcChangesReply::V6(mut reply) = sample_reply(objects);
        reply.more_data = 0;
        reply.extended_ret = exop::ERR_SUCCESS;
        reply
    }

    fn guid(n: u8) -> ObjectGuid {
        ObjectGuid::from_bytes(&Uuid::from_bytes([n; 16]).to_bytes_le()).unwrap()
    }

    #[test]
    fn an_object_request_names_the_object_and_carries_no_watermark() {
        let attrs = AttributeSet::hash_sync().unwrap();
        let object = ObjectGuid::parse("01020304-0506-0708-090a-0b0c0d0e0f10").unwrap();
        let request = build_object_request(object, Uuid::nil(), &attrs).unwrap();
        assert_eq!(request.extended_op, exop::REPL_OBJ);
        assert_eq!(
            request.nc.0.guid.to_string(),
            "01020304-0506-0708-090a-0b0c0d0e0f10"
        );
        assert_eq!(request.nc.0.dn().unwrap(), "");
        assert_eq!(request.usnvec_from, UsnVector::default());
        assert_eq!(request.up_to_date_vec_dest, None);
        assert_eq!(request.flags, drs::WRIT_REP);
        // The same partial attribute set and prefix table as a cycle's pages.
        let page = build_request(
            "DC=x",
            Uuid::nil(),
            &CycleState::start(None),
            &attrs,
            PageLimits::default(),
        )
        .unwrap();
        assert_eq!(request.partial_attr_set, page.partial_attr_set);
        assert_eq!(request.prefix_table_dest, page.prefix_table_dest);
        assert_eq!(page.flags, drs::WRIT_REP | drs::GET_ANC | drs::INIT_SYNC);
    }

    #[test]
    fn an_object_reply_yields_that_account_only() {
        let secrets = process_object_reply(reply(vec![sample_object(3, false)]), guid(3), &[]);
        let secrets = secrets.unwrap();
        assert_eq!(secrets.objects_in_reply, 1);
        let [account] = secrets.accounts.as_slice() else {
            panic!("{secrets:?}");
        };
        assert_eq!(account.object_guid, guid(3));
        assert_eq!(account.sam_account_name.as_deref(), Some("u\u{3}"));

        // Another object than the one asked for is not taken for it.
        let err = process_object_reply(reply(vec![sample_object(4, false)]), guid(3), &[]);
        assert!(matches!(err, Err(DrsError::Protocol(_))), "{err:?}");
        // Nothing (a deleted object's tombstone carries none of the attributes).
        let empty = process_object_reply(reply(Vec::new()), guid(3), &[]).unwrap();
        assert!(empty.accounts.is_empty());
    }

    #[test]
    fn a_failed_object_reply_names_the_object() {
        let mut refused = reply(Vec::new());
        refused.extended_ret = 2;
        let err = process_object_reply(refused, guid(3), &[]).unwrap_err();
        assert!(
            matches!(&err, DrsError::ExtendedOperation { code: 2, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(&guid(3).to_string()), "{err}");

        let mut failed = reply(Vec::new());
        failed.drs_error = 8439;
        let err = process_object_reply(failed, guid(3), &[]).unwrap_err();
        assert!(
            matches!(&err, DrsError::Object { code: 8439, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(&guid(3).to_string()), "{err}");
        assert!(err.connection_usable());

        let mut paged = reply(Vec::new());
        paged.more_data = 1;
        assert!(process_object_reply(paged, guid(3), &[]).is_err());
    }
}
