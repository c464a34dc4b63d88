//! Round trips, hand-computed byte vectors and hostile-input properties for the NDR codec.

use std::rc::Rc;

use idbridge_ndr::{
    from_bytes, ndr_struct, ndr_union, to_bytes, ByteArray, ConformantVaryingArray, ContextHandle,
    FullPtr, NarrowString, NdrDecode, NdrDecoder, NdrEncode, NdrEncoder, NdrError, Ref,
    VaryingArray, WideString,
};
use proptest::prelude::*;
use uuid::{uuid, Uuid};

ndr_struct! {
    /// `{ u16 flags; [unique] u32 *next; [string] wchar_t name[]; }`
    #[derive(Debug, Clone, PartialEq)]
    struct Named {
        flags: u16,
        next: Option<u32>,
        [conformant] name: WideString,
    }
}

ndr_struct! {
    #[derive(Debug, Clone, PartialEq)]
    struct Padded {
        small: u8,
        big: u64,
    }
}

ndr_struct! {
    #[derive(Debug, Clone, PartialEq)]
    struct Inner {
        x: Option<u16>,
    }
}

ndr_struct! {
    #[derive(Debug, Clone, PartialEq)]
    struct Outer {
        a: Option<Inner>,
        b: Option<u32>,
    }
}

ndr_struct! {
    /// A linked list, like `REPLENTINFLIST`.
    #[derive(Debug, Clone, PartialEq)]
    struct Node {
        value: u32,
        next: Option<Box<Node>>,
    }
}

ndr_struct! {
    #[derive(Debug, Clone, PartialEq)]
    struct Shared {
        first: FullPtr<u32>,
        second: FullPtr<u32>,
    }
}

ndr_struct! {
    #[derive(Debug, Clone, PartialEq)]
    struct WithRef {
        target: Ref<u16>,
    }
}

ndr_union! {
    #[derive(Debug, Clone, PartialEq)]
    enum Level: u32 {
        1 => One(Named),
        6 => Six(Option<WideString>),
    }
}

ndr_struct! {
    /// Everything at once, for the property tests.
    #[derive(Debug, Clone, PartialEq)]
    struct Everything {
        byte: u8,
        signed: i16,
        hyper: i64,
        float: f64,
        flag: bool,
        guid: Uuid,
        handle: ContextHandle,
        fixed: [u16; 3],
        narrow: Option<NarrowString>,
        list: Option<Vec<Named>>,
        varying: VaryingArray<u32, 8>,
        level: Level,
        [conformant] tail: ConformantVaryingArray<Option<u32>>,
    }
}

/// Encodes, decodes, checks the result equals the input and returns the encoding.
fn round_trip<T: NdrEncode + NdrDecode + PartialEq + std::fmt::Debug>(
    value: &T,
) -> Result<Vec<u8>, NdrError> {
    let bytes = to_bytes(value)?;
    let back: T = from_bytes(&bytes)?;
    assert_eq!(&back, value);
    Ok(bytes)
}

#[test]
fn hoisted_string_and_deferred_pointer_match_hand_computed_bytes() {
    let value = Named {
        flags: 0x0102,
        next: Some(7),
        name: "ab".into(),
    };
    #[rustfmt::skip]
    let expected = [
        3, 0, 0, 0,             // hoisted max_count of `name`
        0x02, 0x01, 0, 0,       // flags, pad to 4
        0, 0, 2, 0,             // referent id of `next`
        0, 0, 0, 0, 3, 0, 0, 0, // name: offset, actual count
        b'a', 0, b'b', 0, 0, 0, // "ab\0" in UTF-16LE
        0, 0,                   // pad to 4
        7, 0, 0, 0,             // deferred *next
    ];
    assert_eq!(round_trip(&value).unwrap(), expected);
}

#[test]
fn structure_is_aligned_to_its_largest_member() {
    let mut enc = idbridge_ndr::NdrEncoder::new();
    enc.encode(&1u8).unwrap();
    enc.encode(&Padded { small: 2, big: 3 }).unwrap();
    assert_eq!(
        enc.finish(),
        [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn embedded_referents_follow_the_structure_depth_first_in_member_order() {
    let value = Outer {
        a: Some(Inner { x: Some(0x1111) }),
        b: Some(0x2222_2222),
    };
    #[rustfmt::skip]
    let expected = [
        0, 0, 2, 0, 4, 0, 2, 0, // ids of a and b
        8, 0, 2, 0,             // *a = Inner { id of x }
        0x11, 0x11, 0, 0,       // *x, pad
        0x22, 0x22, 0x22, 0x22, // *b
    ];
    assert_eq!(round_trip(&value).unwrap(), expected);
    assert_eq!(round_trip(&Outer { a: None, b: None }).unwrap(), [0; 8]);
}

#[test]
fn strings_arrays_and_guids_have_their_wire_layout() {
    assert_eq!(
        round_trip(&NarrowString::from("hi")).unwrap(),
        [3, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, b'h', b'i', 0]
    );
    assert_eq!(
        round_trip(&vec![1u16, 2]).unwrap(),
        [2, 0, 0, 0, 1, 0, 2, 0]
    );
    let varying = VaryingArray::<u8, 4> {
        offset: 1,
        items: vec![9],
    };
    assert_eq!(round_trip(&varying).unwrap(), [1, 0, 0, 0, 1, 0, 0, 0, 9]);
    let cv = ConformantVaryingArray {
        max_count: 5,
        offset: 0,
        items: vec![1u8, 2],
    };
    assert_eq!(
        round_trip(&cv).unwrap(),
        [5, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 2]
    );
    let guid = uuid!("e3514235-4b06-11d1-ab04-00c04fc2dcd2");
    assert_eq!(round_trip(&guid).unwrap(), guid.to_bytes_le());
    let handle = ContextHandle {
        attributes: 0,
        uuid: guid,
    };
    assert_eq!(round_trip(&handle).unwrap().len(), 20);
    assert!(ContextHandle::default().is_null());
}

#[test]
fn unions_carry_their_discriminant_and_reject_unknown_ones() {
    let six = Level::Six(Some("x".into()));
    let bytes = round_trip(&six).unwrap();
    assert_eq!(&bytes[..8], [6, 0, 0, 0, 0, 0, 2, 0]);
    assert_eq!(six.discriminant(), 6);
    let err = from_bytes::<Level>(&[2, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
    assert_eq!(
        err,
        NdrError::UnknownDiscriminant {
            union: "Level",
            value: 2,
            offset: 0
        }
    );
}

#[test]
fn full_pointers_share_one_referent() {
    let shared = Rc::new(42u32);
    let value = Shared {
        first: FullPtr(Some(Rc::clone(&shared))),
        second: FullPtr(Some(shared)),
    };
    let bytes = round_trip(&value).unwrap();
    assert_eq!(bytes, [0, 0, 2, 0, 0, 0, 2, 0, 42, 0, 0, 0]);
    let back: Shared = from_bytes(&bytes).unwrap();
    let (Some(a), Some(b)) = (&back.first.0, &back.second.0) else {
        panic!("both pointers are non-null");
    };
    assert!(Rc::ptr_eq(a, b));
    round_trip(&Shared {
        first: FullPtr(None),
        second: FullPtr(Some(Rc::new(1))),
    })
    .unwrap();
}

/// Full pointers to temporaries, encoded one parameter after the other (how a request stub is
/// written): the first referent is dropped before the second is allocated, and the allocator
/// may hand the second the first one's address. They are still two referents. (The endpoint
/// mapper once received a tower aliased to the object UUID this way, now and then.)
#[test]
fn full_pointers_to_dropped_temporaries_are_distinct() {
    for _ in 0..100 {
        let mut enc = NdrEncoder::new();
        enc.encode(&FullPtr(Some(Rc::new(1u32)))).unwrap();
        enc.encode(&FullPtr(Some(Rc::new(2u32)))).unwrap();
        assert_eq!(
            enc.finish(),
            [0, 0, 2, 0, 1, 0, 0, 0, 4, 0, 2, 0, 2, 0, 0, 0]
        );
    }
}

#[test]
fn ref_pointers_are_never_null() {
    assert_eq!(
        round_trip(&WithRef { target: Ref(5) }).unwrap(),
        [0, 0, 2, 0, 5, 0]
    );
    assert_eq!(
        from_bytes::<WithRef>(&[0, 0, 0, 0, 5, 0]).unwrap_err(),
        NdrError::NullRefPointer { offset: 0 }
    );
}

#[test]
fn huge_conformance_is_rejected_before_allocating() {
    let err = from_bytes::<Vec<u64>>(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).unwrap_err();
    assert!(
        matches!(
            err,
            NdrError::CountTooLarge {
                offset: 0,
                count: 0xffff_ffff,
                remaining: 4,
                ..
            }
        ),
        "{err}"
    );
    let err =
        from_bytes::<WideString>(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])
            .unwrap_err();
    assert!(
        matches!(err, NdrError::CountTooLarge { offset: 8, .. }),
        "{err}"
    );
}

#[test]
fn varying_counts_must_fit_their_bounds() {
    let err = from_bytes::<VaryingArray<u8, 2>>(&[1, 0, 0, 0, 2, 0, 0, 0, 1, 2]).unwrap_err();
    assert!(matches!(err, NdrError::Invalid { offset: 0, .. }), "{err}");
    let unterminated = [1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, b'x'];
    assert!(from_bytes::<NarrowString>(&unterminated).is_err());
}

#[test]
fn pointer_nesting_is_capped() {
    // Node { value, next != null } repeated: an endless list.
    let bytes: Vec<u8> = [1, 0, 0, 0, 4, 0, 2, 0].repeat(64);
    let err = NdrDecoder::new(&bytes)
        .with_max_depth(10)
        .decode::<Node>()
        .unwrap_err();
    assert!(
        matches!(err, NdrError::DepthExceeded { max: 10, .. }),
        "{err}"
    );

    // At the default cap, a hostile endless list errors out instead of exhausting the stack
    // of a default 2 MiB test thread.
    let bytes: Vec<u8> = [1, 0, 0, 0, 4, 0, 2, 0].repeat(idbridge_ndr::DEFAULT_MAX_DEPTH + 8);
    let err = from_bytes::<Node>(&bytes).unwrap_err();
    assert!(matches!(err, NdrError::DepthExceeded { .. }), "{err}");

    let mut list = None;
    for value in 0..20 {
        list = Some(Box::new(Node { value, next: list }));
    }
    round_trip(&list).unwrap();
}

#[test]
fn big_endian_drep_is_honoured() {
    let bytes = [0, 0, 0, 5, 0, 7];
    let mut dec = NdrDecoder::with_drep(&bytes, [0x00, 0, 0, 0]).unwrap();
    assert_eq!(dec.decode::<u32>().unwrap(), 5);
    assert_eq!(dec.decode::<u16>().unwrap(), 7);
    assert!(matches!(
        NdrDecoder::with_drep(&bytes, [0x11, 0, 0, 0]),
        Err(NdrError::UnsupportedDrep { .. })
    ));
}

#[test]
fn truncation_reports_the_offset() {
    assert_eq!(
        from_bytes::<u64>(&[0; 7]).unwrap_err(),
        NdrError::Truncated {
            offset: 0,
            needed: 8,
            remaining: 7
        }
    );
    assert!(matches!(
        from_bytes::<u8>(&[1, 2]).unwrap_err(),
        NdrError::Invalid {
            what: "stub",
            offset: 1,
            ..
        }
    ));
}

fn named() -> impl Strategy<Value = Named> {
    (any::<u16>(), any::<Option<u32>>(), "[^\0]{0,8}").prop_map(|(flags, next, name)| Named {
        flags,
        next,
        name: WideString(name),
    })
}

fn everything() -> impl Strategy<Value = Everything> {
    (
        (
            any::<u8>(),
            any::<i16>(),
            any::<i64>(),
            -1e9f64..1e9,
            any::<bool>(),
        ),
        (any::<u128>(), any::<u32>(), any::<[u16; 3]>()),
        (
            proptest::option::of("[a-z]{0,6}"),
            proptest::option::of(proptest::collection::vec(named(), 0..4)),
            proptest::collection::vec(any::<u32>(), 0..8),
        ),
        prop_oneof![
            named().prop_map(Level::One),
            proptest::option::of("[^\0]{0,4}").prop_map(|s| Level::Six(s.map(WideString))),
        ],
        proptest::collection::vec(any::<Option<u32>>(), 0..6),
    )
        .prop_map(
            |(
                (byte, signed, hyper, float, flag),
                (guid, attrs, fixed),
                (narrow, list, var),
                level,
                tail,
            )| {
                Everything {
                    byte,
                    signed,
                    hyper,
                    float,
                    flag,
                    guid: Uuid::from_u128(guid),
                    handle: ContextHandle {
                        attributes: attrs,
                        uuid: Uuid::from_u128(guid.rotate_left(7)),
                    },
                    fixed,
                    narrow: narrow.map(NarrowString),
                    list,
                    varying: VaryingArray {
                        offset: 0,
                        items: var,
                    },
                    level,
                    tail: ConformantVaryingArray {
                        max_count: tail.len() as u32,
                        offset: 0,
                        items: tail,
                    },
                }
            },
        )
}

proptest! {
    #[test]
    fn everything_round_trips(value in everything()) {
        round_trip(&value)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = from_bytes::<Everything>(&bytes);
        let _ = from_bytes::<Node>(&bytes);
        let _ = from_bytes::<Level>(&bytes);
        let _ = from_bytes::<Shared>(&bytes);
        let _ = from_bytes::<Vec<WideString>>(&bytes);
        let _ = from_bytes::<Option<ByteArray>>(&bytes);
    }

    #[test]
    fn mutated_encodings_never_panic(value in everything(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = to_bytes(&value).unwrap();
        for (index, byte) in flips {
            let i = index.index(bytes.len());
            bytes[i] = byte;
        }
        let _ = from_bytes::<Everything>(&bytes);
    }
}
