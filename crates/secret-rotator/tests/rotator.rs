//! secret-rotator against the real API server: creation, scheduled and forced rotation, the grace
//! period, registry changes, deletion isolation and zero writes at rest.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use secret_rotator::kind::AccessMode;
use secret_rotator::names;
use serde_json::json;
use wharf_core::crd::{ImagePullSecret, ImagePushSecret, ImageRegistry, ImageRegistryAccount};
use wharf_e2e::TestEnv;

use common::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

#[tokio::test]
async fn a_registry_that_is_not_ready_is_reported_then_the_secret_appears() {
    let env = TestEnv::new("rotator-create").await;
    let _guard = FinalizerGuard::new(&env);
    start(&env, settings(&env, DAY, None));
    create_push_secret(&env, "example", Some(REGISTRY)).await;

    // No registry at all, then one that is not Ready.
    let crs: Api<ImagePushSecret> = Api::namespaced(env.client.clone(), &env.namespace);
    let absent = env
        .wait_for(&crs, "example", WAIT, |cr| {
            cr.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.reason == "RegistryUnavailable" && c.status == "False")
            })
        })
        .await;
    let status = absent.status.expect("status");
    assert!(
        status.conditions[0].message.contains("does not exist"),
        "{:?}",
        status.conditions
    );
    assert_eq!(
        status.registry.map(|r| r.namespace),
        Some(Some(env.namespace.clone()))
    );
    create_registry(&env).await;
    set_registry_status(&env, false, "registry.test.example").await;
    env.wait_for(&crs, "example", WAIT, |cr| {
        cr.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.reason == "RegistryUnavailable" && c.message.contains("0/1 pods"))
        })
    })
    .await;
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.namespace);
    let warnings = events.list(&ListParams::default()).await.expect("events");
    assert!(
        warnings
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("RegistryUnavailable")),
        "a Warning Event tells the user"
    );
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.namespace);
    assert!(
        secrets
            .get_opt("example-image-push-secret")
            .await
            .expect("read")
            .is_none(),
        "no Secret before the registry is Ready"
    );

    // Ready: account, Secret and status appear.
    set_registry_status(&env, true, "registry.test.example").await;
    let cr = wait_push_ready(&env, "example", 1).await;
    let status = cr.status.as_ref().expect("status");
    assert_eq!(status.observed_generation, cr.metadata.generation);
    assert!(status.rotation_date.is_some());
    assert!(
        cr.finalizers()
            .contains(&secret_rotator::FINALIZER.to_owned())
    );

    let secret = wait_push_secret(&env, "example", 1).await;
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    assert_eq!(data(&secret, "hostname"), "registry.test.example");
    assert_eq!(data(&secret, "registry"), "registry.test.example");
    assert_eq!(data(&secret, "ca.crt"), CA_V1);
    let owner = &secret.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("ImagePushSecret", "example", Some(true))
    );
    let config: serde_json::Value =
        serde_json::from_str(&data(&secret, "config.json")).expect("docker config JSON");
    let login = &config["auths"]["registry.test.example"];
    let username = login["username"].as_str().expect("username");
    let password = login["password"].as_str().expect("password");
    assert_eq!(username, format!("push.{}.example.1", env.namespace));
    assert!(password.len() >= 32);

    let accounts = accounts_of(&env, AccessMode::Push, "example").await;
    assert_eq!(accounts.len(), 1);
    let account = &accounts[0];
    assert_eq!(account.name_any(), username);
    assert_eq!(account.namespace().as_deref(), Some(env.namespace.as_str()));
    assert_eq!(account.spec.ttl.as_deref(), Some("24h0m0s"));
    assert_eq!(account.spec.labels["accessMode"], vec!["push"]);
    assert_eq!(account.spec.labels["name"], vec!["example"]);
    assert_eq!(
        account.spec.labels["namespace"],
        vec![env.namespace.clone()]
    );
    assert!(
        bcrypt::verify(password, &account.spec.password).expect("bcrypt hash"),
        "the account's hash is of the Secret's password"
    );

    // At rest: a reconcile (triggered by touching the registry) writes nothing.
    let before = (cr.clone(), secret.clone(), account.clone());
    let registries: Api<ImageRegistry> = Api::namespaced(env.client.clone(), &env.namespace);
    registries
        .patch(
            REGISTRY,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"poke": "1"}}})),
        )
        .await
        .expect("touch registry");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_cr = crs.get("example").await.expect("cr");
    let after_secret = secrets
        .get("example-image-push-secret")
        .await
        .expect("secret");
    let after_accounts = accounts_of(&env, AccessMode::Push, "example").await;
    assert_eq!(
        versions(&[&before.0]),
        versions(&[&after_cr]),
        "CR untouched"
    );
    assert_eq!(
        versions(&[&before.1]),
        versions(&[&after_secret]),
        "Secret untouched"
    );
    assert_eq!(after_accounts.len(), 1);
    assert_eq!(
        versions(&[&before.2]),
        versions(&[&after_accounts[0]]),
        "account untouched"
    );
}

#[tokio::test]
async fn a_pull_secret_of_the_default_registry_is_a_dockerconfigjson() {
    let env = TestEnv::new("rotator-pull").await;
    let _guard = FinalizerGuard::new(&env);
    create_registry(&env).await;
    set_registry_status(&env, true, "registry.pull.example").await;
    start(&env, settings(&env, DAY, None));
    create_pull_secret(&env, "puller").await;
    let crs: Api<ImagePullSecret> = Api::namespaced(env.client.clone(), &env.namespace);
    let cr = env
        .wait_for(&crs, "puller", WAIT, |cr| {
            ready_at(cr.status.as_ref(), Some(1))
        })
        .await;
    let registry = cr
        .status
        .and_then(|s| s.registry)
        .expect("registry in status");
    assert_eq!(registry.name, REGISTRY);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.namespace);
    let secret = secrets
        .get("puller-image-pull-secret")
        .await
        .expect("Secret");
    assert_eq!(
        secret.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    let config: serde_json::Value =
        serde_json::from_str(&data(&secret, ".dockerconfigjson")).expect("JSON");
    assert_eq!(
        config["auths"]["registry.pull.example"]["username"],
        format!("pull.{}.puller.1", env.namespace)
    );
    assert_eq!(data(&secret, "ca.crt"), CA_V1);
    let accounts = accounts_of(&env, AccessMode::Pull, "puller").await;
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].spec.labels["accessMode"], vec!["pull"]);
}

#[tokio::test]
async fn passwords_rotate_and_old_accounts_live_out_their_ttl() {
    let env = TestEnv::new("rotator-schedule").await;
    let _guard = FinalizerGuard::new(&env);
    create_registry(&env).await;
    set_registry_status(&env, true, "registry.rotate.example").await;
    let ttl = Duration::from_secs(20);
    start(&env, settings(&env, ttl, Some(Duration::from_secs(10))));
    create_push_secret(&env, "rotating", None).await;
    let first = wait_push_secret(&env, "rotating", 1).await;
    let first_password = data(&first, "password");
    let first_account = accounts_of(&env, AccessMode::Push, "rotating").await[0].clone();
    assert_eq!(first_account.spec.ttl.as_deref(), Some("20s"));

    // 10 s later: rotation 2; account 1 still valid (grace period).
    let second = wait_push_secret(&env, "rotating", 2).await;
    assert_ne!(data(&second, "password"), first_password);
    let accounts = accounts_of(&env, AccessMode::Push, "rotating").await;
    let names: Vec<String> = accounts.iter().map(|a| a.name_any()).collect();
    assert!(
        names.contains(&first_account.name_any()),
        "the old account stays until its ttl: {names:?}"
    );
    let cr = wait_push_ready(&env, "rotating", 2).await;
    let first_date = first.annotations()["wharf.dev/rotation-date"].clone();
    let second_date = cr.status.and_then(|s| s.rotation_date).expect("date").0;
    let gap = second_date.as_second()
        - first_date
            .parse::<k8s_openapi::jiff::Timestamp>()
            .expect("date")
            .as_second();
    assert!(
        (10..=13).contains(&gap),
        "rotated {gap}s after the first password"
    );

    // Account 1 goes once its ttl has passed, not before.
    let accounts: Api<ImageRegistryAccount> = Api::namespaced(env.client.clone(), &env.namespace);
    env.wait_gone(&accounts, &first_account.name_any(), WAIT)
        .await;
    let created = first_account
        .metadata
        .creation_timestamp
        .as_ref()
        .expect("created")
        .0;
    let gone_after = k8s_openapi::jiff::Timestamp::now().as_second() - created.as_second();
    assert!(
        gone_after >= 20,
        "deleted {gone_after}s after creation, before its 20s ttl"
    );
    assert!(
        gone_after <= 25,
        "deleted late: {gone_after}s after creation"
    );
}

#[tokio::test]
async fn editing_or_deleting_the_secret_forces_a_rotation() {
    let env = TestEnv::new("rotator-forced").await;
    let _guard = FinalizerGuard::new(&env);
    create_registry(&env).await;
    set_registry_status(&env, true, "registry.forced.example").await;
    start(&env, settings(&env, DAY, None));
    create_push_secret(&env, "forced", None).await;
    let first = wait_push_secret(&env, "forced", 1).await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.namespace);
    let secret_name = first.name_any();

    // An edit (a different password) is replaced by a new login.
    secrets
        .patch(
            &secret_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": "chosen-by-hand"}})),
        )
        .await
        .expect("edit Secret");
    let second = wait_push_secret(&env, "forced", 2).await;
    assert_ne!(data(&second, "password"), "chosen-by-hand");
    assert_ne!(data(&second, "password"), data(&first, "password"));
    wait_push_ready(&env, "forced", 2).await;

    // A deletion brings the Secret back with a new login.
    secrets
        .delete(&secret_name, &DeleteParams::default())
        .await
        .expect("delete Secret");
    let third = wait_push_secret(&env, "forced", 3).await;
    assert_ne!(data(&third, "password"), data(&second, "password"));
    wait_push_ready(&env, "forced", 3).await;

    // Old logins keep working until their ttl: all three accounts exist.
    let accounts = accounts_of(&env, AccessMode::Push, "forced").await;
    let rotations: Vec<Option<i64>> = accounts
        .iter()
        .map(secret_rotator::account::rotation_of)
        .collect();
    assert_eq!(rotations, vec![Some(1), Some(2), Some(3)]);

    // Deleting the account the Secret logs in as also brings a new login.
    let current: Api<ImageRegistryAccount> = Api::namespaced(env.client.clone(), &env.namespace);
    current
        .delete(&accounts[2].name_any(), &DeleteParams::default())
        .await
        .expect("delete the current account");
    let fourth = wait_push_secret(&env, "forced", 4).await;
    assert_ne!(data(&fourth, "password"), data(&third, "password"));
    wait_push_ready(&env, "forced", 4).await;
}

#[tokio::test]
async fn pointing_at_another_registry_moves_the_login_there() {
    let env = TestEnv::new("rotator-move").await;
    let _guard = FinalizerGuard::new(&env);
    create_registry(&env).await;
    set_registry_status(&env, true, "registry.first.example").await;
    let registries: Api<ImageRegistry> = Api::namespaced(env.client.clone(), &env.namespace);
    let other: ImageRegistry = serde_json::from_value(json!({
        "apiVersion": "registry.mgoltzsche.github.com/v1alpha1",
        "kind": "ImageRegistry",
        "metadata": {"name": "other"},
        "spec": {}
    }))
    .expect("registry object");
    registries
        .create(&Default::default(), &other)
        .await
        .expect("create the other registry");
    let ready = json!({"status": {
        "hostname": "registry.other.example",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "1/1 pods ready",
                        "lastTransitionTime": "2024-01-01T00:00:00Z"}]
    }});
    registries
        .patch_status("other", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .expect("other registry Ready");
    start(&env, settings(&env, DAY, None));
    create_push_secret(&env, "mover", Some(REGISTRY)).await;
    wait_push_secret(&env, "mover", 1).await;

    let crs: Api<ImagePushSecret> = Api::namespaced(env.client.clone(), &env.namespace);
    crs.patch(
        "mover",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"registryRef": {"name": "other"}}})),
    )
    .await
    .expect("point at the other registry");
    let moved = wait_push_secret(&env, "mover", 2).await;
    assert_eq!(data(&moved, "hostname"), "registry.other.example");
    assert_eq!(
        data(&moved, "ca.crt"),
        "",
        "the other registry names no TLS Secret"
    );
    let cr = wait_push_ready(&env, "mover", 2).await;
    let status = cr.status.expect("status");
    assert_eq!(status.registry.map(|r| r.name), Some("other".to_owned()));
    assert_eq!(status.observed_generation, Some(2));
}

#[tokio::test]
async fn a_new_hostname_or_ca_rewrites_the_secret_without_rotating() {
    let env = TestEnv::new("rotator-endpoint").await;
    let _guard = FinalizerGuard::new(&env);
    create_registry(&env).await;
    set_registry_status(&env, true, "registry.old.example").await;
    start(&env, settings(&env, DAY, None));
    create_push_secret(&env, "endpoint", None).await;
    let first = wait_push_secret(&env, "endpoint", 1).await;
    let password = data(&first, "password");
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.namespace);

    set_registry_status(&env, true, "registry.new.example").await;
    let moved = env
        .wait_for(&secrets, &first.name_any(), WAIT, |s| {
            data(s, "hostname") == "registry.new.example"
        })
        .await;
    assert_eq!(data(&moved, "password"), password, "same login");
    assert_eq!(moved.annotations()["wharf.dev/rotation"], "1");
    let config: serde_json::Value =
        serde_json::from_str(&data(&moved, "config.json")).expect("JSON");
    assert_eq!(
        config["auths"]["registry.new.example"]["password"],
        password.as_str()
    );
    assert!(config["auths"].get("registry.old.example").is_none());

    let new_ca = "-----BEGIN CERTIFICATE-----\nCA-TWO\n-----END CERTIFICATE-----\n";
    set_tls_ca(&env, new_ca).await;
    let renewed = env
        .wait_for(&secrets, &first.name_any(), WAIT, |s| {
            data(s, "ca.crt") == new_ca
        })
        .await;
    assert_eq!(data(&renewed, "password"), password, "same login");
    assert_eq!(
        accounts_of(&env, AccessMode::Push, "endpoint").await.len(),
        1
    );
    let cr = wait_push_ready(&env, "endpoint", 1).await;
    assert_eq!(cr.status.and_then(|s| s.rotation), Some(1));
}

#[tokio::test]
async fn deleting_a_cr_deletes_its_own_accounts_only() {
    let env = TestEnv::new("rotator-isolation").await;
    let _guard = FinalizerGuard::new(&env);
    create_registry(&env).await;
    set_registry_status(&env, true, "registry.iso.example").await;
    start(&env, settings(&env, DAY, None));
    // Same name, other kind; a name that starts the same; a long dotted name.
    let long = format!("{}.tail", ["segment"; 30].join("."));
    assert!(long.len() > 200);
    create_push_secret(&env, "shared", None).await;
    create_pull_secret(&env, "shared").await;
    create_push_secret(&env, "shared.more", None).await;
    create_push_secret(&env, &long, None).await;
    for name in ["shared", "shared.more", long.as_str()] {
        wait_push_ready(&env, name, 1).await;
    }
    let pulls: Api<ImagePullSecret> = Api::namespaced(env.client.clone(), &env.namespace);
    env.wait_for(&pulls, "shared", WAIT, |cr| {
        ready_at(cr.status.as_ref(), Some(1))
    })
    .await;

    let long_accounts = accounts_of(&env, AccessMode::Push, &long).await;
    assert_eq!(long_accounts.len(), 1);
    let long_account = long_accounts[0].name_any();
    assert!(long_account.len() <= 253, "{long_account}");
    assert!(long_account.ends_with(".1"), "{long_account}");
    assert!(
        long_accounts[0]
            .labels()
            .values()
            .all(|value| value.len() <= 63)
    );
    assert_eq!(long_accounts[0].spec.labels["name"], vec![long.clone()]);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.namespace);
    assert!(
        secrets
            .get_opt(&names::secret_name(AccessMode::Push, &long))
            .await
            .expect("read")
            .is_some()
    );

    let pushes: Api<ImagePushSecret> = Api::namespaced(env.client.clone(), &env.namespace);
    for name in ["shared", long.as_str()] {
        pushes
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete CR");
        env.wait_gone(&pushes, name, WAIT).await;
        assert!(accounts_of(&env, AccessMode::Push, name).await.is_empty());
    }
    assert_eq!(accounts_of(&env, AccessMode::Pull, "shared").await.len(), 1);
    assert_eq!(
        accounts_of(&env, AccessMode::Push, "shared.more")
            .await
            .len(),
        1
    );
    let all: Api<ImageRegistryAccount> = Api::namespaced(env.client.clone(), &env.namespace);
    let left: Vec<String> = all
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|a| a.name_any())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

#[tokio::test]
async fn a_secret_that_cannot_be_written_fails_the_sync_without_piling_up_accounts() {
    let env = TestEnv::new("rotator-failed-sync").await;
    let _guard = FinalizerGuard::new(&env);
    create_registry(&env).await;
    set_registry_status(&env, true, "registry.blocked.example").await;
    // Someone else's Secret of another type holds the name (a Secret's type cannot change).
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.namespace);
    let blocker: Secret = serde_json::from_value(json!({
        "metadata": {"name": "blocked-image-pull-secret"},
        "type": "Opaque",
        "stringData": {"mine": "yes"}
    }))
    .expect("secret object");
    secrets
        .create(&Default::default(), &blocker)
        .await
        .expect("create the blocking Secret");
    start(&env, settings(&env, DAY, None));
    create_pull_secret(&env, "blocked").await;

    let crs: Api<ImagePullSecret> = Api::namespaced(env.client.clone(), &env.namespace);
    let failed = env
        .wait_for(&crs, "blocked", WAIT, |cr| {
            cr.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.reason == "FailedSync" && c.status == "False")
            })
        })
        .await;
    let message = &failed.status.expect("status").conditions[0].message;
    assert!(
        message.contains("write Secret") && message.contains("blocked-image-pull-secret"),
        "{message}"
    );
    // A retry (after 10 s) must reuse the login it created, not create another account.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        accounts_of(&env, AccessMode::Pull, "blocked").await.len(),
        1
    );
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.namespace);
    assert!(
        events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("FailedSync")),
        "a Warning Event tells the user"
    );

    // Once the name is free, that same login is written.
    secrets
        .delete("blocked-image-pull-secret", &DeleteParams::default())
        .await
        .expect("delete the blocking Secret");
    env.wait_for(&crs, "blocked", WAIT, |cr| {
        ready_at(cr.status.as_ref(), Some(1))
    })
    .await;
    let secret = secrets
        .get("blocked-image-pull-secret")
        .await
        .expect("the Secret");
    let accounts = accounts_of(&env, AccessMode::Pull, "blocked").await;
    assert_eq!(accounts.len(), 1);
    assert_eq!(data(&secret, "username"), accounts[0].name_any());
    assert!(
        bcrypt::verify(data(&secret, "password"), &accounts[0].spec.password).expect("hash"),
        "the Secret holds the password of the account created by the failed attempt"
    );
}
