//! `idbridge agent ...` and `idbridge phs ...`: the on-premises agent.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use idbridge_agent::cloud::CloudClient;
use idbridge_agent::phs::{self, Mode, PhsState, PhsStatus};
use idbridge_agent::state::StateFile;
use idbridge_agent::writeback::{self, ChannelStatus, CHANNEL_STATUS_FILE};
use idbridge_agent::AgentConfig;
use idbridge_core::ObjectGuid;

#[derive(Args)]
pub struct ConfigArg {
    /// The agent.toml to read.
    #[arg(long, env = "IDBRIDGE_AGENT_CONFIG")]
    pub config: PathBuf,
}

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Run the agent: object sync, password hash sync and (once registered) the writeback
    /// channel, until stopped.
    Run(#[command(flatten)] ConfigArg),
    /// Register with the cloud: creates the agent's key pair (the private key stays in the data
    /// directory, mode 0600) and saves the credential the cloud issues.
    Register {
        #[command(flatten)]
        config: ConfigArg,
        /// The cloud directory's URL.
        #[arg(long)]
        cloud: String,
        /// A one-time token from `idbridge cloud agent-token create` or the admin API.
        #[arg(
            long,
            env = "IDBRIDGE_AGENT_REGISTRATION_TOKEN",
            hide_env_values = true
        )]
        token: String,
    },
    /// Replace the agent's key pair; the cloud seals to the new key at once.
    RotateKey(#[command(flatten)] ConfigArg),
    /// Registration and writeback channel state.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum PhsCommand {
    /// Replicate every hash again and re-send every verifier.
    Full(#[command(flatten)] ConfigArg),
    /// One delta cycle: only what changed since the last one.
    Run(#[command(flatten)] ConfigArg),
    /// The last cycle: when, counts, and per-user errors.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

struct Phs {
    config: AgentConfig,
    cloud: CloudClient,
    state: StateFile<PhsState>,
}

impl Phs {
    fn open(arg: ConfigArg) -> anyhow::Result<Self> {
        let config = AgentConfig::load(&arg.config)?;
        let cloud = CloudClient::new(&config.cloud)?;
        let state = StateFile::new(&config.storage.data_dir, "phs.json");
        Ok(Self {
            config,
            cloud,
            state,
        })
    }

    async fn cycle(&self, mode: Mode) -> anyhow::Result<PhsStatus> {
        let status = phs::run_once(&self.config, &self.cloud, &self.state, mode, now)
            .await
            .context("password hash sync")?;
        if status.replicated == 0 && status.errors.is_empty() {
            tracing::debug!(
                mode = status.mode,
                "password hash sync cycle: nothing changed"
            );
            return Ok(status);
        }
        log_cycle(&status);
        Ok(status)
    }

    /// A targeted cycle for the accounts object sync reported; failures are logged, not
    /// returned: the next watermark cycle brings these accounts anyway.
    async fn targeted(&self, objects: &[ObjectGuid]) {
        match phs::run_targeted(&self.config, &self.cloud, &self.state, objects, now).await {
            // The accounts it could not sync come again in the next delta cycle.
            Ok(status) => log_cycle(&status),
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                accounts = objects.len(),
                "targeted password hash sync failed; the next delta cycle brings these accounts"
            ),
        }
    }
}

/// Logs a finished cycle and each account it could not sync.
fn log_cycle(status: &PhsStatus) {
    tracing::info!(
        mode = status.mode,
        replicated = status.replicated,
        sent = status.sent,
        not_joined = status.skipped_not_joined,
        errors = status.errors.len(),
        "password hash sync cycle"
    );
    for e in &status.errors {
        tracing::warn!(
            dn = e.dn,
            object_guid = e.object_guid,
            error = e.message,
            "hash not synced"
        );
    }
}

fn print_status(status: &PhsStatus) {
    println!(
        "last cycle   {} ({}), {} -> {}",
        status.outcome, status.mode, status.started_at, status.finished_at
    );
    if !status.rpc_auth.is_empty() {
        println!("dc auth      {}", status.rpc_auth);
    }
    println!("replicated   {}", status.replicated);
    println!("sent         {}", status.sent);
    println!(
        "skipped      {} not joined to a cloud user, {} without a password hash in this cycle, {} machine accounts",
        status.skipped_not_joined, status.skipped_no_hash, status.skipped_machine
    );
    for e in &status.errors {
        match e.dn.is_empty() {
            true => println!("error        {}: {}", e.object_guid, e.message),
            false => println!("error        {} ({}): {}", e.dn, e.object_guid, e.message),
        }
    }
}

pub async fn run_phs(cmd: PhsCommand) -> anyhow::Result<()> {
    match cmd {
        PhsCommand::Full(arg) => print_status(&Phs::open(arg)?.cycle(Mode::Full).await?),
        PhsCommand::Run(arg) => print_status(&Phs::open(arg)?.cycle(Mode::Delta).await?),
        PhsCommand::Status { config, json } => {
            let phs = Phs::open(config)?;
            let saved = phs.state.load()?;
            if json {
                // The watermark cycle as before, the targeted one beside it.
                let mut value = serde_json::to_value(&saved.last)?;
                if let Some(object) = value.as_object_mut() {
                    object.insert(
                        "last_targeted".into(),
                        serde_json::to_value(&saved.last_targeted)?,
                    );
                }
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(());
            }
            match &saved.last {
                Some(s) => print_status(s),
                None => println!("no password hash sync cycle has run yet"),
            }
            if let Some(s) = &saved.last_targeted {
                println!();
                print_status(s);
            }
        }
    }
    Ok(())
}

pub async fn run_agent(cmd: AgentCommand) -> anyhow::Result<()> {
    let arg = match cmd {
        AgentCommand::Run(arg) => arg,
        AgentCommand::Register {
            config,
            cloud,
            token,
        } => {
            let config = AgentConfig::load(&config.config)?;
            let registration =
                writeback::register(&config, &cloud, &idbridge_core::Secret::new(token)).await?;
            println!(
                "registered as agent {} with {}; the key is in {}",
                registration.agent_id,
                registration.cloud_url,
                config.storage.data_dir.display()
            );
            return Ok(());
        }
        AgentCommand::RotateKey(config) => {
            let config = AgentConfig::load(&config.config)?;
            writeback::rotate_key(&config).await?;
            println!("the agent's key pair was replaced");
            return Ok(());
        }
        AgentCommand::Status { config, json } => {
            return print_agent_status(&AgentConfig::load(&config.config)?, json);
        }
    };
    let phs = Phs::open(arg)?;
    if let Some(listen) = phs.config.status.listen {
        let data_dir = phs.config.storage.data_dir.clone();
        tokio::spawn(async move {
            if let Err(e) = idbridge_agent::serve_status(listen, data_dir).await {
                tracing::error!(error = %e, %listen, "the status endpoint stopped");
            }
        });
    }
    // Object sync sees password changes first (its delta poll): it hands over the accounts.
    let pending = std::sync::Arc::new(phs::PendingPasswordChanges::default());
    if phs.config.sync.enabled {
        // The sync engine runs on its own thread and runtime: its runs are sequential by design
        // (one run per store), and its futures need not be `Send`.
        let config = phs.config.clone();
        let pending = pending.clone();
        std::thread::Builder::new()
            .name("sync".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => return tracing::error!(error = %e, "object sync cannot start"),
                };
                if let Err(e) = runtime.block_on(sync_loop(config, pending)) {
                    tracing::error!(error = format!("{e:#}"), "object sync stopped");
                }
            })
            .context("starting the sync thread")?;
    }
    match writeback::load_registration(&phs.config.storage.data_dir) {
        Ok(_) => {
            let config = phs.config.clone();
            tokio::spawn(async move {
                if let Err(e) = writeback::run_channel(config).await {
                    tracing::error!(error = %e, "the writeback channel cannot run");
                }
            });
        }
        Err(e) => tracing::info!(reason = %e, "no writeback channel"),
    }
    let interval = Duration::from_secs(phs.config.phs.interval_seconds);
    let mut failures: u32 = 0;
    // The watermark cycle runs on its own schedule; password changes get a targeted cycle at
    // once and do not bring it forward (at scale a delta searches the whole domain).
    let mut next_delta = tokio::time::Instant::now();
    let mut bulk = false;
    tracing::info!(interval_s = interval.as_secs(), "agent running");
    loop {
        let targets = pending.take();
        if !phs.config.phs.enabled {
            next_delta = tokio::time::Instant::now() + interval;
        } else if targets.len() > phs::MAX_TARGETED {
            bulk = true;
            next_delta = tokio::time::Instant::now();
        } else if !targets.is_empty() {
            phs.targeted(&targets).await;
        }
        if phs.config.phs.enabled && tokio::time::Instant::now() >= next_delta {
            // A bulk change: one pass reads them all for less than a request each. A full one:
            // among them may be new users, whose hashes the watermark has already passed.
            let asked = if std::mem::take(&mut bulk) {
                Mode::Full
            } else {
                Mode::Delta
            };
            let mode = phs::take_full_request(&phs.config.storage.data_dir, asked);
            let wait = match phs.cycle(mode).await {
                Ok(_) => {
                    failures = 0;
                    interval
                }
                Err(e) => {
                    if mode == Mode::Full {
                        // Keep the request for a full pass until one succeeds.
                        let path = phs::full_request_path(&phs.config.storage.data_dir);
                        if let Err(e) = std::fs::write(&path, b"") {
                            tracing::warn!(error = %e, "could not keep the full hash sync request");
                        }
                    }
                    // Back off up to a minute while the DC or the cloud is away.
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = format!("{e:#}"), "cycle failed; retrying");
                    interval
                        .saturating_mul(2u32.saturating_pow(failures.min(5)))
                        .min(Duration::from_secs(60))
                }
            };
            next_delta = tokio::time::Instant::now() + wait;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next_delta) => {}
            _ = pending.added() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Object sync: a delta cycle every `sync.poll_interval_ms` (a DirSync poll that finds nothing
/// costs one LDAP search), a full cycle every `sync.full_cycle_hours`; backs off while the DC or
/// the cloud is away.
async fn sync_loop(
    config: AgentConfig,
    pending: std::sync::Arc<phs::PendingPasswordChanges>,
) -> anyhow::Result<()> {
    use idbridge_agent::sync::{Profile, SyncContext};
    let mut sync = SyncContext::open(&config, std::sync::Arc::new(idbridge_core::SystemClock))
        .await
        .context("object sync")?;
    sync.on_password_change(std::sync::Arc::new(move |objects| pending.add(objects)));
    let poll = Duration::from_millis(config.sync.poll_interval_ms);
    let full_every = Duration::from_secs(config.sync.full_cycle_hours.saturating_mul(3600));
    let mut last_full: Option<std::time::Instant> = None;
    let mut failures: u32 = 0;
    loop {
        let profile = match last_full {
            Some(at) if at.elapsed() < full_every => Profile::Cycle,
            _ => Profile::FullCycle,
        };
        let wait = match sync.run(profile).await {
            Ok(_) => {
                failures = 0;
                if profile == Profile::FullCycle {
                    last_full = Some(std::time::Instant::now());
                }
                poll
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, "sync cycle failed; retrying");
                poll.saturating_mul(2u32.saturating_pow(failures.min(6)))
                    .min(Duration::from_secs(60))
            }
        };
        tokio::time::sleep(wait).await;
    }
}

fn print_agent_status(config: &AgentConfig, json: bool) -> anyhow::Result<()> {
    let data_dir = &config.storage.data_dir;
    let registration = writeback::load_registration(data_dir).ok();
    let channel = StateFile::<ChannelStatus>::new(data_dir, CHANNEL_STATUS_FILE).load()?;
    if json {
        let value = serde_json::json!({
            "registered": registration.is_some(),
            "agent_id": registration.as_ref().map(|r| r.agent_id.clone()),
            "cloud_url": registration.as_ref().map(|r| r.cloud_url.clone()),
            "channel": channel,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    match registration {
        None => {
            println!("registered   no (run `idbridge agent register --cloud URL --token TOKEN`)")
        }
        Some(r) => println!("registered   agent {} with {}", r.agent_id, r.cloud_url),
    }
    match (channel.connected, channel.since.is_empty()) {
        (_, true) => println!("channel      never connected"),
        (true, false) => println!("channel      connected since {}", channel.since),
        (false, false) => println!(
            "channel      down since {}: {}",
            channel.since,
            channel.last_error.unwrap_or_default()
        ),
    }
    Ok(())
}
