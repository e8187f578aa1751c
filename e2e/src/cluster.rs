//! Starting or reusing the local control plane, its admin kubeconfig, and installing wharf's CRDs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The repository root (the harness lives in `e2e/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The cluster's state directory, as xtask/scripts/lib-common.sh chooses it.
pub fn state_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("WHARF_STATE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var("XDG_STATE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".to_owned()))
                .join(".local/state")
        });
    base.join("wharf/cluster")
}

/// Brings the cluster up once per test process (the script is idempotent and takes a lock, so
/// parallel test binaries share one cluster) and returns its admin kubeconfig.
pub fn ensure_up() -> PathBuf {
    static KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();
    KUBECONFIG
        .get_or_init(|| {
            if let Ok(path) = std::env::var("WHARF_E2E_KUBECONFIG") {
                return PathBuf::from(path);
            }
            let script = repo_root().join("xtask/scripts/cluster.sh");
            let lock = std::env::temp_dir().join("wharf-e2e-cluster.lock");
            let status = Command::new("flock")
                // --close: the daemons the script starts must not inherit the lock (they would
                // hold it for their whole life and every later `flock` would wait forever).
                .arg("--close")
                .arg(&lock)
                .arg("bash")
                .arg(&script)
                .arg("up")
                .status()
                .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
            assert!(
                status.success(),
                "`bash xtask/scripts/cluster.sh up` failed ({status}); its output above names the failing step and log"
            );
            kubeconfig_path()
        })
        .clone()
}

/// The admin kubeconfig of the running cluster, as `cluster.sh env` reports it.
pub fn kubeconfig_path() -> PathBuf {
    if let Ok(path) = std::env::var("WHARF_E2E_KUBECONFIG") {
        return PathBuf::from(path);
    }
    let script = repo_root().join("xtask/scripts/cluster.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg("env")
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("export KUBECONFIG="))
        .map(|path| PathBuf::from(path.trim().trim_matches(['"', '\''])))
        .unwrap_or_else(|| {
            panic!(
                "`cluster.sh env` printed no KUBECONFIG (is the cluster up?): {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

/// A client configuration from the admin kubeconfig.
pub async fn admin_config(kubeconfig: &Path) -> Config {
    let file = Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|err| panic!("reading {}: {err}", kubeconfig.display()));
    Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|err| panic!("loading {}: {err}", kubeconfig.display()))
}

/// Applies every wharf CRD (as crd-gen prints them) and waits until each is Established.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("wharf-e2e").force();
    for crd in wharf_core::crd::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|err| panic!("installing CRD {name}: {err}"));
    }
    for crd in wharf_core::crd::all_crds() {
        let name = crd.metadata.name.unwrap_or_default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let live = api
                .get(&name)
                .await
                .unwrap_or_else(|err| panic!("reading CRD {name}: {err}"));
            if is_established(&live) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "CRD {name} not Established after 30 s: {:?}",
                live.status
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether the API server serves the CRD.
pub fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}
