//! Waiting for the cluster to reach a state, and explaining what it looked like when it did not.

use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::Resource;
use kube::api::{Api, ListParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::TestEnv;

/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(200);

impl TestEnv {
    /// Polls `name` until `check` holds and returns the object. On timeout the test fails with
    /// the object as last seen, the namespace's events and every captured log.
    pub async fn wait_for<K, F>(&self, api: &Api<K>, name: &str, timeout: Duration, check: F) -> K
    where
        K: Resource + Clone + Debug + DeserializeOwned + Serialize,
        F: Fn(&K) -> bool,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = None;
        loop {
            match api.get_opt(name).await {
                Ok(Some(object)) if check(&object) => return object,
                Ok(found) => last = found,
                Err(err) => tracing::warn!(%err, name, "wait_for: read failed, retrying"),
            }
            if tokio::time::Instant::now() >= deadline {
                let seen = last
                    .map(|o| serde_yaml::to_string(&o).unwrap_or_default())
                    .unwrap_or_else(|| "(absent)".into());
                panic!(
                    "timed out after {timeout:?} waiting for {} {name}\n--- last seen ---\n{seen}\n{}",
                    std::any::type_name::<K>(),
                    self.dump().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls until `name` no longer exists; on timeout fails like [`TestEnv::wait_for`].
    pub async fn wait_gone<K>(&self, api: &Api<K>, name: &str, timeout: Duration)
    where
        K: Resource + Clone + Debug + DeserializeOwned,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        while let Ok(Some(_)) | Err(_) = api.get_opt(name).await {
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {} {name} to be deleted\n{}",
                    std::any::type_name::<K>(),
                    self.dump().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Events of the test namespace and every captured log, for failure messages.
    pub async fn dump(&self) -> String {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut out = String::from("--- events ---\n");
        if let Ok(list) = events.list(&ListParams::default()).await {
            for event in list.items {
                out.push_str(&format!(
                    "{} {}/{}: {} {}\n",
                    event.type_.unwrap_or_default(),
                    event.involved_object.kind.unwrap_or_default(),
                    event.involved_object.name.unwrap_or_default(),
                    event.reason.unwrap_or_default(),
                    event.message.unwrap_or_default()
                ));
            }
        }
        out.push_str(&self.diagnostics());
        out
    }
}
