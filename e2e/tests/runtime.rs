//! The shared runtime against the real API server: the missing-CRD check and leader election.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::api::ApiResource;
use wharf_core::runtime::{Election, RuntimeError, require_crds, resource_of};
use wharf_e2e::TestEnv;

#[tokio::test]
async fn a_missing_crd_is_named_in_the_error() {
    let env = TestEnv::new("missing-crd").await;
    let installed = resource_of::<wharf_core::crd::RegistryMirror>();
    require_crds(&env.client, std::slice::from_ref(&installed))
        .await
        .expect("installed CRDs pass");
    let missing = ApiResource {
        group: "absent.wharf.dev".into(),
        version: "v1".into(),
        api_version: "absent.wharf.dev/v1".into(),
        kind: "Absent".into(),
        plural: "absents".into(),
    };
    let err = require_crds(&env.client, &[installed, missing])
        .await
        .expect_err("a missing CRD fails");
    assert!(matches!(err, RuntimeError::MissingCrd(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("absents.absent.wharf.dev is not installed"),
        "{message}"
    );
    assert!(
        message.contains("charts/wharf/crds"),
        "says how to fix it: {message}"
    );
}

#[tokio::test]
async fn only_one_replica_leads_and_the_next_takes_over_on_release() {
    let env = TestEnv::new("leader-election").await;
    let lease = format!("wharf-test-{}", env.namespace);
    let first_running = Arc::new(AtomicBool::new(false));
    let first_done = Arc::new(AtomicBool::new(false));
    let second_started_early = Arc::new(AtomicBool::new(false));
    let second_ran = Arc::new(AtomicBool::new(false));

    let first = Election::new(
        env.client.clone(),
        lease.clone(),
        env.namespace.clone(),
        "first".into(),
    );
    let (running, done) = (first_running.clone(), first_done.clone());
    let first = tokio::spawn(first.run(async move {
        running.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(3)).await;
        done.store(true, Ordering::SeqCst);
    }));
    while !first_running.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let second = Election::new(
        env.client.clone(),
        lease,
        env.namespace.clone(),
        "second".into(),
    );
    let (done, early, ran) = (
        first_done.clone(),
        second_started_early.clone(),
        second_ran.clone(),
    );
    let second = tokio::spawn(second.run(async move {
        if !done.load(Ordering::SeqCst) {
            early.store(true, Ordering::SeqCst);
        }
        ran.store(true, Ordering::SeqCst);
    }));

    first.await.expect("first task").expect("first election");
    tokio::time::timeout(Duration::from_secs(40), second)
        .await
        .expect("the second replica takes over after the first releases")
        .expect("second task")
        .expect("second election");
    assert!(second_ran.load(Ordering::SeqCst));
    assert!(
        !second_started_early.load(Ordering::SeqCst),
        "two replicas led at once"
    );
}
