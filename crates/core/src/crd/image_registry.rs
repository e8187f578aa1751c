//! `ImageRegistry` (`registry.mgoltzsche.github.com/v1alpha1`): an in-cluster private registry.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::VolumeResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;

/// How a private registry runs: replicas, storage, TLS, authentication and its Service.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "registry.mgoltzsche.github.com",
    version = "v1alpha1",
    kind = "ImageRegistry",
    plural = "imageregistries",
    singular = "imageregistry",
    namespaced,
    doc = "A private container registry with token authentication, run inside the cluster.",
    status = "ImageRegistryStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Hostname","type":"string","jsonPath":".status.hostname"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Synced","type":"string","jsonPath":".status.conditions[?(@.type==\"Synced\")].status"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ImageRegistrySpec {
    /// Number of registry pods (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: Option<i32>,

    /// The registry's storage claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<RegistryVolumeClaimSpec>,

    /// Where the registry's serving certificate comes from; self-signed when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<CertificateSource>,

    /// Token authentication: the token-signing CA and the access rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,

    /// Type of the registry's Service (default LoadBalancer, as the original).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<RegistryServiceType>,
}

/// The registry's PersistentVolumeClaim.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryVolumeClaimSpec {
    /// StorageClass of the claim; the cluster default when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Access modes (default ReadWriteMany, so more than one replica can mount it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_modes: Option<Vec<VolumeAccessMode>>,
    /// Requested size, e.g. `requests: {storage: 8Gi}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<VolumeResourceRequirements>,
    /// Delete the claim when the ImageRegistry is deleted (default false: images survive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_claim: Option<bool>,
}

/// A PersistentVolume access mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum VolumeAccessMode {
    ReadWriteOnce,
    ReadOnlyMany,
    ReadWriteMany,
    ReadWriteOncePod,
}

/// A certificate: issued by cert-manager (`issuerRef`), taken from a Secret (`secretName`), or self-signed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSource {
    /// cert-manager issuer that signs the certificate; the Secret is then written by cert-manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
    /// Secret (type kubernetes.io/tls) holding the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = schema::DNS_SUBDOMAIN_PATTERN), length(min = 1, max = 253))]
    pub secret_name: Option<String>,
}

/// A reference to a cert-manager Issuer or ClusterIssuer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Name of the issuer.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `Issuer` (default) or `ClusterIssuer`, or another issuer kind of `group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// API group of the issuer (default `cert-manager.io`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Token authentication settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Kept for compatibility with the original's docker_auth ConfigMap; not read by wharf (use `rules`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_name: Option<String>,
    /// Where the token-signing CA comes from; self-signed when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CertificateSource>,
    /// Issuer of the token-signing CA (older form of `ca.issuerRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
    /// Allow clients without credentials to pull (default false: deny by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_pull: Option<bool>,
    /// Access rules; when present, an account gets an action on a repository only if a rule grants it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<AccessRule>,
}

/// Grants actions on repositories to the accounts whose labels match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessRule {
    /// Account labels this rule applies to: each key must carry one of the listed values. Empty: every account.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, Vec<String>>,
    /// Repository globs (`*` within a path segment, `**` across); `${labels.KEY}` is the account's label value.
    #[schemars(length(min = 1))]
    pub repositories: Vec<String>,
    /// Actions granted (never more than the account's accessMode allows).
    #[schemars(length(min = 1))]
    pub actions: Vec<RegistryAction>,
}

/// An action on a repository.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RegistryAction {
    Pull,
    Push,
}

/// Type of the registry's Service.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RegistryServiceType {
    LoadBalancer,
    ClusterIP,
    NodePort,
}

/// Observed state of an ImageRegistry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageRegistryStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Synced` and `Ready`, with the original's reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,
    /// `<name>.<namespace>.<OPERATOR_DNS_ZONE>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The Secret holding the registry's serving certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
}

impl ImageRegistrySpec {
    /// Replicas in effect (default 1).
    pub fn effective_replicas(&self) -> i32 {
        self.replicas.unwrap_or(1)
    }

    /// Service type in effect (default LoadBalancer).
    pub fn effective_service_type(&self) -> RegistryServiceType {
        self.service_type
            .unwrap_or(RegistryServiceType::LoadBalancer)
    }
}
