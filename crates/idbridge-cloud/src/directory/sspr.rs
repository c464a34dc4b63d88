//! Self-service password reset: a user who forgot their password proves who they are with a
//! one-time code sent to their registered alternate e-mail, or with their authenticator app
//! (TOTP, RFC 6238), and sets a new one; a synced user's goes to AD through the writeback
//! channel. Answers never tell whether a user exists.

use hmac::{Hmac, Mac};
use idbridge_core::Secret;
use idbridge_scim::ResourceKind;
use rand::Rng;
use sha1::Sha1;

use super::{user_name, Directory, Principal, ON_PREMISES};
use crate::error::ApiError;
use crate::secrets::token_hash;
use crate::store::{AuditEntry, Column, Index, SigninState, StoredResource};

/// How long an e-mailed code is valid.
const CODE_TTL_MS: i64 = 10 * 60 * 1000;
/// A user gets a new code at most this often.
const CODE_INTERVAL_MS: i64 = 60 * 1000;
/// Wrong codes before the code is void.
const MAX_ATTEMPTS: i64 = 5;
const TOTP_STEP_S: i64 = 30;

fn invalid_code() -> ApiError {
    ApiError::new(
        400,
        "invalid_code",
        "the user name or code is wrong, or the code has expired; start again",
    )
}

/// RFC 4648 base32 without padding: how authenticator apps take a TOTP secret.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digit = |v: u32| {
        ALPHABET
            .get(usize::try_from(v & 31).unwrap_or(0))
            .map_or('A', |&c| char::from(c))
    };
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(digit(buffer >> bits));
        }
    }
    if bits > 0 {
        out.push(digit(buffer << (5 - bits)));
    }
    out
}

fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in text.trim_end_matches('=').chars() {
        let v = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u32 - 'A' as u32,
            c @ '2'..='7' => c as u32 - '2' as u32 + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

/// The 6-digit TOTP (HMAC-SHA1, 30-second steps) of `secret` for the step holding `unix_s`.
pub fn totp(secret: &[u8], unix_s: i64) -> String {
    let counter = (unix_s / TOTP_STEP_S).to_be_bytes();
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(&counter);
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest.get(19).copied().unwrap_or(0) & 0x0f);
    let word = digest
        .get(offset..offset + 4)
        .and_then(|w| <[u8; 4]>::try_from(w).ok())
        .map_or(0, u32::from_be_bytes);
    format!("{:06}", (word & 0x7fff_ffff) % 1_000_000)
}

/// The current TOTP of a base32 secret (as enrolled), for `unix_s`.
pub fn totp_code(base32_secret: &str, unix_s: i64) -> Option<String> {
    base32_decode(base32_secret).map(|secret| totp(&secret, unix_s))
}

fn code_hash(user_id: &str, code: &str) -> String {
    token_hash(&format!("{user_id}:{code}"))
}

impl Directory {
    /// `POST /api/v1/me/sspr`: the signed-in user registers an alternate e-mail for resets.
    pub async fn register_alternate_email(
        &self,
        principal: &Principal,
        email: &str,
    ) -> Result<(), ApiError> {
        let user = self.signed_in_user(principal).await?;
        if !email.contains('@') || email.len() > 254 {
            return Err(ApiError::bad_request(format!(
                "{email:?} is not an e-mail address"
            )));
        }
        let (_, totp_secret) = self.store.sspr_method(&user.id).await?;
        let mut tx = self.store.begin().await?;
        tx.set_sspr_method(&user.id, Some(email), totp_secret.as_deref())
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// `POST /api/v1/me/totp`: a new authenticator secret for the signed-in user (base32, and
    /// the `otpauth://` URI apps read from a QR code).
    pub async fn enroll_totp(&self, principal: &Principal) -> Result<(Secret, String), ApiError> {
        let user = self.signed_in_user(principal).await?;
        let mut bytes = [0u8; 20];
        rand::thread_rng().fill(&mut bytes);
        let secret = Secret::new(base32(&bytes));
        let (email, _) = self.store.sspr_method(&user.id).await?;
        let mut tx = self.store.begin().await?;
        tx.set_sspr_method(&user.id, email.as_deref(), Some(secret.expose()))
            .await?;
        tx.commit().await?;
        let uri = format!(
            "otpauth://totp/idbridge:{}?secret={}&issuer=idbridge",
            user_name(&user.doc),
            secret.expose()
        );
        Ok((secret, uri))
    }

    async fn signed_in_user(&self, principal: &Principal) -> Result<StoredResource, ApiError> {
        match principal {
            Principal::User {
                id,
                change_only: false,
                ..
            } => self.live_user(id).await,
            _ => Err(ApiError::forbidden("sign in as the user first")),
        }
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<StoredResource>, ApiError> {
        Ok(self
            .store
            .live_resources(
                ResourceKind::User,
                Some(Index::one(Column::NameKey, username.to_lowercase())),
            )
            .await?
            .into_iter()
            .next())
    }

    /// `POST /api/v1/sspr/start`: mails a code when the user exists and registered an address.
    /// Says nothing about which of those held.
    pub async fn sspr_start(&self, username: &str) -> Result<(), ApiError> {
        let Some(user) = self.user_by_name(username).await? else {
            return Ok(());
        };
        let (Some(email), Some(outbox)) = (
            self.store.sspr_method(&user.id).await?.0,
            self.config.sspr.outbox.clone(),
        ) else {
            return Ok(());
        };
        let now = self.now_ms();
        if let Some((_, expires_at, _)) = self.store.sspr_code(&user.id).await? {
            if expires_at - CODE_TTL_MS + CODE_INTERVAL_MS > now {
                return Ok(());
            }
        }
        let code = format!("{:08}", rand::thread_rng().gen_range(0..100_000_000u32));
        let mut tx = self.store.begin().await?;
        tx.put_sspr_code(&user.id, &code_hash(&user.id, &code), now + CODE_TTL_MS)
            .await?;
        tx.commit().await?;
        let message = format!(
            "To: {email}\r\nSubject: Your password reset code\r\n\r\nYour idbridge password reset \
             code for {} is {code}. It expires in 10 minutes. If you did not ask for it, ignore \
             this message.\r\n",
            user_name(&user.doc)
        );
        let file = outbox.join(format!("{now}-{}.eml", user.id));
        std::fs::create_dir_all(&outbox)
            .and_then(|()| std::fs::write(&file, message))
            .map_err(|e| ApiError::new(500, "delivery_failed", format!("outbox: {e}")))?;
        self.audit_sspr(&user, "code.sent", "success").await;
        Ok(())
    }

    /// Checks a code: the e-mailed one (each wrong try counts), else the user's TOTP.
    async fn sspr_verify(&self, user: &StoredResource, code: &str) -> Result<bool, ApiError> {
        let now = self.now_ms();
        if let Some((hash, expires_at, attempts)) = self.store.sspr_code(&user.id).await? {
            if expires_at > now && attempts < MAX_ATTEMPTS {
                if hash == code_hash(&user.id, code) {
                    return Ok(true);
                }
                let mut tx = self.store.begin().await?;
                tx.count_sspr_attempt(&user.id).await?;
                tx.commit().await?;
            }
        }
        let (_, totp_secret) = self.store.sspr_method(&user.id).await?;
        let Some(secret) = totp_secret.and_then(|s| base32_decode(&s)) else {
            return Ok(false);
        };
        let unix_s = now / 1000;
        // One step of clock skew either way.
        Ok([-TOTP_STEP_S, 0, TOTP_STEP_S]
            .iter()
            .any(|skew| totp(&secret, unix_s + skew) == code))
    }

    /// `POST /api/v1/sspr/complete`: a valid code sets the new password (in AD for a synced
    /// user, without forcing a change) and, when asked, unlocks the account.
    pub async fn sspr_complete(
        &self,
        username: &str,
        code: &str,
        new_password: &Secret,
        unlock: bool,
    ) -> Result<(), ApiError> {
        let Some(user) = self.user_by_name(username).await? else {
            return Err(invalid_code());
        };
        // Guesses (of a TOTP code above all) count towards smart lockout, and a locked account
        // takes no code: at most `threshold` tries per lockout period.
        let state = self.store.signin_state(&user.id).await?;
        if state.locked_until > self.now_ms() || !self.sspr_verify(&user, code).await? {
            let settings = self.settings().await?;
            self.count_failure(&user.id, &settings, state).await?;
            self.audit_sspr(&user, "complete", "failure").await;
            return Err(invalid_code());
        }
        let principal = Principal::User {
            id: user.id.clone(),
            user_name: user_name(&user.doc).to_owned(),
            change_only: false,
        };
        if user.source == ON_PREMISES {
            self.reset_on_premises(&principal, &user, new_password, false, unlock, None)
                .await?;
        } else {
            self.settings()
                .await?
                .password_policy
                .check(new_password.expose())?;
            self.store_verifier(&principal, &user, new_password, false, "password.sspr")
                .await?;
        }
        let mut tx = self.store.begin().await?;
        tx.delete_sspr_code(&user.id).await?;
        if unlock {
            tx.set_signin_state(&user.id, SigninState::default())
                .await?;
        }
        tx.commit().await?;
        self.audit_sspr(&user, "complete", "success").await;
        Ok(())
    }

    async fn audit_sspr(&self, user: &StoredResource, step: &str, outcome: &str) {
        let entry = AuditEntry {
            at: self.now_ms(),
            actor: &format!("user:{}", user_name(&user.doc)),
            action: &format!("sspr.{step}"),
            target: &user.id,
            outcome,
            detail: "",
        };
        let recorded = async {
            let mut tx = self.store.begin().await?;
            tx.audit(&entry);
            tx.commit().await
        };
        if let Err(e) = recorded.await {
            tracing::warn!(error = %e, "could not audit a self-service reset");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_matches_rfc_6238() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890": the last 6 digits.
        let secret = b"12345678901234567890";
        assert_eq!(totp(secret, 59), "287082");
        assert_eq!(totp(secret, 1_111_111_109), "081804");
        assert_eq!(totp(secret, 2_000_000_000), "279037");
    }

    #[test]
    fn base32_round_trips() {
        let bytes = b"any bytes \x00\xff";
        assert_eq!(base32_decode(&base32(bytes)).as_deref(), Some(&bytes[..]));
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }
}
