//! mirror-controller's settings as the builders need them, and parsers for the seed's environment
//! values (JSON labels and tolerations, comma lists, image references) with errors that say what to fix.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::core::v1::Toleration;

/// How nodes reach a mirror (the seed's ADDRESSING_SCHEME).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AddressingScheme {
    /// Nodes resolve the masquerade host to the Service's ClusterIP through `/etc/hosts`.
    #[default]
    Hostess,
    /// The imageswap webhook rewrites pod images to `<ClusterIP>/<masquerade host>/…`.
    Services,
}

impl AddressingScheme {
    /// The value as the environment variable and the agent take it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hostess => "hostess",
            Self::Services => "services",
        }
    }
}

impl fmt::Display for AddressingScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value that is not an addressing scheme.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an addressing scheme: use `hostess` or `services`")]
pub struct AddressingSchemeError(String);

impl FromStr for AddressingScheme {
    type Err = AddressingSchemeError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim() {
            "hostess" => Ok(Self::Hostess),
            "services" => Ok(Self::Services),
            other => Err(AddressingSchemeError(other.to_owned())),
        }
    }
}

/// Everything the child builders take from the controller's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorSettings {
    /// Namespace of every child (NAMESPACE).
    pub namespace: String,
    /// ADDRESSING_SCHEME.
    pub addressing_scheme: AddressingScheme,
    /// Full reference of the nginx image.
    pub nginx_image: String,
    /// Full reference of the hostess-agent image.
    pub agent_image: String,
    /// ServiceAccount of the agent pods (they watch their mirror's Service).
    pub agent_service_account: Option<String>,
    /// Whether agents may signal CRI-O to reload (needs the host's PID namespace).
    pub agent_crio_reload: bool,
    /// Extra labels of the StatefulSet and DaemonSet (SS_DS_LABELS).
    pub workload_labels: BTreeMap<String, String>,
    /// Extra labels of their pods (SS_DS_TEMPLATE_LABELS).
    pub pod_labels: BTreeMap<String, String>,
    /// Tolerations of their pods (SS_DS_TOLERATIONS).
    pub tolerations: Vec<Toleration>,
    /// Image pull Secrets of their pods (IMAGE_PULL_SECRETS).
    pub image_pull_secrets: Vec<String>,
    /// ConfigMap with an extra upstream CA bundle under `ca-certificates.crt` (CA_CERTIFICATE_BUNDLE).
    pub ca_bundle_config_map: Option<String>,
    /// DNS domain of the cluster, for the Service names in the certificate.
    pub cluster_domain: String,
}

impl MirrorSettings {
    /// Settings with the seed's defaults, for tests and as a base.
    pub fn with_namespace(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            addressing_scheme: AddressingScheme::Hostess,
            nginx_image: image_reference(DEFAULT_REGISTRY, DEFAULT_NGINX_IMAGE, None),
            agent_image: image_reference(
                DEFAULT_REGISTRY,
                DEFAULT_AGENT_IMAGE,
                Some(env!("CARGO_PKG_VERSION")),
            ),
            agent_service_account: Some(DEFAULT_AGENT_SERVICE_ACCOUNT.to_owned()),
            agent_crio_reload: false,
            workload_labels: BTreeMap::new(),
            pod_labels: BTreeMap::new(),
            tolerations: Vec::new(),
            image_pull_secrets: Vec::new(),
            ca_bundle_config_map: None,
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_owned(),
        }
    }
}

/// The registry images come from unless DOCKER_REGISTRY says otherwise (the seed's default).
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// nginx image (repository and tag) when NGINX_IMAGE is not set.
pub const DEFAULT_NGINX_IMAGE: &str = "nginx:1.27-alpine";
/// hostess-agent repository when HOSTESS_DOCKER_IMAGE is not set; the tag defaults to wharf's version.
pub const DEFAULT_AGENT_IMAGE: &str = "wharf/hostess-agent";
/// The seed's ServiceAccount of the agent pods, kept so existing RBAC keeps working.
pub const DEFAULT_AGENT_SERVICE_ACCOUNT: &str = "mirror-hostess";
/// Default cluster DNS domain.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// An environment value that cannot be used, with what is wrong and how it should look.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingError {
    #[error(
        "expected a JSON object of strings, e.g. {{\"team\": \"infra\"}}: {0} (the seed's Python literals are not accepted)"
    )]
    NotJsonObject(String),
    #[error("{key:?} is not a valid label {what}: {problem}")]
    InvalidLabel {
        key: String,
        what: &'static str,
        problem: &'static str,
    },
    #[error(
        "expected a JSON list of Kubernetes tolerations, e.g. [{{\"key\": \"dedicated\", \"operator\": \"Exists\", \"effect\": \"NoSchedule\"}}]: {0}"
    )]
    NotTolerations(String),
    #[error("{0:?} is not a valid Secret name (lowercase letters, digits, '-' and '.')")]
    InvalidSecretName(String),
    #[error(
        "{0:?} is not an image reference, e.g. nginx:1.27 or registry.example.com/team/image:tag"
    )]
    InvalidImage(String),
}

/// Parses SS_DS_LABELS / SS_DS_TEMPLATE_LABELS: a JSON object of label keys to string values.
/// Empty input means no labels.
pub fn parse_labels(input: &str) -> Result<BTreeMap<String, String>, SettingError> {
    if input.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let labels: BTreeMap<String, String> =
        serde_json::from_str(input).map_err(|err| SettingError::NotJsonObject(err.to_string()))?;
    for (key, value) in &labels {
        check_label_key(key)?;
        check_label_value(key, value)?;
    }
    Ok(labels)
}

/// Parses SS_DS_TOLERATIONS: a JSON list of `core/v1` Tolerations. Empty input means none.
pub fn parse_tolerations(input: &str) -> Result<Vec<Toleration>, SettingError> {
    if input.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: serde_json::Value =
        serde_json::from_str(input).map_err(|err| SettingError::NotTolerations(err.to_string()))?;
    let items = value
        .as_array()
        .ok_or_else(|| SettingError::NotTolerations("the value is not a list".into()))?;
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            if !item.is_object() {
                return Err(SettingError::NotTolerations(format!(
                    "item {index} is not an object"
                )));
            }
            serde_json::from_value::<Toleration>(item.clone())
                .map_err(|err| SettingError::NotTolerations(format!("item {index}: {err}")))
        })
        .collect()
}

/// Parses IMAGE_PULL_SECRETS: comma-separated Secret names; blanks around commas are ignored.
pub fn parse_secret_list(input: &str) -> Result<Vec<String>, SettingError> {
    input
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            if is_dns_subdomain(name) {
                Ok(name.to_owned())
            } else {
                Err(SettingError::InvalidSecretName(name.to_owned()))
            }
        })
        .collect()
}

/// Checks that an image setting looks like `[host/]path[:tag][@digest]`.
pub fn parse_image(input: &str) -> Result<String, SettingError> {
    let valid = !input.is_empty()
        && !input.starts_with(['/', ':', '@'])
        && !input.ends_with(['/', ':', '@'])
        && input
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c));
    if valid {
        Ok(input.to_owned())
    } else {
        Err(SettingError::InvalidImage(input.to_owned()))
    }
}

/// The registry images are pulled from: DOCKER_REGISTRY when it is set to something other than
/// the default, else HOSTESS_DOCKER_REGISTRY (the seed's precedence).
pub fn effective_registry<'a>(docker_registry: &'a str, hostess_registry: &'a str) -> &'a str {
    if docker_registry != DEFAULT_REGISTRY {
        docker_registry
    } else {
        hostess_registry
    }
}

/// `<registry>/<image>[:<tag>]`, unless `image` already names a registry host (its first path
/// component has a dot or a port, or is `localhost`), which is then used as is. `tag` is only
/// added when the image has neither tag nor digest.
pub fn image_reference(registry: &str, image: &str, tag: Option<&str>) -> String {
    let last_component = image.rsplit('/').next().unwrap_or(image);
    let tagged = last_component.contains(':') || image.contains('@');
    let image = match tag {
        Some(tag) if !tagged && !tag.is_empty() => format!("{image}:{tag}"),
        _ => image.to_owned(),
    };
    let names_registry = image.split_once('/').is_some_and(|(first, _)| {
        first.contains('.') || first.contains(':') || first == "localhost"
    });
    let registry = registry.trim_end_matches('/');
    if names_registry || registry.is_empty() {
        image
    } else {
        format!("{registry}/{image}")
    }
}

fn check_label_key(key: &str) -> Result<(), SettingError> {
    let fail = |problem| SettingError::InvalidLabel {
        key: key.to_owned(),
        what: "key",
        problem,
    };
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.len() > 253 || !is_dns_subdomain(prefix))
    {
        return Err(fail("the prefix before '/' must be a DNS subdomain"));
    }
    if name.is_empty() || name.len() > 63 {
        return Err(fail("the name must be 1 to 63 characters"));
    }
    if !is_label_name(name) {
        return Err(fail(
            "use letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
        ));
    }
    Ok(())
}

fn check_label_value(key: &str, value: &str) -> Result<(), SettingError> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > 63 || !is_label_name(value) {
        return Err(SettingError::InvalidLabel {
            key: key.to_owned(),
            what: "value",
            problem: "at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
        });
    }
    Ok(())
}

fn is_label_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_alphanumeric();
    bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `name` is a Kubernetes object name (RFC 1123 DNS subdomain).
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let bytes = label.as_bytes();
            let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
            bytes.first().is_some_and(alnum)
                && bytes.last().is_some_and(alnum)
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addressing_scheme_parses_both_values_only() {
        assert_eq!("hostess".parse(), Ok(AddressingScheme::Hostess));
        assert_eq!("services".parse(), Ok(AddressingScheme::Services));
        let err = "service".parse::<AddressingScheme>().expect_err("typo");
        assert!(err.to_string().contains("`hostess` or `services`"), "{err}");
        assert_eq!(AddressingScheme::Services.to_string(), "services");
    }

    #[test]
    fn labels_are_a_json_object() {
        let labels = parse_labels(r#"{"team": "infra", "example.com/tier": "cache"}"#)
            .expect("valid labels");
        assert_eq!(labels.get("team").map(String::as_str), Some("infra"));
        assert_eq!(
            labels.get("example.com/tier").map(String::as_str),
            Some("cache")
        );
        assert!(parse_labels("").expect("empty is none").is_empty());
        assert!(parse_labels("  ").expect("blank is none").is_empty());
    }

    #[test]
    fn python_literals_and_bad_labels_are_refused_with_a_reason() {
        let err = parse_labels("{'team': 'infra'}").expect_err("Python literal");
        assert!(err.to_string().contains("JSON object"), "{err}");
        let err = parse_labels(r#"{"team": 3}"#).expect_err("number value");
        assert!(err.to_string().contains("JSON object of strings"), "{err}");
        let err = parse_labels(r#"["a"]"#).expect_err("a list");
        assert!(matches!(err, SettingError::NotJsonObject(_)));
        let err = parse_labels(r#"{"bad key": "x"}"#).expect_err("space in key");
        assert!(
            err.to_string()
                .contains("\"bad key\" is not a valid label key"),
            "{err}"
        );
        let err = parse_labels(r#"{"k": "-x"}"#).expect_err("bad value");
        assert!(err.to_string().contains("label value"), "{err}");
        let err = parse_labels(r#"{"Bad_Prefix/k": "x"}"#).expect_err("bad prefix");
        assert!(err.to_string().contains("prefix"), "{err}");
        let long = "a".repeat(64);
        assert!(parse_labels(&format!(r#"{{"{long}": "x"}}"#)).is_err());
    }

    #[test]
    fn tolerations_are_a_json_list() {
        let tolerations = parse_tolerations(
            r#"[{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"},
                {"operator": "Exists"}]"#,
        )
        .expect("valid tolerations");
        assert_eq!(tolerations.len(), 2);
        assert_eq!(tolerations[0].key.as_deref(), Some("dedicated"));
        assert_eq!(tolerations[1].operator.as_deref(), Some("Exists"));
        assert!(parse_tolerations("").expect("empty").is_empty());
    }

    #[test]
    fn bad_tolerations_say_which_item() {
        let err = parse_tolerations(r#"{"key": "x"}"#).expect_err("not a list");
        assert!(err.to_string().contains("not a list"), "{err}");
        let err = parse_tolerations(r#"[{"key": "x"}, "oops"]"#).expect_err("string item");
        assert!(err.to_string().contains("item 1"), "{err}");
        let err = parse_tolerations(r#"[{"tolerationSeconds": "soon"}]"#).expect_err("bad type");
        assert!(err.to_string().contains("item 0"), "{err}");
        let err = parse_tolerations("[{'key': 'x'}]").expect_err("Python literal");
        assert!(err.to_string().contains("JSON list"), "{err}");
    }

    #[test]
    fn pull_secrets_are_a_comma_list() {
        assert_eq!(
            parse_secret_list("regcred, other-cred ,,").expect("valid"),
            vec!["regcred".to_owned(), "other-cred".to_owned()]
        );
        assert!(parse_secret_list("").expect("empty").is_empty());
        let err = parse_secret_list("good,Bad_Name").expect_err("invalid name");
        assert_eq!(err, SettingError::InvalidSecretName("Bad_Name".into()));
    }

    #[test]
    fn images_are_checked() {
        assert_eq!(parse_image("nginx:1.27").as_deref(), Ok("nginx:1.27"));
        assert!(parse_image("registry.local:5000/a/b@sha256:abc").is_ok());
        assert!(parse_image("").is_err());
        assert!(parse_image("nginx latest").is_err());
        assert!(parse_image("nginx:").is_err());
    }

    #[test]
    fn image_references_get_the_registry_and_tag() {
        assert_eq!(
            image_reference("docker.io", "wharf/hostess-agent", Some("0.1.0")),
            "docker.io/wharf/hostess-agent:0.1.0"
        );
        assert_eq!(
            image_reference("docker.io", "nginx:1.27-alpine", None),
            "docker.io/nginx:1.27-alpine"
        );
        assert_eq!(
            image_reference("mirror.corp:5000/", "team/agent:2", Some("ignored")),
            "mirror.corp:5000/team/agent:2"
        );
        assert_eq!(
            image_reference("docker.io", "ghcr.io/x/agent", Some("1")),
            "ghcr.io/x/agent:1"
        );
        assert_eq!(
            image_reference("docker.io", "localhost/agent@sha256:ab", Some("1")),
            "localhost/agent@sha256:ab"
        );
    }

    #[test]
    fn docker_registry_overrides_the_hostess_registry_only_when_changed() {
        assert_eq!(effective_registry("docker.io", "ghcr.io"), "ghcr.io");
        assert_eq!(effective_registry("mirror.corp", "ghcr.io"), "mirror.corp");
    }

    #[test]
    fn defaults_name_wharf_images() {
        let settings = MirrorSettings::with_namespace("ns");
        assert_eq!(settings.nginx_image, "docker.io/nginx:1.27-alpine");
        assert!(
            settings
                .agent_image
                .starts_with("docker.io/wharf/hostess-agent:"),
            "{}",
            settings.agent_image
        );
        assert_eq!(settings.addressing_scheme, AddressingScheme::Hostess);
    }
}
