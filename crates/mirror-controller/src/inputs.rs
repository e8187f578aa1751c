//! Reading what a mirror depends on besides its spec: the credentials Secret, the shared
//! certificate Secret (DOCKER_CERTIFICATE_SECRET) and the upstream CA bundle ConfigMap.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use wharf_core::mirror::names::{CA_BUNDLE_KEY, CA_CERT_KEY, TLS_CERT_KEY, TLS_KEY_KEY};
use wharf_core::mirror::{AgentCa, ValidMirror, content_hash};

use crate::context::Context;
use crate::error::Failure;

/// The upstream `(username, password)` from the mirror's credentials Secret, if it names one.
/// A missing Secret or key is a failure, never an anonymous mirror.
pub async fn credentials(
    ctx: &Context,
    mirror: &ValidMirror,
) -> Result<Option<(String, String)>, Failure> {
    let Some(name) = &mirror.credentials_secret else {
        return Ok(None);
    };
    let namespace = &ctx.settings.namespace;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = api
        .get_opt(name)
        .await
        .map_err(Failure::api(format!("reading Secret {namespace}/{name}")))?
        .ok_or_else(|| Failure::CredentialsSecretMissing {
            namespace: namespace.clone(),
            name: name.clone(),
        })?;
    let text = |key: &'static str| {
        let value = secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .ok_or_else(|| Failure::CredentialsKeyMissing {
                namespace: namespace.clone(),
                name: name.clone(),
                key,
            })?;
        String::from_utf8(value.0.clone()).map_err(|_| Failure::CredentialsNotText {
            namespace: namespace.clone(),
            name: name.clone(),
            key,
        })
    };
    Ok(Some((text("username")?, text("password")?)))
}

/// The TLS material a mirror's pods use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInUse {
    /// Secret with `tls.crt` and `tls.key`, mounted into the nginx pods.
    pub secret_name: String,
    /// How the node agents get the CA.
    pub agent: AgentCa,
    /// Hash of the serving certificate and key (rolls the nginx pods).
    pub serving_hash: String,
    /// Hash of the CA the nodes install (rolls the agents).
    pub ca_hash: String,
}

/// The Secret named by DOCKER_CERTIFICATE_SECRET, when set: it must exist and hold `tls.crt`
/// and `tls.key`; nodes trust its `ca.crt`, or the certificate itself when it has none.
pub async fn certificate_secret(ctx: &Context) -> Result<Option<TlsInUse>, Failure> {
    let Some(name) = &ctx.settings.docker_certificate_secret else {
        return Ok(None);
    };
    let namespace = &ctx.settings.namespace;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = api
        .get_opt(name)
        .await
        .map_err(Failure::api(format!("reading Secret {namespace}/{name}")))?
        .ok_or_else(|| Failure::CertificateSecretMissing {
            namespace: namespace.clone(),
            name: name.clone(),
        })?;
    let data = secret.data.unwrap_or_default();
    let value = |key: &'static str| {
        data.get(key)
            .filter(|value| !value.0.is_empty())
            .map(|value| value.0.as_slice())
    };
    let require = |key: &'static str| {
        value(key).ok_or_else(|| Failure::CertificateSecretIncomplete {
            namespace: namespace.clone(),
            name: name.clone(),
            key,
        })
    };
    let (cert, key) = (require(TLS_CERT_KEY)?, require(TLS_KEY_KEY)?);
    let (ca_key, ca) = match value(CA_CERT_KEY) {
        Some(ca) => (CA_CERT_KEY, ca),
        None => (TLS_CERT_KEY, cert),
    };
    Ok(Some(TlsInUse {
        secret_name: name.clone(),
        agent: AgentCa::Secret {
            secret_name: name.clone(),
            key: ca_key.into(),
        },
        serving_hash: content_hash([cert, key]),
        ca_hash: content_hash([ca]),
    }))
}

/// A hash of the CA_CERTIFICATE_BUNDLE ConfigMap's bundle, when set (nginx reads it at start).
pub async fn ca_bundle_hash(ctx: &Context) -> Result<Option<String>, Failure> {
    let Some(name) = &ctx.settings.ca_certificate_bundle else {
        return Ok(None);
    };
    let namespace = &ctx.settings.namespace;
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let missing = || Failure::CaBundleMissing {
        namespace: namespace.clone(),
        name: name.clone(),
    };
    let config_map = api
        .get_opt(name)
        .await
        .map_err(Failure::api(format!(
            "reading ConfigMap {namespace}/{name}"
        )))?
        .ok_or_else(missing)?;
    let bundle = config_map
        .data
        .as_ref()
        .and_then(|data| data.get(CA_BUNDLE_KEY))
        .ok_or_else(missing)?;
    Ok(Some(content_hash([bundle.as_bytes()])))
}
