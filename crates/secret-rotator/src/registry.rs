//! Which ImageRegistry a push/pull secret logs in to, and whether it is usable: Ready, with a
//! hostname, and the CA certificate clients need.

use std::fmt;

use k8s_openapi::api::core::v1::Secret;
use wharf_core::conditions::{self, READY};
use wharf_core::crd::{ImageRegistry, ImageRegistryRef};

/// An ImageRegistry's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistryKey {
    pub namespace: String,
    pub name: String,
}

impl RegistryKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// `namespace/name`, as recorded on the Secret.
    pub fn to_annotation(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Parses [`RegistryKey::to_annotation`].
    pub fn from_annotation(value: &str) -> Option<Self> {
        let (namespace, name) = value.split_once('/')?;
        (!namespace.is_empty() && !name.is_empty()).then(|| Self::new(namespace, name))
    }

    /// The status form: `{name, namespace}`.
    pub fn to_ref(&self) -> ImageRegistryRef {
        ImageRegistryRef {
            name: self.name.clone(),
            namespace: Some(self.namespace.clone()),
        }
    }
}

impl fmt::Display for RegistryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The registry a CR in `cr_namespace` uses: `registryRef` (its namespace defaulting to the CR's
/// own, as the original operator did and as `kubectl apply -n build` of the seed example needs),
/// else the operator's default registry.
pub fn resolve(
    cr_namespace: &str,
    registry_ref: Option<&ImageRegistryRef>,
    default: &RegistryKey,
) -> RegistryKey {
    match registry_ref {
        Some(reference) if !reference.name.is_empty() => RegistryKey::new(
            reference
                .namespace
                .as_deref()
                .filter(|ns| !ns.is_empty())
                .unwrap_or(cr_namespace),
            reference.name.as_str(),
        ),
        _ => default.clone(),
    }
}

/// A registry that is Ready: where clients reach it and which Secret holds its certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadyRegistry {
    pub hostname: String,
    pub tls_secret_name: Option<String>,
}

/// Whether `registry` (None: not found) can be used now; Err says why not, for the user.
pub fn ready_registry(
    key: &RegistryKey,
    registry: Option<&ImageRegistry>,
) -> Result<ReadyRegistry, String> {
    let Some(registry) = registry else {
        return Err(format!(
            "ImageRegistry {key} does not exist: create it, or point spec.registryRef at an existing one"
        ));
    };
    let status = registry.status.as_ref();
    let conditions = status.map(|s| s.conditions.as_slice()).unwrap_or_default();
    if !conditions::is_true(conditions, READY) {
        let why = conditions
            .iter()
            .find(|c| c.type_ == READY)
            .map(|c| format!(" ({}: {})", c.reason, c.message))
            .unwrap_or_default();
        return Err(format!(
            "ImageRegistry {key} is not Ready yet{why}; the Secret is written once it is"
        ));
    }
    let Some(hostname) = status
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
    else {
        return Err(format!(
            "ImageRegistry {key} is Ready but has no status.hostname yet"
        ));
    };
    Ok(ReadyRegistry {
        hostname,
        tls_secret_name: status
            .and_then(|s| s.tls_secret_name.clone())
            .filter(|n| !n.is_empty()),
    })
}

/// The CA certificate (PEM) clients need for the registry: key `ca.crt` of its TLS Secret, else
/// `tls.crt` (a self-signed certificate is its own CA).
pub fn ca_certificate(
    key: &RegistryKey,
    secret_name: &str,
    secret: Option<&Secret>,
) -> Result<String, String> {
    let Some(secret) = secret else {
        return Err(format!(
            "the TLS Secret {}/{secret_name} of ImageRegistry {key} does not exist yet",
            key.namespace
        ));
    };
    let data = secret.data.as_ref();
    ["ca.crt", "tls.crt"]
        .iter()
        .find_map(|k| data.and_then(|d| d.get(*k)).filter(|v| !v.0.is_empty()))
        .map(|value| String::from_utf8_lossy(&value.0).into_owned())
        .ok_or_else(|| {
            format!(
                "the TLS Secret {}/{secret_name} of ImageRegistry {key} has neither ca.crt nor tls.crt",
                key.namespace
            )
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use k8s_openapi::jiff::Timestamp;
    use wharf_core::crd::{ImageRegistrySpec, ImageRegistryStatus};

    use super::*;

    fn default_key() -> RegistryKey {
        RegistryKey::new("registry-system", "registry")
    }

    fn registry(ready: &str, hostname: Option<&str>) -> ImageRegistry {
        let mut registry = ImageRegistry::new("registry", ImageRegistrySpec::default());
        registry.status = Some(ImageRegistryStatus {
            conditions: vec![Condition {
                type_: READY.into(),
                status: ready.into(),
                reason: "Updating".into(),
                message: "0/1 pods updating".into(),
                observed_generation: None,
                last_transition_time: Time(Timestamp::UNIX_EPOCH),
            }],
            hostname: hostname.map(str::to_owned),
            tls_secret_name: Some("registry-tls".into()),
            ..ImageRegistryStatus::default()
        });
        registry
    }

    #[test]
    fn a_reference_without_namespace_means_the_crs_namespace() {
        let reference = ImageRegistryRef {
            name: "registry".into(),
            namespace: None,
        };
        assert_eq!(
            resolve("build", Some(&reference), &default_key()),
            RegistryKey::new("build", "registry")
        );
        let elsewhere = ImageRegistryRef {
            name: "shared".into(),
            namespace: Some("infra".into()),
        };
        assert_eq!(
            resolve("build", Some(&elsewhere), &default_key()),
            RegistryKey::new("infra", "shared")
        );
    }

    #[test]
    fn no_reference_means_the_default_registry() {
        assert_eq!(resolve("build", None, &default_key()), default_key());
    }

    #[test]
    fn annotation_form_round_trips() {
        let key = RegistryKey::new("ns", "reg");
        assert_eq!(
            RegistryKey::from_annotation(&key.to_annotation()),
            Some(key)
        );
        assert_eq!(RegistryKey::from_annotation("no-slash"), None);
        assert_eq!(RegistryKey::from_annotation("/x"), None);
    }

    #[test]
    fn only_a_ready_registry_with_a_hostname_is_usable() {
        let key = default_key();
        let missing = ready_registry(&key, None).expect_err("missing");
        assert!(missing.contains("does not exist"), "{missing}");
        let pending =
            ready_registry(&key, Some(&registry("False", Some("h")))).expect_err("not ready");
        assert!(pending.contains("not Ready"), "{pending}");
        assert!(pending.contains("0/1 pods updating"), "{pending}");
        let nameless = ready_registry(&key, Some(&registry("True", None))).expect_err("no host");
        assert!(nameless.contains("hostname"), "{nameless}");
        let ready =
            ready_registry(&key, Some(&registry("True", Some("reg.example")))).expect("ready");
        assert_eq!(ready.hostname, "reg.example");
        assert_eq!(ready.tls_secret_name.as_deref(), Some("registry-tls"));
    }

    fn tls_secret(entries: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                entries
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn the_ca_comes_from_ca_crt_else_tls_crt() {
        let key = default_key();
        let both = tls_secret(&[("ca.crt", "CA"), ("tls.crt", "LEAF")]);
        assert_eq!(ca_certificate(&key, "t", Some(&both)), Ok("CA".into()));
        let leaf_only = tls_secret(&[("tls.crt", "LEAF"), ("ca.crt", "")]);
        assert_eq!(
            ca_certificate(&key, "t", Some(&leaf_only)),
            Ok("LEAF".into())
        );
        let neither = tls_secret(&[("tls.key", "KEY")]);
        let err = ca_certificate(&key, "t", Some(&neither)).expect_err("no cert");
        assert!(err.contains("neither ca.crt nor tls.crt"), "{err}");
        let err = ca_certificate(&key, "t", None).expect_err("absent");
        assert!(err.contains("registry-system/t"), "{err}");
    }
}
