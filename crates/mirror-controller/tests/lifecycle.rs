//! A mirror's life on the real API server: creation of every child, propagation of spec
//! changes (pods roll), and the cascade when the mirror is deleted.

mod common;

use std::time::Duration;

use common::{CONVERGE, Harness, ds_env, template_hash};
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use wharf_core::conditions::READY;
use wharf_core::tls;
use wharf_e2e::secret_text;

#[tokio::test]
async fn a_mirror_gets_every_child_and_a_status() {
    let h = Harness::new("mirror-create").await;
    h.start("controller", h.settings());
    let mirror = h
        .create(&h.mirror(
            "docker",
            json!({"upstreamUrl": "registry-1.docker.io", "masqueradeUrl": "local.docker.io"}),
        ))
        .await;
    let name = mirror.name_any();
    let mirror = h.wait_synced(&name).await;
    let uid = mirror.uid().expect("uid");
    let base = format!("registry-mirror-{name}");

    let service: Service = h.services.get(&base).await.expect("Service");
    let headless: Service = h
        .services
        .get(&format!("{base}-headless"))
        .await
        .expect("headless Service");
    let statefulset: StatefulSet = h.statefulsets.get(&base).await.expect("StatefulSet");
    let daemonset: DaemonSet = h
        .daemonsets
        .get(&format!("{base}-utils"))
        .await
        .expect("DaemonSet");
    let config = h.config_secret(&base).await;
    // The generated certificate sits in the config Secret, beside the nginx config.
    let tls_secret = &config;

    for (kind, meta) in [
        ("Service", &service.metadata),
        ("headless Service", &headless.metadata),
        ("StatefulSet", &statefulset.metadata),
        ("DaemonSet", &daemonset.metadata),
        ("config Secret", &config.metadata),
    ] {
        let labels = meta.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("app").map(String::as_str),
            Some("docker-registry"),
            "{kind} labels"
        );
        assert_eq!(labels.get("mirror"), Some(&name), "{kind} labels");
        let owners = meta.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1, "{kind} owners");
        assert_eq!(owners[0].uid, uid, "{kind} owner");
        assert_eq!(owners[0].kind, "RegistryMirror");
        assert_eq!(
            owners[0].controller,
            Some(true),
            "{kind} controller reference"
        );
    }

    let status = mirror.status.clone().expect("status");
    let cluster_ip = service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .expect("ClusterIP");
    assert_eq!(status.cluster_ip.as_deref(), Some(cluster_ip.as_str()));
    assert_eq!(status.masquerade_url.as_deref(), Some("local.docker.io"));
    assert_eq!(status.observed_generation, mirror.metadata.generation);
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .expect("Ready condition");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "PodsNotReady"),
        "no node runs pods here"
    );
    assert_eq!(
        headless.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()),
        Some("None")
    );

    let sts_spec = statefulset.spec.as_ref().expect("spec");
    assert_eq!(sts_spec.replicas, Some(2));
    assert_eq!(
        sts_spec.service_name.as_deref(),
        Some(format!("{base}-headless").as_str())
    );
    let claim = &sts_spec.volume_claim_templates.as_ref().expect("claims")[0];
    assert_eq!(claim.metadata.name.as_deref(), Some("image-store"));
    let storage = &claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .expect("requests")["storage"];
    assert_eq!(storage.0, "20Gi");
    assert!(!template_hash(&sts_spec.template).is_empty());

    let nginx_conf = secret_text(&config, "default.conf");
    assert!(nginx_conf.contains("registry-1.docker.io"), "{nginx_conf}");
    assert!(nginx_conf.contains("proxy_cache_path"), "{nginx_conf}");

    let cert = tls::inspect(&secret_text(tls_secret, "tls.crt")).expect("certificate");
    assert!(
        cert.covers(&[
            cluster_ip.clone(),
            "local.docker.io".into(),
            format!("{base}.{}.svc", h.namespace()),
        ]),
        "SANs: {cert:?}"
    );
    assert!(tls::is_issued_by(
        &secret_text(tls_secret, "tls.crt"),
        &secret_text(tls_secret, "ca.crt")
    ));
    assert_eq!(
        ds_env(&daemonset, "CA_CERT"),
        Some(secret_text(tls_secret, "ca.crt")),
        "the agents get the CA itself, and no Secret holding keys"
    );

    assert_eq!(
        ds_env(&daemonset, "MASQUERADE_HOST").as_deref(),
        Some("local.docker.io")
    );
    assert_eq!(ds_env(&daemonset, "SERVICE_NAME"), Some(base.clone()));
    assert_eq!(
        ds_env(&daemonset, "SERVICE_NAMESPACE").as_deref(),
        Some(h.namespace())
    );
    assert_eq!(
        ds_env(&daemonset, "ADDRESSING_SCHEME").as_deref(),
        Some("hostess")
    );
}

#[tokio::test]
async fn spec_changes_reach_the_children_and_roll_the_pods() {
    let h = Harness::new("mirror-update").await;
    h.start("controller", h.settings());
    let name = h
        .create(&h.mirror(
            "quay",
            json!({"upstreamUrl": "quay.io", "priorityClass": "system-cluster-critical"}),
        ))
        .await
        .name_any();
    h.wait_synced(&name).await;
    let base = format!("registry-mirror-{name}");
    let before_sts: StatefulSet = h.statefulsets.get(&base).await.expect("StatefulSet");
    assert_eq!(
        priority_class(&before_sts).as_deref(),
        Some("system-cluster-critical")
    );
    let before_ds: DaemonSet = h
        .daemonsets
        .get(&format!("{base}-utils"))
        .await
        .expect("DaemonSet");
    let before_hash = template_hash(&before_sts.spec.as_ref().expect("spec").template);

    h.patch_spec(&name, json!({"upstreamUrl": "ghcr.io", "tagTtlSeconds": 5}))
        .await;
    h.wait_synced(&name).await;
    let config = h.config_secret(&base).await;
    let nginx_conf = secret_text(&config, "default.conf");
    assert!(nginx_conf.contains("ghcr.io"), "{nginx_conf}");
    assert!(!nginx_conf.contains("quay.io"), "{nginx_conf}");
    let after_sts: StatefulSet = h.statefulsets.get(&base).await.expect("StatefulSet");
    let after_hash = template_hash(&after_sts.spec.as_ref().expect("spec").template);
    assert_ne!(
        before_hash, after_hash,
        "the pod template hash changes, so the pods roll"
    );
    let after_ds: DaemonSet = h
        .daemonsets
        .get(&format!("{base}-utils"))
        .await
        .expect("DaemonSet");
    assert_eq!(
        ds_env(&after_ds, "UPSTREAM_HOST").as_deref(),
        Some("ghcr.io")
    );
    assert_eq!(
        ds_env(&after_ds, "MASQUERADE_HOST").as_deref(),
        Some("mirror-ghcr.io")
    );
    assert_ne!(before_ds.resource_version(), after_ds.resource_version());

    // A field dropped from the spec, and nothing else changed: it leaves the child too.
    h.patch_spec(&name, json!({"priorityClass": null})).await;
    h.env
        .wait_for(&h.statefulsets, &base, CONVERGE, |sts: &StatefulSet| {
            priority_class(sts).is_none()
        })
        .await;

    // Someone else edits a child: the controller puts its fields back.
    h.services
        .patch(
            &base,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"selector": {"component": "hijacked"}}})),
        )
        .await
        .expect("foreign edit");
    h.env
        .wait_for(&h.services, &base, CONVERGE, |service: &Service| {
            service
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|s| s.get("component").map(String::as_str) == Some("registry"))
        })
        .await;

    // A new masquerade host needs a certificate naming it.
    let config = h.config_secret(&base).await;
    let cert = wharf_core::tls::inspect(&secret_text(&config, "tls.crt")).expect("certificate");
    assert!(cert.covers(&["mirror-ghcr.io".into()]), "{cert:?}");

    // The volume claim template cannot change in place: the StatefulSet is recreated.
    h.patch_spec(
        &name,
        json!({"volumeClaimTemplate": {"spec": {"resources": {"requests": {"storage": "5Gi"}}}}}),
    )
    .await;
    let recreated = h
        .env
        .wait_for(&h.statefulsets, &base, CONVERGE, |sts: &StatefulSet| {
            sts.uid() != after_sts.uid()
                && sts
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_claim_templates.as_ref())
                    .is_some_and(|claims| {
                        claims[0]
                            .spec
                            .as_ref()
                            .and_then(|s| s.resources.as_ref())
                            .and_then(|r| r.requests.as_ref())
                            .is_some_and(|r| r["storage"].0 == "5Gi")
                    })
        })
        .await;
    let mirror = h.wait_synced(&name).await;
    assert_eq!(
        mirror.status.and_then(|s| s.observed_generation),
        mirror.metadata.generation
    );
    let config = h.config_secret(&base).await;
    let five_gi_80_percent: u64 = 5 * 1024 * 1024 * 1024 / 10 * 8;
    assert!(
        secret_text(&config, "default.conf").contains(&format!("max_size={five_gi_80_percent}")),
        "the cache size follows the volume: {}",
        secret_text(&config, "default.conf")
    );
    assert_ne!(
        template_hash(&recreated.spec.expect("spec").template),
        after_hash
    );
}

#[tokio::test]
async fn deleting_a_mirror_deletes_its_children() {
    let h = Harness::new("mirror-delete").await;
    h.start("controller", h.settings());
    let name = h
        .create(&h.mirror("gone", json!({"upstreamUrl": "gcr.io"})))
        .await
        .name_any();
    h.wait_synced(&name).await;
    let base = format!("registry-mirror-{name}");
    h.mirrors
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete mirror");
    // Garbage collection is kube-controller-manager's, and it may be busy with other tests.
    let timeout = Duration::from_secs(120);
    h.env.wait_gone(&h.mirrors, &name, timeout).await;
    h.env.wait_gone(&h.services, &base, timeout).await;
    h.env
        .wait_gone(&h.services, &format!("{base}-headless"), timeout)
        .await;
    h.env.wait_gone(&h.statefulsets, &base, timeout).await;
    h.env
        .wait_gone(&h.daemonsets, &format!("{base}-utils"), timeout)
        .await;
    h.env
        .wait_gone(&h.secrets, &format!("{base}-secret"), timeout)
        .await;
}

fn priority_class(sts: &StatefulSet) -> Option<String> {
    sts.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .priority_class_name
        .clone()
}
