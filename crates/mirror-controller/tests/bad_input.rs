//! Bad input on the real API server: each mirror gets a False condition naming the field,
//! and the controller keeps serving every other mirror.

mod common;

use common::{Harness, condition, rewrite_in_etcd};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::ResourceExt;
use kube::api::DeleteParams;
use mirror_controller::SYNCED;
use serde_json::json;

#[tokio::test]
async fn bad_mirrors_get_a_condition_and_good_ones_still_converge() {
    let h = Harness::new("mirror-bad-input").await;
    h.start("controller", h.settings());

    // Stored under an older schema: a URL with scheme and path, and one with no upstream at all.
    let with_scheme = h
        .create(&h.mirror("scheme", json!({"upstreamUrl": "hub.docker.io"})))
        .await
        .name_any();
    let without_upstream = h
        .create(&h.mirror("bare", json!({"upstreamUrl": "quay.io"})))
        .await
        .name_any();
    h.wait_synced(&with_scheme).await;
    rewrite_in_etcd(&with_scheme, |object| {
        object["spec"]["upstreamUrl"] = json!("https://hub.docker.io/v2");
        object["metadata"]["generation"] = json!(2);
    });
    rewrite_in_etcd(&without_upstream, |object| {
        object["spec"] = json!({"masqueradeUrl": "bare.example.com"});
        object["metadata"]["generation"] = json!(2);
    });

    // Rejected by the API server, not by the CRD schema.
    let bad_claim = h
        .create(&h.mirror(
            "claim",
            json!({"upstreamUrl": "gcr.io", "volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteSometimes"]}}}),
        ))
        .await
        .name_any();

    // Two mirrors, one masquerade host: the first keeps it.
    let first = h
        .create(&h.mirror(
            "first",
            json!({"upstreamUrl": "a.example.com", "masqueradeUrl": "shared.example.com"}),
        ))
        .await
        .name_any();
    h.wait_synced(&first).await;
    let second = h
        .create(&h.mirror(
            "second",
            json!({"upstreamUrl": "b.example.com", "masqueradeUrl": "shared.example.com"}),
        ))
        .await
        .name_any();

    let good = h
        .create(&h.mirror("good", json!({"upstreamUrl": "ghcr.io"})))
        .await
        .name_any();
    h.wait_synced(&good).await;

    // Until CRD validation ratcheting (Kubernetes 1.30) the API server refuses any status for
    // an object whose stored spec breaks the schema: the Warning Event carries the message.
    let message = h.wait_event(&with_scheme, "InvalidSpec").await;
    assert!(
        message.contains("spec.upstreamUrl") && message.contains("has a scheme"),
        "{message}"
    );
    let message = h.wait_event(&without_upstream, "InvalidSpec").await;
    assert!(message.contains("missing field `upstreamUrl`"), "{message}");

    let mirror = h
        .wait_condition(
            &bad_claim,
            SYNCED,
            "False",
            Some("VolumeClaimTemplateRejected"),
        )
        .await;
    let message = condition(&mirror, SYNCED).message;
    assert!(
        message.starts_with("spec.volumeClaimTemplate:"),
        "{message}"
    );
    assert!(message.contains("ReadWriteSometimes"), "{message}");

    let mirror = h
        .wait_condition(&second, SYNCED, "False", Some("MasqueradeHostTaken"))
        .await;
    let message = condition(&mirror, SYNCED).message;
    assert!(
        message.contains("spec.masqueradeUrl") && message.contains(&first),
        "{message}"
    );
    assert!(
        h.statefulsets
            .get_opt(&format!("registry-mirror-{second}"))
            .await
            .expect("read")
            .is_none(),
        "the refused mirror gets no children"
    );

    // The first mirror goes away: the second takes the host over.
    h.mirrors
        .delete(&first, &DeleteParams::default())
        .await
        .expect("delete");
    h.wait_synced(&second).await;

    // Everything else kept working, and the invalid mirror's children were left as they were.
    h.wait_synced(&good).await;
    let kept: StatefulSet = h
        .statefulsets
        .get(&format!("registry-mirror-{with_scheme}"))
        .await
        .expect("kept");
    assert!(kept.metadata.deletion_timestamp.is_none());

    // Fixing the spec heals it.
    h.patch_spec(&with_scheme, json!({"upstreamUrl": "registry-1.docker.io"}))
        .await;
    h.wait_synced(&with_scheme).await;
}
