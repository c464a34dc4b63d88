//! Declarative macros that define NDR structures and non-encapsulated unions together with
//! their [`NdrEncode`](crate::NdrEncode) / [`NdrDecode`](crate::NdrDecode) impls.

/// Defines a structure (all fields public, in wire order) and its NDR impls.
///
/// A conformant last member (conformant or conformant-varying array, `[string]`) is marked
/// `[conformant]`: its maximum count is then written at the start of the structure, as C706
/// 14.3.7.2 requires, while the rest of it stays last. Nested structures ending in a conformant
/// member are not supported.
///
/// ```
/// idbridge_ndr::ndr_struct! {
///     /// `{ u32 flags; [size_is(count)] u16 data[]; }`
///     #[derive(Debug, PartialEq)]
///     pub struct Blob {
///         flags: u32,
///         [conformant] data: Vec<u16>,
///     }
/// }
/// let blob = Blob { flags: 1, data: vec![7] };
/// let bytes = idbridge_ndr::to_bytes(&blob).unwrap();
/// assert_eq!(bytes, [1, 0, 0, 0, 1, 0, 0, 0, 7, 0]);
/// assert_eq!(idbridge_ndr::from_bytes::<Blob>(&bytes).unwrap(), blob);
/// ```
#[macro_export]
macro_rules! ndr_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty, )*
            [conformant] $(#[$cmeta:meta])* $cfield:ident : $cty:ty $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            $(#[$cmeta])* pub $cfield: $cty,
        }

        impl $crate::NdrType for $name {
            const ALIGN: usize = $crate::max_align(&[
                4, $(<$ty as $crate::NdrType>::ALIGN,)* <$cty as $crate::NdrType>::ALIGN
            ]);
            const MIN_WIRE_SIZE: usize = $crate::sum_sizes(&[
                $(<$ty as $crate::NdrType>::MIN_WIRE_SIZE,)* <$cty as $crate::NdrType>::MIN_WIRE_SIZE
            ]);
        }

        impl $crate::NdrEncode for $name {
            fn encode_primary(&self, enc: &mut $crate::NdrEncoder) -> $crate::Result<()> {
                enc.write_u32($crate::NdrConformant::max_count(&self.$cfield)?);
                enc.align(<Self as $crate::NdrType>::ALIGN);
                $( $crate::NdrEncode::encode_primary(&self.$field, enc)?; )*
                $crate::NdrConformant::encode_body(&self.$cfield, enc)
            }

            fn encode_deferred(&self, enc: &mut $crate::NdrEncoder) -> $crate::Result<()> {
                $( $crate::NdrEncode::encode_deferred(&self.$field, enc)?; )*
                $crate::NdrEncode::encode_deferred(&self.$cfield, enc)
            }
        }

        impl $crate::NdrDecode for $name {
            type Primary = (
                $(<$ty as $crate::NdrDecode>::Primary,)*
                <$cty as $crate::NdrDecode>::Primary,
            );

            fn decode_primary(dec: &mut $crate::NdrDecoder<'_>) -> $crate::Result<Self::Primary> {
                dec.align(4)?;
                let conformance_at = dec.position();
                let max_count = dec.read_u32()?;
                dec.align(<Self as $crate::NdrType>::ALIGN)?;
                Ok((
                    $( <$ty as $crate::NdrDecode>::decode_primary(dec)?, )*
                    <$cty as $crate::NdrConformant>::decode_body(dec, max_count, conformance_at)?,
                ))
            }

            fn decode_deferred(
                ($($field,)* $cfield,): Self::Primary,
                dec: &mut $crate::NdrDecoder<'_>,
            ) -> $crate::Result<Self> {
                Ok(Self {
                    $( $field: <$ty as $crate::NdrDecode>::decode_deferred($field, dec)?, )*
                    $cfield: <$cty as $crate::NdrDecode>::decode_deferred($cfield, dec)?,
                })
            }
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )+
        }

        impl $crate::NdrType for $name {
            const ALIGN: usize = $crate::max_align(&[$(<$ty as $crate::NdrType>::ALIGN),+]);
            const MIN_WIRE_SIZE: usize =
                $crate::sum_sizes(&[$(<$ty as $crate::NdrType>::MIN_WIRE_SIZE),+]);
        }

        impl $crate::NdrEncode for $name {
            fn encode_primary(&self, enc: &mut $crate::NdrEncoder) -> $crate::Result<()> {
                enc.align(<Self as $crate::NdrType>::ALIGN);
                $( $crate::NdrEncode::encode_primary(&self.$field, enc)?; )+
                Ok(())
            }

            fn encode_deferred(&self, enc: &mut $crate::NdrEncoder) -> $crate::Result<()> {
                $( $crate::NdrEncode::encode_deferred(&self.$field, enc)?; )+
                Ok(())
            }
        }

        impl $crate::NdrDecode for $name {
            type Primary = ( $(<$ty as $crate::NdrDecode>::Primary,)+ );

            fn decode_primary(dec: &mut $crate::NdrDecoder<'_>) -> $crate::Result<Self::Primary> {
                dec.align(<Self as $crate::NdrType>::ALIGN)?;
                Ok(( $( <$ty as $crate::NdrDecode>::decode_primary(dec)?, )+ ))
            }

            fn decode_deferred(
                ($($field,)+): Self::Primary,
                dec: &mut $crate::NdrDecoder<'_>,
            ) -> $crate::Result<Self> {
                Ok(Self {
                    $( $field: <$ty as $crate::NdrDecode>::decode_deferred($field, dec)?, )+
                })
            }
        }
    };
}

/// Defines a non-encapsulated union (`[switch_is(d)] union`) and its NDR impls.
///
/// On the wire the discriminant (of the unsigned integer type given after the name) precedes
/// the selected arm; an unknown discriminant is a decode error.
///
/// ```
/// idbridge_ndr::ndr_union! {
///     #[derive(Debug, PartialEq)]
///     pub enum Level: u32 {
///         1 => One(u16),
///         2 => Two(u64),
///     }
/// }
/// let bytes = idbridge_ndr::to_bytes(&Level::One(5)).unwrap();
/// assert_eq!(bytes, [1, 0, 0, 0, 5, 0]);
/// assert_eq!(idbridge_ndr::from_bytes::<Level>(&bytes).unwrap(), Level::One(5));
/// ```
#[macro_export]
macro_rules! ndr_union {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $disc:ty {
            $( $(#[$vmeta:meta])* $value:literal => $variant:ident($ty:ty) ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant($ty), )+
        }

        impl $name {
            /// The discriminant that selects this arm.
            pub fn discriminant(&self) -> $disc {
                match self {
                    $( Self::$variant(_) => $value, )+
                }
            }
        }

        impl $crate::NdrType for $name {
            const ALIGN: usize = $crate::max_align(&[
                <$disc as $crate::NdrType>::ALIGN, $(<$ty as $crate::NdrType>::ALIGN),+
            ]);
            const MIN_WIRE_SIZE: usize = <$disc as $crate::NdrType>::MIN_WIRE_SIZE;
        }

        impl $crate::NdrEncode for $name {
            fn encode_primary(&self, enc: &mut $crate::NdrEncoder) -> $crate::Result<()> {
                $crate::NdrEncode::encode_primary(&self.discriminant(), enc)?;
                match self {
                    $( Self::$variant(arm) => $crate::NdrEncode::encode_primary(arm, enc), )+
                }
            }

            fn encode_deferred(&self, enc: &mut $crate::NdrEncoder) -> $crate::Result<()> {
                match self {
                    $( Self::$variant(arm) => $crate::NdrEncode::encode_deferred(arm, enc), )+
                }
            }
        }

        // The primary-phase type only has to exist, not be nameable: hide it in an anonymous
        // const so the macro needs no second identifier.
        const _: () = {
            #[allow(clippy::large_enum_variant)] // transient, one per decoded union
            pub enum UnionPrimary {
                $( $variant(<$ty as $crate::NdrDecode>::Primary), )+
            }

            impl $crate::NdrDecode for $name {
                type Primary = UnionPrimary;

                fn decode_primary(dec: &mut $crate::NdrDecoder<'_>) -> $crate::Result<UnionPrimary> {
                    let offset = dec.position();
                    let discriminant = <$disc as $crate::NdrDecode>::decode_primary(dec)?;
                    match discriminant {
                        $( $value => Ok(UnionPrimary::$variant(
                            <$ty as $crate::NdrDecode>::decode_primary(dec)?,
                        )), )+
                        other => Err($crate::NdrError::UnknownDiscriminant {
                            union: stringify!($name),
                            value: u64::from(other),
                            offset,
                        }),
                    }
                }

                fn decode_deferred(
                    primary: UnionPrimary,
                    dec: &mut $crate::NdrDecoder<'_>,
                ) -> $crate::Result<Self> {
                    match primary {
                        $( UnionPrimary::$variant(p) => Ok(Self::$variant(
                            <$ty as $crate::NdrDecode>::decode_deferred(p, dec)?,
                        )), )+
                    }
                }
            }
        };
    };
}
