//! `idbridge sync ...`: run profiles by hand, history, errors, preview and the deletion threshold.
//! A run waits for any run already going on the same store (the daemon's, or another CLI's).

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Subcommand;
use idbridge_agent::sync::{Profile, ProgressSink, SyncContext};
use idbridge_agent::AgentConfig;
use idbridge_core::SystemClock;

use crate::agent::ConfigArg;

#[derive(Subcommand)]
pub enum SyncCommand {
    /// Read every object from AD (paged search); objects no longer there are marked deleted.
    FullImport(RunArgs),
    /// Read what changed in AD since the last import (DirSync).
    DeltaImport(RunArgs),
    /// Run every object through scope and rules.
    FullSync(RunArgs),
    /// Run changed objects through scope and rules.
    DeltaSync(RunArgs),
    /// Send pending exports to the cloud (or the configured SCIM server).
    Export(RunArgs),
    /// Delta import, delta sync, export (a full import first when there is no DirSync cookie).
    Cycle(RunArgs),
    /// Full import, full sync, export.
    FullCycle(RunArgs),
    /// Past runs with their counts.
    History {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Objects in error, with the reason.
    Errors(RunArgs),
    /// What the next export would send; with --object, one object's path through the rules.
    Preview {
        #[command(flatten)]
        config: ConfigArg,
        /// An objectGUID or a DN.
        #[arg(long)]
        object: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Let the next export delete up to COUNT objects despite the deletion threshold.
    AllowDeletes {
        #[command(flatten)]
        config: ConfigArg,
        /// How many deletions to allow (default: all pending ones).
        #[arg(long)]
        count: Option<u64>,
    },
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

async fn open(config: &ConfigArg) -> anyhow::Result<SyncContext> {
    let config = AgentConfig::load(&config.config)?;
    Ok(SyncContext::open(&config, Arc::new(SystemClock)).await?)
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A one-line progress bar on stderr per phase, redrawn at most ten times a second.
#[derive(Default)]
struct TerminalBar {
    state: Mutex<BarState>,
}

#[derive(Default)]
struct BarState {
    phase: &'static str,
    drawn_at: Option<Instant>,
}

impl ProgressSink for TerminalBar {
    fn step(&self, phase: &'static str, done: u64, total: Option<u64>) {
        const WIDTH: u64 = 30;
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let now = Instant::now();
        if state.phase != phase && state.drawn_at.is_some() {
            eprintln!();
        } else if total != Some(done)
            && state
                .drawn_at
                .is_some_and(|at| now.duration_since(at) < Duration::from_millis(100))
        {
            return;
        }
        state.phase = phase;
        state.drawn_at = Some(now);
        let line = match total.filter(|t| *t > 0) {
            Some(total) => {
                let filled = usize::try_from(done.min(total) * WIDTH / total).unwrap_or(0);
                let empty = usize::try_from(WIDTH).unwrap_or(0).saturating_sub(filled);
                format!(
                    "{phase:<7}[{}{}] {done}/{total}",
                    "#".repeat(filled),
                    " ".repeat(empty)
                )
            }
            None => format!("{phase:<7}{done}"),
        };
        eprint!("\r\x1b[2K{line}");
    }
}

impl TerminalBar {
    fn finish(&self) {
        if self.state.lock().is_ok_and(|s| s.drawn_at.is_some()) {
            eprintln!();
        }
    }
}

async fn run_profile(args: RunArgs, profile: Profile) -> anyhow::Result<()> {
    let mut sync = open(&args.config).await?;
    let bar = std::io::stderr()
        .is_terminal()
        .then(|| Arc::new(TerminalBar::default()));
    if let Some(bar) = &bar {
        sync.set_progress(bar.clone());
    }
    let report = sync.run(profile).await;
    if let Some(bar) = &bar {
        bar.finish();
    }
    let report = report?;
    if args.json {
        return print_json(&report);
    }
    println!(
        "{} run {}: {} in {} ms: {} added, {} updated, {} renamed, {} deleted, {} errors",
        report.profile,
        report.id,
        report.status,
        report.duration_ms,
        report.counts.adds,
        report.counts.updates,
        report.counts.renames,
        report.counts.deletes,
        report.counts.errors
    );
    if !report.message.is_empty() {
        println!("{}", report.message);
    }
    Ok(())
}

pub async fn run(cmd: SyncCommand) -> anyhow::Result<()> {
    let profile = |args, p| run_profile(args, p);
    match cmd {
        SyncCommand::FullImport(a) => profile(a, Profile::FullImport).await,
        SyncCommand::DeltaImport(a) => profile(a, Profile::DeltaImport).await,
        SyncCommand::FullSync(a) => profile(a, Profile::FullSync).await,
        SyncCommand::DeltaSync(a) => profile(a, Profile::DeltaSync).await,
        SyncCommand::Export(a) => profile(a, Profile::Export).await,
        SyncCommand::Cycle(a) => profile(a, Profile::Cycle).await,
        SyncCommand::FullCycle(a) => profile(a, Profile::FullCycle).await,
        SyncCommand::History {
            config,
            limit,
            json,
        } => {
            let runs = open(&config).await?.history(limit).await?;
            if json {
                return print_json(&runs);
            }
            println!(
                "{:>5}  {:<13} {:<22} {:>6} {:>7} {:>7} {:>7} {:>6} {:>8}",
                "run", "profile", "status", "adds", "updates", "renames", "deletes", "errors", "ms"
            );
            for r in runs {
                let ms = r.finished_at.map(|f| f - r.started_at).unwrap_or_default();
                println!(
                    "{:>5}  {:<13} {:<22} {:>6} {:>7} {:>7} {:>7} {:>6} {:>8}",
                    r.id,
                    r.profile,
                    r.status,
                    r.counts.adds,
                    r.counts.updates,
                    r.counts.renames,
                    r.counts.deletes,
                    r.counts.errors,
                    ms
                );
            }
            Ok(())
        }
        SyncCommand::Errors(args) => {
            let errors = open(&args.config).await?.errors().await?;
            if args.json {
                return print_json(&errors);
            }
            if errors.is_empty() {
                println!("no objects in error");
            }
            for e in errors {
                println!("{} [{}] {}", e.dn, e.stage, e.message);
            }
            Ok(())
        }
        SyncCommand::Preview {
            config,
            object,
            json,
        } => {
            let sync = open(&config).await?;
            match object {
                Some(key) => {
                    let preview = sync.preview_object(&key).await?;
                    if json {
                        return print_json(&preview);
                    }
                    println!(
                        "object       {} ({}, {})",
                        preview.dn, preview.class, preview.guid
                    );
                    println!("scope        {}", preview.scope);
                    println!("rules fired  {}", preview.rules_fired.join(", "));
                    if let Some(e) = &preview.error {
                        println!("error        {e}");
                    }
                    if let Some(cloud) = &preview.cloud {
                        println!("cloud        {}", serde_json::to_string_pretty(cloud)?);
                    }
                    for r in &preview.unresolved_references {
                        println!("unresolved   {r} (not yet in the cloud)");
                    }
                    match &preview.pending_export {
                        Some(p) => println!("pending      {:?} {}", p.action, p.kind.name()),
                        None => println!("pending      nothing to export"),
                    }
                    Ok(())
                }
                None => {
                    let pending = sync.pending().await?;
                    if json {
                        return print_json(&pending);
                    }
                    if pending.is_empty() {
                        println!("nothing to export");
                    }
                    for p in pending {
                        println!(
                            "{:<12} {:<6} {}",
                            format!("{:?}", p.action).to_lowercase(),
                            p.kind.name(),
                            p.dn
                        );
                    }
                    Ok(())
                }
            }
        }
        SyncCommand::AllowDeletes { config, count } => {
            let sync = open(&config).await?;
            let count = match count {
                Some(c) => c,
                None => sync
                    .pending()
                    .await?
                    .iter()
                    .filter(|p| p.action == idbridge_agent::sync::store::ExportAction::Deprovision)
                    .count() as u64,
            };
            sync.allow_deletes(count).await?;
            println!("the next export may delete up to {count} object(s)");
            Ok(())
        }
    }
}
