//! registry-controller's settings: the original operator's environment variables, same names and
//! defaults, each also a flag.

use wharf_core::registry::names::DEFAULT_DNS_ZONE;

/// The registry image of the original (distribution 2.x).
pub const DEFAULT_REGISTRY_IMAGE: &str = "registry:2";
/// wharf's registry-auth image of this version.
pub const DEFAULT_AUTH_IMAGE: &str =
    concat!("docker.io/wharf/registry-auth:", env!("CARGO_PKG_VERSION"));

/// Settings of the controller (`--help` lists each flag with its environment variable).
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// DNS zone of registry host names: `<name>.<namespace>.<zone>`.
    #[arg(long, env = "OPERATOR_DNS_ZONE", default_value = DEFAULT_DNS_ZONE, value_parser = dns_zone)]
    pub dns_zone: String,

    /// Image of the registry container (distribution 2.x).
    #[arg(long, env = "OPERATOR_IMAGE_REGISTRY", default_value = DEFAULT_REGISTRY_IMAGE)]
    pub registry_image: String,

    /// Image of the token server container (wharf's registry-auth, replacing docker_auth).
    #[arg(long, env = "OPERATOR_IMAGE_AUTH", default_value = DEFAULT_AUTH_IMAGE)]
    pub auth_image: String,

    /// Only ImageRegistries of this namespace (default: every namespace).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
}

fn dns_zone(value: &str) -> Result<String, String> {
    let zone = value.trim_matches('.');
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if zone.split('.').all(label_ok) {
        Ok(zone.to_owned())
    } else {
        Err(format!(
            "{value:?} is not a DNS zone: use lowercase labels separated by dots, e.g. svc.example.org"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    #[test]
    fn defaults_are_the_originals() {
        let cli = Cli::try_parse_from(["registry-controller"]).expect("parses");
        assert_eq!(cli.settings.dns_zone, "svc.example.org");
        assert_eq!(cli.settings.registry_image, "registry:2");
        assert!(
            cli.settings
                .auth_image
                .starts_with("docker.io/wharf/registry-auth:")
        );
    }

    #[test]
    fn a_bad_zone_says_what_a_zone_is() {
        let err = Cli::try_parse_from(["registry-controller", "--dns-zone", "Bad_Zone"])
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("not a DNS zone"), "{err}");
        let cli = Cli::try_parse_from(["registry-controller", "--dns-zone", "example.org."])
            .expect("trailing dot is fine");
        assert_eq!(cli.settings.dns_zone, "example.org");
    }
}
