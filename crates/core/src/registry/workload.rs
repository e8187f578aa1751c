//! The registry's workload: StatefulSet `<name>` (the distribution registry serving TLS on 5000
//! and registry-auth on 5001), Service `<name>` (443 and 5001), the image store PVC and the
//! registry config Secret.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    Secret, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::{ImageRegistrySpec, RegistryServiceType, VolumeAccessMode};

use super::auth_env::{self, TLS_MOUNT_DIR, TOKEN_MOUNT_DIR};
use super::certificates::{TLS_CERT_KEY, TLS_KEY_KEY};
use super::config::{RegistryConfig, render};
use super::{labels, names};

/// Container port of the registry (TLS).
pub const REGISTRY_PORT: i32 = 5000;
/// Container port of registry-auth's metrics and probes.
pub const AUTH_METRICS_PORT: i32 = 8080;
/// Where the registry's config Secret is mounted.
pub const CONFIG_MOUNT_DIR: &str = "/etc/wharf/registry";
/// Key of the registry config in its Secret.
pub const CONFIG_KEY: &str = "config.yml";
/// Key of the shared upload-state secret in the config Secret (kept across reconciles).
pub const HTTP_SECRET_KEY: &str = "httpSecret";
/// The image store inside the registry container.
pub const STORAGE_DIR: &str = "/var/lib/registry";
/// Default size of the image store claim when the ImageRegistry asks for none.
pub const DEFAULT_STORAGE: &str = "8Gi";
/// Pod template annotations: a change rolls the pods.
pub const TLS_HASH_ANNOTATION: &str = "registry.wharf.dev/tls-hash";
pub const TOKEN_HASH_ANNOTATION: &str = "registry.wharf.dev/token-ca-hash";
pub const CONFIG_HASH_ANNOTATION: &str = "registry.wharf.dev/config-hash";
/// The Service annotation external-dns reads (as the original set it).
pub const EXTERNAL_DNS_ANNOTATION: &str = "external-dns.alpha.kubernetes.io/hostname";

/// What the workload of one ImageRegistry is built from.
#[derive(Clone, Debug)]
pub struct Workload<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub spec: &'a ImageRegistrySpec,
    pub hostname: &'a str,
    pub owner: OwnerReference,
    pub registry_image: &'a str,
    pub auth_image: &'a str,
    /// Secret with the serving certificate (`tls.crt`, `tls.key`).
    pub tls_secret: &'a str,
    /// Secret with the token-signing certificate and key.
    pub token_secret: &'a str,
    /// Digests of what the pods read at start.
    pub tls_hash: &'a str,
    pub token_hash: &'a str,
    pub config_hash: &'a str,
}

impl Workload<'_> {
    fn metadata(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.to_owned()),
            labels: Some(labels::labels(self.name)),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// The registry's `config.yml` as the pods see it (paths inside the registry container).
pub fn registry_config(
    name: &str,
    namespace: &str,
    hostname: &str,
    http_secret: &str,
) -> RegistryConfig {
    RegistryConfig {
        listen_addr: format!(":{REGISTRY_PORT}"),
        storage_dir: STORAGE_DIR.to_owned(),
        tls: Some((
            format!("{TLS_MOUNT_DIR}/{TLS_CERT_KEY}"),
            format!("{TLS_MOUNT_DIR}/{TLS_KEY_KEY}"),
        )),
        realm: names::token_realm(hostname),
        issuer: names::token_issuer(name, namespace),
        service: names::token_service(hostname),
        root_cert_bundle: format!("{TOKEN_MOUNT_DIR}/{TLS_CERT_KEY}"),
        http_secret: http_secret.to_owned(),
    }
}

/// Secret `imageregistry-<name>-config`: the rendered `config.yml` and the http secret it holds.
pub fn config_secret(workload: &Workload<'_>, config_yml: &str, http_secret: &str) -> Secret {
    Secret {
        metadata: workload.metadata(names::config_secret_name(workload.name)),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([
            (
                CONFIG_KEY.to_owned(),
                ByteString(config_yml.as_bytes().to_vec()),
            ),
            (
                HTTP_SECRET_KEY.to_owned(),
                ByteString(http_secret.as_bytes().to_vec()),
            ),
        ])),
        ..Secret::default()
    }
}

/// Renders the config of `workload` with `http_secret`.
pub fn render_config(workload: &Workload<'_>, http_secret: &str) -> String {
    render(&registry_config(
        workload.name,
        workload.namespace,
        workload.hostname,
        http_secret,
    ))
}

/// Service `<name>`: 443 → the registry, 5001 → registry-auth (the token realm's port).
pub fn service(workload: &Workload<'_>) -> Service {
    let mut metadata = workload.metadata(names::workload_name(workload.name));
    metadata.annotations = Some(BTreeMap::from([(
        EXTERNAL_DNS_ANNOTATION.to_owned(),
        workload.hostname.to_owned(),
    )]));
    let service_type = match workload.spec.effective_service_type() {
        RegistryServiceType::LoadBalancer => "LoadBalancer",
        RegistryServiceType::ClusterIP => "ClusterIP",
        RegistryServiceType::NodePort => "NodePort",
    };
    let port = |name: &str, port: i32| ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    };
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(service_type.to_owned()),
            selector: Some(labels::selector_labels(workload.name)),
            ports: Some(vec![
                port("https", 443),
                port("auth", i32::from(names::AUTH_PORT)),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// PVC `imageregistry-<name>-pvc`. Owned by the ImageRegistry (so deleted with it) only when
/// `deleteClaim` is true; otherwise the images outlive the registry, as in the original.
pub fn pvc(workload: &Workload<'_>) -> PersistentVolumeClaim {
    let claim = workload
        .spec
        .persistent_volume_claim
        .clone()
        .unwrap_or_default();
    let mut metadata = workload.metadata(names::pvc_name(workload.name));
    if !claim.delete_claim.unwrap_or(false) {
        metadata.owner_references = None;
    }
    let access_modes = claim
        .access_modes
        .filter(|modes| !modes.is_empty())
        .unwrap_or_else(|| vec![VolumeAccessMode::ReadWriteMany])
        .into_iter()
        .map(|mode| {
            match mode {
                VolumeAccessMode::ReadWriteOnce => "ReadWriteOnce",
                VolumeAccessMode::ReadOnlyMany => "ReadOnlyMany",
                VolumeAccessMode::ReadWriteMany => "ReadWriteMany",
                VolumeAccessMode::ReadWriteOncePod => "ReadWriteOncePod",
            }
            .to_owned()
        })
        .collect();
    let mut resources = claim.resources.unwrap_or_default();
    let requests = resources.requests.get_or_insert_with(BTreeMap::new);
    requests
        .entry("storage".to_owned())
        .or_insert_with(|| Quantity(DEFAULT_STORAGE.to_owned()));
    PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(access_modes),
            storage_class_name: claim.storage_class_name,
            resources: Some(VolumeResourceRequirements {
                limits: resources.limits,
                requests: resources.requests,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// StatefulSet `<name>`: the registry and registry-auth in each pod.
pub fn statefulset(workload: &Workload<'_>) -> StatefulSet {
    let selector = labels::selector_labels(workload.name);
    let mut pod_labels = labels::labels(workload.name);
    pod_labels.insert(
        "app.kubernetes.io/component".to_owned(),
        "registry".to_owned(),
    );
    let annotations = BTreeMap::from([
        (TLS_HASH_ANNOTATION.to_owned(), workload.tls_hash.to_owned()),
        (
            TOKEN_HASH_ANNOTATION.to_owned(),
            workload.token_hash.to_owned(),
        ),
        (
            CONFIG_HASH_ANNOTATION.to_owned(),
            workload.config_hash.to_owned(),
        ),
    ]);
    let volumes = vec![
        Volume {
            name: "images".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: names::pvc_name(workload.name),
                read_only: None,
            }),
            ..Volume::default()
        },
        secret_volume("tls", workload.tls_secret, &[TLS_CERT_KEY, TLS_KEY_KEY]),
        // The registry needs only the token certificate, never its key.
        secret_volume("token-cert", workload.token_secret, &[TLS_CERT_KEY]),
        secret_volume("token", workload.token_secret, &[TLS_CERT_KEY, TLS_KEY_KEY]),
        secret_volume(
            "config",
            &names::config_secret_name(workload.name),
            &[CONFIG_KEY],
        ),
    ];
    StatefulSet {
        metadata: workload.metadata(names::workload_name(workload.name)),
        spec: Some(StatefulSetSpec {
            replicas: Some(workload.spec.effective_replicas()),
            service_name: Some(names::workload_name(workload.name)),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".to_owned()),
                ..StatefulSetUpdateStrategy::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(names::rbac_name(workload.name)),
                    containers: vec![registry_container(workload), auth_container(workload)],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

fn registry_container(workload: &Workload<'_>) -> Container {
    let probe = |failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/".to_owned()),
            port: IntOrString::String("https".to_owned()),
            scheme: Some("HTTPS".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    Container {
        name: "registry".to_owned(),
        image: Some(workload.registry_image.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(vec![
            "serve".to_owned(),
            format!("{CONFIG_MOUNT_DIR}/{CONFIG_KEY}"),
        ]),
        ports: Some(vec![container_port("https", REGISTRY_PORT)]),
        volume_mounts: Some(vec![
            mount("images", STORAGE_DIR, false),
            mount("tls", TLS_MOUNT_DIR, true),
            mount("token-cert", TOKEN_MOUNT_DIR, true),
            mount("config", CONFIG_MOUNT_DIR, true),
        ]),
        readiness_probe: Some(probe(3)),
        liveness_probe: Some(probe(6)),
        resources: Some(resources("100m", "128Mi", "512Mi")),
        ..Container::default()
    }
}

fn auth_container(workload: &Workload<'_>) -> Container {
    let value = |name: &str, value: String| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        ..EnvVar::default()
    };
    let field = |name: &str, path: &str| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http-metrics".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        ..Probe::default()
    };
    Container {
        name: "registry-auth".to_owned(),
        image: Some(workload.auth_image.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        env: Some(vec![
            field(auth_env::ENV_NAMESPACE, "metadata.namespace"),
            field("POD_NAME", "metadata.name"),
            value(auth_env::ENV_REGISTRY_NAME, workload.name.to_owned()),
            value(
                auth_env::ENV_LISTEN_ADDR,
                format!("0.0.0.0:{}", names::AUTH_PORT),
            ),
            value("HTTP_ADDR", format!("0.0.0.0:{AUTH_METRICS_PORT}")),
            value(
                auth_env::ENV_TLS_CERT_FILE,
                format!("{TLS_MOUNT_DIR}/{TLS_CERT_KEY}"),
            ),
            value(
                auth_env::ENV_TLS_KEY_FILE,
                format!("{TLS_MOUNT_DIR}/{TLS_KEY_KEY}"),
            ),
            value(
                auth_env::ENV_TOKEN_CERT_FILE,
                format!("{TOKEN_MOUNT_DIR}/{TLS_CERT_KEY}"),
            ),
            value(
                auth_env::ENV_TOKEN_KEY_FILE,
                format!("{TOKEN_MOUNT_DIR}/{TLS_KEY_KEY}"),
            ),
            value(
                auth_env::ENV_TOKEN_ISSUER,
                names::token_issuer(workload.name, workload.namespace),
            ),
            value(
                auth_env::ENV_TOKEN_SERVICE,
                names::token_service(workload.hostname),
            ),
        ]),
        ports: Some(vec![
            container_port("auth", i32::from(names::AUTH_PORT)),
            container_port("http-metrics", AUTH_METRICS_PORT),
        ]),
        volume_mounts: Some(vec![
            mount("tls", TLS_MOUNT_DIR, true),
            mount("token", TOKEN_MOUNT_DIR, true),
        ]),
        readiness_probe: Some(probe("/readyz")),
        liveness_probe: Some(probe("/healthz")),
        resources: Some(resources("50m", "32Mi", "128Mi")),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

fn secret_volume(name: &str, secret: &str, keys: &[&str]) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            items: Some(
                keys.iter()
                    .map(|key| KeyToPath {
                        key: (*key).to_owned(),
                        path: (*key).to_owned(),
                        mode: None,
                    })
                    .collect(),
            ),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        // The API server drops a false readOnly; leaving it out keeps "already applied" exact.
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

fn resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity(memory_limit.to_owned()),
        )])),
        ..ResourceRequirements::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::RegistryVolumeClaimSpec;

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "registry.mgoltzsche.github.com/v1alpha1".into(),
            kind: "ImageRegistry".into(),
            name: "registry".into(),
            uid: "uid".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn workload(spec: &ImageRegistrySpec) -> Workload<'_> {
        Workload {
            name: "registry",
            namespace: "infra",
            spec,
            hostname: "registry.infra.svc.example.org",
            owner: owner(),
            registry_image: "registry:2",
            auth_image: "docker.io/wharf/registry-auth:0.1.0",
            tls_secret: "registry-tls",
            token_secret: "registry-auth-ca",
            tls_hash: "t",
            token_hash: "k",
            config_hash: "c",
        }
    }

    fn env_of(container: &Container, name: &str) -> Option<String> {
        container
            .env
            .as_ref()?
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    }

    #[test]
    fn statefulset_runs_registry_and_registry_auth_with_the_contract() {
        let spec = ImageRegistrySpec {
            replicas: Some(2),
            ..ImageRegistrySpec::default()
        };
        let sts = statefulset(&workload(&spec));
        assert_eq!(sts.metadata.name.as_deref(), Some("registry"));
        let spec = sts.spec.expect("spec");
        assert_eq!(spec.replicas, Some(2));
        assert_eq!(spec.service_name.as_deref(), Some("registry"));
        assert_eq!(
            spec.selector.match_labels,
            Some(labels::selector_labels("registry"))
        );
        let template = spec.template;
        let annotations = template
            .metadata
            .expect("meta")
            .annotations
            .expect("annotations");
        assert_eq!(annotations[TLS_HASH_ANNOTATION], "t");
        assert_eq!(annotations[TOKEN_HASH_ANNOTATION], "k");
        assert_eq!(annotations[CONFIG_HASH_ANNOTATION], "c");
        let pod = template.spec.expect("pod");
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("imageregistry-registry")
        );
        let registry = &pod.containers[0];
        assert_eq!(registry.image.as_deref(), Some("registry:2"));
        assert_eq!(
            registry.args.as_deref(),
            Some(
                &[
                    "serve".to_owned(),
                    "/etc/wharf/registry/config.yml".to_owned()
                ][..]
            )
        );
        let auth = &pod.containers[1];
        assert_eq!(
            env_of(auth, auth_env::ENV_REGISTRY_NAME).as_deref(),
            Some("registry")
        );
        assert_eq!(
            env_of(auth, auth_env::ENV_TOKEN_SERVICE).as_deref(),
            Some("registry.infra.svc.example.org")
        );
        assert_eq!(
            env_of(auth, auth_env::ENV_TOKEN_KEY_FILE).as_deref(),
            Some("/etc/wharf/token/tls.key")
        );
        let volumes = pod.volumes.expect("volumes");
        let token_cert = volumes
            .iter()
            .find(|v| v.name == "token-cert")
            .expect("token-cert");
        let items = token_cert
            .secret
            .as_ref()
            .and_then(|s| s.items.clone())
            .expect("items");
        assert_eq!(items.len(), 1, "the registry never gets the token key");
        let images = volumes.iter().find(|v| v.name == "images").expect("images");
        assert_eq!(
            images
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("imageregistry-registry-pvc")
        );
    }

    #[test]
    fn config_matches_what_registry_auth_signs() {
        let spec = ImageRegistrySpec::default();
        let workload = workload(&spec);
        let config: serde_yaml::Value =
            serde_yaml::from_str(&render_config(&workload, "s")).expect("YAML");
        let sts = statefulset(&workload);
        let pod = sts.spec.and_then(|s| s.template.spec).expect("pod");
        let auth = &pod.containers[1];
        assert_eq!(
            config["auth"]["token"]["issuer"].as_str(),
            env_of(auth, auth_env::ENV_TOKEN_ISSUER).as_deref()
        );
        assert_eq!(
            config["auth"]["token"]["service"].as_str(),
            env_of(auth, auth_env::ENV_TOKEN_SERVICE).as_deref()
        );
        assert_eq!(
            config["auth"]["token"]["realm"],
            "https://registry.infra.svc.example.org:5001/auth/token"
        );
        assert_eq!(
            config["auth"]["token"]["rootcertbundle"],
            "/etc/wharf/token/tls.crt"
        );
        let secret = config_secret(&workload, "x", "s");
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("imageregistry-registry-config")
        );
    }

    #[test]
    fn service_exposes_registry_and_token_endpoint() {
        let mut spec = ImageRegistrySpec::default();
        let svc = service(&workload(&spec));
        let svc_spec = svc.spec.expect("spec");
        assert_eq!(svc_spec.type_.as_deref(), Some("LoadBalancer"));
        let ports: Vec<_> = svc_spec
            .ports
            .expect("ports")
            .into_iter()
            .map(|p| (p.name.unwrap_or_default(), p.port))
            .collect();
        assert_eq!(
            ports,
            [("https".to_owned(), 443), ("auth".to_owned(), 5001)]
        );
        assert_eq!(
            svc.metadata.annotations.expect("annotations")[EXTERNAL_DNS_ANNOTATION],
            "registry.infra.svc.example.org"
        );
        spec.service_type = Some(RegistryServiceType::ClusterIP);
        assert_eq!(
            service(&workload(&spec))
                .spec
                .and_then(|s| s.type_)
                .as_deref(),
            Some("ClusterIP")
        );
    }

    #[test]
    fn pvc_defaults_and_delete_claim() {
        let mut spec = ImageRegistrySpec::default();
        let claim = pvc(&workload(&spec));
        assert_eq!(
            claim.metadata.name.as_deref(),
            Some("imageregistry-registry-pvc")
        );
        assert!(
            claim.metadata.owner_references.is_none(),
            "images outlive the registry by default"
        );
        let claim_spec = claim.spec.expect("spec");
        assert_eq!(
            claim_spec.access_modes,
            Some(vec!["ReadWriteMany".to_owned()])
        );
        let requests = claim_spec
            .resources
            .and_then(|r| r.requests)
            .expect("requests");
        assert_eq!(requests["storage"], Quantity("8Gi".into()));

        spec.persistent_volume_claim = Some(RegistryVolumeClaimSpec {
            storage_class_name: Some("fast".into()),
            access_modes: Some(vec![VolumeAccessMode::ReadWriteOnce]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".into(),
                    Quantity("20Gi".into()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            delete_claim: Some(true),
        });
        let claim = pvc(&workload(&spec));
        assert_eq!(claim.metadata.owner_references.map(|o| o.len()), Some(1));
        let claim_spec = claim.spec.expect("spec");
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            claim_spec.access_modes,
            Some(vec!["ReadWriteOnce".to_owned()])
        );
        let requests = claim_spec
            .resources
            .and_then(|r| r.requests)
            .expect("requests");
        assert_eq!(requests["storage"], Quantity("20Gi".into()));
    }
}
