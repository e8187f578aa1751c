//! `cargo xtask bench control-plane`: 500 RegistryMirrors created at once on the local API server
//! against the release mirror-controller binary. Prints the time until every mirror has all its
//! children and a status, the API write requests per mirror at creation and after a restart,
//! and the controller's peak RSS; exits 1 when a target is missed.
//!
//! `cargo xtask bench control-plane` runs it on a control plane of its own (no node, no other
//! tenant, the local control plane alone): the StatefulSets' pods are created and stay Pending,
//! and nothing retries them. (On the shared cluster with the node up, a zero-pod
//! quota makes the StatefulSet controller retry thousands of refused pods, and pending pods make
//! the scheduler retry them: either measures kube-controller-manager rather than mirror-controller.)

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf_core::crd::RegistryMirror;
use wharf_e2e::{TestEnv, TestProcess};

const MIRRORS: usize = 500;
const LABEL: &str = "wharf.dev/bench";
const TARGET_CONVERGE: Duration = Duration::from_secs(10);
const TARGET_RSS_KIB: u64 = 40 * 1024;
const TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::main]
async fn main() -> ExitCode {
    let env = TestEnv::with_pods("bench-control-plane").await;
    let id = env
        .namespace
        .rsplit('-')
        .next()
        .unwrap_or("bench")
        .to_owned();
    let result = run(&env, &id).await;
    clean_up(&env, &id).await;
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("benchmark failed: {message}\n{}", env.diagnostics());
            ExitCode::FAILURE
        }
    }
}

async fn run(env: &TestEnv, id: &str) -> Result<bool, String> {
    // The same number of writes the controller makes, sent as fast as the API server takes them:
    // the floor any controller can reach on this machine at this moment (it is shared and noisy,
    // so the ratio to it says more than the seconds alone).
    println!("measuring the API server's floor: {FLOOR_WRITES} plain writes…");
    let floor = api_floor(env).await?;

    let first = Controller::start(env, id, "controller-1")?;
    first.wait_ready().await?;

    println!("creating {MIRRORS} RegistryMirrors at once…");
    let started = Instant::now();
    let mirrors: Api<RegistryMirror> = Api::all(env.client.clone());
    futures::stream::iter(0..MIRRORS)
        .map(|index| {
            let mirrors = mirrors.clone();
            let mirror: Result<RegistryMirror, _> = serde_json::from_value(json!({
                "apiVersion": "k8s.osp.tech/v1",
                "kind": "RegistryMirror",
                "metadata": {"name": format!("b{index}-{id}"), "labels": {LABEL: id}},
                "spec": {"upstreamUrl": format!("registry{index}.example.com")},
            }));
            async move {
                let mirror = mirror.map_err(|e| e.to_string())?;
                mirrors
                    .create(&PostParams::default(), &mirror)
                    .await
                    .map(drop)
                    .map_err(|e| format!("creating {}: {e}", mirror.name_any()))
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    let created = started.elapsed();
    wait_converged(env, id).await?;
    let converged = started.elapsed();
    first.wait_quiet(MIRRORS as u64).await?;
    let creation_writes = first.writes().await?;
    let creation_reconcile = first.mean_reconcile().await?;
    let creation_rss = first.peak_rss_kib()?;
    println!("restarting the controller…");
    first.stop();

    let second = Controller::start(env, id, "controller-2")?;
    second.wait_ready().await?;
    let restarted = Instant::now();
    second.wait_quiet(MIRRORS as u64).await?;
    let resynced = restarted.elapsed();
    let restart_writes = second.writes().await?;
    let restart_rss = second.peak_rss_kib()?;
    let settled_rss = second.status_kib("VmRSS:")?;
    second.stop();

    let peak_rss = creation_rss.max(restart_rss);
    let per_mirror = |writes: &Writes| writes.total as f64 / MIRRORS as f64;
    println!();
    println!("control-plane benchmark: {MIRRORS} RegistryMirrors, local kube-apiserver v1.20.2");
    println!(
        "  mirrors created by the client in   {:>8.2} s",
        created.as_secs_f64()
    );
    println!(
        "  all children and a status after    {:>8.2} s   (target < {} s)",
        converged.as_secs_f64(),
        TARGET_CONVERGE.as_secs()
    );
    println!(
        "  API server floor, {FLOOR_WRITES} writes      {:>8.2} s   (the converge time is {:.2}× it)",
        floor.as_secs_f64(),
        converged.as_secs_f64() / floor.as_secs_f64().max(0.001)
    );
    println!(
        "  mean reconcile at creation         {:>8.0} ms  ({} reconciles, {} at a time)",
        creation_reconcile.0 * 1000.0,
        creation_reconcile.1,
        std::env::var("RECONCILE_CONCURRENCY").unwrap_or_else(|_| "16".into())
    );
    println!(
        "  API writes per mirror, creation    {:>8.2}     ({} in all: {})",
        per_mirror(&creation_writes),
        creation_writes.total,
        creation_writes.by_kind
    );
    println!(
        "  API writes per mirror, restart     {:>8.2}     ({} in all; resync took {:.2} s; target 0)",
        per_mirror(&restart_writes),
        restart_writes.total,
        resynced.as_secs_f64()
    );
    println!(
        "  controller peak RSS (VmHWM)        {:>8.1} MiB (creation {:.1}, restart {:.1}, settled after the restart {:.1}; target < {} MiB)",
        peak_rss as f64 / 1024.0,
        creation_rss as f64 / 1024.0,
        restart_rss as f64 / 1024.0,
        settled_rss as f64 / 1024.0,
        TARGET_RSS_KIB / 1024
    );
    let met = converged < TARGET_CONVERGE && restart_writes.total == 0 && peak_rss < TARGET_RSS_KIB;
    println!("  targets {}", if met { "met" } else { "MISSED" });
    Ok(met)
}

/// Writes one mirror's children take at creation (children and status, see the report).
const FLOOR_WRITES: usize = MIRRORS * 6;

/// Time to create FLOOR_WRITES ConfigMaps of a child's typical size, 64 requests in flight;
/// they are deleted again before the controller starts.
async fn api_floor(env: &TestEnv) -> Result<Duration, String> {
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    let payload = "x".repeat(2048);
    let started = Instant::now();
    futures::stream::iter(0..FLOOR_WRITES)
        .map(|index| {
            let api = api.clone();
            let map: Result<ConfigMap, _> = serde_json::from_value(json!({
                "metadata": {"name": format!("floor-{index}"), "labels": {"wharf.dev/floor": "true"}},
                "data": {"payload": payload},
            }));
            async move {
                let map = map.map_err(|e| e.to_string())?;
                api.create(&PostParams::default(), &map)
                    .await
                    .map(drop)
                    .map_err(|e| format!("creating ConfigMap {}: {e}", map.name_any()))
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await?;
    let elapsed = started.elapsed();
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("wharf.dev/floor=true"),
    )
    .await
    .map_err(|e| format!("deleting the floor's ConfigMaps: {e}"))?;
    Ok(elapsed)
}

/// Watches the mirrors until every one reports Synced for its generation, then checks that every
/// child exists. A watch sees each status the moment it is written and costs the API server one
/// event per change, where polling lists of 3,500 objects took CPU from the controller under test.
async fn wait_converged(env: &TestEnv, id: &str) -> Result<(), String> {
    let mirrors: Api<RegistryMirror> = Api::all(env.client.clone());
    let config = watcher::Config::default().labels(&format!("{LABEL}={id}"));
    let (store, writer) = reflector::store();
    let events = reflector(writer, watcher(mirrors, config)).applied_objects();
    futures::pin_mut!(events);
    let started = Instant::now();
    let deadline = started + TIMEOUT;
    let mut reported = Duration::ZERO;
    loop {
        let synced = store.state().iter().filter(|m| is_synced(m)).count();
        if synced == MIRRORS {
            break;
        }
        if started.elapsed() >= reported + Duration::from_secs(2) {
            reported = started.elapsed();
            println!("  {:>5.1} s: {synced} synced", reported.as_secs_f64());
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining.min(Duration::from_secs(1)), events.next()).await {
            Ok(Some(Err(err))) => return Err(format!("watching the mirrors: {err}")),
            Ok(None) => return Err("the watch on the mirrors ended".into()),
            Ok(Some(Ok(_))) | Err(_) if Instant::now() > deadline => {
                return Err(format!("not converged after {TIMEOUT:?}: {synced} synced"));
            }
            Ok(Some(Ok(_))) | Err(_) => {}
        }
    }
    // Synced means every child was applied; the lists confirm the API server has them all.
    let children = ListParams::default().labels("app=docker-registry,mirror");
    let (client, ns) = (&env.client, &env.namespace);
    let services = count::<Service>(client, ns, &children).await;
    let statefulsets = count::<StatefulSet>(client, ns, &children).await;
    let daemonsets = count::<DaemonSet>(client, ns, &children).await;
    let secrets = count::<Secret>(client, ns, &children).await;
    if services == 2 * MIRRORS
        && statefulsets == MIRRORS
        && daemonsets == MIRRORS
        && secrets == MIRRORS
    {
        Ok(())
    } else {
        Err(format!(
            "every mirror reports Synced, but there are {services} Services, {statefulsets} StatefulSets, {daemonsets} DaemonSets and {secrets} Secrets"
        ))
    }
}

/// Whether the controller reported `mirror` Synced for its current generation.
fn is_synced(mirror: &RegistryMirror) -> bool {
    mirror.status.as_ref().is_some_and(|status| {
        status.observed_generation == mirror.metadata.generation
            && status
                .conditions
                .iter()
                .any(|c| c.type_ == mirror_controller::SYNCED && c.status == "True")
    })
}

/// How many objects of a kind match `params` in `namespace` (0 when the list fails).
async fn count<K>(client: &Client, namespace: &str, params: &ListParams) -> usize
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .list_metadata(params)
        .await
        .map(|list| list.items.len())
        .unwrap_or(0)
}

/// Deletes the children in bulk first (one request per kind), then the mirrors: left to the
/// garbage collector, 3,000 children would be deleted one by one at kube-controller-manager's
/// 20 requests per second, slowing every other user of the cluster for minutes.
async fn clean_up(env: &TestEnv, id: &str) {
    let children = ListParams::default().labels("app=docker-registry,mirror");
    let all = DeleteParams::default();
    let (client, ns) = (&env.client, &env.namespace);
    let _ = Api::<Service>::namespaced(client.clone(), ns)
        .delete_collection(&all, &children)
        .await;
    let _ = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .delete_collection(&all, &children)
        .await;
    let _ = Api::<DaemonSet>::namespaced(client.clone(), ns)
        .delete_collection(&all, &children)
        .await;
    let _ = Api::<Secret>::namespaced(client.clone(), ns)
        .delete_collection(&all, &children)
        .await;
    let mirrors: Api<RegistryMirror> = Api::all(client.clone());
    let _ = mirrors
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&format!("{LABEL}={id}")),
        )
        .await;
}

/// The release controller binary running as a process, with its /metrics.
struct Controller {
    process: TestProcess,
    port: u16,
}

/// Write counters of a controller.
struct Writes {
    total: u64,
    by_kind: String,
}

impl Controller {
    fn start(env: &TestEnv, id: &str, name: &str) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_mirror-controller"));
        command
            .env("NAMESPACE", &env.namespace)
            .env("MIRROR_SELECTOR", format!("{LABEL}={id}"))
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("LOG_LEVEL", "warn");
        let process = env.spawn_process(name, command);
        Ok(Self { process, port })
    }

    async fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http_get(self.port, "/readyz")
                .await
                .is_ok_and(|(status, _)| status == 200)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "the controller did not become ready:\n{}",
            self.process.log_tail(50)
        ))
    }

    async fn metrics(&self) -> Result<String, String> {
        http_get(self.port, "/metrics").await.map(|(_, body)| body)
    }

    async fn counter(&self, family: &str) -> Result<u64, String> {
        Ok(sum(&self.metrics().await?, family) as u64)
    }

    /// Mean reconcile duration in seconds, and the number of reconciles.
    async fn mean_reconcile(&self) -> Result<(f64, u64), String> {
        let text = self.metrics().await?;
        let count = sum(&text, "wharf_reconcile_duration_seconds_count");
        let total = sum(&text, "wharf_reconcile_duration_seconds_sum");
        Ok((total / count.max(1.0), count as u64))
    }

    async fn writes(&self) -> Result<Writes, String> {
        let text = self.metrics().await?;
        let by_kind = text
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("wharf_api_writes_total{")?;
                let kind = rest.split("kind=\"").nth(1)?.split('"').next()?;
                Some(format!("{kind} {}", line.rsplit(' ').next()?))
            })
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Writes {
            total: sum(&text, "wharf_api_writes_total") as u64,
            by_kind: if by_kind.is_empty() {
                "none".into()
            } else {
                by_kind
            },
        })
    }

    /// Waits until the controller reconciled at least `reconciles` times and then made no write
    /// for three seconds.
    async fn wait_quiet(&self, reconciles: u64) -> Result<(), String> {
        let deadline = Instant::now() + TIMEOUT;
        let mut last = (u64::MAX, Instant::now());
        while Instant::now() < deadline {
            let writes = self.counter("wharf_api_writes_total").await?;
            if writes != last.0 {
                last = (writes, Instant::now());
            } else if last.1.elapsed() >= Duration::from_secs(3)
                && self.counter("wharf_reconciles_total").await? >= reconciles
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err("the controller kept writing".into())
    }

    /// VmHWM: the most resident memory the process ever had.
    fn peak_rss_kib(&self) -> Result<u64, String> {
        self.status_kib("VmHWM:")
    }

    /// A memory figure of /proc/PID/status, in KiB.
    fn status_kib(&self, field: &str) -> Result<u64, String> {
        let pid = self.process.pid().ok_or("the controller is not running")?;
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no {field} in /proc/PID/status"))
    }

    fn stop(&self) {
        self.process.terminate();
        if self.process.wait(Duration::from_secs(10)).is_none() {
            self.process.stop();
        }
    }
}

/// The sum of every series of `family` in a Prometheus text exposition.
fn sum(metrics: &str, family: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{family}{{")))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A plain HTTP/1.0 GET on loopback (no chunked encoding to undo).
async fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or("no HTTP status")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
