//! The nginx configuration of a mirror pod: a pull-through cache in front of one upstream registry.
//! (The renderer's caching behaviour is being written; the types below are the contract with
//! mirror-controller.)

/// Everything the rendered config depends on. mirror-controller builds it from the RegistryMirror,
/// its credentials Secret and its settings; the pod-template hash covers the rendered text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorNginxConfig {
    /// Upstream registry host[:port], reached over HTTPS.
    pub upstream: String,
    /// The masquerade host; `/v2/<masquerade>/…` is rewritten to `/v2/…`.
    pub masquerade_host: String,
    /// Upstream credentials (`username`, `password`) sent as Basic auth, when configured.
    pub upstream_credentials: Option<(String, String)>,
    /// Maximum size of the cache on disk, in bytes (derived from the volume size).
    pub cache_max_size_bytes: u64,
    /// How long a manifest fetched by tag is served before revalidation.
    pub tag_ttl_seconds: u32,
    /// Whether an extra CA bundle (CA_CERTIFICATE_BUNDLE ConfigMap) is mounted at [`UPSTREAM_CA_BUNDLE_FILE`].
    pub extra_upstream_ca_bundle: bool,
    /// File paths; [`NginxPaths::in_pod`] in the StatefulSet, temporary ones in tests.
    pub paths: NginxPaths,
}

/// Where nginx finds and keeps its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NginxPaths {
    /// Cache directory (the `image-store` volume).
    pub cache_dir: String,
    /// Serving certificate and key (PEM).
    pub tls_cert: String,
    pub tls_key: String,
    /// CA bundle that verifies the upstream (system CAs, plus the extra bundle when given).
    pub system_ca_bundle: String,
    pub extra_ca_bundle: String,
    /// Directory for pid file, temp files and logs when not running as the image's defaults.
    pub run_dir: String,
    /// TCP port nginx listens on with TLS.
    pub listen_port: u16,
}

/// Container port of the mirror (the seed's 5000, named `https`).
pub const LISTEN_PORT: u16 = 5000;
/// Path that answers 200 for readiness probes.
pub const HEALTH_PATH: &str = "/health-check";
/// Where the CA_CERTIFICATE_BUNDLE ConfigMap (key `ca-certificates.crt`) is mounted.
pub const UPSTREAM_CA_BUNDLE_FILE: &str = "/etc/wharf/upstream-ca/ca-certificates.crt";

impl NginxPaths {
    /// Paths inside the mirror pod.
    pub fn in_pod() -> Self {
        Self {
            cache_dir: "/var/lib/registry".into(),
            tls_cert: "/etc/wharf/tls/tls.crt".into(),
            tls_key: "/etc/wharf/tls/tls.key".into(),
            system_ca_bundle: "/etc/ssl/certs/ca-certificates.crt".into(),
            extra_ca_bundle: UPSTREAM_CA_BUNDLE_FILE.into(),
            run_dir: "/tmp".into(),
            listen_port: LISTEN_PORT,
        }
    }
}
