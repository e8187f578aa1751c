//! Harness of mirror-controller's integration tests: a test namespace, a controller of its own
//! (selecting only this test's RegistryMirrors, which are cluster-scoped), its write counter,
//! and cleanup of the mirrors when the test ends.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use mirror_controller::Settings;
use prometheus_client::registry::Registry;
use serde_json::json;
use wharf_core::crd::RegistryMirror;
use wharf_core::runtime::ControllerMetrics;
use wharf_e2e::TestEnv;

/// Label that ties this test's mirrors to its controller.
pub const TEST_LABEL: &str = "wharf.dev/mirror-test";
/// How long a mirror may take to converge in a test.
pub const CONVERGE: Duration = Duration::from_secs(30);

pub struct Harness {
    pub env: TestEnv,
    /// Short unique suffix of this test, part of every mirror name.
    pub id: String,
    pub mirrors: Api<RegistryMirror>,
    pub services: Api<Service>,
    pub statefulsets: Api<StatefulSet>,
    pub daemonsets: Api<DaemonSet>,
    pub secrets: Api<Secret>,
    pub config_maps: Api<ConfigMap>,
    /// For the cleanup thread: a client is tied to the runtime that made it.
    config: kube::Config,
}

/// A controller started by [`Harness::start`], with its metrics.
pub struct Running {
    pub name: String,
    pub registry: Registry,
}

impl Running {
    /// Sum of a counter family (e.g. `wharf_api_writes_total`) over its labels.
    pub fn counter(&self, family: &str) -> u64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("metrics encode");
        text.lines()
            .filter(|line| line.starts_with(&format!("{family}{{")))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    pub fn writes(&self) -> u64 {
        self.counter("wharf_api_writes_total")
    }

    pub fn reconciles(&self) -> u64 {
        self.counter("wharf_reconciles_total")
    }

    /// The writes by kind, for assertion messages.
    pub fn writes_by_kind(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("metrics encode");
        text.lines()
            .filter(|line| line.starts_with("wharf_api_writes_total{"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Harness {
    /// Waits for a Warning Event about mirror `name` with `reason` and returns its message.
    pub async fn wait_event(&self, name: &str, reason: &str) -> String {
        use k8s_openapi::api::core::v1::Event;
        let events: Api<Event> = Api::namespaced(self.client(), "default");
        let params = ListParams::default().fields(&format!("involvedObject.name={name}"));
        let deadline = tokio::time::Instant::now() + CONVERGE;
        loop {
            let list = events.list(&params).await.expect("list events");
            if let Some(event) = list.items.into_iter().find(|e| {
                e.reason.as_deref() == Some(reason) && e.type_.as_deref() == Some("Warning")
            }) {
                return event.message.unwrap_or_default();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no Warning Event {reason} about {name}\n{}",
                self.env.dump().await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn new(test: &str) -> Self {
        let env = TestEnv::new(test).await;
        let id = env
            .namespace
            .rsplit('-')
            .next()
            .expect("namespace has a suffix")
            .to_owned();
        let client = env.client.clone();
        let namespace = env.namespace.clone();
        let kubeconfig = kube::config::Kubeconfig::read_from(wharf_e2e::kubeconfig_path())
            .expect("the admin kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("a client config");
        Self {
            config,
            mirrors: Api::all(client.clone()),
            services: Api::namespaced(client.clone(), &namespace),
            statefulsets: Api::namespaced(client.clone(), &namespace),
            daemonsets: Api::namespaced(client.clone(), &namespace),
            secrets: Api::namespaced(client.clone(), &namespace),
            config_maps: Api::namespaced(client, &namespace),
            id,
            env,
        }
    }

    pub fn client(&self) -> Client {
        self.env.client.clone()
    }

    pub fn namespace(&self) -> &str {
        &self.env.namespace
    }

    /// The controller settings of this test: its namespace, its mirrors only.
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::for_namespace(&self.env.namespace);
        settings.mirror_selector = Some(format!("{TEST_LABEL}={}", self.id));
        settings.map_version_file = self.env.log_dir().join("imageswap-maps.version");
        settings
    }

    /// Runs the controller in-process under `name` (stop it with `env.stop(name)`).
    pub fn start(&self, name: &str, settings: Settings) -> Running {
        let mut registry = Registry::with_prefix("wharf");
        let metrics = std::sync::Arc::new(ControllerMetrics::register(
            &mut registry,
            mirror_controller::COMPONENT,
        ));
        let client = self.client();
        self.env.spawn(name, async move {
            if let Err(err) = mirror_controller::run(client, settings, metrics).await {
                panic!("mirror-controller stopped: {err}");
            }
        });
        Running {
            name: name.to_owned(),
            registry,
        }
    }

    /// `<base>-<id>`: a mirror name unique to this test.
    pub fn name(&self, base: &str) -> String {
        format!("{base}-{}", self.id)
    }

    /// A RegistryMirror of this test from a spec in JSON.
    pub fn mirror(&self, base: &str, spec: serde_json::Value) -> RegistryMirror {
        serde_json::from_value(json!({
            "apiVersion": "k8s.osp.tech/v1",
            "kind": "RegistryMirror",
            "metadata": {"name": self.name(base), "labels": {TEST_LABEL: self.id}},
            "spec": spec,
        }))
        .expect("a RegistryMirror")
    }

    pub async fn create(&self, mirror: &RegistryMirror) -> RegistryMirror {
        self.mirrors
            .create(&PostParams::default(), mirror)
            .await
            .unwrap_or_else(|err| panic!("creating RegistryMirror {}: {err}", mirror.name_any()))
    }

    /// Merge-patches a mirror's spec.
    /// The config Secret of the mirror whose children are named `base` (`registry-mirror-<n>`).
    pub async fn config_secret(&self, base: &str) -> Secret {
        self.secrets
            .get(&format!("{base}-secret"))
            .await
            .unwrap_or_else(|err| panic!("reading the config Secret {base}-secret: {err}"))
    }

    pub async fn patch_spec(&self, name: &str, spec: serde_json::Value) -> RegistryMirror {
        self.mirrors
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await
            .unwrap_or_else(|err| panic!("patching RegistryMirror {name}: {err}"))
    }

    /// Waits until the mirror's condition `type_` has `status` (and `reason`, if given) for its
    /// current generation.
    pub async fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
    ) -> RegistryMirror {
        self.env
            .wait_for(&self.mirrors, name, CONVERGE, |mirror: &RegistryMirror| {
                let generation = mirror.metadata.generation;
                let Some(current) = mirror.status.as_ref() else {
                    return false;
                };
                current.observed_generation == generation
                    && current.conditions.iter().any(|c| {
                        c.type_ == type_
                            && c.status == status
                            && reason.is_none_or(|r| c.reason == r)
                    })
            })
            .await
    }

    pub async fn wait_synced(&self, name: &str) -> RegistryMirror {
        self.wait_condition(name, mirror_controller::SYNCED, "True", None)
            .await
    }

    /// Waits until `running` has made no write for `quiet` (and reconciled at least `min_reconciles`).
    pub async fn wait_quiet(&self, running: &Running, min_reconciles: u64, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + CONVERGE;
        let mut last = (running.writes(), tokio::time::Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let writes = running.writes();
            if writes != last.0 {
                last = (writes, tokio::time::Instant::now());
            } else if last.1.elapsed() >= quiet && running.reconciles() >= min_reconciles {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "controller {} did not settle ({} reconciles, wanted {min_reconciles}):\n{}\n{}",
                running.name,
                running.reconciles(),
                running.writes_by_kind(),
                self.env.dump().await
            );
        }
    }

    pub async fn create_secret(&self, name: &str, data: BTreeMap<&str, &str>) {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": self.namespace()},
            "stringData": data,
        }))
        .expect("a Secret");
        self.secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap_or_else(|err| panic!("creating Secret {name}: {err}"));
    }

    pub async fn replace_secret_data(&self, name: &str, data: BTreeMap<&str, &str>) {
        let patch = json!({ "stringData": data });
        self.secrets
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap_or_else(|err| panic!("patching Secret {name}: {err}"));
    }

    /// resourceVersions of the mirrors and every object in the namespace that belongs to one.
    pub async fn versions(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let selector = ListParams::default().labels("app=docker-registry");
        for mirror in self
            .mirrors
            .list(&ListParams::default().labels(&format!("{TEST_LABEL}={}", self.id)))
            .await
            .expect("list mirrors")
        {
            out.insert(
                format!("RegistryMirror/{}", mirror.name_any()),
                mirror.resource_version().unwrap_or_default(),
            );
        }
        for o in self.services.list(&selector).await.expect("list") {
            out.insert(
                format!("Service/{}", o.name_any()),
                o.resource_version().unwrap_or_default(),
            );
        }
        for o in self.statefulsets.list(&selector).await.expect("list") {
            out.insert(
                format!("StatefulSet/{}", o.name_any()),
                o.resource_version().unwrap_or_default(),
            );
        }
        for o in self.daemonsets.list(&selector).await.expect("list") {
            out.insert(
                format!("DaemonSet/{}", o.name_any()),
                o.resource_version().unwrap_or_default(),
            );
        }
        for o in self.secrets.list(&selector).await.expect("list") {
            out.insert(
                format!("Secret/{}", o.name_any()),
                o.resource_version().unwrap_or_default(),
            );
        }
        out
    }
}

impl Drop for Harness {
    /// Deletes this test's mirrors (cluster-scoped, so the namespace's deletion does not take
    /// them), clearing finalizers a stopped controller can no longer remove.
    fn drop(&mut self) {
        let (config, selector) = (self.config.clone(), format!("{TEST_LABEL}={}", self.id));
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for cleanup");
            runtime.block_on(async move {
                let Ok(client) = Client::try_from(config) else {
                    return;
                };
                // Metadata only: a mirror whose stored spec breaks the schema must go too.
                let api: Api<RegistryMirror> = Api::all(client);
                let Ok(list) = api
                    .list_metadata(&ListParams::default().labels(&selector))
                    .await
                else {
                    return;
                };
                for mirror in list {
                    let name = mirror.name_any();
                    let _ = api
                        .patch(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                        )
                        .await;
                    let _ = api.delete(&name, &DeleteParams::default()).await;
                }
            });
        });
        let _ = done.join();
    }
}

/// The value of an env var of a DaemonSet's first container.
pub fn ds_env(ds: &DaemonSet, name: &str) -> Option<String> {
    ds.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

/// The config-hash annotation of a pod template.
pub fn template_hash(template: &k8s_openapi::api::core::v1::PodTemplateSpec) -> String {
    template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(wharf_core::mirror::names::CONFIG_HASH_ANNOTATION))
        .cloned()
        .unwrap_or_default()
}

/// A condition of a mirror's status (the test fails when it is missing).
pub fn condition(
    mirror: &RegistryMirror,
    type_: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    mirror
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{} has no {type_} condition: {:?}",
                mirror.name_any(),
                mirror.status
            )
        })
}

/// Rewrites a stored RegistryMirror straight in etcd, bypassing the API server's validation:
/// the state of an object created under an older, laxer schema (the seed's CRD had none).
pub fn rewrite_in_etcd(name: &str, change: impl FnOnce(&mut serde_json::Value)) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let ports = std::fs::read_to_string(wharf_e2e::kubeconfig_path().with_file_name("ports.env"))
        .expect("the cluster's ports.env");
    let port = ports
        .lines()
        .find_map(|line| line.strip_prefix("ETCD_PORT="))
        .expect("ETCD_PORT in ports.env");
    let url = |verb: &str| format!("http://127.0.0.1:{port}/v3/kv/{verb}");
    let key = b64.encode(format!("/registry/k8s.osp.tech/registrymirrors/{name}"));
    let curl = |url: String, body: serde_json::Value| {
        let output = std::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-X",
                "POST",
                &url,
                "-d",
                &body.to_string(),
            ])
            .output()
            .expect("running curl");
        assert!(
            output.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).expect("etcd answers JSON")
    };
    let found = curl(url("range"), json!({ "key": key }));
    let value = found["kvs"][0]["value"]
        .as_str()
        .expect("the mirror is in etcd");
    let mut object: serde_json::Value =
        serde_json::from_slice(&b64.decode(value).expect("base64")).expect("stored JSON");
    change(&mut object);
    curl(
        url("put"),
        json!({ "key": key, "value": b64.encode(object.to_string()) }),
    );
}
