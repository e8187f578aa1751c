//! Wiring of one controller per kind: what it watches and which CRs each change concerns.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use wharf_core::crd::{ImageRegistry, ImageRegistryAccount};
use wharf_core::runtime::ControllerMetrics;

use crate::account::{ACCESS_MODE_LABEL, MANAGED_BY, MANAGED_BY_LABEL, SecretOwner};
use crate::error::Error;
use crate::kind::ImageSecretKind;
use crate::reconcile::reconcile;
use crate::registry::{self, RegistryKey};
use crate::settings::Settings;
use crate::{Context, FIELD_MANAGER_COMPONENT, RecentAccounts, UnwrittenLogins, WrittenStatuses};

/// How soon a failed reconcile is retried.
const RETRY_FAILED: Duration = Duration::from_secs(10);

/// Runs the controller of kind `K` until its watches end.
pub async fn run_kind<K: ImageSecretKind>(
    client: Client,
    settings: Arc<Settings>,
    metrics: Arc<ControllerMetrics>,
    recorder: kube::runtime::events::Recorder,
) {
    let mode = K::ACCESS_MODE;
    let (registries, registry_writer) = reflector::store::<ImageRegistry>();
    let registry_changes = watcher(
        Api::<ImageRegistry>::all(client.clone()),
        Default::default(),
    )
    .default_backoff()
    .reflect(registry_writer)
    .touched_objects();

    let (accounts, account_writer) = reflector::store::<ImageRegistryAccount>();
    let own_accounts = watcher::Config::default().labels(&format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY},{ACCESS_MODE_LABEL}={}",
        mode.as_str()
    ));
    // Only deletions: the rotator created the others itself, and expiries are scheduled.
    let account_deletions = watcher(
        Api::<ImageRegistryAccount>::all(client.clone()),
        own_accounts,
    )
    .default_backoff()
    .reflect(account_writer)
    .try_filter_map(|event| async move {
        Ok(match event {
            watcher::Event::Delete(account) => Some(account),
            _ => None,
        })
    });

    // Metadata only: owned Secrets and registries' TLS Secrets, without holding any secret data.
    let secret_changes = watcher(
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        Default::default(),
    )
    .default_backoff()
    .touched_objects();

    let ctx = Arc::new(Context {
        client: client.clone(),
        settings: settings.clone(),
        registries: registries.clone(),
        accounts,
        recorder,
        metrics,
        manager: wharf_core::apply::field_manager(FIELD_MANAGER_COMPONENT),
        recent_accounts: RecentAccounts::default(),
        written_statuses: WrittenStatuses::default(),
        unwritten_logins: UnwrittenLogins::default(),
    });

    // Spec, finalizers and deletion matter; status-only changes are the rotator's own writes.
    let (crs, cr_writer) = reflector::store::<K>();
    let crs_api = match &settings.watch_namespace {
        Some(namespace) => Api::<K>::namespaced(client, namespace),
        None => Api::<K>::all(client),
    };
    let cr_changes = watcher(crs_api, Default::default())
        .default_backoff()
        .reflect(cr_writer)
        .applied_objects()
        .predicate_filter(spec_finalizers_or_deletion, Default::default());
    let controller = Controller::for_stream(cr_changes, crs)
        .with_config(controller::Config::default().concurrency(settings.max_concurrent_reconciles));
    let crs = controller.store();
    let (crs_for_registries, settings_for_registries) = (crs.clone(), settings.clone());
    let (crs_for_secrets, settings_for_secrets) = (crs.clone(), settings.clone());
    controller
        .watches_stream(registry_changes, move |registry: ImageRegistry| {
            let key = RegistryKey::new(
                registry.namespace().unwrap_or_default(),
                registry.name_any(),
            );
            crs_using(&crs_for_registries, &settings_for_registries, &key)
        })
        .watches_stream(account_deletions, |account: ImageRegistryAccount| {
            SecretOwner::from_account(&account)
                .filter(|owner| owner.mode == K::ACCESS_MODE)
                .map(|owner| ObjectRef::<K>::new(&owner.name).within(&owner.namespace))
        })
        .watches_stream(secret_changes, move |secret: PartialObjectMeta<Secret>| {
            secret_triggers(
                &secret,
                &crs_for_secrets,
                &registries,
                &settings_for_secrets,
            )
        })
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(%err, "reconcile attempt did not finish");
            }
        })
        .await;
}

/// What of a CR calls for a reconcile: its spec (generation), finalizers and deletion.
fn spec_finalizers_or_deletion<K: ImageSecretKind>(cr: &K) -> Option<u64> {
    let mut hasher = std::hash::DefaultHasher::new();
    (
        cr.meta().generation,
        cr.finalizers(),
        cr.meta().deletion_timestamp.is_some(),
    )
        .hash(&mut hasher);
    Some(hasher.finish())
}

/// The CRs of kind `K` that log in to registry `key`.
fn crs_using<K: ImageSecretKind>(
    crs: &Store<K>,
    settings: &Settings,
    key: &RegistryKey,
) -> Vec<ObjectRef<K>> {
    crs.state()
        .iter()
        .filter(|cr| {
            registry::resolve(
                &cr.namespace().unwrap_or_default(),
                cr.registry_ref(),
                &settings.default_registry,
            ) == *key
        })
        .map(|cr| ObjectRef::from_obj(cr.as_ref()))
        .collect()
}

/// CRs a Secret change concerns: its controlling owner of kind `K`, and, when it is a registry's
/// TLS Secret, every CR using that registry (its CA changed).
fn secret_triggers<K: ImageSecretKind>(
    secret: &PartialObjectMeta<Secret>,
    crs: &Store<K>,
    registries: &Store<ImageRegistry>,
    settings: &Settings,
) -> Vec<ObjectRef<K>> {
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    let mut triggers: Vec<ObjectRef<K>> = secret
        .owner_references()
        .iter()
        .filter(|owner| {
            owner.controller == Some(true)
                && owner.kind == K::kind(&())
                && owner.api_version == K::api_version(&())
        })
        .map(|owner| ObjectRef::new(&owner.name).within(&namespace))
        .collect();
    for registry in registries.state() {
        let serves_tls = registry.namespace().as_deref() == Some(namespace.as_str())
            && registry
                .status
                .as_ref()
                .and_then(|s| s.tls_secret_name.as_deref())
                == Some(name.as_str());
        if serves_tls {
            let key = RegistryKey::new(namespace.clone(), registry.name_any());
            triggers.extend(crs_using(crs, settings, &key));
        }
    }
    triggers
}

fn error_policy<K: ImageSecretKind>(cr: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(err.metric_reason());
    tracing::warn!(
        kind = %K::kind(&()), namespace = %cr.namespace().unwrap_or_default(),
        name = %cr.name_any(), error = %err, "reconcile failed"
    );
    Action::requeue(RETRY_FAILED)
}
