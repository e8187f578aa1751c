//! Small Kubernetes helpers of the registry scenario: create from JSON, wait for a state, and
//! wait until a Service answers from this machine.

use std::time::{Duration, Instant};

use kube::api::{Api, ListParams, PostParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::SECRET_TIMEOUT;

/// Waits until the Service answers on `ports` from this machine: the registry's pod is Ready
/// before kube-proxy has written the rules that lead to it (until then connections are refused).
pub(super) async fn wait_reachable(cluster_ip: &str, ports: &[u16]) {
    let deadline = Instant::now() + SECRET_TIMEOUT;
    for &port in ports {
        loop {
            let attempt = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect((cluster_ip, port)),
            )
            .await;
            match attempt {
                Ok(Ok(_connected)) => break,
                failed => {
                    assert!(
                        Instant::now() < deadline,
                        "the registry's Service {cluster_ip}:{port} does not answer from this machine \
                         after {SECRET_TIMEOUT:?} ({failed:?}): is kube-proxy running (cluster.sh up --node)?"
                    );
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    }
}

pub(super) fn ready(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

pub(super) async fn count<K>(api: &Api<K>) -> usize
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned,
{
    api.list(&ListParams::default())
        .await
        .map(|l| l.items.len())
        .unwrap_or(usize::MAX / 4)
}

/// Creates a namespaced object given as JSON (with apiVersion and kind).
pub(super) async fn create(client: &Client, namespace: &str, object: Value) {
    let kind = object["kind"].as_str().unwrap_or_default().to_owned();
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (group, version) = match object["apiVersion"].as_str().unwrap_or_default() {
        api_version @ "v1" => ("", api_version),
        api_version => api_version.split_once('/').unwrap_or(("", api_version)),
    };
    let resource = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        group, version, &kind,
    ));
    let api: Api<kube::core::DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &resource);
    let object: kube::core::DynamicObject = serde_json::from_value(object)
        .unwrap_or_else(|err| panic!("{kind} {name} is not an object: {err}"));
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|err| panic!("creating {kind} {namespace}/{name}: {err}"));
}
