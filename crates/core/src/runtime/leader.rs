//! Leader election on a coordination Lease, so a controller can run 2 replicas with one active.

use std::future::Future;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

use super::RuntimeError;

/// Seconds a Lease stays valid without renewal; a standby takes over after about this long.
const LEASE_DURATION_SECONDS: u64 = 15;
/// Seconds before expiry at which the holder renews.
const LEASE_GRACE_SECONDS: u64 = 5;

/// One replica's candidacy for a Lease.
pub struct Election {
    client: Client,
    lease: String,
    namespace: String,
    identity: String,
}

impl Election {
    pub fn new(client: Client, lease: String, namespace: String, identity: String) -> Self {
        Self {
            client,
            lease,
            namespace,
            identity,
        }
    }

    /// Waits to hold the Lease, then runs `work` while holding it. Losing the Lease ends with
    /// [`RuntimeError::LostLeadership`]: a controller that may have missed events must not go on.
    pub async fn run<Fut: Future<Output = ()>>(self, work: Fut) -> Result<(), RuntimeError> {
        let fail = |err: kube_lease_manager::LeaseManagerError| RuntimeError::LeaderElection {
            lease: format!("{}/{}", self.namespace, self.lease),
            message: err.to_string(),
        };
        let manager = LeaseManagerBuilder::new(self.client.clone(), &self.lease)
            .with_namespace(&self.namespace)
            .with_identity(&self.identity)
            .with_duration(LEASE_DURATION_SECONDS)
            .with_grace(LEASE_GRACE_SECONDS)
            .build()
            .await
            .map_err(fail)?;
        let (mut leading, task) = manager.watch().await;
        tracing::info!(lease = %self.lease, identity = %self.identity, "waiting to lead");
        while !*leading.borrow_and_update() {
            if leading.changed().await.is_err() {
                return Err(lost(&self.lease, task).await);
            }
        }
        tracing::info!(lease = %self.lease, "leading");
        tokio::pin!(work);
        loop {
            tokio::select! {
                () = &mut work => break,
                changed = leading.changed() => {
                    if changed.is_err() || !*leading.borrow_and_update() {
                        return Err(lost(&self.lease, task).await);
                    }
                }
            }
        }
        drop(leading);
        if let Ok(Ok(manager)) = task.await {
            let _released = manager.release().await;
        }
        Ok(())
    }
}

async fn lost(
    lease: &str,
    task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
) -> RuntimeError {
    task.abort();
    RuntimeError::LostLeadership(lease.to_owned())
}

/// The host name, used as identity outside a pod.
pub fn host_identity() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| format!("wharf-{}", std::process::id()))
}
