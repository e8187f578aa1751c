//! `cargo xtask bench secret-rotator`: 1,000 push/pull secrets created at once against the local
//! API server — time until all are Ready; then their Secrets deleted (a forced rotation of all) —
//! time until all are Ready again; then a quiet period (zero writes expected) and the deletion of
//! every CR (finalizers remove the accounts). The rotator runs in-process, release-built, with a
//! layer on its client that counts every API request it makes.
//!
//! `BENCH_SECRETS` (default 1000) and `BENCH_BCRYPT_COST` (default 10) change the load.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::client::ClientBuilder;
use secret_rotator::account::{MANAGED_BY, MANAGED_BY_LABEL};
use wharf_core::crd::{ImagePullSecret, ImagePushSecret, ImageRegistryAccount};
use wharf_core::runtime::ControllerMetrics;
use wharf_e2e::TestEnv;

use common::{FinalizerGuard, create_registry, ready_at, set_registry_status};

/// Longest wait for one phase.
const PHASE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the rotator is watched at rest.
const QUIET: Duration = Duration::from_secs(15);

/// API requests by verb and resource.
#[derive(Clone, Default)]
struct RequestLog(Arc<Mutex<BTreeMap<(String, String), u64>>>);

impl RequestLog {
    fn record(&self, method: &http::Method, uri: &http::Uri) {
        let (verb, resource) = classify(method, uri);
        if let Ok(mut counts) = self.0.lock() {
            *counts.entry((verb, resource)).or_default() += 1;
        }
    }

    fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.0.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// `(verb, resource[/subresource])` of a request, as the API server's audit log names them.
fn classify(method: &http::Method, uri: &http::Uri) -> (String, String) {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // /api/v1/... or /apis/<group>/<version>/...
    let rest = match segments.first() {
        Some(&"api") => &segments[segments.len().min(2)..],
        Some(&"apis") => &segments[segments.len().min(3)..],
        _ => &segments[..],
    };
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let resource = match rest {
        [resource, _, sub, ..] => format!("{resource}/{sub}"),
        [resource, ..] => (*resource).to_owned(),
        [] => "-".to_owned(),
    };
    let named = rest.len() >= 2;
    let watch = uri.query().is_some_and(|q| q.contains("watch=true"));
    let verb = match *method {
        http::Method::GET if watch => "watch",
        http::Method::GET if named => "get",
        http::Method::GET => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE if named => "delete",
        http::Method::DELETE => "deletecollection",
        _ => "other",
    };
    (verb.to_owned(), resource)
}

#[derive(Clone)]
struct CountingLayer(RequestLog);

impl<S> tower::Layer<S> for CountingLayer {
    type Service = Counting<S>;

    fn layer(&self, inner: S) -> Counting<S> {
        Counting {
            inner,
            log: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct Counting<S> {
    inner: S,
    log: RequestLog,
}

impl<S, B> tower::Service<http::Request<B>> for Counting<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> S::Future {
        self.log.record(request.method(), request.uri());
        self.inner.call(request)
    }
}

/// Requests made between two snapshots.
struct Phase {
    name: &'static str,
    elapsed: Duration,
    requests: BTreeMap<(String, String), u64>,
}

impl Phase {
    fn new(
        name: &'static str,
        elapsed: Duration,
        before: &BTreeMap<(String, String), u64>,
        after: &BTreeMap<(String, String), u64>,
    ) -> Self {
        let requests = after
            .iter()
            .filter_map(|(key, count)| {
                let delta = count - before.get(key).copied().unwrap_or(0);
                (delta > 0).then(|| (key.clone(), delta))
            })
            .collect();
        Self {
            name,
            elapsed,
            requests,
        }
    }

    fn total(&self) -> u64 {
        self.requests.values().sum()
    }

    fn writes(&self) -> u64 {
        self.requests
            .iter()
            .filter(|((verb, _), _)| {
                ["create", "update", "patch", "delete", "deletecollection"].contains(&verb.as_str())
            })
            .map(|(_, count)| count)
            .sum()
    }

    fn print(&self) {
        let seconds = self.elapsed.as_secs_f64();
        println!(
            "\n{}: {:.1} s, {} API requests by the rotator ({:.0}/s), {} writes",
            self.name,
            seconds,
            self.total(),
            self.total() as f64 / seconds.max(0.001),
            self.writes()
        );
        for ((verb, resource), count) in &self.requests {
            println!("    {count:>6}  {verb:<16} {resource}");
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: usize = std::env::var("BENCH_SECRETS")
        .ok()
        .map(|v| v.parse())
        .transpose()
        .context("BENCH_SECRETS must be a number")?
        .unwrap_or(1000);
    let cost: u32 = std::env::var("BENCH_BCRYPT_COST")
        .ok()
        .map(|v| v.parse())
        .transpose()
        .context("BENCH_BCRYPT_COST must be a number")?
        .unwrap_or(secret_rotator::password::DEFAULT_BCRYPT_COST);

    let hashes = 8;
    let started = Instant::now();
    for _ in 0..hashes {
        secret_rotator::password::hash_password("bench-password", cost)?;
    }
    println!(
        "bcrypt cost {cost}: {:.0} ms per hash on one core of this machine ({} cores)",
        started.elapsed().as_secs_f64() * 1000.0 / f64::from(hashes),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let env = TestEnv::new("bench-secret-rotator").await;
    let _guard = FinalizerGuard::new(&env);
    create_registry(&env).await;
    set_registry_status(&env, true, "registry.bench.example").await;

    let log = RequestLog::default();
    let kubeconfig = kube::config::Kubeconfig::read_from(wharf_e2e::kubeconfig_path())?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = ClientBuilder::try_from(config)?
        .with_layer(&CountingLayer(log.clone()))
        .build();
    let mut settings = common::settings(&env, Duration::from_secs(24 * 3600), None);
    settings.bcrypt_cost = cost;
    let concurrency = settings.max_concurrent_reconciles;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(ControllerMetrics::register(&mut registry, "secret-rotator"));
    let rotator = tokio::spawn(secret_rotator::run(client, settings, metrics));

    println!(
        "secret-rotator at scale: {count} push/pull secrets, bcrypt cost {cost}, \
         {concurrency} concurrent reconciles per kind, namespace {}",
        env.namespace
    );
    let result = measure(&env, &log, count).await;
    rotator.abort();
    let phases = result?;
    for phase in &phases {
        phase.print();
    }
    Ok(())
}

async fn measure(env: &TestEnv, log: &RequestLog, count: usize) -> anyhow::Result<Vec<Phase>> {
    let pushes: Api<ImagePushSecret> = Api::namespaced(env.client.clone(), &env.namespace);
    let pulls: Api<ImagePullSecret> = Api::namespaced(env.client.clone(), &env.namespace);
    let mut phases = Vec::new();

    // Let the watches list (empty) before the clock starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = log.snapshot();
    let start = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let (pushes, pulls) = (pushes.clone(), pulls.clone());
            async move {
                let name = format!("bench-{i:04}");
                if i % 2 == 0 {
                    pushes
                        .create(
                            &PostParams::default(),
                            &ImagePushSecret::new(&name, Default::default()),
                        )
                        .await
                        .map(drop)
                } else {
                    pulls
                        .create(
                            &PostParams::default(),
                            &ImagePullSecret::new(&name, Default::default()),
                        )
                        .await
                        .map(drop)
                }
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await
        .context("creating the push/pull secrets")?;
    println!(
        "created {count} CRs in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    wait_all_ready(&pushes, &pulls, count, 1).await?;
    phases.push(Phase::new(
        "all Ready (created)",
        start.elapsed(),
        &before,
        &log.snapshot(),
    ));

    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.namespace);
    let managed = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let before = log.snapshot();
    let start = Instant::now();
    secrets
        .delete_collection(&DeleteParams::default(), &managed)
        .await
        .context("deleting the Secrets")?;
    wait_all_ready(&pushes, &pulls, count, 2).await?;
    phases.push(Phase::new(
        "all Ready (forced rotation: Secrets deleted)",
        start.elapsed(),
        &before,
        &log.snapshot(),
    ));
    let rewritten = secrets.list_metadata(&managed).await?.items.len();
    if rewritten != count {
        bail!("{rewritten} of {count} Secrets exist after the rotation");
    }

    let before = log.snapshot();
    tokio::time::sleep(QUIET).await;
    let quiet = Phase::new("at rest", QUIET, &before, &log.snapshot());
    if quiet.writes() > 0 {
        println!("WARNING: {} writes while nothing changed", quiet.writes());
    }
    phases.push(quiet);

    let before = log.snapshot();
    let start = Instant::now();
    pushes
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    pulls
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let accounts: Api<ImageRegistryAccount> = Api::namespaced(env.client.clone(), &env.namespace);
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let left = pushes
            .list_metadata(&ListParams::default())
            .await?
            .items
            .len()
            + pulls
                .list_metadata(&ListParams::default())
                .await?
                .items
                .len()
            + accounts
                .list_metadata(&ListParams::default())
                .await?
                .items
                .len();
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{left} CRs and accounts left after {PHASE_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    phases.push(Phase::new(
        "all deleted (CRs and their accounts)",
        start.elapsed(),
        &before,
        &log.snapshot(),
    ));
    Ok(phases)
}

/// Waits until every CR is Ready at `rotation`, printing progress.
async fn wait_all_ready(
    pushes: &Api<ImagePushSecret>,
    pulls: &Api<ImagePullSecret>,
    count: usize,
    rotation: i64,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let mut last_report = Instant::now();
    loop {
        let ready = pushes
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|cr| ready_at(cr.status.as_ref(), Some(rotation)))
            .count()
            + pulls
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .filter(|cr| ready_at(cr.status.as_ref(), Some(rotation)))
                .count();
        if ready == count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {ready} of {count} Ready at rotation {rotation} after {PHASE_TIMEOUT:?}");
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            println!("  {ready}/{count} Ready at rotation {rotation}");
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
