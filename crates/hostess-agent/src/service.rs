//! Follows the mirror's Service with a watch on that one object and publishes its ClusterIP.

use std::net::IpAddr;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client};
use tokio::sync::watch;

/// What the agent knows about the Service: `None` until the first list completes, then
/// `Some(None)` while it does not exist (or has no usable ClusterIP) and `Some(Some(ip))`.
pub type ServiceAddress = Option<Option<IpAddr>>;

/// The ClusterIP of `service`, if it has a usable one.
pub fn cluster_ip(service: &Service) -> Option<IpAddr> {
    let spec = service.spec.as_ref()?;
    let ip = spec.cluster_ip.as_deref()?;
    match ip.parse() {
        Ok(address) => Some(address),
        Err(_) => {
            tracing::warn!(
                service = service.metadata.name.as_deref().unwrap_or_default(),
                cluster_ip = ip,
                "the mirror's Service has no ClusterIP (headless?); nodes cannot reach the mirror through it"
            );
            None
        }
    }
}

/// Watches Service `name` in `namespace` forever (retrying with backoff) and sends its address
/// on `sender` whenever it changes.
pub async fn follow(
    client: Client,
    namespace: String,
    name: String,
    sender: watch::Sender<ServiceAddress>,
) {
    let api: Api<Service> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut listed: Option<IpAddr> = None;
    let publish = |address: Option<IpAddr>| {
        sender.send_if_modified(|current| {
            let changed = *current != Some(address);
            if changed {
                match address {
                    Some(ip) => tracing::info!(%namespace, service = %name, cluster_ip = %ip, "the mirror's Service is at this address"),
                    None => tracing::info!(%namespace, service = %name, "the mirror's Service does not exist"),
                }
                *current = Some(address);
            }
            changed
        });
    };
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => listed = None,
            Ok(Event::InitApply(service)) if is_named(&service, &name) => {
                listed = cluster_ip(&service);
            }
            Ok(Event::InitDone) => publish(listed),
            Ok(Event::Apply(service)) if is_named(&service, &name) => {
                publish(cluster_ip(&service));
            }
            Ok(Event::Delete(service)) if is_named(&service, &name) => publish(None),
            Ok(_) => {}
            Err(err) => tracing::warn!(
                %namespace,
                service = %name,
                error = %err,
                "cannot watch the mirror's Service (retrying): the agent's ServiceAccount needs get, list and watch on services in this namespace"
            ),
        }
    }
}

fn is_named(service: &Service, name: &str) -> bool {
    service.metadata.name.as_deref() == Some(name)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ServiceSpec;

    use super::*;

    fn service(ip: Option<&str>) -> Service {
        Service {
            metadata: kube::api::ObjectMeta {
                name: Some("registry-mirror-docker".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: ip.map(str::to_owned),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn reads_the_cluster_ip() {
        assert_eq!(
            cluster_ip(&service(Some("10.96.0.5"))),
            Some("10.96.0.5".parse().expect("IP"))
        );
        assert_eq!(
            cluster_ip(&service(Some("fd00::5"))),
            Some("fd00::5".parse().expect("IP"))
        );
        assert_eq!(cluster_ip(&service(Some("None"))), None);
        assert_eq!(cluster_ip(&service(None)), None);
        assert!(is_named(&service(None), "registry-mirror-docker"));
    }
}
