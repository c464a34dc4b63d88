//! The AD connector against the lab's real Samba DC. A missing lab fails these tests.
// Scenario code under #[tokio::test]; failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use idbridge_ad::{AdConnector, AdEntry, AdError, AdSettings};
use idbridge_core::{Dn, Secret};
use idbridge_rules::Value;
use idbridge_testkit::{unique_suffix, Lab};
use ldap3::{Ldap, Mod, Scope, SearchEntry};

fn settings(lab: &Lab, upn: &str, password: &str, url: &str) -> AdSettings {
    AdSettings {
        url: url.to_string(),
        bind_upn: upn.to_string(),
        password: Secret::new(password),
        ca_cert_pem: Some(std::fs::read(&lab.ad.ca_cert).unwrap()),
        timeout: Duration::from_secs(60),
    }
}

async fn admin(lab: &Lab) -> AdConnector {
    AdConnector::connect(&settings(
        lab,
        &lab.ad.admin_upn,
        &lab.ad.admin_password,
        &lab.ad.ldaps_url,
    ))
    .await
    .unwrap()
}

async fn service_account(lab: &Lab) -> AdConnector {
    AdConnector::connect(&settings(
        lab,
        &lab.ad.service_account_upn,
        &lab.ad.service_account_password,
        &lab.ad.ldaps_url,
    ))
    .await
    .unwrap()
}

/// Adds a user `CN=<name>,<ou>` with sAMAccountName `<name>` and extra text attributes.
async fn add_user(ldap: &mut Ldap, ou: &str, name: &str, extra: &[(&str, &str)]) -> String {
    let dn = format!("CN={name},{ou}");
    let mut attrs: Vec<(&str, HashSet<&str>)> = vec![
        ("objectClass", HashSet::from(["user"])),
        ("sAMAccountName", HashSet::from([name])),
    ];
    for (k, v) in extra {
        attrs.push((k, HashSet::from([*v])));
    }
    ldap.add(&dn, attrs)
        .await
        .and_then(|r| r.success())
        .unwrap_or_else(|e| panic!("add {dn}: {e}"));
    dn
}

fn str_values(e: &AdEntry, name: &str) -> Vec<String> {
    e.values(name)
        .iter()
        .map(|v| match v {
            Value::Str(s) => s.clone(),
            other => panic!("{name} of {} is not text: {other:?}", e.dn),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_all_reads_users_with_text_and_binary_attributes() {
    let lab = Lab::load().unwrap();
    let mut ou = lab.test_ou("ad-search").await.unwrap();
    let ou_s = ou.dn.clone();
    let sfx = &unique_suffix()[..6];
    let mut expected = Vec::new();
    for i in 0..3 {
        let name = format!("s{sfx}{i}");
        let given = format!("Jöhn{i}");
        let mail = format!("{name}@example.test");
        add_user(
            ou.ldap(),
            &ou_s,
            &name,
            &[("givenName", &given), ("mail", &mail)],
        )
        .await;
        // The objectGUID as the DC stores it, read independently.
        let (rs, _) = ou
            .ldap()
            .search(
                &format!("CN={name},{ou_s}"),
                Scope::Base,
                "(objectClass=*)",
                vec!["objectGUID"],
            )
            .await
            .and_then(|r| r.success())
            .unwrap();
        let raw = SearchEntry::construct(rs.into_iter().next().unwrap());
        let guid = raw.bin_attrs["objectGUID"][0].clone();
        expected.push((name, given, mail, guid));
    }

    let mut ad = admin(&lab).await;
    let base = Dn::parse(&ou.dn).unwrap();
    let (entries, errors) = ad
        .search_all(&base, "(objectClass=user)", &["givenName", "mail"])
        .await
        .unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(entries.len(), 3, "{entries:?}");
    for (name, given, mail, guid) in &expected {
        let e = entries
            .iter()
            .find(|e| e.dn.rdn().unwrap().value() == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(e.class, "user");
        assert!(!e.deleted);
        assert_eq!(e.dn, Dn::parse(&format!("CN={name},{}", ou.dn)).unwrap());
        assert_eq!(str_values(e, "givenName"), [given.as_str()]);
        assert_eq!(str_values(e, "mail"), [mail.as_str()]);
        assert_eq!(guid.len(), 16);
        assert_eq!(e.guid.as_bytes().as_slice(), guid.as_slice());
        assert_eq!(e.values("objectGUID"), [Value::Bytes(guid.clone())]);
        assert_eq!(str_values(e, "distinguishedName"), [e.dn.to_string()]);
        assert!(str_values(e, "objectClass").contains(&"user".to_string()));
    }
    ad.unbind().await.unwrap();
    ou.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn search_all_completes_ranged_member_values() {
    const MEMBERS: usize = 3000;
    const CONNECTIONS: usize = 8;
    let lab = Lab::load().unwrap();
    let mut ou = lab.test_ou("ad-range").await.unwrap();
    let sfx = unique_suffix()[..6].to_string();
    let started = Instant::now();

    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CONNECTIONS {
        let mut ldap = lab.admin_connection().await.unwrap();
        let (ou_dn, sfx) = (ou.dn.clone(), sfx.clone());
        tasks.spawn(async move {
            let mut dns = Vec::new();
            for i in (c..MEMBERS).step_by(CONNECTIONS) {
                dns.push(add_user(&mut ldap, &ou_dn, &format!("r{sfx}{i:04}"), &[]).await);
            }
            ldap.unbind().await.ok();
            dns
        });
    }
    let mut member_dns = Vec::new();
    while let Some(dns) = tasks.join_next().await {
        member_dns.extend(dns.unwrap());
    }
    let group_dn = format!("CN=big{sfx},{}", ou.dn);
    let members: HashSet<&str> = member_dns.iter().map(String::as_str).collect();
    let group_name = format!("big{sfx}");
    ou.ldap()
        .add(
            &group_dn,
            vec![
                ("objectClass", HashSet::from(["group"])),
                ("sAMAccountName", HashSet::from([group_name.as_str()])),
                ("member", members),
            ],
        )
        .await
        .and_then(|r| r.success())
        .unwrap();
    eprintln!(
        "created {MEMBERS} users and the group in {:?}",
        started.elapsed()
    );

    // What the DC does with the attribute: Samba 4.17 has no MaxValRange limit and returns all
    // values of a plain `member` request, but it honours explicit range requests as AD does.
    let raw_ldap = ou.ldap().clone();
    let ranged = |attr: &'static str| {
        let group_dn = group_dn.clone();
        let mut ldap = raw_ldap.clone();
        async move {
            let (rs, _) = ldap
                .search(&group_dn, Scope::Base, "(objectClass=*)", vec![attr])
                .await
                .and_then(|r| r.success())
                .unwrap();
            let raw = SearchEntry::construct(rs.into_iter().next().unwrap());
            raw.attrs
                .into_iter()
                .map(|(k, v)| (k, v.len()))
                .collect::<Vec<_>>()
        }
    };
    let plain = ranged("member").await;
    eprintln!("plain member request -> {plain:?}");
    assert_eq!(
        ranged("member;range=0-1499").await,
        [("member;range=0-1499".to_string(), 1500)]
    );
    assert_eq!(
        ranged("member;range=1500-*").await,
        [("member;range=1500-*".to_string(), 1500)]
    );

    let mut ad = admin(&lab).await;
    let want: HashSet<Dn> = member_dns.iter().map(|s| Dn::parse(s).unwrap()).collect();
    // The plain request, and a ranged first read that search_all must complete with
    // follow-up reads (`member;range=1000-*`), both end with every value under `member`.
    for attr in ["member", "member;range=0-999"] {
        let t = Instant::now();
        let (entries, errors) = ad
            .search_all(
                &Dn::parse(&ou.dn).unwrap(),
                "(objectClass=group)",
                &[attr, "cn"],
            )
            .await
            .unwrap();
        eprintln!("search_all of the group with {attr} took {:?}", t.elapsed());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(entries.len(), 1);
        let group = &entries[0];
        assert_eq!(group.class, "group");
        let got: HashSet<Dn> = str_values(group, "member")
            .iter()
            .map(|s| Dn::parse(s).unwrap())
            .collect();
        assert_eq!(got.len(), MEMBERS, "{attr}");
        assert_eq!(got, want, "{attr}");
        assert_eq!(group.values("member").len(), MEMBERS, "{attr}: duplicates");
        // All values sit under the plain name, none under a ranged one.
        assert!(
            group.attrs.keys().all(|k| !k.as_str().contains(';')),
            "{:?}",
            group.attrs.keys().collect::<Vec<_>>()
        );
    }

    let t = Instant::now();
    // The same paged read across all 3001 entries of the OU (more than one page).
    let (all, errors) = ad
        .search_all(
            &Dn::parse(&ou.dn).unwrap(),
            "(objectClass=user)",
            &["sAMAccountName"],
        )
        .await
        .unwrap();
    assert!(errors.is_empty());
    assert_eq!(all.len(), MEMBERS);
    eprintln!("paged search_all of {MEMBERS} users took {:?}", t.elapsed());
    ad.unbind().await.unwrap();
    let t = Instant::now();
    // Deleting the group first spares Samba updating its member links once per deleted user.
    ou.ldap()
        .delete(&group_dn)
        .await
        .and_then(|r| r.success())
        .unwrap();
    ou.remove().await.unwrap();
    eprintln!("tree delete of the OU took {:?}", t.elapsed());
}

/// Entries of `batch` that lie in `ou`.
fn in_ou<'a>(entries: &'a [AdEntry], ou: &Dn) -> Vec<&'a AdEntry> {
    entries.iter().filter(|e| e.dn.is_within(ou)).collect()
}

/// One DirSync reader: a connector and its cookie.
struct Reader {
    who: &'static str,
    ad: AdConnector,
    cookie: Vec<u8>,
}

impl Reader {
    async fn pass(&mut self, nc: &Dn) -> Vec<AdEntry> {
        let batch = self
            .ad
            .dirsync(
                nc,
                "(objectClass=user)",
                &["displayName", "givenName", "name"],
                &self.cookie,
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.who));
        assert!(
            batch.errors.is_empty(),
            "{}: {} errors, first: {:?}",
            self.who,
            batch.errors.len(),
            batch.errors.first()
        );
        assert!(!batch.cookie.is_empty());
        self.cookie = batch.cookie;
        batch.entries
    }
}

/// Initial pass, displayName change, rename, delete; read in parallel by the domain admin and
/// by the least-privilege sync account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dirsync_reports_changes_renames_and_deletions() {
    let lab = Lab::load().unwrap();
    let mut ou = lab.test_ou("ad-dirsync").await.unwrap();
    let ou_dn = Dn::parse(&ou.dn).unwrap();
    let ou_s = ou.dn.clone();
    let nc = Dn::parse(&lab.ad.base_dn).unwrap();
    let sfx = &unique_suffix()[..6];
    let mut users = Vec::new();
    for i in 0..3 {
        let name = format!("d{sfx}{i}");
        let dn = add_user(
            ou.ldap(),
            &ou_s,
            &name,
            &[("displayName", &format!("User {i}"))],
        )
        .await;
        users.push(dn);
    }
    let mut readers = vec![
        Reader {
            who: "admin",
            ad: admin(&lab).await,
            cookie: Vec::new(),
        },
        Reader {
            who: "service account",
            ad: service_account(&lab).await,
            cookie: Vec::new(),
        },
    ];

    // Initial pass (empty cookie) over the whole naming context; keep what lies in our OU.
    let mut guids = Vec::new();
    for r in readers.iter_mut() {
        let all = r.pass(&nc).await;
        let mine = in_ou(&all, &ou_dn);
        assert_eq!(mine.len(), 3, "{}: {mine:?}", r.who);
        let mut g = Vec::new();
        for u in &users {
            let dn = Dn::parse(u).unwrap();
            let e = mine.iter().find(|e| e.dn == dn).unwrap();
            assert_eq!(e.class, "user");
            assert!(!e.deleted);
            assert_eq!(str_values(e, "displayName").len(), 1);
            g.push(e.guid);
        }
        guids.push(g);
    }
    assert_eq!(guids[0], guids[1]);
    let guids = guids.swap_remove(0);

    // Nothing changed in the OU: nothing reported from it.
    for r in readers.iter_mut() {
        let idle = r.pass(&nc).await;
        assert!(in_ou(&idle, &ou_dn).is_empty(), "{}: {idle:?}", r.who);
    }

    // displayName change: only that user, with the new value and its class.
    ou.ldap()
        .modify(
            &users[0],
            vec![Mod::Replace(
                "displayName",
                HashSet::from(["Renamed Display"]),
            )],
        )
        .await
        .and_then(|r| r.success())
        .unwrap();
    for r in readers.iter_mut() {
        let delta = r.pass(&nc).await;
        let mine = in_ou(&delta, &ou_dn);
        assert_eq!(mine.len(), 1, "{}: {mine:?}", r.who);
        assert_eq!(mine[0].guid, guids[0]);
        assert_eq!(mine[0].class, "user");
        assert_eq!(str_values(mine[0], "displayName"), ["Renamed Display"]);
        eprintln!("{}: delta after a displayName change: {:?}", r.who, mine[0]);
    }

    // Rename (modrdn): same GUID, new DN.
    let new_rdn = format!("CN=moved{sfx}");
    ou.ldap()
        .modifydn(&users[1], &new_rdn, true, None)
        .await
        .and_then(|r| r.success())
        .unwrap();
    let new_dn = Dn::parse(&format!("{new_rdn},{ou_s}")).unwrap();
    for r in readers.iter_mut() {
        let delta = r.pass(&nc).await;
        let moved = delta
            .iter()
            .find(|e| e.guid == guids[1])
            .unwrap_or_else(|| panic!("{}: renamed user missing from {delta:?}", r.who));
        assert_eq!(moved.dn, new_dn);
        assert!(!moved.deleted);
        assert_eq!(moved.class, "user");
    }

    // Deletion: reported with deleted = true, to the service account too (the lab grants it
    // list/read on CN=Deleted Objects, as docs/sync.md asks of a real domain).
    ou.ldap()
        .delete(&users[2])
        .await
        .and_then(|r| r.success())
        .unwrap();
    for r in readers.iter_mut() {
        let delta = r.pass(&nc).await;
        let gone = delta.iter().find(|e| e.guid == guids[2]);
        let gone = gone.unwrap_or_else(|| panic!("{}: deleted user missing from {delta:?}", r.who));
        assert!(gone.deleted, "{gone:?}");
        assert!(
            gone.dn.is_within(&nc.child("CN", "Deleted Objects")),
            "{gone:?}"
        );
    }

    for r in readers {
        r.ad.unbind().await.unwrap();
    }
    ou.remove().await.unwrap();
}

/// The USN read the agent's delta import uses between DirSync passes: after a modification, a
/// cleared attribute, a rename, a membership change and a deletion, exactly those objects come
/// back whole (the deletion as a tombstone), read by the least-privilege sync account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usn_reads_return_changed_objects_whole_with_tombstones() {
    let lab = Lab::load().unwrap();
    let mut ou = lab.test_ou("ad-usn").await.unwrap();
    let ou_dn = Dn::parse(&ou.dn).unwrap();
    let ou_s = ou.dn.clone();
    let nc = Dn::parse(&lab.ad.base_dn).unwrap();
    let sfx = &unique_suffix()[..6];
    let mut users = Vec::new();
    for i in 0..5 {
        let name = format!("u{sfx}{i}");
        let extra = [
            ("displayName", format!("User {i}")),
            ("title", "Clerk".into()),
        ];
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        users.push(add_user(ou.ldap(), &ou_s, &name, &extra).await);
    }
    let group = format!("CN=g{sfx},{ou_s}");
    ou.ldap()
        .add(
            &group,
            vec![
                ("objectClass", HashSet::from(["group"])),
                (
                    "sAMAccountName",
                    HashSet::from([format!("g{sfx}").as_str()]),
                ),
            ],
        )
        .await
        .and_then(|r| r.success())
        .unwrap();
    let mut ad = service_account(&lab).await;
    let attrs = ["displayName", "title", "member", "isDeleted"];
    let filter = "(|(objectClass=user)(objectClass=group))";
    let before = ad.highest_committed_usn().await.unwrap();

    let ldap = ou.ldap();
    let replace =
        |attr: &'static str, value: &'static str| vec![Mod::Replace(attr, HashSet::from([value]))];
    ldap.modify(&users[0], replace("displayName", "Changed"))
        .await
        .and_then(|r| r.success())
        .unwrap();
    ldap.modify(&users[1], vec![Mod::Delete("title", HashSet::new())])
        .await
        .and_then(|r| r.success())
        .unwrap();
    let new_rdn = format!("CN=moved{sfx}");
    ldap.modifydn(&users[2], &new_rdn, true, None)
        .await
        .and_then(|r| r.success())
        .unwrap();
    ldap.modify(
        &group,
        vec![Mod::Add("member", HashSet::from([users[4].as_str()]))],
    )
    .await
    .and_then(|r| r.success())
    .unwrap();
    ldap.delete(&users[3])
        .await
        .and_then(|r| r.success())
        .unwrap();
    let after = ad.highest_committed_usn().await.unwrap();
    assert!(after > before, "{before} -> {after}");

    let (entries, errors) = ad
        .changed_in(&nc, filter, &attrs, before + 1..=after)
        .await
        .unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let find = |rdn: &str| {
        entries
            .iter()
            .find(|e| {
                e.dn.rdns()
                    .first()
                    .is_some_and(|r| r.value().starts_with(rdn))
            })
            .unwrap_or_else(|| panic!("{rdn} missing from {entries:#?}"))
    };
    let changed = find(&format!("u{sfx}0"));
    assert_eq!(str_values(changed, "displayName"), ["Changed"]);
    assert_eq!(str_values(changed, "title"), ["Clerk"], "read whole");
    let cleared = find(&format!("u{sfx}1"));
    assert!(cleared.values("title").is_empty(), "{cleared:?}");
    assert_eq!(str_values(cleared, "displayName"), ["User 1"]);
    let renamed = find(&format!("moved{sfx}"));
    assert!(renamed.dn.is_within(&ou_dn) && !renamed.deleted);
    let grown = find(&format!("g{sfx}"));
    assert_eq!(grown.class, "group");
    assert_eq!(str_values(grown, "member").len(), 1, "{grown:?}");
    let gone = find(&format!("u{sfx}3"));
    assert!(gone.deleted, "{gone:?}");
    assert!(
        gone.dn.is_within(&nc.child("CN", "Deleted Objects")),
        "{gone:?}"
    );
    // Nothing changed since: nothing read.
    let (idle, _) = ad
        .changed_in(&nc, filter, &attrs, after + 1..=after + 3)
        .await
        .unwrap();
    assert!(in_ou(&idle, &ou_dn).is_empty(), "{idle:?}");

    ad.unbind().await.unwrap();
    ou.remove().await.unwrap();
}

#[tokio::test]
async fn bind_failure_names_the_account_and_code() {
    let lab = Lab::load().unwrap();
    let wrong = "not-the-password-42";
    let err = AdConnector::connect(&settings(
        &lab,
        &lab.ad.service_account_upn,
        wrong,
        &lab.ad.ldaps_url,
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, AdError::Bind { code: 49, .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&lab.ad.service_account_upn), "{text}");
    assert!(!text.contains(wrong) && !format!("{err:?}").contains(wrong));
}

#[tokio::test]
async fn starttls_on_389_binds() {
    let lab = Lab::load().unwrap();
    let host = lab.ad.ldaps_url.trim_start_matches("ldaps://");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let url = format!("ldap://{host}:389");
    let mut ad = AdConnector::connect(&settings(
        &lab,
        &lab.ad.admin_upn,
        &lab.ad.admin_password,
        &url,
    ))
    .await
    .unwrap();
    let (entries, errors) = ad
        .search_all(
            &Dn::parse(&lab.ad.tests_ou).unwrap(),
            "(objectClass=organizationalUnit)",
            &["ou"],
        )
        .await
        .unwrap();
    assert!(errors.is_empty());
    assert!(entries.iter().any(|e| e.class == "organizationalUnit"));
    ad.unbind().await.unwrap();
}
