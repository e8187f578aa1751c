//! registry-auth: issues Docker registry bearer tokens for the ImageRegistryAccounts of its namespace

use std::process::ExitCode;

use clap::Parser;
use registry_auth::AuthServer;
use registry_auth::settings::AuthArgs;
use wharf_core::runtime::{Runtime, RuntimeArgs};

#[derive(Parser)]
#[command(
    name = "registry-auth",
    version,
    about = "issues Docker registry bearer tokens for the ImageRegistryAccounts of its namespace"
)]
struct Cli {
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    auth: AuthArgs,
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
    let runtime = Runtime::start("registry-auth", cli.runtime).await?;
    // Checks its CRDs and RBAC itself, within its namespace: a cluster-wide CRD check would need
    // permissions registry-auth's Role deliberately lacks.
    let server = AuthServer::start(&cli.auth, runtime.client.clone()).await?;
    runtime.run(|| server.serve()).await?;
    Ok(())
}
