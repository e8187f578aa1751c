//! The local node for tests that run pods: brings it up, imports wharf's images, and names the CA
//! the node's containerd trusts (for registries the tests serve on the bridge).

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::cluster::{repo_root, state_dir};

/// The bridge address of the node: what pods and the host both reach, never leaving the machine.
pub const NODE_IP: &str = "10.244.0.1";

/// The name an image built by `cargo xtask images` has on the node (tag: the chart's `dev`).
pub fn wharf_image(name: &str) -> String {
    format!("docker.io/wharf/{name}:dev")
}

/// The CA the node's containerd trusts besides the system CAs: `(certificate, key)` PEM paths.
/// Sign a registry's certificate with it and the kubelet pulls from that registry without any
/// per-host configuration, as nodes trust an organisation's own CA.
pub fn node_trusted_ca() -> (PathBuf, PathBuf) {
    let dir = state_dir().join("node-trust");
    (dir.join("ca.crt"), dir.join("ca.key"))
}

/// Starts (or finds) the node and imports `images` (names as `cargo xtask images` knows them),
/// each at most once per test process. The node needs root (containerd, iptables, a bridge), as
/// CI and the dev machines have.
pub fn ensure_node(images: &[&str]) {
    static UP: OnceLock<()> = OnceLock::new();
    static IMPORTED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    UP.get_or_init(|| {
        let lock = std::env::temp_dir().join("wharf-e2e-cluster.lock");
        run(
            Command::new("flock")
                // --close: the daemons the script starts must not inherit the lock (they would
                // hold it for their whole life and every later `flock` would wait forever).
                .arg("--close")
                .arg(&lock)
                .arg("bash")
                .arg(repo_root().join("xtask/scripts/cluster.sh"))
                .args(["up", "--node"]),
            "xtask/scripts/cluster.sh up --node",
        );
    });
    let mut imported = IMPORTED.lock().unwrap_or_else(|e| e.into_inner());
    let missing: Vec<&str> = images
        .iter()
        .copied()
        .filter(|image| !imported.iter().any(|done| done == image))
        .collect();
    if missing.is_empty() {
        return;
    }
    run(
        xtask_command()
            .args(["images", "--debug", "--import"])
            .args(&missing),
        "cargo xtask images --import",
    );
    imported.extend(missing.iter().map(|image| (*image).to_owned()));
}

/// `cargo run -p xtask --` (see `cargo_command`).
pub fn xtask_command() -> Command {
    let mut command = cargo_command();
    command.args(["run", "--quiet", "--package", "xtask", "--"]);
    command
}

/// cargo in the repository root, without the variables cargo set for this test: a nested cargo
/// would take CARGO_PKG_NAME=wharf-e2e and the like for changed build-script inputs (ring reruns
/// on CARGO_PKG_NAME) and rebuild half the dependency tree.
pub fn cargo_command() -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    for (name, _) in std::env::vars() {
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name.as_str(),
                "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR"
            )
        {
            command.env_remove(name);
        }
    }
    command.current_dir(repo_root());
    command
}

/// Runs `command` with its output shown; panics naming `what` when it fails.
pub fn run(command: &mut Command, what: &str) {
    let status = command
        .status()
        .unwrap_or_else(|err| panic!("cannot run {what}: {err}"));
    assert!(
        status.success(),
        "`{what}` failed ({status}); its output above says why"
    );
}
