//! End to end with the real token server and registry: registry-auth (in-process) authenticates
//! the accounts the rotator creates, docker-registry 2.8 enforces its tokens, and skopeo logs in
//! with nothing but the rotator's Secret (its Docker config as auth file, its `ca.crt` as the only
//! trusted CA). An old password keeps working through the grace period and is refused after its
//! TTL.

mod common;
#[path = "../../registry-auth/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use secret_rotator::kind::AccessMode;
use wharf_core::crd::{ImagePullSecret, ImageRegistryAccount};
use wharf_e2e::TestEnv;

use common::{
    FinalizerGuard, REGISTRY, WAIT, accounts_of, create_pull_secret, create_push_secret, data,
    ready_at, set_registry_status, set_tls_ca, settings, start, wait_push_secret,
};

/// Writes what a pod would mount from the Secret: the Docker config and the CA.
fn mount(secret: &Secret, key: &str, dir: &Path) -> (PathBuf, PathBuf) {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).expect("creates the cert dir");
    std::fs::write(certs.join("ca.crt"), data(secret, "ca.crt")).expect("writes ca.crt");
    let auth_file = dir.join("auth.json");
    std::fs::write(&auth_file, data(secret, key)).expect("writes the auth file");
    (auth_file, certs)
}

/// skopeo copy of the test image to `reference`, logged in with the mounted Secret.
async fn push_with(layout: &Path, reference: &str, mounted: &(PathBuf, PathBuf)) -> (bool, String) {
    let (auth_file, certs) = mounted;
    let source = format!("oci:{}:v1", layout.display());
    let destination = format!("docker://{reference}");
    support::skopeo(&[
        "copy",
        "--dest-authfile",
        &auth_file.display().to_string(),
        "--dest-cert-dir",
        &certs.display().to_string(),
        &source,
        &destination,
    ])
    .await
}

/// skopeo copy from `reference` into a fresh layout, logged in with the mounted Secret.
async fn pull_with(reference: &str, into: &Path, mounted: &(PathBuf, PathBuf)) -> (bool, String) {
    let (auth_file, certs) = mounted;
    let source = format!("docker://{reference}");
    let destination = format!("oci:{}:pulled", into.display());
    support::skopeo(&[
        "copy",
        "--src-authfile",
        &auth_file.display().to_string(),
        "--src-cert-dir",
        &certs.display().to_string(),
        &source,
        &destination,
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_logs_in_with_the_secret_through_rotation_and_is_refused_after_expiry() {
    support::ensure_tools();
    let env = TestEnv::new("rotator-e2e").await;
    let _guard = FinalizerGuard::new(&env);
    let work = support::Workdir::new();
    let certs = support::certificates(&work);

    // The registry as the registry-controller would run it: registry-auth with its RBAC, the
    // real registry trusting its tokens, and the ImageRegistry status pointing at both.
    support::create_registry(&env, REGISTRY, None).await;
    let (port, _) = support::start_registry_with_auth(&env, &work, &certs, REGISTRY).await;
    let hostname = format!("127.0.0.1:{port}");
    let ca = std::fs::read_to_string(&certs.ca_file).expect("reads the CA");
    set_tls_ca(&env, &ca).await;
    set_registry_status(&env, true, &hostname).await;

    start(
        &env,
        settings(&env, Duration::from_secs(20), Some(Duration::from_secs(10))),
    );
    create_push_secret(&env, "builder", None).await;
    create_pull_secret(&env, "runner").await;
    let layout = work.path("image");
    wharf_e2e::write_test_image(&layout, "hello from a rotated password");
    let app = format!("{hostname}/{}/app", env.namespace);

    // Rotation 1: the Secret alone is enough to push.
    let first = wait_push_secret(&env, "builder", 1).await;
    assert_eq!(data(&first, "hostname"), hostname);
    let first_login = mount(&first, "config.json", &work.path("mount-1"));
    let (ok, err) = push_with(&layout, &format!("{app}:v1"), &first_login).await;
    assert!(
        ok,
        "push with the first Secret failed: {err}\n{}",
        env.dump().await
    );

    // The pull secret pulls, and cannot push.
    let pulls: Api<ImagePullSecret> = Api::namespaced(env.client.clone(), &env.namespace);
    env.wait_for(&pulls, "runner", WAIT, |cr| {
        ready_at(cr.status.as_ref(), Some(1))
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.namespace);
    let pull_secret = secrets
        .get("runner-image-pull-secret")
        .await
        .expect("pull Secret");
    let pull_login = mount(&pull_secret, ".dockerconfigjson", &work.path("mount-pull"));
    let (ok, err) = pull_with(&format!("{app}:v1"), &work.path("pulled"), &pull_login).await;
    assert!(ok, "pull with the pull Secret failed: {err}");
    let (ok, _) = push_with(&layout, &format!("{app}:by-puller"), &pull_login).await;
    assert!(!ok, "a pull secret pushed");

    // Rotation 2: the new Secret works, and so does the old one (its account lives 20 s).
    let second = wait_push_secret(&env, "builder", 2).await;
    assert_ne!(data(&second, "password"), data(&first, "password"));
    let second_login = mount(&second, "config.json", &work.path("mount-2"));
    let (ok, err) = push_with(&layout, &format!("{app}:v2"), &second_login).await;
    assert!(ok, "push with the rotated Secret failed: {err}");
    let (ok, err) = push_with(&layout, &format!("{app}:v2-old"), &first_login).await;
    assert!(
        ok,
        "the old password stopped working in its grace period: {err}"
    );

    // Past its TTL the first account is gone and its password refused; the second still works.
    let first_account = accounts_of(&env, AccessMode::Push, "builder").await[0].name_any();
    assert!(first_account.ends_with(".1"), "{first_account}");
    let accounts: Api<ImageRegistryAccount> = Api::namespaced(env.client.clone(), &env.namespace);
    env.wait_gone(&accounts, &first_account, WAIT).await;
    let (ok, err) = push_with(&layout, &format!("{app}:v3-old"), &first_login).await;
    assert!(!ok, "the expired password still pushed");
    assert!(
        err.to_lowercase().contains("unauthorized") || err.contains("401"),
        "refused for another reason: {err}"
    );
    let (ok, err) = push_with(&layout, &format!("{app}:v3"), &second_login).await;
    assert!(ok, "the current password stopped working: {err}");
}
