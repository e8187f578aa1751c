//! Applying a mirror's children: each is sent (server-side apply, one field manager) only when
//! it differs from its live state, which is read only when its version changed since this
//! process last verified it; objects whose immutable fields changed are recreated.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use kube::api::{Api, DeleteParams, PostParams, Preconditions, PropagationPolicy};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wharf_core::apply::{apply, is_applied};
use wharf_core::mirror::names::{
    daemonset_name, headless_service_name, service_name, statefulset_name,
};
use wharf_core::mirror::{
    ValidMirror, align_statefulset_quantities, build_daemonset, build_headless_service,
    build_service, build_statefulset, content_hash, immutable_change,
};

use crate::cache::Shrink;
use crate::context::{Context, Stores};
use crate::error::{Failure, invalid_message, is_not_found};
use crate::inputs::TlsInUse;

/// A kind of child this module compares and applies (in the controller's namespace).
pub trait Child:
    Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Shrink
    + Serialize
    + DeserializeOwned
    + Clone
    + Debug
{
}

impl<K> Child for K where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Shrink
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug
{
}

/// What is known of a child before comparing it with its desired state.
enum Live<K> {
    /// It does not exist (yet).
    Absent,
    /// This process verified (or wrote) this desired state at the cached resourceVersion.
    Verified,
    /// Read in full, to be compared.
    Fetched(K),
}

/// A stable hash of a desired object.
fn desired_hash<K: Serialize>(desired: &K) -> String {
    content_hash([serde_json::to_vec(desired).unwrap_or_default().as_slice()])
}

/// The live state of the child named like `desired`, read in full only when this process has
/// not verified its current resourceVersion for `hash`.
async fn live_state<K>(
    ctx: &Context,
    cached: Option<&K>,
    name: &str,
    hash: &str,
) -> Result<Live<K>, Failure>
where
    K: Child,
{
    match cached {
        Some(cached) if ctx.verified.holds(K::KIND, name, &cached.version(), hash) => {
            return Ok(Live::Verified);
        }
        Some(_) => {}
        // Not cached and never seen: it does not exist. Not cached but written or seen by
        // this process: the watch has not delivered it yet, or it was deleted — read it.
        None if !ctx.verified.knows(K::KIND, name) => return Ok(Live::Absent),
        None => {}
    }
    let live = api::<K>(ctx)
        .get_opt(name)
        .await
        .map_err(Failure::api(format!("reading {} {name}", K::KIND)))?;
    Ok(live.map_or(Live::Absent, Live::Fetched))
}

/// Makes the child `desired` describes hold that state: nothing when verified, a read and a
/// comparison when its version changed, an apply when it differs. Returns the full object when
/// one was read or written.
pub async fn ensure<K>(ctx: &Context, cached: Option<&K>, desired: &K) -> Result<Option<K>, Failure>
where
    K: Child,
{
    let name = desired.meta().name.clone().unwrap_or_default();
    let hash = desired_hash(desired);
    match live_state(ctx, cached, &name, &hash).await? {
        Live::Verified => Ok(None),
        Live::Fetched(live) => settle(ctx, live, desired, hash).await.map(Some),
        Live::Absent => write(ctx, desired, hash).await.map(Some),
    }
}

/// [`ensure`] for a child this reconcile has just read in full (it is not read again).
pub async fn ensure_read<K>(ctx: &Context, live: K, desired: &K) -> Result<K, Failure>
where
    K: Child,
{
    settle(ctx, live, desired, desired_hash(desired)).await
}

/// Records `live` as verified for `hash` when it already holds `desired`, else writes it.
async fn settle<K>(ctx: &Context, live: K, desired: &K, hash: String) -> Result<K, Failure>
where
    K: Child,
{
    if is_applied(desired, &live, &ctx.manager) {
        record(ctx, &live, hash);
        Ok(live)
    } else {
        write(ctx, desired, hash).await
    }
}

/// Server-side applies `desired` (counted) and records the version it produced.
async fn write<K>(ctx: &Context, desired: &K, hash: String) -> Result<K, Failure>
where
    K: Child,
{
    ctx.metrics.api_write(K::KIND);
    let written = apply(&api(ctx), &ctx.manager, desired)
        .await
        .map_err(|err| rejected_or_api(K::KIND, desired, err))?;
    record(ctx, &written, hash);
    Ok(written)
}

fn record<K: Shrink>(ctx: &Context, object: &K, hash: String) {
    ctx.verified.record(
        K::KIND,
        object.meta().name.as_deref().unwrap_or_default(),
        object.version(),
        hash,
    );
}

/// Applies both Services and returns the ClusterIP of the main one.
pub async fn services(ctx: &Context, mirror: &ValidMirror) -> Result<Option<String>, Failure> {
    let settings = &ctx.mirror_settings;
    let namespace = &settings.namespace;
    let service = build_service(mirror, settings);
    let headless = build_headless_service(mirror, settings);
    let cached = Stores::get(&ctx.stores.services, namespace, &service_name(&mirror.name));
    let cached_headless = Stores::get(
        &ctx.stores.services,
        namespace,
        &headless_service_name(&mirror.name),
    );
    let (main, _) = futures::try_join!(
        ensure(ctx, cached.as_deref(), &service),
        ensure(ctx, cached_headless.as_deref(), &headless),
    )?;
    let cluster_ip = |s: &Service| s.spec.as_ref().and_then(|spec| spec.cluster_ip.clone());
    Ok(match main {
        Some(service) => cluster_ip(&service),
        None => cached.as_deref().and_then(cluster_ip),
    })
}

/// Applies the StatefulSet, recreating it (pods and volumes stay) when a field Kubernetes will
/// not update changed, e.g. the volume claim template.
pub async fn statefulset(
    ctx: &Context,
    mirror: &ValidMirror,
    tls_secret: &str,
    config_hash: &str,
) -> Result<(), Failure> {
    let settings = &ctx.mirror_settings;
    let mut desired = build_statefulset(mirror, settings, tls_secret, config_hash);
    let hash = desired_hash(&desired);
    let name = statefulset_name(&mirror.name);
    let cached = Stores::get(&ctx.stores.statefulsets, &settings.namespace, &name);
    match live_state::<StatefulSet>(ctx, cached.as_deref(), &name, &hash).await? {
        Live::Verified => Ok(()),
        Live::Absent => {
            check_claim_template(ctx, mirror).await?;
            write(ctx, &desired, hash).await.map(drop)
        }
        Live::Fetched(live) => {
            align_statefulset_quantities(&mut desired, &live);
            let field = if live.metadata.deletion_timestamp.is_some() {
                Some("spec")
            } else {
                immutable_change(&desired, &live)
            };
            if let Some(field) = field {
                if field == "spec.volumeClaimTemplates" {
                    check_claim_template(ctx, mirror).await?;
                }
                recreate(ctx, &live).await?;
                return Err(Failure::Recreating {
                    kind: "StatefulSet",
                    name,
                    field,
                });
            }
            settle(ctx, live, &desired, hash).await.map(drop)
        }
    }
}

/// Lets the API server judge a new claim template (a dry-run create of the claim the
/// StatefulSet would make): it does not validate the templates inside a StatefulSet, so a bad
/// one would otherwise only show as pods that never start.
async fn check_claim_template(ctx: &Context, mirror: &ValidMirror) -> Result<(), Failure> {
    if !mirror.custom_claim_template {
        return Ok(());
    }
    let mut claim = mirror.claim_template.clone();
    claim.metadata.name = None;
    claim.metadata.generate_name = Some(format!(
        "{}-{}-",
        wharf_core::mirror::names::IMAGE_STORE_VOLUME,
        statefulset_name(&mirror.name)
    ));
    claim.metadata.namespace = Some(ctx.settings.namespace.clone());
    let params = PostParams {
        dry_run: true,
        field_manager: Some(ctx.manager.clone()),
    };
    ctx.metrics.api_write("PersistentVolumeClaim (dry run)");
    match api::<PersistentVolumeClaim>(ctx)
        .create(&params, &claim)
        .await
    {
        Ok(_) => Ok(()),
        // Validation runs before quota and other admission checks; a refusal by those (no
        // room in a quota, no permission for dry runs) says nothing about the template.
        Err(kube::Error::Api(status)) if status.code == 403 => {
            tracing::debug!(mirror = %mirror.name, reason = %status.message, "the claim template could not be checked");
            Ok(())
        }
        Err(err) => match invalid_message(&err) {
            Some(message) => Err(Failure::Rejected {
                kind: "PersistentVolumeClaim",
                name: statefulset_name(&mirror.name),
                field: "spec.volumeClaimTemplate",
                message,
            }),
            None => Err(Failure::api("checking the volume claim template")(err)),
        },
    }
}

/// Applies the DaemonSet, recreating it when its selector changed.
pub async fn daemonset(ctx: &Context, mirror: &ValidMirror, tls: &TlsInUse) -> Result<(), Failure> {
    let settings = &ctx.mirror_settings;
    let desired = build_daemonset(mirror, settings, &tls.agent, &tls.ca_hash);
    let hash = desired_hash(&desired);
    let name = daemonset_name(&mirror.name);
    let cached = Stores::get(&ctx.stores.daemonsets, &settings.namespace, &name);
    match live_state::<DaemonSet>(ctx, cached.as_deref(), &name, &hash).await? {
        Live::Verified => Ok(()),
        Live::Absent => write(ctx, &desired, hash).await.map(drop),
        Live::Fetched(live) => {
            let selector = |ds: &DaemonSet| ds.spec.as_ref().map(|spec| spec.selector.clone());
            let field = if live.metadata.deletion_timestamp.is_some() {
                Some("spec")
            } else if selector(&desired) != selector(&live) {
                Some("spec.selector")
            } else {
                None
            };
            if let Some(field) = field {
                recreate(ctx, &live).await?;
                return Err(Failure::Recreating {
                    kind: "DaemonSet",
                    name,
                    field,
                });
            }
            settle(ctx, live, &desired, hash).await.map(drop)
        }
    }
}

/// Deletes `live` leaving its pods (and their volumes) for the replacement to adopt; a
/// deletion already under way is waited for.
async fn recreate<K>(ctx: &Context, live: &K) -> Result<(), Failure>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + DeserializeOwned
        + Clone
        + Debug,
{
    if live.meta().deletion_timestamp.is_some() {
        return Ok(());
    }
    let name = live.name_any();
    tracing::info!(kind = K::kind(&()).as_ref(), %name, "recreating: an immutable field changed");
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        preconditions: Some(Preconditions {
            uid: live.meta().uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    ctx.metrics.api_write(K::kind(&()).as_ref());
    match api::<K>(ctx).delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(err) if is_not_found(&err) => Ok(()),
        Err(err) => Err(Failure::api(format!("deleting {} {name}", K::kind(&())))(
            err,
        )),
    }
}

pub(crate) fn api<K>(ctx: &Context) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(ctx.client.clone(), &ctx.settings.namespace)
}

/// A refusal of the API server (invalid object) becomes a failure naming the field the user
/// controls; anything else is an API failure to retry.
fn rejected_or_api<K: Resource>(kind: &'static str, object: &K, err: kube::Error) -> Failure {
    let name = object.meta().name.clone().unwrap_or_default();
    match invalid_message(&err) {
        Some(message) => Failure::Rejected {
            kind,
            field: field_of(&message),
            name,
            message,
        },
        None => Failure::api(format!("applying {kind} {name}"))(err),
    }
}

/// The RegistryMirror field behind an API server validation message.
fn field_of(message: &str) -> &'static str {
    if message.contains("volumeClaimTemplates") {
        "spec.volumeClaimTemplate"
    } else if message.contains("priorityClassName") {
        "spec.priorityClass"
    } else {
        "spec"
    }
}

#[cfg(test)]
mod tests {
    use super::field_of;

    #[test]
    fn validation_messages_map_to_mirror_fields() {
        assert_eq!(
            field_of(
                "StatefulSet.apps \"x\" is invalid: spec.volumeClaimTemplates[0].spec.accessModes: Unsupported value"
            ),
            "spec.volumeClaimTemplate"
        );
        assert_eq!(
            field_of("spec.template.spec.priorityClassName: Invalid"),
            "spec.priorityClass"
        );
        assert_eq!(field_of("something else"), "spec");
    }
}
