//! The local control plane is real: CRDs install and are served, the seed manifests are accepted,
//! invalid ones are refused naming the field, and the garbage collector deletes owned objects.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Resource;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams};
use wharf_core::crd::{
    ImagePullSecret, ImagePushSecret, ImageRegistry, ImageRegistryAccount, RegistryMirror,
};
use wharf_e2e::TestEnv;

fn resource_for(kind: &str) -> ApiResource {
    match kind {
        "RegistryMirror" => ApiResource::erase::<RegistryMirror>(&()),
        "ImageRegistry" => ApiResource::erase::<ImageRegistry>(&()),
        "ImageRegistryAccount" => ApiResource::erase::<ImageRegistryAccount>(&()),
        "ImagePushSecret" => ApiResource::erase::<ImagePushSecret>(&()),
        "ImagePullSecret" => ApiResource::erase::<ImagePullSecret>(&()),
        other => panic!("no wharf kind {other}"),
    }
}

fn seed_examples() -> Vec<DynamicObject> {
    ["seed-registrymirrors.yaml", "seed-imageregistry.yaml"]
        .iter()
        .flat_map(|file| {
            let path = wharf_e2e::repo_root().join("examples").join(file);
            let text = std::fs::read_to_string(&path).expect("example file");
            serde_yaml::Deserializer::from_str(&text)
                .map(|doc| serde::Deserialize::deserialize(doc).expect("example parses"))
                .collect::<Vec<DynamicObject>>()
        })
        .collect()
}

/// The API for `object`, in the test namespace when the kind is namespaced.
fn api_for(env: &TestEnv, object: &DynamicObject) -> Api<DynamicObject> {
    let kind = object
        .types
        .as_ref()
        .map(|t| t.kind.as_str())
        .unwrap_or_default();
    let resource = resource_for(kind);
    if kind == "RegistryMirror" {
        Api::all_with(env.client.clone(), &resource)
    } else {
        Api::namespaced_with(env.client.clone(), &env.namespace, &resource)
    }
}

#[tokio::test]
async fn crds_install_and_become_established() {
    let env = TestEnv::new("crds-established").await;
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    for crd in wharf_core::crd::all_crds() {
        let name = crd.metadata.name.expect("CRD name");
        let live = crds.get(&name).await.expect("CRD is installed");
        assert!(
            wharf_e2e::cluster_is_established(&live),
            "{name} is not Established"
        );
    }
    // And the kinds are served: listing each one works.
    for kind in [
        "RegistryMirror",
        "ImageRegistry",
        "ImageRegistryAccount",
        "ImagePushSecret",
        "ImagePullSecret",
    ] {
        let api: Api<DynamicObject> = Api::all_with(env.client.clone(), &resource_for(kind));
        api.list(&Default::default())
            .await
            .unwrap_or_else(|err| panic!("listing {kind}: {err}"));
    }
}

#[tokio::test]
async fn every_seed_example_is_accepted_by_the_real_server() {
    let env = TestEnv::new("seed-examples").await;
    let examples = seed_examples();
    assert_eq!(examples.len(), 10);
    for (index, mut object) in examples.into_iter().enumerate() {
        // Unique names: the seed READMEs reuse `docker` and `internal`.
        let name = format!(
            "{}-{index}-{}",
            object.metadata.name.clone().unwrap_or_default(),
            env.namespace
        );
        object.metadata.name = Some(
            name.chars()
                .take(63)
                .collect::<String>()
                .trim_end_matches('-')
                .to_owned(),
        );
        object.metadata.namespace = None;
        let api = api_for(&env, &object);
        let created = api
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|err| panic!("the server refused seed example {index}: {err}"));
        assert_eq!(
            created.data["spec"], object.data["spec"],
            "stored unchanged"
        );
        if object
            .types
            .as_ref()
            .is_some_and(|t| t.kind == "RegistryMirror")
        {
            let name = created.metadata.name.clone().expect("name");
            api.delete(&name, &DeleteParams::default())
                .await
                .expect("cleanup");
        }
    }
}

#[tokio::test]
async fn invalid_objects_are_refused_naming_the_field() {
    let env = TestEnv::new("invalid-objects").await;
    let cases = [
        (
            "RegistryMirror",
            serde_json::json!({"masqueradeUrl": "local.docker.io"}),
            "spec.upstreamUrl",
        ),
        (
            "RegistryMirror",
            serde_json::json!({"upstreamUrl": "https://hub.docker.io"}),
            "spec.upstreamUrl",
        ),
        (
            "ImageRegistry",
            serde_json::json!({"replicas": -1}),
            "spec.replicas",
        ),
        (
            "ImageRegistry",
            serde_json::json!({"serviceType": "Ingress"}),
            "spec.serviceType",
        ),
        (
            "ImageRegistryAccount",
            serde_json::json!({"password": "plain"}),
            "spec.password",
        ),
    ];
    for (index, (kind, spec, field)) in cases.into_iter().enumerate() {
        let resource = resource_for(kind);
        let mut object = DynamicObject::new(&format!("bad-{index}-{}", env.namespace), &resource);
        object.data = serde_json::json!({"spec": spec});
        let api = api_for(&env, &object);
        let err = api
            .create(&PostParams::default(), &object)
            .await
            .expect_err(&format!("{kind} {spec} must be refused"));
        let message = err.to_string();
        assert!(message.contains(field), "{kind}: {message}");
    }
}

#[tokio::test]
async fn owned_objects_are_garbage_collected() {
    let env = TestEnv::new("garbage-collection").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    let owner: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "owner"}})).expect("owner");
    let owner = config_maps
        .create(&PostParams::default(), &owner)
        .await
        .expect("owner created");
    let owner_ref = owner.controller_owner_ref(&()).expect("owner reference");
    let child: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "child", "ownerReferences": [owner_ref]}
    }))
    .expect("child");
    config_maps
        .create(&PostParams::default(), &child)
        .await
        .expect("child created");
    config_maps
        .delete("owner", &DeleteParams::background())
        .await
        .expect("owner deleted");
    env.wait_gone(&config_maps, "child", Duration::from_secs(60))
        .await;
}
