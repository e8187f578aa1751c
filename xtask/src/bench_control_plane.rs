//! `cargo xtask bench control-plane`: 500 RegistryMirrors at once on the local API server —
//! time until every mirror has its children and a status, API writes per mirror at creation and
//! after a restart, and the controller's peak RSS — measured by the release-built benchmark
//! `crates/mirror-controller/benches/control_plane.rs` against the release controller binary.
//!
//! It runs on a control plane of its own (its own state directory, ports and etcd), started empty
//! for the run and purged after it: nothing else shares that API server, no node or scheduler
//! acts on the 500 StatefulSets, and no earlier run's garbage (a thousand pods and claims that
//! kube-controller-manager deletes at 20 requests a second) is still being collected, so the
//! figures are mirror-controller's and repeatable.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::scripts::repo_root;

/// Brings the dedicated control plane up from nothing, runs the benchmark (its report streams
/// through) and purges the control plane again, also when the benchmark fails.
pub fn run() -> anyhow::Result<()> {
    let state = state_dir();
    cluster(&state, &["down", "--purge"])?;
    cluster(&state, &["up"])?;
    let outcome = bench(&state);
    let stopped = cluster(&state, &["down", "--purge"]);
    outcome?;
    stopped
}

/// `<state home>/wharf/bench-control-plane`, beside the shared cluster's `…/wharf/cluster`.
fn state_dir() -> PathBuf {
    let state_home = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    state_home.join("wharf/bench-control-plane")
}

fn cluster(state: &Path, action: &[&str]) -> anyhow::Result<()> {
    let script = repo_root().join("xtask/scripts/cluster.sh");
    let status = Command::new("bash")
        .arg(&script)
        .args(action)
        .env("WHARF_STATE_DIR", state)
        .status()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !status.success() {
        let action = action.join(" ");
        bail!("`cluster.sh {action}` for the benchmark's control plane failed ({status})");
    }
    Ok(())
}

fn bench(state: &Path) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(repo_root())
        .env("WHARF_STATE_DIR", state)
        .env_remove("WHARF_E2E_KUBECONFIG")
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
