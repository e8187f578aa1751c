//! `cargo xtask bench control-plane`: 500 RegistryMirrors at once on the local API server —
//! time until every mirror has its children and a status, API writes per mirror at creation and
//! after a restart, and the controller's peak RSS — measured by the release-built benchmark
//! `crates/mirror-controller/benches/control_plane.rs` against the release controller binary.

use std::process::Command;

use anyhow::{Context, bail};

use crate::scripts::{cluster, repo_root};

/// Brings the local control plane up and runs the benchmark; its report streams through.
pub fn run() -> anyhow::Result<()> {
    cluster(&["up".to_owned()])?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(repo_root())
        .args([
            "bench",
            "--package",
            "mirror-controller",
            "--bench",
            "control_plane",
        ])
        .status()
        .context("cannot start cargo bench")?;
    if !status.success() {
        bail!("the control-plane benchmark failed or missed a target ({status})");
    }
    Ok(())
}
