//! Decryption of replicated secret attributes: the session-key layer of MS-DRSR 4.1.10.6.12
//! (`DecryptValuesIfNecessary`) and the RID-keyed DES layer of MS-SAMR 2.2.11.1 that
//! `unicodePwd` carries underneath.

use des::cipher::generic_array::GenericArray;
use des::cipher::BlockDecrypt;
use des::Des;
use idbridge_phs::NtHash;
use md5::{Digest, Md5};
use rc4::{consts::U16, KeyInit, Rc4, StreamCipher};
use zeroize::Zeroizing;

use crate::error::DrsError;

const SALT_LEN: usize = 16;
const CRC_LEN: usize = 4;

/// Removes the session-key layer of one encrypted attribute value (`ENCRYPTED_PAYLOAD`):
/// `RC4(MD5(session_key || salt))` over a CRC32 followed by the plaintext, which the CRC must
/// match. `attribute` names the value in errors.
pub fn decrypt_value(
    session_key: &[u8],
    payload: &[u8],
    attribute: &'static str,
) -> Result<Zeroizing<Vec<u8>>, DrsError> {
    let (salt, sealed) = payload
        .split_at_checked(SALT_LEN)
        .filter(|(_, sealed)| sealed.len() >= CRC_LEN)
        .ok_or(DrsError::Secret {
            attribute,
            reason: "encrypted payload shorter than salt and checksum",
        })?;
    let mut md5 = Md5::new();
    md5.update(session_key);
    md5.update(salt);
    let key = Zeroizing::new(<[u8; 16]>::from(md5.finalize()));
    let mut plain = Zeroizing::new(sealed.to_vec());
    Rc4::<U16>::new(&(*key).into()).apply_keystream(&mut plain);
    let (crc, data) = plain.split_at_checked(CRC_LEN).ok_or(DrsError::Secret {
        attribute,
        reason: "encrypted payload shorter than its checksum",
    })?;
    let expected = u32::from_le_bytes([
        crc.first().copied().unwrap_or(0),
        crc.get(1).copied().unwrap_or(0),
        crc.get(2).copied().unwrap_or(0),
        crc.get(3).copied().unwrap_or(0),
    ]);
    if crc32fast::hash(data) != expected {
        return Err(DrsError::Secret {
            attribute,
            reason: "checksum mismatch (wrong session key or corrupted value)",
        });
    }
    Ok(Zeroizing::new(data.to_vec()))
}

/// The NT hash inside a replicated `unicodePwd`: the session-key layer, then the two DES
/// blocks keyed by the account's RID.
pub fn nt_hash_from_unicode_pwd(
    session_key: &[u8],
    payload: &[u8],
    rid: u32,
) -> Result<NtHash, DrsError> {
    let plain = decrypt_value(session_key, payload, "unicodePwd")?;
    let blocks: &[u8; 16] = plain.as_slice().try_into().map_err(|_| DrsError::Secret {
        attribute: "unicodePwd",
        reason: "decrypted value is not 16 bytes",
    })?;
    let hash = Zeroizing::new(rid_des_decrypt(blocks, rid));
    NtHash::from_bytes(hash.as_slice()).map_err(|_| DrsError::Secret {
        attribute: "unicodePwd",
        reason: "decrypted value is not an NT hash",
    })
}

/// MS-SAMR 2.2.11.1.1/2.2.11.1.3: block 1 is DES-decrypted with a key made of RID bytes
/// 0,1,2,3,0,1,2 and block 2 with bytes 3,0,1,2,3,0,1.
fn rid_des_decrypt(blocks: &[u8; 16], rid: u32) -> [u8; 16] {
    let [r0, r1, r2, r3] = rid.to_le_bytes();
    let keys = [[r0, r1, r2, r3, r0, r1, r2], [r3, r0, r1, r2, r3, r0, r1]];
    let mut out = *blocks;
    for (block, key7) in out.chunks_exact_mut(8).zip(keys) {
        let des = Des::new(&GenericArray::from(expand_des_key(key7)));
        des.decrypt_block(GenericArray::from_mut_slice(block));
    }
    out
}

/// MS-SAMR 2.2.11.1.2: spreads 56 key bits over 8 bytes, leaving the parity bit (bit 0) clear.
fn expand_des_key(k: [u8; 7]) -> [u8; 8] {
    let [k0, k1, k2, k3, k4, k5, k6] = k;
    [
        k0 >> 1,
        ((k0 & 0x01) << 6) | (k1 >> 2),
        ((k1 & 0x03) << 5) | (k2 >> 3),
        ((k2 & 0x07) << 4) | (k3 >> 4),
        ((k3 & 0x0f) << 3) | (k4 >> 5),
        ((k4 & 0x1f) << 2) | (k5 >> 6),
        ((k5 & 0x3f) << 1) | (k6 >> 7),
        k6 & 0x7f,
    ]
    .map(|b| b << 1)
}

#[cfg(test)]
mod tests {
    use des::cipher::BlockEncrypt;

    use super::*;

    /// The server side of both layers, to build payloads for any key, salt and RID.
    fn seal(session_key: &[u8], salt: [u8; 16], nt: &[u8; 16], rid: u32) -> Vec<u8> {
        let [r0, r1, r2, r3] = rid.to_le_bytes();
        let keys = [[r0, r1, r2, r3, r0, r1, r2], [r3, r0, r1, r2, r3, r0, r1]];
        let mut data = *nt;
        for (block, key7) in data.chunks_exact_mut(8).zip(keys) {
            let des = Des::new(&GenericArray::from(expand_des_key(key7)));
            des.encrypt_block(GenericArray::from_mut_slice(block));
        }
        let mut sealed = crc32fast::hash(&data).to_le_bytes().to_vec();
        sealed.extend_from_slice(&data);
        let key: [u8; 16] = Md5::new()
            .chain_update(session_key)
            .chain_update(salt)
            .finalize()
            .into();
        Rc4::<U16>::new(&key.into()).apply_keystream(&mut sealed);
        let mut out = salt.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    const SESSION_KEY: [u8; 16] = *b"0123456789abcdef";
    const SALT: [u8; 16] = [0x5a; 16];
    // MD4(UTF-16LE("password")).
    const NT_PASSWORD: [u8; 16] = [
        0x88, 0x46, 0xf7, 0xea, 0xee, 0x8f, 0xb1, 0x17, 0xad, 0x06, 0xbd, 0xd8, 0x30, 0xb7, 0x58,
        0x6c,
    ];

    /// Computed independently with Python's `cryptography` (ARC4, single-key TripleDES) and
    /// `hashlib`/`zlib`, for session key "0123456789abcdef", salt 0x5a*16, RID 1104.
    const KNOWN_PAYLOAD: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a\
                                 b0277bd51cf20b61863a7cd3db3571461c8a2ff8";

    #[test]
    fn des_key_expansion_spreads_bits() {
        assert_eq!(expand_des_key([0xff; 7]), [0xfe; 8]);
        assert_eq!(expand_des_key([0; 7]), [0; 8]);
        assert_eq!(
            expand_des_key([0x80, 0, 0, 0, 0, 0, 0x01]),
            [0x80, 0, 0, 0, 0, 0, 0, 0x02]
        );
    }

    #[test]
    fn known_vector_decrypts_to_the_nt_hash() {
        let payload = hex::decode(KNOWN_PAYLOAD).unwrap();
        let nt = nt_hash_from_unicode_pwd(&SESSION_KEY, &payload, 1104).unwrap();
        assert_eq!(nt.as_bytes(), &NT_PASSWORD);
        assert_eq!(seal(&SESSION_KEY, SALT, &NT_PASSWORD, 1104), payload);
    }

    #[test]
    fn round_trips_for_many_rids() {
        for rid in [500, 1000, 0x1234_5678, u32::MAX] {
            let payload = seal(&SESSION_KEY, SALT, &NT_PASSWORD, rid);
            let nt = nt_hash_from_unicode_pwd(&SESSION_KEY, &payload, rid).unwrap();
            assert_eq!(nt.as_bytes(), &NT_PASSWORD);
        }
    }

    #[test]
    fn wrong_key_rid_or_tampering_is_detected() {
        let payload = seal(&SESSION_KEY, SALT, &NT_PASSWORD, 1104);
        assert!(matches!(
            nt_hash_from_unicode_pwd(b"another key.....", &payload, 1104),
            Err(DrsError::Secret { .. })
        ));
        let mut tampered = payload.clone();
        if let Some(b) = tampered.last_mut() {
            *b ^= 1;
        }
        assert!(nt_hash_from_unicode_pwd(&SESSION_KEY, &tampered, 1104).is_err());
        // A wrong RID passes the checksum but yields another hash.
        let other = nt_hash_from_unicode_pwd(&SESSION_KEY, &payload, 1105).unwrap();
        assert_ne!(other.as_bytes(), &NT_PASSWORD);
    }

    #[test]
    fn short_or_oddly_sized_payloads_are_errors() {
        for len in [0, 1, 15, 16, 19] {
            assert!(decrypt_value(&SESSION_KEY, &vec![0; len], "x").is_err());
        }
        // Correct checksum over 15 bytes: decrypts, but is no NT hash.
        let mut sealed = crc32fast::hash(&[7; 15]).to_le_bytes().to_vec();
        sealed.extend_from_slice(&[7; 15]);
        let key: [u8; 16] = Md5::new()
            .chain_update(SESSION_KEY)
            .chain_update(SALT)
            .finalize()
            .into();
        Rc4::<U16>::new(&key.into()).apply_keystream(&mut sealed);
        let payload = [SALT.as_slice(), &sealed].concat();
        assert_eq!(
            decrypt_value(&SESSION_KEY, &payload, "x")
                .unwrap()
                .as_slice(),
            &[7; 15]
        );
        assert!(nt_hash_from_unicode_pwd(&SESSION_KEY, &payload, 1).is_err());
    }
}
