//! The config Secret `registry-mirror-<n>-secret` (the nginx config under `default.conf`, and the
//! generated TLS material), the renderer's input, and the hash that rolls pods when something
//! they read at start changes.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use sha2::{Digest, Sha256};

use super::names::{NGINX_CONFIG_KEY, config_secret_name};
use super::tls::{TlsMaterial, tls_data};
use super::{MirrorSettings, ValidMirror, child_metadata};
use crate::nginx::{MirrorNginxConfig, NginxPaths};

/// The renderer's input for a mirror pod.
pub fn nginx_config(
    mirror: &ValidMirror,
    settings: &MirrorSettings,
    credentials: Option<(String, String)>,
) -> MirrorNginxConfig {
    MirrorNginxConfig {
        upstream: mirror.upstream.clone(),
        masquerade_host: mirror.masquerade_host.clone(),
        upstream_credentials: credentials,
        cache_max_size_bytes: mirror.cache_max_size_bytes,
        tag_ttl_seconds: mirror.tag_ttl_seconds,
        extra_upstream_ca_bundle: settings.ca_bundle_config_map.is_some(),
        paths: NginxPaths::in_pod(),
    }
}

/// Secret `registry-mirror-<n>-secret` holding the rendered config under `default.conf` and,
/// unless DOCKER_CERTIFICATE_SECRET provides the certificate, the generated TLS material. (One
/// Secret rather than two: 500 mirrors are 500 fewer writes; only the mirror's own pods mount it.)
pub fn build_config_secret(
    mirror: &ValidMirror,
    settings: &MirrorSettings,
    rendered: &str,
    generated_tls: Option<&TlsMaterial>,
) -> Secret {
    let mut data = generated_tls.map(tls_data).unwrap_or_default();
    data.insert(
        NGINX_CONFIG_KEY.into(),
        ByteString(rendered.as_bytes().to_vec()),
    );
    Secret {
        metadata: child_metadata(mirror, settings, config_secret_name(&mirror.name)),
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    }
}

/// A short, stable hash of several inputs (each length-prefixed, so `["ab", "c"]` and
/// `["a", "bc"]` differ), for the pod-template annotation.
pub fn content_hash<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .take(16)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::test_support::{settings, valid_mirror};

    #[test]
    fn the_config_secret_holds_default_conf() {
        let secret = build_config_secret(&valid_mirror("docker"), &settings(), "events {}\n", None);
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("registry-mirror-docker-secret")
        );
        assert_eq!(secret.metadata.namespace.as_deref(), Some("mirrors"));
        let data = secret.data.expect("data");
        assert_eq!(data["default.conf"].0, b"events {}\n");
        assert_eq!(data.len(), 1, "no TLS keys without generated material");
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    }

    #[test]
    fn generated_tls_material_sits_beside_default_conf() {
        let mirror = valid_mirror("docker");
        let sans = vec!["registry-mirror-docker".to_owned()];
        let material = crate::mirror::issue(&mirror, None, &sans, std::time::SystemTime::now())
            .expect("issued");
        let secret = build_config_secret(&mirror, &settings(), "events {}\n", Some(&material));
        let data = secret.data.as_ref().expect("data");
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["ca.crt", "ca.key", "default.conf", "tls.crt", "tls.key"]
        );
        assert_eq!(crate::mirror::read_material(&secret), Some(material));
    }

    #[test]
    fn the_renderer_input_comes_from_the_mirror_and_settings() {
        let mut settings = settings();
        settings.ca_bundle_config_map = Some("corp-ca".into());
        let mirror = valid_mirror("docker");
        let config = nginx_config(&mirror, &settings, Some(("u".into(), "p".into())));
        assert_eq!(config.upstream, "hub.docker.io");
        assert_eq!(config.masquerade_host, "mirror-hub.docker.io");
        assert_eq!(config.cache_max_size_bytes, mirror.cache_max_size_bytes);
        assert!(config.extra_upstream_ca_bundle);
        assert_eq!(config.upstream_credentials, Some(("u".into(), "p".into())));
        assert_eq!(config.paths, NginxPaths::in_pod());
        assert_eq!(config.tag_ttl_seconds, 60);
    }

    #[test]
    fn hashes_are_stable_and_separate_parts() {
        let a = content_hash([b"ab".as_slice(), b"c".as_slice()]);
        let b = content_hash([b"a".as_slice(), b"bc".as_slice()]);
        assert_ne!(a, b);
        assert_eq!(a, content_hash([b"ab".as_slice(), b"c".as_slice()]));
        assert_eq!(a.len(), 32);
    }
}
