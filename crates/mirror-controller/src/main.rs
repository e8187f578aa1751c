//! mirror-controller: runs a caching registry mirror for every RegistryMirror and points the nodes at it

use std::process::ExitCode;

use clap::Parser;
use mirror_controller::{COMPONENT, MapCheck, Settings};
use wharf_core::runtime::{Runtime, RuntimeArgs, require_crds, resource_of};

#[derive(Parser)]
#[command(
    name = "mirror-controller",
    version,
    about = "runs a caching registry mirror for every RegistryMirror and points the nodes at it"
)]
struct Cli {
    /// Liveness check for services mode: exit 1 when imageswap-maps was changed by someone else
    /// since this controller last wrote it (its resourceVersion differs from MAP_VERSION_FILE).
    #[arg(long)]
    map_check: bool,

    #[command(flatten)]
    settings: Settings,

    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.map_check {
        return map_check(&cli.settings).await;
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = Runtime::start(COMPONENT, cli.runtime).await?;
    require_crds(
        &runtime.client,
        &[resource_of::<wharf_core::crd::RegistryMirror>()],
    )
    .await?;
    let (client, metrics) = (runtime.client.clone(), runtime.metrics.clone());
    let settings = cli.settings;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    runtime
        .run(|| async move {
            let result = mirror_controller::run(client, settings, metrics).await;
            let _ = done_tx.send(result);
        })
        .await?;
    match done_rx.await {
        Ok(result) => result.map_err(Into::into),
        // Stopped by a signal before the controller returned.
        Err(_) => Ok(()),
    }
}

/// `--map-check`: prints the verdict; exit code 0 (current), 1 (changed or cannot tell).
async fn map_check(settings: &Settings) -> ExitCode {
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(err) => {
            eprintln!("map-check: cannot connect to the Kubernetes API: {err}");
            return ExitCode::FAILURE;
        }
    };
    match mirror_controller::map_check(client, settings).await {
        Ok(MapCheck::Current(message)) => {
            println!("map-check: {message}");
            ExitCode::SUCCESS
        }
        Ok(MapCheck::Changed(message)) => {
            eprintln!("map-check: {message}");
            ExitCode::FAILURE
        }
        Err(message) => {
            eprintln!("map-check: {message}");
            ExitCode::FAILURE
        }
    }
}
