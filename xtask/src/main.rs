//! `cargo xtask …`: the developer and CI tasks of wharf.

mod crdgen;
mod scripts;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "wharf's developer and CI tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the CRDs to charts/wharf/crds/ (with --check: fail if they are stale).
    Crdgen {
        /// Compare instead of writing; exit 1 when the committed CRDs differ from the generated ones.
        #[arg(long)]
        check: bool,
    },
    /// The local Kubernetes control plane: up, down, env, status.
    Cluster {
        /// Arguments passed to xtask/scripts/cluster.sh, e.g. `up`, `down`, `env`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Every test: brings the local control plane up, then runs the whole workspace's tests.
    Test {
        /// Extra arguments for `cargo test`, e.g. a test name filter.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crdgen { check } => crdgen::run(check),
        Command::Cluster { args } => scripts::cluster(&args),
        Command::Test { args } => {
            scripts::install_test_dependencies()?;
            scripts::cluster(&["up".to_owned()])?;
            scripts::cargo_test(&args)
        }
    }
}
