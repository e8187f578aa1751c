//! The upstream: Debian's `docker-registry` over TLS, optionally with htpasswd or token auth,
//! optionally redirecting blob downloads (its `redirect` storage middleware) to a second server,
//! a plain nginx serving the registry's storage directory over TLS, as object stores do. Both
//! log every request, which is how tests count what the mirror fetched.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::image::ImageLayout;
use crate::pki::TestPki;
use crate::process::{Daemon, free_port, helper_nginx_config, make_dir, run};
use crate::tools::require;

/// How the upstream behaves.
#[derive(Clone, Debug, Default)]
pub struct UpstreamOptions {
    /// Require these Basic credentials (htpasswd).
    pub basic_auth: Option<(String, String)>,
    /// Require bearer tokens from a realm (nothing serves it: enough to see the challenge).
    pub token_auth: bool,
    /// Answer blob GETs with a 307 to the blob server.
    pub redirect_blobs: bool,
    /// nginx `limit_rate` of the blob server per connection, e.g. `"8m"` (a slow object store).
    pub blob_rate_limit: Option<String>,
}

/// A running upstream registry.
pub struct Upstream {
    pub port: u16,
    pub blob_server_port: Option<u16>,
    dir: PathBuf,
    cert_dir: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    options: UpstreamOptions,
    registry: Option<Daemon>,
    blob_server: Option<Daemon>,
    /// An nginx answering every request on the registry's port with an error status.
    failing: Option<Daemon>,
}

/// What the upstream served for one blob.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fetches {
    /// Requests that returned blob data (200 or 206), counting the blob server's.
    pub requests: usize,
    /// Blob bytes sent.
    pub bytes: u64,
    /// Redirects the registry answered.
    pub redirects: usize,
}

/// The token realm in the registry's challenge (nothing listens there).
pub const TOKEN_REALM: &str = "https://127.0.0.1:9/token";

impl Upstream {
    pub fn start(dir: &Path, pki: &TestPki, options: UpstreamOptions) -> Upstream {
        require("docker-registry");
        let dir = make_dir(dir);
        make_dir(&dir.join("data"));
        let port = free_port();
        let blob_server_port = options.redirect_blobs.then(free_port);
        write_registry_config(&dir, pki, port, blob_server_port, &options);
        if let Some(blob_port) = blob_server_port {
            write_blob_server_config(&dir, pki, blob_port, options.blob_rate_limit.as_deref());
        }
        let mut upstream = Upstream {
            port,
            blob_server_port,
            dir,
            cert_dir: pki.cert_dir.clone(),
            server_cert: pki.server_cert.clone(),
            server_key: pki.server_key.clone(),
            options,
            registry: None,
            blob_server: None,
            failing: None,
        };
        upstream.start_again();
        upstream
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// CPU seconds the registry process has used so far.
    pub fn registry_cpu_seconds(&self) -> f64 {
        self.registry
            .as_ref()
            .and_then(Daemon::pid)
            .map_or(0.0, crate::process::process_cpu_seconds)
    }

    /// The registry (and blob server) stop answering: connections are refused.
    pub fn stop(&mut self) {
        if let Some(mut failing) = self.failing.take() {
            failing.stop();
        }
        if let Some(mut registry) = self.registry.take() {
            registry.stop();
        }
        if let Some(mut blob_server) = self.blob_server.take() {
            blob_server.stop();
        }
    }

    /// Replaces the registry by a server answering `status` to everything, on the same port
    /// and certificate (an upstream that is up but failing).
    pub fn fail_with(&mut self, status: u16) {
        self.stop();
        let run_dir = make_dir(&self.dir.join("failing-run"));
        let http = format!(
            r#"    access_log {run}/access.log;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ return {status}; }}
    }}
"#,
            run = run_dir.display(),
            port = self.port,
            cert = self.server_cert.display(),
            key = self.server_key.display(),
        );
        let config = helper_nginx_config(&run_dir, "worker_processes 1;\n", 256, &http);
        let config_file = run_dir.join("nginx.conf");
        std::fs::write(&config_file, config).expect("write the failing server's config");
        let mut command = Command::new(require("nginx"));
        command.args(["-e", "stderr", "-c"]).arg(&config_file);
        let mut daemon = Daemon::spawn(
            "failing upstream nginx",
            command,
            &run_dir.join("stderr.log"),
        );
        daemon.wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(20),
        );
        self.failing = Some(daemon);
    }

    /// Starts what [`Self::stop`] stopped, with the same storage.
    pub fn start_again(&mut self) {
        if let Some(mut failing) = self.failing.take() {
            failing.stop();
        }
        if let Some(blob_port) = self.blob_server_port
            && self.blob_server.is_none()
        {
            let mut command = Command::new(require("nginx"));
            command
                .arg("-e")
                .arg("stderr")
                .arg("-c")
                .arg(self.dir.join("blob-server.conf"));
            let mut daemon = Daemon::spawn(
                "blob server nginx",
                command,
                &self.dir.join("blob-server.stderr"),
            );
            daemon.wait_for_port(
                SocketAddr::from(([127, 0, 0, 1], blob_port)),
                Duration::from_secs(20),
            );
            self.blob_server = Some(daemon);
        }
        if self.registry.is_none() {
            let mut command = Command::new(require("docker-registry"));
            command.arg("serve").arg(self.dir.join("config.yml"));
            let mut daemon = Daemon::spawn("docker-registry", command, &self.registry_log());
            daemon.wait_for_port(
                SocketAddr::from(([127, 0, 0, 1], self.port)),
                Duration::from_secs(20),
            );
            self.registry = Some(daemon);
        }
    }

    /// Pushes `layout`'s `tag` (every platform of an index) as `repository:dest_tag`,
    /// keeping digests.
    pub fn push(&self, layout: &ImageLayout, tag: &str, repository: &str, dest_tag: &str) {
        self.push_from(&layout.reference(tag), repository, dest_tag);
    }

    /// Pushes the image skopeo names `source` (e.g. `dir:/path`) as `repository:dest_tag`.
    pub fn push_from(&self, source: &str, repository: &str, dest_tag: &str) {
        let mut command = Command::new(require("skopeo"));
        command
            .args([
                "--insecure-policy",
                "copy",
                "--all",
                "--preserve-digests",
                "--retry-times",
                "2",
            ])
            .arg("--dest-cert-dir")
            .arg(&self.cert_dir);
        if let Some((user, password)) = &self.options.basic_auth {
            command
                .arg("--dest-creds")
                .arg(format!("{user}:{password}"));
        }
        command
            .arg(source)
            .arg(format!("docker://{}/{repository}:{dest_tag}", self.host()));
        if let Err(error) = run(&mut command) {
            panic!(
                "pushing {source} to the upstream failed: {error}\nregistry log:\n{}",
                self.log_tail()
            );
        }
    }

    /// What the upstream served for `digest` so far.
    pub fn blob_fetches(&self, digest: &str) -> Fetches {
        let mut fetches = Fetches::default();
        let blob_uri = format!("/blobs/{digest}");
        for line in read_lines(&self.registry_log()) {
            let Some(entry) = AccessLogEntry::parse_registry(&line) else {
                continue;
            };
            if entry.method != "GET" || !entry.uri.ends_with(&blob_uri) {
                continue;
            }
            match entry.status {
                200 | 206 => {
                    fetches.requests += 1;
                    fetches.bytes += entry.bytes;
                }
                301..=308 => fetches.redirects += 1,
                _ => {}
            }
        }
        let hex = digest.split(':').nth(1).unwrap_or(digest);
        for line in read_lines(&self.blob_server_log()) {
            let Some(entry) = AccessLogEntry::parse_blob_server(&line) else {
                continue;
            };
            if entry.method == "GET"
                && entry.uri.contains(hex)
                && entry.uri.ends_with("/data")
                && matches!(entry.status, 200 | 206)
            {
                fetches.requests += 1;
                fetches.bytes += entry.bytes;
            }
        }
        fetches
    }

    /// Every blob-data request the upstream answered (registry and blob server).
    pub fn all_blob_fetches(&self) -> Fetches {
        let mut total = Fetches::default();
        for line in read_lines(&self.registry_log()) {
            if let Some(entry) = AccessLogEntry::parse_registry(&line)
                && entry.method == "GET"
                && entry.uri.contains("/blobs/sha256:")
            {
                match entry.status {
                    200 | 206 => {
                        total.requests += 1;
                        total.bytes += entry.bytes;
                    }
                    301..=308 => total.redirects += 1,
                    _ => {}
                }
            }
        }
        for line in read_lines(&self.blob_server_log()) {
            if let Some(entry) = AccessLogEntry::parse_blob_server(&line)
                && entry.method == "GET"
                && matches!(entry.status, 200 | 206)
            {
                total.requests += 1;
                total.bytes += entry.bytes;
            }
        }
        total
    }

    /// Requests for manifests (any method), as `(method, uri, status)`.
    pub fn manifest_requests(&self) -> Vec<(String, String, u16)> {
        read_lines(&self.registry_log())
            .iter()
            .filter_map(|line| AccessLogEntry::parse_registry(line))
            .filter(|entry| entry.uri.contains("/manifests/"))
            .map(|entry| (entry.method, entry.uri, entry.status))
            .collect()
    }

    /// The registry's log (its access lines are in Apache combined format).
    pub fn registry_log(&self) -> PathBuf {
        self.dir.join("registry.log")
    }

    /// The blob server's access log (empty without redirects).
    pub fn blob_server_log(&self) -> PathBuf {
        self.dir.join("blob-server.access.log")
    }

    pub fn log_tail(&self) -> String {
        crate::process::tail(&self.registry_log(), 30)
    }
}

/// One request from an access log.
#[derive(Debug)]
struct AccessLogEntry {
    method: String,
    uri: String,
    status: u16,
    bytes: u64,
}

impl AccessLogEntry {
    /// `127.0.0.1 - user [date] "GET /uri HTTP/1.1" 206 4194304 "referer" "agent"`
    fn parse_registry(line: &str) -> Option<AccessLogEntry> {
        if line.starts_with("time=") {
            return None;
        }
        let (_, rest) = line.split_once('"')?;
        let (request, rest) = rest.split_once('"')?;
        let mut request = request.split_whitespace();
        let method = request.next()?.to_owned();
        let uri = request.next()?;
        let uri = uri.split_once('?').map_or(uri, |(path, _)| path).to_owned();
        let mut fields = rest.split_whitespace();
        let status = fields.next()?.parse().ok()?;
        let bytes = fields.next()?.parse().unwrap_or(0);
        Some(AccessLogEntry {
            method,
            uri,
            status,
            bytes,
        })
    }

    /// `GET /uri 206 4194304` (the blob server's log_format).
    fn parse_blob_server(line: &str) -> Option<AccessLogEntry> {
        let mut fields = line.split_whitespace();
        Some(AccessLogEntry {
            method: fields.next()?.to_owned(),
            uri: fields.next()?.to_owned(),
            status: fields.next()?.parse().ok()?,
            bytes: fields.next()?.parse().ok()?,
        })
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn write_registry_config(
    dir: &Path,
    pki: &TestPki,
    port: u16,
    blob_server_port: Option<u16>,
    options: &UpstreamOptions,
) {
    let mut config = format!(
        r#"version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: wharf-data-plane-test
  tls:
    certificate: {cert}
    key: {key}
"#,
        data = dir.join("data").display(),
        cert = pki.server_cert.display(),
        key = pki.server_key.display(),
    );
    if let Some((user, password)) = &options.basic_auth {
        let htpasswd = dir.join("htpasswd");
        let output = run(Command::new(require("htpasswd")).args(["-Bbn", user, password]))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&htpasswd, &output.stdout).expect("write htpasswd");
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: wharf-test-upstream\n    path: {}\n",
            htpasswd.display()
        ));
    } else if options.token_auth {
        config.push_str(&format!(
            "auth:\n  token:\n    realm: {TOKEN_REALM}\n    service: wharf-test-upstream\n    issuer: wharf-test-issuer\n    rootcertbundle: {}\n",
            pki.ca_cert.display()
        ));
    }
    if let Some(blob_port) = blob_server_port {
        config.push_str(&format!(
            "middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: https://127.0.0.1:{blob_port}\n"
        ));
    }
    std::fs::write(dir.join("config.yml"), config).expect("write the registry config");
}

fn write_blob_server_config(dir: &Path, pki: &TestPki, port: u16, rate_limit: Option<&str>) {
    let run_dir = make_dir(&dir.join("blob-server-run"));
    let limit = rate_limit
        .map(|rate| format!("limit_rate {rate};"))
        .unwrap_or_default();
    let http = format!(
        r#"    log_format counted '$request_method $uri $status $body_bytes_sent';
    access_log {log} counted;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {data};
        default_type application/octet-stream;
        {limit}
    }}
"#,
        log = dir.join("blob-server.access.log").display(),
        cert = pki.server_cert.display(),
        key = pki.server_key.display(),
        data = dir.join("data").display(),
    );
    let config = helper_nginx_config(&run_dir, "worker_processes 1;\n", 1024, &http);
    std::fs::write(dir.join("blob-server.conf"), config).expect("write the blob server config");
}
