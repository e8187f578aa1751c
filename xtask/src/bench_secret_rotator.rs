//! `cargo xtask bench secret-rotator`: 1,000 push/pull secrets at once on the local API server —
//! time until all are Ready, a forced rotation of all, and the API requests it took — measured by
//! the release-built benchmark `crates/secret-rotator/benches/rotation_at_scale.rs`.

use std::process::Command;

use anyhow::{Context, bail};

use crate::scripts::repo_root;

/// Runs the benchmark; its report (seconds and API requests per phase) streams through.
pub fn run() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(repo_root())
        .args([
            "bench",
            "--package",
            "secret-rotator",
            "--bench",
            "rotation_at_scale",
        ])
        .status()
        .context("cannot start cargo bench")?;
    if !status.success() {
        bail!("the secret-rotator benchmark failed ({status})");
    }
    Ok(())
}
