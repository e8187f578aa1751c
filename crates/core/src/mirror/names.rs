//! Object names, labels and annotation keys of a RegistryMirror's children, as the seed named them.

use std::collections::BTreeMap;

/// Label every child carries (the seed's `app: docker-registry`).
pub const APP_LABEL: &str = "app";
/// Value of [`APP_LABEL`].
pub const APP_VALUE: &str = "docker-registry";
/// Label naming the RegistryMirror a child belongs to (the seed's `mirror: <n>`).
pub const MIRROR_LABEL: &str = "mirror";
/// Pod label telling the mirror's nginx pods from its node agents.
pub const COMPONENT_LABEL: &str = "component";
/// [`COMPONENT_LABEL`] of the nginx pods.
pub const COMPONENT_REGISTRY: &str = "registry";
/// [`COMPONENT_LABEL`] of the node-agent pods (the seed's name for them).
pub const COMPONENT_AGENT: &str = "hostess-certificate";

/// Pod-template annotation holding the hash of everything a pod reads only when it starts
/// (nginx config, certificates, CA bundle): a change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "wharf.dev/config-hash";
/// Finalizer that removes the mirror's line from `imageswap-maps` before the mirror goes away.
pub const IMAGESWAP_FINALIZER: &str = "wharf.dev/imageswap-map";

/// Name of the imageswap webhook's ConfigMap (services mode).
pub const IMAGESWAP_CONFIG_MAP: &str = "imageswap-maps";
/// Key of that ConfigMap holding the maps.
pub const IMAGESWAP_MAPS_KEY: &str = "maps";

/// Key of the nginx config in the config Secret (the seed's `default.conf`).
pub const NGINX_CONFIG_KEY: &str = "default.conf";
/// Key of the optional CA bundle in the CA_CERTIFICATE_BUNDLE ConfigMap.
pub const CA_BUNDLE_KEY: &str = "ca-certificates.crt";

/// Keys of TLS material: in the user's DOCKER_CERTIFICATE_SECRET, or generated, in the config
/// Secret.
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";
pub const CA_CERT_KEY: &str = "ca.crt";
/// The generated CA's private key. It stays in the mirror's own Secret but is never mounted
/// (volumes project only the keys they need): nodes trust this CA only for this mirror's
/// hosts, so it is no more powerful than the server key kept next to it.
pub const CA_KEY_KEY: &str = "ca.key";

/// Name of the volume claim template of the cache (the seed's `image-store`).
pub const IMAGE_STORE_VOLUME: &str = "image-store";

/// Service `registry-mirror-<n>` (also the StatefulSet's name).
pub fn service_name(mirror: &str) -> String {
    format!("registry-mirror-{mirror}")
}

/// Headless Service `registry-mirror-<n>-headless`, the StatefulSet's `serviceName`.
pub fn headless_service_name(mirror: &str) -> String {
    format!("registry-mirror-{mirror}-headless")
}

/// StatefulSet `registry-mirror-<n>` running nginx.
pub fn statefulset_name(mirror: &str) -> String {
    service_name(mirror)
}

/// DaemonSet `registry-mirror-<n>-utils` running hostess-agent on every node.
pub fn daemonset_name(mirror: &str) -> String {
    format!("registry-mirror-{mirror}-utils")
}

/// Secret `registry-mirror-<n>-secret` holding the nginx config.
pub fn config_secret_name(mirror: &str) -> String {
    format!("registry-mirror-{mirror}-secret")
}

/// The labels every child of mirror `<n>` carries and is selected by: `app`, `mirror`.
pub fn mirror_labels(mirror: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (APP_LABEL.to_owned(), APP_VALUE.to_owned()),
        (MIRROR_LABEL.to_owned(), mirror.to_owned()),
    ])
}

/// The labels of one kind of pod of mirror `<n>`: the mirror's labels plus `component`.
pub fn pod_selector_labels(mirror: &str, component: &str) -> BTreeMap<String, String> {
    let mut labels = mirror_labels(mirror);
    labels.insert(COMPONENT_LABEL.to_owned(), component.to_owned());
    labels
}

/// Label selector matching every child of every mirror (`app=docker-registry,mirror`).
pub fn children_selector() -> String {
    format!("{APP_LABEL}={APP_VALUE},{MIRROR_LABEL}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_seed() {
        assert_eq!(service_name("docker"), "registry-mirror-docker");
        assert_eq!(
            headless_service_name("docker"),
            "registry-mirror-docker-headless"
        );
        assert_eq!(statefulset_name("docker"), "registry-mirror-docker");
        assert_eq!(daemonset_name("docker"), "registry-mirror-docker-utils");
        assert_eq!(
            config_secret_name("docker"),
            "registry-mirror-docker-secret"
        );
    }

    #[test]
    fn labels_follow_the_seed() {
        let labels = mirror_labels("quay");
        assert_eq!(
            labels.get("app").map(String::as_str),
            Some("docker-registry")
        );
        assert_eq!(labels.get("mirror").map(String::as_str), Some("quay"));
        assert_eq!(labels.len(), 2);
        let pod = pod_selector_labels("quay", COMPONENT_REGISTRY);
        assert_eq!(pod.get("component").map(String::as_str), Some("registry"));
        assert_eq!(children_selector(), "app=docker-registry,mirror");
    }
}
