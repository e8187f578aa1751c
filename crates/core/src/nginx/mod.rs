//! The nginx configuration of a mirror pod: a pull-through cache in front of one upstream registry.
//!
//! [`render`] turns a [`MirrorNginxConfig`] into a complete `nginx.conf` (run with
//! `nginx -c`); [`container_command`] is the mirror container's command, which prepares what the
//! config includes (resolver, CA bundle) and then starts nginx. Tests run exactly the rendered
//! config with other [`NginxPaths`].

mod render;
mod startup;
mod validate;

pub use render::{BLOB_SLICE_SIZE, render, upstream_api_host};
pub use startup::{container_command, startup_script};
pub use validate::{InvalidNginxConfig, validate};

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
    /// Address nginx listens on; empty: every address of the pod.
    pub listen_address: String,
    /// Where the rendered config is (the config Secret's [`CONFIG_FILE_NAME`] key, mounted).
    pub config_file: String,
    /// The resolv.conf whose nameservers become nginx's `resolver`.
    pub resolv_conf: String,
}

/// Container port of the mirror (the seed's 5000, named `https`).
pub const LISTEN_PORT: u16 = 5000;
/// Path that answers 200 for readiness probes.
pub const HEALTH_PATH: &str = "/health-check";
/// Where the CA_CERTIFICATE_BUNDLE ConfigMap (key `ca-certificates.crt`) is mounted.
pub const UPSTREAM_CA_BUNDLE_FILE: &str = "/etc/wharf/upstream-ca/ca-certificates.crt";
/// Directory where the config Secret is mounted in the mirror container.
pub const CONFIG_DIR: &str = "/etc/wharf/nginx";
/// File name (and config Secret key) of the rendered config, the seed's `default.conf`.
pub const CONFIG_FILE_NAME: &str = "default.conf";
/// Response header saying whether the cache answered: `HIT`, `MISS`, `EXPIRED`, `STALE`,
/// `UPDATING`, `REVALIDATED`, or empty for responses that are never cached.
pub const CACHE_STATUS_HEADER: &str = "X-Cache-Status";

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
            listen_address: String::new(),
            config_file: format!("{CONFIG_DIR}/{CONFIG_FILE_NAME}"),
            resolv_conf: "/etc/resolv.conf".into(),
        }
    }

    /// The CA bundle nginx verifies the upstream with: written by the startup script from
    /// [`Self::system_ca_bundle`] and, when present, [`Self::extra_ca_bundle`].
    pub fn upstream_ca_bundle(&self) -> String {
        format!("{}/upstream-ca-bundle.crt", self.run_dir)
    }

    /// The `resolver` directive the startup script writes and the config includes.
    pub fn resolver_conf(&self) -> String {
        format!("{}/resolver.conf", self.run_dir)
    }

    /// The unix socket of the internal server that talks to the upstream.
    pub fn upstream_socket(&self) -> String {
        format!("{}/upstream.sock", self.run_dir)
    }
}
