//! Checks the values a mirror's nginx config is rendered from, with errors that name what to fix.

use super::MirrorNginxConfig;

/// A value the nginx config cannot be rendered from.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidNginxConfig {
    #[error(
        "upstream {0:?} is not a host[:port] (e.g. registry-1.docker.io or registry.example.com:5000): fix spec.upstreamUrl"
    )]
    Upstream(String),
    #[error(
        "masquerade host {0:?} is not a host[:port] (e.g. mirror-docker.io): fix spec.masqueradeUrl"
    )]
    MasqueradeHost(String),
    #[error(
        "the credentials Secret's username {0:?} must not be empty nor contain ':' or line breaks: fix key `username` of the RegistryMirror's credentialsSecret"
    )]
    Username(String),
    #[error(
        "the credentials Secret's password must not contain line breaks: fix key `password` of the RegistryMirror's credentialsSecret"
    )]
    Password,
}

/// Checks what [`super::render`] would otherwise have to drop.
pub fn validate(config: &MirrorNginxConfig) -> Result<(), InvalidNginxConfig> {
    if !is_host_port(&config.upstream) {
        return Err(InvalidNginxConfig::Upstream(config.upstream.clone()));
    }
    if !config.masquerade_host.is_empty() && !is_host_port(&config.masquerade_host) {
        return Err(InvalidNginxConfig::MasqueradeHost(
            config.masquerade_host.clone(),
        ));
    }
    if let Some((username, password)) = &config.upstream_credentials {
        if username.is_empty() || username.contains([':', '\n', '\r']) {
            return Err(InvalidNginxConfig::Username(username.clone()));
        }
        if password.contains(['\n', '\r']) {
            return Err(InvalidNginxConfig::Password);
        }
    }
    Ok(())
}

/// The language of the CRD's `schema::HOST_PORT_PATTERN`, checked without a regex engine.
fn is_host_port(value: &str) -> bool {
    let (host, port) = split_port(value);
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if let Some(address) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !address.is_empty()
            && address
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn split_port(value: &str) -> (&str, Option<&str>) {
    if value.starts_with('[') {
        return match value.rfind("]:") {
            Some(at) => (&value[..=at], Some(&value[at + 2..])),
            None => (value, None),
        };
    }
    match value.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (value, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nginx::NginxPaths;

    fn config(upstream: &str) -> MirrorNginxConfig {
        MirrorNginxConfig {
            upstream: upstream.into(),
            masquerade_host: "mirror.example.com".into(),
            upstream_credentials: None,
            cache_max_size_bytes: 1 << 30,
            tag_ttl_seconds: 60,
            extra_upstream_ca_bundle: false,
            paths: NginxPaths::in_pod(),
        }
    }

    #[test]
    fn hosts_and_ports() {
        for good in [
            "docker.io",
            "registry-1.docker.io",
            "127.0.0.1:5000",
            "[::1]:443",
            "localhost",
            "a.b-c.d:1",
        ] {
            assert_eq!(validate(&config(good)), Ok(()), "{good}");
        }
        for bad in [
            "",
            "https://docker.io",
            "docker.io/library",
            "-bad.io",
            "a..b",
            "host:",
            "host:123456",
            "a b",
            "x;y",
            "h:1:2",
            "[::1",
        ] {
            assert!(
                matches!(validate(&config(bad)), Err(InvalidNginxConfig::Upstream(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn masquerade_may_be_empty_but_not_malformed() {
        let mut c = config("docker.io");
        c.masquerade_host.clear();
        assert_eq!(validate(&c), Ok(()));
        c.masquerade_host = "mirror docker.io".into();
        assert!(matches!(
            validate(&c),
            Err(InvalidNginxConfig::MasqueradeHost(_))
        ));
    }

    #[test]
    fn credentials() {
        let mut c = config("docker.io");
        c.upstream_credentials = Some(("robot".into(), "p:a$s\"w'o{r}d".into()));
        assert_eq!(validate(&c), Ok(()));
        c.upstream_credentials = Some(("ro:bot".into(), "x".into()));
        let error = validate(&c).expect_err("colon in username");
        assert!(error.to_string().contains("credentialsSecret"));
        c.upstream_credentials = Some((String::new(), "x".into()));
        assert!(validate(&c).is_err());
        c.upstream_credentials = Some(("robot".into(), "x\ny".into()));
        assert_eq!(validate(&c), Err(InvalidNginxConfig::Password));
    }
}
