//! DaemonSet `registry-mirror-<n>-utils`: hostess-agent on every node, pointing the node's
//! container runtimes (and, in hostess mode, its hosts file) at the mirror.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, HostPathVolumeSource, KeyToPath, PodSpec, PodTemplateSpec,
    ResourceRequirements, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::names::{COMPONENT_AGENT, daemonset_name, pod_selector_labels, service_name};
use super::{
    AddressingScheme, MirrorSettings, ValidMirror, file_name, parent, pod_template_metadata,
    pull_secrets, workload_metadata,
};
use crate::agent;

/// Where the agent finds the certificate nodes should trust for the mirror.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentCa {
    /// A generated CA, in the pod spec (`CA_CERT`): a certificate is public, and so no node
    /// is given a Secret that also holds the mirror's keys and upstream credentials.
    Inline { pem: String },
    /// The user's DOCKER_CERTIFICATE_SECRET, `key` of it projected as `ca.crt`: `ca.crt` when
    /// it has one, `tls.crt` for a self-signed certificate.
    Secret { secret_name: String, key: String },
}

/// The DaemonSet. `ca_hash` covers the CA the agents install, so a new CA rolls them.
pub fn build_daemonset(
    mirror: &ValidMirror,
    settings: &MirrorSettings,
    ca: &AgentCa,
    ca_hash: &str,
) -> DaemonSet {
    let selector = pod_selector_labels(&mirror.name, COMPONENT_AGENT);
    let hostess = settings.addressing_scheme == AddressingScheme::Hostess;
    let mut host_mounts = vec![
        HostMount::dir("docker-certs", agent::DEFAULT_DOCKER_CERTS_DIR),
        HostMount::dir("containerd-certs", agent::DEFAULT_CONTAINERD_CERTS_DIR),
        HostMount::dir("crio-registries", agent::DEFAULT_CRIO_REGISTRIES_DIR),
        HostMount::dir("crio-certs", agent::DEFAULT_CRIO_CERTS_DIR),
    ];
    if hostess {
        host_mounts.push(HostMount::file("hosts-file", agent::DEFAULT_HOSTS_FILE));
        host_mounts.push(HostMount::dir(
            "hosts-lock",
            parent(agent::DEFAULT_HOSTS_LOCK_FILE),
        ));
    }
    let (mut volumes, mut mounts) = match ca {
        AgentCa::Inline { .. } => (Vec::new(), Vec::new()),
        AgentCa::Secret { secret_name, key } => ca_secret_mount(secret_name, key),
    };
    volumes.extend(host_mounts.iter().map(HostMount::volume));
    mounts.extend(host_mounts.iter().map(HostMount::mount));

    let container = Container {
        name: "hostess-agent".into(),
        image: Some(settings.agent_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        env: Some(agent_env(mirror, settings, ca)),
        volume_mounts: Some(mounts),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity("1m".into())),
                ("memory".into(), Quantity("16Mi".into())),
            ])),
            limits: Some(BTreeMap::from([("memory".into(), Quantity("64Mi".into()))])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(agent_security_context()),
        ..Container::default()
    };

    DaemonSet {
        metadata: workload_metadata(mirror, settings, daemonset_name(&mirror.name)),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                match_expressions: None,
            },
            min_ready_seconds: Some(10),
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: None,
            }),
            template: PodTemplateSpec {
                metadata: Some(pod_template_metadata(settings, selector, ca_hash)),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    service_account_name: settings.agent_service_account.clone(),
                    // CRI-O re-reads registries.conf.d only on SIGHUP, which needs its PID.
                    host_pid: settings.agent_crio_reload.then_some(true),
                    tolerations: (!settings.tolerations.is_empty())
                        .then(|| settings.tolerations.clone()),
                    image_pull_secrets: pull_secrets(settings),
                    priority_class_name: mirror.priority_class.clone(),
                    // The agent removes its hosts line on SIGTERM; that takes milliseconds.
                    termination_grace_period_seconds: Some(10),
                    ..PodSpec::default()
                }),
            },
            ..DaemonSetSpec::default()
        }),
        status: None,
    }
}

/// The agent edits root-owned files on the node (hosts file, certs.d trees): it runs as root,
/// because as the files' owner it needs no capability at all to write them (no CAP_DAC_OVERRIDE,
/// no CAP_CHOWN: what it creates is root's already). Everything else is taken away: not
/// privileged, every capability dropped, no privilege escalation, a read-only root filesystem.
fn agent_security_context() -> SecurityContext {
    SecurityContext {
        privileged: Some(false),
        run_as_user: Some(0),
        run_as_non_root: Some(false),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

/// The volume and mount projecting `key` of the user's Secret as the agent's `ca.crt`.
fn ca_secret_mount(secret_name: &str, key: &str) -> (Vec<Volume>, Vec<VolumeMount>) {
    let volume = Volume {
        name: "mirror-tls".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret_name.into()),
            items: Some(vec![KeyToPath {
                key: key.into(),
                path: file_name(agent::DEFAULT_CA_FILE).into(),
                mode: None,
            }]),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: "mirror-tls".into(),
        mount_path: agent::CA_MOUNT_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    (vec![volume], vec![mount])
}

fn agent_env(mirror: &ValidMirror, settings: &MirrorSettings, ca: &AgentCa) -> Vec<EnvVar> {
    let var = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    };
    let mut env = vec![
        var(agent::ENV_SERVICE_NAME, &service_name(&mirror.name)),
        var(agent::ENV_SERVICE_NAMESPACE, &settings.namespace),
        var(agent::ENV_MIRROR_NAME, &mirror.name),
        var(agent::ENV_MASQUERADE_HOST, &mirror.masquerade_host),
        var(agent::ENV_UPSTREAM_HOST, &mirror.upstream),
        var(
            agent::ENV_ADDRESSING_SCHEME,
            settings.addressing_scheme.as_str(),
        ),
        match ca {
            AgentCa::Inline { pem } => var(agent::ENV_CA_CERT, pem),
            AgentCa::Secret { .. } => var(agent::ENV_CA_FILE, agent::DEFAULT_CA_FILE),
        },
        var(agent::ENV_DOCKER_CERTS_DIR, agent::DEFAULT_DOCKER_CERTS_DIR),
        var(
            agent::ENV_CONTAINERD_CERTS_DIR,
            agent::DEFAULT_CONTAINERD_CERTS_DIR,
        ),
        var(
            agent::ENV_CRIO_REGISTRIES_DIR,
            agent::DEFAULT_CRIO_REGISTRIES_DIR,
        ),
        var(agent::ENV_CRIO_CERTS_DIR, agent::DEFAULT_CRIO_CERTS_DIR),
        var(
            agent::ENV_CRIO_RELOAD,
            if settings.agent_crio_reload {
                "true"
            } else {
                "false"
            },
        ),
    ];
    if settings.addressing_scheme == AddressingScheme::Hostess {
        env.push(var(agent::ENV_HOSTS_FILE, agent::DEFAULT_HOSTS_FILE));
        env.push(var(
            agent::ENV_HOSTS_LOCK_FILE,
            agent::DEFAULT_HOSTS_LOCK_FILE,
        ));
    }
    env
}

/// A node path mounted into the agent at `/host<path>`.
struct HostMount {
    name: &'static str,
    in_container: &'static str,
    host_type: &'static str,
}

impl HostMount {
    fn dir(name: &'static str, in_container: &'static str) -> Self {
        Self {
            name,
            in_container,
            host_type: "DirectoryOrCreate",
        }
    }

    fn file(name: &'static str, in_container: &'static str) -> Self {
        Self {
            name,
            in_container,
            host_type: "File",
        }
    }

    fn host_path(&self) -> &'static str {
        self.in_container
            .strip_prefix("/host")
            .unwrap_or(self.in_container)
    }

    fn volume(&self) -> Volume {
        Volume {
            name: self.name.into(),
            host_path: Some(HostPathVolumeSource {
                path: self.host_path().into(),
                type_: Some(self.host_type.into()),
            }),
            ..Volume::default()
        }
    }

    fn mount(&self) -> VolumeMount {
        VolumeMount {
            name: self.name.into(),
            mount_path: self.in_container.into(),
            ..VolumeMount::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::names::CONFIG_HASH_ANNOTATION;
    use crate::mirror::test_support::{settings, valid_mirror};

    fn generated_ca() -> AgentCa {
        AgentCa::Inline {
            pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        }
    }

    fn env_of(ds: &DaemonSet) -> BTreeMap<String, String> {
        pod(ds).containers[0]
            .env
            .as_ref()
            .expect("env")
            .iter()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    fn pod(ds: &DaemonSet) -> &PodSpec {
        ds.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec")
    }

    fn host_paths(ds: &DaemonSet) -> BTreeMap<String, String> {
        pod(ds)
            .volumes
            .as_ref()
            .expect("volumes")
            .iter()
            .filter_map(|v| Some((v.host_path.as_ref()?.path.clone(), v.name.clone())))
            .collect()
    }

    #[test]
    fn hostess_mode_sets_the_agent_contract() {
        let ds = build_daemonset(&valid_mirror("docker"), &settings(), &generated_ca(), "h1");
        assert_eq!(
            ds.metadata.name.as_deref(),
            Some("registry-mirror-docker-utils")
        );
        let env = env_of(&ds);
        assert_eq!(env["SERVICE_NAME"], "registry-mirror-docker");
        assert_eq!(env["SERVICE_NAMESPACE"], "mirrors");
        assert_eq!(env["MIRROR_NAME"], "docker");
        assert_eq!(env["MASQUERADE_HOST"], "mirror-hub.docker.io");
        assert_eq!(env["UPSTREAM_HOST"], "hub.docker.io");
        assert_eq!(env["ADDRESSING_SCHEME"], "hostess");
        assert!(env["CA_CERT"].contains("BEGIN CERTIFICATE"));
        assert_eq!(env["HOSTS_FILE"], "/host/etc/hosts");
        assert_eq!(env["HOSTS_LOCK_FILE"], "/host/run/wharf/hosts.lock");
        assert_eq!(env["CRIO_RELOAD"], "false");
        let paths = host_paths(&ds);
        for path in [
            "/etc/hosts",
            "/run/wharf",
            "/etc/docker/certs.d",
            "/etc/containerd/certs.d",
            "/etc/containers/registries.conf.d",
            "/etc/containers/certs.d",
        ] {
            assert!(paths.contains_key(path), "{path} missing from {paths:?}");
        }
        assert_eq!(paths.len(), 6, "no other node path: {paths:?}");
        let mounts = pod(&ds).containers[0]
            .volume_mounts
            .as_ref()
            .expect("mounts");
        assert!(mounts.iter().any(|m| m.mount_path == "/host/etc/hosts"));
    }

    #[test]
    fn services_mode_leaves_the_hosts_file_alone() {
        let mut settings = settings();
        settings.addressing_scheme = AddressingScheme::Services;
        let ds = build_daemonset(&valid_mirror("docker"), &settings, &generated_ca(), "h");
        let env = env_of(&ds);
        assert_eq!(env["ADDRESSING_SCHEME"], "services");
        assert!(!env.contains_key("HOSTS_FILE"));
        let paths = host_paths(&ds);
        assert!(!paths.contains_key("/etc/hosts"));
        assert!(!paths.contains_key("/run/wharf"));
    }

    #[test]
    fn a_generated_ca_is_in_the_pod_spec_and_no_secret_is_mounted() {
        let ds = build_daemonset(&valid_mirror("docker"), &settings(), &generated_ca(), "h");
        let env = env_of(&ds);
        assert!(env["CA_CERT"].starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!env.contains_key("CA_FILE"));
        let volumes = pod(&ds).volumes.as_ref().expect("volumes");
        assert!(volumes.iter().all(|v| v.secret.is_none()), "{volumes:?}");
    }

    #[test]
    fn only_the_ca_is_mounted_from_the_users_secret() {
        let tls = AgentCa::Secret {
            secret_name: "user-cert".into(),
            key: "tls.crt".into(),
        };
        let ds = build_daemonset(&valid_mirror("docker"), &settings(), &tls, "h");
        let volume = pod(&ds)
            .volumes
            .as_ref()
            .expect("volumes")
            .iter()
            .find(|v| v.name == "mirror-tls")
            .and_then(|v| v.secret.clone())
            .expect("tls volume");
        assert_eq!(volume.secret_name.as_deref(), Some("user-cert"));
        let items = volume.items.expect("items");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].key, "tls.crt");
        assert_eq!(items[0].path, "ca.crt");
        let mounts = pod(&ds).containers[0]
            .volume_mounts
            .as_ref()
            .expect("mounts");
        assert!(
            mounts
                .iter()
                .any(|m| m.mount_path == agent::CA_MOUNT_DIR && m.read_only == Some(true))
        );
        assert_eq!(env_of(&ds)["CA_FILE"], agent::DEFAULT_CA_FILE);
        assert!(!env_of(&ds).contains_key("CA_CERT"));
    }

    #[test]
    fn the_agent_runs_as_root_without_privileges() {
        let ds = build_daemonset(&valid_mirror("docker"), &settings(), &generated_ca(), "h");
        let security = pod(&ds).containers[0]
            .security_context
            .clone()
            .expect("security");
        assert_eq!(security.privileged, Some(false));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(security.read_only_root_filesystem, Some(true));
        let caps = security.capabilities.expect("caps");
        assert_eq!(caps.drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(caps.add, None);
        assert_eq!(pod(&ds).host_pid, None);
    }

    #[test]
    fn settings_reach_the_pods_without_overriding_the_selector() {
        let mut settings = settings();
        settings
            .workload_labels
            .insert("team".into(), "infra".into());
        settings.pod_labels.insert("tier".into(), "cache".into());
        settings.pod_labels.insert("mirror".into(), "hijack".into());
        settings.image_pull_secrets = vec!["regcred".into()];
        settings.tolerations = vec![k8s_openapi::api::core::v1::Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        }];
        settings.agent_crio_reload = true;
        let mut mirror = valid_mirror("docker");
        mirror.priority_class = Some("system-node-critical".into());
        let ds = build_daemonset(&mirror, &settings, &generated_ca(), "abc");
        assert_eq!(
            ds.metadata.labels.as_ref().expect("labels")["team"],
            "infra"
        );
        let spec = ds.spec.as_ref().expect("spec");
        let template_meta = spec.template.metadata.as_ref().expect("meta");
        let labels = template_meta.labels.as_ref().expect("labels");
        assert_eq!(labels["tier"], "cache");
        assert_eq!(labels["mirror"], "docker", "our labels win");
        assert_eq!(labels["component"], "hostess-certificate");
        let selector = spec.selector.match_labels.as_ref().expect("selector");
        assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)));
        assert_eq!(
            template_meta.annotations.as_ref().expect("annotations")[CONFIG_HASH_ANNOTATION],
            "abc"
        );
        let pod = pod(&ds);
        assert_eq!(
            pod.image_pull_secrets.as_ref().expect("pull")[0].name,
            "regcred"
        );
        assert_eq!(pod.tolerations.as_ref().expect("tolerations").len(), 1);
        assert_eq!(
            pod.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
        assert_eq!(pod.service_account_name.as_deref(), Some("mirror-hostess"));
        assert_eq!(pod.host_pid, Some(true));
        assert_eq!(env_of(&ds)["CRIO_RELOAD"], "true");
    }
}
