//! `ImageRegistryAccount`: one login (username = object name) of the registry in its namespace.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;

/// Label key (in `spec.labels`) naming the account's access mode: `push` or `pull`.
pub const ACCOUNT_LABEL_ACCESS_MODE: &str = "accessMode";
/// Label key (in `spec.labels`) naming the namespace of the push/pull secret that owns the account.
pub const ACCOUNT_LABEL_NAMESPACE: &str = "namespace";
/// Label key (in `spec.labels`) naming the push/pull secret that owns the account.
pub const ACCOUNT_LABEL_NAME: &str = "name";

/// The account's credentials, the labels access rules match, and its lifetime.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "registry.mgoltzsche.github.com",
    version = "v1alpha1",
    kind = "ImageRegistryAccount",
    plural = "imageregistryaccounts",
    singular = "imageregistryaccount",
    namespaced,
    doc = "An account of the ImageRegistry in the same namespace; the username is the object name.",
    status = "ImageRegistryAccountStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Access","type":"string","jsonPath":".spec.labels.accessMode[0]"}"#,
    printcolumn = r#"{"name":"TTL","type":"string","jsonPath":".spec.ttl"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ImageRegistryAccountSpec {
    /// bcrypt hash of the account's password.
    #[schemars(regex(pattern = schema::BCRYPT_PATTERN))]
    pub password: String,
    /// Labels matched by the registry's access rules (key → values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, Vec<String>>,
    /// Lifetime from creation (Go duration, e.g. `24h`); the account is refused after it. None: no expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = schema::GO_DURATION_PATTERN))]
    pub ttl: Option<String>,
}

/// Observed state of an account.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageRegistryAccountStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,
}
