//! The typed value model shared by the three object spaces.

use std::fmt;

use idbridge_core::{AttrName, Dn};
use time::OffsetDateTime;

/// One value of an attribute. Absence ("null") is an empty value list, never a variant:
/// a directory has no null values, only attributes without values.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Bytes(Vec<u8>),
    /// A reference to another object by its source DN; the engine maps it to the
    /// metaverse / cloud object it denotes (including objects synced later).
    Ref(Dn),
    DateTime(OffsetDateTime),
}

impl Value {
    /// The type of this value.
    pub fn ty(&self) -> Ty {
        match self {
            Value::Str(_) => Ty::Str,
            Value::Int(_) => Ty::Int,
            Value::Bool(_) => Ty::Bool,
            Value::Bytes(_) => Ty::Bytes,
            Value::Ref(_) => Ty::Ref,
            Value::DateTime(_) => Ty::DateTime,
        }
    }
}

/// Text rendering used by `CStr` and `Join`: bytes as lowercase hex, datetimes as RFC 3339.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Bytes(b) => f.write_str(&hex::encode(b)),
            Value::Ref(dn) => write!(f, "{dn}"),
            Value::DateTime(t) => match t.format(&time::format_description::well_known::Rfc3339) {
                Ok(s) => f.write_str(&s),
                Err(_) => write!(f, "{t}"),
            },
        }
    }
}

/// Element type of an expression or attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Str,
    Int,
    Bool,
    Bytes,
    Ref,
    DateTime,
    /// Only the `null` literal (and expressions built from it) has this type.
    Any,
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ty::Str => "string",
            Ty::Int => "int",
            Ty::Bool => "bool",
            Ty::Bytes => "bytes",
            Ty::Ref => "reference",
            Ty::DateTime => "datetime",
            Ty::Any => "null",
        })
    }
}

/// Static type of an expression: element type plus whether it may hold several values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Type {
    pub ty: Ty,
    pub multi: bool,
}

impl Type {
    pub const fn one(ty: Ty) -> Self {
        Self { ty, multi: false }
    }
    pub const fn many(ty: Ty) -> Self {
        Self { ty, multi: true }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.multi {
            write!(f, "multi-valued {}", self.ty)
        } else {
            write!(f, "{}", self.ty)
        }
    }
}

/// Read access to an object's attributes, so the engine can evaluate rules on its own
/// object representation without copying. `None` and an empty slice both mean "no value".
pub trait AttributeSource {
    fn get(&self, name: &AttrName) -> Option<&[Value]>;
}

impl<S: std::hash::BuildHasher> AttributeSource
    for std::collections::HashMap<AttrName, Vec<Value>, S>
{
    fn get(&self, name: &AttrName) -> Option<&[Value]> {
        std::collections::HashMap::get(self, name).map(Vec::as_slice)
    }
}

impl AttributeSource for std::collections::BTreeMap<AttrName, Vec<Value>> {
    fn get(&self, name: &AttrName) -> Option<&[Value]> {
        std::collections::BTreeMap::get(self, name).map(Vec::as_slice)
    }
}
