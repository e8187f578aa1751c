//! secret-rotator: keeps push and pull Secrets whose registry passwords rotate by themselves

use std::process::ExitCode;

use clap::Parser;
use wharf_core::runtime::{Runtime, RuntimeArgs, require_crds, resource_of};

#[derive(Parser)]
#[command(
    name = "secret-rotator",
    version,
    about = "keeps push and pull Secrets whose registry passwords rotate by themselves"
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
    let runtime = Runtime::start("secret-rotator", cli.runtime).await?;
    require_crds(
        &runtime.client,
        &[
            resource_of::<wharf_core::crd::ImagePushSecret>(),
            resource_of::<wharf_core::crd::ImagePullSecret>(),
            resource_of::<wharf_core::crd::ImageRegistryAccount>(),
        ],
    )
    .await?;
    // The reconcilers of this component land with its own issue; until then it only idles.
    runtime.run(std::future::pending::<()>).await?;
    Ok(())
}
