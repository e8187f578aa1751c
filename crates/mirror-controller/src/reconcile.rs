//! One reconcile of a RegistryMirror: fetch inputs → validate → build → apply what differs →
//! status. Failures become conditions and Events; nothing a user writes can stop other mirrors.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use wharf_core::crd::RegistryMirror;
use wharf_core::mirror::names::{IMAGESWAP_FINALIZER, config_secret_name};
use wharf_core::mirror::{
    AddressingScheme, HostClaim, SpecProblem, build_config_secret, content_hash,
    masquerade_taken_by, nginx_config, validate,
};
use wharf_core::nginx;

use crate::certificates;
use crate::children;
use crate::context::{Context, Stores};
use crate::error::{Error, Failure};
use crate::imageswap;
use crate::inputs;
use crate::status::{self, Synced};
use crate::stored::{SpecError, StoredMirror};

/// A healthy mirror is looked at again at least this often (drift of unwatched inputs, such
/// as the CA bundle content, is caught by then).
const RESYNC: Duration = Duration::from_secs(6 * 3600);

/// Reconciles one mirror (called by the kube-runtime Controller).
pub async fn reconcile(mirror: Arc<StoredMirror>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.stores.ready().await;
    let _timer = ctx.metrics.reconcile_started();
    let name = mirror.name_any();
    if mirror.meta().deletion_timestamp.is_some() {
        imageswap::finalize(&ctx, &mirror).await?;
        return Ok(Action::await_change());
    }
    let synced = match mirror.typed() {
        Ok(typed) => sync(&typed, &mirror, &ctx).await,
        Err(err) => Err(unreadable(&err)),
    };
    let (outcome, recheck_at) = match synced {
        Ok((synced, recheck_at)) => (Ok(synced), recheck_at),
        Err(failure) => (Err(failure), SystemTime::now()),
    };
    status::write(&ctx, &mirror, &outcome).await?;
    match outcome {
        Ok(_) => {
            ctx.succeeded(&name);
            let until_recheck = recheck_at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::from_secs(1));
            Ok(Action::requeue(
                until_recheck.clamp(Duration::from_secs(1), RESYNC),
            ))
        }
        Err(failure) => {
            ctx.metrics.reconcile_failed(failure.reason());
            let attempt = if failure.is_transient() {
                tracing::warn!(mirror = %name, error = %failure, "reconcile failed");
                ctx.failed_attempt(&name)
            } else {
                tracing::info!(mirror = %name, reason = failure.reason(), message = %failure, "mirror not synced");
                0
            };
            Ok(Action::requeue(failure.retry_after(attempt)))
        }
    }
}

/// Retries a reconcile that ended in an error (writing the status or a finalizer failed).
pub fn error_policy(mirror: Arc<StoredMirror>, error: &Error, ctx: Arc<Context>) -> Action {
    let name = mirror.name_any();
    ctx.metrics.reconcile_failed(error.reason());
    let attempt = ctx.failed_attempt(&name);
    tracing::warn!(mirror = %name, %error, attempt, "reconcile failed; retrying");
    Action::requeue(
        Duration::from_millis(500 * 2u64.pow(attempt.min(7))).min(Duration::from_secs(60)),
    )
}

/// Brings the children in line with the mirror; returns what the status reports and when the
/// certificate needs another look.
async fn sync(
    mirror: &RegistryMirror,
    stored: &StoredMirror,
    ctx: &Context,
) -> Result<(Synced, SystemTime), Failure> {
    let valid = validate(mirror).map_err(|problems| Failure::InvalidSpec { problems })?;
    let mine = HostClaim::of(mirror);
    let others = ctx.stores.mirrors.state();
    let claims = others
        .iter()
        .filter(|other| other.masquerades_as(&mine.host))
        .filter_map(|other| other.host_claim());
    if let Some(other) = masquerade_taken_by(&mine, claims) {
        return Err(Failure::MasqueradeTaken {
            host: valid.masquerade_host,
            other,
        });
    }
    let credentials = inputs::credentials(ctx, &valid).await?;
    let nginx_input = nginx_config(&valid, &ctx.mirror_settings, credentials);
    nginx::validate(&nginx_input)?;
    let user_tls = inputs::certificate_secret(ctx).await?;
    let ca_bundle_hash = inputs::ca_bundle_hash(ctx).await?;

    let rendered = nginx::render(&nginx_input);
    // The certificate names the ClusterIP: the Services come first.
    let cluster_ip = children::services(ctx, &valid).await?;
    let (tls, generated, read_config, recheck_at) = match user_tls {
        Some(user) => (user, None, None, SystemTime::now() + RESYNC),
        None => {
            let prepared =
                certificates::prepare_generated_tls(ctx, &valid, cluster_ip.as_deref()).await?;
            (
                prepared.in_use,
                Some(prepared.material),
                prepared.read,
                prepared.recheck_at,
            )
        }
    };
    let config_secret =
        build_config_secret(&valid, &ctx.mirror_settings, &rendered, generated.as_ref());
    let live_config = Stores::get(
        &ctx.stores.secrets,
        &ctx.settings.namespace,
        &config_secret_name(&valid.name),
    );
    let config_hash = content_hash([
        rendered.as_bytes(),
        tls.serving_hash.as_bytes(),
        ca_bundle_hash.as_deref().unwrap_or_default().as_bytes(),
    ]);
    let apply_config = async {
        let written = match read_config {
            Some(read) => Some(children::ensure_read(ctx, read, &config_secret).await?),
            None => children::ensure(ctx, live_config.as_deref(), &config_secret).await?,
        };
        if let (Some(written), Some(material)) = (&written, &generated) {
            certificates::remember(ctx, written, material);
        }
        Ok(())
    };
    futures::try_join!(
        apply_config,
        children::statefulset(ctx, &valid, &tls.secret_name, &config_hash),
        children::daemonset(ctx, &valid, &tls),
    )?;

    match (ctx.settings.addressing_scheme, cluster_ip.as_deref()) {
        (AddressingScheme::Services, Some(ip)) => {
            imageswap::ensure_line(ctx, stored, &valid.masquerade_host, ip).await?;
        }
        (AddressingScheme::Services, None) => {}
        (AddressingScheme::Hostess, _) => {
            // Left over from services mode: take the line out and let go of the mirror.
            if stored.finalizers().iter().any(|f| f == IMAGESWAP_FINALIZER) {
                imageswap::finalize(ctx, stored).await?;
            }
        }
    }
    Ok((
        Synced {
            cluster_ip,
            masquerade_host: valid.masquerade_host,
        },
        recheck_at,
    ))
}

/// A spec that does not even parse (stored before the CRD had a schema).
fn unreadable(err: &SpecError) -> Failure {
    Failure::InvalidSpec {
        problems: vec![SpecProblem {
            field: "spec",
            message: format!(
                "cannot be read ({err}); make it match the RegistryMirror schema (kubectl explain registrymirror.spec)"
            ),
        }],
    }
}
