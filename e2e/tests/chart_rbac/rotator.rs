//! secret-rotator under its chart ServiceAccount, its CRs in the test namespace and the registry
//! (and so the accounts) in another one.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use wharf_core::crd::{
    ImagePullSecret, ImagePushSecret, ImageRegistry, ImageRegistryAccount, ImageSecretStatus,
    RegistryMirror,
};
use wharf_e2e::TestEnv;

use crate::registry::{ZONE, dry_delete, dry_post};
use crate::support::*;
use wharf_e2e::secret_text;

/// Ready at `rotation` for the current generation.
fn ready_at(status: Option<&ImageSecretStatus>, generation: Option<i64>, rotation: i64) -> bool {
    status.is_some_and(|s| {
        s.observed_generation == generation
            && has_condition(&s.conditions, "Ready", "True", None)
            && s.rotation == Some(rotation)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_rotator_reconciles_under_its_chart_account() {
    let env = TestEnv::new("rbac-rotator").await;
    let ns = env.namespace.clone();
    let registry_ns = format!("{ns}-r");
    let values = json!({
        "mirrorController": {"enabled": false},
        "registryController": {"enabled": false},
        "secretRotator": {
            "replicas": 0,
            "env": {"WATCH_NAMESPACE": ns, "OPERATOR_DEFAULT_REGISTRY_NAMESPACE": registry_ns},
            // Debug builds hash slowly; registry-auth verifies any cost.
            "extraEnv": [{"name": "OPERATOR_BCRYPT_COST", "value": "4"}],
        },
    });
    let release = Release::install(&env, std::slice::from_ref(&registry_ns), &values).await;

    // The default registry, in its own namespace, Ready as registry-controller would report it.
    let registries: Api<ImageRegistry> = Api::namespaced(env.client.clone(), &registry_ns);
    let registry: ImageRegistry = serde_json::from_value(json!({
        "apiVersion": "registry.mgoltzsche.github.com/v1alpha1",
        "kind": "ImageRegistry", "metadata": {"name": "registry"}, "spec": {}
    }))
    .expect("an ImageRegistry");
    registries
        .create(&PostParams::default(), &registry)
        .await
        .expect("creates the registry");
    let ca = "-----BEGIN CERTIFICATE-----\nRBAC-CA\n-----END CERTIFICATE-----\n";
    let tls: Secret = serde_json::from_value(json!({
        "metadata": {"name": "registry-tls"}, "type": "kubernetes.io/tls",
        "stringData": {"ca.crt": ca, "tls.crt": "LEAF", "tls.key": "KEY"}
    }))
    .expect("a Secret");
    Api::<Secret>::namespaced(env.client.clone(), &registry_ns)
        .create(&PostParams::default(), &tls)
        .await
        .expect("creates the registry's TLS Secret");
    let set_hostname = |hostname: String| {
        let registries = registries.clone();
        async move {
            let status = json!({"status": {
                "hostname": hostname, "tlsSecretName": "registry-tls",
                "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                                "message": "1/1 pods ready",
                                "lastTransitionTime": "2024-01-01T00:00:00Z"}]
            }});
            registries
                .patch_status("registry", &PatchParams::default(), &Patch::Merge(&status))
                .await
                .expect("sets the registry status");
        }
    };
    let first_host = format!("registry.{registry_ns}.{ZONE}");
    set_hostname(first_host.clone()).await;
    let (rotator, rotator_pod) = start_controller(&env, &release, "secret-rotator", &[]).await;

    // Create: accounts in the registry's namespace, Secrets and status in the CRs'.
    let pushes: Api<ImagePushSecret> = Api::namespaced(env.client.clone(), &ns);
    let pulls: Api<ImagePullSecret> = Api::namespaced(env.client.clone(), &ns);
    pushes
        .create(
            &PostParams::default(),
            &ImagePushSecret::new("app", Default::default()),
        )
        .await
        .expect("creates a push secret");
    let pull: ImagePullSecret = serde_json::from_value(json!({
        "apiVersion": "registry.mgoltzsche.github.com/v1alpha1", "kind": "ImagePullSecret",
        "metadata": {"name": "app"},
        "spec": {"registryRef": {"name": "registry", "namespace": registry_ns}}
    }))
    .expect("an ImagePullSecret");
    pulls
        .create(&PostParams::default(), &pull)
        .await
        .expect("creates a pull secret");
    let push_cr = env
        .wait_for(&pushes, "app", WAIT, |cr| {
            ready_at(cr.status.as_ref(), cr.metadata.generation, 1)
        })
        .await;
    let pull_cr = env
        .wait_for(&pulls, "app", WAIT, |cr| {
            ready_at(cr.status.as_ref(), cr.metadata.generation, 1)
        })
        .await;
    for finalizers in [push_cr.finalizers(), pull_cr.finalizers()] {
        assert!(!finalizers.is_empty(), "the rotator guards its accounts");
    }
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &ns);
    let push_secret = secrets
        .get("app-image-push-secret")
        .await
        .expect("push Secret");
    let pull_secret = secrets
        .get("app-image-pull-secret")
        .await
        .expect("pull Secret");
    for (secret, owner) in [
        (&push_secret, push_cr.uid().expect("uid")),
        (&pull_secret, pull_cr.uid().expect("uid")),
    ] {
        assert_eq!(secret_text(secret, "hostname"), first_host);
        assert_eq!(
            secret_text(secret, "ca.crt"),
            ca,
            "the CA is copied across namespaces"
        );
        assert!(controlled_by(&secret.metadata, &owner));
    }
    let accounts: Api<ImageRegistryAccount> = Api::namespaced(env.client.clone(), &registry_ns);
    let account_names = || async {
        let mut names: Vec<String> = accounts
            .list_metadata(&ListParams::default())
            .await
            .expect("lists accounts")
            .items
            .iter()
            .map(|a| a.name_any())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        account_names().await,
        [format!("pull.{ns}.app.1"), format!("push.{ns}.app.1")]
    );

    // A registry that does not exist: a False condition and a Warning Event, nothing else.
    let lost: ImagePushSecret = serde_json::from_value(json!({
        "apiVersion": "registry.mgoltzsche.github.com/v1alpha1", "kind": "ImagePushSecret",
        "metadata": {"name": "lost"}, "spec": {"registryRef": {"name": "absent"}}
    }))
    .expect("an ImagePushSecret");
    pushes
        .create(&PostParams::default(), &lost)
        .await
        .expect("creates a push secret of no registry");
    env.wait_for(&pushes, "lost", WAIT, |cr| {
        cr.status.as_ref().is_some_and(|s| {
            has_condition(&s.conditions, "Ready", "False", Some("RegistryUnavailable"))
        })
    })
    .await;
    wait_warning(&env, &ns, "lost", "RegistryUnavailable").await;
    pushes
        .delete("lost", &DeleteParams::default())
        .await
        .expect("deletes it");
    env.wait_gone(&pushes, "lost", WAIT).await;

    // Update: a new hostname is written without rotating; an edited Secret forces a rotation.
    let second_host = format!("moved.{registry_ns}.{ZONE}");
    set_hostname(second_host.clone()).await;
    env.wait_for(&secrets, "app-image-push-secret", WAIT, |s| {
        secret_text(s, "hostname") == second_host
    })
    .await;
    secrets
        .patch(
            "app-image-push-secret",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": "chosen-by-hand"}})),
        )
        .await
        .expect("edits the push Secret");
    env.wait_for(&pushes, "app", WAIT, |cr| {
        ready_at(cr.status.as_ref(), cr.metadata.generation, 2)
    })
    .await;
    assert!(
        account_names().await.contains(&format!("push.{ns}.app.2")),
        "{:?}",
        account_names().await
    );

    // Delete: the finalizer removes the CR's accounts in the other namespace; the Secret goes.
    pushes
        .delete("app", &DeleteParams::default())
        .await
        .expect("deletes the push secret");
    env.wait_gone(&pushes, "app", WAIT).await;
    assert_eq!(account_names().await, [format!("pull.{ns}.app.1")]);
    env.wait_gone(&secrets, "app-image-push-secret", WAIT).await;
    pulls
        .delete("app", &DeleteParams::default())
        .await
        .expect("deletes the pull secret");
    env.wait_gone(&pulls, "app", WAIT).await;
    assert!(account_names().await.is_empty());
    env.wait_gone(&secrets, "app-image-pull-secret", WAIT).await;
    assert_never_forbidden(&rotator);

    // Refusals.
    let client = client_from(&rotator_pod.kubeconfig(&env)).await;
    refused(
        Api::<Node>::all(client.clone())
            .delete("wharf-rbac-absent", &dry_delete())
            .await,
        "secret-rotator deleting a Node",
    );
    refused_listing(
        Api::<StatefulSet>::all(client.clone()),
        "secret-rotator reading StatefulSets",
    )
    .await;
    refused_listing(
        Api::<Pod>::namespaced(client.clone(), &ns),
        "secret-rotator reading Pods",
    )
    .await;
    refused(
        Api::<ImageRegistry>::namespaced(client.clone(), &registry_ns)
            .patch_status(
                "registry",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"hostname": "evil.example"}})),
            )
            .await,
        "secret-rotator writing a registry's status",
    );
    refused(
        Api::<ImageRegistry>::namespaced(client.clone(), &registry_ns)
            .create(&dry_post(), &registry)
            .await,
        "secret-rotator creating an ImageRegistry",
    );
    refused_listing(
        Api::<RegistryMirror>::all(client),
        "secret-rotator reading RegistryMirrors",
    )
    .await;
}
