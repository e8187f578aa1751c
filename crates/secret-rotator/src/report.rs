//! What a reconcile reports: the status (written only when it changed) and a Warning Event when
//! the CR stops being Ready.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::events::{Event, EventType};
use wharf_core::apply;
use wharf_core::crd::ImageSecretStatus;

use crate::Context;
use crate::error::Error;
use crate::kind::ImageSecretKind;
use crate::registry::RegistryKey;
use crate::secret::Credential;
use crate::status::{self, Outcome};

/// Writes the status when it differs from the live one; a changed Ready condition that is not
/// True also becomes a Warning Event.
pub(crate) async fn write_status<K: ImageSecretKind>(
    cr: &K,
    ctx: &Context,
    target: &RegistryKey,
    credential: Option<&Credential>,
    outcome: &Outcome,
    now: Timestamp,
) -> Result<(), Error> {
    let uid = cr.uid().unwrap_or_default();
    let remembered = ctx.written_statuses.get(&uid);
    let previous = remembered.as_ref().or(cr.image_secret_status());
    let desired = status::desired_status(
        cr.meta().generation,
        previous,
        target,
        credential,
        outcome,
        now,
    );
    if previous == Some(&desired) {
        return Ok(());
    }
    let namespace = cr.namespace().unwrap_or_default();
    let name = cr.name_any();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    apply::apply_status(&api, &ctx.manager, &name, &desired)
        .await
        .map_err(|err| Error::kube(format!("write the status of {namespace}/{name}"), err))?;
    ctx.written_statuses.insert(uid, desired.clone());
    let ready_changed = |s: Option<&ImageSecretStatus>| {
        s.and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == wharf_core::conditions::READY)
        })
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let (reason, message) = match outcome {
        Outcome::Synced { .. } => return Ok(()),
        Outcome::RegistryUnavailable(message) => (status::REASON_REGISTRY_UNAVAILABLE, message),
        Outcome::FailedSync(message) => (status::REASON_FAILED_SYNC, message),
    };
    if ready_changed(previous) != ready_changed(Some(&desired)) {
        publish_warning(ctx, cr, reason, message).await;
    }
    Ok(())
}

/// Records a Warning Event on the CR; failing to do so is only logged.
async fn publish_warning<K: ImageSecretKind>(ctx: &Context, cr: &K, reason: &str, message: &str) {
    let event = Event {
        type_: EventType::Warning,
        reason: reason.to_owned(),
        note: Some(message.chars().take(1000).collect()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &cr.object_ref(&())).await {
        tracing::warn!(%err, name = %cr.name_any(), "cannot publish an Event");
    }
}
