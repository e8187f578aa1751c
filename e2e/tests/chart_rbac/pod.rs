//! A pod's container run as a local process the way the kubelet would run it, so a test can run
//! what a controller deploys (hostess-agent, registry-auth) under the ServiceAccount it is given.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, KeyToPath, PodTemplateSpec, Secret, Volume,
};
use kube::api::Api;
use wharf_e2e::TestEnv;

use crate::support::binary;

/// One container of a pod template, run as a local process the way the kubelet would run it:
/// its environment (field references resolved), its volumes as directories under a temporary
/// root (Secrets written out, host paths and emptyDirs created), and its ServiceAccount's
/// identity through an impersonating kubeconfig.
pub struct PodProcess {
    root: tempfile::TempDir,
    mount_paths: Vec<String>,
    env: Vec<(String, String)>,
    pub service_account: String,
    pub namespace: String,
    pub pod_name: String,
}

impl PodProcess {
    /// Prepares container `container` of `template` as pod `pod_name` in `namespace`.
    pub async fn new(
        env: &TestEnv,
        namespace: &str,
        template: &PodTemplateSpec,
        container: &str,
        pod_name: &str,
    ) -> Self {
        let spec = template.spec.as_ref().expect("a pod spec");
        let found: &Container = spec
            .containers
            .iter()
            .find(|c| c.name == container)
            .unwrap_or_else(|| panic!("no container {container} in the pod template"));
        let root = tempfile::Builder::new()
            .prefix("wharf-rbac-pod-")
            .tempdir()
            .expect("a temporary pod root");
        let mut pod = Self {
            root,
            mount_paths: Vec::new(),
            env: Vec::new(),
            service_account: spec
                .service_account_name
                .clone()
                .unwrap_or_else(|| "default".into()),
            namespace: namespace.to_owned(),
            pod_name: pod_name.to_owned(),
        };
        let volumes: BTreeMap<&str, &Volume> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| (v.name.as_str(), v))
            .collect();
        for mount in found.volume_mounts.iter().flatten() {
            let volume = volumes
                .get(mount.name.as_str())
                .unwrap_or_else(|| panic!("volume {} is mounted but not declared", mount.name));
            pod.materialize(env, volume, &mount.mount_path).await;
            pod.mount_paths.push(mount.mount_path.clone());
        }
        for var in found.env.iter().flatten() {
            let value = match (&var.value, &var.value_from) {
                (Some(value), _) => pod.rewrite(value),
                (None, Some(source)) => {
                    let field = source
                        .field_ref
                        .as_ref()
                        .unwrap_or_else(|| panic!("env {}: only fieldRef is emulated", var.name));
                    pod.field(&field.field_path)
                }
                (None, None) => String::new(),
            };
            pod.env.push((var.name.clone(), value));
        }
        pod
    }

    /// Where a path inside the container is on this machine.
    pub fn path(&self, in_container: &str) -> PathBuf {
        self.root.path().join(in_container.trim_start_matches('/'))
    }

    /// The value of an environment variable the pod spec sets.
    pub fn env(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The binary with the pod's environment, acting as the pod's ServiceAccount.
    pub fn command(&self, env: &TestEnv, binary_name: &str) -> Command {
        let mut command = Command::new(binary(binary_name));
        command.env_clear();
        if let Ok(path) = std::env::var("PATH") {
            command.env("PATH", path);
        }
        command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(
                "KUBECONFIG",
                env.kubeconfig_as(&self.namespace, &self.service_account),
            )
            .current_dir(self.root.path());
        command
    }

    /// The kubeconfig the process runs with (the pod's ServiceAccount).
    pub fn kubeconfig(&self, env: &TestEnv) -> PathBuf {
        env.kubeconfig_as(&self.namespace, &self.service_account)
    }

    /// A path value under one of the container's mounts points into the temporary root.
    fn rewrite(&self, value: &str) -> String {
        let mounted = self.mount_paths.iter().any(|mount| {
            value == mount
                || value
                    .strip_prefix(mount.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        });
        if mounted {
            self.path(value).display().to_string()
        } else {
            value.to_owned()
        }
    }

    fn field(&self, path: &str) -> String {
        match path {
            "metadata.name" => self.pod_name.clone(),
            "metadata.namespace" => self.namespace.clone(),
            "spec.serviceAccountName" => self.service_account.clone(),
            "spec.nodeName" => "wharf-rbac-node".into(),
            "status.podIP" | "status.hostIP" => "127.0.0.1".into(),
            other => panic!("fieldRef {other} is not emulated"),
        }
    }

    async fn materialize(&self, env: &TestEnv, volume: &Volume, mount_path: &str) {
        let dir = self.path(mount_path);
        if let Some(source) = &volume.secret {
            let name = source.secret_name.as_deref().expect("a Secret name");
            let secret = Api::<Secret>::namespaced(env.client.clone(), &self.namespace)
                .get(name)
                .await
                .unwrap_or_else(|err| panic!("reading Secret {name} to mount: {err}"));
            let data: BTreeMap<String, Vec<u8>> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            write_projection(&dir, &data, source.items.as_deref());
        } else if let Some(source) = &volume.config_map {
            let name = source.name.as_str();
            let config_map = Api::<ConfigMap>::namespaced(env.client.clone(), &self.namespace)
                .get(name)
                .await
                .unwrap_or_else(|err| panic!("reading ConfigMap {name} to mount: {err}"));
            let data: BTreeMap<String, Vec<u8>> = config_map
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            write_projection(&dir, &data, source.items.as_deref());
        } else if let Some(host) = &volume.host_path {
            if host.type_.as_deref() == Some("File") {
                // The kubelet requires the file to exist on the node: an empty one here.
                if let Some(parent) = dir.parent() {
                    std::fs::create_dir_all(parent).expect("a parent directory");
                }
                std::fs::write(&dir, "").expect("a host file");
            } else {
                std::fs::create_dir_all(&dir).expect("a host directory");
            }
        } else {
            // emptyDir, persistentVolumeClaim: an empty writable directory.
            std::fs::create_dir_all(&dir).expect("a volume directory");
        }
    }
}

fn write_projection(dir: &Path, data: &BTreeMap<String, Vec<u8>>, items: Option<&[KeyToPath]>) {
    std::fs::create_dir_all(dir).expect("a volume directory");
    let files: Vec<(String, String)> = match items {
        Some(items) => items
            .iter()
            .map(|item| (item.key.clone(), item.path.clone()))
            .collect(),
        None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
    };
    for (key, path) in files {
        let content = data
            .get(&key)
            .unwrap_or_else(|| panic!("the mounted object has no key {key}"));
        std::fs::write(dir.join(path), content).expect("a projected file");
    }
}
