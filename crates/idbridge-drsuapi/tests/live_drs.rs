//! Against the lab's Samba AD DC (start it with `./lab dc`): replicate the domain naming
//! context as the least-privilege `idbridge-sync` account and check the decrypted NT hashes.
//! A missing lab fails these tests; nothing is skipped.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use idbridge_drsuapi::{Credentials, DrsClient, DrsError, ReplicatedAccount, Watermark};
use idbridge_testkit::{Lab, TestOu};
use md4::{Digest, Md4};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Small pages, so that even the lab's small domain takes several.
const PAGE: u32 = 16;

fn lab() -> Result<Lab, String> {
    Lab::load().map_err(|e| e.to_string())
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
    let lab = lab().unwrap();
    let mut ou = lab.test_ou("drs").await.unwrap_or_else(|e| panic!("{e}"));
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
    let nt = account.nt_hash.as_ref().expect("unicodePwd replicated");
    assert_eq!(nt.as_bytes(), &expected_nt_hash(password));
    assert_eq!(
        nt.as_bytes(),
        &samba_tool_nt_hash(&lab, &name).unwrap(),
        "the hash Samba holds"
    );
    assert_eq!(account.user_account_control, Some(512));
    assert!(account.sid.as_ref().and_then(|s| s.rid()).is_some());
    assert!(!format!("{account:?}").contains(&hex::encode(nt.as_bytes())));
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
    let new_hash = changed
        .nt_hash
        .as_ref()
        .expect("the new unicodePwd replicated");
    assert_eq!(new_hash.as_bytes(), &expected_nt_hash(new_password));
    assert_eq!(
        new_hash.as_bytes(),
        &samba_tool_nt_hash(&lab, &name).unwrap(),
        "the hash Samba holds after the change"
    );

    client
        .unbind()
        .await
        .unwrap_or_else(|e| panic!("unbind: {e}"));
    ou.remove().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn an_account_without_replication_rights_gets_a_clear_error() {
    let lab = lab().unwrap();
    let mut ou = lab
        .test_ou("drs-denied")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
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
    ou.remove().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn a_wrong_password_fails_authentication() {
    let lab = lab().unwrap();
    let creds = Credentials::new(lab.ad.service_account_upn.clone(), "not-the-password");
    match DrsClient::connect(LOOPBACK, &creds).await {
        Err(DrsError::Authentication(_)) => {}
        other => panic!("expected an authentication error, got {other:?}"),
    }
}
