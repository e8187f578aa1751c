//! A private registry on the local node, as a user runs one: an ImageRegistry served with a
//! certificate of the organisation's CA (the CA the node trusts), rotating push and pull logins
//! from an ImagePushSecret and an ImagePullSecret, a push from the node with the push login, and a
//! pod whose image the kubelet pulls with the pull Secret.
//!
//! Shared by `e2e/tests/node_registry.rs` and `cargo xtask demo`: [`tour`] runs the whole flow and
//! returns a [`RegistryReport`]; each step is also a method of [`PrivateRegistry`]. Call
//! [`PrivateRegistry::teardown`] before `Wharf::uninstall` (the rotator's finalizers need the
//! rotator running).

mod hosts;
mod login;
mod objects;
mod pods;
mod skopeo;

pub use hosts::HostsLine;
pub use login::{Login, Logins};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::{Value, json};
use wharf_core::crd::{ImagePullSecret, ImagePushSecret, ImageRegistry};
use wharf_core::registry::names;
use wharf_core::tls::{CertifiedKey, issue_server_cert};

use super::wait_until;
use super::{Narrator, Wharf};
use crate::cluster::repo_root;
use crate::node::node_trusted_ca;
use objects::{count, create, wait_reachable};

/// The DNS zone the registry's host name is in: `.test` is reserved (RFC 6761), so the name can
/// never reach a public resolver with an answer; this machine resolves it through the hosts line
/// the scenario adds (there is no cluster DNS on the local node). Merge [`chart_values`] into
/// the install's values to use it; the scenario reads whichever zone the release was given.
pub const DNS_ZONE: &str = "wharf.test";
/// Repository and tag the scenario pushes.
pub const IMAGE_PATH: &str = "wharf-demo/busybox:1";
/// Images come up in seconds; the margin is for a machine busy compiling.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
const SECRET_TIMEOUT: Duration = Duration::from_secs(90);
const POD_TIMEOUT: Duration = Duration::from_secs(120);
/// Validity of the certificate the organisation's CA issues for the registry.
const CERT_VALIDITY: Duration = Duration::from_secs(30 * 86_400);

/// Chart values the registry flow wants: the registry host names in [`DNS_ZONE`].
pub fn chart_values() -> Value {
    json!({"registryController": {"env": {"OPERATOR_DNS_ZONE": DNS_ZONE}}})
}

/// What the flow showed, for a test's assertions and the demo's summary.
#[derive(Clone, Debug)]
pub struct RegistryReport {
    pub hostname: String,
    /// The pushed image, `<hostname>/<IMAGE_PATH>`.
    pub image: String,
    /// Digest of the pushed manifest, the one the pod runs.
    pub digest: String,
    pub push_secret: String,
    pub pull_secret: String,
    pub push_time: Duration,
    /// Why the registry refused a push with the pull login.
    pub refused_push: String,
    /// Why the kubelet could not pull without the pull Secret.
    pub refused_pull: String,
    /// The pod that runs the pushed image, and how long from creation until it ran.
    pub pod: String,
    pub pod_start: Duration,
}

/// An ImageRegistry that is Ready and whose host name resolves on this machine.
pub struct PrivateRegistry {
    client: Client,
    pub namespace: String,
    pub name: String,
    pub hostname: String,
    pub cluster_ip: String,
    hosts_line: Option<HostsLine>,
    work_dir: PathBuf,
}

/// The whole flow: registry, logins, push, refused push, refused and successful pull.
pub async fn tour(wharf: &Wharf, narrator: &Narrator) -> (PrivateRegistry, RegistryReport) {
    let registry = PrivateRegistry::create(wharf, "registry", narrator).await;
    let logins = registry.create_logins("ci", "runtime", narrator).await;
    let image = registry.image(IMAGE_PATH);
    let (push_time, digest) = registry.push(&logins.push, &busybox_archive(), &image, narrator);
    let refused_push = registry.refused_push(&logins.pull, &busybox_archive(), narrator);
    let refused_pull = registry.refused_pull(&image, narrator).await;
    let (pod, pod_start) = registry.run(&image, &digest, &logins.pull, narrator).await;
    let report = RegistryReport {
        hostname: registry.hostname.clone(),
        image,
        digest,
        push_secret: logins.push.secret,
        pull_secret: logins.pull.secret,
        push_time,
        refused_push,
        refused_pull,
        pod,
        pod_start,
    };
    narrator.detail(format!(
        "explore: kubectl -n {ns} get imageregistries,imagepushsecrets,imagepullsecrets,pods",
        ns = registry.namespace
    ));
    (registry, report)
}

/// `target/images/busybox.tar`, the OCI archive `cargo xtask images busybox` writes.
pub fn busybox_archive() -> PathBuf {
    let archive = repo_root().join("target/images/busybox.tar");
    assert!(
        archive.is_file(),
        "{} is missing: build it with `cargo xtask images busybox`",
        archive.display()
    );
    archive
}

impl PrivateRegistry {
    /// Issues the registry's certificate from the node's CA, creates the ImageRegistry `name`
    /// with it, waits until it is Ready and makes its host name resolve on this machine.
    pub async fn create(wharf: &Wharf, name: &str, narrator: &Narrator) -> PrivateRegistry {
        let client = wharf.client.clone();
        let namespace = wharf.namespace.clone();
        let zone = dns_zone(wharf).await;
        let hostname = names::hostname(name, &namespace, &zone);
        let tls_secret = format!("{name}-org-tls");
        narrator.step(format!(
            "issuing {hostname}'s certificate from the organisation's CA (the CA the node trusts) → Secret {tls_secret}"
        ));
        let ca = read_node_ca();
        let cert = issue_server_cert(
            &ca,
            &names::tls_dns_names(name, &namespace, &zone),
            CERT_VALIDITY,
            SystemTime::now(),
        )
        .unwrap_or_else(|err| panic!("issuing the registry's certificate: {err}"));
        create(
            &client,
            &namespace,
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": tls_secret},
                "type": "kubernetes.io/tls",
                "stringData": {"tls.crt": cert.cert_pem, "tls.key": cert.key_pem, "ca.crt": ca.cert_pem},
            }),
        )
        .await;

        narrator.step(format!(
            "creating ImageRegistry {name} (tls.secretName: {tls_secret}) and waiting until it is Ready"
        ));
        let started = Instant::now();
        create(
            &client,
            &namespace,
            json!({
                "apiVersion": "registry.mgoltzsche.github.com/v1alpha1", "kind": "ImageRegistry",
                "metadata": {"name": name},
                "spec": {
                    "replicas": 1,
                    "serviceType": "ClusterIP",
                    "tls": {"secretName": tls_secret},
                    "persistentVolumeClaim": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                        "deleteClaim": true,
                    },
                },
            }),
        )
        .await;
        let registries: Api<ImageRegistry> = Api::namespaced(client.clone(), &namespace);
        let ready = wait_until(&registries, name, READY_TIMEOUT, "Ready", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.observed_generation == r.metadata.generation
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
        .await;
        let status_host = ready.status.and_then(|s| s.hostname).unwrap_or_default();
        assert_eq!(
            status_host, hostname,
            "the ImageRegistry's status.hostname is not <name>.<namespace>.<OPERATOR_DNS_ZONE>"
        );
        narrator.detail(format!(
            "Ready after {:.1}s: the registry and registry-auth run in pod {name}-0",
            started.elapsed().as_secs_f64()
        ));

        let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
        let cluster_ip = services
            .get(&names::workload_name(name))
            .await
            .unwrap_or_else(|err| panic!("reading the registry's Service {name}: {err}"))
            .spec
            .and_then(|s| s.cluster_ip)
            .filter(|ip| !ip.is_empty() && ip != "None")
            .unwrap_or_else(|| panic!("the registry's Service {name} has no ClusterIP"));
        wait_reachable(&cluster_ip, &[443, names::AUTH_PORT]).await;
        let hosts_line = HostsLine::add(&cluster_ip, &hostname, &format!("{namespace}/{name}"))
            .unwrap_or_else(|err| panic!("adding {hostname} to {}: {err}", hosts::HOSTS_FILE));
        narrator.detail(format!(
            "no cluster DNS here: {} names the Service: {}",
            hosts::HOSTS_FILE,
            hosts_line.line()
        ));
        let work_dir = repo_root()
            .join("target/e2e-registry")
            .join(format!("{namespace}-{name}"));
        std::fs::create_dir_all(&work_dir)
            .unwrap_or_else(|err| panic!("creating {}: {err}", work_dir.display()));
        PrivateRegistry {
            client,
            namespace,
            name: name.to_owned(),
            hostname,
            cluster_ip,
            hosts_line: Some(hosts_line),
            work_dir,
        }
    }

    /// `<hostname>/<path>`.
    pub fn image(&self, path: &str) -> String {
        format!("{}/{path}", self.hostname)
    }

    /// Deletes what the flow created (pods, the push and pull secrets — waiting while the
    /// rotator clears its finalizers — and the ImageRegistry) and removes the hosts line.
    /// Call it while wharf still runs.
    pub async fn teardown(mut self) {
        cleanup(&self.client, &self.namespace).await;
        if let Some(line) = self.hosts_line.take()
            && let Err(err) = line.remove()
        {
            eprintln!("wharf-e2e: removing the registry's hosts line: {err}");
        }
    }
}

impl Drop for PrivateRegistry {
    // Also when a step panics: the hosts line goes with its own guard, the scratch files here.
    fn drop(&mut self) {
        let _gone = std::fs::remove_dir_all(&self.work_dir);
    }
}

/// Deletes the flow's pods, ImagePushSecrets, ImagePullSecrets (waiting while the rotator clears
/// its finalizers) and ImageRegistries in `namespace`. Idempotent; for a test to call after a
/// failed flow, while wharf still runs (after `Wharf::uninstall` the finalizers would stay and
/// keep the namespace from being deleted).
pub async fn cleanup(client: &Client, namespace: &str) {
    let params = DeleteParams::default();
    let all = ListParams::default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let _gone = pods.delete_collection(&params, &all).await;
    let pushes: Api<ImagePushSecret> = Api::namespaced(client.clone(), namespace);
    let pulls: Api<ImagePullSecret> = Api::namespaced(client.clone(), namespace);
    let _gone = pushes.delete_collection(&params, &all).await;
    let _gone = pulls.delete_collection(&params, &all).await;
    let deadline = Instant::now() + SECRET_TIMEOUT;
    while count(&pushes).await + count(&pulls).await > 0 {
        if Instant::now() >= deadline {
            eprintln!(
                "wharf-e2e: image push/pull secrets of {namespace} still exist after {SECRET_TIMEOUT:?}"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let registries: Api<ImageRegistry> = Api::namespaced(client.clone(), namespace);
    let _gone = registries.delete_collection(&params, &all).await;
}

/// The zone the release's registry-controller names registries in (its OPERATOR_DNS_ZONE).
async fn dns_zone(wharf: &Wharf) -> String {
    let deployments: Api<Deployment> = Api::namespaced(wharf.client.clone(), &wharf.namespace);
    let selector = format!(
        "app.kubernetes.io/instance={},app.kubernetes.io/name=registry-controller",
        wharf.release
    );
    let list = deployments
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap_or_else(|err| panic!("listing the registry-controller Deployment: {err}"));
    let deployment = list
        .items
        .first()
        .unwrap_or_else(|| panic!("release {} has no registry-controller", wharf.release));
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .into_iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.env.iter().flatten())
        .find(|e| e.name == "OPERATOR_DNS_ZONE")
        .and_then(|e| e.value.clone())
        .map(|zone| zone.trim_matches('.').to_owned())
        .filter(|zone| !zone.is_empty())
        .unwrap_or_else(|| names::DEFAULT_DNS_ZONE.to_owned())
}

fn read_node_ca() -> CertifiedKey {
    let (cert, key) = node_trusted_ca();
    let read = |path: &Path| {
        std::fs::read_to_string(path).unwrap_or_else(|err| {
            panic!(
                "reading the node's CA {}: {err}; `cargo xtask cluster up --node` creates it",
                path.display()
            )
        })
    };
    CertifiedKey {
        cert_pem: read(&cert),
        key_pem: read(&key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_in_the_zone_are_valid() {
        let host = names::hostname("registry", "node-registry-1a2b3c", DNS_ZONE);
        assert!(host.len() < 253 && host.ends_with(".test"));
    }
}
