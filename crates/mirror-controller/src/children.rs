//! Applying a mirror's children: each is compared with its cached live state first and sent
//! (server-side apply, one field manager) only when it differs; objects whose immutable fields
//! changed are recreated.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{Api, DeleteParams, PostParams, Preconditions, PropagationPolicy};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wharf_core::apply::{apply, apply_if_changed, is_applied};
use wharf_core::mirror::names::{
    daemonset_name, headless_service_name, service_name, statefulset_name, tls_secret_name,
};
use wharf_core::mirror::{AgentTls, names::CA_CERT_KEY};
use wharf_core::mirror::{
    TlsPlan, ValidMirror, align_statefulset_quantities, build_daemonset, build_headless_service,
    build_service, build_statefulset, build_tls_secret, content_hash, immutable_change, issue,
    plan_tls, serving_sans,
};

use crate::context::{Context, Stores};
use crate::error::{Failure, invalid_message, is_not_found};
use crate::inputs::TlsInUse;

/// Applies both Services and returns the ClusterIP of the main one.
pub async fn services(ctx: &Context, mirror: &ValidMirror) -> Result<Option<String>, Failure> {
    let settings = &ctx.mirror_settings;
    let namespace = &settings.namespace;
    let service = build_service(mirror, settings);
    let headless = build_headless_service(mirror, settings);
    let live_service = Stores::get(&ctx.stores.services, namespace, &service_name(&mirror.name));
    let live_headless = Stores::get(
        &ctx.stores.services,
        namespace,
        &headless_service_name(&mirror.name),
    );
    let main = async {
        match live_service {
            Some(live) if is_applied(&service, live.as_ref()) => Ok(live.as_ref().clone()),
            _ => {
                ctx.metrics.api_write("Service");
                apply(&api(ctx), &ctx.manager, &service)
                    .await
                    .map_err(|err| rejected_or_api("Service", &service, err))
            }
        }
    };
    let (main, _) =
        futures::try_join!(main, apply_child(ctx, "Service", live_headless, &headless))?;
    Ok(main.spec.and_then(|spec| spec.cluster_ip))
}

/// Applies `desired` unless its cached live state already matches; counts the write.
pub async fn apply_child<K>(
    ctx: &Context,
    kind: &'static str,
    live: Option<Arc<K>>,
    desired: &K,
) -> Result<bool, Failure>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    if let Some(live) = &live
        && is_applied(desired, live.as_ref())
    {
        return Ok(false);
    }
    ctx.metrics.api_write(kind);
    apply_if_changed(&api(ctx), &ctx.manager, None, desired)
        .await
        .map_err(|err| rejected_or_api(kind, desired, err))
}

/// The generated TLS Secret of a mirror: kept while its certificate is good, (re)issued when
/// it is missing, lacks a name (e.g. a new ClusterIP or masquerade host) or nears its end.
pub async fn generated_tls(
    ctx: &Context,
    mirror: &ValidMirror,
    cluster_ip: Option<&str>,
) -> Result<(TlsInUse, SystemTime), Failure> {
    let settings = &ctx.mirror_settings;
    let name = tls_secret_name(&mirror.name);
    let live = Stores::get(&ctx.stores.secrets, &settings.namespace, &name);
    let sans = serving_sans(mirror, settings, cluster_ip);
    let now = SystemTime::now();
    let (material, recheck_at) = match plan_tls(live.as_deref(), &sans, now) {
        TlsPlan::Keep {
            material,
            recheck_at,
        } => {
            // The data is right; labels or owner may still need the apply.
            apply_child(
                ctx,
                "Secret",
                live,
                &build_tls_secret(mirror, settings, &material),
            )
            .await?;
            (material, recheck_at)
        }
        TlsPlan::Issue {
            reusable_ca,
            reason,
        } => {
            tracing::info!(mirror = %mirror.name, reason, "issuing a serving certificate");
            let material = issue(mirror, reusable_ca, &sans, now)?;
            let secret = build_tls_secret(mirror, settings, &material);
            apply_child(ctx, "Secret", None, &secret).await?;
            let recheck_at = now + wharf_core::mirror::SERVER_VALIDITY / 3 * 2;
            (material, recheck_at)
        }
    };
    Ok((
        TlsInUse {
            agent: AgentTls {
                secret_name: name.clone(),
                ca_key: CA_CERT_KEY.into(),
            },
            secret_name: name,
            serving_hash: content_hash([
                material.server.cert_pem.as_bytes(),
                material.server.key_pem.as_bytes(),
            ]),
            ca_hash: content_hash([material.ca.cert_pem.as_bytes()]),
        },
        recheck_at,
    ))
}

/// Deletes the generated TLS Secret once a DOCKER_CERTIFICATE_SECRET replaces it.
pub async fn prune_generated_tls(ctx: &Context, mirror: &ValidMirror) -> Result<(), Failure> {
    let name = tls_secret_name(&mirror.name);
    let Some(live) = Stores::get(&ctx.stores.secrets, &ctx.settings.namespace, &name) else {
        return Ok(());
    };
    let ours = live
        .owner_references()
        .iter()
        .any(|owner| owner.uid == mirror.owner.uid);
    if !ours {
        return Ok(());
    }
    ctx.metrics.api_write("Secret");
    match api::<Secret>(ctx)
        .delete(&name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(err) if is_not_found(&err) => Ok(()),
        Err(err) => Err(Failure::api(format!("deleting Secret {name}"))(err)),
    }
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
    let name = statefulset_name(&mirror.name);
    let live = Stores::get(&ctx.stores.statefulsets, &settings.namespace, &name);
    let claim_changed = match &live {
        None => true,
        Some(live) => {
            align_statefulset_quantities(&mut desired, live);
            immutable_change(&desired, live) == Some("spec.volumeClaimTemplates")
        }
    };
    if claim_changed {
        check_claim_template(ctx, mirror).await?;
    }
    if let Some(live) = &live {
        let field = if live.metadata.deletion_timestamp.is_some() {
            Some("spec")
        } else {
            immutable_change(&desired, live)
        };
        if let Some(field) = field {
            recreate::<StatefulSet>(ctx, live.as_ref()).await?;
            return Err(Failure::Recreating {
                kind: "StatefulSet",
                name,
                field,
            });
        }
    }
    apply_child(ctx, "StatefulSet", live, &desired).await?;
    Ok(())
}

/// Lets the API server judge a new claim template (a dry-run create of the claim the
/// StatefulSet would make): it does not validate the templates inside a StatefulSet, so a bad
/// one would otherwise only show as pods that never start.
async fn check_claim_template(ctx: &Context, mirror: &ValidMirror) -> Result<(), Failure> {
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
    let name = daemonset_name(&mirror.name);
    let live = Stores::get(&ctx.stores.daemonsets, &settings.namespace, &name);
    if let Some(live) = &live {
        let selector = |ds: &DaemonSet| ds.spec.as_ref().map(|spec| spec.selector.clone());
        let field = if live.metadata.deletion_timestamp.is_some() {
            Some("spec")
        } else if selector(&desired) != selector(live) {
            Some("spec.selector")
        } else {
            None
        };
        if let Some(field) = field {
            recreate::<DaemonSet>(ctx, live.as_ref()).await?;
            return Err(Failure::Recreating {
                kind: "DaemonSet",
                name,
                field,
            });
        }
    }
    apply_child(ctx, "DaemonSet", live, &desired).await?;
    Ok(())
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

fn api<K>(ctx: &Context) -> Api<K>
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
