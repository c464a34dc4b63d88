//! Against the lab's Samba AD DC (start it with `./lab dc`): replicate the domain naming
//! context as the least-privilege `idbridge-sync` account and check the decrypted NT hashes,
//! over Kerberos and over NTLMv2. A missing lab fails these tests; nothing is skipped.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use idbridge_core::ObjectGuid;
use idbridge_drsuapi::{
    AuthMechanism, AuthOptions, Credentials, DrsClient, DrsError, ReplicatedAccount, RpcAuth,
    Watermark,
};
use idbridge_testkit::{Lab, TestOu};
use md4::{Digest, Md4};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Small pages, so that even the lab's small domain takes several.
const PAGE: u32 = 16;

fn lab() -> Result<Lab, String> {
    Lab::load().map_err(|e| e.to_string())
}

/// The lab, and an OU of the test's own under `OU=Tests`.
#[allow(clippy::unwrap_used, clippy::panic)] // A test helper: failing loudly is the point.
async fn lab_and_ou(label: &str) -> (Lab, TestOu) {
    let lab = lab().unwrap();
    let ou = lab.test_ou(label).await.unwrap_or_else(|e| panic!("{e}"));
    (lab, ou)
}

fn expected_nt_hash(password: &str) -> [u8; 16] {
    let utf16: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
    Md4::digest(&utf16).into()
}

fn quoted_utf16(password: &str) -> Vec<u8> {
    format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

fn values(v: &[u8]) -> HashSet<Vec<u8>> {
    HashSet::from([v.to_vec()])
}

/// Creates an enabled user with `password` in the test OU; returns its UPN.
async fn add_user(
    lab: &Lab,
    ou: &mut TestOu,
    name: &str,
    password: &str,
) -> Result<String, String> {
    let upn = format!("{name}@{}", lab.ad.realm.to_lowercase());
    let dn = format!("CN={name},{}", ou.dn);
    let attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = vec![
        (b"objectClass".to_vec(), values(b"user")),
        (b"sAMAccountName".to_vec(), values(name.as_bytes())),
        (b"userPrincipalName".to_vec(), values(upn.as_bytes())),
        (b"unicodePwd".to_vec(), values(&quoted_utf16(password))),
        (b"userAccountControl".to_vec(), values(b"512")),
    ];
    ou.ldap()
        .add(&dn, attrs)
        .await
        .and_then(|r| r.success())
        .map_err(|e| format!("add {dn}: {e}"))?;
    Ok(upn)
}

async fn set_password(ou: &mut TestOu, name: &str, password: &str) -> Result<(), String> {
    let dn = format!("CN={name},{}", ou.dn);
    let mods = vec![ldap3::Mod::Replace(
        b"unicodePwd".to_vec(),
        values(&quoted_utf16(password)),
    )];
    ou.ldap()
        .modify(&dn, mods)
        .await
        .and_then(|r| r.success())
        .map_err(|e| format!("reset password of {dn}: {e}"))?;
    Ok(())
}

/// The NT hash Samba itself holds for the account: `samba-tool user getpassword
/// --attributes=unicodePwd` on the DC's database. The lab's `smb.conf` is passed because the
/// system one, if any, describes another server.
/// The replicated NT hash of `account` (`name`): MD4 of `password`, and the hash Samba holds.
#[allow(clippy::expect_used, clippy::unwrap_used)] // A test helper: failing loudly is the point.
fn assert_replicated_hash<'a>(
    lab: &Lab,
    account: &'a ReplicatedAccount,
    name: &str,
    password: &str,
) -> &'a [u8; 16] {
    let nt = account
        .nt_hash
        .as_ref()
        .expect("unicodePwd replicated")
        .as_bytes();
    assert_eq!(nt, &expected_nt_hash(password));
    assert_eq!(
        nt,
        &samba_tool_nt_hash(lab, name).unwrap(),
        "the hash Samba holds"
    );
    nt
}

fn samba_tool_nt_hash(lab: &Lab, sam_account_name: &str) -> Result<[u8; 16], String> {
    use base64::Engine as _;
    let out = std::process::Command::new("samba-tool")
        .args([
            "user",
            "getpassword",
            sam_account_name,
            "--attributes=unicodePwd",
        ])
        .arg("-H")
        .arg(&lab.ad.sam_ldb)
        .arg("-s")
        .arg(&lab.ad.smb_conf)
        .output()
        .map_err(|e| format!("samba-tool: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "samba-tool user getpassword {sam_account_name}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("unicodePwd:: "))
        .ok_or_else(|| format!("no unicodePwd in samba-tool's output: {text}"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| format!("unicodePwd is not base64: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("unicodePwd has {} bytes", b.len()))
}

fn service_credentials(lab: &Lab) -> Credentials {
    Credentials::new(
        lab.ad.service_account_upn.clone(),
        lab.ad.service_account_password.clone(),
    )
}

/// Runs a whole cycle: every account replicated, the final watermark, pages and objects seen.
async fn replicate(
    client: &mut DrsClient,
    nc: &str,
    since: Option<&Watermark>,
) -> Result<(Vec<ReplicatedAccount>, Watermark, usize, usize), String> {
    let mut repl = client.replicate_secrets(nc, since).with_max_objects(PAGE);
    let mut accounts = Vec::new();
    let mut pages = 0;
    let mut objects = 0;
    let mut last = None;
    while let Some(page) = repl.next_page().await.map_err(|e| e.to_string())? {
        pages += 1;
        objects += page.objects_in_page;
        accounts.extend(page.accounts);
        last = Some(page.watermark);
    }
    let watermark = last.ok_or("the cycle returned no page")?;
    Ok((accounts, watermark, pages, objects))
}

#[tokio::test]
async fn replicated_nt_hash_matches_the_password_and_deltas_resume() {
    let (lab, mut ou) = lab_and_ou("drs").await;
    let name = format!("drs-{}", idbridge_testkit::unique_suffix());
    // Non-ASCII (BMP) and non-BMP characters: UTF-16 surrogates must reach MD4 intact.
    let password = "P\u{e4}\u{df}w\u{f6}rd-\u{1F511}-Ok1";
    add_user(&lab, &mut ou, &name, password).await.unwrap();

    let mut client = DrsClient::connect(LOOPBACK, &service_credentials(&lab))
        .await
        .unwrap_or_else(|e| panic!("connect as the service account: {e}"));
    let nc = lab.ad.base_dn.clone();

    let (all, watermark, pages, objects) = replicate(&mut client, &nc, None).await.unwrap();
    assert!(pages > 1, "{objects} objects span several pages of {PAGE}");
    let found: Vec<_> = all
        .iter()
        .filter(|a| a.sam_account_name.as_deref() == Some(name.as_str()))
        .collect();
    let [account] = found.as_slice() else {
        panic!("expected the test user once, got {found:?}");
    };
    let nt = assert_replicated_hash(&lab, account, &name, password);
    assert_eq!(account.user_account_control, Some(512));
    assert!(account.sid.as_ref().and_then(|s| s.rid()).is_some());
    assert!(!format!("{account:?}").contains(&hex::encode(nt)));
    let guid = account.object_guid;
    // Every account with a password comes along, the service account's own included.
    assert!(all
        .iter()
        .any(|a| a.sam_account_name.as_deref() == Some("idbridge-sync") && a.nt_hash.is_some()));

    // Nothing changed: the delta from the watermark does not bring the user back.
    let (again, watermark, _, _) = replicate(&mut client, &nc, Some(&watermark)).await.unwrap();
    assert!(
        again.iter().all(|a| a.object_guid != guid),
        "unchanged user replicated again: {again:?}"
    );

    // N password changes: the next delta brings those N accounts, with the new hashes, and not
    // the domain. A delta carries only the changed attributes (no sAMAccountName), so the users
    // are found by objectGUID.
    let others = [format!("{name}-b"), format!("{name}-c")];
    for other in &others {
        add_user(&lab, &mut ou, other, "Other-pass-1!")
            .await
            .unwrap();
    }
    let (created, watermark, _, _) = replicate(&mut client, &nc, Some(&watermark)).await.unwrap();
    let mut changed_guids: HashSet<_> = created
        .iter()
        .filter(|a| {
            others
                .iter()
                .any(|o| a.sam_account_name.as_deref() == Some(o.as_str()))
        })
        .map(|a| a.object_guid)
        .collect();
    changed_guids.insert(guid);
    let new_password = "Zweites-Pa\u{df}wort-\u{1F600}-2";
    set_password(&mut ou, &name, new_password).await.unwrap();
    for other in &others {
        set_password(&mut ou, other, "Other-pass-2!").await.unwrap();
    }
    let (delta, _, _, delta_objects) = replicate(&mut client, &nc, Some(&watermark)).await.unwrap();
    assert!(delta_objects < objects, "a delta is not a full replication");
    let with_new_hashes: HashSet<_> = delta
        .iter()
        .filter(|a| a.nt_hash.is_some())
        .map(|a| a.object_guid)
        .collect();
    assert_eq!(
        with_new_hashes, changed_guids,
        "3 changes, 3 accounts ({delta_objects} objects in the delta)"
    );
    let changed: Vec<_> = delta.iter().filter(|a| a.object_guid == guid).collect();
    let [changed] = changed.as_slice() else {
        panic!("expected the user once in the delta, got {delta:?}");
    };
    assert_replicated_hash(&lab, changed, &name, new_password);

    client
        .unbind()
        .await
        .unwrap_or_else(|e| panic!("unbind: {e}"));
    ou.remove().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn an_account_without_replication_rights_gets_a_clear_error() {
    let (lab, mut ou) = lab_and_ou("drs-denied").await;
    let name = format!("plain-{}", idbridge_testkit::unique_suffix());
    let password = "Plain-user-Pass-1";
    let upn = add_user(&lab, &mut ou, &name, password).await.unwrap();

    let mut client = DrsClient::connect(LOOPBACK, &Credentials::new(upn, password))
        .await
        .unwrap_or_else(|e| panic!("a plain user may still bind: {e}"));
    let result = client
        .replicate_secrets(&lab.ad.base_dn, None)
        .next_page()
        .await;
    let err = match result {
        Err(e) => e,
        Ok(page) => panic!("a plain user replicated: {page:?}"),
    };
    assert!(
        matches!(err, DrsError::MissingReplicationRight { .. }),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .contains("Replicating Directory Changes All"));
    // Reading one object needs the same rights (checked on its naming context).
    let own = guid_of(&mut ou, &name).await.unwrap();
    let err = client.replicate_object(own).await.unwrap_err();
    assert!(
        matches!(err, DrsError::MissingReplicationRight { .. }),
        "{err:?}"
    );
    ou.remove().await.unwrap_or_else(|e| panic!("{e}"));
}

/// The objectGUID of the test OU's user `name`, read over LDAP.
async fn guid_of(ou: &mut TestOu, name: &str) -> Result<ObjectGuid, String> {
    let dn = format!("CN={name},{}", ou.dn);
    let entry = read_entry(ou, &dn, "objectGUID").await?;
    let bytes = entry
        .bin_attrs
        .get("objectGUID")
        .and_then(|v| v.first())
        .ok_or_else(|| format!("{dn} has no objectGUID"))?;
    ObjectGuid::from_bytes(bytes).map_err(|e| e.to_string())
}

/// One attribute of one entry (`""`: the rootDSE), as the admin of the test OU.
async fn read_entry(
    ou: &mut TestOu,
    dn: &str,
    attribute: &str,
) -> Result<ldap3::SearchEntry, String> {
    let (entries, _) = ou
        .ldap()
        .search(dn, ldap3::Scope::Base, "(objectClass=*)", vec![attribute])
        .await
        .and_then(|r| r.success())
        .map_err(|e| format!("read {attribute} of {dn:?}: {e}"))?;
    entries
        .into_iter()
        .next()
        .map(ldap3::SearchEntry::construct)
        .ok_or_else(|| format!("{dn:?} not found"))
}

#[tokio::test]
async fn a_single_object_is_replicated_by_guid() {
    let (lab, mut ou) = lab_and_ou("drs-object").await;
    let name = format!("obj-{}", idbridge_testkit::unique_suffix());
    let other = format!("{name}-b");
    add_user(&lab, &mut ou, &name, "First-pass-1!")
        .await
        .unwrap();
    add_user(&lab, &mut ou, &other, "Other-pass-1!")
        .await
        .unwrap();
    let guid = guid_of(&mut ou, &name).await.unwrap();
    let other_guid = guid_of(&mut ou, &other).await.unwrap();
    let password = "Neu-Pa\u{df}w\u{f6}rt-\u{1F511}-2";
    set_password(&mut ou, &name, password).await.unwrap();
    set_password(&mut ou, &other, "Other-pass-2!")
        .await
        .unwrap();

    let connecting = std::time::Instant::now();
    let mut client = DrsClient::connect(LOOPBACK, &service_credentials(&lab))
        .await
        .unwrap_or_else(|e| panic!("connect as the service account: {e}"));
    eprintln!("connect (Kerberos, DRSBind): {:?}", connecting.elapsed());
    let started = std::time::Instant::now();
    let reply = client
        .replicate_object(guid)
        .await
        .unwrap_or_else(|e| panic!("single-object replication of {guid}: {e}"));
    eprintln!("EXOP_REPL_OBJ round trip: {:?}", started.elapsed());
    // Exactly the account asked for, though another one changed its password too.
    assert_eq!(reply.objects_in_reply, 1, "{reply:?}");
    let [account] = reply.accounts.as_slice() else {
        panic!("expected exactly the requested account, got {reply:?}");
    };
    assert_eq!(account.object_guid, guid);
    // No watermark was sent: every requested attribute comes, not only the changed ones.
    assert_eq!(account.sam_account_name.as_deref(), Some(name.as_str()));
    assert_eq!(account.user_account_control, Some(512));
    assert_replicated_hash(&lab, account, &name, password);

    // The same connection serves further requests, each standing alone: another object, then
    // the first again.
    let reply = client.replicate_object(other_guid).await.unwrap();
    let guids: Vec<_> = reply.accounts.iter().map(|a| a.object_guid).collect();
    assert_eq!(guids, [other_guid]);
    let again = client.replicate_object(guid).await.unwrap();
    assert_eq!(
        again
            .accounts
            .first()
            .and_then(|a| a.nt_hash.as_ref())
            .map(|h| *h.as_bytes()),
        Some(expected_nt_hash(password))
    );

    // No object with this GUID: an error naming it, and the connection stays usable.
    let unknown = ObjectGuid::parse("5a5a5a5a-0000-4000-8000-00000000a5a5").unwrap();
    let err = client.replicate_object(unknown).await.unwrap_err();
    assert!(
        matches!(err, DrsError::Object { code: 8439, .. }),
        "ERROR_DS_DRA_BAD_DN expected: {err:?}"
    );
    assert!(err.connection_usable(), "{err:?}");
    assert!(err.to_string().contains(&unknown.to_string()), "{err}");
    client.replicate_object(guid).await.unwrap();

    // A deleted account: its tombstone, which keeps no password.
    let other_dn = format!("CN={other},{}", ou.dn);
    ou.ldap()
        .delete(&other_dn)
        .await
        .unwrap()
        .success()
        .unwrap();
    let deleted = client.replicate_object(other_guid).await.unwrap();
    let [tombstone] = deleted.accounts.as_slice() else {
        panic!("expected the tombstone: {deleted:?}");
    };
    assert_eq!(tombstone.object_guid, other_guid);
    assert!(tombstone.dn.contains("Deleted Objects"), "{}", tombstone.dn);
    assert!(tombstone.nt_hash.is_none());

    client
        .unbind()
        .await
        .unwrap_or_else(|e| panic!("unbind: {e}"));
    ou.remove().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn a_wrong_password_fails_authentication() {
    let lab = lab().unwrap();
    let creds = Credentials::new(lab.ad.service_account_upn.clone(), "not-the-password");
    match DrsClient::connect(LOOPBACK, &creds).await {
        Err(DrsError::Authentication { .. }) => {}
        other => panic!("expected an authentication error, got {other:?}"),
    }
}

/// The DC's DNS host name, from the rootDSE.
async fn dc_dns_name(ou: &mut TestOu) -> Result<String, String> {
    let entry = read_entry(ou, "", "dnsHostName").await?;
    entry
        .attrs
        .get("dnsHostName")
        .and_then(|v| v.first())
        .map(|name| name.to_lowercase())
        .ok_or_else(|| "no dnsHostName in the rootDSE".into())
}

fn options(mechanism: RpcAuth, spn: Option<String>) -> AuthOptions {
    AuthOptions {
        mechanism,
        spn,
        ..AuthOptions::default()
    }
}

/// A port on this machine where nothing listens.
fn closed_port() -> Result<std::net::SocketAddr, String> {
    std::net::TcpListener::bind((LOOPBACK, 0))
        .and_then(|listener| listener.local_addr())
        .map_err(|e| format!("a free port: {e}"))
}

/// The NT hash of `name` in a full replication over `client`.
async fn replicated_hash(client: &mut DrsClient, nc: &str, name: &str) -> Result<[u8; 16], String> {
    let (all, _, _, _) = replicate(client, nc, None).await?;
    let found: Vec<_> = all
        .iter()
        .filter(|a| a.sam_account_name.as_deref() == Some(name))
        .collect();
    let [account] = found.as_slice() else {
        return Err(format!("expected {name} once, got {found:?}"));
    };
    account
        .nt_hash
        .as_ref()
        .map(|h| *h.as_bytes())
        .ok_or_else(|| format!("no unicodePwd replicated for {name}"))
}

#[tokio::test]
async fn kerberos_replication_decrypts_the_same_nt_hash_as_ntlm() {
    let (lab, mut ou) = lab_and_ou("drs-krb").await;
    let name = format!("krb-{}", idbridge_testkit::unique_suffix());
    let password = "Kerb\u{e9}ros-\u{1F511}-Pass1";
    add_user(&lab, &mut ou, &name, password).await.unwrap();
    let dc = dc_dns_name(&mut ou).await.unwrap();
    let nc = lab.ad.base_dn.clone();
    let creds = service_credentials(&lab);

    let spn = format!("host/{dc}");
    let client = DrsClient::connect_with(
        LOOPBACK,
        &creds,
        &options(RpcAuth::Kerberos, Some(spn.clone())),
    )
    .await
    .unwrap_or_else(|e| panic!("Kerberos bind for {spn}: {e}"));
    assert_eq!(client.mechanism(), AuthMechanism::Kerberos);
    client
        .unbind()
        .await
        .unwrap_or_else(|e| panic!("unbind: {e}"));

    // Samba registers only HOST/ SPNs for the DC: an SPN the KDC does not know makes negotiate
    // fall back, naming the SPN.
    let unknown = format!("ldap/{dc}");
    let client = DrsClient::connect_with(
        LOOPBACK,
        &creds,
        &options(RpcAuth::Negotiate, Some(unknown.clone())),
    )
    .await
    .unwrap_or_else(|e| panic!("negotiate with {unknown}: {e}"));
    assert_eq!(client.mechanism(), AuthMechanism::Ntlm);
    let reason = client.kerberos_fallback().unwrap_or_default();
    assert!(
        reason.contains(&unknown) && reason.contains("KDC_ERR_S_PRINCIPAL_UNKNOWN"),
        "{reason}"
    );
    client
        .unbind()
        .await
        .unwrap_or_else(|e| panic!("unbind: {e}"));

    // The default: Kerberos, for the SPN host/<the name the DC announces>.
    let mut kerberos = DrsClient::connect(LOOPBACK, &creds)
        .await
        .unwrap_or_else(|e| panic!("connect with the defaults: {e}"));
    assert_eq!(kerberos.mechanism(), AuthMechanism::Kerberos);
    assert_eq!(kerberos.kerberos_fallback(), None);
    let over_kerberos = replicated_hash(&mut kerberos, &nc, &name).await.unwrap();
    kerberos
        .unbind()
        .await
        .unwrap_or_else(|e| panic!("unbind: {e}"));

    let mut ntlm = DrsClient::connect_with(LOOPBACK, &creds, &options(RpcAuth::Ntlm, None))
        .await
        .unwrap_or_else(|e| panic!("NTLM bind: {e}"));
    assert_eq!(ntlm.mechanism(), AuthMechanism::Ntlm);
    let over_ntlm = replicated_hash(&mut ntlm, &nc, &name).await.unwrap();
    ntlm.unbind()
        .await
        .unwrap_or_else(|e| panic!("unbind: {e}"));

    assert_eq!(over_kerberos, expected_nt_hash(password));
    assert_eq!(
        over_kerberos, over_ntlm,
        "the same hash over both mechanisms"
    );
    assert_eq!(
        over_kerberos,
        samba_tool_nt_hash(&lab, &name).unwrap(),
        "the hash Samba holds"
    );
    ou.remove().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn a_wrong_password_fails_kerberos_without_trying_ntlm() {
    let (lab, mut ou) = lab_and_ou("drs-krb-pw").await;
    // A user of its own: wrong passwords count towards the lab's lockout threshold.
    let name = format!("krbpw-{}", idbridge_testkit::unique_suffix());
    let upn = add_user(&lab, &mut ou, &name, "Right-Pass-1")
        .await
        .unwrap();
    let dc = dc_dns_name(&mut ou).await.unwrap();
    let wrong = "Wrong-Pass-1-zq8";
    let creds = Credentials::new(upn, wrong);
    for mechanism in [RpcAuth::Kerberos, RpcAuth::Negotiate] {
        let spn = Some(format!("host/{dc}"));
        let err = match DrsClient::connect_with(LOOPBACK, &creds, &options(mechanism, spn)).await {
            Err(e) => e,
            Ok(c) => panic!(
                "{mechanism:?}: a wrong password bound with {}",
                c.mechanism()
            ),
        };
        assert!(
            matches!(
                err,
                DrsError::Authentication {
                    mechanism: AuthMechanism::Kerberos,
                    ..
                }
            ),
            "{mechanism:?}: {err:?}"
        );
        let message = err.to_string();
        assert!(
            message.starts_with("Kerberos authentication failed: ")
                && message.contains("KDC_ERR_PREAUTH_FAILED"),
            "{message}"
        );
        assert!(!message.contains(wrong), "{message}");
    }
    ou.remove().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn an_unreachable_kdc_falls_back_to_ntlm_under_negotiate() {
    let (lab, mut ou) = lab_and_ou("drs-krb-nokdc").await;
    let name = format!("nokdc-{}", idbridge_testkit::unique_suffix());
    let password = "No-KDC-Pass-1";
    add_user(&lab, &mut ou, &name, password).await.unwrap();
    let creds = service_credentials(&lab);
    let kdc = closed_port().unwrap();
    let negotiate = AuthOptions {
        kdc: Some(kdc),
        ..AuthOptions::default()
    };
    let mut client = DrsClient::connect_with(LOOPBACK, &creds, &negotiate)
        .await
        .unwrap_or_else(|e| panic!("negotiate without a KDC: {e}"));
    assert_eq!(client.mechanism(), AuthMechanism::Ntlm);
    let reason = client
        .kerberos_fallback()
        .expect("the reason Kerberos was not used");
    assert!(
        reason.contains(&kdc.to_string()) && reason.contains("unreachable"),
        "{reason}"
    );
    let hash = replicated_hash(&mut client, &lab.ad.base_dn, &name)
        .await
        .unwrap();
    assert_eq!(hash, expected_nt_hash(password));
    client
        .unbind()
        .await
        .unwrap_or_else(|e| panic!("unbind: {e}"));

    // Kerberos only: an error naming the KDC, no fallback.
    let only = AuthOptions {
        mechanism: RpcAuth::Kerberos,
        ..negotiate
    };
    match DrsClient::connect_with(LOOPBACK, &creds, &only).await {
        Err(
            e @ DrsError::Authentication {
                mechanism: AuthMechanism::Kerberos,
                ..
            },
        ) => assert!(e.to_string().contains(&kdc.to_string()), "{e}"),
        Err(e) => panic!("expected a Kerberos error, got {e:?}"),
        Ok(c) => panic!("bound with {} without a KDC", c.mechanism()),
    }
    ou.remove().await.unwrap_or_else(|e| panic!("{e}"));
}
