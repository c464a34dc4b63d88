//! `cloud.toml`: versioned, strict (unknown keys are errors), with env and CLI overrides applied
//! by the binary. The database URL may carry a password, so it is a [`Secret`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use idbridge_core::config::{self, ConfigError};
use idbridge_core::Secret;
use serde::Deserialize;

pub const CONFIG_VERSION: u32 = 1;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudConfig {
    pub version: u32,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    #[serde(default)]
    pub licenses: Vec<LicenseSku>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub sspr: SsprConfig,
}

/// Self-service password reset.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsprConfig {
    /// Where one-time codes are "e-mailed": one message file per code (the lab's outbox). Without
    /// it, only TOTP codes can prove a user's identity.
    pub outbox: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The URL clients use; defaults to `https://<listen>`.
    #[serde(default)]
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Holds the TLS certificate and, without `database_url`, the SQLite database.
    pub data_dir: PathBuf,
    /// `postgres://...` for PostgreSQL; absent means SQLite in `data_dir`.
    #[serde(default)]
    pub database_url: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LicenseSku {
    pub sku: String,
    pub seats: i64,
}

/// Protocol limits, advertised in `/ServiceProviderConfig`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_bulk_operations: usize,
    pub max_results: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            max_bulk_operations: 1000,
            max_results: 10_000,
        }
    }
}

impl CloudConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        config::from_file(path, std::fs::read_to_string(path), Self::parse)
    }

    /// Parses and checks a config; the message names the offending key (toml gives line and
    /// column).
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        config::check_version(config.version, CONFIG_VERSION)?;
        for (i, sku) in config.licenses.iter().enumerate() {
            if sku.sku.trim().is_empty() || sku.seats < 0 {
                return Err(format!(
                    "licenses[{i}]: a SKU needs a non-empty name and seats >= 0"
                ));
            }
            if config.licenses.iter().take(i).any(|s| s.sku == sku.sku) {
                return Err(format!("licenses[{i}]: SKU {:?} is listed twice", sku.sku));
            }
        }
        if config.limits.max_results == 0 || config.limits.max_bulk_operations == 0 {
            return Err("limits: max_results and max_bulk_operations must be at least 1".into());
        }
        Ok(config)
    }

    pub fn public_url(&self) -> String {
        self.server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("https://{}", self.server.listen))
            .trim_end_matches('/')
            .to_owned()
    }

    /// The sqlx URL of the store.
    pub fn database_url(&self) -> Secret {
        match &self.storage.database_url {
            Some(url) => url.clone(),
            None => Secret::new(format!(
                "sqlite://{}?mode=rwc",
                self.storage.data_dir.join("cloud.db").display()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
version = 1
[server]
listen = "127.0.0.1:8443"
[storage]
data_dir = "/tmp/x"
"#;

    #[test]
    fn minimal_config_parses_with_defaults() {
        let c = CloudConfig::parse(MINIMAL).unwrap();
        assert_eq!(c.public_url(), "https://127.0.0.1:8443");
        assert_eq!(c.limits.max_bulk_operations, 1000);
        assert!(c
            .database_url()
            .expose()
            .starts_with("sqlite:///tmp/x/cloud.db"));
    }

    #[test]
    fn unknown_keys_and_versions_are_named() {
        let e = CloudConfig::parse(&format!("{MINIMAL}\n[limits]\nmax_bodyy = 1\n")).unwrap_err();
        assert!(e.contains("max_bodyy"), "{e}");
        let e = CloudConfig::parse(&MINIMAL.replace("version = 1", "version = 2")).unwrap_err();
        assert!(e.contains("version = 2"), "{e}");
        let twice = format!(
            "{MINIMAL}\n[[licenses]]\nsku = \"p\"\nseats = 1\n[[licenses]]\nsku = \"p\"\nseats = 2\n"
        );
        assert!(CloudConfig::parse(&twice).unwrap_err().contains("twice"));
    }

    #[test]
    fn database_url_is_redacted_in_debug() {
        let c = CloudConfig::parse(&MINIMAL.replace(
            "data_dir = \"/tmp/x\"",
            "data_dir = \"/tmp/x\"\ndatabase_url = \"postgres://u:hunter2@127.0.0.1/db\"",
        ))
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
