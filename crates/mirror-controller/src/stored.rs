//! RegistryMirrors as they are stored, whatever their spec. The seed's CRD had no schema, so old
//! objects may lack `upstreamUrl` or carry fields of the wrong type; watching the typed kind
//! would make one such object fail the list of all mirrors. Here only the metadata must parse;
//! the spec is read per mirror, and one that does not parse becomes that mirror's condition.

use std::borrow::Cow;

use k8s_openapi::ClusterResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wharf_core::crd::{RegistryMirror, RegistryMirrorSpec, RegistryMirrorStatus};
use wharf_core::mirror::HostClaim;

/// Why a stored spec cannot be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path == "." { String::new() } else { format!("spec.{path}: ") })]
pub struct SpecError {
    /// Where in the spec (`.` for the spec itself).
    pub path: String,
    pub message: String,
}

/// A RegistryMirror with its spec and status left unparsed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StoredMirror {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Value,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub status: Value,
}

impl Resource for StoredMirror {
    type DynamicType = ();
    type Scope = ClusterResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        RegistryMirror::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        RegistryMirror::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        RegistryMirror::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        RegistryMirror::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl StoredMirror {
    /// The typed mirror, or why its spec cannot be read (with the path of the field).
    pub fn typed(&self) -> Result<RegistryMirror, SpecError> {
        let spec: RegistryMirrorSpec = serde_path_to_error::deserialize(self.spec.clone())
            .map_err(|err| SpecError {
                path: err.path().to_string(),
                message: err.into_inner().to_string(),
            })?;
        Ok(RegistryMirror {
            metadata: self.metadata.clone(),
            spec,
            status: self.current_status(),
        })
    }

    /// The status as last written (it is only ever written by this controller).
    pub fn current_status(&self) -> Option<RegistryMirrorStatus> {
        if self.status.is_null() {
            return None;
        }
        serde_json::from_value(self.status.clone()).ok()
    }

    /// Whether condition `type_` is False with `reason`, read without parsing the status
    /// (this runs for every mirror on every mirror event).
    pub fn fails_with(&self, type_: &str, reason: &str) -> bool {
        self.status
            .get("conditions")
            .and_then(Value::as_array)
            .is_some_and(|conditions| {
                conditions.iter().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some(type_)
                        && c.get("status").and_then(Value::as_str) == Some("False")
                        && c.get("reason").and_then(Value::as_str) == Some(reason)
                })
            })
    }

    fn spec_text(&self, field: &str) -> Option<&str> {
        self.spec.get(field).and_then(Value::as_str)
    }

    /// `spec.credentialsSecret`, if readable.
    pub fn credentials_secret(&self) -> Option<&str> {
        self.spec_text("credentialsSecret")
    }

    /// The effective masquerade host, if the spec names one (or an upstream to derive it from).
    pub fn masquerade_host(&self) -> Option<String> {
        self.spec_text("masqueradeUrl")
            .map(str::to_owned)
            .or_else(|| self.spec_text("upstreamUrl").map(|u| format!("mirror-{u}")))
    }

    /// Whether this mirror's effective masquerade host is `host` (ignoring ASCII case), decided
    /// without building it: every reconcile asks this of every mirror.
    pub fn masquerades_as(&self, host: &str) -> bool {
        const DERIVED_PREFIX: &str = "mirror-";
        match self.spec_text("masqueradeUrl") {
            Some(own) => own.eq_ignore_ascii_case(host),
            None => self.spec_text("upstreamUrl").is_some_and(|upstream| {
                host.len() == DERIVED_PREFIX.len() + upstream.len()
                    && host
                        .get(..DERIVED_PREFIX.len())
                        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(DERIVED_PREFIX))
                    && host
                        .get(DERIVED_PREFIX.len()..)
                        .is_some_and(|rest| rest.eq_ignore_ascii_case(upstream))
            }),
        }
    }

    /// This mirror's claim on its masquerade host.
    pub fn host_claim(&self) -> Option<HostClaim<'_>> {
        Some(HostClaim {
            name: self.metadata.name.as_deref()?,
            created: self.metadata.creation_timestamp.as_ref(),
            deleting: self.metadata.deletion_timestamp.is_some(),
            host: self.masquerade_host()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(value: Value) -> StoredMirror {
        serde_json::from_value(value).expect("any object with metadata parses")
    }

    #[test]
    fn a_readable_spec_becomes_a_typed_mirror() {
        let mirror = stored(json!({
            "apiVersion": "k8s.osp.tech/v1", "kind": "RegistryMirror",
            "metadata": {"name": "docker", "uid": "u1", "generation": 2},
            "spec": {"upstreamUrl": "hub.docker.io", "credentialsSecret": "creds"},
            "status": {"observedGeneration": 1, "masqueradeUrl": "mirror-hub.docker.io"}
        }));
        let typed = mirror.typed().expect("typed");
        assert_eq!(typed.spec.upstream_url, "hub.docker.io");
        assert_eq!(typed.metadata.generation, Some(2));
        assert_eq!(typed.status.and_then(|s| s.observed_generation), Some(1));
        assert_eq!(mirror.credentials_secret(), Some("creds"));
        let claim = mirror.host_claim().expect("claim");
        assert_eq!(
            (claim.name, claim.host.as_str()),
            ("docker", "mirror-hub.docker.io")
        );
        assert!(mirror.masquerades_as("Mirror-Hub.Docker.io"));
        assert!(!mirror.masquerades_as("mirror-hub.docker.i"));
        assert!(!mirror.masquerades_as("hub.docker.io"));
        assert!(!mirror.masquerades_as("mirror-hub.docker.iö"));
        assert_eq!(StoredMirror::kind(&()), "RegistryMirror");
        assert!(!mirror.fails_with("Synced", "MasqueradeHostTaken"));
        let refused = stored(json!({
            "metadata": {"name": "r"},
            "status": {"conditions": [{"type": "Synced", "status": "False", "reason": "MasqueradeHostTaken"}]}
        }));
        assert!(refused.fails_with("Synced", "MasqueradeHostTaken"));
        assert!(!refused.fails_with("Ready", "MasqueradeHostTaken"));
        assert_eq!(StoredMirror::api_version(&()), "k8s.osp.tech/v1");
    }

    #[test]
    fn an_old_spec_still_parses_as_stored_and_says_what_is_wrong() {
        let mirror = stored(json!({
            "metadata": {"name": "old"},
            "spec": {"masqueradeUrl": "m.io", "volumeClaimTemplate": {"spec": {"resources": "big"}}}
        }));
        let err = mirror.typed().expect_err("unreadable spec").to_string();
        assert!(
            err.contains("upstreamUrl") || err.contains("resources"),
            "{err}"
        );
        assert_eq!(mirror.masquerade_host().as_deref(), Some("m.io"));
        assert!(mirror.masquerades_as("M.io"));
        assert!(!mirror.masquerades_as("mirror-m.io"));
        assert!(stored(json!({"metadata": {"name": "x"}})).typed().is_err());
        assert_eq!(
            stored(json!({"metadata": {"name": "x"}})).current_status(),
            None
        );
    }
}
