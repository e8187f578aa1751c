//! One pass over the node: bring the hosts line, Docker, containerd and CRI-O files in line with
//! the mirror's address and CA (or remove them all), and report what failed.

use std::net::IpAddr;

use crate::ca::{self, Ca};
use crate::containerd;
use crate::crio::{self, Reload};
use crate::hosts::{self, Disk, HostsEntry};
use crate::registry_host::{Upstream, address_host};
use crate::settings::{AddressingScheme, Config};

/// The runtime configurations the agent manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    HostsFile,
    Docker,
    Containerd,
    Crio,
    Ca,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Self::HostsFile => "hosts file",
            Self::Docker => "Docker",
            Self::Containerd => "containerd",
            Self::Crio => "CRI-O",
            Self::Ca => "mirror CA",
        }
    }
}

/// A target that could not be brought up to date.
#[derive(Debug)]
pub struct TargetFailure {
    pub target: Target,
    /// Short and stable, for the failures metric.
    pub reason: &'static str,
    pub message: String,
}

/// The result of one pass.
#[derive(Debug, Default)]
pub struct NodeReport {
    pub failures: Vec<TargetFailure>,
    /// Targets whose directories are absent on this node.
    pub skipped: Vec<Target>,
    /// The CA that was installed, if any.
    pub ca: Option<Ca>,
    /// Whether the mirror is fully configured: address and CA known, nothing failed.
    pub configured: bool,
}

impl NodeReport {
    fn fail(&mut self, target: Target, reason: &'static str, error: impl std::fmt::Display) {
        self.failures.push(TargetFailure {
            target,
            reason,
            message: error.to_string(),
        });
    }
}

/// Configures the node for the mirror at `address` (reading the CA now), or with `None` removes
/// everything the agent put there. Never stops at the first failure: each target is independent.
pub fn reconcile(config: &Config, disk: &mut dyn Disk, address: Option<IpAddr>) -> NodeReport {
    let mut report = NodeReport::default();
    reconcile_hosts_file(config, disk, address, &mut report);
    let ca = match address {
        None => None,
        Some(_) => match config.ca.read() {
            Ok(Some(ca)) => Some(ca),
            Ok(None) => {
                report.fail(
                    Target::Ca,
                    "CaMissing",
                    format!(
                        "the mirror's CA is not there yet ({}): is the mirror's TLS Secret mounted? The runtimes are configured once it is",
                        ca::describe(&config.ca)
                    ),
                );
                None
            }
            Err(err) => {
                report.fail(Target::Ca, "CaInvalid", err);
                None
            }
        },
    };
    // Without a CA only removal makes sense: files pointing at an untrusted mirror are useless,
    // while files installed with the previous CA are better left until the new one is readable.
    if address.is_none() || ca.is_some() {
        let wanted = address.zip(ca.as_ref());
        reconcile_docker(config, wanted, &mut report);
        reconcile_containerd(config, wanted, &mut report);
        reconcile_crio(config, wanted, &mut report);
    }
    report.configured = address.is_some() && ca.is_some() && report.failures.is_empty();
    report.ca = ca;
    report
}

fn reconcile_hosts_file(
    config: &Config,
    disk: &mut dyn Disk,
    address: Option<IpAddr>,
    report: &mut NodeReport,
) {
    let entry = match (config.scheme, &config.masquerade_host, address) {
        (AddressingScheme::Hostess, Some(host), Some(address)) => {
            match HostsEntry::new(address, host) {
                Ok(entry) => Some(entry),
                Err(err) => return report.fail(Target::HostsFile, "InvalidHost", err),
            }
        }
        (AddressingScheme::Services, _, _) if !config.hosts.hosts.exists() => {
            // Services mode needs no hosts file; clean up a line of an earlier hostess-mode
            // agent only where the file is mounted.
            return;
        }
        _ => None,
    };
    if let Err(err) = hosts::set_entry(&config.hosts, disk, &config.marker, entry.as_ref()) {
        report.fail(Target::HostsFile, "HostsFile", err);
    }
}

/// The host name the mirror goes by in certificate directories.
fn certificate_host(config: &Config, address: IpAddr) -> String {
    match (&config.masquerade_host, config.scheme) {
        (Some(host), AddressingScheme::Hostess) => host.clone(),
        _ => address_host(address),
    }
}

fn reconcile_docker(config: &Config, wanted: Option<(IpAddr, &Ca)>, report: &mut NodeReport) {
    let host = wanted.map(|(address, _)| certificate_host(config, address));
    let wanted = host.as_deref().zip(wanted.map(|(_, ca)| ca.pem.as_slice()));
    if let Err(err) = config.docker.apply(&config.mirror, wanted) {
        report.fail(Target::Docker, "Docker", err);
    }
}

fn reconcile_containerd(config: &Config, wanted: Option<(IpAddr, &Ca)>, report: &mut NodeReport) {
    let host = wanted.map(|(address, _)| address_host(address));
    // Services mode: ImageSwap rewrites images to `<ClusterIP>/<masquerade>/…`, so containerd
    // must trust the mirror at its own address too, not only where it stands in for the upstream.
    let mut hosts = vec![config.upstream.clone()];
    if config.scheme == AddressingScheme::Services
        && let Some(address) = host.as_deref()
    {
        hosts.push(Upstream {
            name: address.to_owned(),
            server: format!("https://{address}"),
        });
    }
    let wanted = host.as_deref().zip(wanted.map(|(_, ca)| ca.pem.as_slice()));
    match config.containerd.apply_all(&config.mirror, &hosts, wanted) {
        Ok(containerd::Outcome::Skipped) => report.skipped.push(Target::Containerd),
        Ok(containerd::Outcome::Applied { .. }) => {}
        Err(err) => report.fail(Target::Containerd, "Containerd", err),
    }
}

fn reconcile_crio(config: &Config, wanted: Option<(IpAddr, &Ca)>, report: &mut NodeReport) {
    let host = wanted.map(|(address, _)| address_host(address));
    let wanted = host.as_deref().zip(wanted.map(|(_, ca)| ca.pem.as_slice()));
    match config.crio.apply(&config.mirror, &config.upstream, wanted) {
        Ok(crio::Outcome::Skipped) => report.skipped.push(Target::Crio),
        Ok(crio::Outcome::Applied {
            drop_in_changed: true,
            ..
        }) if config.crio_reload => match crio::reload_crio(&config.proc_dir) {
            Ok(Reload::Signalled(_)) => {}
            Ok(Reload::NotRunning) => tracing::warn!(
                proc = %config.proc_dir.display(),
                "CRIO_RELOAD is set but no crio process is visible: run the agent in the host's PID namespace (hostPID), or CRI-O reads the drop-in only when it restarts"
            ),
            Err(err) => report.fail(Target::Crio, "CrioReload", err),
        },
        Ok(crio::Outcome::Applied { .. }) => {}
        Err(err) => report.fail(Target::Crio, "Crio", err),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;

    use super::*;
    use crate::hosts::RealDisk;
    use crate::settings::Settings;

    const PEM: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    fn config(root: &Path, scheme: &str) -> Config {
        let path = |p: &str| root.join(p).display().to_string();
        let args = vec![
            "hostess-agent".to_owned(),
            "--service-name=registry-mirror-docker".into(),
            "--service-namespace=wharf".into(),
            "--mirror-name=docker".into(),
            "--upstream-host=docker.io".into(),
            "--masquerade-host=mirror-docker.io".into(),
            format!("--addressing-scheme={scheme}"),
            format!("--ca-file={}", path("tls/ca.crt")),
            format!("--hosts-file={}", path("etc/hosts")),
            format!("--hosts-lock-file={}", path("run/wharf/hosts.lock")),
            format!("--hosts-backup-file={}", path("run/wharf/hosts.wharf.bak")),
            format!("--docker-certs-dir={}", path("etc/docker/certs.d")),
            format!("--containerd-certs-dir={}", path("etc/containerd/certs.d")),
            format!(
                "--crio-registries-dir={}",
                path("etc/containers/registries.conf.d")
            ),
            format!("--crio-certs-dir={}", path("etc/containers/certs.d")),
            format!("--host-root={}", root.display()),
        ];
        Cli::try_parse_from(args)
            .expect("parses")
            .settings
            .validate()
            .expect("valid")
    }

    fn node(root: &Path) {
        for dir in ["etc/containerd/certs.d", "tls"] {
            std::fs::create_dir_all(root.join(dir)).expect("dir");
        }
        std::fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n").expect("hosts");
    }

    #[test]
    fn configures_and_cleans_a_hostess_node() {
        let root = tempfile::tempdir().expect("temp dir");
        node(root.path());
        let config = config(root.path(), "hostess");
        let address: IpAddr = "10.96.0.5".parse().expect("IP");

        let report = reconcile(&config, &mut RealDisk, Some(address));
        assert!(!report.configured, "no CA yet");
        assert_eq!(report.failures[0].reason, "CaMissing");
        assert!(
            std::fs::read_to_string(root.path().join("etc/hosts"))
                .expect("hosts")
                .contains("10.96.0.5\tmirror-docker.io  # wharf:docker"),
            "the hosts line needs no CA"
        );
        assert!(
            !root
                .path()
                .join("etc/docker/certs.d/mirror-docker.io")
                .exists()
        );

        std::fs::write(root.path().join("tls/ca.crt"), PEM).expect("CA");
        let report = reconcile(&config, &mut RealDisk, Some(address));
        assert!(report.configured, "{:?}", report.failures);
        assert_eq!(report.skipped, vec![Target::Crio]);
        assert_eq!(
            std::fs::read(
                root.path()
                    .join("etc/docker/certs.d/mirror-docker.io/ca.crt")
            )
            .expect("docker CA"),
            PEM
        );
        let hosts_toml = std::fs::read_to_string(
            root.path()
                .join("etc/containerd/certs.d/docker.io/hosts.toml"),
        )
        .expect("hosts.toml");
        assert!(
            hosts_toml.contains("ca = \"/etc/containerd/certs.d/docker.io/wharf-docker-ca.crt\""),
            "{hosts_toml}"
        );

        let report = reconcile(&config, &mut RealDisk, None);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(
            std::fs::read_to_string(root.path().join("etc/hosts")).expect("hosts"),
            "127.0.0.1 localhost\n"
        );
        assert!(
            !root
                .path()
                .join("etc/docker/certs.d/mirror-docker.io")
                .exists()
        );
        assert!(
            !root
                .path()
                .join("etc/containerd/certs.d/docker.io")
                .exists()
        );
    }

    #[test]
    fn services_mode_names_the_cluster_ip_and_leaves_hosts_alone() {
        let root = tempfile::tempdir().expect("temp dir");
        node(root.path());
        std::fs::write(root.path().join("tls/ca.crt"), PEM).expect("CA");
        let config = config(root.path(), "services");
        let report = reconcile(
            &config,
            &mut RealDisk,
            Some("10.96.0.5".parse().expect("IP")),
        );
        assert!(report.configured, "{:?}", report.failures);
        assert!(
            root.path()
                .join("etc/docker/certs.d/10.96.0.5/ca.crt")
                .exists()
        );
        assert_eq!(
            std::fs::read_to_string(root.path().join("etc/hosts")).expect("hosts"),
            "127.0.0.1 localhost\n"
        );
        // Images rewritten to `10.96.0.5/<masquerade>/…` are pulled from the mirror's address.
        let by_address = root.path().join("etc/containerd/certs.d/10.96.0.5");
        let hosts_toml =
            std::fs::read_to_string(by_address.join("hosts.toml")).expect("hosts.toml");
        assert!(
            hosts_toml.contains("server = \"https://10.96.0.5\""),
            "{hosts_toml}"
        );
        assert!(by_address.join("wharf-docker-ca.crt").exists());
        assert!(
            root.path()
                .join("etc/containerd/certs.d/docker.io/hosts.toml")
                .exists()
        );
        let report = reconcile(&config, &mut RealDisk, None);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert!(!by_address.exists(), "removed with the mirror");
    }

    #[test]
    fn one_failing_target_does_not_stop_the_others() {
        let root = tempfile::tempdir().expect("temp dir");
        node(root.path());
        std::fs::write(root.path().join("tls/ca.crt"), PEM).expect("CA");
        std::fs::remove_file(root.path().join("etc/hosts")).expect("no hosts file");
        let config = config(root.path(), "hostess");
        let report = reconcile(
            &config,
            &mut RealDisk,
            Some("10.96.0.5".parse().expect("IP")),
        );
        assert!(!report.configured);
        assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
        assert_eq!(report.failures[0].target, Target::HostsFile);
        assert!(report.failures[0].message.contains("HOSTS_FILE"));
        assert!(
            root.path()
                .join("etc/containerd/certs.d/docker.io/hosts.toml")
                .exists()
        );
    }
}
