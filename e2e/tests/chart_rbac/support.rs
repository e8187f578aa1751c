//! What the chart RBAC tests share: a release of the chart per test (its cluster-scoped leftovers
//! removed on drop), the binaries cargo builds, a chart controller started from its Deployment,
//! and checks of what such a process did and may not do.

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

pub use crate::pod::PodProcess;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, ResourceQuota};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use wharf_core::crd::{ImagePullSecret, ImagePushSecret, RegistryMirror};
pub use wharf_e2e::free_port;
use wharf_e2e::{TestEnv, TestProcess, repo_root};

/// How long a reconcile step may take (the machine may be busy compiling).
pub const WAIT: Duration = Duration::from_secs(60);
/// Label on every RegistryMirror a test creates (they are cluster-scoped): value = the test's id.
pub const TEST_LABEL: &str = "wharf.dev/rbac-test";
/// The binaries a chart component or its children run.
const BINARIES: [&str; 5] = [
    "mirror-controller",
    "registry-controller",
    "secret-rotator",
    "registry-auth",
    "hostess-agent",
];

/// The short unique id of a test (the suffix of its namespace).
pub fn test_id(env: &TestEnv) -> String {
    env.namespace
        .rsplit('-')
        .next()
        .expect("namespace has a suffix")
        .to_owned()
}

/// A release of the chart installed into the test namespace. Dropping it deletes what the
/// namespace's deletion would not: ClusterRoles and bindings, the test's RegistryMirrors, its
/// extra namespaces, and finalizers no running controller will remove any more.
pub struct Release {
    pub name: String,
    pub namespace: String,
    /// Namespaces the test made beyond its own (mirror or registry namespaces).
    pub extra_namespaces: Vec<String>,
    id: String,
}

impl Release {
    /// Creates `extra_namespaces`, forbids pods in them and in the test namespace (the local
    /// node may be up and hold the images: nothing of this test may run there), then installs
    /// the chart with `values` as release `r<id>`.
    pub async fn install(env: &TestEnv, extra_namespaces: &[String], values: &Value) -> Self {
        let id = test_id(env);
        let release = Self {
            name: format!("r{id}"),
            namespace: env.namespace.clone(),
            extra_namespaces: extra_namespaces.to_vec(),
            id,
        };
        let namespaces: Api<Namespace> = Api::all(env.client.clone());
        for namespace in extra_namespaces {
            let object: Namespace = serde_json::from_value(json!({
                "metadata": {"name": namespace, "labels": {"wharf.dev/e2e": "true"}}
            }))
            .expect("namespace object");
            namespaces
                .create(&PostParams::default(), &object)
                .await
                .unwrap_or_else(|err| panic!("creating namespace {namespace}: {err}"));
        }
        for namespace in std::iter::once(&env.namespace).chain(extra_namespaces) {
            forbid_pods(&env.client, namespace).await;
        }
        let (name, namespace, values) = (
            release.name.clone(),
            release.namespace.clone(),
            values.clone(),
        );
        tokio::task::spawn_blocking(move || wharf_e2e::install_chart(&name, &namespace, &values))
            .await
            .expect("helm install ran");
        release
    }

    /// `<release>-<component>`, the name of a component's ServiceAccount, Deployment and roles.
    pub fn object_name(&self, component: &str) -> String {
        format!("{}-{component}", self.name)
    }

    /// The selector of the test's RegistryMirrors (label [`TEST_LABEL`] = the test's id).
    pub fn test_selector(&self) -> String {
        format!("{TEST_LABEL}={}", self.id)
    }
}

/// What a release leaves behind that the test namespace's deletion does not remove.
struct Leftovers {
    release: String,
    namespaces: Vec<String>,
    extra_namespaces: Vec<String>,
    mirror_selector: String,
}

impl Leftovers {
    async fn remove(&self, client: Client) -> Result<(), kube::Error> {
        let mirrors: Api<RegistryMirror> = Api::all(client.clone());
        let selected = ListParams::default().labels(&self.mirror_selector);
        for mirror in mirrors.list_metadata(&selected).await?.items {
            release_finalizers(&mirrors, &mirror.name_any()).await;
        }
        for namespace in &self.namespaces {
            let pushes: Api<ImagePushSecret> = Api::namespaced(client.clone(), namespace);
            for cr in pushes.list_metadata(&ListParams::default()).await?.items {
                release_finalizers(&pushes, &cr.name_any()).await;
            }
            let pulls: Api<ImagePullSecret> = Api::namespaced(client.clone(), namespace);
            for cr in pulls.list_metadata(&ListParams::default()).await?.items {
                release_finalizers(&pulls, &cr.name_any()).await;
            }
        }
        wharf_e2e::delete_release_cluster_rbac(&client, &self.release).await?;
        let namespaces: Api<Namespace> = Api::all(client);
        for namespace in &self.extra_namespaces {
            namespaces
                .delete(namespace, &DeleteParams::background())
                .await?;
        }
        Ok(())
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let leftovers = Leftovers {
            release: self.name.clone(),
            namespaces: std::iter::once(self.namespace.clone())
                .chain(self.extra_namespaces.iter().cloned())
                .collect(),
            extra_namespaces: self.extra_namespaces.clone(),
            mirror_selector: self.test_selector(),
        };
        // Drop cannot await, and the test's runtime is blocked here: a thread with a runtime
        // and a client of its own (a client serves requests on the runtime that made it).
        let result = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let client = client_from(&wharf_e2e::kubeconfig_path()).await;
                leftovers
                    .remove(client)
                    .await
                    .map_err(std::io::Error::other)
            })
        })
        .join();
        if !matches!(result, Ok(Ok(()))) {
            eprintln!(
                "chart_rbac: cleaning up release {} left something behind: {result:?}",
                self.name
            );
        }
    }
}

/// Deletes an object, then removes its finalizers (the controller that owns them may be gone).
async fn release_finalizers<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + Debug + serde::de::DeserializeOwned,
{
    drop(api.delete(name, &DeleteParams::default()).await);
    let no_finalizers = json!({"metadata": {"finalizers": null}});
    drop(
        api.patch(name, &PatchParams::default(), &Patch::Merge(&no_finalizers))
            .await,
    );
}

/// A ResourceQuota of zero pods: StatefulSets and DaemonSets of the namespace never get a pod.
async fn forbid_pods(client: &Client, namespace: &str) {
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "no-pods"},
        "spec": {"hard": {"pods": "0"}}
    }))
    .expect("quota object");
    Api::<ResourceQuota>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &quota)
        .await
        .unwrap_or_else(|err| panic!("creating the pod quota of {namespace}: {err}"));
}

/// A client from a kubeconfig file (e.g. one of `TestEnv::kubeconfig_as`).
pub async fn client_from(path: &Path) -> Client {
    let file = kube::config::Kubeconfig::read_from(path)
        .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap_or_else(|err| panic!("loading {}: {err}", path.display()));
    Client::try_from(config).expect("a client from the kubeconfig")
}

/// The path of a workspace binary, built once per test process by cargo into the target
/// directory this test binary runs from (same profile).
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    assert!(BINARIES.contains(&name), "{name} is not built here");
    BUILT.get_or_init(build_binaries).join(name)
}

fn build_binaries() -> PathBuf {
    // This test runs as <target>/<profile>/deps/chart_rbac-<hash>.
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps")
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("a target directory");
    let profile = profile_dir
        .file_name()
        .and_then(|name| name.to_str())
        .expect("a profile directory")
        .to_owned();
    let mut command = wharf_e2e::node::cargo_command();
    command
        .args(["build", "--quiet", "--bins", "--target-dir"])
        .arg(target_dir);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    for binary in BINARIES {
        command.args(["--package", binary]);
    }
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("running cargo build for {BINARIES:?}: {err}"));
    assert!(
        output.status.success(),
        "cargo build of {BINARIES:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    profile_dir
}

/// The pod of a chart component's Deployment, to run its controller as a process.
pub async fn controller_pod(env: &TestEnv, release: &Release, component: &str) -> PodProcess {
    let name = release.object_name(component);
    let deployment = Api::<Deployment>::namespaced(env.client.clone(), &release.namespace)
        .get(&name)
        .await
        .unwrap_or_else(|err| panic!("the chart's Deployment {name}: {err}"));
    let spec = deployment.spec.expect("a Deployment spec");
    assert_eq!(
        spec.replicas,
        Some(0),
        "{name} must not run a pod on the local node"
    );
    PodProcess::new(
        env,
        &release.namespace,
        &spec.template,
        component,
        &format!("{name}-rbac-0"),
    )
    .await
}

/// Starts a chart controller under its ServiceAccount with leader election on (as with two
/// replicas) and its HTTP listener on loopback; waits until it leads and reports ready.
pub async fn start_controller(
    env: &TestEnv,
    release: &Release,
    component: &str,
    extra_env: &[(&str, String)],
) -> (TestProcess, PodProcess) {
    let pod = controller_pod(env, release, component).await;
    assert_eq!(pod.service_account, release.object_name(component));
    let port = free_port();
    let mut command = pod.command(env, component);
    command
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("LEADER_ELECTION", "true")
        .env("LOG_FORMAT", "text")
        .env("LOG_LEVEL", "info");
    for (name, value) in extra_env {
        command.env(name, value);
    }
    let process = env.spawn_process(component, command);
    wait_ready(&process, port).await;
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &release.namespace);
    let lease = leases
        .get(&format!("wharf-{component}"))
        .await
        .unwrap_or_else(|err| panic!("{component}'s Lease: {err}\n{}", process.log_tail(50)));
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(pod.pod_name.as_str()),
        "{component} holds its Lease"
    );
    (process, pod)
}

/// Polls `/readyz` on `port` until it answers 200.
pub async fn wait_ready(process: &TestProcess, port: u16) {
    let url = format!("http://127.0.0.1:{port}/readyz");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _) = curl(&["--max-time", "2", &url]).await;
        if status == 200 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} never answered 200 (last: {status})\n{}",
            process.log_tail(80)
        );
        assert!(
            process.wait(Duration::ZERO).is_none(),
            "the process exited\n{}",
            process.log_tail(80)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `curl -s ARGS` with the status code appended; returns (status, body). Status 0: no answer.
pub async fn curl(args: &[&str]) -> (u16, String) {
    let output = tokio::process::Command::new("curl")
        .arg("-s")
        .args(args)
        .args(["-w", "\n%{http_code}"])
        .output()
        .await
        .expect("runs curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// Installs curl when missing (the project's own script).
pub fn ensure_curl() {
    let script = repo_root().join("xtask/scripts/registry-test-deps.sh");
    let status = Command::new("bash")
        .arg(&script)
        .status()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
    assert!(status.success(), "{} failed", script.display());
}

/// Fails when the process was refused anything by the API server.
pub fn assert_never_forbidden(process: &TestProcess) {
    let log = process.log();
    let refused: Vec<&str> = log
        .lines()
        .filter(|line| line.to_ascii_lowercase().contains("forbidden"))
        .collect();
    assert!(
        refused.is_empty(),
        "the process was refused something its chart RBAC should allow:\n{}\n{}",
        refused.join("\n"),
        process.log_tail(40)
    );
}

/// Asserts that the API server refused the request with 403 Forbidden.
pub fn refused<T: Debug>(result: Result<T, kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what} must be forbidden, got {other:?}"),
    }
}

/// Asserts that listing `api` (metadata only) is forbidden; `what` names the attempt.
pub async fn refused_listing<K>(api: Api<K>, what: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + Debug,
{
    refused(api.list_metadata(&ListParams::default()).await, what);
}

/// Waits for a Warning Event about object `involved` with `reason` in `namespace` (Events of
/// cluster-scoped objects are filed in `default`): the process could write it.
pub async fn wait_warning(env: &TestEnv, namespace: &str, involved: &str, reason: &str) {
    let events: Api<Event> = Api::namespaced(env.client.clone(), namespace);
    let params = ListParams::default().fields(&format!("involvedObject.name={involved}"));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = events.list(&params).await.expect("lists Events");
        if list
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some(reason) && e.type_.as_deref() == Some("Warning"))
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Warning Event {reason} about {involved} in {namespace}\n{}",
            env.dump().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether an object is controlled by the owner with `uid`.
pub fn controlled_by(meta: &kube::api::ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|owner| owner.uid == uid && owner.controller == Some(true))
}

/// Whether `conditions` has `type_` with `status` (and `reason`, when given).
pub fn has_condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
    status: &str,
    reason: Option<&str>,
) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == status && reason.is_none_or(|r| c.reason == r))
}
