//! The Helm chart: lints, renders for the defaults and for each component alone with a locked-down
//! pod spec, installs on the real API server, and gives each component's ServiceAccount no more
//! than its job needs.

use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use serde_json::{Value, json};
use wharf_e2e::TestEnv;

const COMPONENTS: [&str; 3] = ["mirrorController", "registryController", "secretRotator"];

fn kind(object: &DynamicObject) -> &str {
    object
        .types
        .as_ref()
        .map(|t| t.kind.as_str())
        .unwrap_or_default()
}

fn deployments(objects: &[DynamicObject]) -> Vec<&DynamicObject> {
    objects.iter().filter(|o| kind(o) == "Deployment").collect()
}

fn only(component: &str) -> Value {
    let mut values = serde_json::Map::new();
    for other in COMPONENTS {
        values.insert(other.into(), json!({"enabled": other == component}));
    }
    Value::Object(values)
}

#[test]
fn chart_lints() {
    wharf_e2e::lint_chart();
}

#[test]
fn defaults_render_every_controller_locked_down() {
    let objects = wharf_e2e::render_chart("wharf", "wharf-system", &json!({}));
    let deployments = deployments(&objects);
    let names: Vec<_> = deployments
        .iter()
        .filter_map(|d| d.metadata.name.as_deref())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for deployment in deployments {
        let pod = &deployment.data["spec"]["template"]["spec"];
        let name = deployment.metadata.name.as_deref().unwrap_or_default();
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        let container = &pod["containers"][0];
        assert_eq!(
            container["securityContext"]["readOnlyRootFilesystem"], true,
            "{name}"
        );
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"], false,
            "{name}"
        );
        assert_eq!(
            container["securityContext"]["capabilities"]["drop"],
            json!(["ALL"]),
            "{name}"
        );
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"], "/healthz",
            "{name}"
        );
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"], "/readyz",
            "{name}"
        );
        assert!(
            container["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("docker.io/wharf/")),
            "{name}"
        );
        assert_eq!(
            deployment.metadata.namespace.as_deref(),
            Some("wharf-system")
        );
    }
    for object in &objects {
        if kind(object) != "ClusterRole" && kind(object) != "ClusterRoleBinding" {
            assert!(
                object.metadata.namespace.is_some(),
                "{} has a namespace",
                kind(object)
            );
        }
    }
    assert!(
        objects.iter().all(|o| kind(o) != "ServiceMonitor"),
        "ServiceMonitors are opt-in"
    );
}

#[test]
fn each_component_renders_alone() {
    for component in COMPONENTS {
        let objects = wharf_e2e::render_chart("w", "ns", &only(component));
        let deployments = deployments(&objects);
        assert_eq!(deployments.len(), 1, "{component}");
        let expected = match component {
            "mirrorController" => "w-mirror-controller",
            "registryController" => "w-registry-controller",
            _ => "w-secret-rotator",
        };
        assert_eq!(deployments[0].metadata.name.as_deref(), Some(expected));
    }
}

#[test]
fn seed_settings_reach_the_controllers_and_replicas_elect_a_leader() {
    let values = json!({
        "mirrorController": {"replicas": 2, "env": {
            "ADDRESSING_SCHEME": "services", "IMAGESWAP_NAMESPACE": "imageswap",
            "SS_DS_LABELS": "{\"team\":\"infra\"}", "IMAGE_PULL_SECRETS": "a,b"
        }},
        "metrics": {"serviceMonitor": {"enabled": true}}
    });
    let objects = wharf_e2e::render_chart("wharf", "wharf-system", &values);
    let mirror = deployments(&objects)
        .into_iter()
        .find(|d| d.metadata.name.as_deref() == Some("wharf-mirror-controller"))
        .expect("mirror-controller Deployment");
    let container = &mirror.data["spec"]["template"]["spec"]["containers"][0];
    let env: Vec<(String, String)> = container["env"]
        .as_array()
        .expect("env list")
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_owned(),
                e["value"].as_str()?.to_owned(),
            ))
        })
        .collect();
    let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert_eq!(get("ADDRESSING_SCHEME"), Some("services"));
    assert_eq!(get("IMAGESWAP_NAMESPACE"), Some("imageswap"));
    assert_eq!(get("SS_DS_LABELS"), Some("{\"team\":\"infra\"}"));
    assert_eq!(get("IMAGE_PULL_SECRETS"), Some("a,b"));
    assert_eq!(get("NAMESPACE"), Some("wharf-system"));
    assert_eq!(get("LEADER_ELECTION"), Some("true"));
    assert_eq!(mirror.data["spec"]["replicas"], 2);
    assert_eq!(
        container["livenessProbe"]["exec"]["command"][1], "--map-check",
        "services mode checks the map"
    );
    let imageswap_role = objects
        .iter()
        .find(|o| kind(o) == "Role" && o.metadata.namespace.as_deref() == Some("imageswap"));
    assert!(imageswap_role.is_some(), "a Role in IMAGESWAP_NAMESPACE");
    assert_eq!(
        objects
            .iter()
            .filter(|o| kind(o) == "ServiceMonitor")
            .count(),
        3
    );
}

/// Installs the chart with the Helm SDK into the test namespace, without pods; returns the
/// release name.
async fn install(env: &TestEnv) -> String {
    let release = format!(
        "w{}",
        &env.namespace[env.namespace.len().saturating_sub(8)..]
    );
    // No controller pod: the local node may be up with the images imported, and a controller
    // of this release would reconcile every other test's objects there.
    let no_pods = json!({
        "mirrorController": {"replicas": 0},
        "registryController": {"replicas": 0},
        "secretRotator": {"replicas": 0},
    });
    wharf_e2e::install_chart(&release, &env.namespace, &no_pods);
    release
}

#[tokio::test]
async fn installs_and_rbac_allows_the_job_and_nothing_more() {
    let env = TestEnv::new("chart-install").await;
    let release = install(&env).await;
    let ns = env.namespace.clone();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(env.client.clone(), &ns);
    for component in ["mirror-controller", "registry-controller", "secret-rotator"] {
        let deployment = deployments
            .get(&format!("{release}-{component}"))
            .await
            .unwrap_or_else(|err| panic!("{component} Deployment installed: {err}"));
        assert_eq!(
            deployment.spec.and_then(|s| s.replicas),
            Some(0),
            "{component} runs no pod on the local node"
        );
    }

    let can = |sa: &str| env.client_as(&ns, &format!("{release}-{sa}"));
    let mirror = can("mirror-controller");
    let registry = can("registry-controller");
    let rotator = can("secret-rotator");
    let mirrors = |client| Api::<wharf_core::crd::RegistryMirror>::all(client);
    let secrets = |client, namespace: &str| {
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client, namespace)
    };
    let statefulsets = |client| Api::<k8s_openapi::api::apps::v1::StatefulSet>::all(client);
    let accounts = |client| Api::<wharf_core::crd::ImageRegistryAccount>::all(client);

    // Allowed: each controller's own kinds.
    mirrors(mirror.clone())
        .list_metadata(&ListParams::default())
        .await
        .expect("mirror-controller lists mirrors");
    secrets(mirror.clone(), &ns)
        .list_metadata(&ListParams::default())
        .await
        .expect("mirror-controller reads its namespace's Secrets");
    statefulsets(registry.clone())
        .list_metadata(&ListParams::default())
        .await
        .expect("registry-controller lists StatefulSets");
    accounts(rotator.clone())
        .list_metadata(&ListParams::default())
        .await
        .expect("secret-rotator lists accounts");

    // Refused: what belongs to someone else.
    let refused = |result: Result<_, kube::Error>, what: &str| match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what} must be forbidden, got {other:?}"),
    };
    refused(
        secrets(mirror.clone(), "kube-system")
            .list_metadata(&ListParams::default())
            .await
            .map(drop),
        "mirror-controller reading kube-system Secrets",
    );
    refused(
        accounts(mirror.clone())
            .list_metadata(&ListParams::default())
            .await
            .map(drop),
        "mirror-controller reading accounts",
    );
    refused(
        mirrors(registry.clone())
            .list_metadata(&ListParams::default())
            .await
            .map(drop),
        "registry-controller reading mirrors",
    );
    refused(
        statefulsets(rotator.clone())
            .list_metadata(&ListParams::default())
            .await
            .map(drop),
        "secret-rotator reading StatefulSets",
    );
    refused(
        mirrors(rotator)
            .list_metadata(&ListParams::default())
            .await
            .map(drop),
        "secret-rotator reading mirrors",
    );
    refused(
        accounts(registry)
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await
            .map(drop),
        "registry-controller deleting accounts",
    );

    let _gone = wharf_e2e::delete_release_cluster_rbac(&env.client, &release).await;
}
