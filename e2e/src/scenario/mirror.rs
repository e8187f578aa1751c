//! RegistryMirror flows on the local node, as a user sees them: a mirror of an upstream registry,
//! the node pointed at it, pods whose images the kubelet pulls through it (cold, then warm from
//! the cache), and the node back on the upstream once the mirror is deleted. Shared by
//! `e2e/tests/node_mirror.rs` and `cargo xtask demo`.

mod objects;
mod pulls;

use objects::{create_mirror, mirror_name, trust_upstream_ca, wait_mirror_ready, wait_node_files};
pub use objects::{create_ready_mirror, delete_mirror};
use pulls::{imageswap_maps, mirror_service, pull_reference_with_pod, pull_with_pod};

use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::json;
use wharf_core::crd::RegistryMirror;
use wharf_core::mirror::names::IMAGESWAP_CONFIG_MAP;

use super::upstream::UpstreamRegistry;
use super::{Narrator, Wharf, WharfOptions};

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
}
