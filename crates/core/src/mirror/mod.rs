//! RegistryMirror's children as pure functions of (mirror, settings): names and labels, settings
//! parsing, validation, and a builder per child object, each returning a k8s-openapi struct.

mod config;
mod daemonset;
mod imageswap;
mod immutable;
pub mod names;
mod quantity;
mod services;
mod settings;
mod statefulset;
mod tls;
mod validate;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::LocalObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub use config::{build_config_secret, content_hash, nginx_config};
pub use daemonset::{AgentCa, build_daemonset};
pub use imageswap::{MapEdit, edit_maps, has_line, mirror_line};
pub use immutable::{align_statefulset_quantities, immutable_change};
pub use quantity::{QuantityError, parse_quantity, same_quantity};
pub use services::{PORT_NAME, SERVICE_PORT, build_headless_service, build_service};
pub use settings::{
    AddressingScheme, AddressingSchemeError, DEFAULT_AGENT_IMAGE, DEFAULT_AGENT_SERVICE_ACCOUNT,
    DEFAULT_CLUSTER_DOMAIN, DEFAULT_NGINX_IMAGE, DEFAULT_REGISTRY, MirrorSettings, SettingError,
    effective_registry, image_reference, is_dns_subdomain, parse_image, parse_labels,
    parse_secret_list, parse_tolerations,
};
pub use statefulset::{NGINX_UID, REPLICAS, build_statefulset};
pub use tls::{
    CA_VALIDITY, RENEW_AFTER, SERVER_VALIDITY, TlsMaterial, TlsPlan, issue, plan_tls,
    read_material, serving_sans, tls_data,
};
pub use validate::{
    CACHE_SHARE_OF_VOLUME, DEFAULT_STORAGE, HostClaim, MAX_MIRROR_NAME_LEN, SpecProblem,
    ValidMirror, check_host_port, masquerade_taken_by, split_host_port, validate,
};

/// Metadata of a child: name, the controller's namespace, the mirror's labels, and the
/// controller ownerReference that lets Kubernetes garbage-collect it with the mirror.
fn child_metadata(mirror: &ValidMirror, settings: &MirrorSettings, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(settings.namespace.clone()),
        labels: Some(names::mirror_labels(&mirror.name)),
        owner_references: Some(vec![mirror.owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// Metadata of the StatefulSet and DaemonSet: also SS_DS_LABELS, which never override ours.
fn workload_metadata(mirror: &ValidMirror, settings: &MirrorSettings, name: String) -> ObjectMeta {
    let mut metadata = child_metadata(mirror, settings, name);
    metadata.labels = Some(merge_labels(
        &settings.workload_labels,
        names::mirror_labels(&mirror.name),
    ));
    metadata
}

/// A pod template's metadata: the pod labels and the hash whose change rolls the pods.
fn pod_template_metadata(
    settings: &MirrorSettings,
    selector: BTreeMap<String, String>,
    hash: &str,
) -> ObjectMeta {
    ObjectMeta {
        labels: Some(pod_labels(settings, selector)),
        annotations: Some(BTreeMap::from([(
            names::CONFIG_HASH_ANNOTATION.into(),
            hash.to_owned(),
        )])),
        ..ObjectMeta::default()
    }
}

/// Pod labels: SS_DS_TEMPLATE_LABELS under the selector labels (the selector must keep matching).
fn pod_labels(
    settings: &MirrorSettings,
    selector: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    merge_labels(&settings.pod_labels, selector)
}

fn merge_labels(
    extra: &BTreeMap<String, String>,
    ours: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = extra.clone();
    labels.extend(ours);
    labels
}

/// The directory of an in-container path (where its volume is mounted).
fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(dir, _)| dir)
}

/// The file name of an in-container path (the key it is projected as).
fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

fn pull_secrets(settings: &MirrorSettings) -> Option<Vec<LocalObjectReference>> {
    (!settings.image_pull_secrets.is_empty()).then(|| {
        settings
            .image_pull_secrets
            .iter()
            .map(|name| LocalObjectReference { name: name.clone() })
            .collect()
    })
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::crd::{RegistryMirror, RegistryMirrorSpec};

    pub fn settings() -> MirrorSettings {
        MirrorSettings::with_namespace("mirrors")
    }

    pub fn mirror(name: &str) -> RegistryMirror {
        let mut mirror = RegistryMirror::new(
            name,
            RegistryMirrorSpec {
                upstream_url: "hub.docker.io".into(),
                masquerade_url: None,
                credentials_secret: None,
                volume_claim_template: None,
                priority_class: None,
                tag_ttl_seconds: None,
            },
        );
        mirror.metadata.uid = Some(format!("uid-{name}"));
        mirror
    }

    pub fn valid_mirror(name: &str) -> ValidMirror {
        validate(&mirror(name)).expect("a valid test mirror")
    }

    /// The StatefulSet of mirror `docker`, its TLS from Secret `registry-mirror-docker-tls`.
    pub fn statefulset() -> k8s_openapi::api::apps::v1::StatefulSet {
        build_statefulset(
            &valid_mirror("docker"),
            &settings(),
            "registry-mirror-docker-tls",
            "h1",
        )
    }
}
