//! The mirror under test: Debian's nginx running exactly what `wharf_core::nginx::render`
//! produced, started by the same command the StatefulSet runs (`container_command`); only the
//! file paths (`NginxPaths`) point into a scratch directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wharf_core::nginx::{MirrorNginxConfig, NginxPaths, container_command, render, validate};

use crate::pki::TestPki;
use crate::process::{Daemon, free_port, make_dir};
use crate::tools::{path_with_sbin, require};

/// What the RegistryMirror would say.
#[derive(Clone, Debug)]
pub struct MirrorOptions {
    pub credentials: Option<(String, String)>,
    pub tag_ttl_seconds: u32,
    /// Trust the test CA through the extra bundle (`CA_CERTIFICATE_BUNDLE`), with Debian's
    /// system CAs as the system bundle; otherwise the test CA is the system bundle.
    pub extra_ca_bundle: bool,
    pub cache_max_size_bytes: u64,
    pub masquerade_host: String,
}

impl Default for MirrorOptions {
    fn default() -> Self {
        MirrorOptions {
            credentials: None,
            tag_ttl_seconds: 60,
            extra_ca_bundle: false,
            cache_max_size_bytes: 4 << 30,
            masquerade_host: "mirror.wharf.test".to_owned(),
        }
    }
}

/// A running mirror.
pub struct Mirror {
    pub port: u16,
    config: MirrorNginxConfig,
    dir: PathBuf,
    daemon: Option<Daemon>,
}

impl Mirror {
    pub fn start(dir: &Path, pki: &TestPki, upstream: &str, options: &MirrorOptions) -> Mirror {
        require("nginx");
        let dir = make_dir(dir);
        let port = free_port();
        let run_dir = make_dir(&dir.join("run"));
        let resolv_conf = dir.join("resolv.conf");
        // Never asked: the upstream and the redirect targets are IP addresses.
        std::fs::write(&resolv_conf, "nameserver 127.0.0.1\n").expect("write resolv.conf");
        let (system_ca_bundle, extra_ca_bundle) = if options.extra_ca_bundle {
            (
                "/etc/ssl/certs/ca-certificates.crt".into(),
                pki.ca_cert.clone(),
            )
        } else {
            (pki.ca_cert.clone(), dir.join("no-extra-ca-bundle.crt"))
        };
        let paths = NginxPaths {
            cache_dir: text(&dir.join("cache")),
            tls_cert: text(&pki.server_cert),
            tls_key: text(&pki.server_key),
            system_ca_bundle: text(&system_ca_bundle),
            extra_ca_bundle: text(&extra_ca_bundle),
            run_dir: text(&run_dir),
            listen_port: port,
            listen_address: "127.0.0.1".to_owned(),
            config_file: text(&dir.join("nginx.conf")),
            resolv_conf: text(&resolv_conf),
        };
        let config = MirrorNginxConfig {
            upstream: upstream.to_owned(),
            masquerade_host: options.masquerade_host.clone(),
            upstream_credentials: options.credentials.clone(),
            cache_max_size_bytes: options.cache_max_size_bytes,
            tag_ttl_seconds: options.tag_ttl_seconds,
            extra_upstream_ca_bundle: options.extra_ca_bundle,
            paths,
        };
        let mut mirror = Mirror {
            port,
            config,
            dir,
            daemon: None,
        };
        mirror.write_config();
        mirror.start_again();
        mirror
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The config nginx runs.
    pub fn rendered(&self) -> String {
        render(&self.config)
    }

    pub fn config(&self) -> &MirrorNginxConfig {
        &self.config
    }

    /// nginx's output: the client access log (`<addr> "<request>" <status> … cache=<status>`),
    /// the upstream access log (`upstream "<request>" …`) and errors.
    pub fn log(&self) -> PathBuf {
        self.dir.join("nginx.log")
    }

    /// CPU seconds nginx's workers have used so far.
    pub fn worker_cpu_seconds(&self) -> f64 {
        self.daemon
            .as_ref()
            .and_then(Daemon::pid)
            .map_or(0.0, crate::process::children_cpu_seconds)
    }

    /// Stops nginx (the cache stays on disk).
    pub fn stop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.stop();
        }
    }

    /// Stops and starts nginx on the same cache, as a pod restart does.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Stops nginx, empties the cache and starts again: the next pulls are cold.
    pub fn wipe_cache(&mut self) {
        self.stop();
        let cache = Path::new(&self.config.paths.cache_dir);
        if cache.exists() {
            std::fs::remove_dir_all(cache)
                .unwrap_or_else(|e| panic!("empty {}: {e}", cache.display()));
        }
        self.start_again();
    }

    /// Renders a changed config (as mirror-controller would after a spec change) and restarts.
    pub fn reconfigure(&mut self, change: impl FnOnce(&mut MirrorNginxConfig)) {
        change(&mut self.config);
        self.write_config();
        self.restart();
    }

    /// Starts nginx with the container's start command.
    pub fn start_again(&mut self) {
        if self.daemon.is_some() {
            return;
        }
        let command_line = container_command(&self.config.paths);
        let mut command = Command::new(&command_line[0]);
        command
            .args(&command_line[1..])
            .env("PATH", path_with_sbin());
        let mut daemon = Daemon::spawn("mirror nginx", command, &self.log());
        daemon.wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(20),
        );
        daemon.wait_for_socket(
            Path::new(&self.config.paths.upstream_socket()),
            Duration::from_secs(5),
        );
        self.daemon = Some(daemon);
    }

    fn write_config(&self) {
        validate(&self.config)
            .unwrap_or_else(|e| panic!("the test's mirror config is invalid: {e}"));
        std::fs::write(&self.config.paths.config_file, render(&self.config))
            .expect("write the rendered config");
    }

    pub fn log_tail(&self) -> String {
        crate::process::tail(&self.log(), 40)
    }
}

fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
