//! What an Active Directory bind failure means for a sign-in. AD (and Samba) put the reason in
//! the diagnostic text of result 49 as `data <hex>`, the Windows error of the logon.

use crate::message::Outcome;

/// Maps a failed bind (LDAP result code, diagnostic message) to a sign-in outcome.
pub fn outcome_of_bind_failure(ldap_code: u32, diagnostic: &str) -> Outcome {
    if ldap_code != 49 {
        return Outcome::Failed {
            message: format!("LDAP result {ldap_code}"),
        };
    }
    let text = diagnostic.to_ascii_lowercase();
    let data = |code: &str| text.contains(&format!("data {code}"));
    if data("773") {
        Outcome::PasswordChangeRequired
    } else if data("775") {
        Outcome::Locked
    } else if data("533") {
        Outcome::Disabled
    } else if data("532") || data("701") {
        Outcome::Expired
    } else {
        Outcome::InvalidCredentials
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ad_reasons_map_to_sign_in_results() {
        let samba = |code: &str| {
            format!("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data {code}, v1db1")
        };
        assert_eq!(
            outcome_of_bind_failure(49, &samba("773")),
            Outcome::PasswordChangeRequired
        );
        assert_eq!(outcome_of_bind_failure(49, &samba("775")), Outcome::Locked);
        assert_eq!(
            outcome_of_bind_failure(49, &samba("533")),
            Outcome::Disabled
        );
        assert_eq!(outcome_of_bind_failure(49, &samba("532")), Outcome::Expired);
        assert_eq!(outcome_of_bind_failure(49, &samba("701")), Outcome::Expired);
        assert_eq!(
            outcome_of_bind_failure(49, &samba("52e")),
            Outcome::InvalidCredentials
        );
        assert_eq!(outcome_of_bind_failure(49, "DATA 775"), Outcome::Locked);
        assert_eq!(
            outcome_of_bind_failure(49, "Data 52E"),
            Outcome::InvalidCredentials
        );
        assert_eq!(
            outcome_of_bind_failure(49, &samba("569")),
            Outcome::InvalidCredentials
        );
        assert_eq!(outcome_of_bind_failure(49, ""), Outcome::InvalidCredentials);
        assert_eq!(
            outcome_of_bind_failure(53, &samba("775")),
            Outcome::Failed {
                message: "LDAP result 53".into()
            }
        );
        assert_eq!(
            outcome_of_bind_failure(52, ""),
            Outcome::Failed {
                message: "LDAP result 52".into()
            }
        );
    }
}
