//! Object sync: run profiles over the engine core (`idbridge-engine`), with the AD connector
//! (`idbridge-ad`), the store and a SCIM client at the edges.
//!
//! Profiles: full import (paged search, then objects not seen are gone), delta import (DirSync
//! from the stored cookie), full sync (every object through the rules), delta sync (changed
//! objects only), export (pending exports to the SCIM server), and the cycle that chains them.
//! Runs on one store never overlap: each takes the store's lock file and waits for it.

mod export;
mod follow;
mod import;
mod preview;
mod progress;
pub mod store;
mod synchronize;

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use idbridge_ad::AdSettings;
use idbridge_core::{Clock, Dn, Secret};
use idbridge_engine::scope::{LdapFilter, OuScope};
use idbridge_engine::SyncScope;
use idbridge_rules::RuleSet;
use idbridge_scim_client::{RetryPolicy, ScimClientConfig};
use serde::Serialize;

use crate::config::{AgentConfig, Deprovision};
pub use preview::ObjectPreview;
pub use progress::ProgressSink;
pub use store::{ObjectError, PendingExport, RunCounts, RunRecord, SyncStore};

use export::{Exports, Waiting};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync configuration: {0}")]
    Config(String),
    #[error("rules file {path}: {errors}")]
    Rules { path: String, errors: String },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("Active Directory: {0}")]
    Ad(#[from] idbridge_ad::AdError),
    #[error("SCIM server: {0}")]
    Scim(#[from] idbridge_scim_client::ScimClientError),
    #[error("the run lock {path}: {reason}")]
    Lock { path: String, reason: String },
    #[error("the run was stopped: the runtime is shutting down")]
    ShuttingDown,
}

/// Runs `work` (CPU-bound, no I/O) on a blocking thread, so the tasks that share the caller's
/// thread go on meanwhile. A panic in `work` is a bug; it goes on unwinding here.
async fn off_the_runtime<T, F>(work: F) -> Result<T, SyncError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => Ok(done),
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => Err(SyncError::ShuttingDown),
        },
    }
}

/// A run profile (the CLI's `idbridge sync <profile>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    FullImport,
    DeltaImport,
    FullSync,
    DeltaSync,
    Export,
    /// Delta import (full import when there is no cookie yet), delta sync, export.
    Cycle,
    /// Full import, full sync, export.
    FullCycle,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::FullImport => "full-import",
            Profile::DeltaImport => "delta-import",
            Profile::FullSync => "full-sync",
            Profile::DeltaSync => "delta-sync",
            Profile::Export => "export",
            Profile::Cycle => "cycle",
            Profile::FullCycle => "full-cycle",
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub id: i64,
    pub profile: &'static str,
    /// `success`, `completed-with-errors`, `held` (deletion threshold or staging) or `failed`.
    pub status: String,
    #[serde(flatten)]
    pub counts: RunCounts,
    pub message: String,
    pub duration_ms: u128,
}

/// See [`SyncContext::on_password_change`].
pub type PasswordChangeHook = Arc<dyn Fn(&[idbridge_core::ObjectGuid]) + Send + Sync>;

/// Everything a run needs, resolved from the configuration once.
pub struct SyncContext {
    pub store: SyncStore,
    /// Shared with the blocking threads that run the rules (see `synchronize`).
    pub rules: Arc<RuleSet>,
    pub scope: Arc<SyncScope>,
    pub base_dn: Dn,
    pub ad: AdSettings,
    pub scim: ScimClientConfig,
    pub deprovision: Deprovision,
    pub deletion_threshold: u64,
    pub deletion_threshold_percent: Option<u8>,
    pub staging: bool,
    pub write_consistency_guid: bool,
    pub member_range_size: u32,
    pub max_dirsync_changes: u64,
    pub import_connections: u32,
    pub clock: Arc<dyn Clock>,
    lock_path: PathBuf,
    phs_request_path: PathBuf,
    progress: progress::Progress,
    password_changed: Option<PasswordChangeHook>,
    /// The delta import's connection, kept between polls: an idle poll is then one search,
    /// not a TLS handshake and a bind.
    delta_connection: tokio::sync::Mutex<Option<import::DeltaConnection>>,
}

fn parse_dns(what: &str, list: &[String]) -> Result<Vec<Dn>, SyncError> {
    list.iter()
        .map(|s| Dn::parse(s).map_err(|e| SyncError::Config(format!("{what} {s:?}: {e}"))))
        .collect()
}

/// How the agent reaches and binds to the DC (as its service account).
pub fn ad_settings(config: &AgentConfig) -> Result<AdSettings, SyncError> {
    Ok(AdSettings {
        url: config.ad.ldap_url(),
        bind_upn: config.ad.account.clone(),
        password: config.ad.password.clone(),
        ca_cert_pem: read_pem(&config.ad.ca_cert, "ad.ca_cert")?,
        timeout: Duration::from_secs(30),
    })
}

fn read_pem(path: &Option<PathBuf>, what: &str) -> Result<Option<Vec<u8>>, SyncError> {
    path.as_ref()
        .map(|p| {
            std::fs::read(p).map_err(|e| SyncError::Config(format!("{what} {}: {e}", p.display())))
        })
        .transpose()
}

impl SyncContext {
    pub async fn open(config: &AgentConfig, clock: Arc<dyn Clock>) -> Result<Self, SyncError> {
        let sync = &config.sync;
        let rules = match &sync.rules {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    SyncError::Config(format!("rules file {}: {e}", path.display()))
                })?;
                RuleSet::load(&path.display().to_string(), &text)
            }
            None => RuleSet::default_rules(),
        }
        .map_err(|errors| SyncError::Rules {
            path: sync
                .rules
                .as_ref()
                .map_or("(default rules)".into(), |p| p.display().to_string()),
            errors: errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        })?;
        let scope = SyncScope {
            ous: OuScope {
                include: parse_dns("sync.include_ous", &sync.include_ous)?,
                exclude: parse_dns("sync.exclude_ous", &sync.exclude_ous)?,
            },
            filter: sync
                .filter
                .as_deref()
                .map(|f| {
                    LdapFilter::parse(f).map_err(|e| SyncError::Config(format!("sync.filter: {e}")))
                })
                .transpose()?,
            pilot_group: sync
                .pilot_group
                .as_deref()
                .map(|g| {
                    Dn::parse(g).map_err(|e| SyncError::Config(format!("sync.pilot_group: {e}")))
                })
                .transpose()?,
            dialect: sync.scim_dialect,
        };
        let base_dn = Dn::parse(&config.ad.base_dn)
            .map_err(|e| SyncError::Config(format!("ad.base_dn: {e}")))?;
        std::fs::create_dir_all(&config.storage.data_dir).map_err(|e| {
            SyncError::Config(format!(
                "storage.data_dir {}: {e}",
                config.storage.data_dir.display()
            ))
        })?;
        let database_url = sync.database_url.clone().unwrap_or_else(|| {
            Secret::new(format!(
                "sqlite://{}?mode=rwc",
                config.storage.data_dir.join("sync.db").display()
            ))
        });
        let store = SyncStore::open(&database_url).await?;
        let ad = ad_settings(config)?;
        let scim = ScimClientConfig {
            base_url: sync
                .scim_url
                .clone()
                .unwrap_or_else(|| format!("{}/scim/v2", config.cloud.url.trim_end_matches('/'))),
            token: sync
                .scim_token
                .clone()
                .unwrap_or_else(|| config.cloud.token.clone()),
            ca_cert_pem: read_pem(&config.cloud.ca_cert, "cloud.ca_cert")?,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        };
        Ok(Self {
            store,
            rules: Arc::new(rules),
            scope: Arc::new(scope),
            base_dn,
            ad,
            scim,
            deprovision: sync.deprovision,
            deletion_threshold: sync.deletion_threshold,
            deletion_threshold_percent: sync.deletion_threshold_percent,
            staging: sync.staging,
            write_consistency_guid: sync.write_consistency_guid,
            member_range_size: sync.member_range_size,
            max_dirsync_changes: sync.max_dirsync_changes,
            import_connections: sync.import_connections,
            clock,
            lock_path: config.storage.data_dir.join("sync.lock"),
            phs_request_path: crate::phs::full_request_path(&config.storage.data_dir),
            progress: progress::Progress::default(),
            password_changed: None,
            delta_connection: tokio::sync::Mutex::new(None),
        })
    }

    /// Called when a delta import sees password changes (`pwdLastSet` changed), with the
    /// objectGUIDs of those accounts, once the import committed: the daemon fetches their hashes
    /// at once (a targeted hash sync cycle) instead of waiting for the next delta. Also called
    /// with the users an export joined, when they are few: their hashes were replicated before
    /// they had a cloud object.
    pub fn on_password_change(&mut self, hook: PasswordChangeHook) {
        self.password_changed = Some(hook);
    }

    /// Reports every step of later runs to `sink` (a progress bar).
    pub fn set_progress(&mut self, sink: Arc<dyn ProgressSink>) {
        self.progress = progress::Progress::new(Some(sink));
    }

    fn now(&self) -> i64 {
        let now = self.clock.now();
        i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }

    /// Runs one profile to its end and records it in the run history.
    pub async fn run(&self, profile: Profile) -> Result<RunReport, SyncError> {
        let _lock = self.lock().await?;
        self.store.close_interrupted_runs(self.now()).await?;
        let started = std::time::Instant::now();
        let id = self.store.start_run(profile.name(), self.now()).await?;
        if profile == Profile::Cycle {
            // The daemon's cycle every poll: its finish is logged when it changed something.
            tracing::debug!(run = id, profile = profile.name(), "sync run started");
        } else {
            tracing::info!(run = id, profile = profile.name(), "sync run started");
        }
        let mut counts = RunCounts::default();
        let outcome = self.run_steps(profile, &mut counts).await;
        let (status, message) = match &outcome {
            Ok(Outcome::Done) if counts.errors > 0 => (
                "completed-with-errors".to_string(),
                format!(
                    "{} object(s) in error: see `idbridge sync errors`",
                    counts.errors
                ),
            ),
            Ok(Outcome::Done) => ("success".to_string(), String::new()),
            Ok(Outcome::Held(why)) => ("held".to_string(), why.clone()),
            Err(e) => ("failed".to_string(), e.to_string()),
        };
        if profile == Profile::Cycle && status == "success" && counts == RunCounts::default() {
            // The daemon polls every second: a cycle that changed nothing is not history.
            self.store.delete_run(id).await?;
            return Ok(RunReport {
                id,
                profile: profile.name(),
                status,
                counts,
                message,
                duration_ms: started.elapsed().as_millis(),
            });
        }
        self.store
            .finish_run(id, self.now(), &status, &counts, &message)
            .await?;
        tracing::info!(
            run = id,
            profile = profile.name(),
            status,
            adds = counts.adds,
            updates = counts.updates,
            renames = counts.renames,
            deletes = counts.deletes,
            errors = counts.errors,
            "sync run finished"
        );
        outcome?;
        Ok(RunReport {
            id,
            profile: profile.name(),
            status,
            counts,
            message,
            duration_ms: started.elapsed().as_millis(),
        })
    }

    async fn run_steps(
        &self,
        profile: Profile,
        counts: &mut RunCounts,
    ) -> Result<Outcome, SyncError> {
        match profile {
            Profile::FullImport => self.full_import(counts, None).await?,
            Profile::DeltaImport => self.delta_import(counts).await?,
            Profile::FullSync => {
                self.synchronize(true, counts, None).await?;
            }
            Profile::DeltaSync => {
                self.synchronize(false, counts, None).await?;
            }
            Profile::Export => {
                return self
                    .export_and_resolve(counts, export::ExportPass::default())
                    .await
            }
            Profile::Cycle | Profile::FullCycle => {
                let full = profile == Profile::FullCycle;
                let mut pass = export::ExportPass::default();
                if full || self.store.cookie().await?.is_none() {
                    if full {
                        let mut tx = self.store.begin().await?;
                        tx.mark_all_pending().await?;
                        tx.commit().await?;
                    }
                    self.import_and_follow(counts, &mut pass).await?;
                } else {
                    self.delta_import(counts).await?;
                }
                self.synchronize(false, counts, None).await?;
                return self.export_and_resolve(counts, pass).await;
            }
        }
        Ok(Outcome::Done)
    }

    /// Exports in two calls. In the first, objects whose references wait for objects this run
    /// creates (a new group's new members, a new user's new manager) are held back until those
    /// exist, so each goes out in one write rather than a create and a later patch. In the
    /// second, what still does not resolve (a cycle of references, a reference to an object out
    /// of scope) goes out without it; when new cloud objects let it resolve, the object is
    /// synced and exported once more. `pass` carries what earlier exports of the run learned.
    async fn export_and_resolve(
        &self,
        counts: &mut RunCounts,
        mut pass: export::ExportPass,
    ) -> Result<Outcome, SyncError> {
        // Every pending export but those already held (by a full import's follower): they go
        // when their targets are joined.
        let first = if pass.waiting.is_empty() {
            Exports::All
        } else {
            Exports::Of(
                self.store
                    .pending_export_guids()
                    .await?
                    .into_iter()
                    .filter(|guid| !pass.waiting.holds(guid))
                    .collect(),
            )
        };
        let outcome = self.export(counts, &mut pass, first, true).await?;
        if !matches!(outcome, Outcome::Done) {
            return Ok(outcome);
        }
        // What still waits goes without the references that do not resolve.
        pass.waiting = Waiting::default();
        let mut outcome = self.export(counts, &mut pass, Exports::All, false).await?;
        if matches!(outcome, Outcome::Done) && !pass.joined.is_empty() {
            // The new cloud objects may complete references that objects exported before
            // them had to leave out.
            let mut tx = self.store.begin().await?;
            tx.retry_unresolved_refs().await?;
            tx.commit().await?;
        }
        if matches!(outcome, Outcome::Done) && self.store.has_pending_sync().await? {
            self.synchronize(false, counts, None).await?;
            outcome = self.export(counts, &mut pass, Exports::All, false).await?;
        }
        if matches!(outcome, Outcome::Done) && self.write_consistency_guid {
            counts.errors += self.write_anchors(&pass.joined).await?;
        }
        Ok(outcome)
    }

    /// Waits for the store's run lock (another run, by the daemon or the CLI, may hold it).
    async fn lock(&self) -> Result<File, SyncError> {
        let path = self.lock_path.clone();
        let err = |reason: String| SyncError::Lock {
            path: path.display().to_string(),
            reason,
        };
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| err(e.to_string()))?;
        tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .map_err(|e| err(e.to_string()))?
            .map_err(|e| err(e.to_string()))
    }
}

/// An export either ran, or held on purpose (staging mode, deletion threshold).
pub(crate) enum Outcome {
    Done,
    Held(String),
}
