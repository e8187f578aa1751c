//! wharf-e2e: the harness every integration test uses to run against the real local API server.
//!
//! `TestEnv::new("name")` starts or reuses the local control plane (`xtask/scripts/cluster.sh up`),
//! installs wharf's CRDs, and creates a fresh namespace that is deleted again when the `TestEnv`
//! is dropped (also when the test panics); no pod may run in it (`TestEnv::with_pods` for tests
//! on the local node). Controllers run in-process (`spawn`) or as binaries (`spawn_process`);
//! `wait_for` polls with a timeout and, on failure, prints the object, the namespace's events and
//! every captured log. `node` and `scenario` hold the local node and the whole-product flows the
//! node tests and `cargo xtask demo` share.

mod chart;
mod cluster;
mod logs;
pub mod node;
mod oci;
mod process;
pub mod scenario;
mod wait;

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, Config};
use tokio::task::JoinHandle;

pub use chart::{chart_dir, delete_release_cluster_rbac, install_chart, lint_chart, render_chart};
pub use cluster::{
    admin_config, ensure_up, install_crds, is_established as cluster_is_established,
    kubeconfig_path, repo_root, state_dir,
};
pub use oci::{free_port, write_test_image};
pub use process::TestProcess;

/// The ResourceQuota `TestEnv::new` puts in its namespace so that no pod runs there.
const NO_PODS_QUOTA: &str = "wharf-e2e-no-pods";

/// One integration test's view of the cluster: an admin client and a namespace of its own.
pub struct TestEnv {
    /// Admin client (group system:masters).
    pub client: Client,
    /// The test's own namespace, deleted on drop.
    pub namespace: String,
    config: Config,
    tasks: Mutex<Vec<(String, JoinHandle<()>)>>,
    processes: Mutex<Vec<TestProcess>>,
    log_dir: PathBuf,
}

impl TestEnv {
    /// Starts or reuses the cluster, installs the CRDs and creates a namespace named after `test`
    /// in which no pod may run (a zero-pod ResourceQuota): when the local node is up with wharf's
    /// images imported, a StatefulSet or DaemonSet a controller test creates would otherwise
    /// really run, and a hostess-agent pod would edit this machine's /etc/hosts and certs.d.
    pub async fn new(test: &str) -> Self {
        let env = Self::with_pods(test).await;
        let quota: ResourceQuota = serde_json::from_value(serde_json::json!({
            "metadata": {"name": NO_PODS_QUOTA},
            "spec": {"hard": {"pods": "0"}}
        }))
        .expect("quota object");
        Api::<ResourceQuota>::namespaced(env.client.clone(), &env.namespace)
            .create(&PostParams::default(), &quota)
            .await
            .unwrap_or_else(|err| panic!("creating the pod quota of {}: {err}", env.namespace));
        env
    }

    /// As `new`, but pods may run in the namespace: for tests on the local node.
    pub async fn with_pods(test: &str) -> Self {
        logs::init();
        let kubeconfig = cluster::ensure_up();
        let config = cluster::admin_config(&kubeconfig).await;
        let client = Client::try_from(config.clone()).expect("a client from the admin kubeconfig");
        cluster::install_crds(&client).await;
        let namespace = unique_name(test);
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let object: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": namespace, "labels": {"wharf.dev/e2e": "true"}}
        }))
        .expect("namespace object");
        namespaces
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|err| panic!("creating test namespace {namespace}: {err}"));
        let log_dir = repo_root().join("target/e2e-logs").join(&namespace);
        std::fs::create_dir_all(&log_dir).expect("creating the log directory");
        Self {
            client,
            namespace,
            config,
            tasks: Mutex::default(),
            processes: Mutex::default(),
            log_dir,
        }
    }

    /// A client that acts as ServiceAccount `name` in `namespace` (impersonation), to prove that
    /// RBAC rules are enough — or not.
    pub fn client_as(&self, namespace: &str, name: &str) -> Client {
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(format!("system:serviceaccount:{namespace}:{name}"));
        config.auth_info.impersonate_groups = Some(vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".into(),
        ]);
        Client::try_from(config).expect("an impersonating client")
    }

    /// A kubeconfig file that acts as ServiceAccount `name` in `namespace`, for binaries run
    /// with [`TestEnv::spawn_process`] (set it as the command's KUBECONFIG).
    pub fn kubeconfig_as(&self, namespace: &str, name: &str) -> PathBuf {
        let admin = kubeconfig_path();
        let mut file = kube::config::Kubeconfig::read_from(&admin)
            .unwrap_or_else(|err| panic!("reading {}: {err}", admin.display()));
        for named in &mut file.auth_infos {
            if let Some(auth) = named.auth_info.as_mut() {
                auth.impersonate = Some(format!("system:serviceaccount:{namespace}:{name}"));
                auth.impersonate_groups = Some(vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{namespace}"),
                    "system:authenticated".into(),
                ]);
            }
        }
        let path = self.log_dir.join(format!("kubeconfig-{namespace}-{name}"));
        let yaml = serde_yaml::to_string(&file).expect("kubeconfig serializes");
        std::fs::write(&path, yaml)
            .unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
        path
    }

    /// Runs a controller's library `run()` (or any future) in-process until the env is dropped.
    pub fn spawn<F>(&self, name: &str, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(work);
        self.tasks
            .lock()
            .expect("task list lock")
            .push((name.to_owned(), handle));
    }

    /// Starts a binary with KUBECONFIG pointing at the cluster; its output goes to a log file
    /// that failures print. It is killed when the env is dropped (or by [`TestProcess::stop`]).
    pub fn spawn_process(&self, name: &str, command: std::process::Command) -> TestProcess {
        let process = TestProcess::start(name, command, &self.log_dir);
        self.processes
            .lock()
            .expect("process list lock")
            .push(process.clone());
        process
    }

    /// Stops an in-process controller started with [`TestEnv::spawn`] (e.g. to restart it).
    pub fn stop(&self, name: &str) {
        let mut tasks = self.tasks.lock().expect("task list lock");
        for (_, handle) in tasks.iter().filter(|(n, _)| n == name) {
            handle.abort();
        }
        tasks.retain(|(n, _)| n != name);
    }

    /// Where captured process logs of this test live.
    pub fn log_dir(&self) -> &std::path::Path {
        &self.log_dir
    }

    /// Everything a failing test should print: process logs and in-process logs.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for process in self.processes.lock().expect("process list lock").iter() {
            out.push_str(&process.log_tail(200));
        }
        out.push_str(&logs::tail(300));
        out
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for (_, handle) in self
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default()
        {
            handle.abort();
        }
        for process in self
            .processes
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
        {
            process.stop();
        }
        // Drop cannot await: delete the namespace from a thread with a runtime of its own.
        let (config, namespace) = (self.config.clone(), self.namespace.clone());
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let client = Client::try_from(config).map_err(std::io::Error::other)?;
                let namespaces: Api<Namespace> = Api::all(client);
                namespaces
                    .delete(&namespace, &DeleteParams::background())
                    .await
                    .map(drop)
                    .map_err(std::io::Error::other)
            })
        })
        .join();
        if !matches!(deleted, Ok(Ok(()))) {
            eprintln!(
                "wharf-e2e: could not delete test namespace {}",
                self.namespace
            );
        }
    }
}

/// `<prefix>-<unique suffix>`, a valid namespace name of at most 63 characters.
fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let clean: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}-{:x}{:x}{n}",
        clean.trim_matches('-'),
        std::process::id() % 0xfff,
        nanos % 0xfffff
    )
}

/// The text of a Secret's key (empty when it is missing).
pub fn secret_text(secret: &k8s_openapi::api::core::v1::Secret, key: &str) -> String {
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|value| String::from_utf8_lossy(&value.0).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_valid_and_unique() {
        let a = super::unique_name("Mirror_Controller creates-ALL");
        let b = super::unique_name("Mirror_Controller creates-ALL");
        assert_ne!(a, b);
        for name in [a, b] {
            assert!(name.len() <= 63, "{name}");
            assert!(name.starts_with("mirror-controller-creates-all-"), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            );
        }
    }
}
