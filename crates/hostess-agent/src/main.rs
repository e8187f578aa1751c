//! hostess-agent: points this node's container runtimes at a registry mirror

use std::process::ExitCode;

use clap::Parser;
use hostess_agent::Settings;
use wharf_core::runtime::{Runtime, RuntimeArgs, shutdown_signal};

#[derive(Parser)]
#[command(
    name = "hostess-agent",
    version,
    about = "points this node's container runtimes at a registry mirror"
)]
struct Cli {
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    settings: Settings,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.settings.validate()?;
    let runtime = Runtime::start("hostess-agent", cli.runtime).await?;
    hostess_agent::run(
        config,
        runtime.client.clone(),
        runtime.health.clone(),
        runtime.metrics.clone(),
        shutdown_signal(),
    )
    .await?;
    Ok(())
}
