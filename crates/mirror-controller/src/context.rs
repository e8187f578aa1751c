//! What every reconcile shares: the client, the settings, the caches of the mirrors and their
//! children (the "live" side of every zero-write comparison), the event recorder and metrics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, Event as CoreEvent, EventSource, ObjectReference, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};

use crate::cache::{Readiness, Verified};
use crate::stored::StoredMirror;
use wharf_core::mirror::{MirrorSettings, TlsMaterial};
use wharf_core::runtime::ControllerMetrics;

use crate::settings::Settings;

/// Name of this controller: field manager, event reporter, metrics label.
pub const COMPONENT: &str = "mirror-controller";

/// Caches of what the controller watches.
#[derive(Clone)]
pub struct Stores {
    pub mirrors: Store<StoredMirror>,
    pub services: Store<Service>,
    pub statefulsets: Store<StatefulSet>,
    pub daemonsets: Store<DaemonSet>,
    /// The mirrors' own Secrets (config, generated TLS), selected by label.
    pub secrets: Store<Secret>,
    /// `imageswap-maps` (services mode only).
    pub imageswap: Option<Store<ConfigMap>>,
    /// Whether every cache above has been filled once.
    pub readiness: Readiness,
}

impl Stores {
    /// Waits until every cache holds the cluster's state: comparing against a half-filled
    /// cache after a restart would re-send objects that exist.
    pub async fn ready(&self) {
        self.readiness.wait().await;
    }

    /// A namespaced object from a store.
    pub fn get<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<Arc<K>>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        store.get(&ObjectRef::new(name).within(namespace))
    }
}

/// Shared state of the controller.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub mirror_settings: MirrorSettings,
    pub stores: Stores,
    pub metrics: Arc<ControllerMetrics>,
    pub manager: String,
    /// Children known to hold their desired state (see [`Verified`]).
    pub verified: Arc<Verified>,
    /// The generated TLS material per Secret name, with the resourceVersion it was read at
    /// (the Secret cache holds no data).
    pub tls_material: Mutex<HashMap<String, (String, TlsMaterial)>>,
    recorder: Recorder,
    /// Serializes this process's edits of `imageswap-maps`; other writers are handled with
    /// optimistic concurrency.
    pub imageswap_lock: tokio::sync::Mutex<()>,
    /// Whether this process has recorded a version of `imageswap-maps` yet.
    pub imageswap_recorded: Mutex<bool>,
    /// Consecutive transient failures per mirror, for backoff.
    attempts: Mutex<HashMap<String, u32>>,
    /// The failure reason each mirror was last warned about (a status that cannot be written
    /// must not turn into an Event per reconcile).
    warned: Mutex<HashMap<String, String>>,
    /// Whether this API server refuses events.k8s.io Events about cluster-scoped objects.
    legacy_events: AtomicBool,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        stores: Stores,
        verified: Arc<Verified>,
        metrics: Arc<ControllerMetrics>,
    ) -> Self {
        let reporter = Reporter {
            controller: wharf_core::apply::field_manager(COMPONENT),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            mirror_settings: settings.mirror_settings(),
            manager: wharf_core::apply::field_manager(COMPONENT),
            imageswap_lock: tokio::sync::Mutex::new(()),
            imageswap_recorded: Mutex::new(false),
            attempts: Mutex::default(),
            warned: Mutex::default(),
            legacy_events: AtomicBool::new(false),
            tls_material: Mutex::default(),
            verified,
            client,
            settings,
            stores,
            metrics,
        }
    }

    /// Publishes a Warning Event on `mirror` (Events of cluster-scoped objects land in `default`).
    pub async fn warn(&self, reference: ObjectReference, reason: &str, note: String) {
        let note = truncate(note, 1000);
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_owned(),
            note: Some(note.clone()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if self.legacy_events.load(Ordering::Relaxed) {
            self.metrics.api_write("Event");
            if let Err(err) = self.legacy_event(reference, reason, note).await {
                tracing::warn!(%err, "cannot publish an Event");
            }
            return;
        }
        self.metrics.api_write("Event");
        match self.recorder.publish(&event, &reference).await {
            Ok(()) => {}
            // Before Kubernetes 1.22 an events.k8s.io Event about a cluster-scoped object had
            // to live in kube-system; a core/v1 Event in `default` works on every version.
            Err(kube::Error::Api(status)) if status.code == 422 => {
                self.legacy_events.store(true, Ordering::Relaxed);
                self.metrics.api_write("Event");
                if let Err(err) = self.legacy_event(reference, reason, note).await {
                    tracing::warn!(%err, "cannot publish an Event");
                }
            }
            Err(err) => tracing::warn!(%err, "cannot publish an Event"),
        }
    }

    async fn legacy_event(
        &self,
        reference: ObjectReference,
        reason: &str,
        message: String,
    ) -> kube::Result<()> {
        let now = Time(Timestamp::now());
        let name = format!(
            "{}.{:x}",
            reference.name.as_deref().unwrap_or("mirror"),
            now.0.as_nanosecond()
        );
        let event = CoreEvent {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            involved_object: reference,
            reason: Some(reason.to_owned()),
            message: Some(message),
            type_: Some("Warning".into()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource {
                component: Some(self.manager.clone()),
                host: None,
            }),
            reporting_component: Some(self.manager.clone()),
            reporting_instance: Some(
                std::env::var("POD_NAME").unwrap_or_else(|_| self.manager.clone()),
            ),
            ..CoreEvent::default()
        };
        let api: Api<CoreEvent> = Api::namespaced(self.client.clone(), "default");
        api.create(&PostParams::default(), &event).await.map(drop)
    }

    /// Counts a transient failure of `mirror` and returns how many in a row there were before.
    pub fn failed_attempt(&self, mirror: &str) -> u32 {
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let count = attempts.entry(mirror.to_owned()).or_insert(0);
        let before = *count;
        *count = count.saturating_add(1);
        before
    }

    /// Whether `reason` is new for `mirror` (and remembers it).
    pub fn first_warning(&self, mirror: &str, reason: &str) -> bool {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        warned
            .insert(mirror.to_owned(), reason.to_owned())
            .as_deref()
            != Some(reason)
    }

    /// Forgets the last warning of `mirror` after a success.
    pub fn clear_warning(&self, mirror: &str) {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        warned.remove(mirror);
    }

    /// Forgets the failures of `mirror` after a success.
    pub fn succeeded(&self, mirror: &str) {
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        attempts.remove(mirror);
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
