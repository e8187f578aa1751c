//! Inputs beyond the spec on the real API server: a credentials Secret that appears (and
//! changes) later, and a user-given certificate Secret (DOCKER_CERTIFICATE_SECRET).

mod common;

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine as _;
use common::{CONVERGE, Harness, ds_env, template_hash};
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::json;
use wharf_e2e::secret_text;

#[tokio::test]
async fn a_credentials_secret_that_appears_later_is_used() {
    let h = Harness::new("mirror-credentials").await;
    h.start("controller", h.settings());
    let name = h
        .create(&h.mirror(
            "private",
            json!({"upstreamUrl": "registry.example.com", "credentialsSecret": "upstream-login"}),
        ))
        .await
        .name_any();
    let base = format!("registry-mirror-{name}");

    let mirror = h
        .wait_condition(
            &name,
            mirror_controller::SYNCED,
            "False",
            Some("CredentialsSecretMissing"),
        )
        .await;
    let message = &common::condition(&mirror, mirror_controller::SYNCED).message;
    assert!(message.contains("spec.credentialsSecret"), "{message}");
    assert!(
        message.contains(&format!("{}/upstream-login does not exist", h.namespace())),
        "{message}"
    );
    assert!(
        h.statefulsets.get_opt(&base).await.expect("read").is_none(),
        "no anonymous mirror is started"
    );
    // Both Event APIs list from the same store; the legacy one sees either kind.
    let events: Api<Event> = Api::namespaced(h.client(), "default");
    let found = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .expect("list events")
        .items
        .into_iter()
        .any(|e| {
            e.reason.as_deref() == Some("CredentialsSecretMissing")
                && e.type_.as_deref() == Some("Warning")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.contains("spec.credentialsSecret"))
        });
    assert!(found, "a Warning Event names the problem");

    h.create_secret("upstream-login", BTreeMap::from([("username", "robot")]))
        .await;
    let mirror = h
        .wait_condition(
            &name,
            mirror_controller::SYNCED,
            "False",
            Some("CredentialsKeyMissing"),
        )
        .await;
    let message = &common::condition(&mirror, mirror_controller::SYNCED).message;
    assert!(message.contains("no key `password`"), "{message}");

    h.replace_secret_data("upstream-login", BTreeMap::from([("password", "s3cret")]))
        .await;
    h.wait_synced(&name).await;
    let basic = base64::engine::general_purpose::STANDARD.encode("robot:s3cret");
    let config = h.config_secret(&base).await;
    assert!(
        secret_text(&config, "default.conf").contains(&basic),
        "credentials reach nginx"
    );
    let first: StatefulSet = h.statefulsets.get(&base).await.expect("StatefulSet");
    let first_hash = template_hash(&first.spec.expect("spec").template);

    h.replace_secret_data("upstream-login", BTreeMap::from([("password", "rotated")]))
        .await;
    let rotated = base64::engine::general_purpose::STANDARD.encode("robot:rotated");
    h.env
        .wait_for(
            &h.secrets,
            &format!("{base}-secret"),
            CONVERGE,
            |s: &Secret| secret_text(s, "default.conf").contains(&rotated),
        )
        .await;
    h.env
        .wait_for(&h.statefulsets, &base, CONVERGE, |sts: &StatefulSet| {
            sts.spec
                .as_ref()
                .is_some_and(|s| template_hash(&s.template) != first_hash)
        })
        .await;
}

#[tokio::test]
async fn a_user_certificate_secret_replaces_the_generated_one() {
    let h = Harness::new("mirror-user-cert").await;
    // First without DOCKER_CERTIFICATE_SECRET: a generated certificate in the config Secret.
    h.start("generating", h.settings());
    let name = h
        .create(&h.mirror("docker", json!({"upstreamUrl": "docker.io"})))
        .await
        .name_any();
    let base = format!("registry-mirror-{name}");
    h.wait_synced(&name).await;
    let config = h.config_secret(&base).await;
    assert!(secret_text(&config, "tls.key").contains("PRIVATE KEY"));
    h.env.stop("generating");

    let mut settings = h.settings();
    settings.docker_certificate_secret = Some("mirror-tls".into());
    h.start("controller", settings);
    let mirror = h
        .wait_condition(
            &name,
            mirror_controller::SYNCED,
            "False",
            Some("CertificateSecretMissing"),
        )
        .await;
    let message = &common::condition(&mirror, mirror_controller::SYNCED).message;
    assert!(
        message.starts_with("DOCKER_CERTIFICATE_SECRET:"),
        "{message}"
    );

    let ca = wharf_core::tls::generate_ca(
        "test",
        std::time::Duration::from_secs(86_400),
        SystemTime::now(),
    )
    .expect("CA");
    let server = wharf_core::tls::issue_server_cert(
        &ca,
        &["mirror-docker.io".into()],
        std::time::Duration::from_secs(86_400),
        SystemTime::now(),
    )
    .expect("cert");
    h.create_secret(
        "mirror-tls",
        BTreeMap::from([
            ("tls.crt", server.cert_pem.as_str()),
            ("tls.key", server.key_pem.as_str()),
        ]),
    )
    .await;
    h.wait_synced(&name).await;
    let sts: StatefulSet = h.statefulsets.get(&base).await.expect("StatefulSet");
    let volumes = sts
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod")
        .volumes
        .expect("volumes");
    let tls = volumes
        .iter()
        .find(|v| v.name == "tls")
        .and_then(|v| v.secret.clone())
        .expect("tls volume");
    assert_eq!(tls.secret_name.as_deref(), Some("mirror-tls"));
    let ds: DaemonSet = h
        .daemonsets
        .get(&format!("{base}-utils"))
        .await
        .expect("DaemonSet");
    assert_eq!(
        ds_env(&ds, "CA_CERT"),
        None,
        "the CA comes from the user's Secret"
    );
    let volumes = ds
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod")
        .volumes
        .expect("volumes");
    let ca_volume = volumes
        .iter()
        .find(|v| v.name == "mirror-tls")
        .and_then(|v| v.secret.clone())
        .expect("ca volume");
    assert_eq!(ca_volume.secret_name.as_deref(), Some("mirror-tls"));
    let items = ca_volume.items.expect("items");
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str()),
        ("tls.crt", "ca.crt"),
        "without ca.crt nodes trust the certificate itself"
    );
    let config = h.config_secret(&base).await;
    let keys: Vec<&String> = config.data.as_ref().expect("data").keys().collect();
    assert_eq!(keys, ["default.conf"], "the generated material is gone");
}
