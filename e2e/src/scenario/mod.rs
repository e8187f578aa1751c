//! Whole-product scenarios on the local node, shared by the node e2e tests and `cargo xtask demo`:
//! wharf installed with Helm as a user installs it, then flows that a user would run.
//!
//! A scenario narrates its steps (the demo shows them; a test's output shows them on failure) and
//! panics with a message naming what went wrong, as the rest of the harness does.

mod mirror;
pub mod registry;
mod upstream;
mod wharf;

pub use mirror::{
    MirrorReport, PullReport, ServicesReport, create_ready_mirror, delete_mirror,
    delete_release_mirrors, describe, hostess_pull_through, mirror_options, services_pull_through,
};
pub use upstream::{PushedImage, UpstreamRegistry};
pub use wharf::{Wharf, WharfOptions};

use std::time::{Duration, Instant};

use kube::Resource;
use kube::api::Api;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Progress output of a scenario: numbered steps with their durations.
pub struct Narrator {
    started: Instant,
}

impl Default for Narrator {
    fn default() -> Self {
        Self::new()
    }
}

impl Narrator {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
        }
    }

    /// A step begins.
    pub fn step(&self, what: impl std::fmt::Display) {
        eprintln!(
            "==> [{:>5.1}s] {what}",
            self.started.elapsed().as_secs_f64()
        );
    }

    /// A detail of the current step (a figure, a name, a command the user can run).
    pub fn detail(&self, what: impl std::fmt::Display) {
        eprintln!("      {what}");
    }

    /// Time since the scenario began.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Polls `name` until `check` holds; on timeout panics with the object as last seen.
pub(crate) async fn wait_until<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    what: &str,
    check: impl Fn(&K) -> bool,
) -> K
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned + Serialize,
{
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        match api.get_opt(name).await {
            Ok(Some(object)) if check(&object) => return object,
            Ok(found) => last = found,
            Err(err) => tracing::warn!(%err, name, "reading failed, retrying"),
        }
        if Instant::now() >= deadline {
            let seen = last
                .map(|o| serde_yaml::to_string(&o).unwrap_or_default())
                .unwrap_or_else(|| "(absent)".into());
            let kind = last_kind::<K>();
            panic!("{kind} {name} not {what} after {timeout:?}; last seen:\n{seen}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn last_kind<K: Resource>() -> String {
    std::any::type_name::<K>()
        .rsplit("::")
        .next()
        .unwrap_or("object")
        .to_owned()
}
