//! Schema fragments shared by the kinds: host patterns, Kubernetes names, durations, conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::json;

/// A host name or IP address with an optional port, and nothing else: no scheme, no path.
pub const HOST_PORT_PATTERN: &str = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)(:[0-9]{1,5})?$";

/// A Kubernetes object name (DNS subdomain, RFC 1123).
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A Go `time.Duration` string as `metav1.Duration` serializes it, e.g. `24h`, `1h30m`, `90s`.
pub const GO_DURATION_PATTERN: &str = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$";

/// A bcrypt hash in modular crypt format (`$2a$`, `$2b$`, `$2x$` or `$2y$`).
pub const BCRYPT_PATTERN: &str = r"^\$2[abxy]?\$[0-9]{2}\$[./A-Za-z0-9]{53}$";

/// Standard `metav1.Condition` list, merged by `type` as Kubernetes conventions ask.
pub fn conditions(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = <Vec<Condition>>::json_schema(generator);
    schema.insert("x-kubernetes-list-type".into(), json!("map"));
    schema.insert("x-kubernetes-list-map-keys".into(), json!(["type"]));
    schema
}
