//! wharf's registry mirror for real on the local node: the chart installed with Helm, a
//! RegistryMirror of an upstream `docker-registry` on the bridge, and pods whose images the
//! kubelet pulls through the mirror — cold, warm from its cache, and straight from the upstream
//! once the mirror is deleted; the same in services mode through the imageswap-maps line.
//!
//! Each test installs its own release into its own namespace (its mirror-controller manages only
//! RegistryMirrors labelled with that release) and removes the release and its mirrors at the
//! end, also when it fails.

use std::panic::AssertUnwindSafe;

use futures::FutureExt as _;
use wharf_e2e::TestEnv;
use wharf_e2e::scenario::{
    Narrator, UpstreamRegistry, Wharf, delete_release_mirrors, describe, hostess_pull_through,
    mirror_options, services_pull_through,
};

/// A release name unique to the test's namespace: leftovers of another run never match its
/// MIRROR_SELECTOR.
fn release(env: &TestEnv) -> String {
    let suffix = env.namespace.rsplit('-').next().unwrap_or("x");
    format!("wharf-{suffix}")
}

/// Runs `flow`, then removes the release's RegistryMirrors (cluster-scoped, so the namespace's
/// deletion would not take them) and its controllers, whether the flow passed or panicked.
async fn with_cleanup<T>(wharf: &Wharf, flow: impl std::future::Future<Output = T>) -> T {
    let outcome = AssertUnwindSafe(flow).catch_unwind().await;
    delete_release_mirrors(wharf).await;
    wharf.uninstall().await;
    outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

#[tokio::test]
async fn hostess_mode_pulls_through_the_mirror_and_falls_back_when_it_is_gone() {
    let env = TestEnv::with_pods("node-mirror-hostess").await;
    let narrator = Narrator::new();
    let wharf = Wharf::install(
        env.client.clone(),
        &env.namespace,
        &release(&env),
        mirror_options("hostess"),
        &narrator,
    )
    .await;
    let upstream = UpstreamRegistry::start(&env.namespace);

    let report = with_cleanup(&wharf, hostess_pull_through(&wharf, &upstream, &narrator)).await;

    eprintln!(
        "cold: {}\nwarm: {}\nwithout the mirror: {}",
        describe(&report.cold),
        describe(&report.warm),
        describe(&report.fallback)
    );
    assert_eq!(report.cold.upstream_blob_gets, report.blobs);
    assert_eq!(report.warm.upstream_blob_gets, 0);
    assert!(report.warm.mirror_hits >= report.blobs);
    assert_eq!(report.fallback.upstream_blob_gets, report.blobs);
}

#[tokio::test]
async fn services_mode_pulls_the_rewritten_image_through_the_mirror() {
    let env = TestEnv::with_pods("node-mirror-services").await;
    let narrator = Narrator::new();
    let wharf = Wharf::install(
        env.client.clone(),
        &env.namespace,
        &release(&env),
        mirror_options("services"),
        &narrator,
    )
    .await;
    let upstream = UpstreamRegistry::start(&env.namespace);

    let report = with_cleanup(&wharf, services_pull_through(&wharf, &upstream, &narrator)).await;

    eprintln!("services mode: {}", describe(&report.pull));
    assert!(
        report.maps_line.starts_with(&report.masquerade),
        "{report:?}"
    );
    assert_eq!(report.pull.upstream_blob_gets, report.blobs);
    assert!(report.pull.mirror_misses >= report.blobs);
}
