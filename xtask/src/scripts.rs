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

/// Runs every `xtask/scripts/*-deps.sh`: each installs (once, idempotently) what one group of
/// tests needs from Debian or PyPI, so a fresh machine needs nothing but this repository.
pub fn install_test_dependencies() -> anyhow::Result<()> {
    let dir = repo_root().join("xtask/scripts");
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.ends_with("-deps.sh"))
        })
        .collect();
    scripts.sort();
    for script in scripts {
        let what = format!("{}", script.display());
        run(Command::new("bash").arg(&script), &what)?;
    }
    Ok(())
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
