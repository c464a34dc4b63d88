//! Schema prefix tables (MS-DRSR 5.16.4): how a DC compresses attribute OIDs into 32-bit
//! `ATTRTYP`s. The upper 16 bits index a table of BER-encoded OID prefixes; the lower 16 bits
//! carry the last arc.

use crate::error::DrsError;

/// An attribute identifier as it appears on the wire.
pub type AttrTyp = u32;

/// Longest OID prefix accepted from a server (the IDL bounds `OID_t.length` at 10,000).
const MAX_PREFIX_LEN: usize = 10_000;

/// One prefix table: `(index, BER-encoded OID prefix)` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixTable {
    entries: Vec<(u16, Vec<u8>)>,
}

impl PrefixTable {
    /// A table from a server's `SCHEMA_PREFIX_TABLE`; indexes must fit 16 bits and be unique.
    pub fn from_entries(entries: Vec<(u32, Vec<u8>)>) -> Result<Self, DrsError> {
        let mut table = Self::default();
        for (ndx, prefix) in entries {
            let ndx = u16::try_from(ndx).map_err(|_| {
                DrsError::Protocol(format!("prefix table index {ndx:#x} exceeds 16 bits"))
            })?;
            if prefix.len() > MAX_PREFIX_LEN {
                return Err(DrsError::Protocol(format!(
                    "prefix {ndx} is {} bytes long",
                    prefix.len()
                )));
            }
            if table.prefix(ndx).is_some() {
                return Err(DrsError::Protocol(format!("prefix index {ndx} repeated")));
            }
            table.entries.push((ndx, prefix));
        }
        Ok(table)
    }

    /// The `(index, prefix)` pairs, in insertion order.
    pub fn entries(&self) -> &[(u16, Vec<u8>)] {
        &self.entries
    }

    fn prefix(&self, ndx: u16) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(n, _)| *n == ndx)
            .map(|(_, p)| p.as_slice())
    }

    /// `MakeAttid`: the `ATTRTYP` of `oid`, adding its prefix to the table (at `preferred_ndx`
    /// when that index is free, else at the next free one) if it is not there yet.
    pub fn attid_for(&mut self, oid: &str, preferred_ndx: u16) -> Result<AttrTyp, DrsError> {
        let (arcs, ber) = encode_oid(oid)?;
        let last = arcs.last().copied().unwrap_or(0);
        let last_len = if last < 128 { 1 } else { 2 };
        let prefix = ber
            .get(..ber.len().saturating_sub(last_len))
            .ok_or_else(|| DrsError::Oid(oid.to_owned()))?
            .to_vec();
        let ndx = match self.entries.iter().find(|(_, p)| *p == prefix) {
            Some((n, _)) => *n,
            None => {
                let ndx = (preferred_ndx..=u16::MAX)
                    .chain(0..preferred_ndx)
                    .find(|n| self.prefix(*n).is_none())
                    .ok_or_else(|| DrsError::Protocol("prefix table full".into()))?;
                self.entries.push((ndx, prefix));
                ndx
            }
        };
        let mut low = last % 16_384;
        if last >= 16_384 {
            low += 32_768;
        }
        Ok((u32::from(ndx) << 16) | low)
    }

    /// `OidFromAttid`: the dotted OID of `attid`, or `None` when its prefix is not in the table.
    pub fn oid_of(&self, attid: AttrTyp) -> Option<String> {
        let ndx = u16::try_from(attid >> 16).ok()?;
        let mut low = attid & 0xffff;
        let mut ber = self.prefix(ndx)?.to_vec();
        if low < 128 {
            ber.push(u8::try_from(low).ok()?);
        } else {
            if low >= 32_768 {
                low -= 32_768;
            }
            ber.push(u8::try_from(((low / 128) % 128) + 128).ok()?);
            ber.push(u8::try_from(low % 128).ok()?);
        }
        decode_oid(&ber)
    }
}

/// Arcs and BER content octets (X.690 8.19) of a dotted OID.
fn encode_oid(oid: &str) -> Result<(Vec<u32>, Vec<u8>), DrsError> {
    let bad = || DrsError::Oid(oid.to_owned());
    let arcs = oid
        .split('.')
        .map(|a| a.parse::<u32>().map_err(|_| bad()))
        .collect::<Result<Vec<_>, _>>()?;
    let (&[first, second], rest) = (
        arcs.first_chunk::<2>().ok_or_else(bad)?,
        arcs.get(2..).unwrap_or_default(),
    );
    if first > 2 || (first < 2 && second >= 40) {
        return Err(bad());
    }
    let mut ber = Vec::new();
    let head = first
        .checked_mul(40)
        .and_then(|v| v.checked_add(second))
        .ok_or_else(bad)?;
    for arc in std::iter::once(head).chain(rest.iter().copied()) {
        push_base128(&mut ber, arc);
    }
    Ok((arcs, ber))
}

fn push_base128(out: &mut Vec<u8>, value: u32) {
    let mut groups = [0u8; 5];
    let mut n = 0;
    let mut v = value;
    loop {
        if let Some(slot) = groups.get_mut(n) {
            *slot = (v & 0x7f) as u8;
        }
        n += 1;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        let more = if i > 0 { 0x80 } else { 0 };
        out.push(groups.get(i).copied().unwrap_or(0) | more);
    }
}

/// Dotted form of BER content octets; `None` if they are not a well-formed OID.
fn decode_oid(ber: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    let mut pending = false;
    for &b in ber {
        acc = acc.checked_mul(128)? | u64::from(b & 0x7f);
        if acc > u64::from(u32::MAX) + 80 {
            return None;
        }
        pending = b & 0x80 != 0;
        if !pending {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    if pending || arcs.is_empty() {
        return None;
    }
    Some(
        arcs.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standard() -> PrefixTable {
        // Index 9 holds 1.2.840.113556.1.4 and index 0 holds 2.5.4 in every DC's default table.
        PrefixTable::from_entries(vec![
            (0, vec![0x55, 0x04]),
            (9, vec![0x2a, 0x86, 0x48, 0x86, 0xf7, 0x14, 0x01, 0x04]),
        ])
        .unwrap()
    }

    #[test]
    fn well_known_attids_match_the_default_table() {
        let mut t = standard();
        assert_eq!(
            t.attid_for("1.2.840.113556.1.4.90", 9).unwrap(),
            0x0009_005a
        );
        assert_eq!(
            t.attid_for("1.2.840.113556.1.4.221", 9).unwrap(),
            0x0009_00dd
        );
        assert_eq!(
            t.attid_for("1.2.840.113556.1.4.146", 9).unwrap(),
            0x0009_0092
        );
        assert_eq!(t.attid_for("2.5.4.3", 0).unwrap(), 0x0000_0003);
        assert_eq!(t.entries().len(), 2, "no prefix was added");
        assert_eq!(t.oid_of(0x0009_00dd).unwrap(), "1.2.840.113556.1.4.221");
        assert_eq!(t.oid_of(0x0000_0003).unwrap(), "2.5.4.3");
        assert_eq!(t.oid_of(0x0042_0001), None);
    }

    #[test]
    fn new_prefixes_and_large_arcs_round_trip() {
        let mut t = standard();
        for oid in [
            "1.2.840.113556.1.4.1",
            "1.3.6.1.4.1.7165.4.1.16384",
            "1.3.6.1.4.1.7165.4.1.20000",
            "1.3.6.1.4.1.7165.4.1.200",
            "2.16.840.1.113730.3.1.39",
            "0.9.2342.19200300.100.1.1",
        ] {
            let attid = t.attid_for(oid, 100).unwrap();
            assert_eq!(t.oid_of(attid).as_deref(), Some(oid), "{attid:#x}");
        }
        let big = t.attid_for("1.3.6.1.4.1.7165.4.1.20000", 100).unwrap();
        assert_eq!(big & 0xffff, 20_000 % 16_384 + 32_768);
    }

    #[test]
    fn malformed_input_is_rejected() {
        let mut t = standard();
        assert!(t.attid_for("1", 9).is_err());
        assert!(t.attid_for("1.2.x", 9).is_err());
        assert!(t.attid_for("3.1", 9).is_err());
        assert!(PrefixTable::from_entries(vec![(0x1_0000, vec![1])]).is_err());
        assert!(PrefixTable::from_entries(vec![(1, vec![1]), (1, vec![2])]).is_err());
        // The last arc continues octets the prefix left open, as the algorithm prescribes.
        let t = PrefixTable::from_entries(vec![(1, vec![0x2a, 0x86])]).unwrap();
        assert_eq!(t.oid_of(0x0001_0001).as_deref(), Some("1.2.769"));
        let t = PrefixTable::from_entries(vec![(1, vec![])]).unwrap();
        assert_eq!(t.oid_of(0x0001_0001).as_deref(), Some("0.1"));
    }
}
