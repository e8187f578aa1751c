//! The accounts of a CR against the API: creating the account of a rotation, checking the one
//! the Secret logs in as, deleting expired ones, and deleting them all with the CR.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use wharf_core::crd::ImageRegistryAccount;

use crate::Context;
use crate::account::{self, SecretOwner};
use crate::error::Error;
use crate::kind::ImageSecretKind;
use crate::password;
use crate::registry::RegistryKey;
use crate::schedule::{self, RotationReason};
use crate::secret::Credential;

/// Account names tried per rotation before giving up (a taken name means a leftover account).
const ACCOUNT_NAME_ATTEMPTS: i64 = 5;

/// Whether the account a Secret logs in as exists, is this CR's, and has not expired. The store
/// may lag behind an account created moments ago, so a miss is confirmed with a read.
pub(crate) async fn account_is_valid(
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
pub(crate) async fn rotate(
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
pub(crate) async fn delete_expired(
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
pub(crate) async fn cleanup<K: ImageSecretKind>(cr: &K, ctx: &Context) -> Result<Action, Error> {
    let owner = SecretOwner::of(cr);
    let uid = cr.uid().unwrap_or_default();
    ctx.written_statuses.remove(&uid);
    ctx.unwritten_logins.remove(&uid);
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
