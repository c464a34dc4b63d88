//! `agent.toml`: versioned and strict; secrets are [`Secret`]s, redacted in `Debug`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use idbridge_core::config::{self, ConfigError};
use idbridge_core::Secret;
use idbridge_drsuapi::{AuthOptions, RpcAuth};
use idbridge_engine::ScimDialect;
use serde::Deserialize;

pub const CONFIG_VERSION: u32 = 1;
/// More connections than a DC has LDAP workers (Samba forks four) would only queue.
const MAX_IMPORT_CONNECTIONS: u32 = 8;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub version: u32,
    pub ad: AdConfig,
    pub cloud: CloudConfig,
    #[serde(default)]
    pub phs: PhsConfig,
    pub storage: StorageConfig,
    #[serde(default)]
    pub status: StatusConfig,
    #[serde(default)]
    pub sync: SyncConfig,
}

/// Object sync (AD -> cloud); see docs/sync.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    pub enabled: bool,
    /// Containers whose objects are synced (empty: the whole domain).
    pub include_ous: Vec<String>,
    pub exclude_ous: Vec<String>,
    /// An LDAP filter objects must also match, e.g. `(department=Sales)`.
    pub filter: Option<String>,
    /// Only direct members of this group are synced (a pilot).
    pub pilot_group: Option<String>,
    /// A rules file; absent: the shipped default rules.
    pub rules: Option<PathBuf>,
    /// What leaving scope does to the cloud object.
    pub deprovision: Deprovision,
    /// An export holds when it would delete more than this many objects...
    pub deletion_threshold: u64,
    /// ...or more than this percentage of the exported objects (when set).
    pub deletion_threshold_percent: Option<u8>,
    /// Import and sync, never export; `idbridge sync preview` shows what would be exported.
    pub staging: bool,
    /// DirSync poll interval of the agent's delta cycle.
    pub poll_interval_ms: u64,
    /// A full cycle (full import, full sync, export) this often.
    pub full_cycle_hours: u64,
    /// The engine's store; absent: SQLite in the data directory.
    pub database_url: Option<Secret>,
    /// Export to this SCIM 2.0 server instead of the cloud directory (any compliant server).
    pub scim_url: Option<String>,
    /// Token for `scim_url` (absent: `cloud.token`).
    pub scim_token: Option<Secret>,
    /// The schemas the SCIM server understands: `idbridge` (the cloud directory) or `core`
    /// (any RFC 7643 server: no sync extension, the anchor as `externalId`).
    pub scim_dialect: ScimDialect,
    /// Write the anchor (objectGUID) into `mS-DS-ConsistencyGuid` of objects joined without one,
    /// so the anchor survives moving the object to another forest. Needs Write on that attribute.
    pub write_consistency_guid: bool,
    /// Group members are read this many at a time (`member;range=0-1499`, then the rest), as
    /// AD's MaxValRange (1500) imposes anyway: one huge group never arrives in one answer.
    pub member_range_size: u32,
    /// A delta read covering more DC changes (USNs) than this, as after a bulk load or a long
    /// stop, is done as a full import, page by page: a DirSync answer arrives whole, in memory.
    pub max_dirsync_changes: u64,
    /// A full import reads the directory over this many connections at once, each a share of
    /// the objects (by `uSNCreated`): the DC works out each share's result on its own worker.
    pub import_connections: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Deprovision {
    /// Delete in the cloud (our cloud keeps it restorable for its retention period).
    SoftDelete,
    /// Keep the cloud object, with `active` false.
    Disable,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            include_ous: Vec::new(),
            exclude_ous: Vec::new(),
            filter: None,
            pilot_group: None,
            rules: None,
            deprovision: Deprovision::SoftDelete,
            deletion_threshold: 500,
            deletion_threshold_percent: None,
            staging: false,
            poll_interval_ms: 250,
            full_cycle_hours: 24,
            database_url: None,
            scim_url: None,
            scim_token: None,
            scim_dialect: ScimDialect::Idbridge,
            write_consistency_guid: false,
            member_range_size: 1500,
            max_dirsync_changes: 10_000,
            import_connections: 2,
        }
    }
}

/// The agent's local status endpoint (`GET /status`, JSON); loopback by default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdConfig {
    /// The DC replicated from (MS-DRSR over its RPC endpoint mapper, port 135).
    pub dc_host: IpAddr,
    /// The domain naming context, e.g. `DC=corp,DC=example,DC=com`.
    pub base_dn: String,
    /// The service account: needs only "Replicating Directory Changes" and "... All".
    pub account: String,
    pub password: Secret,
    /// LDAP URL for object sync: `ldaps://...` or `ldap://...` (StartTLS). Default: LDAPS on `dc_host`.
    #[serde(default)]
    pub ldap_url: Option<String>,
    /// PEM of the CA that issued the DC's certificate; absent: system roots.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// How the DRSUAPI connection authenticates: `negotiate` (Kerberos, else NTLMv2 with a
    /// warning), `kerberos` or `ntlm`; see docs/password-hash-sync.md.
    #[serde(default)]
    pub rpc_auth: RpcAuth,
    /// The DC's Kerberos SPN, `service/host`; absent: `host/` and the DNS name the DC announces.
    #[serde(default)]
    pub rpc_spn: Option<String>,
    /// The KDC (`address:port`); absent: `dc_host`, port 88.
    #[serde(default)]
    pub kdc: Option<SocketAddr>,
    /// The account's Kerberos realm; absent: the suffix of `account` (a UPN), upper-cased.
    #[serde(default)]
    pub realm: Option<String>,
}

impl AdConfig {
    /// How hash sync authenticates to the DC.
    pub fn rpc_auth_options(&self) -> AuthOptions {
        AuthOptions {
            mechanism: self.rpc_auth,
            realm: self.realm.clone(),
            kdc: self.kdc,
            spn: self.rpc_spn.clone(),
        }
    }

    pub fn ldap_url(&self) -> String {
        self.ldap_url.clone().unwrap_or_else(|| match self.dc_host {
            IpAddr::V6(ip) => format!("ldaps://[{ip}]:636"),
            IpAddr::V4(ip) => format!("ldaps://{ip}:636"),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudConfig {
    /// The cloud directory's base URL (`https://...`).
    pub url: String,
    /// PEM file of the CA (or self-signed certificate) the cloud presents; absent: system roots.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// A `sync`-scope token.
    pub token: Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhsConfig {
    pub enabled: bool,
    pub interval_seconds: u64,
    /// PBKDF2 iterations of each verifier; see docs/password-hash-sync.md for the choice.
    pub iterations: u32,
}

impl Default for PhsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_seconds: 30,
            iterations: 1000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// The agent's state (replication watermark, last runs).
    pub data_dir: PathBuf,
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        config::from_file(path, std::fs::read_to_string(path), Self::parse)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        config::check_version(config.version, CONFIG_VERSION)?;
        if !(1..=idbridge_phs::MAX_ITERATIONS).contains(&config.phs.iterations) {
            return Err(format!(
                "phs.iterations must be between 1 and {}",
                idbridge_phs::MAX_ITERATIONS
            ));
        }
        if config.phs.interval_seconds == 0 {
            return Err("phs.interval_seconds must be at least 1".into());
        }
        if !config.cloud.url.starts_with("https://") {
            return Err(format!(
                "cloud.url must be https:// (secrets travel on it), not {:?}",
                config.cloud.url
            ));
        }
        if let Some(url) = &config.sync.scim_url {
            if !url.starts_with("https://") && !is_loopback_http(url) {
                return Err(format!(
                    "sync.scim_url must be https:// (http:// only to a loopback address), not \
                     {url:?}"
                ));
            }
        }
        if config
            .sync
            .deletion_threshold_percent
            .is_some_and(|p| p == 0 || p > 100)
        {
            return Err("sync.deletion_threshold_percent must be between 1 and 100".into());
        }
        if config.sync.poll_interval_ms == 0 {
            return Err("sync.poll_interval_ms must be at least 1".into());
        }
        if config.sync.member_range_size == 0 {
            return Err("sync.member_range_size must be at least 1".into());
        }
        if config.sync.max_dirsync_changes == 0 {
            return Err("sync.max_dirsync_changes must be at least 1".into());
        }
        if !(1..=MAX_IMPORT_CONNECTIONS).contains(&config.sync.import_connections) {
            return Err(format!(
                "sync.import_connections must be between 1 and {MAX_IMPORT_CONNECTIONS}"
            ));
        }
        if let Some(spn) = &config.ad.rpc_spn {
            idbridge_drsuapi::kerberos::check_spn(spn).map_err(|e| format!("ad.rpc_spn: {e}"))?;
        }
        if config.ad.rpc_auth == RpcAuth::Kerberos {
            idbridge_drsuapi::kerberos::Principal::new(
                &config.ad.account,
                config.ad.realm.as_deref(),
            )
            .map_err(|e| format!("ad.rpc_auth = \"kerberos\": {e}"))?;
        }
        Ok(config)
    }
}

/// `http://` to this machine's loopback (a server or TLS-terminating proxy on the same host):
/// the token never leaves the machine.
fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
version = 1
[ad]
dc_host = "127.0.0.1"
base_dn = "DC=lab,DC=test"
account = "idbridge-sync@lab.test"
password = "hunter2"
[cloud]
url = "https://127.0.0.1:8443"
token = "idb_secret"
[storage]
data_dir = "/tmp/agent"
"#;

    #[test]
    fn plain_http_export_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://[::1]:80/scim",
            "http://localhost/v2",
        ] {
            assert!(is_loopback_http(ok), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:8080",
            "http://scim.example.net",
            "http://127.0.0.1.example.net/",
            "ftp://127.0.0.1",
        ] {
            assert!(!is_loopback_http(bad), "{bad}");
        }
    }

    #[test]
    fn parses_with_defaults_and_redacts_secrets() {
        let c = AgentConfig::parse(GOOD).unwrap();
        assert_eq!(c.phs.iterations, 1000);
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("idb_secret"),
            "{debug}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let e = AgentConfig::parse(&GOOD.replace("https://", "http://")).unwrap_err();
        assert!(e.contains("cloud.url"), "{e}");
        let e = AgentConfig::parse(&format!("{GOOD}[phs]\niterations = 0\n")).unwrap_err();
        assert!(e.contains("phs.iterations"), "{e}");
        let e = AgentConfig::parse(&GOOD.replace("account", "acount")).unwrap_err();
        assert!(e.contains("acount"), "{e}");
        for connections in [0, 9] {
            let text = format!("{GOOD}[sync]\nimport_connections = {connections}\n");
            let e = AgentConfig::parse(&text).unwrap_err();
            assert!(e.contains("sync.import_connections"), "{e}");
        }
    }

    #[test]
    fn rpc_auth_defaults_to_negotiate_and_is_checked() {
        let c = AgentConfig::parse(GOOD).unwrap();
        assert_eq!(c.ad.rpc_auth_options(), AuthOptions::default());
        let with = |extra: &str| GOOD.replace("[cloud]", &format!("{extra}\n[cloud]"));
        let c = AgentConfig::parse(&with(
            "rpc_auth = \"kerberos\"\nrpc_spn = \"host/dc1.lab.test\"\nkdc = \"127.0.0.1:88\"\nrealm = \"LAB.TEST\"",
        ))
        .unwrap();
        let options = c.ad.rpc_auth_options();
        assert_eq!(options.mechanism, RpcAuth::Kerberos);
        assert_eq!(options.spn.as_deref(), Some("host/dc1.lab.test"));
        assert_eq!(options.kdc, Some(SocketAddr::from(([127, 0, 0, 1], 88))));
        assert_eq!(options.realm.as_deref(), Some("LAB.TEST"));
        assert_eq!(
            AgentConfig::parse(&with("rpc_auth = \"ntlm\""))
                .unwrap()
                .ad
                .rpc_auth,
            RpcAuth::Ntlm
        );
        let e = AgentConfig::parse(&with("rpc_auth = \"spnego\"")).unwrap_err();
        assert!(e.contains("spnego"), "{e}");
        let e = AgentConfig::parse(&with("rpc_spn = \"dc1.lab.test\"")).unwrap_err();
        assert!(e.contains("ad.rpc_spn"), "{e}");
        // Kerberos only, with a down-level account name and no realm: said at load time.
        let down_level = with("rpc_auth = \"kerberos\"")
            .replace("idbridge-sync@lab.test", "LAB\\\\idbridge-sync");
        let e = AgentConfig::parse(&down_level).unwrap_err();
        assert!(e.contains("ad.rpc_auth") && e.contains("realm"), "{e}");
    }
}
