//! `idbridge cloud ...`: the cloud directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use idbridge_cloud::{CloudConfig, Scope};
use idbridge_core::{Secret, SystemClock};

#[derive(Subcommand)]
pub enum CloudCommand {
    /// Serve the cloud directory over HTTPS.
    Serve(#[command(flatten)] ConfigArgs),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// One-time tokens an agent registers with (`idbridge agent register`).
    #[command(subcommand)]
    AgentToken(AgentTokenCommand),
}

#[derive(Subcommand)]
pub enum AgentTokenCommand {
    /// Create a registration token (valid 24 hours, once) and print it.
    Create {
        #[command(flatten)]
        config: ConfigArgs,
        /// The agent's name, for the admin API and the audit log.
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (only its hash is stored; it cannot be shown again).
    Create {
        #[command(flatten)]
        config: ConfigArgs,
        /// admin (everything), sync (the sync agent) or read (SCIM reads).
        #[arg(long)]
        scope: String,
        /// A name for the audit log.
        #[arg(long)]
        name: String,
    },
}

#[derive(Args)]
pub struct ConfigArgs {
    /// The cloud.toml to read.
    #[arg(long, env = "IDBRIDGE_CLOUD_CONFIG")]
    config: PathBuf,
    /// PostgreSQL URL (overrides [storage] database_url; the default store is SQLite).
    #[arg(long, env = "IDBRIDGE_CLOUD_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Listen address (overrides [server] listen).
    #[arg(long, env = "IDBRIDGE_CLOUD_LISTEN")]
    listen: Option<SocketAddr>,
}

impl ConfigArgs {
    fn load(self) -> anyhow::Result<CloudConfig> {
        let mut config = CloudConfig::load(&self.config)?;
        if let Some(url) = self.database_url {
            config.storage.database_url = Some(Secret::from(url));
        }
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        Ok(config)
    }
}

pub async fn run(cmd: CloudCommand) -> anyhow::Result<()> {
    match cmd {
        CloudCommand::Serve(args) => {
            let config = args.load()?;
            let server = idbridge_cloud::start(config, Arc::new(SystemClock)).await?;
            tracing::info!(addr = %server.addr, "cloud directory listening (HTTPS)");
            server
                .run_until(async {
                    let mut term = match tokio::signal::unix::signal(
                        tokio::signal::unix::SignalKind::terminate(),
                    ) {
                        Ok(s) => s,
                        Err(_) => return std::future::pending().await,
                    };
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                })
                .await
                .context("the server stopped with an error")?;
            tracing::info!("cloud directory stopped");
            Ok(())
        }
        CloudCommand::Token(TokenCommand::Create {
            config,
            scope,
            name,
        }) => {
            let scope = Scope::parse(&scope)
                .with_context(|| format!("unknown scope {scope:?}: use admin, sync or read"))?;
            let directory =
                idbridge_cloud::open_directory(config.load()?, Arc::new(SystemClock)).await?;
            let token = directory.create_token(&name, scope).await?;
            println!("{}", token.expose());
            Ok(())
        }
        CloudCommand::AgentToken(AgentTokenCommand::Create { config, name }) => {
            let directory =
                idbridge_cloud::open_directory(config.load()?, Arc::new(SystemClock)).await?;
            let (token, _) = directory
                .create_agent_registration("cli", &name)
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
            println!("{}", token.expose());
            Ok(())
        }
    }
}
