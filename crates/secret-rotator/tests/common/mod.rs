//! Shared steps of the secret-rotator integration tests: a registry made Ready the way the
//! registry-controller would, the rotator running in-process, and readers for what it wrote.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use secret_rotator::account::SecretOwner;
use secret_rotator::kind::AccessMode;
use secret_rotator::registry::RegistryKey;
use secret_rotator::{Settings, names};
use serde_json::json;
use wharf_core::crd::{
    ImagePullSecret, ImagePushSecret, ImageRegistry, ImageRegistryAccount, ImageRegistryRef,
    ImageSecretStatus,
};
use wharf_core::runtime::ControllerMetrics;
use wharf_e2e::TestEnv;

pub const REGISTRY: &str = "registry";
pub const TLS_SECRET: &str = "registry-tls";
pub const CA_V1: &str = "-----BEGIN CERTIFICATE-----\nCA-ONE\n-----END CERTIFICATE-----\n";
pub const WAIT: Duration = Duration::from_secs(30);

/// Removes the rotator's finalizer from every push/pull secret of the namespace when dropped
/// (also after a failed assertion): the in-process rotator is gone by the time the harness deletes
/// the namespace, and a finalizer nobody removes would keep it Terminating forever. Declare it
/// after the `TestEnv` so it is dropped first.
pub struct FinalizerGuard {
    namespace: String,
}

impl FinalizerGuard {
    pub fn new(env: &TestEnv) -> Self {
        Self {
            namespace: env.namespace.clone(),
        }
    }
}

impl Drop for FinalizerGuard {
    fn drop(&mut self) {
        let namespace = self.namespace.clone();
        // Drop cannot await, and the test's runtime is blocked here: use a runtime and a client
        // of our own (a client serves requests on the runtime that created it).
        let result = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let kubeconfig = kube::config::Kubeconfig::read_from(wharf_e2e::kubeconfig_path())
                    .map_err(std::io::Error::other)?;
                let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                    .await
                    .map_err(std::io::Error::other)?;
                let client = kube::Client::try_from(config).map_err(std::io::Error::other)?;
                release::<ImagePushSecret>(&client, &namespace).await?;
                release::<ImagePullSecret>(&client, &namespace).await
            })
        })
        .join();
        if !matches!(result, Ok(Ok(()))) {
            eprintln!(
                "could not remove finalizers in namespace {}",
                self.namespace
            );
        }
    }
}

async fn release<K>(client: &kube::Client, namespace: &str) -> std::io::Result<()>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(std::io::Error::other)?;
    let no_finalizers = json!({"metadata": {"finalizers": null}});
    for cr in list.items {
        let name = cr.name_any();
        // Deleting first: the finalizer helper never re-adds to an object being deleted.
        drop(api.delete(&name, &Default::default()).await);
        drop(
            api.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&no_finalizers),
            )
            .await,
        );
    }
    Ok(())
}

/// Settings for tests: the env's namespace only, a registry named `registry` there by default,
/// a cheap bcrypt cost (debug builds hash slowly; registry-auth verifies any cost).
pub fn settings(env: &TestEnv, ttl: Duration, interval: Option<Duration>) -> Settings {
    let mut settings = Settings::new(ttl, interval, RegistryKey::new(&env.namespace, REGISTRY))
        .expect("valid settings");
    settings.bcrypt_cost = 4;
    settings.watch_namespace = Some(env.namespace.clone());
    settings
}

/// Runs the rotator in-process for the rest of the test.
pub fn start(env: &TestEnv, settings: Settings) {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(ControllerMetrics::register(&mut registry, "secret-rotator"));
    env.spawn(
        "secret-rotator",
        secret_rotator::run(env.client.clone(), settings, metrics),
    );
}

/// Creates ImageRegistry `registry` (not Ready yet) and its TLS Secret holding `CA_V1`.
pub async fn create_registry(env: &TestEnv) {
    let registries: Api<ImageRegistry> = Api::namespaced(env.client.clone(), &env.namespace);
    let registry: ImageRegistry = serde_json::from_value(json!({
        "apiVersion": "registry.mgoltzsche.github.com/v1alpha1",
        "kind": "ImageRegistry",
        "metadata": {"name": REGISTRY},
        "spec": {"replicas": 1}
    }))
    .expect("registry object");
    registries
        .create(&PostParams::default(), &registry)
        .await
        .expect("create ImageRegistry");
    set_tls_ca(env, CA_V1).await;
}

/// Writes the registry's TLS Secret with `ca` at `ca.crt`.
pub async fn set_tls_ca(env: &TestEnv, ca: &str) {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.namespace);
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": TLS_SECRET},
        "type": "kubernetes.io/tls",
        "stringData": {"ca.crt": ca, "tls.crt": "LEAF", "tls.key": "KEY"}
    }))
    .expect("secret object");
    secrets
        .patch(
            TLS_SECRET,
            &PatchParams::apply("registry-controller-stand-in").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("write TLS Secret");
}

/// Patches the registry's status as the registry-controller would.
pub async fn set_registry_status(env: &TestEnv, ready: bool, hostname: &str) {
    let registries: Api<ImageRegistry> = Api::namespaced(env.client.clone(), &env.namespace);
    let status = if ready { "True" } else { "False" };
    let reason = if ready { "Ready" } else { "Updating" };
    let patch = json!({
        "status": {
            "hostname": hostname,
            "tlsSecretName": TLS_SECRET,
            "conditions": [{
                "type": "Ready", "status": status, "reason": reason,
                "message": if ready { "1/1 pods ready" } else { "0/1 pods updating" },
                "lastTransitionTime": "2024-01-01T00:00:00Z"
            }]
        }
    });
    registries
        .patch_status(REGISTRY, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch registry status");
}

/// A push secret CR named `name` pointing at `registry` (no namespace: the CR's own).
pub async fn create_push_secret(env: &TestEnv, name: &str, registry: Option<&str>) {
    let api: Api<ImagePushSecret> = Api::namespaced(env.client.clone(), &env.namespace);
    let mut cr = ImagePushSecret::new(name, Default::default());
    cr.spec.registry_ref = registry.map(|name| ImageRegistryRef {
        name: name.into(),
        namespace: None,
    });
    api.create(&PostParams::default(), &cr)
        .await
        .expect("create ImagePushSecret");
}

/// A pull secret CR named `name` using the default registry.
pub async fn create_pull_secret(env: &TestEnv, name: &str) {
    let api: Api<ImagePullSecret> = Api::namespaced(env.client.clone(), &env.namespace);
    let cr = ImagePullSecret::new(name, Default::default());
    api.create(&PostParams::default(), &cr)
        .await
        .expect("create ImagePullSecret");
}

/// Whether a status says Ready=True at rotation `rotation` (or any, when None).
pub fn ready_at(status: Option<&ImageSecretStatus>, rotation: Option<i64>) -> bool {
    status.is_some_and(|s| {
        wharf_core::conditions::is_true(&s.conditions, "Ready")
            && (rotation.is_none() || s.rotation == rotation)
    })
}

/// Waits until push secret `name` is Ready at `rotation`.
pub async fn wait_push_ready(env: &TestEnv, name: &str, rotation: i64) -> ImagePushSecret {
    let api: Api<ImagePushSecret> = Api::namespaced(env.client.clone(), &env.namespace);
    env.wait_for(&api, name, WAIT, |cr| {
        ready_at(cr.status.as_ref(), Some(rotation))
    })
    .await
}

/// Waits until the push Secret of `name` holds rotation `rotation`.
pub async fn wait_push_secret(env: &TestEnv, name: &str, rotation: i64) -> Secret {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.namespace);
    let secret_name = names::secret_name(AccessMode::Push, name);
    env.wait_for(&secrets, &secret_name, WAIT, |secret| {
        secret.annotations().get("wharf.dev/rotation") == Some(&rotation.to_string())
    })
    .await
}

/// The accounts of a CR, sorted by name, read from the API (not a cache).
pub async fn accounts_of(env: &TestEnv, mode: AccessMode, name: &str) -> Vec<ImageRegistryAccount> {
    let owner = SecretOwner {
        namespace: env.namespace.clone(),
        name: name.into(),
        mode,
    };
    let api: Api<ImageRegistryAccount> = Api::all(env.client.clone());
    let mut accounts: Vec<_> = api
        .list(&ListParams::default().labels(&owner.label_selector()))
        .await
        .expect("list accounts")
        .items
        .into_iter()
        .filter(|a| owner.owns(a))
        .collect();
    accounts.sort_by_key(secret_rotator::account::rotation_of);
    accounts
}

/// Text of a Secret data key.
pub fn data(secret: &Secret, key: &str) -> String {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|ByteString(bytes)| String::from_utf8_lossy(bytes).into_owned())
        .unwrap_or_default()
}

/// The resource versions of objects, to prove nothing was written.
pub fn versions<K: Resource>(objects: &[&K]) -> Vec<Option<String>> {
    objects
        .iter()
        .map(|o| o.meta().resource_version.clone())
        .collect()
}
