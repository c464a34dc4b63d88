//! Decodes arbitrary bytes as a DRSUAPI-like mix of NDR constructs; any panic, overflow or
//! runaway allocation is a bug. Whatever decodes must re-encode to something that decodes to
//! the same value.
#![no_main]

use idbridge_ndr::{
    from_bytes, ndr_struct, ndr_union, to_bytes, ByteArray, ConformantVaryingArray, ContextHandle,
    FullPtr, NarrowString, Ref, VaryingArray, WideString,
};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

ndr_struct! {
    #[derive(Debug, PartialEq)]
    struct Entry {
        guid: Uuid,
        name: Option<WideString>,
        next: Option<Box<Entry>>,
        [conformant] blob: ConformantVaryingArray<u8>,
    }
}

ndr_union! {
    #[derive(Debug, PartialEq)]
    enum Message: u32 {
        1 => List(Option<Entry>),
        2 => Handle(ContextHandle),
        3 => Strings(Vec<Option<NarrowString>>),
        4 => Shared(FullPtr<u64>),
    }
}

ndr_struct! {
    #[derive(Debug, PartialEq)]
    struct Top {
        version: u32,
        message: Message,
        window: VaryingArray<u16, 16>,
        target: Ref<i64>,
        raw: Option<ByteArray>,
        [conformant] counts: Vec<u32>,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(top) = from_bytes::<Top>(data) {
        let again = to_bytes(&top).ok().and_then(|b| from_bytes::<Top>(&b).ok());
        assert_eq!(again.as_ref(), Some(&top));
    }
});
