//! secret-rotator: keeps push and pull Secrets whose registry passwords rotate by themselves

use std::process::ExitCode;

use clap::Parser;
use secret_rotator::RotatorArgs;
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
    #[command(flatten)]
    rotator: RotatorArgs,
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
    let settings = cli.rotator.settings(std::env::var("POD_NAMESPACE").ok())?;
    let runtime = Runtime::start(secret_rotator::FIELD_MANAGER_COMPONENT, cli.runtime).await?;
    require_crds(
        &runtime.client,
        &[
            resource_of::<wharf_core::crd::ImagePushSecret>(),
            resource_of::<wharf_core::crd::ImagePullSecret>(),
            resource_of::<wharf_core::crd::ImageRegistryAccount>(),
            resource_of::<wharf_core::crd::ImageRegistry>(),
        ],
    )
    .await?;
    tracing::info!(
        ttl = ?settings.secret_ttl,
        rotation_interval = ?settings.rotation_interval,
        default_registry = %settings.default_registry,
        "rotating push and pull secrets"
    );
    let client = runtime.client.clone();
    let metrics = runtime.metrics.clone();
    runtime
        .run(|| secret_rotator::run(client, settings, metrics))
        .await?;
    Ok(())
}
