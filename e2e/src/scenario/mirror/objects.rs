//! The RegistryMirror objects of a flow and what they make on the node: create, wait Ready, delete.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use wharf_core::crd::RegistryMirror;
use wharf_core::mirror::names::{CA_BUNDLE_KEY, daemonset_name, statefulset_name};

use super::{HOSTS_FILE, READY_TIMEOUT, UPSTREAM_CA_CONFIG_MAP};
use crate::scenario::upstream::UpstreamRegistry;
use crate::scenario::{Narrator, Wharf, wait_until};

/// A RegistryMirror name unique to the release's namespace, short enough for its children.
pub(super) fn mirror_name(wharf: &Wharf, kind: &str) -> String {
    let suffix = wharf.namespace.rsplit('-').next().unwrap_or("x");
    format!("{kind}-{suffix}")
}

/// The ConfigMap `CA_CERTIFICATE_BUNDLE` names, holding the node CA that signed the upstream.
pub(super) async fn trust_upstream_ca(wharf: &Wharf) {
    let api: Api<ConfigMap> = Api::namespaced(wharf.client.clone(), &wharf.namespace);
    let object = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": UPSTREAM_CA_CONFIG_MAP},
        "data": {CA_BUNDLE_KEY: UpstreamRegistry::ca_pem()},
    });
    api.patch(
        UPSTREAM_CA_CONFIG_MAP,
        &PatchParams::apply("wharf-e2e").force(),
        &Patch::Apply(&object),
    )
    .await
    .unwrap_or_else(|err| panic!("applying ConfigMap {UPSTREAM_CA_CONFIG_MAP}: {err}"));
}

pub(super) async fn create_mirror(
    wharf: &Wharf,
    name: &str,
    upstream: &str,
    masquerade: Option<&str>,
) {
    let api: Api<RegistryMirror> = Api::all(wharf.client.clone());
    let mut spec = json!({"upstreamUrl": upstream});
    if let Some(masquerade) = masquerade {
        spec["masqueradeUrl"] = masquerade.into();
    }
    let mirror: RegistryMirror = serde_json::from_value(json!({
        "apiVersion": "k8s.osp.tech/v1", "kind": "RegistryMirror",
        "metadata": {"name": name, "labels": {Wharf::MIRROR_LABEL: wharf.release}},
        "spec": spec,
    }))
    .expect("a RegistryMirror");
    api.create(&PostParams::default(), &mirror)
        .await
        .unwrap_or_else(|err| panic!("creating RegistryMirror {name}: {err}"));
}

/// Creates RegistryMirror `name` of `upstream` for the release and waits until it is Ready and
/// its pods and node agents run; returns its ClusterIP. (The demo leaves one to explore.)
pub async fn create_ready_mirror(
    wharf: &Wharf,
    name: &str,
    upstream: &UpstreamRegistry,
    narrator: &Narrator,
) -> String {
    trust_upstream_ca(wharf).await;
    create_mirror(wharf, name, &upstream.host(), None).await;
    wait_mirror_ready(wharf, name, narrator).await
}

/// Deletes the (cluster-scoped) mirror and waits until it is gone, finalizers and all.
pub async fn delete_mirror(wharf: &Wharf, name: &str) {
    let api: Api<RegistryMirror> = Api::all(wharf.client.clone());
    let _gone = api.delete(name, &DeleteParams::default()).await;
    let deadline = Instant::now() + READY_TIMEOUT;
    while let Ok(Some(_)) = api.get_opt(name).await {
        assert!(
            Instant::now() < deadline,
            "RegistryMirror {name} still exists {READY_TIMEOUT:?} after its deletion"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits for the mirror's StatefulSet, its node agents and its Ready condition; the ClusterIP.
pub(super) async fn wait_mirror_ready(wharf: &Wharf, name: &str, narrator: &Narrator) -> String {
    let statefulsets: Api<StatefulSet> = Api::namespaced(wharf.client.clone(), &wharf.namespace);
    let sts = statefulset_name(name);
    wait_until(
        &statefulsets,
        &sts,
        READY_TIMEOUT,
        "all mirror pods ready",
        |s| {
            let status = s.status.as_ref();
            let wanted = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            status.and_then(|s| s.ready_replicas) == Some(wanted)
        },
    )
    .await;
    narrator.detail(format!("StatefulSet {sts}: every nginx pod ready"));
    let daemonsets: Api<DaemonSet> = Api::namespaced(wharf.client.clone(), &wharf.namespace);
    let ds = daemonset_name(name);
    wait_until(
        &daemonsets,
        &ds,
        READY_TIMEOUT,
        "the agent ready on every node",
        |d| {
            d.status.as_ref().is_some_and(|s| {
                s.desired_number_scheduled > 0 && s.number_ready == s.desired_number_scheduled
            })
        },
    )
    .await;
    narrator.detail(format!("DaemonSet {ds}: hostess-agent ready on the node"));
    let mirrors: Api<RegistryMirror> = Api::all(wharf.client.clone());
    let mirror = wait_until(&mirrors, name, READY_TIMEOUT, "Ready=True", |m| {
        m.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
    })
    .await;
    let cluster_ip = mirror
        .status
        .and_then(|s| s.cluster_ip)
        .unwrap_or_else(|| panic!("RegistryMirror {name} is Ready without a status.clusterIP"));
    narrator.detail(format!(
        "RegistryMirror {name}: Ready, Service {cluster_ip}:443"
    ));
    wait_reachable(&cluster_ip).await;
    cluster_ip
}

/// Waits until the node reaches the Service: kube-proxy programs a new Service's rules on its
/// next sync, and until then containerd would quietly fall back to the upstream.
async fn wait_reachable(cluster_ip: &str) {
    let address = format!("{cluster_ip}:443");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let connect = tokio::net::TcpStream::connect(&address);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the node cannot reach the mirror's Service {address}: is kube-proxy running?"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until the node's containerd `hosts.toml` names the mirror's ClusterIP and the hosts
/// file maps the masquerade name to it (`present`), or until both are gone.
pub(super) async fn wait_node_files(
    hosts_toml: &str,
    cluster_ip: &str,
    masquerade: &str,
    present: bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let toml = std::fs::read_to_string(hosts_toml).unwrap_or_default();
        let toml_ok = toml.contains(&format!("https://{cluster_ip}"));
        let hosts = std::fs::read_to_string(HOSTS_FILE).unwrap_or_default();
        let line_ok = hosts.lines().any(|line| {
            let mut fields = line.split_whitespace();
            fields.next() == Some(cluster_ip) && fields.any(|name| name == masquerade)
        });
        if toml_ok == present && line_ok == present {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the node's files are not {}: {hosts_toml}:\n{toml}\n{HOSTS_FILE}:\n{hosts}",
            if present { "written" } else { "cleaned up" }
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
