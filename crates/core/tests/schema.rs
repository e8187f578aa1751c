//! The generated CRD schemas accept every seed example and reject invalid input, naming the field.

use std::path::Path;

use jsonschema::Validator;
use serde_json::{Value, json};
use wharf_core::crd::{self, ImageRegistry, RegistryMirror};

fn examples(file: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("example file exists");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("example is YAML"))
        .collect()
}

/// The JSON schema of a kind's stored version, as the API server validates it.
fn validator(kind: &str) -> Validator {
    let crd = crd::all_crds()
        .into_iter()
        .find(|crd| crd.spec.names.kind == kind)
        .expect("kind has a CRD");
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("CRD has a schema");
    let schema = serde_json::to_value(schema).expect("schema serializes");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

/// Validation errors as `path: message` lines.
fn errors(object: &Value) -> Vec<String> {
    let kind = object["kind"].as_str().expect("object has a kind");
    validator(kind)
        .iter_errors(object)
        .map(|err| format!("{}: {err}", err.instance_path()))
        .collect()
}

fn all_examples() -> Vec<Value> {
    let mut all = examples("seed-registrymirrors.yaml");
    all.extend(examples("seed-imageregistry.yaml"));
    all
}

#[test]
fn every_seed_example_passes_the_schema() {
    let all = all_examples();
    assert_eq!(all.len(), 10, "all seed examples are covered");
    for example in &all {
        assert_eq!(errors(example), Vec::<String>::new(), "{example}");
    }
}

#[test]
fn every_seed_example_deserializes_into_its_type() {
    for example in all_examples() {
        let kind = example["kind"].as_str().map(str::to_owned);
        let parsed = match kind.as_deref() {
            Some("RegistryMirror") => serde_json::from_value::<RegistryMirror>(example).map(drop),
            Some("ImageRegistry") => serde_json::from_value::<ImageRegistry>(example).map(drop),
            Some("ImagePushSecret") => {
                serde_json::from_value::<crd::ImagePushSecret>(example).map(drop)
            }
            Some("ImagePullSecret") => {
                serde_json::from_value::<crd::ImagePullSecret>(example).map(drop)
            }
            Some("ImageRegistryAccount") => {
                serde_json::from_value::<crd::ImageRegistryAccount>(example).map(drop)
            }
            other => panic!("unexpected kind {other:?}"),
        };
        parsed.unwrap_or_else(|err| panic!("{kind:?}: {err}"));
    }
}

/// Applies `edit` to the first example of `kind` and returns the validation errors.
fn errors_after(kind: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut object = all_examples()
        .into_iter()
        .find(|e| e["kind"] == kind)
        .expect("an example of the kind");
    edit(&mut object);
    errors(&object).join("\n")
}

#[test]
fn a_mirror_without_upstream_is_rejected() {
    let errors = errors_after("RegistryMirror", |m| {
        m["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("upstreamUrl");
    });
    assert!(
        errors.contains("/spec") && errors.contains("upstreamUrl"),
        "{errors}"
    );
}

#[test]
fn hosts_with_a_scheme_or_path_are_rejected() {
    for (field, bad) in [
        ("upstreamUrl", "https://hub.docker.io"),
        ("upstreamUrl", "hub.docker.io/library"),
        ("upstreamUrl", "hub docker"),
        ("masqueradeUrl", "http://local.docker.io"),
        ("masqueradeUrl", "local.docker.io/v2"),
    ] {
        let errors = errors_after("RegistryMirror", |m| m["spec"][field] = bad.into());
        assert!(
            errors.contains(&format!("/spec/{field}")),
            "{field}={bad}: {errors}"
        );
    }
    for good in [
        "hub.docker.io",
        "registry-1.docker.io:443",
        "10.0.0.1:5000",
        "localhost",
    ] {
        let errors = errors_after("RegistryMirror", |m| m["spec"]["upstreamUrl"] = good.into());
        assert!(errors.is_empty(), "{good}: {errors}");
    }
}

#[test]
fn out_of_range_numbers_are_rejected() {
    let errors = errors_after("ImageRegistry", |r| r["spec"]["replicas"] = (-1).into());
    assert!(errors.contains("/spec/replicas"), "{errors}");
    let errors = errors_after("RegistryMirror", |m| m["spec"]["tagTtlSeconds"] = 0.into());
    assert!(errors.contains("/spec/tagTtlSeconds"), "{errors}");
}

#[test]
fn unknown_enum_values_are_rejected() {
    let errors = errors_after("ImageRegistry", |r| {
        r["spec"]["persistentVolumeClaim"]["accessModes"][0] = "ReadWriteSometimes".into();
    });
    assert!(
        errors.contains("/spec/persistentVolumeClaim/accessModes/0"),
        "{errors}"
    );
    let errors = errors_after("ImageRegistry", |r| {
        r["spec"]["serviceType"] = "Ingress".into()
    });
    assert!(errors.contains("/spec/serviceType"), "{errors}");
    let errors = errors_after("ImageRegistry", |r| {
        r["spec"]["auth"]["rules"] = json!([{"repositories": ["*"], "actions": ["delete"]}]);
    });
    assert!(errors.contains("/spec/auth/rules/0/actions/0"), "{errors}");
}

#[test]
fn accounts_need_a_bcrypt_hash_and_a_go_duration() {
    let errors = errors_after("ImageRegistryAccount", |a| {
        a["spec"]["password"] = "hunter2".into()
    });
    assert!(errors.contains("/spec/password"), "{errors}");
    let errors = errors_after("ImageRegistryAccount", |a| a["spec"]["ttl"] = "1d".into());
    assert!(errors.contains("/spec/ttl"), "{errors}");
    let errors = errors_after("ImageRegistryAccount", |a| {
        a["spec"].as_object_mut().expect("spec").remove("password");
    });
    assert!(errors.contains("password"), "{errors}");
}

#[test]
fn registry_refs_need_a_valid_name() {
    let errors = errors_after("ImagePushSecret", |s| {
        s["spec"]["registryRef"]["name"] = "Not_A_Name".into();
    });
    assert!(errors.contains("/spec/registryRef/name"), "{errors}");
}

#[test]
fn every_kind_has_status_generation_and_conditions_keyed_by_type() {
    for crd in crd::all_crds() {
        let kind = &crd.spec.names.kind;
        let version = &crd.spec.versions[0];
        let schema = serde_json::to_value(&version.schema).expect("serializes");
        let status = &schema["openAPIV3Schema"]["properties"]["status"]["properties"];
        assert_eq!(
            status["conditions"]["x-kubernetes-list-type"], "map",
            "{kind}"
        );
        assert_eq!(
            status["conditions"]["x-kubernetes-list-map-keys"],
            json!(["type"]),
            "{kind}"
        );
        assert!(status.get("observedGeneration").is_some(), "{kind}");
        let has_status_subresource = version
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some());
        assert!(has_status_subresource, "{kind}");
        assert!(
            version
                .additional_printer_columns
                .as_ref()
                .is_some_and(|c| c.len() >= 3),
            "{kind}"
        );
    }
}

#[test]
fn seed_api_identity_is_kept() {
    let crds = crd::all_crds();
    let mirror = &crds[0];
    assert_eq!(
        mirror.metadata.name.as_deref(),
        Some("registrymirrors.k8s.osp.tech")
    );
    assert_eq!(mirror.spec.scope, "Cluster");
    assert_eq!(mirror.spec.names.short_names, Some(vec!["rm".to_owned()]));
    assert_eq!(mirror.spec.versions[0].name, "v1");
    for crd in &crds[1..] {
        assert_eq!(crd.spec.group, "registry.mgoltzsche.github.com");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.versions[0].name, "v1alpha1");
    }
    let columns: Vec<_> = mirror.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        ["Upstream", "Masquerade", "Cluster-IP", "Ready", "Age"]
    );
}
