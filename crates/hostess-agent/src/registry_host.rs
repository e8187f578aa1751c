//! Registry host names as runtimes spell them: the upstream (with Docker Hub's aliases), the
//! mirror's address, and node paths as the runtime sees them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::hosts::edit::is_dns_name;

/// An upstream host the agent cannot configure runtimes for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "upstream {0:?} is not a registry host: set UPSTREAM_HOST to host[:port], e.g. docker.io or registry.example.com:5000 (no path)"
)]
pub struct InvalidUpstream(pub String);

/// The upstream registry the mirror proxies, as container runtimes name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The name images use and runtimes key their config by: `docker.io`, `quay.io`,
    /// `registry.example.com:5000`.
    pub name: String,
    /// Where the registry API really is: `https://registry-1.docker.io` for Docker Hub.
    pub server: String,
}

impl Upstream {
    /// Parses `host[:port]` (an `https://` prefix and a trailing `/` are tolerated). Docker
    /// Hub's aliases (`docker.io`, `index.docker.io`, `registry-1.docker.io`) all become
    /// `docker.io`, the name image references use.
    pub fn parse(input: &str) -> Result<Self, InvalidUpstream> {
        let invalid = || InvalidUpstream(input.to_owned());
        let trimmed = input.trim();
        let host = trimmed
            .strip_prefix("https://")
            .unwrap_or(trimmed)
            .trim_end_matches('/')
            .to_ascii_lowercase();
        if !is_host_and_port(&host) {
            return Err(invalid());
        }
        if matches!(
            host.as_str(),
            "docker.io" | "index.docker.io" | "registry-1.docker.io"
        ) {
            return Ok(Self {
                name: "docker.io".into(),
                server: "https://registry-1.docker.io".into(),
            });
        }
        Ok(Self {
            server: format!("https://{host}"),
            name: host,
        })
    }
}

/// `host`, `host:port`, `a.b.c.d[:port]` or `[v6][:port]`.
fn is_host_and_port(value: &str) -> bool {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return false;
        };
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return false,
            },
        }
    } else {
        match value.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(value), None),
        }
    };
    let host_ok = host.is_none_or(is_dns_name);
    let port_ok =
        port.is_none_or(|port| !port.is_empty() && port.len() <= 5 && port.parse::<u16>().is_ok());
    host_ok && port_ok
}

/// How registry clients write the mirror's address in a host name: `10.96.0.5`, `[fd00::5]`.
pub fn address_host(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The node's path of a file the agent sees at `path`: the host-root prefix (`/host`) is
/// removed. Paths outside it (tests, or an agent running on the node itself) stay as they are.
pub fn node_path(host_root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix(host_root) {
        Ok(rest) if !host_root.as_os_str().is_empty() && host_root != Path::new("/") => {
            Path::new("/").join(rest)
        }
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_aliases_become_docker_io() {
        for alias in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "https://docker.io/",
        ] {
            let upstream = Upstream::parse(alias).expect("valid");
            assert_eq!(upstream.name, "docker.io");
            assert_eq!(upstream.server, "https://registry-1.docker.io");
        }
    }

    #[test]
    fn other_upstreams_keep_their_port() {
        let upstream = Upstream::parse("Registry.example.com:5000").expect("valid");
        assert_eq!(upstream.name, "registry.example.com:5000");
        assert_eq!(upstream.server, "https://registry.example.com:5000");
        assert_eq!(
            Upstream::parse("127.0.0.1:41234").expect("valid").name,
            "127.0.0.1:41234"
        );
        assert_eq!(
            Upstream::parse("[fd00::1]:5000").expect("valid").name,
            "[fd00::1]:5000"
        );
    }

    #[test]
    fn refuses_what_could_escape_a_directory() {
        for bad in [
            "",
            "../../etc",
            "quay.io/path",
            "a b",
            "host:port",
            "host:99999",
            "[nonsense]",
            "http://quay.io",
        ] {
            let err = Upstream::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("UPSTREAM_HOST"), "{err}");
        }
    }

    #[test]
    fn formats_addresses_as_hosts() {
        assert_eq!(address_host("10.96.0.5".parse().expect("IP")), "10.96.0.5");
        assert_eq!(address_host("fd00::5".parse().expect("IP")), "[fd00::5]");
    }

    #[test]
    fn strips_the_host_root() {
        assert_eq!(
            node_path(
                Path::new("/host"),
                Path::new("/host/etc/containerd/certs.d/x/ca.crt")
            ),
            PathBuf::from("/etc/containerd/certs.d/x/ca.crt")
        );
        assert_eq!(
            node_path(Path::new("/host"), Path::new("/tmp/certs.d/ca.crt")),
            PathBuf::from("/tmp/certs.d/ca.crt")
        );
        assert_eq!(
            node_path(Path::new("/host"), Path::new("/hostile/ca.crt")),
            PathBuf::from("/hostile/ca.crt"),
            "prefix match is per path component"
        );
        assert_eq!(
            node_path(Path::new("/"), Path::new("/etc/x")),
            PathBuf::from("/etc/x")
        );
    }
}
