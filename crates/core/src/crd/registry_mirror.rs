//! `RegistryMirror` (`k8s.osp.tech/v1`): a pull-through caching mirror of one upstream registry.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;

/// How long a manifest fetched by tag is served from cache before it is revalidated upstream.
pub const DEFAULT_TAG_TTL_SECONDS: u32 = 60;

/// What a mirror proxies, how nodes address it and how much it may cache.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "k8s.osp.tech",
    version = "v1",
    kind = "RegistryMirror",
    plural = "registrymirrors",
    singular = "registrymirror",
    shortname = "rm",
    doc = "A pull-through caching mirror of an upstream container registry, run inside the cluster.",
    status = "RegistryMirrorStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Upstream","type":"string","jsonPath":".spec.upstreamUrl"}"#,
    printcolumn = r#"{"name":"Masquerade","type":"string","jsonPath":".status.masqueradeUrl"}"#,
    printcolumn = r#"{"name":"Cluster-IP","type":"string","jsonPath":".status.clusterIP"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RegistryMirrorSpec {
    /// Host (and optional port) of the upstream registry, without scheme or path, e.g. `registry-1.docker.io`.
    #[schemars(regex(pattern = schema::HOST_PORT_PATTERN), length(min = 1, max = 259))]
    pub upstream_url: String,

    /// Host name the nodes use for this mirror; defaults to `mirror-` + upstreamUrl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = schema::HOST_PORT_PATTERN), length(min = 1, max = 259))]
    pub masquerade_url: Option<String>,

    /// Secret in the controller's namespace with keys `username` and `password` for the upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = schema::DNS_SUBDOMAIN_PATTERN), length(min = 1, max = 253))]
    pub credentials_secret: Option<String>,

    /// PersistentVolumeClaim template of the cache volume (`image-store`); defaults to 20Gi ReadWriteOnce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_template: Option<VolumeClaimTemplate>,

    /// PriorityClass of the mirror's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = schema::DNS_SUBDOMAIN_PATTERN), length(min = 1, max = 253))]
    pub priority_class: Option<String>,

    /// Seconds a manifest fetched by tag is served from cache before it is revalidated (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub tag_ttl_seconds: Option<u32>,
}

/// A PersistentVolumeClaim template, as in a StatefulSet's `volumeClaimTemplates`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeClaimTemplate {
    /// Labels and annotations copied to the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ClaimMetadata>,
    /// The claim's spec (storageClassName, accessModes, resources…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PersistentVolumeClaimSpec>,
}

/// The metadata a claim template may carry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Observed state of a RegistryMirror.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryMirrorStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// ClusterIP of the mirror's Service.
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,

    /// The masquerade host in effect (the spec's, or the default derived from upstreamUrl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masquerade_url: Option<String>,

    /// Current conditions: `Ready` and the reasons behind it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,
}

impl RegistryMirrorSpec {
    /// The masquerade host in effect: the spec's, else `mirror-` + upstreamUrl (as the seed did).
    pub fn effective_masquerade_url(&self) -> String {
        self.masquerade_url
            .clone()
            .unwrap_or_else(|| format!("mirror-{}", self.upstream_url))
    }

    /// The tag revalidation TTL in effect.
    pub fn effective_tag_ttl_seconds(&self) -> u32 {
        self.tag_ttl_seconds.unwrap_or(DEFAULT_TAG_TTL_SECONDS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(upstream: &str) -> RegistryMirrorSpec {
        RegistryMirrorSpec {
            upstream_url: upstream.into(),
            masquerade_url: None,
            credentials_secret: None,
            volume_claim_template: None,
            priority_class: None,
            tag_ttl_seconds: None,
        }
    }

    #[test]
    fn masquerade_defaults_to_mirror_prefix() {
        assert_eq!(
            spec("hub.docker.io").effective_masquerade_url(),
            "mirror-hub.docker.io"
        );
        let mut explicit = spec("hub.docker.io");
        explicit.masquerade_url = Some("local.docker.io".into());
        assert_eq!(explicit.effective_masquerade_url(), "local.docker.io");
    }

    #[test]
    fn tag_ttl_defaults_to_sixty_seconds() {
        assert_eq!(spec("x").effective_tag_ttl_seconds(), 60);
    }
}
