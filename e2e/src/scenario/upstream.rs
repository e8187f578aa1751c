//! An upstream registry on the node's bridge: Debian's `docker-registry` over TLS (certificate
//! signed by the CA the node trusts), holding images the scenarios push, counting the blob
//! downloads it serves from its access log, stoppable and restartable, stopped on drop.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use wharf_core::tls::{CertifiedKey, issue_server_cert};

use crate::cluster::repo_root;
use crate::node::{NODE_IP, node_trusted_ca};
use crate::oci::{OciLayout, sha256_hex};

/// How long the registry may take to listen (it starts in well under a second).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running upstream registry on `NODE_IP:<port>`.
pub struct UpstreamRegistry {
    port: u16,
    dir: PathBuf,
    registry: Option<Child>,
}

/// An image pushed to the upstream: its reference and the blobs a pull downloads.
#[derive(Clone, Debug)]
pub struct PushedImage {
    /// `10.244.0.1:<port>/<repository>:<tag>`, the name pods use.
    pub reference: String,
    /// `<repository>` alone (e.g. `demo/busybox`).
    pub repository: String,
    /// The tag.
    pub tag: String,
    /// Digests of the config and every layer: what a cold pull downloads.
    pub blobs: Vec<String>,
    /// What `cat /wharf-demo-id` prints in a container of the image.
    pub marker: String,
}

impl UpstreamRegistry {
    /// Starts a registry named `name` (its files live in `target/e2e-upstreams/<name>-<port>`).
    pub fn start(name: &str) -> Self {
        let port = free_node_port();
        let dir = repo_root()
            .join("target/e2e-upstreams")
            .join(format!("{name}-{port}"));
        let _stale = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data"))
            .unwrap_or_else(|err| panic!("creating {}: {err}", dir.display()));
        let upstream = Self {
            port,
            dir,
            registry: None,
        };
        upstream.write_tls();
        upstream.write_config();
        let mut upstream = upstream;
        upstream.start_again();
        upstream
    }

    /// `10.244.0.1:<port>`: the registry host images name.
    pub fn host(&self) -> String {
        format!("{NODE_IP}:{}", self.port)
    }

    /// The CA (PEM) that signed the registry's certificate: the node's, which the mirror must be
    /// told about (the `CA_CERTIFICATE_BUNDLE` ConfigMap).
    pub fn ca_pem() -> String {
        let (cert, _) = node_trusted_ca();
        std::fs::read_to_string(&cert).unwrap_or_else(|err| {
            panic!(
                "reading the node CA {}: {err}; is the node up (`bash xtask/scripts/cluster.sh up --node`)?",
                cert.display()
            )
        })
    }

    /// Stops the registry: connections are refused until [`Self::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.registry.take() {
            let _killed = child.kill();
            let _reaped = child.wait();
        }
    }

    /// Starts the registry again with the same storage, port and log.
    pub fn start_again(&mut self) {
        if self.registry.is_some() {
            return;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|err| panic!("opening {}: {err}", self.log_path().display()));
        let errors = log.try_clone().expect("duplicating the log handle");
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(errors)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "starting docker-registry: {err}; run `bash xtask/scripts/dataplane-deps.sh`"
                )
            });
        let address: SocketAddr = format!("{NODE_IP}:{}", self.port)
            .parse()
            .expect("a socket address");
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "docker-registry exited ({status}) before listening on {address}:\n{}",
                    self.log_tail(30)
                );
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {address} within {START_TIMEOUT:?}:\n{}",
                self.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.registry = Some(child);
    }

    /// Pushes a copy of `target/images/busybox.tar` (built by `cargo xtask images busybox`) as
    /// `<repository>:<tag>`, with a file `/wharf-demo-id` holding `marker` added to its layer:
    /// its blobs are new to the node's containerd (which holds wharf's own busybox), so a pull
    /// really downloads every one of them.
    pub fn push_busybox(&self, repository: &str, tag: &str, marker: &str) -> PushedImage {
        let layout = self
            .dir
            .join(format!("layout-{}", repository.replace('/', "-")));
        let blobs = build_marked_busybox(&layout, tag, marker);
        let reference = format!("{}/{repository}:{tag}", self.host());
        let certs = self.dir.join("client-certs");
        let output = Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--retry-times", "2"])
            .arg("--dest-cert-dir")
            .arg(&certs)
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{reference}"))
            .output()
            .unwrap_or_else(|err| panic!("running skopeo: {err}"));
        assert!(
            output.status.success(),
            "pushing {reference} with skopeo failed:\n{}\nregistry log:\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log_tail(20)
        );
        PushedImage {
            reference,
            repository: repository.to_owned(),
            tag: tag.to_owned(),
            blobs,
            marker: marker.to_owned(),
        }
    }

    /// Blob downloads served so far (GETs of `/v2/…/blobs/<digest>` answered 200 or 206).
    pub fn blob_gets(&self) -> usize {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        log.lines().filter(|line| is_blob_download(line)).count()
    }

    /// The last `lines` lines of the registry's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("registry.log")
    }

    /// A server certificate for the bridge address, signed by the node's CA. Its common name is
    /// the address too: nginx checks an upstream addressed by IP against the name.
    fn write_tls(&self) {
        let (ca_cert, ca_key) = node_trusted_ca();
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
        };
        let ca = CertifiedKey {
            cert_pem: read(&ca_cert),
            key_pem: read(&ca_key),
        };
        let server = issue_server_cert(
            &ca,
            &[NODE_IP.to_owned()],
            Duration::from_secs(24 * 3600),
            SystemTime::now(),
        )
        .expect("issuing the upstream's certificate");
        write(&self.dir.join("server.crt"), &server.cert_pem);
        write(&self.dir.join("server.key"), &server.key_pem);
        std::fs::create_dir_all(self.dir.join("client-certs")).expect("creating the cert dir");
        write(&self.dir.join("client-certs/ca.crt"), &ca.cert_pem);
    }

    fn write_config(&self) {
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
             http:\n  addr: {NODE_IP}:{port}\n  secret: wharf-e2e-upstream\n  tls:\n    certificate: {cert}\n    key: {key}\n",
            data = self.dir.join("data").display(),
            port = self.port,
            cert = self.dir.join("server.crt").display(),
            key = self.dir.join("server.key").display(),
        );
        write(&self.dir.join("config.yml"), &config);
    }
}

impl Drop for UpstreamRegistry {
    fn drop(&mut self) {
        self.stop();
        // Kept after a failure: its log explains what the upstream served.
        if !std::thread::panicking() {
            let _removed = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `10.244.0.1 - - [date] "GET /v2/demo/busybox/blobs/sha256:… HTTP/1.1" 200 1234 "" "agent"`
fn is_blob_download(line: &str) -> bool {
    let Some((_, rest)) = line.split_once('"') else {
        return false;
    };
    let Some((request, rest)) = rest.split_once('"') else {
        return false;
    };
    let mut request = request.split_whitespace();
    let (Some(method), Some(uri)) = (request.next(), request.next()) else {
        return false;
    };
    let status = rest.split_whitespace().next().unwrap_or("");
    method == "GET" && uri.contains("/blobs/sha256:") && matches!(status, "200" | "206")
}

/// A port on the bridge address that nothing listens on right now.
fn free_node_port() -> u16 {
    TcpListener::bind((NODE_IP, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|err| {
            panic!("binding {NODE_IP}:0: {err}; is the node up (`bash xtask/scripts/cluster.sh up --node`)?")
        })
}

/// Writes an OCI layout at `layout` holding busybox as `tag`, with the marker file added to its
/// layer; returns the digests of the config and the layer.
fn build_marked_busybox(layout: &Path, tag: &str, marker: &str) -> Vec<String> {
    let archive = repo_root().join("target/images/busybox.tar");
    assert!(
        archive.exists(),
        "{} is missing: run `cargo xtask images busybox`",
        archive.display()
    );
    let _stale = std::fs::remove_dir_all(layout);
    let source = layout.with_extension("source");
    let _stale = std::fs::remove_dir_all(&source);
    std::fs::create_dir_all(&source).expect("creating the unpack directory");
    run(
        Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&source),
        "unpacking busybox.tar",
    );
    let index = read_json(&source.join("index.json"));
    let manifest = read_json(&blob_path(&source, &index["manifests"][0]["digest"]));
    let mut config = read_json(&blob_path(&source, &manifest["config"]["digest"]));
    let layer = blob_path(&source, &manifest["layers"][0]["digest"]);

    // The layer as a plain tar, the marker appended (GNU tar keeps the archive well-formed).
    let layer_tar = source.join("layer.tar");
    let plain = Command::new("gzip")
        .arg("-dc")
        .arg(&layer)
        .output()
        .unwrap_or_else(|err| panic!("running gzip: {err}"));
    assert!(plain.status.success(), "gunzip of the busybox layer failed");
    write_bytes(&layer_tar, &plain.stdout);
    let files = source.join("marker");
    std::fs::create_dir_all(&files).expect("creating the marker directory");
    write(&files.join("wharf-demo-id"), &format!("{marker}\n"));
    run(
        Command::new("tar")
            .args(["--owner=0", "--group=0", "--mode=0644", "-rf"])
            .arg(&layer_tar)
            .arg("-C")
            .arg(&files)
            .arg("wharf-demo-id"),
        "appending the marker to the layer",
    );
    let plain = std::fs::read(&layer_tar).expect("reading the layer");
    let compressed = Command::new("gzip")
        .args(["-n", "-c"])
        .arg(&layer_tar)
        .output()
        .unwrap_or_else(|err| panic!("running gzip: {err}"));
    assert!(compressed.status.success(), "gzip of the layer failed");

    let oci = OciLayout::create(layout);
    let (layer_digest, layer_size) = oci.put(&compressed.stdout);
    config["rootfs"]["diff_ids"] = serde_json::json!([format!("sha256:{}", sha256_hex(&plain))]);
    let (config_digest, config_size) = oci.put(&serde_json::to_vec(&config).expect("config JSON"));
    let mut manifest = manifest;
    manifest["config"]["digest"] = config_digest.clone().into();
    manifest["config"]["size"] = config_size.into();
    manifest["layers"] = serde_json::json!([{
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": layer_digest,
        "size": layer_size,
    }]);
    oci.finish(&serde_json::to_vec(&manifest).expect("manifest JSON"), tag);
    let _removed = std::fs::remove_dir_all(&source);
    vec![config_digest, layer_digest]
}

fn blob_path(layout: &Path, digest: &serde_json::Value) -> PathBuf {
    let digest = digest.as_str().expect("a digest string");
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

fn read_json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read(path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|err| panic!("parsing {}: {err}", path.display()))
}

fn write(path: &Path, text: &str) {
    write_bytes(path, text.as_bytes());
}

fn write_bytes(path: &Path, bytes: &[u8]) {
    std::fs::File::create(path)
        .and_then(|mut file| file.write_all(bytes))
        .unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
}

fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("{what}: cannot run {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_answered_blob_downloads() {
        let ok = r#"10.244.0.1 - - [1/Jan/2025:00:00:00 +0000] "GET /v2/demo/busybox/blobs/sha256:ab HTTP/1.1" 200 5 "" "containerd""#;
        let ranged = ok.replace("\" 200 ", "\" 206 ");
        let head = ok.replace("GET", "HEAD");
        let manifest = ok.replace("blobs/sha256:ab", "manifests/1");
        let missing = ok.replace("\" 200 ", "\" 404 ");
        let app_log = r#"time="2025" level=info msg="response completed" http.request.uri="/v2/x/blobs/sha256:ab""#;
        assert!(is_blob_download(ok));
        assert!(is_blob_download(&ranged));
        for other in [&head, &manifest, &missing, &app_log.to_owned()] {
            assert!(!is_blob_download(other), "{other}");
        }
    }
}
