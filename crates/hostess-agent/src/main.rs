//! hostess-agent: points this node's container runtimes at a registry mirror

use std::process::ExitCode;

use clap::Parser;
use wharf_core::runtime::{Runtime, RuntimeArgs};

#[derive(Parser)]
#[command(
    name = "hostess-agent",
    version,
    about = "points this node's container runtimes at a registry mirror"
)]
struct Cli {
    #[command(flatten)]
    runtime: RuntimeArgs,
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
    let runtime = Runtime::start("hostess-agent", cli.runtime).await?;
    // The reconcilers of this component land with its own issue; until then it only idles.
    runtime.run(std::future::pending::<()>).await?;
    Ok(())
}
