//! What every reconcile shares: the client, the settings, the event recorder, metrics and the
//! count of consecutive failures per ImageRegistry (for backoff).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::Client;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use wharf_core::crd::ImageRegistry;
use wharf_core::runtime::ControllerMetrics;

use crate::settings::Settings;

/// Name of this controller: field manager suffix, event reporter, metrics label.
pub const COMPONENT: &str = "registry-controller";

/// Shared state of the controller.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Arc<ControllerMetrics>,
    pub manager: String,
    recorder: Recorder,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, settings: Settings, metrics: Arc<ControllerMetrics>) -> Self {
        let reporter = Reporter {
            controller: format!("wharf-{COMPONENT}"),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            manager: wharf_core::apply::field_manager(COMPONENT),
            failures: Mutex::default(),
        }
    }

    /// Publishes a Warning Event on the ImageRegistry (best effort: a failed Event is only logged).
    pub async fn warn(&self, registry: &ImageRegistry, reason: &str, note: String) {
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(err) = self
            .recorder
            .publish(&event, &registry.object_ref(&()))
            .await
        {
            tracing::warn!(%err, "cannot publish an Event");
        }
    }

    /// Counts a failure of `key` and returns how many came in a row before it.
    pub fn failed_attempt(&self, key: &str) -> u32 {
        let Ok(mut failures) = self.failures.lock() else {
            return 0;
        };
        let count = failures.entry(key.to_owned()).or_insert(0);
        let before = *count;
        *count = count.saturating_add(1);
        before
    }

    /// Resets the failure count of `key`.
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }
}
