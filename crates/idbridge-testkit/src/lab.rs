use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ldap3::controls::RawControl;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope};
use serde::Deserialize;

/// `LDAP_SERVER_TREE_DELETE_OID`: delete an OU and everything beneath it in one request.
const TREE_DELETE_OID: &str = "1.2.840.113556.1.4.805";

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "the lab is not up: cannot read {path}: {reason}. Run `./lab dc` (or `./lab up`) first, \
         or point IDBRIDGE_LAB at a lab.json"
    )]
    NoLab { path: String, reason: String },
    #[error("cannot read the lab CA certificate {path}: {reason}")]
    Certificate { path: String, reason: String },
    #[error("the lab DC at {url} is unreachable or refused us: {source}")]
    Ldap {
        url: String,
        source: Box<ldap3::LdapError>,
    },
    #[error("{what} failed: {reason}")]
    Command { what: String, reason: String },
    #[error("LDAP operation on {dn} failed: {source}")]
    Operation {
        dn: String,
        source: Box<ldap3::LdapError>,
    },
}

/// What `.lab/lab.json` says about the domain controller (the keys tests need).
#[derive(Debug, Clone, Deserialize)]
pub struct AdDetails {
    pub ldaps_url: String,
    pub base_dn: String,
    pub realm: String,
    pub admin_upn: String,
    pub admin_password: String,
    pub sync_ou: String,
    pub writeback_ou: String,
    pub tests_ou: String,
    pub ca_cert: PathBuf,
    pub sam_ldb: PathBuf,
    pub smb_conf: PathBuf,
    pub sample_users: Vec<String>,
    pub sample_password: String,
    pub service_account_upn: String,
    pub service_account_password: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Lab {
    pub ad: AdDetails,
    pub outbox: PathBuf,
}

impl Lab {
    /// Reads `$IDBRIDGE_LAB`, else `.lab/lab.json` at the repository root.
    pub fn load() -> Result<Self, LabError> {
        let path = std::env::var_os("IDBRIDGE_LAB")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".lab/lab.json"));
        let no_lab = |reason: String| LabError::NoLab {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| no_lab(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| no_lab(e.to_string()))
    }

    /// TLS settings that verify the DC against the lab CA (never "skip verification").
    pub fn ldap_settings(&self) -> Result<LdapConnSettings, LabError> {
        let path = &self.ad.ca_cert;
        let cert_err = |reason: String| LabError::Certificate {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| cert_err(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots
                .add(cert.map_err(|e| cert_err(e.to_string()))?)
                .map_err(|e| cert_err(e.to_string()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| cert_err(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(LdapConnSettings::new()
            .set_config(Arc::new(config))
            .set_conn_timeout(Duration::from_secs(10)))
    }

    /// A connection bound as the domain administrator.
    pub async fn admin_connection(&self) -> Result<Ldap, LabError> {
        self.connect(&self.ad.admin_upn, &self.ad.admin_password)
            .await
    }

    pub async fn connect(&self, bind_dn: &str, password: &str) -> Result<Ldap, LabError> {
        let url = &self.ad.ldaps_url;
        let ldap_err = |source| LabError::Ldap {
            url: url.clone(),
            source: Box::new(source),
        };
        let (conn, mut ldap) = LdapConnAsync::with_settings(self.ldap_settings()?, url)
            .await
            .map_err(ldap_err)?;
        ldap3::drive!(conn);
        ldap.simple_bind(bind_dn, password)
            .await
            .and_then(|r| r.success())
            .map_err(ldap_err)?;
        Ok(ldap)
    }

    /// Stops the domain controller (`./lab dc-stop`); [`Lab::start_dc`] starts it again.
    pub fn stop_dc(&self) -> Result<(), LabError> {
        run_lab("dc-stop")
    }

    /// Starts the domain controller and waits until LDAPS answers (`./lab dc`).
    pub fn start_dc(&self) -> Result<(), LabError> {
        run_lab("dc")
    }

    /// Brings a deleted object (by the objectGUID it had) back at `dn`, as an administrator
    /// restores a tombstone. Samba refuses reanimation of its tombstones over LDAP (they are
    /// marked recycled), so this goes through Samba's own bindings on the DC's database, as
    /// `samba-tool` does.
    pub fn restore_deleted(&self, guid: &[u8], dn: &str) -> Result<(), LabError> {
        const SCRIPT: &str = r#"
import sys, uuid, ldb
from samba.samdb import SamDB
from samba.auth import system_session
from samba.param import LoadParm
smb_conf, sam_ldb, guid, dn = sys.argv[1:5]
lp = LoadParm(); lp.load(smb_conf)
db = SamDB(url=sam_ldb, session_info=system_session(), lp=lp)
msg = ldb.Message(ldb.Dn(db, "<GUID=%s>" % uuid.UUID(bytes_le=bytes.fromhex(guid))))
msg["isDeleted"] = ldb.MessageElement([], ldb.FLAG_MOD_DELETE, "isDeleted")
msg["distinguishedName"] = ldb.MessageElement([dn], ldb.FLAG_MOD_REPLACE, "distinguishedName")
db.modify(msg, ["show_deleted:1", "show_recycled:1"])
"#;
        let hex: String = guid.iter().map(|b| format!("{b:02x}")).collect();
        let what = format!("restoring {dn}");
        let out = run_command(
            &what,
            std::process::Command::new("/usr/bin/python3")
                .arg("-c")
                .arg(SCRIPT)
                .arg(&self.ad.smb_conf)
                .arg(&self.ad.sam_ldb)
                .arg(hex)
                .arg(dn),
        )?;
        check_output(what, &out)
    }

    /// Adds an ACE for the agent's service account to `dn`'s security descriptor, as an
    /// administrator granting a right does; `{sid}` in `ace` stands for the account's SID.
    pub fn grant_service_account(&self, dn: &str, ace: &str) -> Result<(), LabError> {
        let account = self
            .ad
            .service_account_upn
            .split('@')
            .next()
            .unwrap_or_default();
        let what = format!("granting {ace} on {dn} to {account}");
        let samba_tool = |args: &[&str]| {
            run_command(
                &what,
                std::process::Command::new("samba-tool")
                    .args(args)
                    .arg("-H")
                    .arg(&self.ad.sam_ldb),
            )
        };
        let shown = samba_tool(&["user", "show", account, "--attributes=objectSid"])?;
        check_output(what.clone(), &shown)?;
        let text = String::from_utf8_lossy(&shown.stdout);
        let sid = text
            .lines()
            .find_map(|l| l.strip_prefix("objectSid: "))
            .ok_or_else(|| LabError::Command {
                what: what.clone(),
                reason: "samba-tool printed no objectSid".into(),
            })?;
        let ace = ace.replace("{sid}", sid.trim());
        let set = samba_tool(&[
            "dsacl",
            "set",
            "--action=allow",
            &format!("--objectdn={dn}"),
            &format!("--sddl={ace}"),
        ])?;
        check_output(what, &set)
    }

    /// The third-party SCIM 2.0 server the export tests run (`./lab test` installs it).
    pub fn scim_reference_server(&self) -> Result<PathBuf, LabError> {
        let path = repo_root().join(".lab/scim2-server/bin/scim2-server");
        if path.is_file() {
            return Ok(path);
        }
        Err(LabError::Command {
            what: "the third-party SCIM server".into(),
            reason: format!(
                "{} is missing: run `./lab test`, which installs it",
                path.display()
            ),
        })
    }

    /// Creates `OU=<label>-<random>` under the lab's `OU=Tests` for one test.
    pub async fn test_ou(&self, label: &str) -> Result<TestOu, LabError> {
        let mut ldap = self.admin_connection().await?;
        let dn = format!("OU={label}-{},{}", crate::unique_suffix(), self.ad.tests_ou);
        ldap.add(&dn, vec![("objectClass", ["organizationalUnit"].into())])
            .await
            .and_then(|r| r.success())
            .map_err(|source| LabError::Operation {
                dn: dn.clone(),
                source: Box::new(source),
            })?;
        Ok(TestOu { dn, ldap })
    }
}

/// An OU that belongs to one test. Call [`TestOu::remove`] at the end; an OU left behind by a
/// failed test has a unique name and is visible under `OU=Tests` for diagnosis.
pub struct TestOu {
    pub dn: String,
    ldap: Ldap,
}

impl TestOu {
    /// The admin connection the OU was created with, for the test's own setup.
    pub fn ldap(&mut self) -> &mut Ldap {
        &mut self.ldap
    }

    /// Connects again as the administrator (after the DC restarted under the test).
    pub async fn reconnect(&mut self, lab: &Lab) -> Result<(), LabError> {
        self.ldap = lab.admin_connection().await?;
        Ok(())
    }

    /// Number of entries under (and including) the OU.
    pub async fn count_entries(&mut self) -> Result<usize, LabError> {
        let (entries, _) = self
            .ldap
            .search(&self.dn, Scope::Subtree, "(objectClass=*)", vec!["1.1"])
            .await
            .and_then(|r| r.success())
            .map_err(|source| LabError::Operation {
                dn: self.dn.clone(),
                source: Box::new(source),
            })?;
        Ok(entries.len())
    }

    /// Deletes the OU and everything in it.
    pub async fn remove(mut self) -> Result<(), LabError> {
        let tree_delete = RawControl {
            ctype: TREE_DELETE_OID.to_string(),
            crit: true,
            val: None,
        };
        let result = self
            .ldap
            .with_controls(tree_delete)
            .delete(&self.dn)
            .await
            .and_then(|r| r.success());
        self.ldap.unbind().await.ok();
        result.map(|_| ()).map_err(|source| LabError::Operation {
            dn: self.dn,
            source: Box::new(source),
        })
    }
}

fn repo_root() -> PathBuf {
    // crates/idbridge-testkit -> repository root
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs `command` to its end; its output, or an error naming `what`.
fn run_command(
    what: &str,
    command: &mut std::process::Command,
) -> Result<std::process::Output, LabError> {
    command.output().map_err(|e| LabError::Command {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

fn check_output(what: String, out: &std::process::Output) -> Result<(), LabError> {
    if out.status.success() {
        return Ok(());
    }
    Err(LabError::Command {
        what,
        reason: format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

fn run_lab(subcommand: &str) -> Result<(), LabError> {
    let what = format!("./lab {subcommand}");
    let out = run_command(
        &what,
        std::process::Command::new(repo_root().join("lab")).arg(subcommand),
    )?;
    check_output(what, &out)
}
