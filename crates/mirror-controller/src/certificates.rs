//! The mirror's generated certificate (when no DOCKER_CERTIFICATE_SECRET is given), kept in its
//! config Secret: the material is decided before anything is applied, so the Secret and the
//! workloads that hash it go out together; a certificate is reissued only for a reason, never
//! for a late cache.

use std::time::SystemTime;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use wharf_core::mirror::names::config_secret_name;
use wharf_core::mirror::{
    AgentCa, SERVER_VALIDITY, TlsMaterial, TlsPlan, ValidMirror, content_hash, issue, plan_tls,
    read_material, serving_sans,
};

use crate::children::api;
use crate::context::{Context, Stores};
use crate::error::Failure;
use crate::inputs::TlsInUse;

/// The mirror's generated TLS material, decided before anything is applied so the config Secret
/// and the workloads that hash it can be applied together.
pub struct PreparedTls {
    pub in_use: TlsInUse,
    pub recheck_at: SystemTime,
    pub material: TlsMaterial,
    /// The config Secret, when it was read to find the material (it need not be read again).
    pub read: Option<Secret>,
}

/// Decides the generated TLS material: the live one while its certificate is good, else a new
/// certificate (with the live CA while that is good) when it is missing, lacks a name (e.g. a
/// new ClusterIP or masquerade host) or nears its end.
pub async fn prepare_generated_tls(
    ctx: &Context,
    mirror: &ValidMirror,
    cluster_ip: Option<&str>,
) -> Result<PreparedTls, Failure> {
    let settings = &ctx.mirror_settings;
    let name = config_secret_name(&mirror.name);
    let cached = Stores::get(&ctx.stores.secrets, &settings.namespace, &name);
    let (live, read) = tls_material_at(ctx, &name, cached.as_deref()).await?;
    let sans = serving_sans(mirror, settings, cluster_ip);
    let now = SystemTime::now();
    let (material, recheck_at) = match plan_tls(live, &sans, now) {
        TlsPlan::Keep {
            material,
            recheck_at,
        } => (material, recheck_at),
        TlsPlan::Issue {
            reusable_ca,
            reason,
        } => {
            tracing::info!(mirror = %mirror.name, reason, "issuing a serving certificate");
            let material = issue(mirror, reusable_ca, &sans, now)?;
            (material, now + SERVER_VALIDITY / 3 * 2)
        }
    };
    Ok(PreparedTls {
        in_use: TlsInUse {
            agent: AgentCa::Inline {
                pem: material.ca.cert_pem.clone(),
            },
            secret_name: name,
            serving_hash: content_hash([
                material.server.cert_pem.as_bytes(),
                material.server.key_pem.as_bytes(),
            ]),
            ca_hash: content_hash([material.ca.cert_pem.as_bytes()]),
        },
        recheck_at,
        material,
        read,
    })
}

/// Remembers that the config Secret holds `material` at the version just written or read, so
/// the next reconcile need not read it back.
pub fn remember(ctx: &Context, secret: &Secret, material: &TlsMaterial) {
    ctx.tls_material
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            secret.name_any(),
            (
                secret.resource_version().unwrap_or_default(),
                material.clone(),
            ),
        );
}

/// The generated material in the config Secret at the cached version: remembered, or read
/// (then the Secret read is returned too).
/// Without a cached Secret it is read only when this process has known it (the watch may lag
/// behind a write): a certificate must never be reissued because a cache is late.
async fn tls_material_at(
    ctx: &Context,
    name: &str,
    cached: Option<&Secret>,
) -> Result<(Option<TlsMaterial>, Option<Secret>), Failure> {
    {
        let known = ctx.tls_material.lock().unwrap_or_else(|e| e.into_inner());
        match (cached, known.get(name)) {
            (None, None) => return Ok((None, None)),
            (Some(cached), Some((at, material)))
                if cached.resource_version().as_ref() == Some(at) =>
            {
                return Ok((Some(material.clone()), None));
            }
            _ => {}
        }
    }
    let secret = api::<Secret>(ctx)
        .get_opt(name)
        .await
        .map_err(Failure::api(format!("reading Secret {name}")))?;
    let material = secret.as_ref().and_then(read_material);
    if let (Some(secret), Some(material)) = (&secret, &material) {
        remember(ctx, secret, material);
    }
    Ok((material, secret))
}
