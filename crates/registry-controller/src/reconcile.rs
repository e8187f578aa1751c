//! One reconcile of an ImageRegistry: validate, certificates, config, children, prune, status.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wharf_core::apply::{apply, apply_status, is_applied};
use wharf_core::crd::ImageRegistry;
use wharf_core::registry::access::AccessPolicy;
use wharf_core::registry::certificates::{self as plans, CertificateMode};
use wharf_core::registry::workload::{self, HTTP_SECRET_KEY, Workload};
use wharf_core::registry::{labels, names, rbac};

use crate::certs::{self, Target};
use crate::context::Context;
use crate::error::Failure;
use crate::status::{Rollout, next_status, rollout};

/// Longest a healthy registry waits before it is looked at again (certificates, drift).
const RECHECK: Duration = Duration::from_secs(3600);

/// What a successful sync leaves behind.
struct Synced {
    rollout: Rollout,
    recheck: Duration,
}

/// Reconciles one ImageRegistry; errors are reported on its status and as Events, never returned.
pub async fn reconcile(
    registry: Arc<ImageRegistry>,
    ctx: Arc<Context>,
) -> Result<Action, kube::Error> {
    if registry.metadata.deletion_timestamp.is_some() {
        // Kubernetes deletes the owned children; re-applying them would fight the collector.
        return Ok(Action::await_change());
    }
    let _timer = ctx.metrics.reconcile_started();
    let namespace = registry.namespace().unwrap_or_default();
    let name = registry.name_any();
    let key = format!("{namespace}/{name}");
    let hostname = names::hostname(&name, &namespace, &ctx.settings.dns_zone);
    let tls_secret = plans::tls_plan(&name, &registry.spec).secret_name;
    let outcome = sync(&registry, &ctx, &name, &namespace, &hostname).await;

    let reported = match &outcome {
        Ok(synced) => Ok(synced.rollout),
        Err(failure) => Err((failure.reason(), failure.to_string())),
    };
    let status = next_status(
        registry.status.as_ref(),
        registry.metadata.generation,
        &hostname,
        &tls_secret,
        reported,
        Timestamp::now(),
    );
    if registry.status.as_ref() != Some(&status) {
        let api: Api<ImageRegistry> = Api::namespaced(ctx.client.clone(), &namespace);
        if let Err(err) = apply_status(&api, &ctx.manager, &name, &status).await {
            tracing::warn!(registry = %key, %err, "cannot write the status");
        }
    }
    match outcome {
        Ok(synced) => {
            ctx.succeeded(&key);
            Ok(Action::requeue(synced.recheck))
        }
        Err(failure) => {
            let attempt = ctx.failed_attempt(&key);
            ctx.metrics.reconcile_failed(failure.reason());
            tracing::warn!(registry = %key, reason = failure.reason(), error = %failure, "reconcile failed");
            ctx.warn(&registry, failure.reason(), failure.to_string())
                .await;
            Ok(Action::requeue(failure.retry_after(attempt)))
        }
    }
}

/// Errors never reach the controller's policy (reconcile reports them); kept for its signature.
pub fn error_policy(
    _registry: Arc<ImageRegistry>,
    _error: &kube::Error,
    _ctx: Arc<Context>,
) -> Action {
    Action::requeue(Duration::from_secs(30))
}

async fn sync(
    registry: &ImageRegistry,
    ctx: &Context,
    name: &str,
    namespace: &str,
    hostname: &str,
) -> Result<Synced, Failure> {
    validate(name, registry)?;
    let owner = registry.controller_owner_ref(&()).ok_or_else(|| {
        Failure::InvalidSpec("the ImageRegistry has no uid yet; it will be retried".into())
    })?;
    let target = Target {
        name,
        namespace,
        owner: owner.clone(),
        labels: labels::labels(name),
    };
    let now = SystemTime::now();
    let dns_names = names::tls_dns_names(name, namespace, &ctx.settings.dns_zone);
    let tls_plan = plans::tls_plan(name, &registry.spec);
    let token_plan = plans::token_plan(name, &registry.spec);
    let tls = certs::serving(ctx, &target, &tls_plan, &dns_names, now).await?;
    let token = certs::token(ctx, &target, &token_plan, now).await?;
    for (plan, default) in [
        (&tls_plan, names::tls_secret_name(name)),
        (&token_plan, names::token_ca_secret_name(name)),
    ] {
        if !matches!(plan.mode, CertificateMode::CertManager(_)) {
            certs::prune_certificate(ctx, &target, &default).await?;
        }
    }

    let mut workload = Workload {
        name,
        namespace,
        spec: &registry.spec,
        hostname,
        owner: owner.clone(),
        registry_image: &ctx.settings.registry_image,
        auth_image: &ctx.settings.auth_image,
        tls_secret: &tls.secret_name,
        token_secret: &token.secret_name,
        tls_hash: &tls.hash,
        token_hash: &token.hash,
        config_hash: "",
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let config_name = names::config_secret_name(name);
    let live_config = secrets
        .get_opt(&config_name)
        .await
        .map_err(|source| Failure::Api {
            action: format!("read Secret {config_name}"),
            source,
        })?;
    let http_secret = live_config
        .as_ref()
        .and_then(|secret| secret.data.as_ref())
        .and_then(|data| data.get(HTTP_SECRET_KEY))
        .and_then(|value| String::from_utf8(value.0.clone()).ok())
        .filter(|value| !value.is_empty())
        .unwrap_or_else(new_http_secret);
    let config_yml = workload::render_config(&workload, &http_secret);
    let config_hash = plans::text_hash(&config_yml);
    workload.config_hash = &config_hash;
    let config = workload::config_secret(&workload, &config_yml, &http_secret);
    apply_child(ctx, &secrets, live_config.as_ref(), &config).await?;

    let rbac = rbac::build(name, namespace, &target.labels, Some(owner));
    apply_new::<ServiceAccount>(ctx, namespace, &rbac.service_account).await?;
    apply_new::<Role>(ctx, namespace, &rbac.role).await?;
    apply_new::<RoleBinding>(ctx, namespace, &rbac.role_binding).await?;
    apply_new::<PersistentVolumeClaim>(ctx, namespace, &workload::pvc(&workload)).await?;
    apply_new::<Service>(ctx, namespace, &workload::service(&workload)).await?;
    let statefulset =
        apply_new::<StatefulSet>(ctx, namespace, &workload::statefulset(&workload)).await?;

    let recheck = [tls.renew_at, token.renew_at]
        .into_iter()
        .flatten()
        .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO))
        .fold(RECHECK, Duration::min)
        .max(Duration::from_secs(1));
    Ok(Synced {
        rollout: rollout(&statefulset, registry.spec.effective_replicas()),
        recheck,
    })
}

/// What must hold before anything is applied.
fn validate(name: &str, registry: &ImageRegistry) -> Result<(), Failure> {
    // The name is the Service's (a DNS label) and prefixes pod names and their revision labels.
    let is_label = name.len() <= 52
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !is_label {
        return Err(Failure::InvalidSpec(format!(
            "the ImageRegistry name {name:?} cannot name its Service and StatefulSet: use at most 52 lowercase letters, digits and '-', starting with a letter"
        )));
    }
    if let Err(errors) = AccessPolicy::validate(registry.spec.auth.as_ref()) {
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(Failure::InvalidSpec(format!(
            "invalid access rules: {}",
            messages.join("; ")
        )));
    }
    Ok(())
}

fn new_http_secret() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Applies `desired` unless the live object (read here) already holds it; returns the live object.
async fn apply_new<K>(ctx: &Context, namespace: &str, desired: &K) -> Result<K, Failure>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let name = desired.meta().name.clone().unwrap_or_default();
    let kind = K::kind(&());
    let live = api.get_opt(&name).await.map_err(|source| Failure::Api {
        action: format!("read {kind} {name}"),
        source,
    })?;
    apply_child(ctx, &api, live.as_ref(), desired).await
}

async fn apply_child<K>(
    ctx: &Context,
    api: &Api<K>,
    live: Option<&K>,
    desired: &K,
) -> Result<K, Failure>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Serialize + DeserializeOwned,
{
    if let Some(live) = live
        && is_applied(desired, live, &ctx.manager)
    {
        return Ok(live.clone());
    }
    let name = desired.meta().name.clone().unwrap_or_default();
    let kind = K::kind(&());
    tracing::info!(%kind, %name, "applying");
    apply(api, &ctx.manager, desired)
        .await
        .map_err(Failure::api(
            format!("apply {kind} {name}"),
            format!("{kind} {name}"),
        ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_core::crd::{AccessRule, AuthSpec, ImageRegistrySpec, RegistryAction};

    fn registry(auth: Option<AuthSpec>) -> ImageRegistry {
        ImageRegistry::new(
            "registry",
            ImageRegistrySpec {
                auth,
                ..ImageRegistrySpec::default()
            },
        )
    }

    #[test]
    fn names_that_cannot_name_a_service_are_refused() {
        assert!(validate("registry", &registry(None)).is_ok());
        for bad in ["has.dot", "9starts-with-digit", &"x".repeat(53), "ends-"] {
            let err = validate(bad, &registry(None)).expect_err(bad);
            assert!(err.to_string().contains("at most 52"), "{err}");
        }
    }

    #[test]
    fn invalid_rules_are_refused_with_their_position() {
        let auth = AuthSpec {
            rules: vec![AccessRule {
                repositories: vec!["${nope}".into()],
                actions: vec![RegistryAction::Pull],
                ..AccessRule::default()
            }],
            ..AuthSpec::default()
        };
        let err = validate("registry", &registry(Some(auth))).expect_err("invalid");
        assert_eq!(err.reason(), "InvalidSpec");
        assert!(
            err.to_string()
                .contains("spec.auth.rules[0].repositories[0]"),
            "{err}"
        );
    }

    #[test]
    fn http_secrets_are_random() {
        assert_ne!(new_http_secret(), new_http_secret());
        assert_eq!(new_http_secret().len(), 32);
    }
}
