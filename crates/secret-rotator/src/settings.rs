//! The rotator's settings, from flags or the original operator's environment variables.

use std::time::Duration;

use wharf_core::duration::parse_go_duration;

use crate::password::DEFAULT_BCRYPT_COST;
use crate::registry::RegistryKey;

/// Account lifetime when `OPERATOR_SECRET_TTL` is not set, as the original.
pub const DEFAULT_SECRET_TTL: Duration = Duration::from_secs(24 * 3600);

/// Flags and environment variables of the rotator.
#[derive(clap::Args, Clone, Debug)]
pub struct RotatorArgs {
    /// Lifetime of every account (Go duration; empty: 24h): a password stays valid this long
    /// after it was generated, so pods holding an older Secret keep working.
    #[arg(long, env = "OPERATOR_SECRET_TTL", default_value = "24h", value_parser = parse_ttl)]
    pub secret_ttl: Duration,

    /// How often passwords rotate (Go duration; empty: half the TTL). Must be shorter than the
    /// TTL: the difference is how long an old password keeps working.
    #[arg(long, env = "OPERATOR_SECRET_ROTATION_INTERVAL", default_value = "",
          value_parser = parse_interval)]
    pub secret_rotation_interval: RotationInterval,

    /// Name of the ImageRegistry that push/pull secrets without `spec.registryRef` use.
    #[arg(
        long,
        env = "OPERATOR_DEFAULT_REGISTRY_NAME",
        default_value = "registry"
    )]
    pub default_registry_name: String,

    /// Namespace of that default registry (default: the rotator's own namespace from
    /// POD_NAMESPACE, as the original; else `default`).
    #[arg(long, env = "OPERATOR_DEFAULT_REGISTRY_NAMESPACE")]
    pub default_registry_namespace: Option<String>,

    /// bcrypt cost of account password hashes (4-31); registry-auth pays it at the first login
    /// with each password. The passwords are 190-bit random, so a higher cost adds no safety.
    #[arg(long, env = "OPERATOR_BCRYPT_COST", default_value_t = DEFAULT_BCRYPT_COST,
          value_parser = clap::value_parser!(u32).range(4..=31))]
    pub bcrypt_cost: u32,

    /// Serve only the push/pull secrets of this namespace (default: every namespace). Registries
    /// and accounts are still found in any namespace.
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Push/pull secrets reconciled at the same time, per kind.
    #[arg(long, env = "OPERATOR_MAX_CONCURRENT_RECONCILES", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_reconciles: u16,
}

/// How often passwords rotate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationInterval {
    /// Every half of the TTL, as the original.
    HalfTheTtl,
    Every(Duration),
}

/// A Go duration; empty (as a chart leaves an unset value) means the 24h default.
fn parse_ttl(value: &str) -> Result<Duration, String> {
    if value.is_empty() {
        return Ok(DEFAULT_SECRET_TTL);
    }
    parse_go_duration(value).map_err(|err| err.to_string())
}

/// A Go duration; empty means half the TTL.
fn parse_interval(value: &str) -> Result<RotationInterval, String> {
    if value.is_empty() {
        return Ok(RotationInterval::HalfTheTtl);
    }
    parse_go_duration(value)
        .map(RotationInterval::Every)
        .map_err(|err| err.to_string())
}

/// Settings that contradict each other, with what to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("OPERATOR_SECRET_TTL {ttl:?} is too short: use at least 2s")]
    TtlTooShort { ttl: Duration },
    #[error("OPERATOR_SECRET_ROTATION_INTERVAL {interval:?} is too short: use at least 1s")]
    IntervalTooShort { interval: Duration },
    #[error(
        "OPERATOR_SECRET_ROTATION_INTERVAL {interval:?} must be shorter than OPERATOR_SECRET_TTL {ttl:?}, or passwords would expire before they are replaced: lower the interval (default TTL/2) or raise the TTL"
    )]
    IntervalNotBelowTtl { interval: Duration, ttl: Duration },
    #[error("OPERATOR_DEFAULT_REGISTRY_NAME must not be empty")]
    EmptyRegistryName,
}

/// What the controllers run with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Lifetime of an account from its creation.
    pub secret_ttl: Duration,
    /// Time between two passwords of one Secret.
    pub rotation_interval: Duration,
    /// Registry of CRs without `spec.registryRef`.
    pub default_registry: RegistryKey,
    pub bcrypt_cost: u32,
    pub max_concurrent_reconciles: u16,
    /// Only CRs of this namespace (None: all).
    pub watch_namespace: Option<String>,
}

impl Settings {
    /// Settings with the given TTL and interval (default TTL/2), checked for consistency.
    pub fn new(
        secret_ttl: Duration,
        rotation_interval: Option<Duration>,
        default_registry: RegistryKey,
    ) -> Result<Self, SettingsError> {
        if secret_ttl < Duration::from_secs(2) {
            return Err(SettingsError::TtlTooShort { ttl: secret_ttl });
        }
        let interval = rotation_interval.unwrap_or(secret_ttl / 2);
        if interval < Duration::from_secs(1) {
            return Err(SettingsError::IntervalTooShort { interval });
        }
        if interval >= secret_ttl {
            return Err(SettingsError::IntervalNotBelowTtl {
                interval,
                ttl: secret_ttl,
            });
        }
        if default_registry.name.is_empty() {
            return Err(SettingsError::EmptyRegistryName);
        }
        Ok(Self {
            secret_ttl,
            rotation_interval: interval,
            default_registry,
            bcrypt_cost: DEFAULT_BCRYPT_COST,
            max_concurrent_reconciles: 16,
            watch_namespace: None,
        })
    }
}

impl RotatorArgs {
    /// The settings these flags ask for; `pod_namespace` is the rotator's own namespace.
    pub fn settings(&self, pod_namespace: Option<String>) -> Result<Settings, SettingsError> {
        let namespace = [self.default_registry_namespace.clone(), pod_namespace]
            .into_iter()
            .flatten()
            .find(|ns| !ns.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        let interval = match self.secret_rotation_interval {
            RotationInterval::HalfTheTtl => None,
            RotationInterval::Every(interval) => Some(interval),
        };
        let mut settings = Settings::new(
            self.secret_ttl,
            interval,
            RegistryKey::new(namespace, self.default_registry_name.clone()),
        )?;
        settings.bcrypt_cost = self.bcrypt_cost;
        settings.max_concurrent_reconciles = self.max_concurrent_reconciles;
        settings.watch_namespace = self.watch_namespace.clone().filter(|ns| !ns.is_empty());
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        rotator: RotatorArgs,
    }

    fn parse(args: &[&str]) -> RotatorArgs {
        Cli::try_parse_from(std::iter::once("secret-rotator").chain(args.iter().copied()))
            .expect("valid flags")
            .rotator
    }

    #[test]
    fn defaults_are_the_originals() {
        let settings = parse(&[]).settings(None).expect("valid");
        assert_eq!(settings.secret_ttl, DEFAULT_SECRET_TTL);
        assert_eq!(settings.rotation_interval, DEFAULT_SECRET_TTL / 2);
        assert_eq!(
            settings.default_registry,
            RegistryKey::new("default", "registry")
        );
        assert_eq!(settings.bcrypt_cost, 8);
    }

    #[test]
    fn the_default_registry_namespace_is_the_rotators_own() {
        let settings = parse(&[])
            .settings(Some("wharf-system".into()))
            .expect("valid");
        assert_eq!(settings.default_registry.namespace, "wharf-system");
        let explicit = parse(&["--default-registry-namespace", "infra"])
            .settings(Some("wharf-system".into()))
            .expect("valid");
        assert_eq!(explicit.default_registry.namespace, "infra");
    }

    #[test]
    fn empty_values_mean_the_defaults() {
        let settings = parse(&[
            "--secret-ttl",
            "",
            "--secret-rotation-interval",
            "",
            "--default-registry-namespace",
            "",
            "--watch-namespace",
            "",
        ])
        .settings(Some("wharf-system".into()))
        .expect("valid");
        assert_eq!(settings.secret_ttl, DEFAULT_SECRET_TTL);
        assert_eq!(settings.rotation_interval, DEFAULT_SECRET_TTL / 2);
        assert_eq!(settings.default_registry.namespace, "wharf-system");
        assert_eq!(settings.watch_namespace, None);
    }

    #[test]
    fn go_durations_are_accepted() {
        let settings = parse(&["--secret-ttl", "20s", "--secret-rotation-interval", "10s"])
            .settings(None)
            .expect("valid");
        assert_eq!(settings.secret_ttl, Duration::from_secs(20));
        assert_eq!(settings.rotation_interval, Duration::from_secs(10));
        let err = Cli::try_parse_from(["secret-rotator", "--secret-ttl", "1d"])
            .err()
            .expect("1d is no Go duration");
        assert!(err.to_string().contains("24h"), "{err}");
    }

    #[test]
    fn an_interval_that_outlives_the_ttl_is_refused() {
        let err = parse(&["--secret-ttl", "1h", "--secret-rotation-interval", "1h"])
            .settings(None)
            .expect_err("interval = ttl");
        assert!(err.to_string().contains("must be shorter"), "{err}");
        assert_eq!(
            parse(&["--secret-ttl", "1s"]).settings(None),
            Err(SettingsError::TtlTooShort {
                ttl: Duration::from_secs(1)
            })
        );
    }

    #[test]
    fn bcrypt_cost_is_bounded() {
        assert!(Cli::try_parse_from(["secret-rotator", "--bcrypt-cost", "3"]).is_err());
        assert_eq!(parse(&["--bcrypt-cost", "12"]).bcrypt_cost, 12);
    }
}
