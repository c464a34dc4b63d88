//! `idbridge cloud ...`

use clap::Subcommand;

#[derive(Subcommand)]
pub enum CloudCommand {
    /// Serve the cloud directory over HTTPS.
    Serve,
}

pub async fn run(cmd: CloudCommand) -> anyhow::Result<()> {
    match cmd {
        CloudCommand::Serve => anyhow::bail!("the cloud directory is being built (issue 3)"),
    }
}
