//! wharf's Helm chart through the Helm SDK (xtask/scripts/helm.py): lint, render, install.

use std::path::PathBuf;
use std::process::Command;

use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};

use crate::cluster::repo_root;

fn helm(args: &[&str]) -> String {
    let deps = repo_root().join("xtask/scripts/helm-deps.sh");
    let python = Command::new("bash")
        .arg(&deps)
        .arg("--path")
        .output()
        .unwrap_or_else(|err| panic!("running {}: {err}", deps.display()));
    let python = String::from_utf8_lossy(&python.stdout).trim().to_owned();
    assert!(
        PathBuf::from(&python).exists(),
        "the Helm SDK venv is missing: run `bash xtask/scripts/helm-deps.sh`"
    );
    let output = Command::new(&python)
        .arg(repo_root().join("xtask/scripts/helm.py"))
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("running helm.py {args:?}: {err}"));
    assert!(
        output.status.success(),
        "helm.py {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The chart's directory.
pub fn chart_dir() -> String {
    repo_root().join("charts/wharf").display().to_string()
}

/// Lints the chart; panics with Helm's messages when it has errors.
pub fn lint_chart() {
    helm(&["lint", &chart_dir()]);
}

/// Renders the chart (templates only, not the CRDs) with `values` as release `name` in `namespace`.
pub fn render_chart(name: &str, namespace: &str, values: &serde_json::Value) -> Vec<DynamicObject> {
    let values = values.to_string();
    let yaml = helm(&[
        "render",
        &chart_dir(),
        "--name",
        name,
        "--namespace",
        namespace,
        "--values",
        &values,
    ]);
    serde_yaml::Deserializer::from_str(&yaml)
        .filter_map(|doc| {
            let value: serde_json::Value =
                serde::Deserialize::deserialize(doc).expect("rendered YAML parses");
            (!value.is_null()).then(|| serde_json::from_value(value).expect("rendered object"))
        })
        .collect()
}

/// `helm install` of the chart into `namespace` on the local cluster.
pub fn install_chart(name: &str, namespace: &str, values: &serde_json::Value) {
    let kubeconfig = crate::cluster::kubeconfig_path().display().to_string();
    let values = values.to_string();
    helm(&[
        "install",
        &chart_dir(),
        "--name",
        name,
        "--namespace",
        namespace,
        "--values",
        &values,
        "--kubeconfig",
        &kubeconfig,
    ]);
}

/// Deletes the cluster-scoped objects of release `name` (its ClusterRoles and
/// ClusterRoleBindings): they outlive the namespace the release was installed into.
pub async fn delete_release_cluster_rbac(client: &Client, name: &str) -> Result<(), kube::Error> {
    let instance = ListParams::default().labels(&format!("app.kubernetes.io/instance={name}"));
    for kind in ["ClusterRole", "ClusterRoleBinding"] {
        let gvk = GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", kind);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
        api.delete_collection(&DeleteParams::default(), &instance)
            .await?;
    }
    Ok(())
}
