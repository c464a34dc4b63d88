//! A tiny BER codec for the two LDAP control values this crate speaks: DirSync
//! (`1.2.840.113556.1.4.841`, MS-ADTS 3.1.1.3.4.1.3) and simple paged results
//! (`1.2.840.113556.1.4.319`, RFC 2696).
//!
//! Pure: bytes in, values out. Every length read from the wire is checked against the input
//! before it is used; malformed input is a [`BerError`], never a panic.

/// OID of the DirSync control.
pub const DIRSYNC_OID: &str = "1.2.840.113556.1.4.841";
/// OID of the show-deleted control (no value): tombstones match searches too.
pub const SHOW_DELETED_OID: &str = "1.2.840.113556.1.4.417";
/// OID of the simple paged results control.
pub const PAGED_RESULTS_OID: &str = "1.2.840.113556.1.4.319";

/// `LDAP_DIRSYNC_OBJECT_SECURITY`: return only what the caller may read; no replication right needed.
pub const DIRSYNC_OBJECT_SECURITY: u32 = 0x0000_0001;
/// `LDAP_DIRSYNC_ANCESTORS_FIRST_ORDER`.
pub const DIRSYNC_ANCESTORS_FIRST_ORDER: u32 = 0x0000_0800;
/// `LDAP_DIRSYNC_PUBLIC_DATA_ONLY`.
pub const DIRSYNC_PUBLIC_DATA_ONLY: u32 = 0x0000_2000;
/// `LDAP_DIRSYNC_INCREMENTAL_VALUES`: report linked-value changes as deltas (not used by idbridge).
pub const DIRSYNC_INCREMENTAL_VALUES: u32 = 0x8000_0000;
/// The `maxAttributeCount` idbridge sends (the value Windows tools use).
pub const DIRSYNC_MAX_ATTRIBUTE_COUNT: u32 = 0x0010_0000;

const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_SEQUENCE: u8 = 0x30;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BerError {
    #[error("BER value truncated at byte {0}")]
    Truncated(usize),
    #[error("expected BER tag 0x{expected:02x} at byte {at}, found 0x{found:02x}")]
    UnexpectedTag { at: usize, expected: u8, found: u8 },
    #[error("unsupported BER length encoding at byte {0}")]
    BadLength(usize),
    #[error("BER INTEGER at byte {0} is empty or longer than 8 bytes")]
    BadInteger(usize),
    #[error("{0} unexpected bytes after the BER value")]
    Trailing(usize),
}

/// The DirSync response control value: `SEQUENCE { moreResults INTEGER, unused INTEGER, cookie OCTET STRING }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSyncResponse {
    pub more_results: bool,
    pub cookie: Vec<u8>,
}

/// The paged results response value: `SEQUENCE { size INTEGER, cookie OCTET STRING }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagedResponse {
    pub size_estimate: i64,
    pub cookie: Vec<u8>,
}

/// Encodes the DirSync request value `SEQUENCE { flags INTEGER, maxAttributeCount INTEGER, cookie OCTET STRING }`.
/// `flags` is a 32-bit mask; AD reads it as a signed 32-bit INTEGER, so the high bit encodes negative.
pub fn encode_dirsync_request(flags: u32, max_attribute_count: u32, cookie: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(cookie.len() + 16);
    // Reinterpreting the mask as i32 is the point: 0x80000000 goes on the wire as -2^31.
    write_integer(&mut content, i64::from(flags as i32));
    write_integer(&mut content, i64::from(max_attribute_count));
    write_tlv(&mut content, TAG_OCTET_STRING, cookie);
    let mut out = Vec::with_capacity(content.len() + 6);
    write_tlv(&mut out, TAG_SEQUENCE, &content);
    out
}

/// Decodes the DirSync response value.
pub fn decode_dirsync_response(value: &[u8]) -> Result<DirSyncResponse, BerError> {
    let mut outer = Reader::new(value, 0);
    let mut seq = outer.expect(TAG_SEQUENCE)?;
    outer.finish()?;
    let more = seq.integer()?;
    let _unused = seq.integer()?;
    let cookie = seq.expect(TAG_OCTET_STRING)?.rest().to_vec();
    seq.finish()?;
    Ok(DirSyncResponse {
        more_results: more != 0,
        cookie,
    })
}

/// Encodes the paged results request value `SEQUENCE { size INTEGER, cookie OCTET STRING }`.
pub fn encode_paged_request(size: u32, cookie: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(cookie.len() + 8);
    write_integer(&mut content, i64::from(size));
    write_tlv(&mut content, TAG_OCTET_STRING, cookie);
    let mut out = Vec::with_capacity(content.len() + 6);
    write_tlv(&mut out, TAG_SEQUENCE, &content);
    out
}

/// Decodes the paged results response value.
pub fn decode_paged_response(value: &[u8]) -> Result<PagedResponse, BerError> {
    let mut outer = Reader::new(value, 0);
    let mut seq = outer.expect(TAG_SEQUENCE)?;
    outer.finish()?;
    let size_estimate = seq.integer()?;
    let cookie = seq.expect(TAG_OCTET_STRING)?.rest().to_vec();
    seq.finish()?;
    Ok(PagedResponse {
        size_estimate,
        cookie,
    })
}

fn write_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = (len as u64).to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let significant = bytes.get(skip..).unwrap_or_default();
    out.push(0x80 | significant.len() as u8);
    out.extend_from_slice(significant);
}

fn write_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    write_length(out, content.len());
    out.extend_from_slice(content);
}

/// Minimal two's-complement encoding.
fn write_integer(out: &mut Vec<u8>, v: i64) {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (Some(&b), Some(&next)) = (bytes.get(start), bytes.get(start + 1)) else {
            break;
        };
        let redundant = (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    write_tlv(out, TAG_INTEGER, bytes.get(start..).unwrap_or_default());
}

/// A cursor over BER content; `base` is the absolute offset of `data` for error messages.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], base: usize) -> Self {
        Self { data, pos: 0, base }
    }

    fn at(&self) -> usize {
        self.base + self.pos
    }

    fn byte(&mut self) -> Result<u8, BerError> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or(BerError::Truncated(self.at()))?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads one TLV with tag `tag` and returns a reader over its content.
    fn expect(&mut self, tag: u8) -> Result<Reader<'a>, BerError> {
        let at = self.at();
        let found = self.byte()?;
        if found != tag {
            return Err(BerError::UnexpectedTag {
                at,
                expected: tag,
                found,
            });
        }
        let len_at = self.at();
        let first = self.byte()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            // 0x80 is the indefinite form (not allowed in LDAP); more than 4 length bytes is absurd here.
            if n == 0 || n > 4 {
                return Err(BerError::BadLength(len_at));
            }
            let mut len = 0usize;
            for _ in 0..n {
                len = (len << 8) | usize::from(self.byte()?);
            }
            len
        };
        let start = self.pos;
        let end = start.checked_add(len).ok_or(BerError::BadLength(len_at))?;
        let content = self
            .data
            .get(start..end)
            .ok_or(BerError::Truncated(self.base + self.data.len()))?;
        self.pos = end;
        Ok(Reader::new(content, self.base + start))
    }

    fn integer(&mut self) -> Result<i64, BerError> {
        let content = self.expect(TAG_INTEGER)?;
        let bytes = content.rest();
        if bytes.is_empty() || bytes.len() > 8 {
            return Err(BerError::BadInteger(content.base));
        }
        let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
        let mut v: i64 = if negative { -1 } else { 0 };
        for b in bytes {
            v = (v << 8) | i64::from(*b);
        }
        Ok(v)
    }

    fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or_default()
    }

    fn finish(&self) -> Result<(), BerError> {
        match self.data.len().saturating_sub(self.pos) {
            0 => Ok(()),
            n => Err(BerError::Trailing(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirsync_request_bytes() {
        let v = encode_dirsync_request(DIRSYNC_OBJECT_SECURITY, DIRSYNC_MAX_ATTRIBUTE_COUNT, b"");
        assert_eq!(
            v,
            [0x30, 0x0a, 0x02, 0x01, 0x01, 0x02, 0x03, 0x10, 0x00, 0x00, 0x04, 0x00]
        );
        let v = encode_dirsync_request(0, 0x100000, b"ab");
        assert_eq!(
            v,
            [0x30, 0x0c, 0x02, 0x01, 0x00, 0x02, 0x03, 0x10, 0x00, 0x00, 0x04, 0x02, b'a', b'b']
        );
    }

    #[test]
    fn high_flag_bit_is_negative_integer() {
        let v = encode_dirsync_request(DIRSYNC_INCREMENTAL_VALUES | 1, 0x100000, b"");
        assert_eq!(v.get(2..8), Some(&[0x02, 0x04, 0x80, 0x00, 0x00, 0x01][..]));
    }

    #[test]
    fn integers_are_minimal() {
        for (v, want) in [
            (0i64, vec![0x00]),
            (127, vec![0x7f]),
            (128, vec![0x00, 0x80]),
            (256, vec![0x01, 0x00]),
            (-1, vec![0xff]),
            (-128, vec![0x80]),
            (-129, vec![0xff, 0x7f]),
        ] {
            let mut out = Vec::new();
            write_integer(&mut out, v);
            assert_eq!(out.get(2..), Some(&want[..]), "{v}");
            let mut r = Reader::new(&out, 0);
            assert_eq!(r.integer().unwrap(), v);
        }
    }

    #[test]
    fn long_cookie_uses_long_length_form() {
        let cookie = vec![7u8; 300];
        let v = encode_dirsync_request(1, 0x100000, &cookie);
        assert_eq!(v.get(..2), Some(&[0x30, 0x82][..]));
        // The response has the same shape: decode our own request bytes as one.
        let back = decode_dirsync_response(&v).unwrap();
        assert!(back.more_results);
        assert_eq!(back.cookie, cookie);
    }

    #[test]
    fn dirsync_response_decodes() {
        let v = [
            0x30, 0x0b, 0x02, 0x01, 0x01, 0x02, 0x01, 0x00, 0x04, 0x03, 1, 2, 3,
        ];
        let r = decode_dirsync_response(&v).unwrap();
        assert_eq!(
            r,
            DirSyncResponse {
                more_results: true,
                cookie: vec![1, 2, 3]
            }
        );
        let v = [0x30, 0x08, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x04, 0x00];
        assert!(!decode_dirsync_response(&v).unwrap().more_results);
    }

    #[test]
    fn paged_round_trip() {
        let v = encode_paged_request(1000, b"xyz");
        let r = decode_paged_response(&v).unwrap();
        assert_eq!(r.size_estimate, 1000);
        assert_eq!(r.cookie, b"xyz");
    }

    #[test]
    fn malformed_is_an_error() {
        let cases: &[&[u8]] = &[
            &[],
            &[0x30],
            &[0x31, 0x00],
            &[0x30, 0x05, 0x02, 0x01],
            &[0x30, 0x80, 0x00, 0x00],
            &[0x30, 0x85, 0, 0, 0, 0, 1],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x02, 0x02, 0x00],
            &[0x30, 0x0b, 0x02, 0x09, 1, 1, 1, 1, 1, 1, 1, 1, 1],
            &[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00],
            &[0x30, 0x08, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x05, 0x00],
            &[
                0x30, 0x08, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x04, 0x00, 0x00,
            ],
            &[
                0x30, 0x09, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x04, 0x00, 0x00,
            ],
            &[0x30, 0x08, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x04, 0x05],
        ];
        for c in cases {
            assert!(decode_dirsync_response(c).is_err(), "{c:02x?}");
        }
        assert!(matches!(
            decode_dirsync_response(&[0x31, 0x00]),
            Err(BerError::UnexpectedTag {
                at: 0,
                expected: 0x30,
                found: 0x31
            })
        ));
        assert!(decode_paged_response(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every prefix and every single-byte mutation of valid values.
        let valid = encode_dirsync_request(1, 0x100000, &[9u8; 200]);
        for cut in 0..valid.len() {
            let _ = decode_dirsync_response(valid.get(..cut).unwrap_or_default());
            let _ = decode_paged_response(valid.get(..cut).unwrap_or_default());
        }
        for i in 0..valid.len() {
            for b in [0x00, 0x7f, 0x80, 0x81, 0x84, 0xff] {
                let mut m = valid.clone();
                if let Some(x) = m.get_mut(i) {
                    *x = b;
                }
                let _ = decode_dirsync_response(&m);
                let _ = decode_paged_response(&m);
            }
        }
    }
}
