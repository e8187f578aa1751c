//! One reconcile of a push/pull secret: fetch the registry, the Secret and the accounts → decide
//! (pure) → create an account when rotating → apply the Secret → delete expired accounts → status.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::ObjectRef;
use wharf_core::apply;
use wharf_core::crd::{ImageRegistryAccount, ImageSecretStatus};

use crate::Context;
use crate::account::{self, SecretOwner};
use crate::account_api::{account_is_valid, cleanup, delete_expired, rotate};
use crate::error::Error;
use crate::kind::ImageSecretKind;
use crate::registry::{self, RegistryKey};
use crate::report::write_status;
use crate::schedule::{self, RotationReason};
use crate::secret::{self, Credential, Endpoint, SecretState};
use crate::status::Outcome;

/// Finalizer that removes a CR's accounts (in the registry's namespace, which ownerReferences
/// cannot reach) before the CR goes.
pub const FINALIZER: &str = "wharf.dev/secret-rotator";
/// How soon to look again at a CR whose registry is not usable (watches usually come first).
const RETRY_UNAVAILABLE: std::time::Duration = std::time::Duration::from_secs(30);

/// Entry point of the controller for one CR.
pub async fn reconcile<K: ImageSecretKind>(cr: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    let namespace = cr.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, cr, |event| async {
        match event {
            finalizer::Event::Apply(cr) => sync(&*cr, &ctx).await,
            finalizer::Event::Cleanup(cr) => cleanup(&*cr, &ctx).await,
        }
    })
    .await
    .or_else(|err| match err {
        // A second cleanup of a CR whose finalizer is already gone (an account deletion can
        // trigger one): nothing left to do.
        finalizer::Error::RemoveFinalizer(kube::Error::Api(status))
            if status.code == 404 || status.code == 422 =>
        {
            Ok(Action::await_change())
        }
        err => Err(Error::Finalizer(Box::new(err))),
    })
}

/// The current time to the second (what creation timestamps and rotationDate can hold).
fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now())
}

async fn sync<K: ImageSecretKind>(cr: &K, ctx: &Context) -> Result<Action, Error> {
    let now = now();
    let owner = SecretOwner::of(cr);
    let target = registry::resolve(
        &owner.namespace,
        cr.registry_ref(),
        &ctx.settings.default_registry,
    );
    // A store still listing would make every registry look absent.
    let _ = ctx.registries.wait_until_ready().await;
    let _ = ctx.accounts.wait_until_ready().await;
    let own_accounts: Vec<Arc<ImageRegistryAccount>> = ctx
        .accounts
        .state()
        .into_iter()
        .filter(|account| owner.owns(account))
        .collect();

    let endpoint = match usable_endpoint(&target, ctx).await {
        Ok(Ok(endpoint)) => endpoint,
        Err(err) => {
            let outcome = Outcome::FailedSync(err.to_string());
            write_status(cr, ctx, &target, None, &outcome, now).await?;
            return Err(err);
        }
        Ok(Err(message)) => {
            let remaining = delete_expired(&own_accounts, None, now, ctx).await?;
            write_status(
                cr,
                ctx,
                &target,
                None,
                &Outcome::RegistryUnavailable(message),
                now,
            )
            .await?;
            let next = schedule::requeue_after(
                now,
                remaining.iter().filter_map(|a| account::expiry_of(a)),
            );
            return Ok(Action::requeue(next.min(RETRY_UNAVAILABLE)));
        }
    };

    let secret_name = crate::names::secret_name(owner.mode, &owner.name);
    let inputs = LoginInputs {
        owner: &owner,
        target: &target,
        endpoint: &endpoint,
        secret_name: &secret_name,
        own_accounts: &own_accounts,
        now,
    };
    let credential = match write_login(cr, ctx, &inputs).await {
        Ok(credential) => credential,
        Err(err) => {
            let outcome = Outcome::FailedSync(err.to_string());
            write_status(cr, ctx, &target, None, &outcome, now).await?;
            return Err(err);
        }
    };

    let remaining = delete_expired(&own_accounts, Some(&credential), now, ctx).await?;
    let outcome = Outcome::Synced { secret_name };
    write_status(cr, ctx, &target, Some(&credential), &outcome, now).await?;
    let next_rotation =
        schedule::next_rotation(credential.rotated_at, ctx.settings.rotation_interval);
    let expiries = remaining.iter().filter_map(|a| account::expiry_of(a));
    Ok(Action::requeue(schedule::requeue_after(
        now,
        std::iter::once(next_rotation).chain(expiries),
    )))
}

/// The registry's hostname and CA, or (inner Err) why the registry cannot be used yet.
async fn usable_endpoint(
    target: &RegistryKey,
    ctx: &Context,
) -> Result<Result<Endpoint, String>, Error> {
    let found = ctx
        .registries
        .get(&ObjectRef::new(&target.name).within(&target.namespace));
    let ready = match registry::ready_registry(target, found.as_deref()) {
        Ok(ready) => ready,
        Err(message) => return Ok(Err(message)),
    };
    let ca_certificate = match &ready.tls_secret_name {
        None => String::new(),
        Some(name) => {
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &target.namespace);
            let tls = secrets.get_opt(name).await.map_err(|err| {
                Error::kube(
                    format!("read the TLS Secret {}/{name}", target.namespace),
                    err,
                )
            })?;
            match registry::ca_certificate(target, name, tls.as_ref()) {
                Ok(ca) => ca,
                Err(message) => return Ok(Err(message)),
            }
        }
    };
    Ok(Ok(Endpoint {
        hostname: ready.hostname,
        ca_certificate,
    }))
}

/// What a reconcile knows once the registry is usable.
struct LoginInputs<'a> {
    owner: &'a SecretOwner,
    target: &'a RegistryKey,
    endpoint: &'a Endpoint,
    secret_name: &'a str,
    /// This CR's accounts as the store shows them.
    own_accounts: &'a [Arc<ImageRegistryAccount>],
    now: Timestamp,
}

/// Makes the Secret hold a valid login for the endpoint, rotating when needed; returns that login.
async fn write_login<K: ImageSecretKind>(
    cr: &K,
    ctx: &Context,
    inputs: &LoginInputs<'_>,
) -> Result<Credential, Error> {
    let &LoginInputs {
        owner,
        target,
        endpoint,
        secret_name,
        own_accounts,
        now,
    } = inputs;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let live = secrets.get_opt(secret_name).await.map_err(|err| {
        Error::kube(
            format!("read Secret {}/{secret_name}", owner.namespace),
            err,
        )
    })?;
    let state = secret::read_secret(owner.mode, live.as_ref());
    let account_valid = match &state {
        SecretState::Intact(credential) => account_is_valid(ctx, owner, credential, now).await?,
        _ => false,
    };
    let reason = schedule::rotation_reason(
        &state,
        target,
        account_valid,
        now,
        ctx.settings.rotation_interval,
    );
    let uid = cr.uid().unwrap_or_default();
    let credential = match (reason, state) {
        (None, SecretState::Intact(credential)) => credential,
        (reason, state) => {
            let reason = reason.unwrap_or(RotationReason::SecretEdited);
            match unwritten_login(ctx, owner, &uid, target, now).await? {
                Some(credential) => credential,
                None => {
                    let seen = rotations_seen(
                        cr.image_secret_status(),
                        live.as_ref(),
                        &state,
                        own_accounts,
                    );
                    rotate(ctx, owner, target, reason, seen, now).await?
                }
            }
        }
    };
    let desired = secret::build_secret(cr, endpoint, &credential);
    let written = apply::apply_if_changed(&secrets, &ctx.manager, live.as_ref(), &desired).await;
    if let Err(err) = written {
        // Keep the login for the next attempt rather than creating an account per retry.
        ctx.unwritten_logins.insert(uid, credential);
        return Err(Error::kube(
            format!("write Secret {}/{secret_name}", owner.namespace),
            err,
        ));
    }
    ctx.unwritten_logins.remove(&uid);
    Ok(credential)
}

/// A login created by an earlier attempt whose Secret could not be written, if it is still
/// usable here: same registry, not due for rotation, its account still valid.
async fn unwritten_login(
    ctx: &Context,
    owner: &SecretOwner,
    uid: &str,
    target: &RegistryKey,
    now: Timestamp,
) -> Result<Option<Credential>, Error> {
    let Some(credential) = ctx.unwritten_logins.get(uid) else {
        return Ok(None);
    };
    let fresh = credential.registry == *target
        && now < schedule::next_rotation(credential.rotated_at, ctx.settings.rotation_interval);
    if fresh && account_is_valid(ctx, owner, &credential, now).await? {
        Ok(Some(credential))
    } else {
        ctx.unwritten_logins.remove(uid);
        Ok(None)
    }
}

/// Every rotation number this CR has used, so a new one never reuses an account name.
fn rotations_seen(
    status: Option<&ImageSecretStatus>,
    live: Option<&Secret>,
    state: &SecretState,
    own_accounts: &[Arc<ImageRegistryAccount>],
) -> Vec<i64> {
    let annotated = live
        .and_then(|s| s.annotations().get(secret::ROTATION_ANNOTATION))
        .and_then(|value| value.parse().ok());
    let intact = match state {
        SecretState::Intact(credential) => Some(credential.rotation),
        _ => None,
    };
    status
        .and_then(|s| s.rotation)
        .into_iter()
        .chain(annotated)
        .chain(intact)
        .chain(own_accounts.iter().filter_map(|a| account::rotation_of(a)))
        .collect()
}
