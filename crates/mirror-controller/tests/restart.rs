//! A restarted controller finds every mirror as it left it and sends no write at all.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Harness;
use kube::ResourceExt;
use serde_json::json;

#[tokio::test]
async fn a_restart_writes_nothing_for_unchanged_mirrors() {
    let h = Harness::new("mirror-restart").await;
    h.create_secret(
        "login",
        BTreeMap::from([("username", "u"), ("password", "p")]),
    )
    .await;
    let first = h.start("first", h.settings());
    let mirrors = [
        h.create(&h.mirror("plain", json!({"upstreamUrl": "registry-1.docker.io"})))
            .await,
        h.create(&h.mirror(
            "full",
            json!({
                "upstreamUrl": "ghcr.io",
                "masqueradeUrl": "ghcr.mirror.example.com",
                "credentialsSecret": "login",
                "tagTtlSeconds": 30,
                "volumeClaimTemplate": {"spec": {"resources": {"requests": {"storage": "1.5Gi"}}}}
            }),
        ))
        .await,
        h.create(&h.mirror("quay", json!({"upstreamUrl": "quay.io"})))
            .await,
    ];
    for mirror in &mirrors {
        h.wait_synced(&mirror.name_any()).await;
    }
    h.wait_quiet(&first, mirrors.len() as u64, Duration::from_secs(2))
        .await;
    let writes_at_creation = first.writes();
    h.env.stop("first");
    let before = h.versions().await;
    assert_eq!(
        before.len(),
        3 + 3 * 5,
        "three mirrors with five children each: {before:#?}"
    );

    let second = h.start("second", h.settings());
    // Let it list everything, reconcile every mirror and settle.
    h.wait_quiet(&second, mirrors.len() as u64, Duration::from_secs(3))
        .await;
    assert_eq!(
        second.writes(),
        0,
        "a restart must not write (the first run needed {writes_at_creation}):\n{}",
        second.writes_by_kind()
    );
    assert_eq!(h.versions().await, before, "no object changed");
}
