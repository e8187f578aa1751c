//! `ImagePushSecret` and `ImagePullSecret`: a rotating registry login delivered as a Secret.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;

/// Defines one of the two secret kinds: they share the spec shape, the status and the printer columns.
macro_rules! image_secret_kind {
    ($spec:ident, $kind:literal, $plural:literal, $singular:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
        #[kube(
            group = "registry.mgoltzsche.github.com",
            version = "v1alpha1",
            kind = $kind,
            plural = $plural,
            singular = $singular,
            namespaced,
            doc = $doc,
            status = "ImageSecretStatus",
            derive = "PartialEq",
            printcolumn = r#"{"name":"Registry","type":"string","jsonPath":".status.registry.name"}"#,
            printcolumn = r#"{"name":"Rotation","type":"integer","jsonPath":".status.rotation"}"#,
            printcolumn = r#"{"name":"Rotated","type":"date","jsonPath":".status.rotationDate"}"#,
            printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
            printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
        )]
        #[serde(rename_all = "camelCase")]
        pub struct $spec {
            /// The registry to log in to; the operator's default registry when empty.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub registry_ref: Option<ImageRegistryRef>,
        }
    };
}

image_secret_kind!(
    ImagePushSecretSpec,
    "ImagePushSecret",
    "imagepushsecrets",
    "imagepushsecret",
    "A push (and pull) login to a registry, kept in Secret `<name>-image-push-secret` (key `config.json`)."
);
image_secret_kind!(
    ImagePullSecretSpec,
    "ImagePullSecret",
    "imagepullsecrets",
    "imagepullsecret",
    "A pull login to a registry, kept in Secret `<name>-image-pull-secret` (type kubernetes.io/dockerconfigjson)."
);

/// A reference to an ImageRegistry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageRegistryRef {
    /// Name of the ImageRegistry.
    #[schemars(regex(pattern = schema::DNS_SUBDOMAIN_PATTERN), length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the ImageRegistry; the push/pull secret's own namespace when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = schema::DNS_SUBDOMAIN_PATTERN), length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// Observed state of an ImagePushSecret or ImagePullSecret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSecretStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, with reasons `RegistryUnavailable` or `FailedSync` when not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,
    /// When the current password was generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_date: Option<Time>,
    /// How many times the password was rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<i64>,
    /// The registry in use, with its namespace resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<ImageRegistryRef>,
}
