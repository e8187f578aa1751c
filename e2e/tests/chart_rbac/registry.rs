//! registry-controller under its chart ServiceAccount, with registry-auth under the account it
//! makes for each registry.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use wharf_core::crd::{
    ImageRegistry, ImageRegistryAccount, ImageRegistryAccountSpec, RegistryMirror,
};
use wharf_core::registry::auth_env;
use wharf_e2e::TestEnv;

use crate::support::*;
use wharf_e2e::secret_text;

pub const ZONE: &str = "rbac.test";

pub fn dry_post() -> PostParams {
    PostParams {
        dry_run: true,
        ..PostParams::default()
    }
}

pub fn dry_delete() -> DeleteParams {
    DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    }
}

fn registry_condition(registry: &ImageRegistry, type_: &str, status: &str) -> bool {
    registry.status.as_ref().is_some_and(|s| {
        s.observed_generation == registry.metadata.generation
            && has_condition(&s.conditions, type_, status, None)
    })
}

/// Synced for the current generation; Ready False ("Updating") because no pod may run here.
fn registry_synced(registry: &ImageRegistry) -> bool {
    registry_condition(registry, "Synced", "True")
        && registry
            .status
            .as_ref()
            .is_some_and(|s| has_condition(&s.conditions, "Ready", "False", Some("Updating")))
}

/// The `access[0].actions` of a token answer.
fn granted_actions(body: &str) -> Vec<String> {
    let answer: serde_json::Value = serde_json::from_str(body).expect("a token answer");
    let token = answer["token"].as_str().expect("a token");
    let payload = token.split('.').nth(1).expect("a JWT payload");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("claims");
    claims["access"][0]["actions"]
        .as_array()
        .map(|actions| {
            actions
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_controller_and_registry_auth_reconcile_under_their_accounts() {
    ensure_curl();
    let env = TestEnv::new("rbac-registry").await;
    let ns = env.namespace.clone();
    let values = json!({
        "mirrorController": {"enabled": false},
        "registryController": {"replicas": 0,
                               "env": {"WATCH_NAMESPACE": ns, "OPERATOR_DNS_ZONE": ZONE}},
        "secretRotator": {"enabled": false},
    });
    let release = Release::install(&env, &[], &values).await;
    let (controller, controller_pod) =
        start_controller(&env, &release, "registry-controller", &[]).await;

    // Create: every child, owned by the registry, and the status.
    let registries: Api<ImageRegistry> = Api::namespaced(env.client.clone(), &ns);
    let registry: ImageRegistry = serde_json::from_value(json!({
        "apiVersion": "registry.mgoltzsche.github.com/v1alpha1",
        "kind": "ImageRegistry",
        "metadata": {"name": "registry"},
        "spec": {"persistentVolumeClaim": {"deleteClaim": true}},
    }))
    .expect("an ImageRegistry");
    registries
        .create(&PostParams::default(), &registry)
        .await
        .expect("creates the registry");
    let live = env
        .wait_for(&registries, "registry", WAIT, registry_synced)
        .await;
    let hostname = format!("registry.{ns}.{ZONE}");
    assert_eq!(
        live.status.as_ref().and_then(|s| s.hostname.as_deref()),
        Some(hostname.as_str())
    );
    let uid = live.uid().expect("uid");
    let client = env.client.clone();
    let mut owned = vec![
        (
            "StatefulSet",
            Api::<StatefulSet>::namespaced(client.clone(), &ns)
                .get("registry")
                .await
                .map(|o| o.metadata),
        ),
        (
            "Service",
            Api::<Service>::namespaced(client.clone(), &ns)
                .get("registry")
                .await
                .map(|o| o.metadata),
        ),
        (
            "PersistentVolumeClaim",
            Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
                .get("imageregistry-registry-pvc")
                .await
                .map(|o| o.metadata),
        ),
        (
            "ServiceAccount",
            Api::<ServiceAccount>::namespaced(client.clone(), &ns)
                .get("imageregistry-registry")
                .await
                .map(|o| o.metadata),
        ),
        (
            "Role",
            Api::<Role>::namespaced(client.clone(), &ns)
                .get("imageregistry-registry")
                .await
                .map(|o| o.metadata),
        ),
        (
            "RoleBinding",
            Api::<RoleBinding>::namespaced(client.clone(), &ns)
                .get("imageregistry-registry")
                .await
                .map(|o| o.metadata),
        ),
    ];
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for name in [
        "registry-tls",
        "registry-tls-ca",
        "registry-auth-ca",
        "imageregistry-registry-config",
    ] {
        owned.push(("Secret", secrets.get(name).await.map(|o| o.metadata)));
    }
    for (kind, meta) in owned {
        let meta = meta.unwrap_or_else(|err| panic!("{kind} of the registry: {err}"));
        assert!(
            controlled_by(&meta, &uid),
            "{kind} {:?} is owned by the registry",
            meta.name
        );
    }

    // registry-auth, as the registry pod would run it, under the account made for it.
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let statefulset = statefulsets.get("registry").await.expect("StatefulSet");
    let template = &statefulset.spec.as_ref().expect("spec").template;
    let pod = PodProcess::new(&env, &ns, template, "registry-auth", "registry-0").await;
    assert_eq!(pod.service_account, "imageregistry-registry");
    let (auth_port, http_port) = (free_port(), free_port());
    let mut command = pod.command(&env, "registry-auth");
    command
        .env(auth_env::ENV_LISTEN_ADDR, format!("127.0.0.1:{auth_port}"))
        .env("HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("LOG_FORMAT", "text");
    let auth = env.spawn_process("registry-auth", command);
    wait_ready(&auth, http_port).await;
    let accounts: Api<ImageRegistryAccount> = Api::namespaced(client.clone(), &ns);
    let account = ImageRegistryAccount::new(
        "puller",
        ImageRegistryAccountSpec {
            password: bcrypt::hash("pull-pw", 4).expect("a bcrypt hash"),
            labels: BTreeMap::from([("accessMode".to_owned(), vec!["pull".to_owned()])]),
            ttl: None,
        },
    );
    accounts
        .create(&PostParams::default(), &account)
        .await
        .expect("creates an account");
    let ca_file = pod.path("/rbac-test/ca.crt");
    std::fs::create_dir_all(ca_file.parent().expect("a parent")).expect("a CA directory");
    let serving = secrets.get("registry-tls").await.expect("registry-tls");
    std::fs::write(&ca_file, secret_text(&serving, "ca.crt")).expect("the registry CA");
    let service = pod
        .env(auth_env::ENV_TOKEN_SERVICE)
        .expect("TOKEN_SERVICE")
        .to_owned();
    let url = format!(
        "https://{hostname}:{auth_port}/auth/token?service={service}&scope=repository:team/app:pull,push"
    );
    let resolve = format!("{hostname}:{auth_port}:127.0.0.1");
    let ca = ca_file.display().to_string();
    let token = |login: &'static str| {
        let (url, resolve, ca) = (url.clone(), resolve.clone(), ca.clone());
        async move {
            curl(&[
                "--max-time",
                "10",
                "--resolve",
                &resolve,
                "--cacert",
                &ca,
                "-u",
                login,
                &url,
            ])
            .await
        }
    };
    // The account may take a moment to reach registry-auth's watch.
    let deadline = tokio::time::Instant::now() + WAIT;
    let body = loop {
        let (status, body) = token("puller:pull-pw").await;
        if status == 200 {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no token for the pull account (last {status}: {body})\n{}",
            auth.log_tail(60)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(granted_actions(&body), ["pull"], "{}", auth.log_tail(20));
    assert_eq!(token("puller:wrong").await.0, 401);
    assert_never_forbidden(&auth);

    // Refusals of registry-auth: its accounts and its own registry, nothing else.
    let auth_client = client_from(&pod.kubeconfig(&env)).await;
    let other: ImageRegistry = serde_json::from_value(json!({
        "apiVersion": "registry.mgoltzsche.github.com/v1alpha1",
        "kind": "ImageRegistry", "metadata": {"name": "other"}, "spec": {}
    }))
    .expect("an ImageRegistry");
    refused(
        Api::<ImageRegistry>::namespaced(auth_client.clone(), &ns)
            .create(&dry_post(), &other)
            .await,
        "registry-auth creating an ImageRegistry",
    );
    registries
        .create(&PostParams::default(), &other)
        .await
        .expect("creates another registry");
    refused(
        Api::<ImageRegistry>::namespaced(auth_client.clone(), &ns)
            .get("other")
            .await,
        "registry-auth reading another registry",
    );
    refused_listing(
        Api::<Secret>::namespaced(auth_client.clone(), &ns),
        "registry-auth reading Secrets",
    )
    .await;
    refused(
        Api::<ImageRegistryAccount>::namespaced(auth_client, &ns)
            .create(&dry_post(), &account)
            .await,
        "registry-auth creating an account",
    );
    // Its Role goes with the registry below: stop it before it is refused for that reason.
    auth.stop();

    // An invalid spec is reported (condition and Warning Event), not deployed.
    let broken: ImageRegistry = serde_json::from_value(json!({
        "apiVersion": "registry.mgoltzsche.github.com/v1alpha1",
        "kind": "ImageRegistry", "metadata": {"name": "broken"},
        "spec": {"auth": {"rules": [{"repositories": ["${user}/**"], "actions": ["pull"]}]}}
    }))
    .expect("an ImageRegistry");
    registries
        .create(&PostParams::default(), &broken)
        .await
        .expect("creates an invalid registry");
    env.wait_for(&registries, "broken", WAIT, |r| {
        r.status
            .as_ref()
            .is_some_and(|s| has_condition(&s.conditions, "Synced", "False", Some("InvalidSpec")))
    })
    .await;
    wait_warning(&env, &ns, "broken", "InvalidSpec").await;
    assert!(
        statefulsets
            .get_opt("broken")
            .await
            .expect("reads")
            .is_none(),
        "an invalid registry is not deployed"
    );

    // Update: more replicas reach the StatefulSet and the status.
    registries
        .patch(
            "registry",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .expect("scales the registry");
    env.wait_for(&statefulsets, "registry", WAIT, |s| {
        s.spec.as_ref().and_then(|s| s.replicas) == Some(2)
    })
    .await;
    env.wait_for(&registries, "registry", WAIT, registry_synced)
        .await;

    // Delete: every owned child is garbage-collected.
    registries
        .delete("registry", &DeleteParams::default())
        .await
        .expect("deletes the registry");
    env.wait_gone(&registries, "registry", WAIT).await;
    env.wait_gone(&statefulsets, "registry", WAIT).await;
    env.wait_gone(
        &Api::<Service>::namespaced(client.clone(), &ns),
        "registry",
        WAIT,
    )
    .await;
    env.wait_gone(
        &Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns),
        "imageregistry-registry-pvc",
        WAIT,
    )
    .await;
    env.wait_gone(
        &Api::<ServiceAccount>::namespaced(client.clone(), &ns),
        "imageregistry-registry",
        WAIT,
    )
    .await;
    env.wait_gone(
        &Api::<Role>::namespaced(client.clone(), &ns),
        "imageregistry-registry",
        WAIT,
    )
    .await;
    env.wait_gone(
        &Api::<RoleBinding>::namespaced(client.clone(), &ns),
        "imageregistry-registry",
        WAIT,
    )
    .await;
    for name in [
        "registry-tls",
        "registry-tls-ca",
        "registry-auth-ca",
        "imageregistry-registry-config",
    ] {
        env.wait_gone(&secrets, name, WAIT).await;
    }
    assert_never_forbidden(&controller);

    // Refusals of registry-controller.
    let controller_client = client_from(&controller_pod.kubeconfig(&env)).await;
    registry_controller_refusals(&controller_client, &ns, &account).await;
}

async fn registry_controller_refusals(client: &Client, ns: &str, account: &ImageRegistryAccount) {
    refused(
        Api::<Node>::all(client.clone())
            .delete("wharf-rbac-absent", &dry_delete())
            .await,
        "registry-controller deleting a Node",
    );
    let cluster_role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": "wharf-rbac-not-mine"},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    }))
    .expect("a ClusterRole");
    refused(
        Api::<ClusterRole>::all(client.clone())
            .create(&dry_post(), &cluster_role)
            .await,
        "registry-controller creating a ClusterRole",
    );
    refused_listing(
        Api::<RegistryMirror>::all(client.clone()),
        "registry-controller reading RegistryMirrors",
    )
    .await;
    refused(
        Api::<ImageRegistryAccount>::namespaced(client.clone(), ns)
            .create(&dry_post(), account)
            .await,
        "registry-controller creating an account",
    );
}
