//! Sealing a secret to an agent's public key: X25519 with an ephemeral key, HKDF-SHA256, then
//! ChaCha20-Poly1305 with the caller's associated data.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use idbridge_core::Secret;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

const VERSION: u8 = 1;
const INFO: &[u8] = b"idbridge-channel seal v1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("sealed with version {0}; this build opens version {VERSION}")]
    Version(u8),
    #[error("the sealed value does not open with this key and context (wrong key, altered, or meant for another request)")]
    Authentication,
    #[error("the sealed value is not UTF-8 text")]
    NotText,
    #[error("a key must be 32 bytes of base64: {0}")]
    Key(String),
}

/// The agent's key pair; the private half never leaves the agent's host.
pub struct AgentKeyPair {
    secret: StaticSecret,
}

impl fmt::Debug for AgentKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKeyPair")
            .field("public", &self.public())
            .field("private", &"[redacted]")
            .finish()
    }
}

impl AgentKeyPair {
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        Self::from_private_bytes(*bytes)
    }

    pub fn from_private_bytes(bytes: [u8; 32]) -> Self {
        Self {
            secret: StaticSecret::from(bytes),
        }
    }

    pub fn private_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    pub fn public(&self) -> AgentPublicKey {
        AgentPublicKey(PublicKey::from(&self.secret).to_bytes())
    }

    /// The private key as base64, for the agent's key file.
    pub fn to_base64(&self) -> Secret {
        Secret::new(B64.encode(self.private_bytes().as_ref()))
    }

    pub fn from_base64(text: &str) -> Result<Self, SealError> {
        let bytes = Zeroizing::new(
            B64.decode(text.trim())
                .map_err(|_| SealError::Key("the private key is not base64".into()))?,
        );
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SealError::Key(format!("the private key has {} bytes", bytes.len())))?;
        Ok(Self::from_private_bytes(array))
    }
}

/// An agent's public key (base64 of 32 bytes in text form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentPublicKey([u8; 32]);

impl AgentPublicKey {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for AgentPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&B64.encode(self.0))
    }
}

impl FromStr for AgentPublicKey {
    type Err = SealError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = B64
            .decode(s.trim())
            .map_err(|_| SealError::Key("the public key is not base64".into()))?;
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SealError::Key(format!("the public key has {} bytes", bytes.len())))?;
        Ok(Self(array))
    }
}

/// A sealed secret as it travels: version, ephemeral public key, nonce, ciphertext + tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    pub v: u8,
    #[serde(with = "b64_array")]
    pub epk: [u8; 32],
    #[serde(with = "b64_array")]
    pub nonce: [u8; 12],
    #[serde(with = "b64_vec")]
    pub ct: Vec<u8>,
}

fn cipher(shared: &[u8; 32], epk: &[u8; 32], recipient: &[u8; 32]) -> ChaCha20Poly1305 {
    let salt = [epk.as_slice(), recipient.as_slice()].concat();
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail.
    let _ = Hkdf::<Sha256>::new(Some(&salt), shared).expand(INFO, key.as_mut());
    ChaCha20Poly1305::new(Key::from_slice(key.as_ref()))
}

/// Seals `plaintext` so that only the holder of `recipient`'s private key can open it, and
/// only with the same `aad`.
pub fn seal(
    recipient: &AgentPublicKey,
    plaintext: &[u8],
    aad: &[u8],
    rng: &mut (impl RngCore + CryptoRng),
) -> Sealed {
    let ephemeral = AgentKeyPair::generate(rng);
    let epk = ephemeral.public().0;
    let shared = Zeroizing::new(
        ephemeral
            .secret
            .diffie_hellman(&PublicKey::from(recipient.0))
            .to_bytes(),
    );
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut nonce);
    let ct = cipher(&shared, &epk, &recipient.0)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        // Encryption fails only past ChaCha20's 256 GiB message limit.
        .unwrap_or_default();
    Sealed {
        v: VERSION,
        epk,
        nonce,
        ct,
    }
}

pub fn open(
    keys: &AgentKeyPair,
    sealed: &Sealed,
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.v != VERSION {
        return Err(SealError::Version(sealed.v));
    }
    let shared = Zeroizing::new(
        keys.secret
            .diffie_hellman(&PublicKey::from(sealed.epk))
            .to_bytes(),
    );
    cipher(&shared, &sealed.epk, &keys.public().0)
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ct,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| SealError::Authentication)
}

pub fn seal_secret(
    recipient: &AgentPublicKey,
    secret: &Secret,
    aad: &[u8],
    rng: &mut (impl RngCore + CryptoRng),
) -> Sealed {
    seal(recipient, secret.expose().as_bytes(), aad, rng)
}

pub fn open_secret(keys: &AgentKeyPair, sealed: &Sealed, aad: &[u8]) -> Result<Secret, SealError> {
    let bytes = open(keys, sealed, aad)?;
    std::str::from_utf8(&bytes)
        .map(|s| Secret::new(s.to_owned()))
        .map_err(|_| SealError::NotText)
}

mod b64_array {
    use super::B64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(d)?;
        // base64's own message quotes an input byte: say only what was wrong.
        let bytes = B64
            .decode(text)
            .map_err(|_| serde::de::Error::custom("not valid base64"))?;
        bytes.as_slice().try_into().map_err(|_| {
            serde::de::Error::custom(format!("expected {N} bytes, got {}", bytes.len()))
        })
    }
}

mod b64_vec {
    use super::B64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        B64.decode(String::deserialize(d)?)
            .map_err(|_| serde::de::Error::custom("not valid base64"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn keys() -> (AgentKeyPair, StdRng) {
        let mut rng = StdRng::seed_from_u64(7);
        (AgentKeyPair::generate(&mut rng), rng)
    }

    #[test]
    fn opens_with_the_key_and_context_only() {
        let (agent, mut rng) = keys();
        let sealed = seal(
            &agent.public(),
            b"Pa55-word",
            b"r1\0set_password\0password",
            &mut rng,
        );
        assert_eq!(
            open(&agent, &sealed, b"r1\0set_password\0password")
                .unwrap()
                .as_slice(),
            b"Pa55-word"
        );
        assert_eq!(
            open(&agent, &sealed, b"r2\0set_password\0password"),
            Err(SealError::Authentication)
        );
        let other = AgentKeyPair::generate(&mut rng);
        assert_eq!(
            open(&other, &sealed, b"r1\0set_password\0password"),
            Err(SealError::Authentication)
        );
    }

    #[test]
    fn tampering_and_other_versions_fail() {
        let (agent, mut rng) = keys();
        let sealed = seal(&agent.public(), b"x", b"", &mut rng);
        for tamper in [
            |s: &mut Sealed| s.ct[0] ^= 1,
            |s: &mut Sealed| s.nonce[0] ^= 1,
            |s: &mut Sealed| s.epk[0] ^= 1,
        ] {
            let mut bad = sealed.clone();
            tamper(&mut bad);
            assert_eq!(open(&agent, &bad, b""), Err(SealError::Authentication));
        }
        let mut v2 = sealed;
        v2.v = 2;
        assert_eq!(open(&agent, &v2, b""), Err(SealError::Version(2)));
    }

    #[test]
    fn keys_round_trip_as_text_and_never_show_in_debug() {
        let (agent, _) = keys();
        let text = agent.to_base64();
        let again = AgentKeyPair::from_base64(text.expose()).unwrap();
        assert_eq!(again.public(), agent.public());
        let public: AgentPublicKey = agent.public().to_string().parse().unwrap();
        assert_eq!(public, agent.public());
        assert!(!format!("{agent:?}").contains(text.expose()));
        assert!("AAAA".parse::<AgentPublicKey>().is_err());
    }

    #[test]
    fn sealed_values_travel_as_json() {
        let (agent, mut rng) = keys();
        let sealed = seal(&agent.public(), b"x", b"", &mut rng);
        let json = serde_json::to_string(&sealed).unwrap();
        assert_eq!(serde_json::from_str::<Sealed>(&json).unwrap(), sealed);
    }

    #[test]
    fn secrets_round_trip_and_must_be_text() {
        let (agent, mut rng) = keys();
        let password = Secret::new("Grüße-123");
        let sealed = seal_secret(&agent.public(), &password, b"ctx", &mut rng);
        assert_eq!(open_secret(&agent, &sealed, b"ctx").unwrap(), password);
        assert_eq!(
            open_secret(&agent, &sealed, b"other"),
            Err(SealError::Authentication)
        );
        let binary = seal(&agent.public(), &[0xff, 0xfe], b"ctx", &mut rng);
        assert_eq!(
            open_secret(&agent, &binary, b"ctx"),
            Err(SealError::NotText)
        );
    }

    #[test]
    fn the_same_secret_seals_differently_each_time() {
        let (agent, mut rng) = keys();
        let a = seal(&agent.public(), b"x", b"", &mut rng);
        let b = seal(&agent.public(), b"x", b"", &mut rng);
        assert_ne!(a.epk, b.epk);
        assert_ne!(a.nonce, b.nonce);
        // Plaintext + 16-byte Poly1305 tag.
        assert_eq!(a.ct.len(), 1 + 16);
    }

    #[test]
    fn debug_and_errors_never_show_key_or_plaintext() {
        let (agent, mut rng) = keys();
        let private = agent.private_bytes();
        let debug = format!("{agent:?}");
        assert!(debug.contains("[redacted]"));
        assert!(!debug.contains(agent.to_base64().expose()));
        assert!(!debug.contains(&format!("{:?}", private.as_ref())));
        let secret = agent.to_base64();
        assert_eq!(format!("{secret:?} {secret}"), "Secret(***) ***");
        let password = Secret::new("Pa55-word");
        assert!(!format!("{password:?} {password}").contains("Pa55"));

        let sealed = seal_secret(&agent.public(), &password, b"a", &mut rng);
        let mut errors = vec![
            open_secret(&agent, &sealed, b"b").unwrap_err(),
            open(
                &agent,
                &Sealed {
                    v: 9,
                    ..sealed.clone()
                },
                b"a",
            )
            .unwrap_err(),
            AgentKeyPair::from_base64("AAAA").unwrap_err(),
            AgentKeyPair::from_base64("!!").unwrap_err(),
        ];
        errors.push("AAAA".parse::<AgentPublicKey>().unwrap_err());
        for error in errors {
            let text = error.to_string();
            assert!(!text.contains("Pa55"), "{text}");
            assert!(!text.contains(agent.to_base64().expose()), "{text}");
        }
    }

    #[test]
    fn keys_of_the_wrong_size_are_refused() {
        let short = B64.encode([1u8; 31]);
        assert_eq!(
            short.parse::<AgentPublicKey>(),
            Err(SealError::Key("the public key has 31 bytes".into()))
        );
        assert!(AgentKeyPair::from_base64(&B64.encode([1u8; 33])).is_err());
        assert!("not base64!".parse::<AgentPublicKey>().is_err());
        let agent = AgentKeyPair::from_private_bytes([7; 32]);
        assert_eq!(*agent.private_bytes(), [7; 32]);
    }

    #[test]
    fn malformed_sealed_json_is_refused() {
        for json in [
            r#"{"v":1,"epk":"AAAA","nonce":"AAAAAAAAAAAAAAAA","ct":""}"#,
            r#"{"v":1,"epk":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","nonce":"AAAAAAAAAAAAAAAA","ct":"%%%"}"#,
            r#"{"v":1,"epk":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","nonce":"AAAAAAAAAAAAAAAA","ct":"","x":1}"#,
        ] {
            assert!(serde_json::from_str::<Sealed>(json).is_err(), "{json}");
        }
    }

    proptest::proptest! {
        #[test]
        fn opening_arbitrary_values_never_panics(
            v in 0u8..3,
            epk in proptest::array::uniform32(0u8..),
            nonce in proptest::array::uniform12(0u8..),
            ct in proptest::collection::vec(0u8.., 0..64),
            aad in proptest::collection::vec(0u8.., 0..32),
        ) {
            let (agent, _) = keys();
            let sealed = Sealed { v, epk, nonce, ct };
            proptest::prop_assert!(open(&agent, &sealed, &aad).is_err());
            let _ = open_secret(&agent, &sealed, &aad);
        }
    }
}
