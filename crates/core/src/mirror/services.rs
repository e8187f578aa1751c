//! The mirror's two Services: `registry-mirror-<n>` (ClusterIP, what nodes reach) and
//! `registry-mirror-<n>-headless` (the StatefulSet's governing Service).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::{COMPONENT_REGISTRY, headless_service_name, pod_selector_labels, service_name};
use super::{ValidMirror, child_metadata};
use crate::mirror::MirrorSettings;

/// Port the Service exposes (HTTPS, as registries are addressed without a port).
pub const SERVICE_PORT: i32 = 443;
/// Name of that port and of the nginx container port it targets.
pub const PORT_NAME: &str = "https";

/// Service `registry-mirror-<n>`: port 443 `https` → the nginx pods' `https` port.
pub fn build_service(mirror: &ValidMirror, settings: &MirrorSettings) -> Service {
    Service {
        metadata: child_metadata(mirror, settings, service_name(&mirror.name)),
        spec: Some(service_spec(mirror, None)),
        status: None,
    }
}

/// Service `registry-mirror-<n>-headless`: the same, without a ClusterIP.
pub fn build_headless_service(mirror: &ValidMirror, settings: &MirrorSettings) -> Service {
    Service {
        metadata: child_metadata(mirror, settings, headless_service_name(&mirror.name)),
        spec: Some(service_spec(mirror, Some("None"))),
        status: None,
    }
}

fn service_spec(mirror: &ValidMirror, cluster_ip: Option<&str>) -> ServiceSpec {
    ServiceSpec {
        type_: Some("ClusterIP".into()),
        cluster_ip: cluster_ip.map(str::to_owned),
        // Each mirror pod has a cache of its own: a node that keeps pulling from the pod whose
        // cache it warmed pulls an image again without any upstream traffic.
        session_affinity: Some("ClientIP".into()),
        // The nginx pods only: the node agents share the `app`/`mirror` labels.
        selector: Some(pod_selector_labels(&mirror.name, COMPONENT_REGISTRY)),
        ports: Some(vec![ServicePort {
            name: Some(PORT_NAME.into()),
            port: SERVICE_PORT,
            target_port: Some(IntOrString::String(PORT_NAME.into())),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        }]),
        ..ServiceSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::test_support::{settings, valid_mirror};

    #[test]
    fn the_service_follows_the_seed() {
        let service = build_service(&valid_mirror("docker"), &settings());
        assert_eq!(
            service.metadata.name.as_deref(),
            Some("registry-mirror-docker")
        );
        assert_eq!(service.metadata.namespace.as_deref(), Some("mirrors"));
        let labels = service.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["app"], "docker-registry");
        assert_eq!(labels["mirror"], "docker");
        let owner = &service.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(owner.kind, "RegistryMirror");
        assert_eq!(owner.controller, Some(true));
        let spec = service.spec.expect("spec");
        assert_eq!(spec.cluster_ip, None);
        assert_eq!(spec.session_affinity.as_deref(), Some("ClientIP"));
        let selector = spec.selector.expect("selector");
        assert_eq!(selector["component"], "registry");
        assert_eq!(selector["mirror"], "docker");
        let port = &spec.ports.expect("ports")[0];
        assert_eq!(port.port, 443);
        assert_eq!(port.name.as_deref(), Some("https"));
        assert_eq!(port.target_port, Some(IntOrString::String("https".into())));
    }

    #[test]
    fn the_headless_service_has_no_cluster_ip() {
        let service = build_headless_service(&valid_mirror("docker"), &settings());
        assert_eq!(
            service.metadata.name.as_deref(),
            Some("registry-mirror-docker-headless")
        );
        assert_eq!(
            service.spec.expect("spec").cluster_ip.as_deref(),
            Some("None")
        );
    }

    #[test]
    fn workload_labels_do_not_reach_services() {
        let mut settings = settings();
        settings
            .workload_labels
            .insert("team".into(), "infra".into());
        let service = build_service(&valid_mirror("docker"), &settings);
        assert!(
            !service
                .metadata
                .labels
                .expect("labels")
                .contains_key("team")
        );
    }
}
