use std::fmt;

use md4::{Digest, Md4};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Iterations of PBKDF2-HMAC-SHA256 applied to the NT hash. The incumbent uses 1,000; the input is
/// already a 128-bit hash of the password, so the iterations slow an attacker holding a stolen
/// verifier only by a constant: 1,000 keeps cloud sign-in cheap (>= 500/s on two cores) while
/// matching what administrators know. Configurable on the agent.
pub const DEFAULT_ITERATIONS: u32 = 1_000;
/// Per-user random salt length in bytes.
pub const SALT_LEN: usize = 10;
/// Upper bound accepted when parsing, so a hostile stored value cannot make sign-in spin.
pub const MAX_ITERATIONS: u32 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifierError {
    #[error(
        "password verifier is not in the form v1;PPH1_MD4,<salt hex>,<iterations>,<hash hex>;"
    )]
    Format,
    #[error("password verifier iteration count must be 1..={MAX_ITERATIONS}")]
    Iterations,
    #[error("an NT hash is 16 bytes, got {0}")]
    HashLength(usize),
}

/// MD4 of the UTF-16LE password: what AD stores in `unicodePwd`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct NtHash([u8; 16]);

impl NtHash {
    pub fn from_password(password: &str) -> Self {
        let mut utf16: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let digest = Md4::digest(&utf16);
        utf16.zeroize();
        Self(digest.into())
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VerifierError> {
        let arr: [u8; 16] = bytes
            .try_into()
            .map_err(|_| VerifierError::HashLength(bytes.len()))?;
        Ok(Self(arr))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for NtHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NtHash(***)")
    }
}

/// The salted, stretched form of an NT hash that the cloud stores:
/// `v1;PPH1_MD4,<salt hex>,<iterations>,<hash hex>;`.
#[derive(Clone, PartialEq, Eq)]
pub struct PhsVerifier {
    salt: Vec<u8>,
    iterations: u32,
    derived: [u8; 32],
}

impl PhsVerifier {
    /// Derives a verifier with a fresh random salt.
    pub fn compute(nt: &NtHash, iterations: u32, rng: &mut impl rand::RngCore) -> Self {
        let mut salt = vec![0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        Self::compute_with_salt(nt, salt, iterations)
    }

    fn compute_with_salt(nt: &NtHash, salt: Vec<u8>, iterations: u32) -> Self {
        let derived = derive(nt, &salt, iterations);
        Self {
            salt,
            iterations,
            derived,
        }
    }

    pub fn parse(s: &str) -> Result<Self, VerifierError> {
        let body = s
            .strip_prefix("v1;PPH1_MD4,")
            .and_then(|rest| rest.strip_suffix(';'))
            .ok_or(VerifierError::Format)?;
        let mut fields = body.split(',');
        let (Some(salt), Some(iterations), Some(hash), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(VerifierError::Format);
        };
        let salt = hex::decode(salt).map_err(|_| VerifierError::Format)?;
        let iterations: u32 = iterations.parse().map_err(|_| VerifierError::Format)?;
        if !(1..=MAX_ITERATIONS).contains(&iterations) {
            return Err(VerifierError::Iterations);
        }
        let derived: [u8; 32] = hex::decode(hash)
            .map_err(|_| VerifierError::Format)?
            .try_into()
            .map_err(|_| VerifierError::Format)?;
        if salt.is_empty() {
            return Err(VerifierError::Format);
        }
        Ok(Self {
            salt,
            iterations,
            derived,
        })
    }

    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Recomputes the chain from a sign-in password and compares in constant time.
    pub fn verify(&self, password: &str) -> bool {
        let nt = NtHash::from_password(password);
        let mut candidate = derive(&nt, &self.salt, self.iterations);
        let ok = candidate.ct_eq(&self.derived).into();
        candidate.zeroize();
        ok
    }
}

impl fmt::Display for PhsVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "v1;PPH1_MD4,{},{},{};",
            hex::encode(&self.salt),
            self.iterations,
            hex::encode(self.derived)
        )
    }
}

impl fmt::Debug for PhsVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhsVerifier(iterations={})", self.iterations)
    }
}

/// Upper-case hex of the NT hash, as UTF-16LE, through PBKDF2-HMAC-SHA256.
fn derive(nt: &NtHash, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut hex_utf16: Vec<u8> = hex::encode_upper(nt.as_bytes())
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(&hex_utf16, salt, iterations, &mut out);
    hex_utf16.zeroize();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nt_hash_matches_known_vector() {
        // MD4(UTF-16LE("password")), a widely published value.
        let nt = NtHash::from_password("password");
        assert_eq!(
            hex::encode(nt.as_bytes()),
            "8846f7eaee8fb117ad06bdd830b7586c"
        );
        assert_eq!(format!("{nt:?}"), "NtHash(***)");
    }

    #[test]
    fn derivation_matches_an_independent_computation() {
        // Computed independently with Python: hashlib.pbkdf2_hmac("sha256",
        // "8846F7EAEE8FB117AD06BDD830B7586C".encode("utf-16-le"), bytes(range(10)), 1000).hex()
        let nt = NtHash::from_password("password");
        let v = PhsVerifier::compute_with_salt(&nt, (0u8..10).collect(), 1000);
        assert_eq!(
            v.to_string(),
            "v1;PPH1_MD4,00010203040506070809,1000,\
             52baa8631e9b338e4800896113f174acbbfe422b2b8dd47e01a455a7fb8fb83c;"
        );
    }

    #[test]
    fn verify_accepts_only_the_right_password() {
        let mut rng = rand::thread_rng();
        let v = PhsVerifier::compute(&NtHash::from_password("Sommer2026!"), 1000, &mut rng);
        let parsed = PhsVerifier::parse(&v.to_string()).unwrap();
        assert!(parsed.verify("Sommer2026!"));
        assert!(!parsed.verify("sommer2026!"));
        assert_eq!(parsed.iterations(), 1000);
    }

    #[test]
    fn parse_rejects_malformed() {
        for bad in [
            "",
            "v1;PPH1_MD4,00,1000,00;",
            "v1;PPH1_MD4,zz,1000,0000000000000000000000000000000000000000000000000000000000000000;",
            "v2;PPH1_MD4,00,1000,0000000000000000000000000000000000000000000000000000000000000000;",
            "v1;PPH1_MD4,00,1000,0000000000000000000000000000000000000000000000000000000000000000",
            "v1;PPH1_MD4,00,1000,0000000000000000000000000000000000000000000000000000000000000000,1;",
        ] {
            assert_eq!(PhsVerifier::parse(bad), Err(VerifierError::Format), "{bad}");
        }
        assert_eq!(
            PhsVerifier::parse(
                "v1;PPH1_MD4,00,0,0000000000000000000000000000000000000000000000000000000000000000;"
            ),
            Err(VerifierError::Iterations)
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,120}") {
            let _ = PhsVerifier::parse(&s);
        }
    }
}
