//! RegistryMirror flows on the local node, as a user sees them: a mirror of an upstream registry,
//! the node pointed at it, pods whose images the kubelet pulls through it (cold, then warm from
//! the cache), and the node back on the upstream once the mirror is deleted. Shared by
//! `e2e/tests/node_mirror.rs` and `cargo xtask demo`.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use wharf_core::crd::RegistryMirror;
use wharf_core::mirror::names::{
    CA_BUNDLE_KEY, IMAGESWAP_CONFIG_MAP, IMAGESWAP_MAPS_KEY, daemonset_name, service_name,
    statefulset_name,
};

use super::upstream::{PushedImage, UpstreamRegistry};
use super::{Narrator, Wharf, WharfOptions};
use crate::cluster::state_dir;

/// The ConfigMap (key `ca-certificates.crt`) through which the mirrors trust the upstream's CA.
pub const UPSTREAM_CA_CONFIG_MAP: &str = "upstream-ca";
/// Mirror pods and node agents start in seconds; the margin is for a machine busy compiling.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// A pull of a 1 MB image takes about a second.
const POD_TIMEOUT: Duration = Duration::from_secs(120);
/// The node's containerd: its `certs.d` is the host's, as on a real node.
const CONTAINERD_CERTS_DIR: &str = "/etc/containerd/certs.d";
const HOSTS_FILE: &str = "/etc/hosts";

/// Install options for a release whose mirrors proxy the test upstream: its CA is trusted.
pub fn mirror_options(addressing_scheme: &'static str) -> WharfOptions {
    WharfOptions {
        addressing_scheme,
        values: json!({"mirrorController": {"env": {"CA_CERTIFICATE_BUNDLE": UPSTREAM_CA_CONFIG_MAP}}}),
    }
}

/// One pull by the kubelet and what it cost each side.
#[derive(Clone, Debug, Default)]
pub struct PullReport {
    /// The kubelet's own figure ("Successfully pulled image … in 1.2s"), else pod start time.
    pub duration: Duration,
    /// Blob downloads the upstream registry served during the pull.
    pub upstream_blob_gets: usize,
    /// Blob requests the mirror answered from its cache / had to fetch (its access log).
    pub mirror_hits: usize,
    pub mirror_misses: usize,
}

/// What the hostess-mode flow saw.
#[derive(Clone, Debug)]
pub struct MirrorReport {
    pub mirror: String,
    pub image: String,
    /// Blobs of the image (config and layers).
    pub blobs: usize,
    pub cold: PullReport,
    pub warm: PullReport,
    /// The pull after the mirror was deleted, straight from the upstream.
    pub fallback: PullReport,
}

/// Hostess mode end to end: mirror → node configured → cold pull through the mirror → warm pull
/// from its cache → mirror deleted → node files gone → pull straight from the upstream.
pub async fn hostess_pull_through(
    wharf: &Wharf,
    upstream: &UpstreamRegistry,
    narrator: &Narrator,
) -> MirrorReport {
    let name = mirror_name(wharf, "h");
    narrator.step(format!(
        "pushing a busybox image to the upstream registry {}",
        upstream.host()
    ));
    let image = upstream.push_busybox(&format!("demo/{name}"), "1", &wharf.namespace);
    narrator.detail(format!("{} ({} blobs)", image.reference, image.blobs.len()));
    trust_upstream_ca(wharf).await;

    narrator.step(format!(
        "kubectl apply: RegistryMirror {name} for {}",
        upstream.host()
    ));
    create_mirror(wharf, &name, &upstream.host(), None).await;
    let cluster_ip = wait_mirror_ready(wharf, &name, narrator).await;
    let masquerade = format!("mirror-{}", upstream.host());

    narrator.step("the node's hostess-agent pointed containerd and /etc/hosts at the mirror");
    let hosts_toml = format!("{CONTAINERD_CERTS_DIR}/{}/hosts.toml", upstream.host());
    let masquerade_name = masquerade
        .split(':')
        .next()
        .unwrap_or(&masquerade)
        .to_owned();
    wait_node_files(&hosts_toml, &cluster_ip, &masquerade_name, true).await;
    narrator.detail(format!("{hosts_toml} names https://{cluster_ip}"));
    narrator.detail(format!("{HOSTS_FILE}: {cluster_ip} {masquerade_name}"));

    narrator.step("cold pull: a pod of the image (not on the node), the kubelet pulls it");
    let cold = pull_with_pod(wharf, upstream, &image, "cold-pull", Some(&name)).await;
    narrator.detail(describe(&cold));
    assert_eq!(
        cold.upstream_blob_gets,
        image.blobs.len(),
        "the cold pull should fetch each blob from the upstream once, through the mirror"
    );
    assert!(
        cold.mirror_misses >= image.blobs.len(),
        "the mirror's access log shows {} cache misses for {} blobs: the kubelet did not pull through the mirror",
        cold.mirror_misses,
        image.blobs.len()
    );

    narrator.step("warm pull: the image removed from the node, a second pod pulls it again");
    let warm = pull_with_pod(wharf, upstream, &image, "warm-pull", Some(&name)).await;
    narrator.detail(describe(&warm));
    assert_eq!(
        warm.upstream_blob_gets, 0,
        "the warm pull went to the upstream: the mirror did not serve it from its cache"
    );
    assert!(
        warm.mirror_hits >= image.blobs.len(),
        "the mirror's access log shows {} cache hits for {} blobs",
        warm.mirror_hits,
        image.blobs.len()
    );

    narrator.step(format!(
        "kubectl delete rm {name}: the node forgets the mirror"
    ));
    delete_mirror(wharf, &name).await;
    wait_node_files(&hosts_toml, &cluster_ip, &masquerade_name, false).await;
    narrator.detail(format!("{hosts_toml} and the {HOSTS_FILE} line are gone"));

    narrator.step("a pull now goes straight to the upstream");
    let fallback = pull_with_pod(wharf, upstream, &image, "direct-pull", None).await;
    narrator.detail(describe(&fallback));
    assert_eq!(
        fallback.upstream_blob_gets,
        image.blobs.len(),
        "without the mirror the node should pull every blob from the upstream itself"
    );
    MirrorReport {
        mirror: name,
        image: image.reference,
        blobs: image.blobs.len(),
        cold,
        warm,
        fallback,
    }
}

/// What the services-mode flow saw.
#[derive(Clone, Debug)]
pub struct ServicesReport {
    pub mirror: String,
    /// The host images name to go through the mirror (the `masqueradeUrl`).
    pub masquerade: String,
    /// The mirror's line in the `imageswap-maps` ConfigMap.
    pub maps_line: String,
    /// The image as users write it, and as the ImageSwap webhook rewrites it.
    pub image: String,
    pub rewritten_image: String,
    pub blobs: usize,
    pub pull: PullReport,
}

/// Services mode end to end: mirror → its `imageswap-maps` line → a pod of the image named as
/// the ImageSwap webhook rewrites it (`<ClusterIP>/<masquerade>/<repository>:<tag>`), pulled by
/// the kubelet through the mirror's Service → mirror deleted → its line gone.
///
/// The rewritten name is what a real services-mode user's pods carry: the node's containerd
/// reaches the ClusterIP directly (kube-proxy, no DNS needed, as nodes have no cluster DNS) and
/// trusts the mirror through the CA hostess-agent installed for that address.
pub async fn services_pull_through(
    wharf: &Wharf,
    upstream: &UpstreamRegistry,
    narrator: &Narrator,
) -> ServicesReport {
    let name = mirror_name(wharf, "s");
    narrator.step(format!(
        "pushing a busybox image to the upstream registry {}",
        upstream.host()
    ));
    let image = upstream.push_busybox(&format!("demo/{name}"), "1", &wharf.namespace);
    trust_upstream_ca(wharf).await;
    // A masquerade host without a port: a map line is `<host>:<replacement>`, and ImageSwap
    // would split `host:port` at the port's colon.
    let masquerade = format!("{name}.mirror.wharf.test");
    narrator.step(format!(
        "kubectl apply: RegistryMirror {name} for {} as {masquerade} (services mode)",
        upstream.host()
    ));
    create_mirror(wharf, &name, &upstream.host(), Some(&masquerade)).await;
    let cluster_ip = wait_mirror_ready(wharf, &name, narrator).await;
    let maps_line = format!("{masquerade}:{cluster_ip}/{masquerade}");
    wait_maps(wharf, &maps_line, true).await;
    narrator.detail(format!(
        "ConfigMap {IMAGESWAP_CONFIG_MAP} ({}): {maps_line}",
        wharf.namespace
    ));

    let user_image = format!("{masquerade}/{}:{}", image.repository, image.tag);
    let rewritten = imageswap_rewrite(&maps_line, &user_image)
        .unwrap_or_else(|| panic!("the maps line {maps_line:?} does not apply to {user_image}"));
    narrator.step(format!(
        "a pod of {user_image}, as ImageSwap rewrites it: {rewritten}"
    ));
    let pull = pull_reference_with_pod(
        wharf,
        upstream,
        &image,
        &rewritten,
        "services-pull",
        Some(&name),
    )
    .await;
    narrator.detail(describe(&pull));
    assert_eq!(
        pull.upstream_blob_gets,
        image.blobs.len(),
        "the pull should fetch each blob from the upstream once, through the mirror"
    );
    assert!(
        pull.mirror_misses >= image.blobs.len(),
        "the mirror's access log shows {} cache misses for {} blobs: the pull did not go through {}",
        pull.mirror_misses,
        image.blobs.len(),
        mirror_service(&name)
    );

    narrator.step(format!("kubectl delete rm {name}: its maps line goes"));
    delete_mirror(wharf, &name).await;
    wait_maps(wharf, &maps_line, false).await;
    ServicesReport {
        mirror: name,
        masquerade,
        maps_line,
        image: user_image,
        rewritten_image: rewritten,
        blobs: image.blobs.len(),
        pull,
    }
}

/// What ImageSwap does with one map line `<registry>:<replacement>`: an image whose registry is
/// `<registry>` gets `<replacement>` in its place.
fn imageswap_rewrite(line: &str, image: &str) -> Option<String> {
    let (registry, replacement) = line.split_once(':')?;
    let rest = image.strip_prefix(registry)?.strip_prefix('/')?;
    Some(format!("{replacement}/{rest}"))
}

async fn wait_maps(wharf: &Wharf, line: &str, present: bool) {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let maps = imageswap_maps(wharf, &wharf.namespace).await;
        if maps.lines().any(|l| l == line) == present {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{IMAGESWAP_CONFIG_MAP} should {}hold {line:?}; its maps:\n{maps}",
            if present { "" } else { "no longer " }
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Deletes every RegistryMirror of the release (cluster-scoped: the namespace's deletion does
/// not take them), waiting until they are gone.
pub async fn delete_release_mirrors(wharf: &Wharf) {
    let api: Api<RegistryMirror> = Api::all(wharf.client.clone());
    let selector = format!("{}={}", Wharf::MIRROR_LABEL, wharf.release);
    let Ok(list) = api.list(&ListParams::default().labels(&selector)).await else {
        return;
    };
    for mirror in list.items {
        delete_mirror(wharf, &mirror.name_any()).await;
    }
}

/// "1.2s, upstream blob downloads: 2, mirror cache hits 0 / misses 2".
pub fn describe(pull: &PullReport) -> String {
    format!(
        "pulled in {:.2}s; upstream blob downloads: {}; mirror cache: {} hits, {} misses",
        pull.duration.as_secs_f64(),
        pull.upstream_blob_gets,
        pull.mirror_hits,
        pull.mirror_misses
    )
}

/// A RegistryMirror name unique to the release's namespace, short enough for its children.
pub(crate) fn mirror_name(wharf: &Wharf, kind: &str) -> String {
    let suffix = wharf.namespace.rsplit('-').next().unwrap_or("x");
    format!("{kind}-{suffix}")
}

/// The ConfigMap `CA_CERTIFICATE_BUNDLE` names, holding the node CA that signed the upstream.
pub(crate) async fn trust_upstream_ca(wharf: &Wharf) {
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

pub(crate) async fn create_mirror(
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
pub(crate) async fn wait_mirror_ready(wharf: &Wharf, name: &str, narrator: &Narrator) -> String {
    let statefulsets: Api<StatefulSet> = Api::namespaced(wharf.client.clone(), &wharf.namespace);
    let sts = statefulset_name(name);
    wait_until(&statefulsets, &sts, "all mirror pods ready", |s| {
        let status = s.status.as_ref();
        let wanted = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        status.and_then(|s| s.ready_replicas) == Some(wanted)
    })
    .await;
    narrator.detail(format!("StatefulSet {sts}: every nginx pod ready"));
    let daemonsets: Api<DaemonSet> = Api::namespaced(wharf.client.clone(), &wharf.namespace);
    let ds = daemonset_name(name);
    wait_until(&daemonsets, &ds, "the agent ready on every node", |d| {
        d.status.as_ref().is_some_and(|s| {
            s.desired_number_scheduled > 0 && s.number_ready == s.desired_number_scheduled
        })
    })
    .await;
    narrator.detail(format!("DaemonSet {ds}: hostess-agent ready on the node"));
    let mirrors: Api<RegistryMirror> = Api::all(wharf.client.clone());
    let mirror = wait_until(&mirrors, name, "Ready=True", |m| {
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

/// Polls `name` until `check` holds; on timeout panics showing the object as last seen.
pub(crate) async fn wait_until<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    check: impl Fn(&K) -> bool,
) -> K
where
    K: Resource + Clone + Debug + DeserializeOwned + Serialize,
{
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last = None;
    loop {
        match api.get_opt(name).await {
            Ok(Some(object)) if check(&object) => return object,
            Ok(found) => last = found,
            Err(err) => tracing::warn!(%err, name, "reading failed, retrying"),
        }
        if Instant::now() >= deadline {
            let seen = last
                .map(|o| serde_yaml::to_string(&o).unwrap_or_default())
                .unwrap_or_else(|| "(absent)".into());
            panic!("{name}: not {what} after {READY_TIMEOUT:?}; last seen:\n{seen}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the node's containerd `hosts.toml` names the mirror's ClusterIP and the hosts
/// file maps the masquerade name to it (`present`), or until both are gone.
async fn wait_node_files(hosts_toml: &str, cluster_ip: &str, masquerade: &str, present: bool) {
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

/// Removes `image` from the node's containerd and runs a pod of it (the kubelet pulls it), with
/// what the upstream and the mirror `mirror` (if any) served meanwhile.
pub(crate) async fn pull_with_pod(
    wharf: &Wharf,
    upstream: &UpstreamRegistry,
    image: &PushedImage,
    pod_name: &str,
    mirror: Option<&str>,
) -> PullReport {
    pull_reference_with_pod(wharf, upstream, image, &image.reference, pod_name, mirror).await
}

/// As [`pull_with_pod`], for the image under another name (as a webhook rewrote it).
pub(crate) async fn pull_reference_with_pod(
    wharf: &Wharf,
    upstream: &UpstreamRegistry,
    image: &PushedImage,
    reference: &str,
    pod_name: &str,
    mirror: Option<&str>,
) -> PullReport {
    remove_from_node(image, reference);
    let logs_before = match mirror {
        Some(mirror) => mirror_log(wharf, mirror).await,
        None => BTreeMap::new(),
    };
    let upstream_before = upstream.blob_gets();
    let pods: Api<Pod> = Api::namespaced(wharf.client.clone(), &wharf.namespace);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": pod_name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "app", "image": reference, "imagePullPolicy": "Always",
                "command": ["cat", "/wharf-demo-id"],
                "securityContext": {"runAsNonRoot": true, "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
            }],
        }
    }))
    .expect("a pod");
    let started = Instant::now();
    pods.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|err| panic!("creating pod {pod_name}: {err}"));
    let deadline = Instant::now() + POD_TIMEOUT;
    loop {
        let pod = pods.get(pod_name).await.ok();
        let phase = pod
            .as_ref()
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        match phase.as_str() {
            "Succeeded" => break,
            "Failed" => panic!(
                "pod {pod_name} failed:\n{}",
                pod_story(wharf, pod_name).await
            ),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "pod {pod_name} ({reference}) did not finish in {POD_TIMEOUT:?}:\n{}\nupstream log:\n{}",
            pod_story(wharf, pod_name).await,
            upstream.log_tail(10)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let waited = started.elapsed();
    let output = pods
        .logs(pod_name, &LogParams::default())
        .await
        .unwrap_or_else(|err| panic!("kubectl logs {pod_name}: {err}"));
    assert_eq!(
        output.trim(),
        image.marker,
        "pod {pod_name} ran something else than the pushed image"
    );
    let duration = pulled_in(wharf, pod_name).await.unwrap_or(waited);
    let _gone = pods.delete(pod_name, &DeleteParams::default()).await;
    let (mirror_hits, mirror_misses) = match mirror {
        Some(mirror) => cache_counts(&logs_before, &mirror_log(wharf, mirror).await),
        None => (0, 0),
    };
    PullReport {
        duration,
        upstream_blob_gets: upstream.blob_gets() - upstream_before,
        mirror_hits,
        mirror_misses,
    }
}

/// `ctr images rm --sync` of every name the image has on the node: then containerd's garbage
/// collector removes its blobs at once, and the next pull downloads them again.
fn remove_from_node(image: &PushedImage, reference: &str) {
    let socket = state_dir().join("node/containerd/containerd.sock");
    let ctr = |args: &[&str]| {
        std::process::Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .unwrap_or_else(|err| panic!("running ctr: {err}"))
    };
    // CRI records an image under its tag, its repository digest and its ID (the config digest).
    let repository = reference
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .map_or(reference, |(repository, _)| repository);
    let config = image.blobs.first().map_or("", String::as_str);
    let ours = |name: &str| {
        name == reference
            || name == config
            || name
                .strip_prefix(repository)
                .is_some_and(|rest| rest.starts_with('@'))
    };
    // The exited containers of the earlier pods (the kubelet removes them only at its next
    // garbage collection) keep the image's unpacked layers, and containerd skips downloading
    // a layer whose snapshot exists: remove them first.
    let containers = String::from_utf8_lossy(&ctr(&["containers", "ls"]).stdout).into_owned();
    for line in containers.lines().skip(1) {
        let mut fields = line.split_whitespace();
        if let (Some(id), Some(image_name)) = (fields.next(), fields.next())
            && ours(image_name)
        {
            let _gone = ctr(&["containers", "rm", id]);
        }
    }
    let names = String::from_utf8_lossy(&ctr(&["images", "ls", "-q"]).stdout).into_owned();
    for name in names.lines().filter(|name| ours(name)) {
        let _absent_is_fine = ctr(&["images", "rm", "--sync", name]);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let content = String::from_utf8_lossy(&ctr(&["content", "ls", "-q"]).stdout).into_owned();
        let left: Vec<&String> = image
            .blobs
            .iter()
            .filter(|blob| content.contains(blob.as_str()))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "containerd still holds {left:?} after `ctr images rm --sync {reference}`: is another image using them?"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The mirror pods' access logs, by pod name.
async fn mirror_log(wharf: &Wharf, mirror: &str) -> BTreeMap<String, String> {
    let pods: Api<Pod> = Api::namespaced(wharf.client.clone(), &wharf.namespace);
    let selector = format!("mirror={mirror},component=registry");
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap_or_else(|err| panic!("listing the mirror pods of {mirror}: {err}"));
    let mut logs = BTreeMap::new();
    for pod in list.items {
        let name = pod.name_any();
        let params = LogParams {
            container: Some("registry".into()),
            ..LogParams::default()
        };
        let log = pods.logs(&name, &params).await.unwrap_or_default();
        logs.insert(name, log);
    }
    logs
}

/// Blob requests answered from the cache and fetched upstream, in the log lines after `before`.
fn cache_counts(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> (usize, usize) {
    let (mut hits, mut misses) = (0, 0);
    for (pod, log) in after {
        let skip = before.get(pod).map_or(0, |old| old.lines().count());
        for line in log.lines().skip(skip) {
            // `10.244.0.1 "GET /v2/…/blobs/sha256:…?ns=… HTTP/1.1" 200 … cache=HIT rt=…`
            if line.starts_with("upstream ") || !line.contains("/blobs/sha256:") {
                continue;
            }
            if line.contains("\"GET ") && line.contains(" cache=HIT") {
                hits += 1;
            } else if line.contains("\"GET ") && line.contains(" cache=MISS") {
                misses += 1;
            }
        }
    }
    (hits, misses)
}

/// The kubelet's pull time from its `Pulled` event ("… in 1.234s").
async fn pulled_in(wharf: &Wharf, pod_name: &str) -> Option<Duration> {
    let events: Api<Event> = Api::namespaced(wharf.client.clone(), &wharf.namespace);
    let selector = format!("involvedObject.name={pod_name}");
    let list = events
        .list(&ListParams::default().fields(&selector))
        .await
        .ok()?;
    list.items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Pulled"))
        .find_map(|e| parse_pulled_in(e.message.as_deref()?))
}

fn parse_pulled_in(message: &str) -> Option<Duration> {
    let (_, after) = message.rsplit_once(" in ")?;
    let figure = after.split_whitespace().next()?;
    let seconds = if let Some(ms) = figure.strip_suffix("ms") {
        ms.parse::<f64>().ok()? / 1000.0
    } else {
        figure.strip_suffix('s')?.parse::<f64>().ok()?
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// A pod's status and events, for failure messages.
async fn pod_story(wharf: &Wharf, pod_name: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(wharf.client.clone(), &wharf.namespace);
    let status = pods
        .get(pod_name)
        .await
        .ok()
        .and_then(|p| p.status)
        .map(|s| serde_yaml::to_string(&s).unwrap_or_default())
        .unwrap_or_default();
    let events: Api<Event> = Api::namespaced(wharf.client.clone(), &wharf.namespace);
    let selector = format!("involvedObject.name={pod_name}");
    let events = events
        .list(&ListParams::default().fields(&selector))
        .await
        .map(|l| {
            l.items
                .iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e.reason.as_deref().unwrap_or(""),
                        e.message.as_deref().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    format!("{status}\nevents:\n{events}")
}

/// The `maps` of the imageswap ConfigMap in `namespace` ("" when absent).
pub(crate) async fn imageswap_maps(wharf: &Wharf, namespace: &str) -> String {
    let api: Api<ConfigMap> = Api::namespaced(wharf.client.clone(), namespace);
    api.get_opt(IMAGESWAP_CONFIG_MAP)
        .await
        .ok()
        .flatten()
        .and_then(|c| c.data)
        .and_then(|d| d.get(IMAGESWAP_MAPS_KEY).cloned())
        .unwrap_or_default()
}

/// Name of the mirror's Service (`registry-mirror-<n>`).
pub(crate) fn mirror_service(name: &str) -> String {
    service_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_images_as_imageswap_does() {
        let line = "m.wharf.test:10.96.0.7/m.wharf.test";
        assert_eq!(
            imageswap_rewrite(line, "m.wharf.test/demo/x:1").as_deref(),
            Some("10.96.0.7/m.wharf.test/demo/x:1")
        );
        assert_eq!(imageswap_rewrite(line, "m.wharf.testing/demo/x:1"), None);
        assert_eq!(imageswap_rewrite(line, "quay.io/demo/x:1"), None);
    }

    #[test]
    fn reads_the_kubelets_pull_time() {
        let message = r#"Successfully pulled image "10.244.0.1:5000/demo/x:1" in 1.234567s"#;
        assert_eq!(
            parse_pulled_in(message),
            Some(Duration::from_secs_f64(1.234567))
        );
        assert_eq!(
            parse_pulled_in("Successfully pulled image \"x\" in 850ms"),
            Some(Duration::from_millis(850))
        );
        assert_eq!(parse_pulled_in("Container image already present"), None);
    }

    #[test]
    fn counts_cache_results_of_new_blob_lines_only() {
        let line = |cache: &str| {
            format!(
                "10.244.0.1 \"GET /v2/demo/x/blobs/sha256:ab?ns=10.244.0.1:5000 HTTP/1.1\" 200 5 cache={cache} rt=0.001 ua=\"containerd\"\n"
            )
        };
        let old = line("MISS");
        let before = BTreeMap::from([("m-0".to_owned(), old.clone())]);
        let upstream =
            "upstream \"GET /v2/demo/x/blobs/sha256:ab HTTP/1.1\" range=\"\" 200 5 from=x rt=0\n";
        let manifest = "10.244.0.1 \"GET /v2/demo/x/manifests/1 HTTP/1.1\" 200 5 cache=MISS rt=0\n";
        let after = BTreeMap::from([
            (
                "m-0".to_owned(),
                format!("{old}{}{upstream}{manifest}", line("HIT")),
            ),
            ("m-1".to_owned(), line("MISS")),
        ]);
        assert_eq!(cache_counts(&before, &after), (1, 1));
    }
}
