//! Password hashing and verification, tenant password policy, and bearer tokens.
//! Pure apart from the random source, which callers pass in.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use idbridge_core::Secret;
use idbridge_phs::PhsVerifier;
use rand::{CryptoRng, Rng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::error::ApiError;

/// `credentials.kind` of a cloud password (argon2id PHC string).
pub const ARGON2ID: &str = "argon2id";
/// `credentials.kind` of a synced password hash verifier (`v1;PPH1_MD4,...;`).
pub const PPH1_MD4: &str = "pph1_md4";

pub fn hash_password(password: &str, rng: &mut (impl RngCore + CryptoRng)) -> Secret {
    let salt = SaltString::generate(rng);
    match Argon2::default().hash_password(password.as_bytes(), &salt) {
        Ok(hash) => Secret::new(hash.to_string()),
        // Only reachable with invalid parameters, which are constants here: refuse every
        // password rather than panic.
        Err(_) => Secret::new("!"),
    }
}

/// Checks a sign-in password against a stored credential of either kind.
pub fn verify_password(kind: &str, verifier: &Secret, password: &str) -> bool {
    match kind {
        ARGON2ID => PasswordHash::new(verifier.expose())
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false),
        PPH1_MD4 => PhsVerifier::parse(verifier.expose())
            .map(|v| v.verify(password))
            .unwrap_or(false),
        _ => false,
    }
}

/// The cloud password policy of the tenant (on-premises users follow the DC's policy).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordPolicy {
    pub min_length: usize,
    /// Three of: lower case, upper case, digit, other (as Active Directory's complexity rule).
    pub require_complexity: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 8,
            require_complexity: true,
        }
    }
}

impl PasswordPolicy {
    /// The message never echoes the password.
    pub fn check(&self, password: &str) -> Result<(), ApiError> {
        let violation = |m: String| Err(ApiError::new(400, "policy_violation", m));
        let length = password.chars().count();
        if length < self.min_length {
            return violation(format!(
                "the password has {length} characters; the tenant requires at least {}",
                self.min_length
            ));
        }
        if length > 256 {
            return violation("the password is longer than 256 characters".into());
        }
        if self.require_complexity {
            let classes = [
                password.chars().any(char::is_lowercase),
                password.chars().any(char::is_uppercase),
                password.chars().any(|c| c.is_ascii_digit()),
                password.chars().any(|c| !c.is_alphanumeric()),
            ];
            if classes.iter().filter(|c| **c).count() < 3 {
                return violation(
                    "the password needs three of: lower case, upper case, digits, symbols".into(),
                );
            }
        }
        Ok(())
    }
}

/// A random password that satisfies any policy up to 16 characters with complexity.
pub fn temporary_password(rng: &mut impl Rng) -> Secret {
    const LOWER: &[u8] = b"abcdefghijkmnpqrstuvwxyz";
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const DIGIT: &[u8] = b"23456789";
    const SYMBOL: &[u8] = b"!#%+-=?@";
    let mut out = String::with_capacity(16);
    for set in [LOWER, UPPER, DIGIT, SYMBOL].iter().cycle().take(16) {
        let pick = set
            .get(rng.gen_range(0..set.len()))
            .copied()
            .unwrap_or(b'x');
        out.push(char::from(pick));
    }
    Secret::from(out)
}

/// A new bearer token with its prefix (`idb_` for API tokens, `ids_` for sign-in sessions).
pub fn new_token(prefix: &str, rng: &mut impl RngCore) -> Secret {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    let token = format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    bytes.zeroize();
    Secret::from(token)
}

/// Tokens are stored as their SHA-256: high-entropy, so no salt or stretching is needed, and a
/// stolen database grants nothing.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_and_pph1_verifiers_check_passwords() {
        let mut rng = rand::thread_rng();
        let hash = hash_password("Corr3ct horse", &mut rng);
        assert!(verify_password(ARGON2ID, &hash, "Corr3ct horse"));
        assert!(!verify_password(ARGON2ID, &hash, "corr3ct horse"));
        let nt = idbridge_phs::NtHash::from_password("Pässwörd1");
        let v = Secret::new(PhsVerifier::compute(&nt, 100, &mut rng).to_string());
        assert!(verify_password(PPH1_MD4, &v, "Pässwörd1"));
        assert!(!verify_password(PPH1_MD4, &v, "Passwort1"));
        assert!(!verify_password("other", &v, "Pässwörd1"));
        assert!(!verify_password(ARGON2ID, &Secret::new("garbage"), "x"));
    }

    #[test]
    fn policy_names_the_rule_and_never_the_password() {
        let policy = PasswordPolicy::default();
        let e = policy.check("Sh0rt!").unwrap_err();
        assert!(e.message.contains("at least 8") && !e.message.contains("Sh0rt"));
        assert!(policy.check("alllowercase").is_err());
        assert!(policy.check("Lower and UPPER 1").is_ok());
        let mut rng = rand::thread_rng();
        for _ in 0..50 {
            assert!(policy.check(temporary_password(&mut rng).expose()).is_ok());
        }
    }

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let mut rng = rand::thread_rng();
        let a = new_token("idb_", &mut rng);
        let b = new_token("idb_", &mut rng);
        assert!(a.expose().starts_with("idb_") && a != b);
        assert_eq!(token_hash(a.expose()).len(), 64);
        assert_ne!(token_hash(a.expose()), token_hash(b.expose()));
    }
}
