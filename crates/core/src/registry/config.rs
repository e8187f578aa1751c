//! The distribution registry's `config.yml` for an ImageRegistry: filesystem storage, TLS, and
//! token authentication against registry-auth (realm, issuer, service, root cert bundle).

use serde_json::json;

/// Everything the registry's configuration depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Listen address, e.g. `:5000`.
    pub listen_addr: String,
    /// Image store directory (the PVC's mount).
    pub storage_dir: String,
    /// Serving certificate chain and key files; plain HTTP when None.
    pub tls: Option<(String, String)>,
    /// Where clients get tokens (`https://<host>:5001/auth/token`).
    pub realm: String,
    /// Token `iss` the registry accepts.
    pub issuer: String,
    /// Token `aud` the registry accepts, and the service name its challenge announces.
    pub service: String,
    /// PEM file of the certificates token signatures must chain to (the token CA).
    pub root_cert_bundle: String,
    /// Shared secret of every replica for signing upload state.
    pub http_secret: String,
}

/// Renders `config.yml` (YAML, stable key order).
pub fn render(config: &RegistryConfig) -> String {
    let mut http = json!({
        "addr": config.listen_addr,
        "secret": config.http_secret,
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    });
    if let Some((certificate, key)) = &config.tls {
        http["tls"] = json!({"certificate": certificate, "key": key});
    }
    let document = json!({
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": config.storage_dir},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": http,
        "auth": {
            "token": {
                "realm": config.realm,
                "service": config.service,
                "issuer": config.issuer,
                "rootcertbundle": config.root_cert_bundle,
            }
        },
        "health": {"storagedriver": {"enabled": true, "interval": "10s", "threshold": 3}},
    });
    // A JSON value always serializes to YAML; the fallback is never used.
    serde_yaml::to_string(&document).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tls: bool) -> RegistryConfig {
        RegistryConfig {
            listen_addr: ":5000".into(),
            storage_dir: "/var/lib/registry".into(),
            tls: tls.then(|| ("/tls/tls.crt".into(), "/tls/tls.key".into())),
            realm: "https://r.ns.example.org:5001/auth/token".into(),
            issuer: "iss".into(),
            service: "r.ns.example.org".into(),
            root_cert_bundle: "/token/tls.crt".into(),
            http_secret: "s3cret".into(),
        }
    }

    #[test]
    fn renders_token_auth_and_tls() {
        let yaml: serde_yaml::Value = serde_yaml::from_str(&render(&config(true))).expect("YAML");
        let token = &yaml["auth"]["token"];
        assert_eq!(token["realm"], "https://r.ns.example.org:5001/auth/token");
        assert_eq!(token["service"], "r.ns.example.org");
        assert_eq!(token["issuer"], "iss");
        assert_eq!(token["rootcertbundle"], "/token/tls.crt");
        assert_eq!(yaml["http"]["tls"]["certificate"], "/tls/tls.crt");
        assert_eq!(yaml["http"]["addr"], ":5000");
        assert_eq!(yaml["http"]["secret"], "s3cret");
        assert_eq!(
            yaml["storage"]["filesystem"]["rootdirectory"],
            "/var/lib/registry"
        );
        assert_eq!(yaml["version"], serde_yaml::Value::from(0.1));
    }

    #[test]
    fn plain_http_has_no_tls_section_and_output_is_stable() {
        let text = render(&config(false));
        assert!(!text.contains("tls:"), "{text}");
        assert_eq!(text, render(&config(false)));
    }
}
