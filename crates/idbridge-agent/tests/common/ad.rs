//! Changes to the lab DC as its administrator, in a test's own OU.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use futures_util::StreamExt;
use idbridge_testkit::{Lab, TestOu};
use ldap3::Mod;

pub fn quoted_utf16(password: &str) -> Vec<u8> {
    format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

pub fn set(v: &str) -> HashSet<Vec<u8>> {
    HashSet::from([v.as_bytes().to_vec()])
}

pub struct Ad<'a> {
    pub ou: &'a mut TestOu,
    pub realm: String,
}

impl<'a> Ad<'a> {
    /// Writes under `ou`, naming users in the lab's realm.
    pub fn new(lab: &Lab, ou: &'a mut TestOu) -> Self {
        Self {
            ou,
            realm: lab.ad.realm.to_lowercase(),
        }
    }

    pub fn upn(&self, name: &str) -> String {
        format!("{name}@{}", self.realm)
    }

    pub async fn add_user(&mut self, parent: &str, name: &str, extra: &[(&str, &str)]) -> String {
        let dn = format!("CN={name},{parent}");
        let mut attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = vec![
            (b"objectClass".to_vec(), set("user")),
            (b"sAMAccountName".to_vec(), set(name)),
            (b"userPrincipalName".to_vec(), set(&self.upn(name))),
            (b"givenName".to_vec(), set(name)),
            (b"sn".to_vec(), set("Tester")),
            (b"mail".to_vec(), set(&self.upn(name))),
            // An enabled account needs a password (Samba creates password-less users disabled).
            (
                b"unicodePwd".to_vec(),
                HashSet::from([quoted_utf16("Sync-test-pw-1")]),
            ),
            (b"userAccountControl".to_vec(), set("512")),
        ];
        for (k, v) in extra {
            attrs.push((k.as_bytes().to_vec(), set(v)));
        }
        self.add(&dn, attrs).await;
        dn
    }

    /// A mail contact; `extra` adds attributes (`mail`, `company`, ...).
    pub async fn add_contact(
        &mut self,
        parent: &str,
        name: &str,
        extra: &[(&str, &str)],
    ) -> String {
        let dn = format!("CN={name},{parent}");
        let mut attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> =
            vec![(b"objectClass".to_vec(), set("contact"))];
        for (k, v) in extra {
            attrs.push((k.as_bytes().to_vec(), set(v)));
        }
        self.add(&dn, attrs).await;
        dn
    }

    async fn add(&mut self, dn: &str, attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)>) {
        self.ou
            .ldap()
            .add(dn, attrs)
            .await
            .unwrap()
            .success()
            .unwrap();
    }

    pub async fn add_ou(&mut self, name: &str) -> String {
        let dn = format!("OU={name},{}", self.ou.dn);
        let attrs = vec![(b"objectClass".to_vec(), set("organizationalUnit"))];
        self.add(&dn, attrs).await;
        dn
    }

    pub async fn add_group(&mut self, parent: &str, name: &str, members: &[&str]) -> String {
        let dn = format!("CN={name},{parent}");
        let mut attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = vec![
            (b"objectClass".to_vec(), set("group")),
            (b"sAMAccountName".to_vec(), set(name)),
        ];
        if !members.is_empty() {
            let m = members.iter().map(|d| d.as_bytes().to_vec()).collect();
            attrs.push((b"member".to_vec(), m));
        }
        self.add(&dn, attrs).await;
        dn
    }

    pub async fn modify(&mut self, dn: &str, mods: Vec<Mod<&str>>) {
        self.ou
            .ldap()
            .modify(dn, mods)
            .await
            .unwrap()
            .success()
            .unwrap();
    }

    pub async fn replace(&mut self, dn: &str, attr: &str, value: &str) {
        self.modify(dn, vec![Mod::Replace(attr, HashSet::from([value]))])
            .await;
    }

    pub async fn move_to(&mut self, dn: &str, rdn: &str, parent: &str) -> String {
        self.ou
            .ldap()
            .modifydn(dn, rdn, true, Some(parent))
            .await
            .unwrap()
            .success()
            .unwrap();
        format!("{rdn},{parent}")
    }

    pub async fn delete(&mut self, dn: &str) {
        self.ou.ldap().delete(dn).await.unwrap().success().unwrap();
    }

    /// The objectGUID of an entry.
    pub async fn guid_of(&mut self, dn: &str) -> Vec<u8> {
        let (entries, _) = self
            .ou
            .ldap()
            .search(
                dn,
                ldap3::Scope::Base,
                "(objectClass=*)",
                vec!["objectGUID"],
            )
            .await
            .unwrap()
            .success()
            .unwrap();
        let entry = ldap3::SearchEntry::construct(entries.into_iter().next().unwrap());
        entry.bin_attrs["objectGUID"][0].clone()
    }

    /// Restores a deleted object (by the objectGUID it had) at `dn`, then sets again the
    /// attributes its tombstone dropped, as an administrator does without the recycle bin.
    pub async fn restore(&mut self, lab: &Lab, guid: &[u8], dn: &str, attrs: &[(&str, &str)]) {
        lab.restore_deleted(guid, dn).unwrap();
        let mods = attrs
            .iter()
            .map(|(k, v)| Mod::Replace(*k, HashSet::from([*v])))
            .collect();
        self.modify(dn, mods).await;
    }

    /// `count` enabled-looking but password-less users (`{prefix}{i}`), added concurrently:
    /// quick to create in bulk (no password hashing on the DC).
    pub async fn add_bulk_users(&mut self, parent: &str, prefix: &str, count: usize) {
        let ldap = self.ou.ldap().clone();
        let adds = (0..count).map(|i| {
            let mut ldap = ldap.clone();
            let name = format!("{prefix}{i}");
            let dn = format!("CN={name},{parent}");
            let upn = self.upn(&name);
            async move {
                let attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = vec![
                    (b"objectClass".to_vec(), set("user")),
                    (b"sAMAccountName".to_vec(), set(&name)),
                    (b"userPrincipalName".to_vec(), set(&upn)),
                    (b"displayName".to_vec(), set(&name)),
                ];
                ldap.add(&dn, attrs).await.unwrap().success().unwrap();
            }
        });
        futures_util::stream::iter(adds)
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;
    }
}
