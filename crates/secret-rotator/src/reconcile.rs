//! One reconcile of a push/pull secret: fetch the registry, the Secret and the accounts → decide
//! (pure) → create an account when rotating → apply the Secret → delete expired accounts → status.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::ObjectRef;
use wharf_core::apply;
use wharf_core::crd::{ImageRegistryAccount, ImageSecretStatus};

use crate::Context;
use crate::account::{self, SecretOwner};
use crate::error::Error;
use crate::kind::ImageSecretKind;
use crate::password;
use crate::registry::{self, RegistryKey};
use crate::schedule::{self, RotationReason};
use crate::secret::{self, Credential, Endpoint, SecretState};
use crate::status::{self, Outcome};

/// Finalizer that removes a CR's accounts (in the registry's namespace, which ownerReferences
/// cannot reach) before the CR goes.
pub const FINALIZER: &str = "wharf.dev/secret-rotator";
/// How soon to look again at a CR whose registry is not usable (watches usually come first).
const RETRY_UNAVAILABLE: std::time::Duration = std::time::Duration::from_secs(30);
/// Account names tried per rotation before giving up (a taken name means a leftover account).
const ACCOUNT_NAME_ATTEMPTS: i64 = 5;

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
    .map_err(|err| Error::Finalizer(Box::new(err)))
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

    let endpoint = match usable_endpoint(&target, ctx).await? {
        Ok(endpoint) => endpoint,
        Err(message) => {
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
    let credential = match write_login(
        cr,
        ctx,
        &owner,
        &target,
        &endpoint,
        &secret_name,
        &own_accounts,
        now,
    )
    .await
    {
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

/// Makes the Secret hold a valid login for `endpoint`, rotating when needed; returns that login.
#[allow(clippy::too_many_arguments)]
async fn write_login<K: ImageSecretKind>(
    cr: &K,
    ctx: &Context,
    owner: &SecretOwner,
    target: &RegistryKey,
    endpoint: &Endpoint,
    secret_name: &str,
    own_accounts: &[Arc<ImageRegistryAccount>],
    now: Timestamp,
) -> Result<Credential, Error> {
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
    let credential = match (reason, state) {
        (None, SecretState::Intact(credential)) => credential,
        (reason, state) => {
            let reason = reason.unwrap_or(RotationReason::SecretEdited);
            let seen = rotations_seen(
                cr.image_secret_status(),
                live.as_ref(),
                &state,
                own_accounts,
            );
            rotate(ctx, owner, target, reason, seen, now).await?
        }
    };
    let desired = secret::build_secret(cr, endpoint, &credential);
    apply::apply_if_changed(&secrets, &ctx.manager, live.as_ref(), &desired)
        .await
        .map_err(|err| {
            Error::kube(
                format!("write Secret {}/{secret_name}", owner.namespace),
                err,
            )
        })?;
    Ok(credential)
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

/// Whether the account a Secret logs in as exists, is this CR's, and has not expired. The store
/// may lag behind an account created moments ago, so a miss is confirmed with a read.
async fn account_is_valid(
    ctx: &Context,
    owner: &SecretOwner,
    credential: &Credential,
    now: Timestamp,
) -> Result<bool, Error> {
    let cached = ctx
        .accounts
        .get(&ObjectRef::new(&credential.username).within(&credential.account_namespace));
    let found = match cached {
        Some(account) => Some(account.as_ref().clone()),
        None => {
            let api: Api<ImageRegistryAccount> =
                Api::namespaced(ctx.client.clone(), &credential.account_namespace);
            api.get_opt(&credential.username).await.map_err(|err| {
                Error::kube(
                    format!(
                        "read ImageRegistryAccount {}/{}",
                        credential.account_namespace, credential.username
                    ),
                    err,
                )
            })?
        }
    };
    Ok(found.is_some_and(|account| {
        owner.owns(&account) && account::expiry_of(&account).is_none_or(|expiry| expiry > now)
    }))
}

/// Generates a password and creates the account of the next rotation. Accounts are created,
/// never overwritten: a taken name (a leftover of an interrupted rotation, or a store that lags)
/// moves on to the next number, so no password anyone holds is ever replaced.
async fn rotate(
    ctx: &Context,
    owner: &SecretOwner,
    target: &RegistryKey,
    reason: RotationReason,
    seen: Vec<i64>,
    now: Timestamp,
) -> Result<Credential, Error> {
    let password = password::generate_password()?;
    let cost = ctx.settings.bcrypt_cost;
    let to_hash = password.clone();
    let hash =
        tokio::task::spawn_blocking(move || password::hash_password(&to_hash, cost)).await??;
    let api: Api<ImageRegistryAccount> = Api::namespaced(ctx.client.clone(), &target.namespace);
    let params = PostParams {
        field_manager: Some(ctx.manager.clone()),
        ..PostParams::default()
    };
    let first = schedule::next_rotation_number(seen);
    let last = first.saturating_add(ACCOUNT_NAME_ATTEMPTS - 1);
    for rotation in first..=last {
        let account = account::build_account(
            owner,
            &target.namespace,
            rotation,
            hash.clone(),
            ctx.settings.secret_ttl,
        );
        let name = account.name_any();
        match api.create(&params, &account).await {
            Ok(_) => {
                ctx.recent_accounts
                    .record(owner, ObjectRef::new(&name).within(&target.namespace));
                tracing::info!(
                    namespace = %owner.namespace, name = %owner.name, mode = owner.mode.as_str(),
                    account = %name, rotation, %reason, "rotated password"
                );
                return Ok(Credential {
                    username: name,
                    password,
                    rotation,
                    rotated_at: now,
                    account_namespace: target.namespace.clone(),
                    registry: target.clone(),
                });
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::debug!(account = %name, "account name taken, trying the next rotation");
            }
            Err(err) => {
                return Err(Error::kube(
                    format!("create ImageRegistryAccount {}/{name}", target.namespace),
                    err,
                ));
            }
        }
    }
    Err(Error::AccountNamesTaken {
        namespace: target.namespace.clone(),
        stem: owner.account_name(0).trim_end_matches(".0").to_owned(),
        last,
    })
}

/// Deletes this CR's expired accounts (never the one `current` logs in as); returns the others.
async fn delete_expired(
    own_accounts: &[Arc<ImageRegistryAccount>],
    current: Option<&Credential>,
    now: Timestamp,
    ctx: &Context,
) -> Result<Vec<Arc<ImageRegistryAccount>>, Error> {
    let mut remaining = Vec::new();
    for account in own_accounts {
        let is_current = current.is_some_and(|c| {
            c.username == account.name_any()
                && Some(c.account_namespace.as_str()) == account.namespace().as_deref()
        });
        let expired = account::expiry_of(account).is_some_and(|expiry| expiry <= now);
        if expired && !is_current {
            delete_account(ctx, account).await?;
        } else {
            remaining.push(account.clone());
        }
    }
    Ok(remaining)
}

/// Deletes one account; one already gone is fine.
async fn delete_account(ctx: &Context, account: &ImageRegistryAccount) -> Result<(), Error> {
    let namespace = account.namespace().unwrap_or_default();
    let name = account.name_any();
    let api: Api<ImageRegistryAccount> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = DeleteParams {
        preconditions: account.uid().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {
            tracing::info!(%namespace, account = %name, "deleted account");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(err) => Err(Error::kube(
            format!("delete ImageRegistryAccount {namespace}/{name}"),
            err,
        )),
    }
}

/// Deleting a CR: remove its own accounts, in every namespace, and nothing else. The store holds
/// them (selected by labels, confirmed by the full back-reference); accounts created moments ago
/// that it may not show yet are remembered by this process.
async fn cleanup<K: ImageSecretKind>(cr: &K, ctx: &Context) -> Result<Action, Error> {
    let owner = SecretOwner::of(cr);
    ctx.written_statuses.remove(&cr.uid().unwrap_or_default());
    let _ = ctx.accounts.wait_until_ready().await;
    let mut targets: Vec<ObjectRef<ImageRegistryAccount>> = ctx
        .accounts
        .state()
        .iter()
        .filter(|account| owner.owns(account))
        .map(|account| ObjectRef::from_obj(account.as_ref()))
        .collect();
    for recent in ctx.recent_accounts.take(&owner) {
        if !targets.contains(&recent) {
            targets.push(recent);
        }
    }
    for account in targets {
        let namespace = account.namespace.clone().unwrap_or_default();
        let api: Api<ImageRegistryAccount> = Api::namespaced(ctx.client.clone(), &namespace);
        match api.delete(&account.name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(%namespace, account = %account.name, "deleted account"),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => {
                return Err(Error::kube(
                    format!("delete ImageRegistryAccount {namespace}/{}", account.name),
                    err,
                ));
            }
        }
    }
    Ok(Action::await_change())
}

/// Writes the status when it differs from the live one; a changed Ready condition that is not
/// True also becomes a Warning Event.
async fn write_status<K: ImageSecretKind>(
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
