//! Server-side apply with one field manager per controller, and the "already applied?" check that
//! lets an unchanged object reconcile with zero writes.

use std::fmt::Debug;

use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::owned_fields::drops_applied_field;

/// Field manager name of a wharf component, e.g. `wharf-mirror-controller`.
pub fn field_manager(component: &str) -> String {
    format!("wharf-{component}")
}

/// Applies `desired` with server-side apply, taking ownership of the fields it sets (`force`),
/// as a controller that is the single writer of its children must.
pub async fn apply<K>(api: &Api<K>, manager: &str, desired: &K) -> kube::Result<K>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = desired.meta().name.as_deref().unwrap_or_default();
    api.patch(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(desired),
    )
    .await
}

/// Applies `desired` unless `live` already holds every field of it; returns whether it wrote.
pub async fn apply_if_changed<K>(
    api: &Api<K>,
    manager: &str,
    live: Option<&K>,
    desired: &K,
) -> kube::Result<bool>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    if let Some(live) = live
        && is_applied(desired, live, manager)
    {
        return Ok(false);
    }
    apply(api, manager, desired).await?;
    Ok(true)
}

/// Applies a status with server-side apply on the status subresource. `status` is the kind's
/// status struct; apiVersion and kind are added here as apply requires.
pub async fn apply_status<K, S>(
    api: &Api<K>,
    manager: &str,
    name: &str,
    status: &S,
) -> kube::Result<K>
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug,
    S: Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&patch),
    )
    .await
}

/// Whether `live` already carries everything `desired` sets, ignoring what the server adds
/// (defaults, metadata, status), and `manager` applied no field that `desired` dropped (that
/// one must be sent so the API server removes it). Serialization failures count as "not
/// applied", so we write.
pub fn is_applied<K: Resource + Serialize>(desired: &K, live: &K, manager: &str) -> bool {
    match (serde_json::to_value(desired), serde_json::to_value(live)) {
        (Ok(desired_json), Ok(live_json)) => {
            json_subset(&desired_json, &live_json)
                && !drops_applied_field(
                    live.meta().managed_fields.as_deref().unwrap_or_default(),
                    manager,
                    &desired_json,
                )
        }
        _ => false,
    }
}

/// Whether every field set in `desired` is present with an equal value in `live`. Objects are
/// compared key by key (extra live keys are fine), arrays element by element (same length).
pub fn json_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => {
            want.iter().all(|(key, value)| match have.get(key) {
                Some(live_value) => json_subset(value, live_value),
                None => is_empty(value),
            })
        }
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| json_subset(w, h))
        }
        _ => desired == live,
    }
}

/// Values the API server drops when stored (so their absence in `live` is no difference).
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.values().all(is_empty),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extra_live_fields_do_not_matter() {
        let desired =
            json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"port": 443}});
        let live = json!({
            "metadata": {"name": "a", "labels": {"x": "1"}, "uid": "u", "resourceVersion": "7"},
            "spec": {"port": 443, "clusterIP": "10.96.0.1"},
            "status": {}
        });
        assert!(json_subset(&desired, &live));
    }

    #[test]
    fn a_changed_or_missing_value_is_a_difference() {
        let live = json!({"spec": {"port": 443, "list": [1, 2]}});
        assert!(!json_subset(&json!({"spec": {"port": 444}}), &live));
        assert!(!json_subset(&json!({"spec": {"other": 1}}), &live));
        assert!(!json_subset(&json!({"spec": {"list": [1]}}), &live));
        assert!(!json_subset(&json!({"spec": {"list": [1, 3]}}), &live));
    }

    #[test]
    fn empty_desired_values_match_absent_live_ones() {
        let live = json!({"spec": {"port": 443}});
        assert!(json_subset(
            &json!({"spec": {"tolerations": [], "extra": null, "m": {}}}),
            &live
        ));
    }

    #[test]
    fn field_manager_is_prefixed() {
        assert_eq!(
            field_manager("mirror-controller"),
            "wharf-mirror-controller"
        );
    }
}
