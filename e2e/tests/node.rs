//! The local node is real: pods run on it, a StatefulSet's Service answers from both of its pods
//! (from the host and from a pod), and wharf's own images run there — as non-root, and in-cluster
//! against the API server.
//!
//! The test brings the node up itself with `xtask/scripts/cluster.sh up --node` (idempotent: well
//! under a second when the node already runs; on a control plane started without the node it
//! restarts kube-apiserver once with the node's flags), then builds and imports the images it
//! runs with `cargo xtask images --debug --import …` (debug builds, which `cargo test` has just
//! compiled: seconds instead of a release build's minutes). No variable switches this off: the
//! node needs root (containerd, iptables, a bridge), as CI and the dev machines have.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, LogParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf_e2e::TestEnv;
use wharf_e2e::node::wharf_image as image;

/// The node's sandbox image (lib-node.sh), a static binary: the smallest pod there is.
const PAUSE_IMAGE: &str = "docker.io/wharf/pause:3.4";
/// The images this test runs, as `cargo xtask images` names them (tag: the chart's `dev`).
const IMAGES: [&str; 3] = ["busybox", "registry-auth", "secret-rotator"];
/// A pod here starts in 1-3 s; the margin is for a machine busy compiling.
const POD_TIMEOUT: Duration = Duration::from_secs(120);

/// Starts (or finds) the node and imports the test's images.
fn node() {
    wharf_e2e::node::ensure_node(&IMAGES);
}

fn object<K: DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("a valid object")
}

async fn create<K>(env: &TestEnv, value: Value) -> K
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + serde::Serialize,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &object(value))
        .await
        .unwrap_or_else(|err| panic!("creating a {}: {err}", K::kind(&K::DynamicType::default())))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The security settings every test pod runs with, as the chart runs wharf.
fn restricted() -> Value {
    json!({
        "runAsNonRoot": true,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
    })
}

#[tokio::test]
async fn a_pod_of_a_static_binary_runs() {
    node();
    let env = TestEnv::with_pods("node-static-pod").await;
    create::<Pod>(
        &env,
        json!({
            "metadata": {"name": "pause"},
            "spec": {
                "containers": [{"name": "pause", "image": PAUSE_IMAGE, "imagePullPolicy": "Never",
                    "securityContext": restricted()}],
                "terminationGracePeriodSeconds": 1,
            }
        }),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    let pod = env
        .wait_for(&pods, "pause", POD_TIMEOUT, |p| phase(p) == "Running")
        .await;
    let ip = pod.status.and_then(|s| s.pod_ip).unwrap_or_default();
    assert!(
        ip.starts_with("10.244.0."),
        "pod IP {ip} is not on the node's bridge"
    );
}

#[tokio::test]
async fn a_statefulset_service_answers_from_both_pods() {
    node();
    let env = TestEnv::with_pods("node-statefulset").await;
    let web_server = "mkdir -p /tmp/www && hostname > /tmp/www/index.html \
                      && exec httpd -f -p 8080 -h /tmp/www";
    let service: Service = create(
        &env,
        json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
        }),
    )
    .await;
    create::<Service>(
        &env,
        json!({
            "metadata": {"name": "web-headless"},
            "spec": {"clusterIP": "None", "selector": {"app": "web"},
                "ports": [{"port": 80, "targetPort": 8080}]}
        }),
    )
    .await;
    create::<StatefulSet>(
        &env,
        json!({
            "metadata": {"name": "web"},
            "spec": {
                "serviceName": "web-headless",
                "replicas": 2,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{
                            "name": "web", "image": image("busybox"), "imagePullPolicy": "Never",
                            "command": ["sh", "-c", web_server],
                            "securityContext": restricted(),
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": 8080},
                                "periodSeconds": 1},
                        }],
                        "volumes": [{"name": "tmp", "emptyDir": {}}],
                    }
                }
            }
        }),
    )
    .await;
    let statefulsets: Api<StatefulSet> = Api::namespaced(env.client.clone(), &env.namespace);
    env.wait_for(&statefulsets, "web", POD_TIMEOUT, |s| {
        s.status.as_ref().and_then(|s| s.ready_replicas) == Some(2)
    })
    .await;
    let cluster_ip = service
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("the Service has a ClusterIP");

    // From the host: kube-proxy's OUTPUT rules, the Service CIDR routed to the bridge.
    let mut answered = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while answered.len() < 2 && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(body)) =
            tokio::time::timeout(Duration::from_secs(2), http_get(&cluster_ip, 80)).await
        {
            answered.insert(body.trim().to_owned());
        }
    }
    assert_eq!(
        answered,
        BTreeSet::from(["web-0".to_owned(), "web-1".to_owned()]),
        "the Service {cluster_ip}:80 did not answer from both pods\n{}",
        env.dump().await
    );

    // From a pod: forwarded through the node and back onto the bridge. (`timeout`, not
    // `wget -T`: Debian's static busybox 1.35 crashes on -T.)
    let client_script = format!(
        "seen=; for i in $(seq 1 100); do \
           h=$(timeout 3 wget -q -O - http://{cluster_ip}/) && case \" $seen \" in *\" $h \"*) ;; *) seen=\"$seen $h\";; esac; \
           [ $(echo $seen | wc -w) -ge 2 ] && {{ echo \"answered by:$seen\"; exit 0; }}; \
         done; echo \"only:$seen\"; exit 1"
    );
    create::<Pod>(
        &env,
        json!({
            "metadata": {"name": "client"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "client", "image": image("busybox"),
                    "imagePullPolicy": "Never", "command": ["sh", "-c", client_script],
                    "securityContext": restricted()}],
            }
        }),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    env.wait_for(&pods, "client", POD_TIMEOUT, |p| {
        matches!(phase(p), "Succeeded" | "Failed")
    })
    .await;
    let log = pods
        .logs("client", &LogParams::default())
        .await
        .unwrap_or_default();
    let pod = pods.get("client").await.expect("client pod");
    assert_eq!(phase(&pod), "Succeeded", "pod → Service failed: {log}");
    assert!(log.contains("web-0") && log.contains("web-1"), "{log}");
}

#[tokio::test]
async fn wharf_images_run_as_non_root_and_reach_the_api_server() {
    node();
    let env = TestEnv::with_pods("node-wharf-images").await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);

    // The binary and the libraries ldd found are all there, for the non-root user.
    create::<Pod>(
        &env,
        json!({
            "metadata": {"name": "registry-auth-help"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "registry-auth", "image": image("registry-auth"),
                    "imagePullPolicy": "Never", "args": ["--help"],
                    "securityContext": restricted()}],
            }
        }),
    )
    .await;
    let pod = env
        .wait_for(&pods, "registry-auth-help", POD_TIMEOUT, |p| {
            matches!(phase(p), "Succeeded" | "Failed")
        })
        .await;
    let log = pods
        .logs("registry-auth-help", &LogParams::default())
        .await
        .expect("kubectl logs works: the API server reaches the kubelet");
    assert_eq!(
        phase(&pod),
        "Succeeded",
        "registry-auth --help failed: {log}"
    );
    assert!(log.contains("Usage"), "{log}");

    // A controller in a pod: ServiceAccount token, the `kubernetes` Service, TLS to the API
    // server, and a Lease (leader election) before /readyz turns on.
    let service_account: ServiceAccount =
        create(&env, json!({"metadata": {"name": "secret-rotator"}})).await;
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    let namespace = namespaces
        .get(&env.namespace)
        .await
        .expect("test namespace");
    let bindings: Api<ClusterRoleBinding> = Api::all(env.client.clone());
    bindings
        .create(
            &PostParams::default(),
            &object(json!({
                // Owned by the test namespace: the garbage collector deletes it with it.
                "metadata": {"name": format!("{}-secret-rotator", env.namespace),
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Namespace",
                        "name": env.namespace, "uid": namespace.uid().unwrap_or_default()}]},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": service_account.name_any(),
                    "namespace": env.namespace}],
            })),
        )
        .await
        .expect("creating the ClusterRoleBinding");
    create::<Deployment>(
        &env,
        json!({
            "metadata": {"name": "secret-rotator"},
            "spec": {
                "selector": {"matchLabels": {"app": "secret-rotator"}},
                "template": {
                    "metadata": {"labels": {"app": "secret-rotator"}},
                    "spec": {
                        "serviceAccountName": "secret-rotator",
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{
                            "name": "secret-rotator", "image": image("secret-rotator"),
                            "imagePullPolicy": "Never",
                            "env": [
                                {"name": "LEADER_ELECTION", "value": "true"},
                                {"name": "WATCH_NAMESPACE", "value": env.namespace},
                                {"name": "POD_NAMESPACE",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                                {"name": "POD_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            ],
                            "securityContext": restricted(),
                            "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080},
                                "periodSeconds": 1},
                        }],
                    }
                }
            }
        }),
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    env.wait_for(&deployments, "secret-rotator", POD_TIMEOUT, |d| {
        d.status.as_ref().and_then(|s| s.ready_replicas) == Some(1)
    })
    .await;
    let ready = pods
        .list(&kube::api::ListParams::default().labels("app=secret-rotator"))
        .await
        .expect("listing the controller's pods");
    assert!(
        ready.items.iter().any(pod_ready),
        "no Ready secret-rotator pod"
    );
}

/// `GET /` over plain HTTP/1.0; the body.
async fn http_get(host: &str, port: u16) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
    stream
        .write_all(format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}
