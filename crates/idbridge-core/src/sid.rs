use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidError {
    #[error("binary SID is truncated or malformed ({0} bytes)")]
    Binary(usize),
    #[error("not a SID: {0:?}")]
    Syntax(String),
}

/// A security identifier (`objectSid`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid {
    revision: u8,
    authority: u64,
    sub_authorities: Vec<u32>,
}

impl Sid {
    /// The binary form AD returns: revision, count, 48-bit big-endian authority, little-endian
    /// sub-authorities.
    pub fn from_bytes(b: &[u8]) -> Result<Self, SidError> {
        let err = || SidError::Binary(b.len());
        let revision = *b.first().ok_or_else(err)?;
        let count = usize::from(*b.get(1).ok_or_else(err)?);
        if b.len() != 8 + 4 * count {
            return Err(err());
        }
        let authority = b
            .get(2..8)
            .ok_or_else(err)?
            .iter()
            .fold(0u64, |acc, x| acc << 8 | u64::from(*x));
        let sub_authorities = b
            .get(8..)
            .ok_or_else(err)?
            .chunks_exact(4)
            .map(|c| {
                <[u8; 4]>::try_from(c)
                    .map(u32::from_le_bytes)
                    .map_err(|_| err())
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            revision,
            authority,
            sub_authorities,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![self.revision, self.sub_authorities.len() as u8];
        out.extend_from_slice(&self.authority.to_be_bytes()[2..]);
        for s in &self.sub_authorities {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    /// `S-1-5-21-...` text form.
    pub fn parse(s: &str) -> Result<Self, SidError> {
        let err = || SidError::Syntax(s.to_string());
        let mut parts = s
            .strip_prefix("S-")
            .or_else(|| s.strip_prefix("s-"))
            .ok_or_else(err)?
            .split('-');
        let revision = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let authority = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let sub_authorities = parts
            .map(|p| p.parse().map_err(|_| err()))
            .collect::<Result<Vec<u32>, _>>()?;
        if sub_authorities.len() > 15 || authority >= 1 << 48 {
            return Err(err());
        }
        Ok(Self {
            revision,
            authority,
            sub_authorities,
        })
    }

    /// Text form or the hex of the binary form (both occur in extended DNs).
    pub fn parse_any(s: &str) -> Result<Self, SidError> {
        if s.starts_with(['S', 's']) {
            return Self::parse(s);
        }
        let bytes = hex::decode(s).map_err(|_| SidError::Syntax(s.to_string()))?;
        Self::from_bytes(&bytes)
    }

    /// The relative identifier: the last sub-authority.
    pub fn rid(&self) -> Option<u32> {
        self.sub_authorities.last().copied()
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S-{}-{}", self.revision, self.authority)?;
        for s in &self.sub_authorities {
            write!(f, "-{s}")?;
        }
        Ok(())
    }
}
impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_binary_round_trip() {
        let sid = Sid::parse("S-1-5-21-3623811015-3361044348-30300820-1013").unwrap();
        assert_eq!(Sid::from_bytes(&sid.to_bytes()).unwrap(), sid);
        assert_eq!(sid.rid(), Some(1013));
        assert_eq!(Sid::parse_any(&hex::encode(sid.to_bytes())).unwrap(), sid);
        assert!(Sid::from_bytes(&[1, 5, 0]).is_err());
        assert!(Sid::parse("S-1-x").is_err());
    }
}
