//! Running the project's shell scripts and cargo from xtask, with errors that say what failed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The repository root (xtask lives one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `xtask/scripts/cluster.sh ARGS…`: the local control plane.
pub fn cluster(args: &[String]) -> anyhow::Result<()> {
    let script = repo_root().join("xtask/scripts/cluster.sh");
    run(
        Command::new("bash").arg(&script).args(args),
        "xtask/scripts/cluster.sh",
    )
}

/// `cargo test --workspace ARGS…` against the local control plane.
pub fn cargo_test(args: &[String]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(
        Command::new(cargo)
            .current_dir(repo_root())
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(args),
        "cargo test --workspace",
    )
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
