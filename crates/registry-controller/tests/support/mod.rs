//! Shared pieces of registry-controller's integration tests: running the controller in-process,
//! reading its reconcile count, conditions, and a minimal cert-manager Certificate CRD.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use prometheus_client::registry::Registry;
use registry_controller::settings::Settings;
use wharf_core::crd::{ImageRegistry, ImageRegistrySpec};
use wharf_core::runtime::ControllerMetrics;
use wharf_core::tls::CertifiedKey;
use wharf_e2e::{TestEnv, cluster_is_established};

pub const ZONE: &str = "registry.test";
pub const WAIT: Duration = Duration::from_secs(90);

/// A running controller and its metrics.
pub struct Running {
    metrics: Arc<std::sync::Mutex<Registry>>,
}

impl Running {
    /// Reconciles started so far (from the controller's own metric).
    pub fn reconciles(&self) -> u64 {
        let mut text = String::new();
        if let Ok(registry) = self.metrics.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        }
        text.lines()
            .find(|line| line.starts_with("wharf_reconciles_total{"))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    }
}

/// Starts registry-controller in-process, watching only the test's namespace.
pub fn start_controller(env: &TestEnv) -> Running {
    let mut registry = Registry::with_prefix("wharf");
    let metrics = Arc::new(ControllerMetrics::register(
        &mut registry,
        "registry-controller",
    ));
    let settings = Settings {
        dns_zone: ZONE.to_owned(),
        registry_image: "registry:2".to_owned(),
        auth_image: "docker.io/wharf/registry-auth:test".to_owned(),
        watch_namespace: Some(env.namespace.clone()),
    };
    env.spawn(
        "registry-controller",
        registry_controller::run(env.client.clone(), settings, metrics),
    );
    Running {
        metrics: Arc::new(std::sync::Mutex::new(registry)),
    }
}

pub async fn create_registry(env: &TestEnv, name: &str, spec: ImageRegistrySpec) -> ImageRegistry {
    Api::<ImageRegistry>::namespaced(env.client.clone(), &env.namespace)
        .create(&PostParams::default(), &ImageRegistry::new(name, spec))
        .await
        .expect("creates ImageRegistry")
}

/// The condition of `type_` as (status, reason, message).
pub fn condition(registry: &ImageRegistry, type_: &str) -> Option<(String, String, String)> {
    registry
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Whether the status describes the current generation with `Synced` of `synced`.
pub fn synced_is(registry: &ImageRegistry, synced: &str) -> bool {
    registry.status.as_ref().and_then(|s| s.observed_generation) == registry.metadata.generation
        && condition(registry, "Synced").is_some_and(|(status, _, _)| status == synced)
}

/// A pod template annotation of the StatefulSet.
pub fn template_annotation(statefulset: &StatefulSet, key: &str) -> Option<String> {
    statefulset
        .spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(key)
        .cloned()
}

/// A kubernetes.io/tls Secret with the given certificate.
pub fn tls_secret(name: &str, key: &CertifiedKey, ca: Option<&str>) -> Secret {
    let mut data = std::collections::BTreeMap::from([
        (
            "tls.crt".to_owned(),
            ByteString(key.cert_pem.clone().into_bytes()),
        ),
        (
            "tls.key".to_owned(),
            ByteString(key.key_pem.clone().into_bytes()),
        ),
    ]);
    if let Some(ca) = ca {
        data.insert("ca.crt".to_owned(), ByteString(ca.as_bytes().to_vec()));
    }
    let mut secret = Secret {
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data),
        ..Secret::default()
    };
    secret.metadata.name = Some(name.to_owned());
    secret
}

/// Installs a minimal cert-manager `Certificate` CRD (cert-manager.io/v1, any spec), as a cluster
/// with cert-manager has; idempotent, never removed (other tests may rely on it).
pub async fn install_certificate_crd(env: &TestEnv) {
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "certificates.cert-manager.io"},
        "spec": {
            "group": "cert-manager.io",
            "names": {"kind": "Certificate", "listKind": "CertificateList", "plural": "certificates", "singular": "certificate"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                }},
                "subresources": {"status": {}}
            }]
        }
    }))
    .expect("CRD object");
    let api: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    api.patch(
        "certificates.cert-manager.io",
        &PatchParams::apply("wharf-e2e-cert-manager").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("installs the Certificate CRD");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let live = api
            .get("certificates.cert-manager.io")
            .await
            .expect("reads CRD");
        if cluster_is_established(&live) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Certificate CRD not established"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Established is not yet served everywhere: wait until a list answers.
    let certificates: Api<kube::api::DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        &env.namespace,
        &wharf_core::registry::certificates::certificate_resource(),
    );
    while certificates.list(&Default::default()).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Certificates are not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
