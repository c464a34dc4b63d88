//! The NDR decoders of what a DC sends back: DRSBind, DRSGetNCChanges (the big one: unions,
//! conformant arrays, deferred pointers, the prefix table, encrypted secrets) and DRSUnbind.
//! Errors are fine; a panic, a hang or an unbounded allocation is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|stub: &[u8]| {
    let _ = idbridge_drsuapi::idl::decode_get_nc_changes_reply(stub);
    let _ = idbridge_drsuapi::idl::decode_bind_reply(stub);
    let _ = idbridge_drsuapi::idl::decode_unbind_reply(stub);
});
