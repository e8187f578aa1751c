//! StatefulSet `registry-mirror-<n>`: two nginx pods serving the cache over TLS, each with its own
//! `image-store` volume.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    HTTPGetAction, KeyToPath, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::{
    CA_BUNDLE_KEY, COMPONENT_REGISTRY, IMAGE_STORE_VOLUME, NGINX_CONFIG_KEY, TLS_CERT_KEY,
    TLS_KEY_KEY, config_secret_name, headless_service_name, pod_selector_labels, statefulset_name,
};
use super::services::PORT_NAME;
use super::{
    MirrorSettings, ValidMirror, file_name, parent, pod_template_metadata, pull_secrets,
    workload_metadata,
};
use crate::nginx::{self, HEALTH_PATH, LISTEN_PORT, NginxPaths};

/// Replicas of the mirror (the seed's two: one can restart while the other serves).
pub const REPLICAS: i32 = 2;
/// The nginx user of the official images; the cache volume is group-writable for it.
pub const NGINX_UID: i64 = 101;

/// The StatefulSet. `tls_secret` holds `tls.crt`/`tls.key`; `config_hash` covers everything the
/// pods read at start (config, certificate, CA bundle), so a change rolls them.
pub fn build_statefulset(
    mirror: &ValidMirror,
    settings: &MirrorSettings,
    tls_secret: &str,
    config_hash: &str,
) -> StatefulSet {
    let paths = NginxPaths::in_pod();
    let selector = pod_selector_labels(&mirror.name, COMPONENT_REGISTRY);
    let mut volumes = vec![
        secret_volume(
            "nginx-config",
            &config_secret_name(&mirror.name),
            &[(NGINX_CONFIG_KEY, nginx::CONFIG_FILE_NAME)],
        ),
        secret_volume(
            "tls",
            tls_secret,
            &[
                (TLS_CERT_KEY, file_name(&paths.tls_cert)),
                (TLS_KEY_KEY, file_name(&paths.tls_key)),
            ],
        ),
        Volume {
            name: "run".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    let mut mounts = vec![
        mount(IMAGE_STORE_VOLUME, &paths.cache_dir, false),
        mount("nginx-config", nginx::CONFIG_DIR, true),
        mount("tls", parent(&paths.tls_cert), true),
        mount("run", &paths.run_dir, false),
    ];
    if let Some(bundle) = &settings.ca_bundle_config_map {
        volumes.push(Volume {
            name: "upstream-ca".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: bundle.clone(),
                items: Some(vec![KeyToPath {
                    key: CA_BUNDLE_KEY.into(),
                    path: file_name(&paths.extra_ca_bundle).into(),
                    mode: None,
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount("upstream-ca", parent(&paths.extra_ca_bundle), true));
    }

    let container = Container {
        name: "registry".into(),
        image: Some(settings.nginx_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(nginx::container_command(&paths)),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.into()),
            container_port: i32::from(LISTEN_PORT),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some(HEALTH_PATH.into()),
                port: IntOrString::String(PORT_NAME.into()),
                scheme: Some("HTTPS".into()),
                ..HTTPGetAction::default()
            }),
            initial_delay_seconds: Some(1),
            period_seconds: Some(3),
            ..Probe::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity("100m".into())),
                ("memory".into(), Quantity("128Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".into(),
                Quantity("512Mi".into()),
            )])),
            ..ResourceRequirements::default()
        }),
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NGINX_UID),
            run_as_group: Some(NGINX_UID),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };

    StatefulSet {
        metadata: workload_metadata(mirror, settings, statefulset_name(&mirror.name)),
        spec: Some(StatefulSetSpec {
            replicas: Some(REPLICAS),
            service_name: Some(headless_service_name(&mirror.name)),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: None,
            }),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(pod_template_metadata(settings, selector, config_hash)),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    security_context: Some(PodSecurityContext {
                        fs_group: Some(NGINX_UID),
                        ..PodSecurityContext::default()
                    }),
                    tolerations: (!settings.tolerations.is_empty())
                        .then(|| settings.tolerations.clone()),
                    image_pull_secrets: pull_secrets(settings),
                    priority_class_name: mirror.priority_class.clone(),
                    termination_grace_period_seconds: Some(10),
                    automount_service_account_token: Some(false),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![mirror.claim_template.clone()]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

fn secret_volume(name: &str, secret: &str, items: &[(&str, &str)]) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            items: Some(
                items
                    .iter()
                    .map(|(key, path)| KeyToPath {
                        key: (*key).into(),
                        path: (*path).into(),
                        mode: None,
                    })
                    .collect(),
            ),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::names::CONFIG_HASH_ANNOTATION;
    use crate::mirror::test_support::{settings, statefulset, valid_mirror};

    fn pod(sts: &StatefulSet) -> &PodSpec {
        sts.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec")
    }

    #[test]
    fn the_statefulset_follows_the_seed() {
        let sts = statefulset();
        assert_eq!(sts.metadata.name.as_deref(), Some("registry-mirror-docker"));
        assert_eq!(sts.metadata.namespace.as_deref(), Some("mirrors"));
        let spec = sts.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(2));
        assert_eq!(
            spec.service_name.as_deref(),
            Some("registry-mirror-docker-headless")
        );
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        let claims = spec.volume_claim_templates.as_ref().expect("claims");
        assert_eq!(claims[0].metadata.name.as_deref(), Some("image-store"));
        let labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            .expect("labels");
        assert_eq!(labels["component"], "registry");
        assert_eq!(labels["app"], "docker-registry");
        let container = &pod(&sts).containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("docker.io/nginx:1.27-alpine")
        );
        let port = &container.ports.as_ref().expect("ports")[0];
        assert_eq!(
            (port.container_port, port.name.as_deref()),
            (5000, Some("https"))
        );
        let probe = container
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("probe");
        assert_eq!(probe.path.as_deref(), Some("/health-check"));
        assert_eq!(probe.scheme.as_deref(), Some("HTTPS"));
        assert!(container.command.as_ref().is_some_and(|c| !c.is_empty()));
    }

    #[test]
    fn mounts_match_the_renderer_paths() {
        let sts = statefulset();
        let paths = NginxPaths::in_pod();
        let container = &pod(&sts).containers[0];
        let mounts: BTreeMap<_, _> = container
            .volume_mounts
            .as_ref()
            .expect("mounts")
            .iter()
            .map(|m| (m.name.as_str(), m.mount_path.as_str()))
            .collect();
        assert_eq!(mounts["image-store"], paths.cache_dir);
        assert_eq!(
            format!("{}/default.conf", mounts["nginx-config"]),
            paths.config_file
        );
        assert_eq!(format!("{}/tls.crt", mounts["tls"]), paths.tls_cert);
        assert_eq!(format!("{}/tls.key", mounts["tls"]), paths.tls_key);
        assert_eq!(mounts["run"], paths.run_dir);
        assert!(!mounts.contains_key("upstream-ca"));
        let tls = pod(&sts)
            .volumes
            .as_ref()
            .expect("volumes")
            .iter()
            .find(|v| v.name == "tls")
            .and_then(|v| v.secret.as_ref())
            .expect("tls volume");
        assert_eq!(
            tls.secret_name.as_deref(),
            Some("registry-mirror-docker-tls")
        );
        let keys: Vec<_> = tls
            .items
            .as_ref()
            .expect("items")
            .iter()
            .map(|i| i.key.as_str())
            .collect();
        assert_eq!(keys, vec!["tls.crt", "tls.key"], "never the CA key");
    }

    #[test]
    fn a_ca_bundle_is_mounted_where_the_renderer_expects_it() {
        let mut settings = settings();
        settings.ca_bundle_config_map = Some("corp-ca".into());
        let sts = build_statefulset(&valid_mirror("docker"), &settings, "t", "h");
        let container = &pod(&sts).containers[0];
        let mount = container
            .volume_mounts
            .as_ref()
            .expect("mounts")
            .iter()
            .find(|m| m.name == "upstream-ca")
            .expect("mounted");
        assert_eq!(
            format!("{}/ca-certificates.crt", mount.mount_path),
            nginx::UPSTREAM_CA_BUNDLE_FILE
        );
        let volume = pod(&sts)
            .volumes
            .as_ref()
            .expect("volumes")
            .iter()
            .find(|v| v.name == "upstream-ca")
            .and_then(|v| v.config_map.as_ref())
            .expect("volume");
        assert_eq!(volume.name, "corp-ca");
    }

    #[test]
    fn the_hash_and_settings_reach_the_pod_template() {
        let mut settings = settings();
        settings.pod_labels.insert("tier".into(), "cache".into());
        settings
            .workload_labels
            .insert("team".into(), "infra".into());
        settings.image_pull_secrets = vec!["regcred".into()];
        let sts = build_statefulset(&valid_mirror("docker"), &settings, "t", "hash-1");
        let meta = sts
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .expect("meta");
        assert_eq!(
            meta.annotations.as_ref().expect("annotations")[CONFIG_HASH_ANNOTATION],
            "hash-1"
        );
        assert_eq!(meta.labels.as_ref().expect("labels")["tier"], "cache");
        assert_eq!(
            sts.metadata.labels.as_ref().expect("labels")["team"],
            "infra"
        );
        assert_eq!(
            pod(&sts).image_pull_secrets.as_ref().expect("pull")[0].name,
            "regcred"
        );
        let other = build_statefulset(&valid_mirror("docker"), &settings, "t", "hash-2");
        assert_ne!(sts, other);
    }
}
