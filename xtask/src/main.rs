//! `cargo xtask …`: the developer and CI tasks of wharf.

mod bench_control_plane;
mod bench_data_plane;
mod bench_registry_auth;
mod bench_secret_rotator;
mod crdgen;
mod images;
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
    /// Container images as OCI archives in target/images, without Docker (--import: into the node).
    Images(images::ImagesArgs),
    /// Benchmarks, one per component: `cargo xtask bench registry-auth`, …
    Bench {
        #[command(subcommand)]
        target: BenchTarget,
    },
    /// The guided tour on this machine: a real node, wharf installed with Helm, pulls through a
    /// mirror, a private registry with rotating Secrets. Prints how to explore and tear down.
    Demo,
    /// Every test: brings the local control plane up, then runs the whole workspace's tests.
    Test {
        /// Extra arguments for `cargo test`, e.g. a test name filter.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum BenchTarget {
    /// mirror-controller: 500 RegistryMirrors at once — until all converge, API writes, peak RSS.
    ControlPlane,
    /// registry-auth: tokens per second for an already-verified account and for first logins.
    RegistryAuth,
    /// secret-rotator: 1,000 push/pull secrets at once — until Ready, a forced rotation, API requests.
    SecretRotator,
    /// data plane: the mirror's nginx on loopback — warm blob rate, cold/warm pulls, 10 concurrent pulls.
    DataPlane(bench_data_plane::Options),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crdgen { check } => crdgen::run(check),
        Command::Cluster { args } => scripts::cluster(&args),
        Command::Images(args) => images::run(args),
        Command::Bench { target } => match target {
            BenchTarget::ControlPlane => bench_control_plane::run(),
            BenchTarget::RegistryAuth => bench_registry_auth::run(),
            BenchTarget::SecretRotator => bench_secret_rotator::run(),
            BenchTarget::DataPlane(options) => bench_data_plane::run(&options),
        },
        Command::Demo => {
            scripts::install_test_dependencies()?;
            scripts::demo()
        }
        Command::Test { args } => {
            scripts::install_test_dependencies()?;
            scripts::cluster(&["up".to_owned()])?;
            scripts::cargo_test(&args)
        }
    }
}
