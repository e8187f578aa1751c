//! The pull clients: containerd's `ctr` (each [`Containerd`] is a private daemon with its own
//! content store, like one node) reading a `hosts.toml` that names the mirror, and `skopeo`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{Daemon, make_dir, run};
use crate::tools::require;

/// A private containerd: its own root, state and socket.
pub struct Containerd {
    dir: PathBuf,
    socket: PathBuf,
    hosts_dir: PathBuf,
    daemon: Daemon,
}

impl Containerd {
    pub fn start(dir: &Path) -> Containerd {
        let containerd = require("containerd");
        require("ctr");
        let dir = make_dir(dir);
        let socket = dir.join("containerd.sock");
        let hosts_dir = make_dir(&dir.join("certs.d"));
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  level = "warn"
"#,
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            socket = socket.display(),
        );
        let config_file = dir.join("config.toml");
        std::fs::write(&config_file, config).expect("write containerd's config");
        let mut command = Command::new(containerd);
        command.arg("--config").arg(&config_file);
        let mut daemon = Daemon::spawn("containerd", command, &dir.join("containerd.log"));
        daemon.wait_for_socket(&socket, Duration::from_secs(30));
        Containerd {
            dir,
            socket,
            hosts_dir,
            daemon,
        }
    }

    /// Writes `certs.d/<registry>/hosts.toml` naming `mirror` (trusted with `ca`) for pulls of
    /// `registry`'s images. The upstream itself (`server`, tried last) is deliberately not
    /// trusted: a pull that bypassed the mirror would fail instead of passing unnoticed.
    pub fn use_mirror(&self, registry: &str, mirror: &str, ca: &Path) {
        let dir = make_dir(&self.hosts_dir.join(registry));
        let hosts = format!(
            "server = \"https://{registry}\"\n\n[host.\"https://{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{}\"\n",
            ca.display()
        );
        std::fs::write(dir.join("hosts.toml"), hosts).expect("write hosts.toml");
    }

    /// Writes `certs.d/<registry>/hosts.toml` for pulling `registry`'s images directly (the
    /// baseline the mirror is compared with).
    pub fn use_registry_directly(&self, registry: &str, ca: &Path) {
        let dir = make_dir(&self.hosts_dir.join(registry));
        // containerd 1.6 rejects a hosts.toml without a `host` table.
        let hosts = format!(
            "server = \"https://{registry}\"\n\n[host.\"https://{registry}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{}\"\n",
            ca.display()
        );
        std::fs::write(dir.join("hosts.toml"), hosts).expect("write hosts.toml");
    }

    /// `ctr images pull` (fetch and unpack), for `platform` or the machine's own.
    pub fn pull(&self, reference: &str, platform: Option<&str>) -> Result<(), String> {
        let mut command = self.ctr();
        command
            .args(["images", "pull", "--snapshotter", "native", "--hosts-dir"])
            .arg(&self.hosts_dir);
        if let Some(platform) = platform {
            command.args(["--platform", platform]);
        }
        command.arg(reference);
        run(&mut command).map(|_| ())
    }

    /// The digest an image name points to, from `ctr images ls`.
    pub fn image_target(&self, reference: &str) -> Option<String> {
        let output = run(self.ctr().args(["images", "ls"])).ok()?;
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .skip(1)
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .find(|fields| fields.first() == Some(&reference))
            .and_then(|fields| fields.get(2).map(|digest| (*digest).to_owned()))
    }

    /// Every digest in the content store.
    pub fn content_digests(&self) -> Vec<String> {
        run(self.ctr().args(["content", "ls", "-q"]))
            .map(|output| {
                String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Reads one blob from the content store.
    pub fn content(&self, digest: &str) -> Vec<u8> {
        run(self.ctr().args(["content", "get", digest]))
            .map(|output| output.stdout)
            .unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn ctr(&self) -> Command {
        let mut command = Command::new(require("ctr"));
        command
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "wharf-test"]);
        command
    }
}

impl Drop for Containerd {
    /// Stops the daemon and deletes its content store and snapshots (a benchmark starts many).
    fn drop(&mut self) {
        self.daemon.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where [`Skopeo::copy`] wrote the blob `digest`.
pub fn copied_blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join(digest.trim_start_matches("sha256:"))
}

/// skopeo, trusting the test CA (`--src-cert-dir`).
pub struct Skopeo {
    cert_dir: PathBuf,
}

impl Skopeo {
    pub fn new(cert_dir: &Path) -> Skopeo {
        require("skopeo");
        Skopeo {
            cert_dir: cert_dir.to_owned(),
        }
    }

    /// `skopeo copy docker://<reference> dir:<dir>`, plus `extra` arguments (e.g.
    /// `--override-arch arm64`). The `dir:` transport keeps manifests and blobs byte for byte;
    /// [`copied_blob`] is where a blob lands.
    pub fn copy(&self, reference: &str, dir: &Path, extra: &[&str]) -> Result<(), String> {
        let mut command = self.skopeo();
        command
            .args(["copy", "--retry-times", "0", "--src-cert-dir"])
            .arg(&self.cert_dir)
            .args(extra)
            .arg(format!("docker://{reference}"))
            .arg(format!("dir:{}", dir.display()));
        run(&mut command).map(|_| ())
    }

    /// `skopeo inspect --raw`: the manifest exactly as served.
    pub fn inspect_raw(&self, reference: &str) -> Result<String, String> {
        let mut command = self.skopeo();
        command
            .args(["inspect", "--raw", "--retry-times", "0", "--cert-dir"])
            .arg(&self.cert_dir)
            .arg(format!("docker://{reference}"));
        run(&mut command).map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn skopeo(&self) -> Command {
        let mut command = Command::new(require("skopeo"));
        command.arg("--insecure-policy");
        command
    }
}
