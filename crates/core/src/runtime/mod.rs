//! The process runtime every wharf binary shares: settings, logs, the HTTP listener (health,
//! readiness, metrics), CRD presence checks, leader election and graceful shutdown.

mod crds;
mod http;
mod leader;
mod logging;
mod metrics;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use kube::Client;

pub use crds::{require_crds, resource_of};
pub use http::Health;
pub use leader::Election;
pub use logging::LogFormat;
pub use metrics::{ControllerMetrics, ReconcileTimer};

/// Settings every binary takes, from flags or the environment.
#[derive(clap::Args, Clone, Debug)]
pub struct RuntimeArgs {
    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info` or `info,wharf_core=debug` (tracing EnvFilter syntax).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Address of the HTTP listener serving /healthz, /readyz and /metrics.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Run only while holding a coordination Lease, so several replicas can run with one active.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,

    /// Namespace of the leader-election Lease (default: POD_NAMESPACE, else `default`).
    #[arg(long, env = "LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// This replica's identity in the Lease (default: POD_NAME, else the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

/// A failure of the runtime itself, with what the user should do about it.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot connect to the Kubernetes API (set KUBECONFIG, or run in a pod)")]
    Client(#[source] kube::Error),
    #[error("cannot listen on {addr} for /healthz, /readyz and /metrics (set HTTP_ADDR)")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the CustomResourceDefinition {0} is not installed: install the chart's CRDs (kubectl apply -f charts/wharf/crds/) and start again"
    )]
    MissingCrd(String),
    #[error("cannot check whether CustomResourceDefinition {name} is installed")]
    CrdLookup {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("leader election on Lease {lease} failed: {message}")]
    LeaderElection { lease: String, message: String },
    #[error("lost the leader-election Lease {0}; exiting so a restart competes again")]
    LostLeadership(String),
}

/// A started process: logging on, HTTP listener up, API client ready.
pub struct Runtime {
    pub component: &'static str,
    pub client: Client,
    pub metrics: Arc<ControllerMetrics>,
    pub health: Health,
    args: RuntimeArgs,
}

impl Runtime {
    /// Initializes logging, connects to the API server and starts the HTTP listener.
    pub async fn start(component: &'static str, args: RuntimeArgs) -> Result<Self, RuntimeError> {
        logging::init(args.log_format, &args.log_level);
        let client = Client::try_default().await.map_err(RuntimeError::Client)?;
        let mut registry = prometheus_client::registry::Registry::with_prefix("wharf");
        let metrics = Arc::new(ControllerMetrics::register(&mut registry, component));
        let health = Health::default();
        http::serve(args.http_addr, registry, health.clone()).await?;
        tracing::info!(component, http = %args.http_addr, "started");
        Ok(Self {
            component,
            client,
            metrics,
            health,
            args,
        })
    }

    /// Runs `work` until it ends or SIGTERM/SIGINT arrives; under leader election, only while
    /// this replica holds the Lease. Readiness turns on once the work starts.
    pub async fn run<F, Fut>(self, work: F) -> Result<(), RuntimeError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ()>,
    {
        let health = self.health.clone();
        let body = async move {
            health.set_ready(true);
            work().await;
        };
        if self.args.leader_election {
            let lease = format!("wharf-{}", self.component);
            let namespace = self
                .args
                .leader_election_namespace
                .clone()
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .unwrap_or_else(|| "default".into());
            let identity = self
                .args
                .identity
                .clone()
                .unwrap_or_else(leader::host_identity);
            let elected = leader::Election::new(self.client.clone(), lease, namespace, identity);
            tokio::select! {
                result = elected.run(body) => result,
                () = shutdown_signal() => Ok(()),
            }
        } else {
            tokio::select! {
                () = body => Ok(()),
                () = shutdown_signal() => Ok(()),
            }
        }
    }
}

/// Resolves on SIGTERM (how Kubernetes stops a pod) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
    }
}
