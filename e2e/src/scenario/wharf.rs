//! wharf installed on the local node with its Helm chart, every component as a pod.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::Narrator;
use crate::chart::{delete_release_cluster_rbac, install_chart};
use crate::node::ensure_node;

/// Every image the chart runs, as `cargo xtask images` names them.
pub const WHARF_IMAGES: [&str; 8] = [
    "mirror-controller",
    "registry-controller",
    "secret-rotator",
    "hostess-agent",
    "registry-auth",
    "nginx-mirror",
    "registry",
    "busybox",
];

/// How long the controllers may take to become Available (images are local; pods start in seconds).
const AVAILABLE_TIMEOUT: Duration = Duration::from_secs(180);

/// What differs between installs.
pub struct WharfOptions {
    /// `hostess` (nodes pointed at the mirrors) or `services` (imageswap-maps lines).
    pub addressing_scheme: &'static str,
    /// Further chart values, merged over the defaults this harness sets.
    pub values: Value,
}

impl Default for WharfOptions {
    fn default() -> Self {
        Self {
            addressing_scheme: "hostess",
            values: json!({}),
        }
    }
}

/// An installed release. Its controllers act only on objects in its namespace (RegistryMirrors
/// also need the label `wharf.dev/release: <release>`), so installs of several tests never meet.
pub struct Wharf {
    pub client: Client,
    pub namespace: String,
    pub release: String,
}

impl Wharf {
    /// Label a RegistryMirror needs for this release's mirror-controller to manage it.
    pub const MIRROR_LABEL: &'static str = "wharf.dev/release";

    /// Imports the images, `helm install`s the chart with every component into `namespace`, and
    /// waits until each controller's Deployment is Available. The namespace must let pods run (a
    /// test's comes from `TestEnv::with_pods`).
    pub async fn install(
        client: Client,
        namespace: &str,
        release: &str,
        options: WharfOptions,
        narrator: &Narrator,
    ) -> Wharf {
        narrator.step("building wharf's images without Docker and importing them into the node");
        ensure_node(&WHARF_IMAGES);
        narrator.step(format!(
            "helm install {release} charts/wharf --namespace {namespace} (every component)"
        ));
        let mut values = json!({
            "logFormat": "text",
            "mirrorController": {
                "env": {
                    "NAMESPACE": namespace,
                    "ADDRESSING_SCHEME": options.addressing_scheme,
                    "IMAGESWAP_NAMESPACE": namespace,
                },
                "extraEnv": [
                    {"name": "MIRROR_SELECTOR", "value": format!("{}={release}", Self::MIRROR_LABEL)},
                ],
            },
            "registryController": {"env": {"WATCH_NAMESPACE": namespace}},
            "secretRotator": {"env": {
                "WATCH_NAMESPACE": namespace,
                "OPERATOR_DEFAULT_REGISTRY_NAMESPACE": namespace,
            }},
        });
        merge(&mut values, options.values);
        install_chart(release, namespace, &values);
        let wharf = Wharf {
            client,
            namespace: namespace.to_owned(),
            release: release.to_owned(),
        };
        wharf.wait_available(narrator).await;
        wharf
    }

    async fn wait_available(&self, narrator: &Narrator) {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let selector = format!("app.kubernetes.io/instance={}", self.release);
        let deadline = tokio::time::Instant::now() + AVAILABLE_TIMEOUT;
        loop {
            let deployments = api
                .list(&ListParams::default().labels(&selector))
                .await
                .unwrap_or_else(|err| panic!("listing wharf's Deployments: {err}"));
            let waiting: Vec<String> = deployments
                .items
                .iter()
                .filter(|d| !available(d))
                .map(|d| d.name_any())
                .collect();
            if !deployments.items.is_empty() && waiting.is_empty() {
                for deployment in &deployments.items {
                    narrator.detail(format!("{} is Available", deployment.name_any()));
                }
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "wharf's Deployments {waiting:?} not Available after {AVAILABLE_TIMEOUT:?}; \
                 `kubectl -n {} describe pods` says why",
                self.namespace
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Removes what the release made outside its namespace (ClusterRoles and their bindings) and
    /// its Deployments, waiting until the controllers' pods are gone, so no controller of this
    /// install outlives the test. The namespace itself is its owner's to delete.
    pub async fn uninstall(&self) {
        let selector = format!("app.kubernetes.io/instance={}", self.release);
        let params = ListParams::default().labels(&selector);
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let _gone = deployments
            .delete_collection(&DeleteParams::foreground(), &params)
            .await;
        let _gone = delete_release_cluster_rbac(&self.client, &self.release).await;
        let deadline = tokio::time::Instant::now() + AVAILABLE_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            match deployments.list(&params).await {
                Ok(list) if list.items.is_empty() => return,
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

fn available(deployment: &Deployment) -> bool {
    deployment
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Available" && c.status == "True")
        })
        && deployment
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
            >= 1
}

/// Merges `extra` into `base`, objects key by key, anything else replaced.
fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(base), Value::Object(extra)) => {
            for (key, value) in extra {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, extra) => *base = extra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_what_extra_does_not_name() {
        let mut base = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge(&mut base, json!({"a": {"c": 3}, "d": [2], "e": true}));
        assert_eq!(base, json!({"a": {"b": 1, "c": 3}, "d": [2], "e": true}));
    }
}
