//! registry-controller: runs a private registry with token authentication for every ImageRegistry

use std::process::ExitCode;

use clap::Parser;
use registry_controller::settings::Settings;
use wharf_core::crd::ImageRegistry;
use wharf_core::runtime::{Runtime, RuntimeArgs, require_crds, resource_of};

#[derive(Parser)]
#[command(
    name = "registry-controller",
    version,
    about = "runs a private registry with token authentication for every ImageRegistry"
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
    let runtime = Runtime::start("registry-controller", cli.runtime).await?;
    require_crds(&runtime.client, &[resource_of::<ImageRegistry>()]).await?;
    let (client, metrics) = (runtime.client.clone(), runtime.metrics.clone());
    runtime
        .run(|| registry_controller::run(client, cli.settings, metrics))
        .await?;
    Ok(())
}
