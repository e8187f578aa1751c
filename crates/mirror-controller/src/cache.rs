//! The watched caches, kept small: children are cached without what reconciles do not read
//! (specs, Secret data), and a child is compared in full only when its resourceVersion differs
//! from the one this process last verified or wrote for the same desired state.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{Secret, Service, ServiceSpec};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use wharf_core::crd::RegistryMirrorStatus;

use crate::stored::StoredMirror;

/// Objects per page of a watch's initial list: a page is held as text and parsed whole, and
/// after a restart six caches list at once. With 100 StatefulSets a page the process peaked at
/// 39 MiB for 500 mirrors; with 25 at 32 MiB, for 40 requests instead of 10 per 1,000 objects.
const PAGE_SIZE: u32 = 25;

/// Tracks which caches have completed their first list. (kube's `Store::wait_until_ready`
/// wakes only the last of several concurrent waiters, so reconciles cannot all wait on it.)
#[derive(Clone)]
pub struct Readiness {
    listed: tokio::sync::watch::Sender<usize>,
    members: Arc<AtomicUsize>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            listed: tokio::sync::watch::Sender::new(0),
            members: Arc::default(),
        }
    }
}

impl Readiness {
    /// Registers one more cache; the returned function marks it listed (only the first call
    /// counts: a relist after a lost watch does not make it "more" ready).
    pub fn member(&self) -> impl Fn() + Send + Sync + 'static {
        self.members.fetch_add(1, Ordering::SeqCst);
        let listed = self.listed.clone();
        let done = AtomicBool::new(false);
        move || {
            if !done.swap(true, Ordering::SeqCst) {
                listed.send_modify(|count| *count += 1);
            }
        }
    }

    /// Resolves once every registered cache has been listed.
    pub async fn wait(&self) {
        let members = self.members.load(Ordering::SeqCst);
        let mut listed = self.listed.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = listed.wait_for(|count| *count >= members).await;
    }
}

/// For each child: the resourceVersion at which it was last seen to hold a desired state, and
/// that state's hash. Same version and same hash: nothing to compare, nothing to write.
#[derive(Default)]
pub struct Verified {
    children: Mutex<HashMap<ChildKey, VerifiedState>>,
    /// The status each mirror was last given (only this controller writes it).
    statuses: Mutex<HashMap<String, RegistryMirrorStatus>>,
}

/// A child: kind and name (the namespace is the controller's).
type ChildKey = (&'static str, String);
/// resourceVersion and desired-state hash.
type VerifiedState = (String, String);

impl Verified {
    /// Whether `kind`/`name` at `version` was verified to hold the state hashed as `hash`.
    pub fn holds(&self, kind: &'static str, name: &str, version: &str, hash: &str) -> bool {
        let children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children
            .get(&(kind, name.to_owned()))
            .is_some_and(|(v, h)| v == version && h == hash)
    }

    /// The status mirror `name` was last given by this process.
    pub fn last_status(&self, name: &str) -> Option<RegistryMirrorStatus> {
        let statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
        statuses.get(name).cloned()
    }

    /// The status in effect for `mirror`: the one this process last wrote (the cache may not
    /// show it yet, and only this controller writes it), else the stored one.
    pub fn status_of(&self, mirror: &StoredMirror) -> Option<RegistryMirrorStatus> {
        self.last_status(&mirror.name_any())
            .or_else(|| mirror.current_status())
    }

    pub fn record_status(&self, name: &str, status: RegistryMirrorStatus) {
        let mut statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
        statuses.insert(name.to_owned(), status);
    }

    /// Whether this process has seen `kind`/`name` hold a desired state at all.
    pub fn knows(&self, kind: &'static str, name: &str) -> bool {
        let children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children.contains_key(&(kind, name.to_owned()))
    }

    pub fn record(&self, kind: &'static str, name: &str, version: String, hash: String) {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children.insert((kind, name.to_owned()), (version, hash));
    }

    pub fn forget(&self, kind: &'static str, name: &str) {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children.remove(&(kind, name.to_owned()));
        if kind == StoredMirror::KIND {
            let mut statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
            statuses.remove(name);
        }
    }
}

/// What a cache keeps of an object of kind `K`.
pub trait Shrink: Resource {
    /// The kind's name as [`Verified`] and the write metrics use it.
    const KIND: &'static str;
    /// Drops what reconciles never read from the cache (managed fields always).
    fn shrink(&mut self);
    /// What identifies this state of the object for [`Verified`]: its resourceVersion.
    fn version(&self) -> String {
        self.meta().resource_version.clone().unwrap_or_default()
    }
}

/// The generation (it moves with the spec, not with the status that controllers keep
/// updating): a workload is not re-read each time its pods change.
fn generation<K: Resource>(object: &K) -> String {
    object.meta().generation.map_or_else(
        || object.meta().resource_version.clone().unwrap_or_default(),
        |g| format!("generation {g}"),
    )
}

impl Shrink for Service {
    const KIND: &'static str = "Service";
    /// Only the ClusterIP is read from the cache.
    fn shrink(&mut self) {
        self.spec = self.spec.take().map(|spec| ServiceSpec {
            cluster_ip: spec.cluster_ip,
            ..ServiceSpec::default()
        });
        self.status = None;
    }
}

impl Shrink for StatefulSet {
    const KIND: &'static str = "StatefulSet";
    /// Replicas and status make the Ready condition; the rest is compared fetched in full.
    fn shrink(&mut self) {
        self.spec = self.spec.take().map(|spec| StatefulSetSpec {
            replicas: spec.replicas,
            ..StatefulSetSpec::default()
        });
    }

    fn version(&self) -> String {
        generation(self)
    }
}

impl Shrink for DaemonSet {
    const KIND: &'static str = "DaemonSet";
    fn shrink(&mut self) {
        self.spec = None;
    }

    fn version(&self) -> String {
        generation(self)
    }
}

impl Shrink for Secret {
    const KIND: &'static str = "Secret";
    fn shrink(&mut self) {
        self.data = None;
        self.string_data = None;
    }
}

impl Shrink for k8s_openapi::api::core::v1::ConfigMap {
    const KIND: &'static str = "ConfigMap";
    /// imageswap-maps is read whole.
    fn shrink(&mut self) {}
}

impl Shrink for StoredMirror {
    const KIND: &'static str = "RegistryMirror";
    fn shrink(&mut self) {}
}

/// A cache of `K` and the watch stream that fills it. `forget` drops what [`Verified`] knows
/// of deleted objects.
pub fn cached<K>(
    api: Api<K>,
    config: watcher::Config,
    readiness: &Readiness,
    forget: Option<Arc<Verified>>,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()>
        + Shrink
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let mark_listed = readiness.member();
    let stream = watcher(api, config.page_size(PAGE_SIZE))
        .default_backoff()
        .modify(|object: &mut K| {
            object.managed_fields_mut().clear();
            object.shrink();
        })
        .reflect(writer)
        .inspect(move |event| match event {
            Ok(watcher::Event::InitDone) => mark_listed(),
            Ok(watcher::Event::Delete(object)) => {
                if let Some(verified) = &forget {
                    verified.forget(K::KIND, &object.name_any());
                }
            }
            _ => {}
        })
        .touched_objects()
        .boxed();
    (store, stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    #[test]
    fn verified_state_needs_the_same_version_and_hash() {
        let verified = Verified::default();
        assert!(!verified.holds("Service", "a", "1", "h"));
        assert!(!verified.knows("Service", "a"));
        verified.record("Service", "a", "1".into(), "h".into());
        assert!(verified.holds("Service", "a", "1", "h"));
        assert!(
            !verified.holds("Service", "a", "2", "h"),
            "changed by someone"
        );
        assert!(
            !verified.holds("Service", "a", "1", "other"),
            "a new desired state"
        );
        assert!(!verified.holds("Secret", "a", "1", "h"), "per kind");
        assert!(verified.knows("Service", "a"));
        verified.forget("Service", "a");
        assert!(!verified.holds("Service", "a", "1", "h"));
        assert!(!verified.knows("Service", "a"));
    }

    #[test]
    fn shrinking_keeps_what_reconciles_read() {
        let mut service = Service {
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.96.0.1".into()),
                selector: Some(BTreeMap::from([("a".into(), "b".into())])),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        service.shrink();
        let spec = service.spec.expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.1"));
        assert_eq!(spec.selector, None);

        let mut secret = Secret {
            data: Some(BTreeMap::from([("k".into(), ByteString(vec![1]))])),
            ..Secret::default()
        };
        secret.shrink();
        assert_eq!(secret.data, None);

        let mut statefulset = StatefulSet {
            spec: Some(StatefulSetSpec {
                replicas: Some(2),
                service_name: Some("x".into()),
                ..StatefulSetSpec::default()
            }),
            ..StatefulSet::default()
        };
        statefulset.shrink();
        let spec = statefulset.spec.clone().expect("spec");
        assert_eq!((spec.replicas, spec.service_name), (Some(2), None));

        statefulset.metadata.generation = Some(3);
        statefulset.metadata.resource_version = Some("41".into());
        let at_three = statefulset.version();
        statefulset.metadata.resource_version = Some("42".into());
        assert_eq!(
            statefulset.version(),
            at_three,
            "a status update is no new version"
        );
        statefulset.metadata.generation = Some(4);
        assert_ne!(statefulset.version(), at_three, "a spec change is");
        assert_eq!(service_version(), "7");
    }

    fn service_version() -> String {
        let mut service = Service::default();
        service.metadata.resource_version = Some("7".into());
        service.version()
    }

    #[test]
    fn statuses_are_forgotten_with_their_mirror() {
        let verified = Verified::default();
        let status = RegistryMirrorStatus {
            observed_generation: Some(1),
            ..RegistryMirrorStatus::default()
        };
        verified.record_status("m", status.clone());
        assert_eq!(verified.last_status("m"), Some(status));
        verified.forget("Service", "m");
        assert!(
            verified.last_status("m").is_some(),
            "a child of that name is not the mirror"
        );
        verified.forget(StoredMirror::KIND, "m");
        assert_eq!(verified.last_status("m"), None);
    }

    #[tokio::test]
    async fn readiness_waits_for_every_member() {
        let readiness = Readiness::default();
        let first = readiness.member();
        let second = readiness.member();
        first();
        first();
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(20), readiness.wait()).await;
        assert!(waiting.is_err(), "one member is not listed yet");
        second();
        readiness.wait().await;
    }
}
