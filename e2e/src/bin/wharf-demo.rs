//! `cargo xtask demo`: wharf for real on this machine, as a guided tour — a local cluster with a
//! real node, wharf installed with Helm, a cold and a warm pull through a mirror, a push to a
//! private registry with a rotating push Secret and a pod run with the pull Secret. The steps are
//! the node e2e tests' own (wharf_e2e::scenario), so what the tour shows is what CI checks.

use std::panic::AssertUnwindSafe;
use std::process::{Command, ExitCode};
use std::time::Duration;

use futures::FutureExt as _;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use wharf_e2e::scenario::{
    MirrorReport, Narrator, UpstreamRegistry, Wharf, create_ready_mirror, delete_release_mirrors,
    hostess_pull_through, mirror_options, registry,
};
use wharf_e2e::{admin_config, ensure_up, kubeconfig_path, node, state_dir};

/// Where the tour installs wharf; a later run replaces it.
const NAMESPACE: &str = "wharf-demo";
const RELEASE: &str = "wharf";
/// The mirror left running for the user to explore.
const EXPLORE_MIRROR: &str = "explore-demo";
/// The kubectl that `cargo xtask cluster up` builds along with the cluster.
const KUBECTL: &str = "~/.cache/wharf/kubernetes-v1.20.2/bin/kubectl";

#[tokio::main]
async fn main() -> ExitCode {
    match AssertUnwindSafe(tour()).catch_unwind().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => {
            eprintln!(
                "\nthe demo stopped: the message above names the step that failed and why.\n\
                 Logs of the local cluster: {}/logs; run `cargo xtask demo` again once fixed.",
                state_dir().display()
            );
            ExitCode::FAILURE
        }
    }
}

async fn tour() {
    let narrator = Narrator::new();
    narrator.step(
        "starting the local cluster: etcd, kube-apiserver and kube-controller-manager on \
         loopback, and a real node (containerd, kubelet, kube-proxy on the bridge cni0). \
         The first run builds Kubernetes from Debian's source (about 7 minutes).",
    );
    let kubeconfig = ensure_up();
    node::ensure_node(&[]);
    let client = Client::try_from(admin_config(&kubeconfig).await)
        .unwrap_or_else(|err| panic!("a client for the local cluster: {err}"));
    fresh_namespace(&client, &narrator).await;

    let mut options = mirror_options("hostess");
    options.values["registryController"] = registry::chart_values()["registryController"].take();
    let wharf = Wharf::install(client.clone(), NAMESPACE, RELEASE, options, &narrator).await;

    narrator.step("part 1: a pull-through cache of a registry, used by the node's kubelet");
    let upstream = UpstreamRegistry::start(NAMESPACE);
    let mirror = hostess_pull_through(&wharf, &upstream, &narrator).await;
    narrator.step(format!(
        "leaving RegistryMirror {EXPLORE_MIRROR} running for you to explore"
    ));
    create_ready_mirror(&wharf, EXPLORE_MIRROR, &upstream, &narrator).await;

    narrator.step("part 2: a private registry with rotating push and pull Secrets");
    let (private_registry, registry_report) = registry::tour(&wharf, &narrator).await;

    let metrics = controller_metrics(&client).await;
    summary(&narrator, &mirror, &registry_report, &metrics);
    // Its hosts line goes with it: the registry's name resolves only while a test or tour runs.
    drop(private_registry);
}

/// Removes what an earlier tour left (its mirrors are cluster-scoped, its release holds
/// ClusterRoles) and creates the namespace afresh.
async fn fresh_namespace(client: &Client, narrator: &Narrator) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(NAMESPACE).await.ok().flatten().is_some() {
        narrator.step(format!(
            "removing the previous tour's namespace {NAMESPACE}"
        ));
        let previous = Wharf {
            client: client.clone(),
            namespace: NAMESPACE.to_owned(),
            release: RELEASE.to_owned(),
        };
        delete_release_mirrors(&previous).await;
        registry::cleanup(client, NAMESPACE).await;
        previous.uninstall().await;
        let _gone = namespaces.delete(NAMESPACE, &DeleteParams::default()).await;
        for _ in 0..240 {
            if namespaces.get_opt(NAMESPACE).await.ok().flatten().is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).expect("a Namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|err| panic!("creating namespace {NAMESPACE}: {err}"));
}

/// The metrics Service of the mirror-controller, reached from the host (the Service CIDR is
/// routed to the node's bridge), and a few of its wharf figures.
async fn controller_metrics(client: &Client) -> (String, Vec<String>) {
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let name = format!("{RELEASE}-mirror-controller-metrics");
    let Some(ip) = services
        .get_opt(&name)
        .await
        .ok()
        .flatten()
        .and_then(|s| s.spec.and_then(|s| s.cluster_ip))
    else {
        return (format!("(Service {name} not found)"), Vec::new());
    };
    let url = format!("http://{ip}:8080/metrics");
    let output = Command::new("curl")
        .args(["--silent", "--max-time", "5", &url])
        .output();
    let lines = output
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
        .lines()
        .filter(|line| line.starts_with("wharf_") && !line.contains("_bucket"))
        .take(6)
        .map(str::to_owned)
        .collect();
    (url, lines)
}

fn summary(
    narrator: &Narrator,
    mirror: &MirrorReport,
    registry: &registry::RegistryReport,
    (metrics_url, metrics): &(String, Vec<String>),
) {
    let seconds = |d: Duration| d.as_secs_f64();
    let speedup = seconds(mirror.cold.duration) / seconds(mirror.warm.duration).max(0.001);
    println!();
    println!(
        "wharf demo: done in {:.0} s",
        narrator.elapsed().as_secs_f64()
    );
    println!();
    println!("  pull-through mirror of {}", mirror.image);
    println!(
        "    cold pull   {:>6.2} s   {} blobs from the upstream, through the mirror ({} cache misses)",
        seconds(mirror.cold.duration),
        mirror.cold.upstream_blob_gets,
        mirror.cold.mirror_misses
    );
    println!(
        "    warm pull   {:>6.2} s   {} blobs from the upstream, {} cache hits ({speedup:.1}× the cold pull's speed)",
        seconds(mirror.warm.duration),
        mirror.warm.upstream_blob_gets,
        mirror.warm.mirror_hits
    );
    println!(
        "    no mirror   {:>6.2} s   after `kubectl delete registrymirror`, the node pulled from the upstream itself",
        seconds(mirror.fallback.duration)
    );
    println!();
    println!("  private registry {}", registry.hostname);
    println!(
        "    push        {:>6.2} s   {} with the rotating login of Secret {}",
        seconds(registry.push_time),
        registry.image,
        registry.push_secret
    );
    println!(
        "    refused     the pull login may not push: {}",
        gist(&registry.refused_push)
    );
    println!(
        "    pod         {:>6.2} s   {} ran it with imagePullSecrets {}",
        seconds(registry.pod_start),
        registry.pod,
        registry.pull_secret
    );
    println!(
        "    refused     without the pull Secret: {}",
        gist(&registry.refused_pull)
    );
    println!();
    println!("Explore:");
    println!("  export KUBECONFIG={}", kubeconfig_path().display());
    println!("  {KUBECTL} get registrymirrors,imageregistries");
    println!("  {KUBECTL} -n {NAMESPACE} get imagepushsecrets,imagepullsecrets,pods,services");
    println!(
        "  cat /etc/containerd/certs.d/*/hosts.toml   # what hostess-agent wrote for the node"
    );
    println!("  curl -s {metrics_url} | grep ^wharf_       # mirror-controller's metrics");
    for line in metrics {
        println!("      {line}");
    }
    println!(
        "  RegistryMirror {EXPLORE_MIRROR} keeps running; its upstream stopped with the demo, so it \
         serves only what it has cached."
    );
    println!();
    println!("Tear down:");
    println!(
        "  cargo xtask cluster down   # stops the node (its pods first) and the control plane"
    );
    println!("  `cargo xtask demo` again replaces this tour's namespace {NAMESPACE} and release.");
}

/// The part of a client's error that says why: the registry's own words, without the client's
/// wrapping ("level=fatal msg=…", "rpc error: …").
fn gist(message: &str) -> &str {
    let start = ["server message: ", "denied: "]
        .iter()
        .find_map(|marker| {
            message.find(marker).map(|at| {
                if *marker == "denied: " {
                    at
                } else {
                    at + marker.len()
                }
            })
        })
        .unwrap_or(0);
    let rest = &message[start..];
    let end = rest
        .find("\\n")
        .or_else(|| rest.find('\n'))
        .unwrap_or(rest.len());
    rest[..end].trim()
}

#[cfg(test)]
mod tests {
    #[test]
    fn gist_keeps_the_registrys_words() {
        let push = r#"time="x" level=fatal msg="writing blob: errors:\ndenied: requested access to the resource is denied\nunauthorized: authentication required\n""#;
        assert_eq!(
            super::gist(push),
            "denied: requested access to the resource is denied"
        );
        let pull = "rpc error: code = Unknown desc = failed to pull: server message: insufficient_scope: authorization failed";
        assert_eq!(
            super::gist(pull),
            "insufficient_scope: authorization failed"
        );
        assert_eq!(super::gist("plain"), "plain");
    }

    #[test]
    fn namespace_and_release_are_valid_names() {
        for name in [super::NAMESPACE, super::RELEASE, super::EXPLORE_MIRROR] {
            assert!(
                name.len() <= 63
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
        }
    }
}
