//! Password writeback: reset (admin or self-service), change (the user's own, checked by the
//! DC), unlock, and finding the user by the sync anchor. One LDAP modify per operation, so the
//! DC applies all of it or none.

use std::collections::HashSet;

use idbridge_core::{Dn, Secret};
use ldap3::{Mod, Scope, SearchEntry};
use zeroize::Zeroizing;

use crate::connector::{transport, AdConnector, AdError};

/// `unicodePwd` wants the password in double quotes, UTF-16LE.
fn unicode_pwd(password: &Secret) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(
        format!("\"{}\"", password.expose())
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect(),
    )
}

impl AdConnector {
    async fn modify(
        &mut self,
        operation: &'static str,
        dn: &str,
        mods: Vec<Mod<Vec<u8>>>,
    ) -> Result<(), AdError> {
        let result = self
            .ldap
            .with_timeout(self.timeout)
            .modify(dn, mods)
            .await
            .map_err(|e| transport(operation, dn, e))?;
        if result.rc != 0 {
            return Err(AdError::Ldap {
                operation,
                base: dn.to_owned(),
                code: result.rc,
                message: result.text,
            });
        }
        Ok(())
    }

    /// The DN of the user under `base` whose anchor is `anchor`: its objectGUID, or a
    /// `mS-DS-ConsistencyGuid` set before the sync started. The objectGUID is read directly
    /// (`<GUID=...>`); only when no object has it is `mS-DS-ConsistencyGuid` searched, which
    /// Samba does not index (in one `or` with objectGUID, it made every lookup a scan of the
    /// domain: about 4 s at 100,000 users).
    pub async fn find_by_anchor(
        &mut self,
        base: &Dn,
        anchor: &[u8],
    ) -> Result<Option<String>, AdError> {
        let hex: String = anchor.iter().map(|b| format!("{b:02x}")).collect();
        let by_guid = self
            .first_dn(&format!("<GUID={hex}>"), Scope::Base, "(objectClass=user)")
            .await?
            .filter(|dn| Dn::parse(dn).is_ok_and(|dn| dn.is_within(base)));
        if by_guid.is_some() {
            return Ok(by_guid);
        }
        let escaped: String = anchor.iter().map(|b| format!("\\{b:02x}")).collect();
        self.first_dn(
            &base.to_string(),
            Scope::Subtree,
            &format!("(&(objectClass=user)(mS-DS-ConsistencyGuid={escaped}))"),
        )
        .await
    }

    /// The DN of the first entry a search finds; `None` when there is none, or no such base.
    async fn first_dn(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
    ) -> Result<Option<String>, AdError> {
        const OP: &str = "finding the user by its anchor";
        let result = self
            .ldap
            .with_timeout(self.timeout)
            .search(base, scope, filter, vec!["1.1"])
            .await
            .map_err(|e| transport(OP, base, e))?;
        let (entries, res) = (result.0, result.1);
        match res.rc {
            0 => {}
            // noSuchObject: no object has that GUID.
            32 => return Ok(None),
            code => {
                return Err(AdError::Ldap {
                    operation: OP,
                    base: base.to_string(),
                    code,
                    message: res.text,
                })
            }
        }
        Ok(entries
            .into_iter()
            .map(SearchEntry::construct)
            .map(|e| crate::entry::strip_extended_dn(&e.dn).to_string())
            .next())
    }

    /// Reset semantics: sets the password without the old one (needs Reset Password), and in
    /// the same modify either forces a change at next logon or clears that flag, and unlocks.
    pub async fn reset_password(
        &mut self,
        dn: &str,
        password: &Secret,
        require_change: bool,
        unlock: bool,
    ) -> Result<(), AdError> {
        let value = unicode_pwd(password);
        let pwd_last_set = if require_change { "0" } else { "-1" };
        let mut mods = vec![
            Mod::Replace(b"unicodePwd".to_vec(), HashSet::from([value.to_vec()])),
            Mod::Replace(
                b"pwdLastSet".to_vec(),
                HashSet::from([pwd_last_set.as_bytes().to_vec()]),
            ),
        ];
        if unlock {
            mods.push(Mod::Replace(
                b"lockoutTime".to_vec(),
                HashSet::from([b"0".to_vec()]),
            ));
        }
        self.modify("resetting the password", dn, mods).await
    }

    /// Change semantics: the DC checks the old password, history and minimum age.
    pub async fn change_password(
        &mut self,
        dn: &str,
        old: &Secret,
        new: &Secret,
    ) -> Result<(), AdError> {
        let mods = vec![
            Mod::Delete(
                b"unicodePwd".to_vec(),
                HashSet::from([unicode_pwd(old).to_vec()]),
            ),
            Mod::Add(
                b"unicodePwd".to_vec(),
                HashSet::from([unicode_pwd(new).to_vec()]),
            ),
        ];
        self.modify("changing the password", dn, mods).await
    }

    pub async fn unlock(&mut self, dn: &str) -> Result<(), AdError> {
        let mods = vec![Mod::Replace(
            b"lockoutTime".to_vec(),
            HashSet::from([b"0".to_vec()]),
        )];
        self.modify("unlocking the account", dn, mods).await
    }
}
