//! `idbridge`: one binary, one subcommand per part of the system.

mod agent;
mod cloud;
mod sync;

use clap::{Parser, Subcommand};

/// Sync allocates and drops a batch's objects together (about 300 allocations per object):
/// glibc's per-thread cache of 7 chunks per size overflows, and malloc and free took a third of
/// the engine's instructions. mimalloc's per-thread free lists absorb that (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "idbridge",
    version,
    about = "Open hybrid-identity bridge between Active Directory and a cloud directory"
)]
struct Cli {
    /// Log filter (tracing's env-filter syntax); also read from IDBRIDGE_LOG.
    #[arg(long, env = "IDBRIDGE_LOG", default_value = "info", global = true)]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The cloud directory: SCIM 2.0 tenant, admin API and sign-in.
    #[command(subcommand)]
    Cloud(cloud::CloudCommand),
    /// The on-premises agent.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Password hash sync, by hand: a full re-send, one cycle, or the last cycle's status.
    #[command(subcommand)]
    Phs(agent::PhsCommand),
    /// Object sync by hand: run profiles, history, errors, preview, deletion threshold.
    #[command(subcommand)]
    Sync(sync::SyncCommand),
}

/// Errors end the process with the whole cause chain on one line and exit code 1; no backtrace,
/// which means nothing to an administrator.
fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idbridge: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log)?)
        .with_writer(std::io::stderr)
        // Colour codes only for people: the lab and services log to files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Cloud(cmd) => cloud::run(cmd).await,
            Command::Agent(cmd) => agent::run_agent(cmd).await,
            Command::Phs(cmd) => agent::run_phs(cmd).await,
            Command::Sync(cmd) => sync::run(cmd).await,
        }
    })
}
