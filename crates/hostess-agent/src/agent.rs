//! The agent's main loop: follow the Service and the CA, reconfigure the node when either
//! changes (and periodically), report readiness, and clean the node up on shutdown.

use std::collections::HashSet;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use wharf_core::runtime::{ControllerMetrics, Health};

use crate::hosts::{self, RealDisk};
use crate::node::{self, NodeReport, Target};
use crate::service::{self, ServiceAddress};
use crate::settings::{AddressingScheme, Config};

/// The first retry after a failed pass; doubles up to the resync interval.
const FIRST_RETRY: Duration = Duration::from_secs(2);

/// A failure that stops the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the node pass stopped unexpectedly: {0}")]
    Pass(#[from] tokio::task::JoinError),
}

/// Runs until `shutdown` resolves, then removes the mirror's configuration from the node.
pub async fn run(
    config: Config,
    client: Client,
    health: Health,
    metrics: Arc<ControllerMetrics>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let config = Arc::new(config);
    health.set_ready(false);
    tracing::info!(
        mirror = %config.mirror,
        service = %format!("{}/{}", config.service_namespace, config.service_name),
        upstream = %config.upstream.name,
        scheme = ?config.scheme,
        "following the mirror's Service"
    );
    repair_hosts_file(&config).await?;

    let (sender, mut addresses) = watch::channel::<ServiceAddress>(None);
    let follower = tokio::spawn(service::follow(
        client,
        config.service_namespace.clone(),
        config.service_name.clone(),
        sender,
    ));

    let mut state = LoopState::new(config.resync_interval);
    let mut ca_poll = tokio::time::interval(config.ca_poll_interval);
    ca_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let mut following = true;
    loop {
        let known = *addresses.borrow_and_update();
        if let Some(address) = known
            && state.due(address)
        {
            let report = pass(&config, address, &metrics).await?;
            state.record(address, &report, &config, &health);
        }
        tokio::select! {
            () = &mut shutdown => break,
            changed = addresses.changed(), if following => {
                if changed.is_err() {
                    // The follower retries forever; should it end anyway, keep the node as it
                    // is (resyncs continue) rather than guess that the mirror is gone.
                    tracing::error!("stopped following the mirror's Service");
                    following = false;
                }
            }
            _ = ca_poll.tick() => state.check_ca(&config),
            () = sleep_until(state.next_pass) => {
                state.force = true;
                // record() sets the real next pass; this only keeps an idle loop from spinning
                state.next_pass = Instant::now() + state.resync;
            }
        }
    }

    follower.abort();
    health.set_ready(false);
    tracing::info!("shutting down: removing the mirror's configuration from this node");
    let report = pass(&config, None, &metrics).await?;
    log_failures(&report);
    Ok(())
}

/// What the loop remembers between passes.
struct LoopState {
    last_address: Option<Option<IpAddr>>,
    last_ca: Option<Vec<u8>>,
    ca_changed: bool,
    force: bool,
    next_pass: Instant,
    retry: Duration,
    resync: Duration,
    logged_skips: HashSet<Target>,
    last_failures: Vec<String>,
}

impl LoopState {
    fn new(resync: Duration) -> Self {
        Self {
            last_address: None,
            last_ca: None,
            ca_changed: false,
            force: true,
            next_pass: Instant::now() + resync,
            retry: FIRST_RETRY,
            resync,
            logged_skips: HashSet::new(),
            last_failures: Vec::new(),
        }
    }

    fn due(&mut self, address: Option<IpAddr>) -> bool {
        let due = self.force || self.ca_changed || self.last_address != Some(address);
        self.force = false;
        self.ca_changed = false;
        due
    }

    /// Notices a rotated CA between passes (cheap: one small read).
    fn check_ca(&mut self, config: &Config) {
        if self.last_address.flatten().is_none() {
            return;
        }
        let current = config.ca.read().ok().flatten().map(|ca| ca.pem);
        if current != self.last_ca {
            if current.is_some() {
                tracing::info!(from = %crate::ca::describe(&config.ca), "the mirror's CA changed");
            }
            self.ca_changed = true;
        }
    }

    fn record(
        &mut self,
        address: Option<IpAddr>,
        report: &NodeReport,
        config: &Config,
        health: &Health,
    ) {
        self.last_address = Some(address);
        self.last_ca = report.ca.as_ref().map(|ca| ca.pem.clone());
        for target in &report.skipped {
            if self.logged_skips.insert(*target) {
                let dir = match target {
                    Target::Containerd => config.containerd.dir.display().to_string(),
                    _ => config.crio.registries_dir.display().to_string(),
                };
                tracing::info!(%dir, "{} is not configured on this node: the directory does not exist (skipping)", target.name());
            }
        }
        let failures: Vec<String> = report
            .failures
            .iter()
            .map(|failure| format!("{}: {}", failure.target.name(), failure.message))
            .collect();
        if failures != self.last_failures {
            log_failures(report);
        }
        self.last_failures = failures;
        let now = Instant::now();
        if report.failures.is_empty() {
            self.retry = FIRST_RETRY;
            self.next_pass = now + self.resync;
        } else {
            self.next_pass = now + self.retry;
            self.retry = (self.retry * 2).min(self.resync);
        }
        if report.configured != health.is_ready() {
            match (report.configured, address) {
                (true, Some(ip)) => {
                    tracing::info!(cluster_ip = %ip, "the node is configured for the mirror; ready")
                }
                (_, None) => tracing::info!(
                    "the mirror's Service is gone; its configuration was removed from the node; not ready"
                ),
                _ => tracing::warn!("the node is not fully configured for the mirror; not ready"),
            }
        }
        health.set_ready(report.configured);
    }
}

fn log_failures(report: &NodeReport) {
    for failure in &report.failures {
        tracing::warn!(
            target_config = failure.target.name(),
            reason = failure.reason,
            "{}",
            failure.message
        );
    }
}

/// One node pass on a blocking thread (the hosts lock may wait for other agents).
async fn pass(
    config: &Arc<Config>,
    address: Option<IpAddr>,
    metrics: &ControllerMetrics,
) -> Result<NodeReport, AgentError> {
    let _timer = metrics.reconcile_started();
    let config = Arc::clone(config);
    let report =
        tokio::task::spawn_blocking(move || node::reconcile(&config, &mut RealDisk, address))
            .await?;
    for failure in &report.failures {
        metrics.reconcile_failed(failure.reason);
    }
    Ok(report)
}

/// Start-up repair of a hosts file a crashed writer may have left torn.
async fn repair_hosts_file(config: &Arc<Config>) -> Result<(), AgentError> {
    if config.scheme == AddressingScheme::Services && !config.hosts.hosts.exists() {
        return Ok(());
    }
    let config = Arc::clone(config);
    let result =
        tokio::task::spawn_blocking(move || hosts::repair(&config.hosts, &mut RealDisk)).await?;
    if let Err(err) = result {
        tracing::warn!(error = %err, "cannot check the hosts file for an interrupted write");
    }
    Ok(())
}
