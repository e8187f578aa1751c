//! mirror-controller: runs a caching registry mirror for every RegistryMirror and points the nodes at it

use std::process::ExitCode;

use clap::Parser;
use wharf_core::runtime::{Runtime, RuntimeArgs, require_crds, resource_of};

#[derive(Parser)]
#[command(
    name = "mirror-controller",
    version,
    about = "runs a caching registry mirror for every RegistryMirror and points the nodes at it"
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
    let runtime = Runtime::start("mirror-controller", cli.runtime).await?;
    require_crds(
        &runtime.client,
        &[resource_of::<wharf_core::crd::RegistryMirror>()],
    )
    .await?;
    // The reconcilers of this component land with its own issue; until then it only idles.
    runtime.run(std::future::pending::<()>).await?;
    Ok(())
}
