//! registry-auth against real parts: the real distribution registry (docker-registry 2.8) with
//! token auth trusting registry-auth's token CA, accounts in the real API server, and skopeo as
//! the client. Pushes with a push account, pulls with a pull account, and checks every refusal.

mod support;

use std::time::Duration;

use kube::Api;
use kube::api::DeleteParams;
use support::*;
use wharf_core::crd::{AccessRule, AuthSpec, ImageRegistryAccount, RegistryAction};
use wharf_e2e::TestEnv;

const REGISTRY: &str = "registry";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_pull_accounts_work_and_every_refusal_holds() {
    ensure_tools();
    let env = TestEnv::new("registry-auth-accounts").await;
    let work = Workdir::new();
    let certs = certificates(&work);
    create_registry(&env, REGISTRY, None).await;
    create_account(&env, "pusher", "push-pw", "push", &[], None).await;
    create_account(&env, "puller", "pull-pw", "pull", &[], None).await;
    create_account(&env, "short-lived", "short-pw", "push", &[], Some("3s")).await;
    create_account(&env, "doomed", "doomed-pw", "pull", &[], None).await;
    let (port, auth_port) = start_registry_with_auth(&env, &work, &certs, REGISTRY).await;
    let layout = work.path("image");
    wharf_e2e::write_test_image(&layout, "hello from wharf");
    let app = format!("127.0.0.1:{port}/team/app");

    // A push account pushes; a pull account pulls what it pushed.
    let (ok, err) = push(
        &certs,
        &layout,
        &format!("{app}:v1"),
        Some("pusher:push-pw"),
    )
    .await;
    assert!(
        ok,
        "push account could not push: {err}\n{}",
        env.diagnostics()
    );
    let (ok, err) = pull(
        &certs,
        &format!("{app}:v1"),
        &work.path("pulled"),
        Some("puller:pull-pw"),
    )
    .await;
    assert!(
        ok,
        "pull account could not pull: {err}\n{}",
        env.diagnostics()
    );
    let pulled = std::fs::read_to_string(work.path("pulled/index.json")).expect("pulled index");
    assert!(pulled.contains("pulled"), "{pulled}");

    // The pull account cannot push: the tag it tried does not exist afterwards.
    let (ok, err) = push(
        &certs,
        &layout,
        &format!("{app}:by-puller"),
        Some("puller:pull-pw"),
    )
    .await;
    assert!(!ok, "a pull account pushed");
    assert!(
        err.contains("denied")
            || err.contains("unauthorized")
            || err.contains("authentication required"),
        "{err}"
    );
    let (ok, _) = pull(
        &certs,
        &format!("{app}:by-puller"),
        &work.path("none1"),
        Some("pusher:push-pw"),
    )
    .await;
    assert!(!ok, "the pull account's push left a tag behind");
    let (status, actions) = request_token(
        &certs,
        auth_port,
        "repository:team/app:pull,push",
        Some("puller:pull-pw"),
    )
    .await;
    assert_eq!(
        (status, actions),
        (200, vec!["pull".to_owned()]),
        "pull account gets only pull"
    );

    // A wrong password is a 401 and the registry refuses the client.
    let (status, _) = request_token(
        &certs,
        auth_port,
        "repository:team/app:pull",
        Some("pusher:wrong"),
    )
    .await;
    assert_eq!(status, 401);
    let (ok, _) = pull(
        &certs,
        &format!("{app}:v1"),
        &work.path("none2"),
        Some("pusher:wrong"),
    )
    .await;
    assert!(!ok, "a wrong password pulled");
    let (status, _) = request_token(
        &certs,
        auth_port,
        "repository:team/app:pull",
        Some("nobody:x"),
    )
    .await;
    assert_eq!(status, 401, "unknown accounts are refused");

    // Anonymous clients get a token with nothing in it, so the registry refuses them.
    let (status, actions) =
        request_token(&certs, auth_port, "repository:team/app:pull", None).await;
    assert_eq!((status, actions.len()), (200, 0));
    let (ok, _) = pull(&certs, &format!("{app}:v1"), &work.path("none3"), None).await;
    assert!(!ok, "an anonymous client pulled");
    let (ok, _) = push(&certs, &layout, &format!("{app}:anon"), None).await;
    assert!(!ok, "an anonymous client pushed");

    // An expired account is refused (its ttl is checked at every login, cached or not).
    let (status, _) = request_token(
        &certs,
        auth_port,
        "repository:team/app:pull",
        Some("short-lived:short-pw"),
    )
    .await;
    assert_eq!(status, 200, "the account works before its ttl");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, _) = request_token(
        &certs,
        auth_port,
        "repository:team/app:pull",
        Some("short-lived:short-pw"),
    )
    .await;
    assert_eq!(status, 401, "an expired account got a token");
    let (ok, _) = pull(
        &certs,
        &format!("{app}:v1"),
        &work.path("none4"),
        Some("short-lived:short-pw"),
    )
    .await;
    assert!(!ok, "an expired account pulled");

    // A deleted account is refused as soon as the watch delivers the deletion.
    let (ok, err) = pull(
        &certs,
        &format!("{app}:v1"),
        &work.path("doomed"),
        Some("doomed:doomed-pw"),
    )
    .await;
    assert!(ok, "the account to delete could not pull: {err}");
    Api::<ImageRegistryAccount>::namespaced(env.client.clone(), &env.namespace)
        .delete("doomed", &DeleteParams::default())
        .await
        .expect("deletes the account");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _) = request_token(
            &certs,
            auth_port,
            "repository:team/app:pull",
            Some("doomed:doomed-pw"),
        )
        .await;
        if status == 401 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a deleted account still gets tokens after 5s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ok, _) = pull(
        &certs,
        &format!("{app}:v1"),
        &work.path("none5"),
        Some("doomed:doomed-pw"),
    )
    .await;
    assert!(!ok, "a deleted account pulled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_rules_and_anonymous_pull_are_enforced_by_the_registry() {
    ensure_tools();
    let env = TestEnv::new("registry-auth-rules").await;
    let work = Workdir::new();
    let certs = certificates(&work);
    let rule = |labels: &[(&str, &[&str])], repositories: &[&str], actions: &[RegistryAction]| {
        AccessRule {
            match_labels: labels
                .iter()
                .map(|(k, vs)| {
                    (
                        (*k).to_owned(),
                        vs.iter().map(|v| (*v).to_owned()).collect(),
                    )
                })
                .collect(),
            repositories: repositories.iter().map(|r| (*r).to_owned()).collect(),
            actions: actions.to_vec(),
        }
    };
    let auth = AuthSpec {
        anonymous_pull: Some(true),
        rules: vec![
            rule(
                &[("team", &["a"])],
                &["${labels.team}/**"],
                &[RegistryAction::Pull, RegistryAction::Push],
            ),
            rule(&[], &["shared/*"], &[RegistryAction::Pull]),
        ],
        ..AuthSpec::default()
    };
    create_registry(&env, REGISTRY, Some(auth)).await;
    create_account(&env, "team-a", "a-pw", "push", &[("team", "a")], None).await;
    create_account(&env, "team-b", "b-pw", "push", &[("team", "b")], None).await;
    let (port, auth_port) = start_registry_with_auth(&env, &work, &certs, REGISTRY).await;
    let layout = work.path("image");
    wharf_e2e::write_test_image(&layout, "ruled");
    let base = format!("127.0.0.1:{port}");

    let (ok, err) = push(
        &certs,
        &layout,
        &format!("{base}/a/app:v1"),
        Some("team-a:a-pw"),
    )
    .await;
    assert!(
        ok,
        "team a could not push to a/app: {err}\n{}",
        env.diagnostics()
    );
    let (ok, _) = push(
        &certs,
        &layout,
        &format!("{base}/b/app:v1"),
        Some("team-a:a-pw"),
    )
    .await;
    assert!(!ok, "team a pushed outside its repositories");
    let (ok, _) = push(
        &certs,
        &layout,
        &format!("{base}/a/app:by-b"),
        Some("team-b:b-pw"),
    )
    .await;
    assert!(!ok, "team b pushed into team a's repositories");
    let (status, actions) = request_token(
        &certs,
        auth_port,
        "repository:shared/base:pull,push",
        Some("team-b:b-pw"),
    )
    .await;
    assert_eq!(
        (status, actions),
        (200, vec!["pull".to_owned()]),
        "shared/* grants pull only"
    );

    // anonymousPull: anyone pulls, nobody anonymous pushes.
    let (ok, err) = pull(
        &certs,
        &format!("{base}/a/app:v1"),
        &work.path("anon"),
        None,
    )
    .await;
    assert!(
        ok,
        "anonymous pull is allowed but failed: {err}\n{}",
        env.diagnostics()
    );
    let (ok, _) = push(&certs, &layout, &format!("{base}/a/app:anon"), None).await;
    assert!(!ok, "an anonymous client pushed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_tokens_from_the_environment_registry_controller_sets() {
    use wharf_core::registry::auth_env as env_names;
    ensure_tools();
    let env = TestEnv::new("registry-auth-binary").await;
    let work = Workdir::new();
    let certs = certificates(&work);
    create_registry(&env, REGISTRY, None).await;
    create_account(&env, "puller", "pull-pw", "pull", &[], None).await;
    registry_auth_client(&env, REGISTRY).await;
    let (auth_port, http_port) = (wharf_e2e::free_port(), wharf_e2e::free_port());
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_registry-auth"));
    command
        .env(env_names::ENV_NAMESPACE, &env.namespace)
        .env(env_names::ENV_REGISTRY_NAME, REGISTRY)
        .env(env_names::ENV_LISTEN_ADDR, format!("127.0.0.1:{auth_port}"))
        .env("HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env(env_names::ENV_TLS_CERT_FILE, &certs.tls_cert)
        .env(env_names::ENV_TLS_KEY_FILE, &certs.tls_key)
        .env(env_names::ENV_TOKEN_CERT_FILE, &certs.token_cert)
        .env(env_names::ENV_TOKEN_KEY_FILE, &certs.token_key)
        .env(env_names::ENV_TOKEN_ISSUER, ISSUER)
        .env(env_names::ENV_TOKEN_SERVICE, SERVICE)
        // As in the pod: the ServiceAccount registry-controller makes, nothing more.
        .env(
            "KUBECONFIG",
            env.kubeconfig_as(&env.namespace, "imageregistry-registry"),
        );
    let process = env.spawn_process("registry-auth", command);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready = curl(
            &certs,
            &format!("http://127.0.0.1:{http_port}/readyz"),
            None,
        )
        .await;
        if ready.0 == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "registry-auth never became ready (last {ready:?})\n{}",
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, actions) = request_token(
        &certs,
        auth_port,
        "repository:team/app:pull,push",
        Some("puller:pull-pw"),
    )
    .await;
    assert_eq!(
        (status, actions),
        (200, vec!["pull".to_owned()]),
        "{}",
        process.log()
    );
    let (status, _) = request_token(
        &certs,
        auth_port,
        "repository:team/app:pull",
        Some("puller:nope"),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        process.log().contains("wrong password"),
        "refusals are logged with their reason"
    );
    assert!(
        !process.log().contains("nope"),
        "passwords never reach the log"
    );
}
