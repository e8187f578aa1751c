//! Renders the mirror's `nginx.conf` from `template.conf` (the template is the readable source
//! of truth; this file only fills in its `@@NAME@@` placeholders).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{HEALTH_PATH, MirrorNginxConfig};

const TEMPLATE: &str = include_str!("template.conf");

/// Size of the pieces a blob is fetched and cached in (nginx's `slice`). Clients waiting for a
/// blob that another client is fetching receive it slice by slice; each slice is one upstream
/// range request, on a new upstream connection (`proxy_pass` to a variable keeps no
/// connections), and a waiting client looks for the next slice every 500 ms (nginx's cache
/// lock), so it gets at most one slice per look. Measured on loopback, a cold 100 MB blob
/// arrives about 15% faster with 8 MiB slices than with 4 MiB (1 MiB: half as fast, 16 MiB:
/// 20% faster still, but then waiting clients get nothing of a layer smaller than 16 MiB until
/// it is complete); a warm blob is served at the same rate from 2 MiB on.
pub const BLOB_SLICE_SIZE: u64 = 8 * 1024 * 1024;

/// What every proxying location of the public server does to responses. (nginx inherits
/// `proxy_hide_header` and `add_header` only into locations that set none of their own, so each
/// location repeats them all.)
const RESPONSE_HEADERS: &str = "            proxy_hide_header Set-Cookie;
            proxy_hide_header WWW-Authenticate;
            proxy_hide_header X-Wharf-Upstream-Denied;
            add_header WWW-Authenticate $wharf_challenge always;
            add_header X-Cache-Status $upstream_cache_status always;";

/// Average size of a cached object the keys zone is sized for (blob slices are bigger,
/// manifests and small layers smaller); nginx keeps about 8,000 keys per megabyte.
const AVERAGE_CACHED_OBJECT_BYTES: u64 = 128 * 1024;
const KEYS_PER_ZONE_MEGABYTE: u64 = 8_000;
const MIN_KEYS_ZONE_MEGABYTES: u64 = 16;
const MAX_KEYS_ZONE_MEGABYTES: u64 = 1_024;
/// nginx refuses a cache smaller than a couple of blocks; keep at least this much.
const MIN_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// The complete nginx configuration of a mirror. Call [`super::validate`] first: values that
/// could change the config's structure (quotes, `;`, `$`, braces, spaces) are dropped here, so
/// an invalid host renders as a different, harmless one rather than as injected config.
pub fn render(config: &MirrorNginxConfig) -> String {
    let paths = &config.paths;
    let upstream = upstream_api_host(&sanitize_host(&config.upstream));
    let listen = if paths.listen_address.is_empty() {
        paths.listen_port.to_string()
    } else {
        format!(
            "{}:{}",
            sanitize_host(&paths.listen_address),
            paths.listen_port
        )
    };
    let tag_ttl = config.tag_ttl_seconds.max(1).to_string();
    let max_size = config.cache_max_size_bytes.max(MIN_CACHE_BYTES);

    let upstream_cas = if config.extra_upstream_ca_bundle {
        "the system CAs and the CA_CERTIFICATE_BUNDLE ConfigMap"
    } else {
        "the system CAs"
    };
    let replacements: [(&str, String); 16] = [
        ("@@UPSTREAM_CAS@@", upstream_cas.to_owned()),
        ("@@UPSTREAM@@", upstream.clone()),
        ("@@RUN_DIR@@", sanitize_path(&paths.run_dir)),
        ("@@CACHE_DIR@@", sanitize_path(&paths.cache_dir)),
        (
            "@@KEYS_ZONE_MB@@",
            keys_zone_megabytes(max_size).to_string(),
        ),
        ("@@MAX_SIZE@@", max_size.to_string()),
        ("@@LISTEN@@", listen),
        ("@@TLS_CERT@@", sanitize_path(&paths.tls_cert)),
        ("@@TLS_KEY@@", sanitize_path(&paths.tls_key)),
        ("@@HEALTH_PATH@@", HEALTH_PATH.to_owned()),
        ("@@TAG_TTL@@", tag_ttl),
        ("@@SLICE@@", format!("{}k", BLOB_SLICE_SIZE / 1024)),
        (
            "@@MASQUERADE_REWRITE@@",
            masquerade_rewrite(&config.masquerade_host),
        ),
        (
            "@@UPSTREAM_CA_BUNDLE@@",
            sanitize_path(&paths.upstream_ca_bundle()),
        ),
        ("@@UPSTREAM_HEADERS@@", upstream_headers(config)),
        ("@@DENIED_ERROR_PAGE@@", denied_error_page(config)),
    ];
    let mut text = TEMPLATE.replace("@@RESPONSE_HEADERS@@", RESPONSE_HEADERS);
    for (placeholder, value) in &replacements {
        text = text.replace(placeholder, value);
    }
    text.replace("@@DENIED_LOCATION@@", &denied_location(config, &upstream))
}

/// The host the registry API of `upstream` is served on: Docker Hub's API is not on `docker.io`.
pub fn upstream_api_host(upstream: &str) -> String {
    match upstream {
        "docker.io" | "index.docker.io" => "registry-1.docker.io".to_owned(),
        other => other.to_owned(),
    }
}

fn keys_zone_megabytes(max_size: u64) -> u64 {
    let keys = max_size / AVERAGE_CACHED_OBJECT_BYTES;
    (keys / KEYS_PER_ZONE_MEGABYTE + 1).clamp(MIN_KEYS_ZONE_MEGABYTES, MAX_KEYS_ZONE_MEGABYTES)
}

/// `/v2/<masquerade>/…` → `/v2/…` (services mode: images are named `<ClusterIP>/<masquerade>/…`).
fn masquerade_rewrite(masquerade_host: &str) -> String {
    let host = sanitize_host(masquerade_host);
    if host.is_empty() {
        return String::new();
    }
    let pattern: String = host
        .chars()
        .flat_map(|c| match c {
            '.' | '[' | ']' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("\n        rewrite \"^/v2/{pattern}/(.*)$\" /v2/$1 last;\n")
}

/// Headers of every request to the upstream: keep-alive framing, and Basic credentials when the
/// mirror has them (they replace whatever the client sent).
fn upstream_headers(config: &MirrorNginxConfig) -> String {
    let mut lines = String::from("            proxy_set_header Connection \"\";");
    if let Some((username, password)) = &config.upstream_credentials {
        let token = BASE64.encode(format!("{username}:{password}"));
        lines.push_str(&format!(
            "\n            proxy_set_header Authorization \"Basic {token}\";"
        ));
    }
    lines
}

fn denied_error_page(config: &MirrorNginxConfig) -> String {
    if config.upstream_credentials.is_some() {
        "            error_page 401 = @wharf_upstream_denied;".to_owned()
    } else {
        String::new()
    }
}

/// With credentials configured, an upstream 401 means it rejected them: say so, in the registry
/// error format clients print, instead of a challenge the client cannot answer.
fn denied_location(config: &MirrorNginxConfig, upstream: &str) -> String {
    if config.upstream_credentials.is_none() {
        return String::new();
    }
    format!(
        r#"
        location @wharf_upstream_denied {{
            default_type application/json;
            # Tells the caching server not to cache this answer.
            add_header X-Wharf-Upstream-Denied 1 always;
            return 401 '{{"errors":[{{"code":"UNAUTHORIZED","message":"the upstream registry {upstream} rejected the credentials of this registry mirror: correct username and password in the credentialsSecret of the RegistryMirror","detail":null}}]}}\n';
        }}
"#
    )
}

/// Keeps the characters a host[:port] (or bracketed IPv6 address) can have.
fn sanitize_host(host: &str) -> String {
    host.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        .collect()
}

/// Keeps the characters a file path can have without quoting in nginx's syntax.
fn sanitize_path(path: &str) -> String {
    path.chars()
        .filter(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '/' | '.' | '-' | '_' | '+' | ',' | '=' | '@' | '%' | ':')
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nginx::NginxPaths;

    fn config() -> MirrorNginxConfig {
        MirrorNginxConfig {
            upstream: "registry.example.com:5000".into(),
            masquerade_host: "mirror-registry.example.com".into(),
            upstream_credentials: None,
            cache_max_size_bytes: 16 * 1024 * 1024 * 1024,
            tag_ttl_seconds: 60,
            extra_upstream_ca_bundle: false,
            paths: NginxPaths::in_pod(),
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        let mut with_credentials = config();
        with_credentials.upstream_credentials = Some(("u".into(), "p".into()));
        for config in [config(), with_credentials] {
            let text = render(&config);
            assert!(!text.contains("@@"), "unfilled placeholder in:\n{text}");
        }
    }

    #[test]
    fn braces_balance() {
        let text = render(&config());
        let opened = text.matches('{').count();
        let closed = text.matches('}').count();
        assert_eq!(opened, closed, "{text}");
    }

    #[test]
    fn docker_hub_is_reached_on_its_api_host() {
        assert_eq!(upstream_api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(upstream_api_host("index.docker.io"), "registry-1.docker.io");
        assert_eq!(upstream_api_host("quay.io"), "quay.io");
        let mut hub = config();
        hub.upstream = "docker.io".into();
        assert!(render(&hub).contains("set $wharf_upstream \"registry-1.docker.io\";"));
    }

    #[test]
    fn masquerade_host_is_a_literal_in_the_rewrite() {
        assert_eq!(
            masquerade_rewrite("mirror-registry.example.com"),
            "\n        rewrite \"^/v2/mirror-registry\\.example\\.com/(.*)$\" /v2/$1 last;\n"
        );
        assert_eq!(masquerade_rewrite(""), "");
    }

    #[test]
    fn credentials_become_basic_auth_and_a_clear_denial() {
        let mut with = config();
        with.upstream_credentials = Some(("robot".into(), "s3cr3t".into()));
        let text = render(&with);
        // base64("robot:s3cr3t")
        assert_eq!(
            text.matches("proxy_set_header Authorization \"Basic cm9ib3Q6czNjcjN0\";")
                .count(),
            3
        );
        assert!(text.contains("location @wharf_upstream_denied"));
        assert!(text.contains("credentialsSecret"));
        assert_eq!(
            text.matches("error_page 401 = @wharf_upstream_denied;")
                .count(),
            3
        );

        let without = render(&config());
        assert!(!without.contains("Basic "));
        assert!(!without.contains("@wharf_upstream_denied"));
    }

    #[test]
    fn hostile_values_cannot_add_directives() {
        let mut hostile = config();
        hostile.upstream = "evil.example.com; include /etc/passwd; #".into();
        hostile.masquerade_host = "x\"; return 200 $host; #".into();
        hostile.paths.cache_dir = "/var/lib/registry levels=1 keys_zone=x:1m;".into();
        let text = render(&hostile);
        assert!(!text.contains("include /etc/passwd"));
        assert!(!text.contains("return 200 $host"));
        assert_eq!(text.matches(" keys_zone=").count(), 1);
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }

    #[test]
    fn keys_zone_grows_with_the_cache() {
        assert_eq!(
            keys_zone_megabytes(MIN_CACHE_BYTES),
            MIN_KEYS_ZONE_MEGABYTES
        );
        assert_eq!(keys_zone_megabytes(16 << 30), 17);
        assert_eq!(keys_zone_megabytes(u64::MAX), MAX_KEYS_ZONE_MEGABYTES);
    }

    #[test]
    fn small_or_zero_values_are_raised_to_what_nginx_accepts() {
        let mut tiny = config();
        tiny.cache_max_size_bytes = 0;
        tiny.tag_ttl_seconds = 0;
        let text = render(&tiny);
        assert!(text.contains(&format!("max_size={MIN_CACHE_BYTES} ")));
        assert!(text.contains("proxy_cache_valid 200 1s;"));
    }

    #[test]
    fn cached_files_are_sent_with_kernel_tls_where_the_kernel_has_it() {
        let text = render(&config());
        // SSL_sendfile needs both: OpenSSL's kTLS option and nginx's sendfile.
        assert!(text.contains("\n        ssl_conf_command Options KTLS;\n"));
        assert!(text.contains("\n    sendfile on;\n"));
        assert!(text.contains("ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:"));
    }

    #[test]
    fn listen_address_is_optional() {
        assert!(render(&config()).contains("listen 5000 ssl;"));
        let mut local = config();
        local.paths.listen_address = "127.0.0.1".into();
        local.paths.listen_port = 40123;
        assert!(render(&local).contains("listen 127.0.0.1:40123 ssl;"));
    }
}
