//! Wiring: the watches (mirrors, their children, credentials Secrets, ConfigMaps), their caches,
//! and the kube-runtime Controller that calls [`crate::reconcile`] for each mirror.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{PredicateConfig, WatchStreamExt, predicates, watcher};
use kube::{Client, Resource, ResourceExt};
use wharf_core::crd::RegistryMirror;
use wharf_core::mirror::names::{
    IMAGESWAP_CONFIG_MAP, IMAGESWAP_MAPS_KEY, children_selector, service_name,
};
use wharf_core::mirror::{AddressingScheme, mirror_line};
use wharf_core::runtime::ControllerMetrics;

use crate::cache::{Readiness, Verified, cached};
use crate::context::{Context, Stores};
use crate::error::MASQUERADE_TAKEN;
use crate::reconcile::{error_policy, reconcile};
use crate::settings::Settings;
use crate::status::SYNCED;
use crate::stored::StoredMirror;

/// A reconcile writes up to five children, and their watch events arrive over the next moments:
/// waiting this long after a trigger folds them into one reconcile instead of several, each of
/// which would read the children the cache does not show yet.
const RETRIGGER_DEBOUNCE: Duration = Duration::from_millis(500);

/// A reason the controller cannot start, with what to change.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("MIRROR_SELECTOR {selector:?} is not a valid label selector: {message}")]
    InvalidSelector { selector: String, message: String },
    #[error(
        "cannot list RegistryMirrors (is the CRD installed and may this controller list them?)"
    )]
    List(#[source] kube::Error),
}

/// Runs the controller until the watches end (they do not; abort the task or stop the process).
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<ControllerMetrics>,
) -> Result<(), StartError> {
    check_selector(&client, &settings).await?;
    settings.log_notes();
    let namespace = settings.namespace.clone();

    let mut mirror_config = watcher::Config::default();
    if let Some(selector) = &settings.mirror_selector {
        mirror_config = mirror_config.labels(selector);
    }
    let readiness = Readiness::default();
    let verified = Arc::new(Verified::default());
    let (mirrors, mirror_stream) = cached(
        Api::<StoredMirror>::all(client.clone()),
        mirror_config,
        &readiness,
        Some(verified.clone()),
    );
    // A mirror refused for a masquerade host that another one holds gets another chance as
    // soon as any mirror changes or goes away (the holder may have been the one).
    let (contested_tx, contested_rx) = futures::channel::mpsc::unbounded();
    let contested_mirrors = mirrors.clone();
    let mirror_stream = mirror_stream.inspect(move |event| {
        if let Ok(mirror) = event {
            tracing::debug!(mirror = %mirror.name_any(), "mirror changed");
            for waiting in contested_mirrors
                .state()
                .iter()
                .filter(|m| waits_for_masquerade(m))
            {
                let _ = contested_tx.unbounded_send(ObjectRef::from_obj(waiting.as_ref()));
            }
        }
    });
    // The status this controller writes is no reason to reconcile again (with 500 mirrors it
    // was a third of all reconciles); spec changes and deletion (which sets a deletion
    // timestamp and so bumps the generation) are.
    let mirror_stream =
        mirror_stream.predicate_filter(predicates::generation, PredicateConfig::default());
    let children = watcher::Config::default().labels(&children_selector());
    let (services, service_stream) = cached(
        Api::<Service>::namespaced(client.clone(), &namespace),
        children.clone(),
        &readiness,
        Some(verified.clone()),
    );
    let (statefulsets, statefulset_stream) = cached(
        Api::<StatefulSet>::namespaced(client.clone(), &namespace),
        children.clone(),
        &readiness,
        Some(verified.clone()),
    );
    let (daemonsets, daemonset_stream) = cached(
        Api::<DaemonSet>::namespaced(client.clone(), &namespace),
        children.clone(),
        &readiness,
        Some(verified.clone()),
    );
    let (secrets, secret_stream) = cached(
        Api::<Secret>::namespaced(client.clone(), &namespace),
        children,
        &readiness,
        Some(verified.clone()),
    );

    let imageswap = (settings.addressing_scheme == AddressingScheme::Services).then(|| {
        cached(
            Api::<ConfigMap>::namespaced(client.clone(), settings.imageswap_namespace()),
            watcher::Config::default().fields(&format!("metadata.name={IMAGESWAP_CONFIG_MAP}")),
            &readiness,
            None,
        )
    });

    let stores = Stores {
        mirrors: mirrors.clone(),
        services: services.clone(),
        statefulsets,
        daemonsets,
        secrets,
        imageswap: imageswap.as_ref().map(|(store, _)| store.clone()),
        readiness: readiness.clone(),
    };

    // Any Secret in the namespace may be a mirror's credentials (or the shared certificate):
    // only metadata is watched, the data is read when a mirror needs it.
    let secret_triggers = watcher(
        Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), &namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects();
    let certificate_secret = settings.docker_certificate_secret.clone();
    let credential_mirrors = mirrors.clone();

    let mut controller = Controller::for_stream(mirror_stream, mirrors.clone())
        .with_config(
            ControllerConfig::default()
                .concurrency(settings.reconcile_concurrency)
                .debounce(RETRIGGER_DEBOUNCE),
        )
        .reconcile_on(contested_rx)
        .watches_stream(service_stream, owning_mirror)
        .watches_stream(statefulset_stream, owning_mirror)
        .watches_stream(daemonset_stream, owning_mirror)
        .watches_stream(secret_stream, owning_mirror)
        .watches_stream(secret_triggers, move |secret| {
            let name = secret.name_any();
            if certificate_secret.as_deref() == Some(name.as_str()) {
                return all_mirrors(&credential_mirrors);
            }
            credential_mirrors
                .state()
                .iter()
                .filter(|mirror| mirror.credentials_secret() == Some(name.as_str()))
                .map(|mirror| ObjectRef::from_obj(mirror.as_ref()))
                .collect()
        });

    if let Some(bundle) = settings.ca_certificate_bundle.clone() {
        let bundle_mirrors = mirrors.clone();
        let stream = watcher(
            Api::<PartialObjectMeta<ConfigMap>>::namespaced(client.clone(), &namespace),
            watcher::Config::default().fields(&format!("metadata.name={bundle}")),
        )
        .default_backoff()
        .touched_objects();
        controller = controller.watches_stream(stream, move |_| all_mirrors(&bundle_mirrors));
    }

    if let Some((_, stream)) = imageswap {
        let (map_mirrors, map_services) = (mirrors.clone(), services.clone());
        let service_namespace = namespace.clone();
        controller = controller.watches_stream(stream, move |config_map: ConfigMap| {
            mirrors_missing_their_line(&config_map, &map_mirrors, &map_services, &service_namespace)
        });
    }

    let context = Arc::new(Context::new(client, settings, stores, verified, metrics));
    controller
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(mirror = %object.name, "reconciled"),
                Err(err) => tracing::debug!(%err, "reconcile did not complete"),
            }
        })
        .await;
    Ok(())
}

/// Whether `mirror` was refused because another mirror holds its masquerade host.
fn waits_for_masquerade(mirror: &StoredMirror) -> bool {
    mirror.fails_with(SYNCED, MASQUERADE_TAKEN)
}

/// The RegistryMirror controlling a child. (`Controller::owns` would look the owner up in the
/// child's namespace; a mirror is cluster-scoped, and a namespaced reference to it would let two
/// reconciles of the same mirror run at once.)
fn owning_mirror<K: Resource>(child: K) -> Option<ObjectRef<StoredMirror>> {
    let kind = RegistryMirror::kind(&());
    child
        .meta()
        .owner_references
        .as_ref()?
        .iter()
        .find(|owner| owner.controller == Some(true) && owner.kind == kind)
        .map(|owner| ObjectRef::new(&owner.name))
}

fn all_mirrors(mirrors: &Store<StoredMirror>) -> Vec<ObjectRef<StoredMirror>> {
    mirrors
        .state()
        .iter()
        .map(|mirror| ObjectRef::from_obj(mirror.as_ref()))
        .collect()
}

/// After a change of `imageswap-maps`, the mirrors whose line is not (exactly) in it.
fn mirrors_missing_their_line(
    config_map: &ConfigMap,
    mirrors: &Store<StoredMirror>,
    services: &Store<Service>,
    namespace: &str,
) -> Vec<ObjectRef<StoredMirror>> {
    let maps = config_map
        .data
        .as_ref()
        .and_then(|data| data.get(IMAGESWAP_MAPS_KEY))
        .map(String::as_str)
        .unwrap_or_default();
    let lines: HashSet<&str> = maps.lines().map(|l| l.trim_end_matches('\r')).collect();
    mirrors
        .state()
        .iter()
        .filter(|mirror| {
            let cluster_ip = Stores::get(services, namespace, &service_name(&mirror.name_any()))
                .and_then(|service| service.spec.as_ref()?.cluster_ip.clone());
            match (cluster_ip, mirror.masquerade_host()) {
                (Some(ip), Some(host)) => !lines.contains(mirror_line(&host, &ip).as_str()),
                _ => false,
            }
        })
        .map(|mirror| ObjectRef::from_obj(mirror.as_ref()))
        .collect()
}

/// Lets the API server judge MIRROR_SELECTOR once, so a typo stops the start with a message
/// instead of failing every watch.
async fn check_selector(client: &Client, settings: &Settings) -> Result<(), StartError> {
    let api = Api::<RegistryMirror>::all(client.clone());
    let mut params = ListParams::default().limit(1);
    if let Some(selector) = &settings.mirror_selector {
        params = params.labels(selector);
    }
    match api.list_metadata(&params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 400 => Err(StartError::InvalidSelector {
            selector: settings.mirror_selector.clone().unwrap_or_default(),
            message: status.message,
        }),
        Err(err) => Err(StartError::List(err)),
    }
}
