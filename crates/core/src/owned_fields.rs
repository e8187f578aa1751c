//! The fields a field manager applied to an object, read from its `managedFields`: a field it
//! applied before and no longer wants must be sent again, so that the API server removes it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use serde_json::Value;

/// Whether `manager` applied (server-side apply, main resource) a field of the object that
/// `desired` (the object as JSON) no longer sets. Status fields are not judged: the desired
/// state of a child never carries one, and before Kubernetes 1.22 a status apply is recorded in
/// the same entry as the main resource's.
pub fn drops_applied_field(entries: &[ManagedFieldsEntry], manager: &str, desired: &Value) -> bool {
    entries
        .iter()
        .filter(|entry| {
            entry.manager.as_deref() == Some(manager)
                && entry.operation.as_deref() == Some("Apply")
                && entry.subresource.as_deref().unwrap_or_default().is_empty()
        })
        .filter_map(|entry| entry.fields_v1.as_ref())
        .any(|fields| match &fields.0 {
            Value::Object(owned) => owned
                .iter()
                .filter(|(key, _)| key.as_str() != "f:status")
                .any(|(key, owned)| misses(key, owned, desired)),
            _ => false,
        })
}

/// Whether the owned entry `key` (with the fields owned below it) is missing from `desired`,
/// the value that holds it. Keys follow the `FieldsV1` format: `f:<field>` a map field,
/// `k:<json>` a list item by its key fields, `v:<json>` a set member, `i:<n>` a list index
/// (not judged), `.` the value itself.
fn misses(key: &str, owned: &Value, desired: &Value) -> bool {
    if let Some(field) = key.strip_prefix("f:") {
        return match desired.get(field) {
            None | Some(Value::Null) => true,
            Some(value) => misses_below(owned, value),
        };
    }
    if let Some(item_key) = key.strip_prefix("k:") {
        let (Ok(Value::Object(item_key)), Value::Array(items)) =
            (serde_json::from_str::<Value>(item_key), desired)
        else {
            return false;
        };
        // Key fields the desired item leaves out are defaulted by the server (a port's
        // protocol): they do not tell items apart.
        let matches = |item: &&Value| {
            item_key
                .iter()
                .all(|(field, value)| item.get(field).is_none_or(|own| own == value))
        };
        return match items.iter().find(matches) {
            None => true,
            Some(item) => misses_below(owned, item),
        };
    }
    if let Some(member) = key.strip_prefix("v:") {
        return match (serde_json::from_str::<Value>(member), desired) {
            (Ok(member), Value::Array(items)) => !items.contains(&member),
            _ => false,
        };
    }
    false
}

fn misses_below(owned: &Value, desired: &Value) -> bool {
    match owned {
        Value::Object(owned) => owned.iter().any(|(key, owned)| misses(key, owned, desired)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;
    use serde_json::json;

    use super::*;

    fn applied(manager: &str, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Apply".into()),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(FieldsV1(fields)),
            ..ManagedFieldsEntry::default()
        }
    }

    fn statefulset_fields() -> Value {
        json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:team": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:template": {"f:spec": {
                    "f:priorityClassName": {},
                    "f:containers": {"k:{\"name\":\"nginx\"}": {
                        ".": {},
                        "f:name": {},
                        "f:env": {"k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}},
                        "f:ports": {"k:{\"containerPort\":5000,\"protocol\":\"TCP\"}": {
                            "f:containerPort": {}
                        }}
                    }},
                    "f:imagePullSecrets": {"k:{\"name\":\"regcred\"}": {".": {}, "f:name": {}}}
                }}
            }
        })
    }

    fn statefulset() -> Value {
        json!({
            "metadata": {"labels": {"app": "x", "team": "a"}},
            "spec": {
                "replicas": 2,
                "template": {"spec": {
                    "priorityClassName": "high",
                    "containers": [{
                        "name": "nginx",
                        "env": [{"name": "A", "value": "1"}],
                        "ports": [{"containerPort": 5000}]
                    }],
                    "imagePullSecrets": [{"name": "regcred"}]
                }}
            }
        })
    }

    fn drops(desired: &Value) -> bool {
        let entries = [applied("wharf", statefulset_fields())];
        drops_applied_field(&entries, "wharf", desired)
    }

    #[test]
    fn the_same_desired_state_drops_nothing() {
        assert!(!drops(&statefulset()));
    }

    #[test]
    fn a_removed_map_field_is_a_drop() {
        let mut desired = statefulset();
        desired["spec"]["template"]["spec"]
            .as_object_mut()
            .expect("pod spec")
            .remove("priorityClassName");
        assert!(drops(&desired));
        let mut desired = statefulset();
        desired["metadata"]["labels"]
            .as_object_mut()
            .expect("labels")
            .remove("team");
        assert!(drops(&desired));
    }

    #[test]
    fn a_removed_list_item_or_a_field_inside_one_is_a_drop() {
        let mut desired = statefulset();
        desired["spec"]["template"]["spec"]["imagePullSecrets"] = json!([]);
        assert!(drops(&desired));
        let mut desired = statefulset();
        desired["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .expect("container")
            .remove("env");
        assert!(drops(&desired));
        let mut desired = statefulset();
        desired["spec"]["template"]["spec"]["containers"][0]["name"] = json!("other");
        assert!(drops(&desired));
    }

    #[test]
    fn key_fields_the_server_defaulted_still_match() {
        // The port's protocol is in the key but not in the desired item.
        assert!(!drops(&statefulset()));
        let mut desired = statefulset();
        desired["spec"]["template"]["spec"]["containers"][0]["ports"] =
            json!([{"containerPort": 5000, "protocol": "UDP"}]);
        assert!(drops(&desired));
    }

    #[test]
    fn added_fields_are_not_drops() {
        let mut desired = statefulset();
        desired["spec"]["template"]["spec"]["hostNetwork"] = json!(true);
        desired["metadata"]["labels"]["new"] = json!("1");
        assert!(!drops(&desired));
    }

    #[test]
    fn only_the_managers_own_applies_count() {
        let desired = json!({"metadata": {}});
        let fields = json!({"f:metadata": {"f:labels": {"f:team": {}}}});
        let mut update = applied("wharf", fields.clone());
        update.operation = Some("Update".into());
        let mut status = applied("wharf", fields.clone());
        status.subresource = Some("status".into());
        let others = [applied("kubectl", fields), update, status];
        assert!(!drops_applied_field(&others, "wharf", &desired));
    }

    #[test]
    fn status_and_set_members_are_judged_as_documented() {
        let entries = [applied(
            "wharf",
            json!({
                "f:status": {"f:conditions": {}},
                "f:metadata": {"f:finalizers": {"v:\"wharf.dev/x\"": {}}}
            }),
        )];
        let kept = json!({"metadata": {"finalizers": ["wharf.dev/x"]}});
        assert!(!drops_applied_field(&entries, "wharf", &kept));
        let dropped = json!({"metadata": {"finalizers": []}});
        assert!(drops_applied_field(&entries, "wharf", &dropped));
    }
}
