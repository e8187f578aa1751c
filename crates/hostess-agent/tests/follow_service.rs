//! The hostess-agent binary against the real API server, on a temporary "node" (hosts file,
//! Docker/containerd/CRI-O directories): it follows the mirror Service's creation, ClusterIP
//! change and deletion, follows a CA rotation, reports readiness, and cleans up on SIGTERM.

mod support;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use support::{TestCa, http_status};
use wharf_e2e::free_port;
use wharf_e2e::{TestEnv, TestProcess};

const MIRROR: &str = "e2e";
const SERVICE: &str = "registry-mirror-e2e";
const MASQUERADE: &str = "mirror-e2e.example";
const FOREIGN_HOSTS: &str = "# node's own lines\r\n127.0.0.1\tlocalhost\n::1 localhost ip6-localhost\n\n10.1.2.3   db # by hand";
const TIMEOUT: Duration = Duration::from_secs(30);

/// The temporary node the agent works on.
struct Node {
    root: tempfile::TempDir,
}

impl Node {
    fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("wharf-node-")
            .tempdir()
            .expect("temp dir");
        for dir in [
            "etc/docker/certs.d",
            "etc/containerd/certs.d",
            "etc/containers/registries.conf.d",
            "etc/containers/certs.d",
            "run/wharf",
            "tls",
        ] {
            std::fs::create_dir_all(root.path().join(dir)).expect("node dir");
        }
        std::fs::write(root.path().join("etc/hosts"), FOREIGN_HOSTS).expect("hosts");
        Self { root }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.path().join(relative)
    }

    fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path(relative)).unwrap_or_default()
    }

    fn hosts(&self) -> String {
        self.read("etc/hosts")
    }

    /// Every file the agent may have left, relative to the root, except the hosts file and its
    /// lock, backup and the test's own CA.
    fn agent_files(&self) -> Vec<String> {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else if let Ok(relative) = path.strip_prefix(root) {
                    out.push(relative.display().to_string());
                }
            }
        }
        let mut files = Vec::new();
        walk(&self.path("etc"), self.root.path(), &mut files);
        files.retain(|file| file != "etc/hosts");
        files.sort();
        files
    }

    fn agent_command(&self, namespace: &str, http_port: u16) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hostess-agent"));
        let path = |relative: &str| self.path(relative);
        command
            .env("SERVICE_NAME", SERVICE)
            .env("SERVICE_NAMESPACE", namespace)
            .env("MIRROR_NAME", MIRROR)
            .env("MASQUERADE_HOST", MASQUERADE)
            .env("UPSTREAM_HOST", "docker.io")
            .env("ADDRESSING_SCHEME", "hostess")
            .env("CA_FILE", path("tls/ca.crt"))
            .env("HOSTS_FILE", path("etc/hosts"))
            .env("HOSTS_LOCK_FILE", path("run/wharf/hosts.lock"))
            .env("HOSTS_BACKUP_FILE", path("run/wharf/hosts.wharf.bak"))
            .env("DOCKER_CERTS_DIR", path("etc/docker/certs.d"))
            .env("CONTAINERD_CERTS_DIR", path("etc/containerd/certs.d"))
            .env(
                "CRIO_REGISTRIES_DIR",
                path("etc/containers/registries.conf.d"),
            )
            .env("CRIO_CERTS_DIR", path("etc/containers/certs.d"))
            .env("CRIO_RELOAD", "false")
            .env("HOST_ROOT", self.root.path())
            .env("HTTP_ADDR", format!("127.0.0.1:{http_port}"))
            .env("LOG_LEVEL", "info")
            .args(["--ca-poll-interval", "200ms", "--resync-interval", "3s"]);
        command
    }
}

/// Polls `check` until it holds; on timeout fails with the agent's log.
async fn wait_until(what: &str, agent: &TestProcess, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}\n{}",
            agent.log_tail(80)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn service(cluster_ip: Option<String>) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": SERVICE, "labels": {"app": "docker-registry", "mirror": MIRROR}},
        "spec": {
            "clusterIP": cluster_ip,
            "selector": {"app": "docker-registry", "mirror": MIRROR, "component": "registry"},
            "ports": [{"name": "https", "port": 443, "targetPort": "https"}],
        },
    }))
    .expect("service object")
}

/// Creates the Service with a ClusterIP the server allocates.
async fn create_service(api: &Api<Service>) -> String {
    let created = api
        .create(&PostParams::default(), &service(None))
        .await
        .expect("creates the Service");
    created
        .spec
        .and_then(|spec| spec.cluster_ip)
        .expect("the server allocates a ClusterIP")
}

/// Creates the Service with an explicit ClusterIP from 10.96.0.0/16 other than `avoid`.
async fn create_service_with_other_ip(api: &Api<Service>, avoid: &str) -> String {
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or_default();
    for attempt in 0..20u32 {
        let value = seed.wrapping_add(attempt.wrapping_mul(7919));
        let third = 100 + u8::try_from(value % 150).expect("fits");
        let fourth = 1 + u8::try_from((value / 150) % 250).expect("fits");
        let ip = Ipv4Addr::new(10, 96, third, fourth).to_string();
        if ip == avoid {
            continue;
        }
        match api
            .create(&PostParams::default(), &service(Some(ip.clone())))
            .await
        {
            Ok(_) => return ip,
            // Already allocated to another test's Service: try another.
            Err(kube::Error::Api(status)) if status.code == 422 => continue,
            Err(err) => panic!("creating the Service with ClusterIP {ip}: {err}"),
        }
    }
    panic!("no free ClusterIP found in 10.96.100.0-10.96.249.255");
}

async fn delete_service(env: &TestEnv, api: &Api<Service>) {
    api.delete(SERVICE, &DeleteParams::default())
        .await
        .expect("deletes the Service");
    env.wait_gone(api, SERVICE, TIMEOUT).await;
}

/// Waits until the node is configured for the mirror at `ip` with `ca`.
async fn wait_configured(node: &Node, agent: &TestProcess, ip: &str, ca: &str) {
    let line = format!("{ip}\t{MASQUERADE}  # wharf:{MIRROR}");
    wait_until(
        &format!("the hosts file maps {MASQUERADE} to {ip}"),
        agent,
        || node.hosts() == format!("{FOREIGN_HOSTS}\r\n{line}"),
    )
    .await;
    wait_until("Docker has the CA", agent, || {
        node.read(&format!("etc/docker/certs.d/{MASQUERADE}/ca.crt")) == ca
    })
    .await;
    wait_until(
        &format!("containerd's hosts.toml names {ip}"),
        agent,
        || {
            let hosts_toml = node.read("etc/containerd/certs.d/docker.io/hosts.toml");
            hosts_toml.contains(&format!("[host.\"https://{ip}\"]"))
                && hosts_toml.contains("server = \"https://registry-1.docker.io\"")
                && hosts_toml.contains(&format!(
                    "ca = \"/etc/containerd/certs.d/docker.io/wharf-{MIRROR}-ca.crt\""
                ))
                && node.read(&format!(
                    "etc/containerd/certs.d/docker.io/wharf-{MIRROR}-ca.crt"
                )) == ca
        },
    )
    .await;
    wait_until(&format!("CRI-O's drop-in and CA name {ip}"), agent, || {
        node.read(&format!(
            "etc/containers/registries.conf.d/wharf-{MIRROR}.conf"
        ))
        .contains(&format!("location = \"{ip}\""))
            && node.read(&format!("etc/containers/certs.d/{ip}/ca.crt")) == ca
    })
    .await;
}

async fn wait_clean(node: &Node, agent: &TestProcess) {
    wait_until(
        "the hosts file is back to its original bytes",
        agent,
        || node.hosts() == FOREIGN_HOSTS,
    )
    .await;
    wait_until("every file of the agent is gone", agent, || {
        node.agent_files().is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn follows_the_mirror_service_and_cleans_up_on_sigterm() {
    let env = TestEnv::new("hostess-agent-follows").await;
    let services: Api<Service> = Api::namespaced(env.client.clone(), &env.namespace);
    let node = Node::new();
    let first_ca = TestCa::create(&node.path("pki"), "first").ca_pem;
    std::fs::write(node.path("tls/ca.crt"), &first_ca).expect("CA");
    let http_port = free_port();
    let agent = env.spawn_process(
        "hostess-agent",
        node.agent_command(&env.namespace, http_port),
    );

    // Without the Service: alive, not ready, nothing written.
    wait_until("/healthz answers", &agent, || {
        http_status(http_port, "/healthz") == Some(200)
    })
    .await;
    assert_eq!(http_status(http_port, "/readyz"), Some(503));
    assert_eq!(node.hosts(), FOREIGN_HOSTS);

    // Created: the node is configured, then ready.
    let first_ip = create_service(&services).await;
    wait_configured(&node, &agent, &first_ip, &first_ca).await;
    wait_until("ready", &agent, || {
        http_status(http_port, "/readyz") == Some(200)
    })
    .await;

    // New ClusterIP (Service re-created): everything follows; the old CRI-O CA dir goes.
    delete_service(&env, &services).await;
    let second_ip = create_service_with_other_ip(&services, &first_ip).await;
    wait_configured(&node, &agent, &second_ip, &first_ca).await;
    assert!(
        !node
            .path(&format!("etc/containers/certs.d/{first_ip}"))
            .exists()
    );

    // The certificate rotates (the kubelet rewrites the mounted Secret): CAs follow.
    let second_ca = TestCa::create(&node.path("pki"), "second").ca_pem;
    std::fs::write(node.path("tls/ca.crt"), &second_ca).expect("rotated CA");
    wait_configured(&node, &agent, &second_ip, &second_ca).await;

    // Deleted: every line and file goes, the foreign bytes stay; not ready any more.
    delete_service(&env, &services).await;
    wait_clean(&node, &agent).await;
    wait_until("not ready", &agent, || {
        http_status(http_port, "/readyz") == Some(503)
    })
    .await;

    // Back again, then SIGTERM: the agent cleans up and exits 0.
    let third_ip = create_service(&services).await;
    wait_configured(&node, &agent, &third_ip, &second_ca).await;
    agent.terminate();
    let code = tokio::task::spawn_blocking({
        let agent = agent.clone();
        move || agent.wait(TIMEOUT)
    })
    .await
    .expect("waits for the agent");
    assert_eq!(
        code,
        Some(0),
        "exit code after SIGTERM\n{}",
        agent.log_tail(80)
    );
    assert_eq!(node.hosts(), FOREIGN_HOSTS, "SIGTERM removed the line");
    assert_eq!(
        node.agent_files(),
        Vec::<String>::new(),
        "SIGTERM removed the files"
    );

    let log = agent.log();
    for expected in [
        "added the mirror's line to the hosts file",
        "removed the mirror's line from the hosts file",
        "created containerd's hosts.toml for the mirror",
        "updated the mirror's CA for Docker",
        "removed CRI-O's registries.conf.d drop-in for the mirror",
        "ready",
    ] {
        assert!(log.contains(expected), "the log says {expected:?}:\n{log}");
    }
}
