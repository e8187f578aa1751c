//! registry-controller against the real API server: every child object, the status, zero writes
//! when nothing changed, spec changes, and the three ways to get certificates (self-signed and
//! renewed, a given Secret, cert-manager Certificates).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use support::*;
use wharf_core::crd::{
    AuthSpec, CertificateSource, ImageRegistry, ImageRegistrySpec, IssuerRef, RegistryServiceType,
    RegistryVolumeClaimSpec,
};
use wharf_core::registry::certificates::{certificate_resource, material_hash};
use wharf_core::registry::workload::{
    CONFIG_HASH_ANNOTATION, TLS_HASH_ANNOTATION, TOKEN_HASH_ANNOTATION,
};
use wharf_core::tls::{self, generate_ca, inspect, is_issued_by, issue_server_cert};
use wharf_e2e::TestEnv;
use wharf_e2e::secret_text;

const DAY: Duration = Duration::from_secs(86_400);

/// When registry-controller last wrote the object (its managedFields entry).
fn written_by_us(meta: &kube::api::ObjectMeta) -> Option<String> {
    meta.managed_fields
        .iter()
        .flatten()
        .find(|entry| entry.manager.as_deref() == Some("wharf-registry-controller"))
        .and_then(|entry| entry.time.as_ref())
        .map(|time| time.0.to_string())
}

/// Whether `message` is the original's "x/y pods updating" for `desired` pods.
fn updating_of(message: &str, desired: i32) -> bool {
    message
        .strip_suffix(&format!("/{desired} pods updating"))
        .is_some_and(|updated| {
            updated
                .parse::<i32>()
                .is_ok_and(|n| (0..=desired).contains(&n))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_every_child_reports_status_and_writes_nothing_when_unchanged() {
    let env = TestEnv::new("registry-controller-children").await;
    let running = start_controller(&env);
    let ns = env.namespace.clone();
    let registries: Api<ImageRegistry> = Api::namespaced(env.client.clone(), &ns);
    create_registry(&env, "registry", ImageRegistrySpec::default()).await;

    let registry = env
        .wait_for(&registries, "registry", WAIT, |r| synced_is(r, "True"))
        .await;
    let status = registry.status.clone().expect("status");
    assert_eq!(status.hostname, Some(format!("registry.{ns}.{ZONE}")));
    assert_eq!(status.tls_secret_name.as_deref(), Some("registry-tls"));
    // No node runs the pods here: created pods count as updated, none is ready.
    let (ready, reason, message) = condition(&registry, "Ready").expect("Ready");
    assert_eq!((ready.as_str(), reason.as_str()), ("False", "Updating"));
    assert!(updating_of(&message, 1), "{message}");

    // The children, owned by the ImageRegistry (the PVC only with deleteClaim).
    let uid = registry.uid().expect("uid");
    let owned_by_registry = |meta: &kube::api::ObjectMeta| {
        meta.owner_references.as_ref().is_some_and(|owners| {
            owners
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true))
        })
    };
    let statefulsets: Api<StatefulSet> = Api::namespaced(env.client.clone(), &ns);
    let statefulset = statefulsets
        .get("registry")
        .await
        .expect("StatefulSet registry");
    assert!(owned_by_registry(&statefulset.metadata));
    let pod = statefulset
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("pod");
    let images: Vec<_> = pod
        .containers
        .iter()
        .filter_map(|c| c.image.clone())
        .collect();
    assert_eq!(images, ["registry:2", "docker.io/wharf/registry-auth:test"]);
    for key in [
        TLS_HASH_ANNOTATION,
        TOKEN_HASH_ANNOTATION,
        CONFIG_HASH_ANNOTATION,
    ] {
        assert_eq!(
            template_annotation(&statefulset, key).map(|h| h.len()),
            Some(16),
            "{key}"
        );
    }
    let service = Api::<Service>::namespaced(env.client.clone(), &ns)
        .get("registry")
        .await
        .expect("Service registry");
    assert!(owned_by_registry(&service.metadata));
    let service_spec = service.spec.clone().expect("spec");
    assert_eq!(service_spec.type_.as_deref(), Some("LoadBalancer"));
    let ports: Vec<_> = service_spec
        .ports
        .unwrap_or_default()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, [443, 5001]);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), &ns);
    let pvc = pvcs.get("imageregistry-registry-pvc").await.expect("PVC");
    assert!(
        pvc.metadata.owner_references.is_none(),
        "images outlive the registry by default"
    );
    assert_eq!(
        pvc.spec.and_then(|s| s.access_modes),
        Some(vec!["ReadWriteMany".to_owned()])
    );
    for owned in [
        Api::<ServiceAccount>::namespaced(env.client.clone(), &ns)
            .get("imageregistry-registry")
            .await
            .expect("ServiceAccount")
            .metadata,
        Api::<Role>::namespaced(env.client.clone(), &ns)
            .get("imageregistry-registry")
            .await
            .expect("Role")
            .metadata,
        Api::<RoleBinding>::namespaced(env.client.clone(), &ns)
            .get("imageregistry-registry")
            .await
            .expect("RoleBinding")
            .metadata,
    ] {
        assert!(owned_by_registry(&owned), "{:?}", owned.name);
    }

    // Self-signed certificates: the serving one covers the host and is signed by the kept CA.
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &ns);
    let serving = secrets.get("registry-tls").await.expect("registry-tls");
    let ca = secrets
        .get("registry-tls-ca")
        .await
        .expect("registry-tls-ca");
    let serving_pem = secret_text(&serving, "tls.crt");
    let info = inspect(&serving_pem).expect("serving certificate");
    assert!(info.covers(&[
        format!("registry.{ns}.{ZONE}"),
        format!("registry.{ns}.svc"),
        format!("registry.{ns}.svc.cluster.local"),
    ]));
    assert!(is_issued_by(&serving_pem, &secret_text(&ca, "tls.crt")));
    assert_eq!(secret_text(&serving, "ca.crt"), secret_text(&ca, "tls.crt"));
    let token = secrets
        .get("registry-auth-ca")
        .await
        .expect("registry-auth-ca");
    assert!(tls::key_matches(
        &secret_text(&token, "tls.crt"),
        &secret_text(&token, "tls.key")
    ));
    assert_eq!(
        template_annotation(&statefulset, TLS_HASH_ANNOTATION),
        serving.data.as_ref().map(material_hash)
    );
    let config = secrets
        .get("imageregistry-registry-config")
        .await
        .expect("config Secret");
    let config: serde_yaml::Value =
        serde_yaml::from_str(&secret_text(&config, "config.yml")).expect("config.yml");
    assert_eq!(
        config["auth"]["token"]["realm"].as_str(),
        Some(format!("https://registry.{ns}.{ZONE}:5001/auth/token").as_str())
    );

    // Zero writes when nothing changed: a reconcile (triggered by a label) changes no object.
    let versions = || async {
        let mut versions = BTreeMap::new();
        for name in [
            "registry-tls",
            "registry-tls-ca",
            "registry-auth-ca",
            "imageregistry-registry-config",
        ] {
            versions.insert(
                name.to_owned(),
                secrets.get(name).await.expect("secret").resource_version(),
            );
        }
        // kube-controller-manager writes to the StatefulSet and the PVC too: compare when this
        // controller last wrote each (and the StatefulSet's spec generation).
        let sts = statefulsets.get("registry").await.expect("sts");
        versions.insert(
            "sts".into(),
            Some(format!(
                "{:?} {:?}",
                sts.metadata.generation,
                written_by_us(&sts.metadata)
            )),
        );
        let pvc = pvcs.get("imageregistry-registry-pvc").await.expect("pvc");
        versions.insert("pvc".into(), written_by_us(&pvc.metadata));
        let svc = Api::<Service>::namespaced(env.client.clone(), &ns)
            .get("registry")
            .await
            .expect("svc");
        versions.insert("svc".into(), written_by_us(&svc.metadata));
        versions.insert(
            "status".into(),
            registries
                .get("registry")
                .await
                .expect("registry")
                .resource_version(),
        );
        versions
    };
    // Let the reconciles caused by the children's own events settle first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = versions().await;
    let reconciles = running.reconciles();
    registries
        .patch(
            "registry",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"poke": "1"}}})),
        )
        .await
        .expect("labels the registry");
    let deadline = tokio::time::Instant::now() + WAIT;
    while running.reconciles() == reconciles {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reconcile after the label"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut after = versions().await;
    // The label itself changed the ImageRegistry's version; compare the rest.
    after.remove("status");
    let mut expected = before.clone();
    expected.remove("status");
    assert_eq!(after, expected, "an unchanged ImageRegistry caused writes");

    // Spec changes reach the children and the status.
    registries
        .patch(
            "registry",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {
                "replicas": 2,
                "serviceType": "ClusterIP",
                "persistentVolumeClaim": {"deleteClaim": true},
            }})),
        )
        .await
        .expect("changes the spec");
    let registry = env
        .wait_for(&registries, "registry", WAIT, |r| {
            synced_is(r, "True")
                && condition(r, "Ready").is_some_and(|(_, _, message)| updating_of(&message, 2))
        })
        .await;
    assert_eq!(
        registry.spec.service_type,
        Some(RegistryServiceType::ClusterIP)
    );
    let statefulset = statefulsets.get("registry").await.expect("sts");
    assert_eq!(statefulset.spec.and_then(|s| s.replicas), Some(2));
    let service = Api::<Service>::namespaced(env.client.clone(), &ns)
        .get("registry")
        .await
        .expect("svc");
    assert_eq!(
        service.spec.and_then(|s| s.type_).as_deref(),
        Some("ClusterIP")
    );
    let pvc = env
        .wait_for(&pvcs, "imageregistry-registry-pvc", WAIT, |pvc| {
            owned_by_registry(&pvc.metadata)
        })
        .await;
    assert!(
        owned_by_registry(&pvc.metadata),
        "deleteClaim makes the PVC go with the registry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_secret_is_used_as_is_and_its_change_rolls_the_pods() {
    let env = TestEnv::new("registry-controller-secret").await;
    start_controller(&env);
    let ns = env.namespace.clone();
    let registries: Api<ImageRegistry> = Api::namespaced(env.client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &ns);
    let statefulsets: Api<StatefulSet> = Api::namespaced(env.client.clone(), &ns);
    let spec = ImageRegistrySpec {
        tls: Some(CertificateSource {
            issuer_ref: None,
            secret_name: Some("my-tls".into()),
        }),
        auth: Some(AuthSpec {
            ca: Some(CertificateSource {
                issuer_ref: None,
                secret_name: Some("my-token-ca".into()),
            }),
            ..AuthSpec::default()
        }),
        ..ImageRegistrySpec::default()
    };
    create_registry(&env, "registry", spec).await;

    // The Secrets do not exist yet: the status says which one to create.
    let registry = env
        .wait_for(&registries, "registry", WAIT, |r| synced_is(r, "False"))
        .await;
    let (_, reason, message) = condition(&registry, "Synced").expect("Synced");
    assert_eq!(reason, "SecretNotFound");
    assert!(
        message.contains("my-tls") && message.contains("spec.tls.secretName"),
        "{message}"
    );
    assert_eq!(
        condition(&registry, "Ready").map(|c| c.1),
        Some("FailedSync".into())
    );
    // …and a Warning Event on the ImageRegistry says the same.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(env.client.clone(), &ns);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = events
            .list(&Default::default())
            .await
            .expect("lists events");
        let warned = list.items.iter().any(|event| {
            event.reason.as_deref() == Some("SecretNotFound")
                && event.type_.as_deref() == Some("Warning")
                && event.involved_object.kind.as_deref() == Some("ImageRegistry")
        });
        if warned {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Warning Event SecretNotFound"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let now = SystemTime::now();
    let ca = generate_ca("user CA", 30 * DAY, now).expect("CA");
    let server =
        issue_server_cert(&ca, &[format!("registry.{ns}.{ZONE}")], 30 * DAY, now).expect("cert");
    let token = generate_ca("user token CA", 30 * DAY, now).expect("token CA");
    let pp = PostParams::default();
    secrets
        .create(&pp, &tls_secret("my-tls", &server, Some(&ca.cert_pem)))
        .await
        .expect("my-tls");
    secrets
        .create(&pp, &tls_secret("my-token-ca", &token, None))
        .await
        .expect("my-token-ca");

    // Creating the Secrets alone (no change of the ImageRegistry) brings the registry up.
    let registry = env
        .wait_for(&registries, "registry", WAIT, |r| synced_is(r, "True"))
        .await;
    assert_eq!(
        registry.status.and_then(|s| s.tls_secret_name).as_deref(),
        Some("my-tls")
    );
    let statefulset = statefulsets.get("registry").await.expect("sts");
    let pod = statefulset
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("pod");
    let volume_secret = |volume: &str| {
        pod.volumes
            .iter()
            .flatten()
            .find(|v| v.name == volume)
            .and_then(|v| v.secret.as_ref())
            .and_then(|s| s.secret_name.clone())
    };
    assert_eq!(volume_secret("tls").as_deref(), Some("my-tls"));
    assert_eq!(volume_secret("token").as_deref(), Some("my-token-ca"));
    assert!(
        secrets
            .get_opt("registry-tls")
            .await
            .expect("reads")
            .is_none(),
        "nothing self-signed"
    );
    let first_hash = template_annotation(&statefulset, TLS_HASH_ANNOTATION).expect("hash");
    let live = secrets.get("my-tls").await.expect("my-tls");
    assert_eq!(
        Some(first_hash.clone()),
        live.data.as_ref().map(material_hash)
    );
    assert!(
        live.metadata.owner_references.is_none(),
        "the user's Secret is left alone"
    );

    // The user renews the certificate: the pods roll.
    let renewed =
        issue_server_cert(&ca, &[format!("registry.{ns}.{ZONE}")], 60 * DAY, now).expect("cert");
    secrets
        .replace("my-tls", &pp, &{
            let mut secret = tls_secret("my-tls", &renewed, Some(&ca.cert_pem));
            secret.metadata.resource_version = live.resource_version();
            secret
        })
        .await
        .expect("renews my-tls");
    let statefulset = env
        .wait_for(&statefulsets, "registry", WAIT, |sts| {
            template_annotation(sts, TLS_HASH_ANNOTATION).is_some_and(|hash| hash != first_hash)
        })
        .await;
    let live = secrets.get("my-tls").await.expect("my-tls");
    assert_eq!(
        template_annotation(&statefulset, TLS_HASH_ANNOTATION),
        live.data.as_ref().map(material_hash)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_certificates_are_renewed_before_they_expire() {
    let env = TestEnv::new("registry-controller-renewal").await;
    let ns = env.namespace.clone();
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &ns);
    let statefulsets: Api<StatefulSet> = Api::namespaced(env.client.clone(), &ns);
    let registries: Api<ImageRegistry> = Api::namespaced(env.client.clone(), &ns);

    // What a controller stored 80 of 90 days ago (serving) and four of five years ago (token CA):
    // both are past three quarters of their lifetime. The TLS CA is young and must be kept.
    let now = SystemTime::now();
    let ca = generate_ca("kept CA", 3650 * DAY, now - DAY).expect("CA");
    let old_server = issue_server_cert(
        &ca,
        &[
            format!("registry.{ns}.{ZONE}"),
            format!("registry.{ns}.svc"),
            format!("registry.{ns}.svc.cluster.local"),
        ],
        90 * DAY,
        now - 80 * DAY,
    )
    .expect("old cert");
    let old_token =
        generate_ca("old token CA", 5 * 365 * DAY, now - 4 * 365 * DAY).expect("old token CA");
    let pp = PostParams::default();
    secrets
        .create(&pp, &tls_secret("registry-tls-ca", &ca, Some(&ca.cert_pem)))
        .await
        .expect("CA");
    secrets
        .create(
            &pp,
            &tls_secret("registry-tls", &old_server, Some(&ca.cert_pem)),
        )
        .await
        .expect("tls");
    secrets
        .create(&pp, &tls_secret("registry-auth-ca", &old_token, None))
        .await
        .expect("token");

    start_controller(&env);
    create_registry(&env, "registry", ImageRegistrySpec::default()).await;
    env.wait_for(&registries, "registry", WAIT, |r| synced_is(r, "True"))
        .await;

    let serving = secrets.get("registry-tls").await.expect("registry-tls");
    let serving_pem = secret_text(&serving, "tls.crt");
    assert_ne!(
        serving_pem, old_server.cert_pem,
        "the old serving certificate was kept"
    );
    let info = inspect(&serving_pem).expect("parses");
    assert!(
        info.not_after > now + 80 * DAY,
        "renewed for a full lifetime"
    );
    assert!(
        is_issued_by(&serving_pem, &ca.cert_pem),
        "signed by the kept CA"
    );
    assert_eq!(
        secret_text(
            &secrets.get("registry-tls-ca").await.expect("CA"),
            "tls.crt"
        ),
        ca.cert_pem
    );
    let token = secrets.get("registry-auth-ca").await.expect("token CA");
    assert_ne!(
        secret_text(&token, "tls.crt"),
        old_token.cert_pem,
        "the old token CA was kept"
    );

    let statefulset = statefulsets.get("registry").await.expect("sts");
    assert_eq!(
        template_annotation(&statefulset, TLS_HASH_ANNOTATION),
        serving.data.as_ref().map(material_hash),
        "the pods mount the renewed certificate"
    );
    assert_eq!(
        template_annotation(&statefulset, TOKEN_HASH_ANNOTATION),
        token.data.as_ref().map(material_hash)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_refs_become_cert_manager_certificates() {
    let env = TestEnv::new("registry-controller-cert-manager").await;
    install_certificate_crd(&env).await;
    start_controller(&env);
    let ns = env.namespace.clone();
    let registries: Api<ImageRegistry> = Api::namespaced(env.client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &ns);
    let statefulsets: Api<StatefulSet> = Api::namespaced(env.client.clone(), &ns);
    let certificates: Api<DynamicObject> =
        Api::namespaced_with(env.client.clone(), &ns, &certificate_resource());
    let spec = ImageRegistrySpec {
        tls: Some(CertificateSource {
            issuer_ref: Some(IssuerRef {
                name: "letsencrypt".into(),
                kind: Some("ClusterIssuer".into()),
                group: None,
            }),
            secret_name: None,
        }),
        auth: Some(AuthSpec {
            ca: Some(CertificateSource {
                issuer_ref: Some(IssuerRef {
                    name: "ca-issuer".into(),
                    kind: None,
                    group: None,
                }),
                secret_name: None,
            }),
            ..AuthSpec::default()
        }),
        ..ImageRegistrySpec::default()
    };
    let created = create_registry(&env, "registry", spec).await;
    let registry = env
        .wait_for(&registries, "registry", WAIT, |r| synced_is(r, "True"))
        .await;
    assert_eq!(
        registry.status.and_then(|s| s.tls_secret_name).as_deref(),
        Some("registry-tls")
    );

    let serving = certificates
        .get("registry-tls")
        .await
        .expect("Certificate registry-tls");
    let spec = &serving.data["spec"];
    assert_eq!(spec["secretName"], "registry-tls");
    assert_eq!(spec["issuerRef"]["name"], "letsencrypt");
    assert_eq!(spec["issuerRef"]["kind"], "ClusterIssuer");
    assert_eq!(spec["dnsNames"][0], format!("registry.{ns}.{ZONE}"));
    assert_eq!(spec["dnsNames"][1], format!("registry.{ns}.svc"));
    let owner_uid = created.meta().uid.clone();
    assert!(
        serving
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| Some(&o.uid) == owner_uid.as_ref())
    );
    let token = certificates
        .get("registry-auth-ca")
        .await
        .expect("Certificate registry-auth-ca");
    assert_eq!(token.data["spec"]["isCA"], true);
    assert_eq!(token.data["spec"]["issuerRef"]["name"], "ca-issuer");
    assert_eq!(token.data["spec"]["issuerRef"]["kind"], "Issuer");
    assert!(
        secrets
            .get_opt("registry-tls")
            .await
            .expect("reads")
            .is_none(),
        "cert-manager writes it"
    );
    let statefulset = statefulsets.get("registry").await.expect("sts");
    assert_eq!(
        template_annotation(&statefulset, TLS_HASH_ANNOTATION).as_deref(),
        Some("pending")
    );

    // cert-manager issues: the pods get the certificate.
    let now = SystemTime::now();
    let issuer_ca = generate_ca("issuer", 30 * DAY, now).expect("CA");
    let issued = issue_server_cert(
        &issuer_ca,
        &[format!("registry.{ns}.{ZONE}")],
        30 * DAY,
        now,
    )
    .expect("cert");
    let written = secrets
        .create(
            &PostParams::default(),
            &tls_secret("registry-tls", &issued, Some(&issuer_ca.cert_pem)),
        )
        .await
        .expect("cert-manager's Secret");
    let expected = written.data.as_ref().map(material_hash);
    env.wait_for(&statefulsets, "registry", WAIT, |sts| {
        template_annotation(sts, TLS_HASH_ANNOTATION) == expected
    })
    .await;

    // Back to self-signed: the Certificate goes (or cert-manager would keep overwriting the Secret).
    registries
        .patch(
            "registry",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"tls": null}})),
        )
        .await
        .expect("drops tls");
    env.wait_gone(&certificates, "registry-tls", WAIT).await;
    let registry = env
        .wait_for(&registries, "registry", WAIT, |r| synced_is(r, "True"))
        .await;
    assert_eq!(
        registry.status.and_then(|s| s.tls_secret_name).as_deref(),
        Some("registry-tls")
    );
    let serving = secrets.get("registry-tls").await.expect("self-signed now");
    let ca = secrets.get("registry-tls-ca").await.expect("own CA");
    assert!(is_issued_by(
        &secret_text(&serving, "tls.crt"),
        &secret_text(&ca, "tls.crt")
    ));
    assert!(
        certificates
            .get_opt("registry-auth-ca")
            .await
            .expect("reads")
            .is_some(),
        "the token CA stays with cert-manager"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_access_rules_are_reported_not_deployed() {
    let env = TestEnv::new("registry-controller-invalid").await;
    start_controller(&env);
    let registries: Api<ImageRegistry> = Api::namespaced(env.client.clone(), &env.namespace);
    let spec: ImageRegistrySpec = serde_json::from_value(serde_json::json!({
        "auth": {"rules": [{"repositories": ["${user}/**"], "actions": ["pull"]}]},
        "persistentVolumeClaim": RegistryVolumeClaimSpec::default(),
    }))
    .expect("spec");
    create_registry(&env, "registry", spec).await;
    let registry = env
        .wait_for(&registries, "registry", WAIT, |r| synced_is(r, "False"))
        .await;
    let (_, reason, message) = condition(&registry, "Synced").expect("Synced");
    assert_eq!(reason, "InvalidSpec");
    assert!(
        message.contains("spec.auth.rules[0].repositories[0]") && message.contains("${account}"),
        "{message}"
    );
    let statefulsets: Api<StatefulSet> = Api::namespaced(env.client.clone(), &env.namespace);
    assert!(
        statefulsets
            .get_opt("registry")
            .await
            .expect("reads")
            .is_none()
    );
}
