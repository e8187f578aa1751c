//! Pulls by the kubelet, measured: the image removed from the node, a pod run, and what the
//! upstream and the mirror served meanwhile (their access logs).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use serde_json::json;
use wharf_core::mirror::names::{IMAGESWAP_CONFIG_MAP, IMAGESWAP_MAPS_KEY, service_name};

use super::{POD_TIMEOUT, PullReport};
use crate::cluster::state_dir;
use crate::scenario::Wharf;
use crate::scenario::upstream::{PushedImage, UpstreamRegistry};

/// Removes `image` from the node's containerd and runs a pod of it (the kubelet pulls it), with
/// what the upstream and the mirror `mirror` (if any) served meanwhile.
pub(super) async fn pull_with_pod(
    wharf: &Wharf,
    upstream: &UpstreamRegistry,
    image: &PushedImage,
    pod_name: &str,
    mirror: Option<&str>,
) -> PullReport {
    pull_reference_with_pod(wharf, upstream, image, &image.reference, pod_name, mirror).await
}

/// As [`pull_with_pod`], for the image under another name (as a webhook rewrote it).
pub(super) async fn pull_reference_with_pod(
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
pub(super) async fn imageswap_maps(wharf: &Wharf, namespace: &str) -> String {
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
pub(super) fn mirror_service(name: &str) -> String {
    service_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

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
