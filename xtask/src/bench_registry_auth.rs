//! `cargo xtask bench registry-auth`: registry-auth's token throughput, measured by its
//! release-built benchmark (`crates/registry-auth/benches/token_throughput.rs`).

use std::process::Command;

use anyhow::{Context, bail};

use crate::scripts::repo_root;

/// Runs the benchmark; its report (tokens per second per case) streams through.
pub fn run() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(repo_root())
        .args([
            "bench",
            "--package",
            "registry-auth",
            "--bench",
            "token_throughput",
        ])
        .status()
        .context("cannot start cargo bench")?;
    if !status.success() {
        bail!("the registry-auth benchmark failed ({status})");
    }
    Ok(())
}
