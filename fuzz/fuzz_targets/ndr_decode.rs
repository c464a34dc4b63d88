//! The NDR20 decoders of what a DC sends back: DRSBind, DRSGetNCChanges (the big one: unions,
//! conformant and varying arrays, deferred pointers, the object linked list, DSNAMEs) and
//! DRSUnbind, then what the client does with a decoded reply (`process_reply` and, for a
//! single-object request, `process_object_reply`: prefix table,
//! OIDs, SIDs, UTF-16 names, secret decryption) and with the server's DRS extensions.
//! Errors are fine; a panic, a hang or an unbounded allocation is a bug.
#![no_main]

use idbridge_drsuapi::idl::{self, ExtensionsInt, GetNcChangesReply};
use idbridge_core::ObjectGuid;
use idbridge_drsuapi::replicate::{process_object_reply, process_reply, CycleState};
use libfuzzer_sys::fuzz_target;

/// Any fixed key: the fuzzer cannot forge the checksum under an unknown one anyway, and a
/// fixed one keeps runs reproducible.
const SESSION_KEY: [u8; 16] = [0x42; 16];

fuzz_target!(|stub: &[u8]| {
    if let Ok((GetNcChangesReply::V6(reply), _status)) = idl::decode_get_nc_changes_reply(stub) {
        let _ = process_reply(reply.clone(), &mut CycleState::start(None), &SESSION_KEY);
        if let Ok(object) = ObjectGuid::from_bytes(&[7; 16]) {
            let _ = process_object_reply(reply, object, &SESSION_KEY);
        }
    }
    if let Ok((Some(ext), _handle, _status)) = idl::decode_bind_reply(stub) {
        let _ = ExtensionsInt::parse(&ext);
    }
    let _ = idl::decode_unbind_reply(stub);
});
