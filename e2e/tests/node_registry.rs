//! wharf's private registry running for real on the local node (issue 10): the chart installed
//! with every component, an ImageRegistry with a certificate of the CA the node trusts, an
//! ImagePushSecret whose login pushes an image from the node, a pull login that may not push, and
//! a pod whose image the kubelet pulls with the ImagePullSecret's Secret — and not without it.
//!
//! Needs root and the local node (`xtask/scripts/cluster.sh up --node`, brought up by the
//! harness), skopeo, and the images `cargo xtask images` builds (imported by the harness).

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use wharf_e2e::TestEnv;
use wharf_e2e::scenario::registry::{self, DNS_ZONE};
use wharf_e2e::scenario::{Narrator, Wharf, WharfOptions};

#[tokio::test]
async fn a_pushed_image_runs_with_the_pull_secret_and_only_with_it() {
    let env = TestEnv::with_pods("node-registry").await;
    let narrator = Narrator::new();
    // Its ClusterRoles are named after the release: unique, so installs of other tests never meet.
    let release = format!(
        "wharf-{}",
        env.namespace
            .rsplit('-')
            .next()
            .expect("a namespace suffix")
    );
    let wharf = Wharf::install(
        env.client.clone(),
        &env.namespace,
        &release,
        WharfOptions {
            values: registry::chart_values(),
            ..WharfOptions::default()
        },
        &narrator,
    )
    .await;

    // On a failure, still delete what needs wharf running to go (the rotator's finalizers) and
    // uninstall, then fail; the registry's hosts line goes when the unwinding drops it.
    let (private, report) = match AssertUnwindSafe(registry::tour(&wharf, &narrator))
        .catch_unwind()
        .await
    {
        Ok(done) => done,
        Err(panic) => {
            registry::cleanup(&env.client, &env.namespace).await;
            wharf.uninstall().await;
            std::panic::resume_unwind(panic);
        }
    };

    assert_eq!(
        report.hostname,
        format!("registry.{}.{DNS_ZONE}", env.namespace)
    );
    assert_eq!(
        report.image,
        format!("{}/{}", report.hostname, registry::IMAGE_PATH)
    );
    assert!(report.digest.starts_with("sha256:"), "{}", report.digest);
    assert_eq!(report.push_secret, "ci-image-push-secret");
    assert_eq!(report.pull_secret, "runtime-image-pull-secret");
    assert!(!report.refused_push.is_empty() && !report.refused_pull.is_empty());
    assert_eq!(report.pod, "with-pull-secret");
    narrator.step(format!(
        "done: pushed in {:.1}s, pod ran {:.1}s after it was created",
        report.push_time.as_secs_f64(),
        report.pod_start.as_secs_f64()
    ));

    private.teardown().await;
    wharf.uninstall().await;
    let hosts = std::fs::read_to_string("/etc/hosts").expect("reading /etc/hosts");
    assert!(
        !hosts.contains(&report.hostname),
        "the registry's hosts line outlived the test:\n{hosts}"
    );
    drop(env);
}
