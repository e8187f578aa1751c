//! The generated TLS Secret of a mirror (when no DOCKER_CERTIFICATE_SECRET is given): its
//! material is decided before anything is applied, so the Secret and the workloads that hash it
//! go out together; a certificate is reissued only for a reason, never for a late cache.

use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::DeleteParams;
use wharf_core::mirror::names::{CA_CERT_KEY, tls_secret_name};
use wharf_core::mirror::{
    AgentTls, SERVER_VALIDITY, TlsMaterial, TlsPlan, ValidMirror, build_tls_secret, content_hash,
    issue, plan_tls, read_material, serving_sans,
};

use crate::children::{api, ensure};
use crate::context::{Context, Stores};
use crate::error::{Failure, is_not_found};
use crate::inputs::TlsInUse;

/// The mirror's generated TLS material, decided before anything is applied so the Secret and
/// the workloads that hash it can be applied together.
pub struct PreparedTls {
    pub in_use: TlsInUse,
    pub recheck_at: SystemTime,
    material: TlsMaterial,
    secret: Secret,
    cached: Option<Arc<Secret>>,
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
    let name = tls_secret_name(&mirror.name);
    let cached = Stores::get(&ctx.stores.secrets, &settings.namespace, &name);
    let live = tls_material_at(ctx, &name, cached.as_deref()).await?;
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
        secret: build_tls_secret(mirror, settings, &material),
        material,
        cached,
    })
}

/// Applies the prepared TLS Secret (kept material may still need it for labels or owner).
pub async fn generated_tls(ctx: &Context, prepared: &PreparedTls) -> Result<(), Failure> {
    if let Some(written) = ensure(ctx, prepared.cached.as_deref(), &prepared.secret).await? {
        let version = written.resource_version().unwrap_or_default();
        ctx.tls_material
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                prepared.in_use.secret_name.clone(),
                (version, prepared.material.clone()),
            );
    }
    Ok(())
}

/// The material in the generated TLS Secret at the cached version: remembered, or read.
/// Without a cached Secret it is read only when this process has known it (the watch may lag
/// behind a write): a certificate must never be reissued because a cache is late.
async fn tls_material_at(
    ctx: &Context,
    name: &str,
    cached: Option<&Secret>,
) -> Result<Option<TlsMaterial>, Failure> {
    {
        let known = ctx.tls_material.lock().unwrap_or_else(|e| e.into_inner());
        match (cached, known.get(name)) {
            (None, None) => return Ok(None),
            (Some(cached), Some((at, material)))
                if cached.resource_version().as_ref() == Some(at) =>
            {
                return Ok(Some(material.clone()));
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
        ctx.tls_material
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                name.to_owned(),
                (
                    secret.resource_version().unwrap_or_default(),
                    material.clone(),
                ),
            );
    }
    Ok(material)
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
