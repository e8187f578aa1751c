//! The agent's settings, from the environment mirror-controller's DaemonSet sets
//! (`wharf_core::agent`), validated into a [`Config`] with messages that say what to fix.

use std::path::PathBuf;
use std::time::Duration;

use wharf_core::agent;
use wharf_core::duration::parse_go_duration;

use crate::ca::CaSource;
use crate::containerd::ContainerdCertsDir;
use crate::crio::CrioDirs;
use crate::docker::DockerCertsDir;
use crate::hosts::{HostsFiles, InvalidName, Marker};
use crate::registry_host::{InvalidUpstream, Upstream};

/// How nodes reach the mirror, as mirror-controller's `ADDRESSING_SCHEME`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressingScheme {
    /// Images name the masquerade host; the hosts file maps it to the Service's ClusterIP.
    Hostess,
    /// Images name the ClusterIP itself (rewritten by imageswap); no hosts-file entry.
    Services,
}

/// Settings of hostess-agent (flags or environment).
#[derive(clap::Args, Clone, Debug)]
pub struct Settings {
    /// The mirror's Service to follow (`registry-mirror-<mirror>`).
    #[arg(long, env = agent::ENV_SERVICE_NAME)]
    pub service_name: String,

    /// Namespace of that Service.
    #[arg(long, env = agent::ENV_SERVICE_NAMESPACE)]
    pub service_namespace: String,

    /// The RegistryMirror's name; marks the agent's hosts line and files.
    #[arg(long, env = agent::ENV_MIRROR_NAME)]
    pub mirror_name: String,

    /// Host name images use for the mirror (hostess mode).
    #[arg(long, env = agent::ENV_MASQUERADE_HOST)]
    pub masquerade_host: Option<String>,

    /// The upstream registry host[:port] the mirror proxies.
    #[arg(long, env = agent::ENV_UPSTREAM_HOST)]
    pub upstream_host: String,

    /// `hostess` or `services`.
    #[arg(long, env = agent::ENV_ADDRESSING_SCHEME, value_enum, ignore_case = true, default_value_t = AddressingScheme::Hostess)]
    pub addressing_scheme: AddressingScheme,

    /// The mirror's CA certificate itself (PEM), as mirror-controller passes a generated one;
    /// when set, CA_FILE is not read.
    #[arg(long, env = agent::ENV_CA_CERT)]
    pub ca_cert: Option<String>,

    /// The mirror's CA (PEM); `tls.crt` next to it is used when it is missing.
    #[arg(long, env = agent::ENV_CA_FILE, default_value = agent::DEFAULT_CA_FILE)]
    pub ca_file: PathBuf,

    /// The node's hosts file, as mounted.
    #[arg(long, env = agent::ENV_HOSTS_FILE, default_value = agent::DEFAULT_HOSTS_FILE)]
    pub hosts_file: PathBuf,

    /// Lock file every agent of the node takes while editing the hosts file.
    #[arg(long, env = agent::ENV_HOSTS_LOCK_FILE, default_value = agent::DEFAULT_HOSTS_LOCK_FILE)]
    pub hosts_lock_file: PathBuf,

    /// Backup of the hosts file before the last change; `<file>.new` is the write journal.
    #[arg(long, env = agent::ENV_HOSTS_BACKUP_FILE, default_value = agent::DEFAULT_HOSTS_BACKUP_FILE)]
    pub hosts_backup_file: PathBuf,

    /// Docker's certs.d, as mounted.
    #[arg(long, env = agent::ENV_DOCKER_CERTS_DIR, default_value = agent::DEFAULT_DOCKER_CERTS_DIR)]
    pub docker_certs_dir: PathBuf,

    /// containerd's certs.d (its `config_path`), as mounted; skipped when absent.
    #[arg(long, env = agent::ENV_CONTAINERD_CERTS_DIR, default_value = agent::DEFAULT_CONTAINERD_CERTS_DIR)]
    pub containerd_certs_dir: PathBuf,

    /// containerd `dial_timeout` for the mirror (Go duration, e.g. `3s`).
    #[arg(long, env = agent::ENV_CONTAINERD_DIAL_TIMEOUT)]
    pub containerd_dial_timeout: Option<String>,

    /// CRI-O's registries.conf.d, as mounted; skipped when absent.
    #[arg(long, env = agent::ENV_CRIO_REGISTRIES_DIR, default_value = agent::DEFAULT_CRIO_REGISTRIES_DIR)]
    pub crio_registries_dir: PathBuf,

    /// containers-image's certs.d, as mounted.
    #[arg(long, env = agent::ENV_CRIO_CERTS_DIR, default_value = agent::DEFAULT_CRIO_CERTS_DIR)]
    pub crio_certs_dir: PathBuf,

    /// Send SIGHUP to CRI-O after changing its drop-in (needs the host PID namespace).
    #[arg(long, env = agent::ENV_CRIO_RELOAD, default_value_t = false, action = clap::ArgAction::Set)]
    pub crio_reload: bool,

    /// Where the node's root is mounted; removed from paths written into runtime configs.
    #[arg(long, env = agent::ENV_HOST_ROOT, default_value = agent::DEFAULT_HOST_ROOT)]
    pub host_root: PathBuf,

    /// Where to look for the CRI-O process.
    #[arg(long, default_value = "/proc")]
    pub proc_dir: PathBuf,

    /// How often to re-read the CA file (the kubelet updates mounted Secrets in place).
    #[arg(long, default_value = "5s", value_parser = parse_interval)]
    pub ca_poll_interval: Duration,

    /// How often to re-check every file even when nothing changed (repairs edits by others).
    #[arg(long, default_value = "60s", value_parser = parse_interval)]
    pub resync_interval: Duration,
}

fn parse_interval(input: &str) -> Result<Duration, String> {
    match parse_go_duration(input) {
        Ok(duration) if duration >= Duration::from_millis(10) => Ok(duration),
        Ok(_) => Err("use at least 10ms".into()),
        Err(err) => Err(err.to_string()),
    }
}

/// Settings that do not make sense.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Name(#[from] InvalidName),
    #[error(transparent)]
    Upstream(#[from] InvalidUpstream),
    #[error(
        "{} must be set in hostess mode: the host name images use for the mirror",
        agent::ENV_MASQUERADE_HOST
    )]
    MissingMasqueradeHost,
    #[error("{}: {message}", agent::ENV_CONTAINERD_DIAL_TIMEOUT)]
    DialTimeout { message: String },
    #[error("{name} must not be empty")]
    Empty { name: &'static str },
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub mirror: String,
    pub marker: Marker,
    pub service_name: String,
    pub service_namespace: String,
    pub scheme: AddressingScheme,
    /// Hostess mode only.
    pub masquerade_host: Option<String>,
    pub upstream: Upstream,
    pub ca: CaSource,
    pub hosts: HostsFiles,
    pub docker: DockerCertsDir,
    pub containerd: ContainerdCertsDir,
    pub crio: CrioDirs,
    pub crio_reload: bool,
    pub proc_dir: PathBuf,
    pub ca_poll_interval: Duration,
    pub resync_interval: Duration,
}

impl Settings {
    /// Checks the settings and derives the agent's configuration.
    pub fn validate(&self) -> Result<Config, SettingsError> {
        for (name, value) in [
            (agent::ENV_SERVICE_NAME, &self.service_name),
            (agent::ENV_SERVICE_NAMESPACE, &self.service_namespace),
        ] {
            if value.trim().is_empty() {
                return Err(SettingsError::Empty { name });
            }
        }
        let marker = Marker::new(&self.mirror_name)?;
        let upstream = Upstream::parse(&self.upstream_host)?;
        let masquerade_host = match (self.addressing_scheme, self.masquerade_host.as_deref()) {
            (AddressingScheme::Hostess, None | Some("")) => {
                return Err(SettingsError::MissingMasqueradeHost);
            }
            (AddressingScheme::Hostess, Some(host)) => {
                // Validated the way the hosts line needs it; the original spelling (with a port,
                // if any) names Docker's certificate directory.
                crate::hosts::HostsEntry::new(std::net::Ipv4Addr::LOCALHOST.into(), host)?;
                Some(host.to_ascii_lowercase())
            }
            (AddressingScheme::Services, _) => None,
        };
        let dial_timeout = match self.containerd_dial_timeout.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(value) => {
                parse_go_duration(value).map_err(|err| SettingsError::DialTimeout {
                    message: err.to_string(),
                })?;
                Some(value.to_owned())
            }
        };
        Ok(Config {
            mirror: self.mirror_name.clone(),
            marker,
            service_name: self.service_name.clone(),
            service_namespace: self.service_namespace.clone(),
            scheme: self.addressing_scheme,
            masquerade_host,
            upstream,
            ca: CaSource {
                inline: self
                    .ca_cert
                    .as_deref()
                    .filter(|pem| !pem.trim().is_empty())
                    .map(|pem| pem.as_bytes().to_vec()),
                ca_file: self.ca_file.clone(),
            },
            hosts: HostsFiles {
                hosts: self.hosts_file.clone(),
                lock: self.hosts_lock_file.clone(),
                backup: self.hosts_backup_file.clone(),
            },
            docker: DockerCertsDir {
                dir: self.docker_certs_dir.clone(),
            },
            containerd: ContainerdCertsDir {
                dir: self.containerd_certs_dir.clone(),
                host_root: self.host_root.clone(),
                dial_timeout,
            },
            crio: CrioDirs {
                registries_dir: self.crio_registries_dir.clone(),
                certs_dir: self.crio_certs_dir.clone(),
            },
            crio_reload: self.crio_reload,
            proc_dir: self.proc_dir.clone(),
            ca_poll_interval: self.ca_poll_interval,
            resync_interval: self.resync_interval,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    fn parse(args: &[&str]) -> Settings {
        let mut argv = vec!["hostess-agent"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("parses").settings
    }

    const REQUIRED: [&str; 8] = [
        "--service-name",
        "registry-mirror-docker",
        "--service-namespace",
        "wharf",
        "--mirror-name",
        "docker",
        "--upstream-host",
        "docker.io",
    ];

    #[test]
    fn defaults_follow_the_contract() {
        let mut args = REQUIRED.to_vec();
        args.extend(["--masquerade-host", "mirror-docker.io"]);
        let config = parse(&args).validate().expect("valid");
        assert_eq!(config.scheme, AddressingScheme::Hostess);
        assert_eq!(config.hosts.hosts, PathBuf::from(agent::DEFAULT_HOSTS_FILE));
        assert_eq!(
            config.hosts.lock,
            PathBuf::from(agent::DEFAULT_HOSTS_LOCK_FILE)
        );
        assert_eq!(
            config.hosts.backup,
            PathBuf::from(agent::DEFAULT_HOSTS_BACKUP_FILE)
        );
        assert_eq!(config.ca.ca_file, PathBuf::from(agent::DEFAULT_CA_FILE));
        assert_eq!(
            config.containerd.dir,
            PathBuf::from(agent::DEFAULT_CONTAINERD_CERTS_DIR)
        );
        assert_eq!(config.containerd.host_root, PathBuf::from("/host"));
        assert!(!config.crio_reload);
        assert_eq!(config.upstream.name, "docker.io");
        assert_eq!(config.masquerade_host.as_deref(), Some("mirror-docker.io"));
        assert_eq!(config.resync_interval, Duration::from_secs(60));
    }

    #[test]
    fn services_mode_needs_no_masquerade_host() {
        let mut args = REQUIRED.to_vec();
        args.extend(["--addressing-scheme", "Services", "--crio-reload", "true"]);
        let config = parse(&args).validate().expect("valid");
        assert_eq!(config.scheme, AddressingScheme::Services);
        assert_eq!(config.masquerade_host, None);
        assert!(config.crio_reload);
    }

    #[test]
    fn explains_bad_settings() {
        let err = parse(&REQUIRED)
            .validate()
            .expect_err("hostess needs a host");
        assert!(err.to_string().contains("MASQUERADE_HOST"), "{err}");

        let mut args = REQUIRED.to_vec();
        args.extend(["--masquerade-host", "mirror docker"]);
        let err = parse(&args).validate().expect_err("bad host");
        assert!(err.to_string().contains("DNS name"), "{err}");

        let mut args = REQUIRED.to_vec();
        args.extend([
            "--masquerade-host",
            "m.io",
            "--containerd-dial-timeout",
            "soon",
        ]);
        let err = parse(&args).validate().expect_err("bad timeout");
        assert!(err.to_string().contains("CONTAINERD_DIAL_TIMEOUT"), "{err}");

        let mut args = REQUIRED.to_vec();
        args[7] = "quay.io/some/path";
        args.extend(["--masquerade-host", "m.io"]);
        let err = parse(&args).validate().expect_err("bad upstream");
        assert!(err.to_string().contains("UPSTREAM_HOST"), "{err}");
    }
}
