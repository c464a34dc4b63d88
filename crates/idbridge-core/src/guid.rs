use std::fmt;

use base64::Engine;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuidError {
    #[error("objectGUID must be 16 bytes, got {0}")]
    Length(usize),
    #[error("not a GUID: {0:?}")]
    Syntax(String),
}

/// An AD `objectGUID`. Stored as the 16 bytes AD returns on the wire (little-endian first three
/// fields), displayed in the canonical string form AD tools show.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectGuid([u8; 16]);

impl ObjectGuid {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, GuidError> {
        let arr: [u8; 16] = bytes
            .try_into()
            .map_err(|_| GuidError::Length(bytes.len()))?;
        Ok(Self(arr))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The canonical `xxxxxxxx-xxxx-...` form, as in `<GUID=...>` extended DNs.
    pub fn parse(s: &str) -> Result<Self, GuidError> {
        let u = uuid::Uuid::parse_str(s).map_err(|_| GuidError::Syntax(s.to_string()))?;
        Ok(Self(u.to_bytes_le()))
    }

    /// The canonical form or 32 hex digits of the wire bytes (both occur in extended DNs).
    pub fn parse_any(s: &str) -> Result<Self, GuidError> {
        if s.len() == 32 && !s.contains('-') {
            let bytes = hex::decode(s).map_err(|_| GuidError::Syntax(s.to_string()))?;
            return Self::from_bytes(&bytes);
        }
        Self::parse(s)
    }

    /// The cloud `immutableId` form: base64 of the wire bytes.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

impl fmt::Display for ObjectGuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_bytes_le(self.0).hyphenated().fmt(f)
    }
}
impl fmt::Debug for ObjectGuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectGuid({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_bytes_are_mixed_endian() {
        let g = ObjectGuid::parse("01020304-0506-0708-090a-0b0c0d0e0f10").unwrap();
        assert_eq!(g.as_bytes()[..4], [4, 3, 2, 1]);
        assert_eq!(g.to_string(), "01020304-0506-0708-090a-0b0c0d0e0f10");
        assert_eq!(
            ObjectGuid::parse_any(&hex::encode(g.as_bytes())).unwrap(),
            g
        );
        assert_eq!(ObjectGuid::from_bytes(&[0; 3]), Err(GuidError::Length(3)));
    }
}
