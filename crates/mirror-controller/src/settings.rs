//! mirror-controller's settings: every environment variable of the seed under the same name and
//! default, plus wharf's own, each also a flag; malformed values stop the process at start.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Toleration;
use wharf_core::mirror::{
    self, AddressingScheme, MirrorSettings, SettingError, effective_registry, image_reference,
};

/// Settings of the controller (`--help` lists each flag with its environment variable).
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct Settings {
    /// Secret (in NAMESPACE, keys tls.crt and tls.key, optionally ca.crt) with the certificate every
    /// mirror serves. Unset: each mirror gets its own CA and certificate, made and renewed here.
    #[arg(long, env = "DOCKER_CERTIFICATE_SECRET", value_parser = object_name)]
    pub docker_certificate_secret: Option<String>,

    /// Namespace of every mirror's objects (run the controller in it).
    #[arg(long, env = "NAMESPACE", default_value = "default", value_parser = object_name)]
    pub namespace: String,

    /// Accepted for compatibility and ignored: wharf watches continuously and needs no pause.
    #[arg(long, env = "SECONDS_BETWEEN_STREAMS")]
    pub seconds_between_streams: Option<String>,

    /// Registry the nginx and hostess-agent images are pulled from; overrides
    /// HOSTESS_DOCKER_REGISTRY when set to anything but docker.io.
    #[arg(long, env = "DOCKER_REGISTRY", default_value = mirror::DEFAULT_REGISTRY)]
    pub docker_registry: String,

    /// Deprecated (as in the seed): registry of the hostess-agent image.
    #[arg(long, env = "HOSTESS_DOCKER_REGISTRY", default_value = mirror::DEFAULT_REGISTRY)]
    pub hostess_docker_registry: String,

    /// Repository of the node agent image (wharf's hostess-agent; the seed's
    /// ocadotechnology/mirror-hostess does not speak wharf's agent contract).
    #[arg(long, env = "HOSTESS_DOCKER_IMAGE", default_value = mirror::DEFAULT_AGENT_IMAGE, value_parser = mirror::parse_image)]
    pub hostess_docker_image: String,

    /// Tag of the node agent image (default: this controller's version).
    #[arg(long, env = "HOSTESS_DOCKER_TAG", default_value = env!("CARGO_PKG_VERSION"))]
    pub hostess_docker_tag: String,

    /// nginx image of the mirror pods (prefixed with DOCKER_REGISTRY unless it names a registry).
    #[arg(long, env = "NGINX_IMAGE", default_value = mirror::DEFAULT_NGINX_IMAGE, value_parser = mirror::parse_image)]
    pub nginx_image: String,

    /// How nodes reach a mirror: `hostess` (/etc/hosts entry for the masquerade host) or
    /// `services` (the imageswap webhook rewrites images to the Service's ClusterIP).
    #[arg(long, env = "ADDRESSING_SCHEME", default_value = "hostess")]
    pub addressing_scheme: AddressingScheme,

    /// Namespace of the imageswap-maps ConfigMap (services mode; default: NAMESPACE).
    #[arg(long, env = "IMAGESWAP_NAMESPACE", value_parser = object_name)]
    pub imageswap_namespace: Option<String>,

    /// Extra labels of the StatefulSets and DaemonSets, a JSON object, e.g. {"team": "infra"}.
    #[arg(long, env = "SS_DS_LABELS", value_parser = labels, default_value = "")]
    pub ss_ds_labels: Labels,

    /// Extra labels of their pods, a JSON object.
    #[arg(long, env = "SS_DS_TEMPLATE_LABELS", value_parser = labels, default_value = "")]
    pub ss_ds_template_labels: Labels,

    /// Tolerations of their pods, a JSON list of Kubernetes tolerations.
    #[arg(long, env = "SS_DS_TOLERATIONS", value_parser = tolerations, default_value = "")]
    pub ss_ds_tolerations: Tolerations,

    /// Image pull Secrets of their pods, comma-separated names.
    #[arg(long, env = "IMAGE_PULL_SECRETS", value_parser = secret_list, default_value = "")]
    pub image_pull_secrets: SecretNames,

    /// ConfigMap (in NAMESPACE, key ca-certificates.crt) with extra CAs the mirrors trust for
    /// their upstreams.
    #[arg(long, env = "CA_CERTIFICATE_BUNDLE", value_parser = object_name)]
    pub ca_certificate_bundle: Option<String>,

    /// Label selector: only RegistryMirrors matching it are reconciled (e.g. `shard=a`).
    #[arg(long, env = "MIRROR_SELECTOR")]
    pub mirror_selector: Option<String>,

    /// ServiceAccount of the node agents (they watch their mirror's Service).
    #[arg(long, env = "AGENT_SERVICE_ACCOUNT", default_value = mirror::DEFAULT_AGENT_SERVICE_ACCOUNT, value_parser = object_name)]
    pub agent_service_account: String,

    /// Let node agents send SIGHUP to CRI-O after changing its registries (runs them in the
    /// host's PID namespace).
    #[arg(long, env = "AGENT_CRIO_RELOAD", default_value_t = false)]
    pub agent_crio_reload: bool,

    /// DNS domain of the cluster, for the Service names in generated certificates.
    #[arg(long, env = "CLUSTER_DOMAIN", default_value = mirror::DEFAULT_CLUSTER_DOMAIN)]
    pub cluster_domain: String,

    /// File where the resourceVersion of imageswap-maps is recorded for `--map-check`.
    #[arg(
        long,
        env = "MAP_VERSION_FILE",
        default_value = "/tmp/wharf-imageswap-maps.version"
    )]
    pub map_version_file: PathBuf,

    /// How many mirrors are reconciled at the same time.
    #[arg(long, env = "RECONCILE_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub reconcile_concurrency: u16,
}

/// JSON-object labels (SS_DS_LABELS, SS_DS_TEMPLATE_LABELS).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels(pub BTreeMap<String, String>);

/// Tolerations (SS_DS_TOLERATIONS).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tolerations(pub Vec<Toleration>);

/// Secret names (IMAGE_PULL_SECRETS).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretNames(pub Vec<String>);

fn labels(input: &str) -> Result<Labels, SettingError> {
    mirror::parse_labels(input).map(Labels)
}

fn tolerations(input: &str) -> Result<Tolerations, SettingError> {
    mirror::parse_tolerations(input).map(Tolerations)
}

fn secret_list(input: &str) -> Result<SecretNames, SettingError> {
    mirror::parse_secret_list(input).map(SecretNames)
}

fn object_name(input: &str) -> Result<String, String> {
    if mirror::is_dns_subdomain(input) {
        Ok(input.to_owned())
    } else {
        Err(format!(
            "{input:?} is not an object name: use lowercase letters, digits, '-' and '.'"
        ))
    }
}

impl Settings {
    /// The namespace of `imageswap-maps`.
    pub fn imageswap_namespace(&self) -> &str {
        self.imageswap_namespace
            .as_deref()
            .unwrap_or(&self.namespace)
    }

    /// The nginx image reference in effect.
    pub fn nginx_image_reference(&self) -> String {
        image_reference(&self.docker_registry, &self.nginx_image, None)
    }

    /// The hostess-agent image reference in effect: `<registry>/<HOSTESS_DOCKER_IMAGE>:<HOSTESS_DOCKER_TAG>`,
    /// the registry being DOCKER_REGISTRY when changed, else HOSTESS_DOCKER_REGISTRY.
    pub fn agent_image_reference(&self) -> String {
        image_reference(
            effective_registry(&self.docker_registry, &self.hostess_docker_registry),
            &self.hostess_docker_image,
            Some(&self.hostess_docker_tag),
        )
    }

    /// What the child builders need.
    pub fn mirror_settings(&self) -> MirrorSettings {
        MirrorSettings {
            namespace: self.namespace.clone(),
            addressing_scheme: self.addressing_scheme,
            nginx_image: self.nginx_image_reference(),
            agent_image: self.agent_image_reference(),
            agent_service_account: Some(self.agent_service_account.clone()),
            agent_crio_reload: self.agent_crio_reload,
            workload_labels: self.ss_ds_labels.0.clone(),
            pod_labels: self.ss_ds_template_labels.0.clone(),
            tolerations: self.ss_ds_tolerations.0.clone(),
            image_pull_secrets: self.image_pull_secrets.0.clone(),
            ca_bundle_config_map: self.ca_certificate_bundle.clone(),
            cluster_domain: self.cluster_domain.clone(),
        }
    }

    /// Logs what the seed's settings turned into, and the ones that are ignored.
    pub fn log_notes(&self) {
        if let Some(value) = &self.seconds_between_streams {
            tracing::info!(
                SECONDS_BETWEEN_STREAMS = %value,
                "SECONDS_BETWEEN_STREAMS is ignored: wharf watches continuously"
            );
        }
        if self.hostess_docker_image.contains("mirror-hostess") {
            tracing::warn!(
                image = %self.hostess_docker_image,
                "HOSTESS_DOCKER_IMAGE names the seed's mirror-hostess, which does not speak wharf's agent contract; use wharf/hostess-agent"
            );
        }
        tracing::info!(
            namespace = %self.namespace,
            addressing_scheme = %self.addressing_scheme,
            nginx_image = %self.nginx_image_reference(),
            agent_image = %self.agent_image_reference(),
            certificate_secret = self.docker_certificate_secret.as_deref().unwrap_or("<generated per mirror>"),
            selector = self.mirror_selector.as_deref().unwrap_or("<all mirrors>"),
            "settings"
        );
    }

    /// Settings with every default but the namespace (what tests and benchmarks start from).
    pub fn for_namespace(namespace: &str) -> Self {
        let mut settings = Self::defaults();
        settings.namespace = namespace.to_owned();
        settings
    }

    /// Every default, as `--help` documents them (a unit test keeps the two equal).
    fn defaults() -> Self {
        Self {
            docker_certificate_secret: None,
            namespace: "default".into(),
            seconds_between_streams: None,
            docker_registry: mirror::DEFAULT_REGISTRY.into(),
            hostess_docker_registry: mirror::DEFAULT_REGISTRY.into(),
            hostess_docker_image: mirror::DEFAULT_AGENT_IMAGE.into(),
            hostess_docker_tag: env!("CARGO_PKG_VERSION").into(),
            nginx_image: mirror::DEFAULT_NGINX_IMAGE.into(),
            addressing_scheme: AddressingScheme::Hostess,
            imageswap_namespace: None,
            ss_ds_labels: Labels::default(),
            ss_ds_template_labels: Labels::default(),
            ss_ds_tolerations: Tolerations::default(),
            image_pull_secrets: SecretNames::default(),
            ca_certificate_bundle: None,
            mirror_selector: None,
            agent_service_account: mirror::DEFAULT_AGENT_SERVICE_ACCOUNT.into(),
            agent_crio_reload: false,
            cluster_domain: mirror::DEFAULT_CLUSTER_DOMAIN.into(),
            map_version_file: PathBuf::from("/tmp/wharf-imageswap-maps.version"),
            reconcile_concurrency: 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    fn parse(args: &[&str]) -> Result<Settings, clap::Error> {
        let mut all = vec!["mirror-controller"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|cli| cli.settings)
    }

    #[test]
    fn defaults_follow_the_seed() {
        let settings = parse(&[]).expect("defaults parse");
        assert_eq!(settings.namespace, "default");
        assert_eq!(settings.addressing_scheme, AddressingScheme::Hostess);
        assert_eq!(settings.imageswap_namespace(), "default");
        assert_eq!(settings.docker_certificate_secret, None);
        assert_eq!(
            settings.agent_image_reference(),
            format!(
                "docker.io/wharf/hostess-agent:{}",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert_eq!(
            settings.nginx_image_reference(),
            "docker.io/nginx:1.27-alpine"
        );
        assert!(settings.ss_ds_labels.0.is_empty());
        assert!(settings.ss_ds_tolerations.0.is_empty());
        assert!(settings.image_pull_secrets.0.is_empty());
        assert_eq!(settings.mirror_settings(), {
            let mut expected = MirrorSettings::with_namespace("default");
            expected.nginx_image = settings.nginx_image_reference();
            expected
        });
        assert_eq!(settings, Settings::defaults());
        assert_eq!(Settings::for_namespace("x").namespace, "x");
    }

    #[test]
    fn every_seed_variable_is_listed_in_help() {
        let help = Cli::command().render_long_help().to_string();
        for var in [
            "DOCKER_CERTIFICATE_SECRET",
            "NAMESPACE",
            "SECONDS_BETWEEN_STREAMS",
            "DOCKER_REGISTRY",
            "HOSTESS_DOCKER_REGISTRY",
            "HOSTESS_DOCKER_IMAGE",
            "HOSTESS_DOCKER_TAG",
            "ADDRESSING_SCHEME",
            "IMAGESWAP_NAMESPACE",
            "SS_DS_LABELS",
            "SS_DS_TEMPLATE_LABELS",
            "SS_DS_TOLERATIONS",
            "IMAGE_PULL_SECRETS",
            "CA_CERTIFICATE_BUNDLE",
            "NGINX_IMAGE",
            "MIRROR_SELECTOR",
        ] {
            assert!(
                help.contains(&format!("env: {var}=")) || help.contains(&format!("env: {var}]")),
                "{var} missing from --help:\n{help}"
            );
        }
    }

    #[test]
    fn the_registry_settings_pick_the_images() {
        let settings = parse(&[
            "--hostess-docker-registry",
            "ghcr.io",
            "--hostess-docker-image",
            "acme/agent",
            "--hostess-docker-tag",
            "2.0",
        ])
        .expect("parses");
        assert_eq!(settings.agent_image_reference(), "ghcr.io/acme/agent:2.0");
        let settings = parse(&[
            "--docker-registry",
            "mirror.corp:5000",
            "--hostess-docker-registry",
            "ghcr.io",
            "--nginx-image",
            "library/nginx:1.27",
        ])
        .expect("parses");
        assert_eq!(
            settings.agent_image_reference(),
            format!(
                "mirror.corp:5000/wharf/hostess-agent:{}",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert_eq!(
            settings.nginx_image_reference(),
            "mirror.corp:5000/library/nginx:1.27"
        );
    }

    #[test]
    fn json_settings_are_parsed() {
        let settings = parse(&[
            "--ss-ds-labels",
            r#"{"team": "infra"}"#,
            "--ss-ds-template-labels",
            r#"{"tier": "cache"}"#,
            "--ss-ds-tolerations",
            r#"[{"operator": "Exists"}]"#,
            "--image-pull-secrets",
            "a,b",
            "--addressing-scheme",
            "services",
            "--imageswap-namespace",
            "imageswap",
        ])
        .expect("parses");
        let mirror = settings.mirror_settings();
        assert_eq!(mirror.workload_labels["team"], "infra");
        assert_eq!(mirror.pod_labels["tier"], "cache");
        assert_eq!(mirror.tolerations.len(), 1);
        assert_eq!(mirror.image_pull_secrets, vec!["a", "b"]);
        assert_eq!(mirror.addressing_scheme, AddressingScheme::Services);
        assert_eq!(settings.imageswap_namespace(), "imageswap");
    }

    #[test]
    fn malformed_values_name_the_variable_and_the_problem() {
        let cases = [
            (
                vec!["--ss-ds-labels", "{'team': 'infra'}"],
                "SS_DS_LABELS",
                "JSON object",
            ),
            (
                vec!["--ss-ds-template-labels", "[1]"],
                "SS_DS_TEMPLATE_LABELS",
                "JSON object",
            ),
            (
                vec!["--ss-ds-tolerations", "{}"],
                "SS_DS_TOLERATIONS",
                "JSON list",
            ),
            (
                vec!["--image-pull-secrets", "Bad_Name"],
                "IMAGE_PULL_SECRETS",
                "not a valid Secret name",
            ),
            (
                vec!["--addressing-scheme", "dns"],
                "ADDRESSING_SCHEME",
                "`hostess` or `services`",
            ),
            (
                vec!["--namespace", "Not Valid"],
                "NAMESPACE",
                "not an object name",
            ),
            (
                vec!["--docker-certificate-secret", "x/y"],
                "DOCKER_CERTIFICATE_SECRET",
                "not an object name",
            ),
            (
                vec!["--nginx-image", "nginx latest"],
                "NGINX_IMAGE",
                "not an image reference",
            ),
            (
                vec!["--reconcile-concurrency", "0"],
                "RECONCILE_CONCURRENCY",
                "0",
            ),
        ];
        for (args, var, problem) in cases {
            let err = parse(&args).expect_err(var).to_string();
            assert!(err.contains(var), "{var} not named in: {err}");
            assert!(err.contains(problem), "{problem:?} not in: {err}");
        }
    }
}
