//! The ceiling of the mirror's serving rate: Debian's nginx serving plain files, over TLS with
//! exactly the TLS and file-sending settings of the mirror's rendered config, and over plain
//! HTTP. What the mirror cannot beat on the same machine, measured side by side with it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::pki::TestPki;
use crate::process::{Daemon, free_port, helper_nginx_config, make_dir};
use crate::tools::require;

/// Directives of the mirror's config that decide how fast a file is served, copied into the
/// static server. The `proxy_*` ones are the cache's and do not apply to plain files.
const SERVING_DIRECTIVES: &[&str] = &[
    "ssl_",
    "output_buffers",
    "sendfile",
    "sendfile_max_chunk",
    "tcp_nopush",
    "tcp_nodelay",
    "aio",
    "directio",
    "read_ahead",
    "postpone_output",
    "keepalive_",
    "open_file_cache",
    "open_file_cache_",
];
/// The same, for directives that live at the top of the config.
const MAIN_DIRECTIVES: &[&str] = &["worker_processes", "worker_cpu_affinity", "thread_pool"];

/// How the mirror's config serves: its top-level and server-level serving directives (as
/// written, one per entry, `;` included) and the parameters of its `listen` after the address
/// (`ssl`, socket options).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServingSettings {
    pub main: Vec<String>,
    pub server: Vec<String>,
    pub listen_parameters: String,
}

impl ServingSettings {
    /// Reads them from a rendered mirror config (one directive per line, as the renderer writes).
    pub fn of_mirror_config(rendered: &str) -> ServingSettings {
        let starts_with_any = |line: &str, names: &[&str]| {
            let name = line.split_whitespace().next().unwrap_or_default();
            names.iter().any(|wanted| {
                name == *wanted || (wanted.ends_with('_') && name.starts_with(wanted))
            })
        };
        let directives = rendered
            .lines()
            .map(str::trim)
            .filter(|line| !line.starts_with('#') && line.ends_with(';'));
        let mut settings = ServingSettings {
            main: Vec::new(),
            server: Vec::new(),
            listen_parameters: String::new(),
        };
        for line in directives {
            if starts_with_any(line, MAIN_DIRECTIVES) {
                settings.main.push(line.to_owned());
            } else if starts_with_any(line, SERVING_DIRECTIVES) {
                settings.server.push(line.to_owned());
            } else if settings.listen_parameters.is_empty()
                && let Some(rest) = line.strip_prefix("listen ")
            {
                // The first listen is the public server's: `listen <address> <parameters>;`.
                let parameters: Vec<&str> = rest
                    .trim_end_matches(';')
                    .split_whitespace()
                    .skip(1)
                    .collect();
                settings.listen_parameters = parameters.join(" ");
            }
        }
        settings
    }
}

/// A running static file server.
pub struct StaticFileServer {
    /// TLS with the mirror's settings (clients negotiate HTTP/1.1, like the mirror's).
    pub tls_port: u16,
    /// The same TLS settings with HTTP/2 enabled: shows whether the client's protocol matters.
    pub tls_http2_port: u16,
    /// Plain HTTP, sendfile: the loopback ceiling without encryption.
    pub plain_port: u16,
    daemon: Daemon,
}

impl StaticFileServer {
    /// Serves the files of `root` with the serving settings of `mirror_config` (a rendered
    /// mirror config) and the test PKI's server certificate.
    pub fn start(dir: &Path, pki: &TestPki, root: &Path, mirror_config: &str) -> StaticFileServer {
        let dir = make_dir(dir);
        let run_dir = make_dir(&dir.join("run"));
        let settings = ServingSettings::of_mirror_config(mirror_config);
        let (tls_port, tls_http2_port, plain_port) = (free_port(), free_port(), free_port());
        let indent = |lines: &[String], by: &str| {
            lines
                .iter()
                .map(|line| format!("{by}{line}\n"))
                .collect::<String>()
        };
        let listen = &settings.listen_parameters;
        let http = format!(
            r#"    access_log off;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{tls_port} {listen};
        listen 127.0.0.1:{tls_http2_port} {listen} http2;
        listen 127.0.0.1:{plain_port};
        ssl_certificate {cert};
        ssl_certificate_key {key};
{server}        root {root};
    }}
"#,
            server = indent(
                &settings
                    .server
                    .iter()
                    .filter(|line| !line.starts_with("ssl_certificate"))
                    .cloned()
                    .collect::<Vec<_>>(),
                "        "
            ),
            cert = pki.server_cert.display(),
            key = pki.server_key.display(),
            root = root.display(),
        );
        let config = helper_nginx_config(&run_dir, &indent(&settings.main, ""), 1024, &http);
        let config_file = dir.join("nginx.conf");
        std::fs::write(&config_file, config).expect("write the static server config");
        let mut command = Command::new(require("nginx"));
        command.arg("-e").arg("stderr").arg("-c").arg(&config_file);
        let mut daemon = Daemon::spawn("static file nginx", command, &dir.join("nginx.log"));
        for port in [tls_port, tls_http2_port, plain_port] {
            daemon.wait_for_port(
                SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(20),
            );
        }
        StaticFileServer {
            tls_port,
            tls_http2_port,
            plain_port,
            daemon,
        }
    }

    /// `https://127.0.0.1:<tls_port>/<file>`.
    pub fn tls_url(&self, file: &str) -> String {
        format!("https://127.0.0.1:{}/{file}", self.tls_port)
    }

    /// `https://127.0.0.1:<tls_http2_port>/<file>`.
    pub fn tls_http2_url(&self, file: &str) -> String {
        format!("https://127.0.0.1:{}/{file}", self.tls_http2_port)
    }

    /// `http://127.0.0.1:<plain_port>/<file>`.
    pub fn plain_url(&self, file: &str) -> String {
        format!("http://127.0.0.1:{}/{file}", self.plain_port)
    }

    /// CPU seconds the workers have used so far.
    pub fn worker_cpu_seconds(&self) -> f64 {
        self.daemon
            .pid()
            .map_or(0.0, crate::process::children_cpu_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_core::nginx::{MirrorNginxConfig, NginxPaths, render};

    fn rendered() -> String {
        render(&MirrorNginxConfig {
            upstream: "registry.example.com".into(),
            masquerade_host: "mirror-registry.example.com".into(),
            upstream_credentials: None,
            cache_max_size_bytes: 1 << 30,
            tag_ttl_seconds: 60,
            extra_upstream_ca_bundle: false,
            paths: NginxPaths::in_pod(),
        })
    }

    #[test]
    fn copies_every_tls_and_sending_directive_of_the_mirror() {
        let text = rendered();
        let settings = ServingSettings::of_mirror_config(&text);
        let mirror_tls: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|line| line.starts_with("ssl_"))
            .collect();
        assert!(mirror_tls.len() >= 5, "{mirror_tls:?}");
        for line in mirror_tls {
            assert!(settings.server.iter().any(|s| s == line), "{line} missing");
        }
        for wanted in ["sendfile on;", "tcp_nopush on;"] {
            assert!(settings.server.iter().any(|s| s == wanted), "{wanted}");
        }
        assert!(
            settings
                .server
                .iter()
                .any(|s| s.starts_with("output_buffers "))
        );
        assert_eq!(settings.main, ["worker_processes auto;"]);
        assert_eq!(settings.listen_parameters, "ssl");
    }

    #[test]
    fn leaves_out_the_cache_and_the_upstream_side() {
        let settings = ServingSettings::of_mirror_config(&rendered());
        for line in settings.main.iter().chain(&settings.server) {
            assert!(!line.starts_with("proxy_"), "{line}");
            assert!(!line.starts_with("listen"), "{line}");
        }
    }

    #[test]
    fn keeps_listen_socket_options() {
        let settings = ServingSettings::of_mirror_config(
            "server {\n    listen 127.0.0.1:5000 ssl sndbuf=4m;\n    ssl_protocols TLSv1.3;\n}\nserver {\n    listen unix:/tmp/x.sock;\n}\n",
        );
        assert_eq!(settings.listen_parameters, "ssl sndbuf=4m");
        assert_eq!(settings.server, ["ssl_protocols TLSv1.3;"]);
    }
}
