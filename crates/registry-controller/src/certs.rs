//! The two certificates of a registry — serving and token-signing — made, taken or requested
//! (see `wharf_core::registry::certificates`), and the digest of what the pods read from them.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject};
use wharf_core::apply::{apply, is_applied};
use wharf_core::registry::certificates::{
    self as certs, CertificateMode, CertificatePlan, CertificatePurpose, TLS_CERT_KEY, TLS_KEY_KEY,
};
use wharf_core::registry::names;
use wharf_core::tls::CertifiedKey;

use crate::context::Context;
use crate::error::{Failure, is_not_found};

/// Digest used while cert-manager has not written the Secret yet.
pub const PENDING: &str = "pending";

/// A certificate the pods mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInUse {
    pub secret_name: String,
    /// Digest of `tls.crt` and `tls.key` (or [`PENDING`]).
    pub hash: String,
    /// When registry-controller must renew it (self-signed only).
    pub renew_at: Option<SystemTime>,
}

/// One registry's view for certificate work.
pub struct Target<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub owner: OwnerReference,
    pub labels: BTreeMap<String, String>,
}

/// The serving certificate for `dns_names`.
pub async fn serving(
    ctx: &Context,
    target: &Target<'_>,
    plan: &CertificatePlan,
    dns_names: &[String],
    now: SystemTime,
) -> Result<CertInUse, Failure> {
    const FIELD: &str = "spec.tls.secretName";
    match &plan.mode {
        CertificateMode::UserSecret => user_secret(ctx, target, &plan.secret_name, FIELD).await,
        CertificateMode::CertManager(issuer) => {
            let purpose = CertificatePurpose::Serving {
                dns_names: dns_names.to_vec(),
            };
            let certificate = certs::certificate(
                target.namespace,
                &plan.secret_name,
                issuer,
                &purpose,
                &target.labels,
                target.owner.clone(),
            );
            cert_manager(
                ctx,
                target,
                certificate,
                &plan.secret_name,
                "spec.tls.issuerRef",
            )
            .await
        }
        CertificateMode::SelfSigned => {
            let ca_name = names::tls_ca_secret_name(target.name);
            let (ca, ca_renewal) = self_signed_ca(ctx, target, &ca_name, now, |now| {
                certs::new_tls_ca(target.name, target.namespace, now)
            })
            .await?;
            let secrets = secrets(ctx, target);
            let live = read_secret(&secrets, &plan.secret_name).await?;
            let current = live
                .as_ref()
                .and_then(|secret| secret.data.as_ref())
                .and_then(certs::certified_key)
                .filter(|server| certs::server_cert_is_current(server, &ca, dns_names, now));
            let server = match current {
                Some(server) => server,
                None => {
                    tracing::info!(secret = %plan.secret_name, namespace = target.namespace, "issuing a serving certificate");
                    certs::new_server_cert(&ca, dns_names, now)?
                }
            };
            let desired = certs::tls_secret(
                &plan.secret_name,
                target.namespace,
                &server,
                Some(&ca.cert_pem),
                &target.labels,
                target.owner.clone(),
            );
            apply_secret(ctx, &secrets, live.as_ref(), &desired).await?;
            Ok(CertInUse {
                secret_name: plan.secret_name.clone(),
                hash: desired
                    .data
                    .as_ref()
                    .map(certs::material_hash)
                    .unwrap_or_default(),
                renew_at: earliest(ca_renewal, certs::renewal_time(&server.cert_pem)),
            })
        }
    }
}

/// The token-signing CA.
pub async fn token(
    ctx: &Context,
    target: &Target<'_>,
    plan: &CertificatePlan,
    now: SystemTime,
) -> Result<CertInUse, Failure> {
    match &plan.mode {
        CertificateMode::UserSecret => {
            user_secret(ctx, target, &plan.secret_name, "spec.auth.ca.secretName").await
        }
        CertificateMode::CertManager(issuer) => {
            let purpose = CertificatePurpose::TokenCa {
                common_name: format!("{}.{}.svc", target.name, target.namespace),
            };
            let certificate = certs::certificate(
                target.namespace,
                &plan.secret_name,
                issuer,
                &purpose,
                &target.labels,
                target.owner.clone(),
            );
            cert_manager(
                ctx,
                target,
                certificate,
                &plan.secret_name,
                "spec.auth.ca.issuerRef",
            )
            .await
        }
        CertificateMode::SelfSigned => {
            let (ca, renewal) = self_signed_ca(ctx, target, &plan.secret_name, now, |now| {
                certs::new_token_ca(target.name, target.namespace, now)
            })
            .await?;
            let data = secret_data(&ca);
            Ok(CertInUse {
                secret_name: plan.secret_name.clone(),
                hash: certs::material_hash(&data),
                renew_at: renewal,
            })
        }
    }
}

/// Deletes the Certificate a former cert-manager mode left behind (it would keep overwriting the
/// Secret), if it is this registry's.
pub async fn prune_certificate(
    ctx: &Context,
    target: &Target<'_>,
    name: &str,
) -> Result<(), Failure> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        target.namespace,
        &certs::certificate_resource(),
    );
    let live = match api.get_opt(name).await {
        Ok(live) => live,
        // No cert-manager: nothing can be left behind.
        Err(err) if is_not_found(&err) => None,
        Err(source) => {
            return Err(Failure::Api {
                action: format!("read Certificate {name}"),
                source,
            });
        }
    };
    let ours = live.is_some_and(|certificate| {
        certificate
            .metadata
            .owner_references
            .unwrap_or_default()
            .iter()
            .any(|owner| owner.uid == target.owner.uid)
    });
    if ours {
        tracing::info!(
            certificate = name,
            namespace = target.namespace,
            "deleting a Certificate no longer asked for"
        );
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(err) if is_not_found(&err) => {}
            Err(source) => {
                return Err(Failure::Api {
                    action: format!("delete Certificate {name}"),
                    source,
                });
            }
        }
    }
    Ok(())
}

async fn user_secret(
    ctx: &Context,
    target: &Target<'_>,
    name: &str,
    field: &'static str,
) -> Result<CertInUse, Failure> {
    let secret = read_secret(&secrets(ctx, target), name)
        .await?
        .ok_or_else(|| Failure::MissingSecret {
            field,
            name: name.to_owned(),
        })?;
    let data = secret.data.unwrap_or_default();
    for key in [TLS_CERT_KEY, TLS_KEY_KEY] {
        if !data.contains_key(key) {
            return Err(Failure::IncompleteSecret {
                field,
                name: name.to_owned(),
                key,
            });
        }
    }
    Ok(CertInUse {
        secret_name: name.to_owned(),
        hash: certs::material_hash(&data),
        renew_at: None,
    })
}

async fn cert_manager(
    ctx: &Context,
    target: &Target<'_>,
    desired: DynamicObject,
    secret_name: &str,
    field: &'static str,
) -> Result<CertInUse, Failure> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        target.namespace,
        &certs::certificate_resource(),
    );
    let name = desired.metadata.name.clone().unwrap_or_default();
    let live = match api.get_opt(&name).await {
        Ok(live) => live,
        Err(err) if is_not_found(&err) => None,
        Err(source) => {
            return Err(Failure::Api {
                action: format!("read Certificate {name}"),
                source,
            });
        }
    };
    if !live
        .as_ref()
        .is_some_and(|live| is_applied(&desired, live, &ctx.manager))
    {
        match apply(&api, &ctx.manager, &desired).await {
            Ok(_) => {}
            Err(err) if is_not_found(&err) => return Err(Failure::NoCertManager { field }),
            Err(err) => {
                return Err(Failure::api(
                    format!("apply Certificate {name}"),
                    format!("Certificate {name}"),
                )(err));
            }
        }
    }
    // cert-manager writes the Secret; until then the pods wait for it.
    let hash = read_secret(&secrets(ctx, target), secret_name)
        .await?
        .and_then(|secret| secret.data)
        .filter(|data| data.contains_key(TLS_CERT_KEY) && data.contains_key(TLS_KEY_KEY))
        .map_or_else(|| PENDING.to_owned(), |data| certs::material_hash(&data));
    Ok(CertInUse {
        secret_name: secret_name.to_owned(),
        hash,
        renew_at: None,
    })
}

/// The self-signed CA in Secret `name`: kept while current, else made anew and stored.
async fn self_signed_ca(
    ctx: &Context,
    target: &Target<'_>,
    name: &str,
    now: SystemTime,
    generate: impl FnOnce(SystemTime) -> Result<CertifiedKey, wharf_core::tls::TlsError>,
) -> Result<(CertifiedKey, Option<SystemTime>), Failure> {
    let secrets = secrets(ctx, target);
    let live = read_secret(&secrets, name).await?;
    let current = live
        .as_ref()
        .and_then(|secret| secret.data.as_ref())
        .and_then(certs::certified_key)
        .filter(|ca| certs::ca_is_current(ca, now));
    let ca = match current {
        Some(ca) => ca,
        None => {
            tracing::info!(
                secret = name,
                namespace = target.namespace,
                "making a self-signed CA"
            );
            generate(now)?
        }
    };
    let desired = certs::tls_secret(
        name,
        target.namespace,
        &ca,
        Some(&ca.cert_pem),
        &target.labels,
        target.owner.clone(),
    );
    apply_secret(ctx, &secrets, live.as_ref(), &desired).await?;
    let renewal = certs::renewal_time(&ca.cert_pem);
    Ok((ca, renewal))
}

fn secret_data(key: &CertifiedKey) -> BTreeMap<String, ByteString> {
    BTreeMap::from([
        (
            TLS_CERT_KEY.to_owned(),
            ByteString(key.cert_pem.clone().into_bytes()),
        ),
        (
            TLS_KEY_KEY.to_owned(),
            ByteString(key.key_pem.clone().into_bytes()),
        ),
    ])
}

fn secrets(ctx: &Context, target: &Target<'_>) -> Api<Secret> {
    Api::namespaced(ctx.client.clone(), target.namespace)
}

async fn read_secret(api: &Api<Secret>, name: &str) -> Result<Option<Secret>, Failure> {
    api.get_opt(name).await.map_err(|source| Failure::Api {
        action: format!("read Secret {name}"),
        source,
    })
}

async fn apply_secret(
    ctx: &Context,
    api: &Api<Secret>,
    live: Option<&Secret>,
    desired: &Secret,
) -> Result<(), Failure> {
    if live.is_some_and(|live| is_applied(desired, live, &ctx.manager)) {
        return Ok(());
    }
    let name = desired.metadata.name.clone().unwrap_or_default();
    apply(api, &ctx.manager, desired)
        .await
        .map(drop)
        .map_err(Failure::api(
            format!("apply Secret {name}"),
            format!("Secret {name}"),
        ))
}

fn earliest(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_earliest_renewal_wins() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let later = t + Duration::from_secs(1);
        assert_eq!(earliest(Some(later), Some(t)), Some(t));
        assert_eq!(earliest(None, Some(t)), Some(t));
        assert_eq!(earliest(Some(t), None), Some(t));
        assert_eq!(earliest(None, None), None);
    }
}
