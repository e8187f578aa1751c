//! containerd: `certs.d/<upstream>/hosts.toml` naming the mirror first (pull, resolve) and the
//! upstream as `server`, so a dead mirror falls back to the upstream, plus the mirror's CA.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::files::{self, FileError};
use crate::registry_host::{Upstream, node_path};

/// containerd's per-registry config file.
pub const HOSTS_TOML: &str = "hosts.toml";
const OWNER_HEADER: &str = "# Managed by wharf hostess-agent for RegistryMirror ";

/// The CA file the agent puts next to `hosts.toml`.
pub fn ca_file_name(mirror: &str) -> String {
    format!("wharf-{mirror}-ca.crt")
}

#[derive(Serialize)]
struct HostsFile<'a> {
    server: &'a str,
    host: BTreeMap<String, MirrorHost<'a>>,
}

#[derive(Serialize)]
struct MirrorHost<'a> {
    capabilities: [&'static str; 2],
    ca: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dial_timeout: Option<&'a str>,
}

/// A `hosts.toml` that cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the CA path {0} is not UTF-8, which TOML cannot hold")]
    CaPathNotUtf8(PathBuf),
    #[error("cannot render hosts.toml")]
    Toml(#[from] toml::ser::Error),
}

/// The `hosts.toml` for `upstream` with the mirror at `https://<mirror_host>` (host[:port]),
/// trusted through the CA at `ca_node_path` (the path as containerd on the node sees it).
pub fn render_hosts_toml(
    mirror: &str,
    upstream: &Upstream,
    mirror_host: &str,
    ca_node_path: &Path,
    dial_timeout: Option<&str>,
) -> Result<String, RenderError> {
    let ca = ca_node_path
        .to_str()
        .ok_or_else(|| RenderError::CaPathNotUtf8(ca_node_path.to_owned()))?;
    let file = HostsFile {
        server: &upstream.server,
        host: BTreeMap::from([(
            format!("https://{mirror_host}"),
            MirrorHost {
                capabilities: ["pull", "resolve"],
                ca,
                dial_timeout,
            },
        )]),
    };
    Ok(format!(
        "{OWNER_HEADER}{mirror:?}; changes are overwritten.\n# Hosts are tried in order and `server` last, so pulls fall back to the upstream when the mirror is down.\n{}",
        toml::to_string(&file)?
    ))
}

/// The RegistryMirror named in a `hosts.toml` the agent wrote, or `None` for anyone else's file.
pub fn hosts_toml_owner(content: &str) -> Option<String> {
    let rest = content.lines().next()?.strip_prefix(OWNER_HEADER)?;
    let quoted = rest.split(';').next()?;
    Some(quoted.trim().trim_matches('"').to_owned())
}

/// What containerd's certs.d looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Up to date (`changed` says whether files were written or removed to get there).
    Applied { changed: bool },
    /// The certs.d directory does not exist on this node: not a containerd node (or containerd
    /// without `config_path`).
    Skipped,
}

/// containerd's `certs.d` directory on the node.
#[derive(Debug, Clone)]
pub struct ContainerdCertsDir {
    /// The directory as the agent sees it (e.g. `/host/etc/containerd/certs.d`).
    pub dir: PathBuf,
    /// The prefix under which the node's root is mounted (`/host`).
    pub host_root: PathBuf,
    /// Optional `dial_timeout` for the mirror host.
    pub dial_timeout: Option<String>,
}

impl ContainerdCertsDir {
    /// Points `upstream` at the mirror at `mirror_host` with `ca` (PEM), or with `None` removes
    /// the mirror's files. Files of other mirrors and of people are never touched.
    pub fn apply(
        &self,
        mirror: &str,
        upstream: &Upstream,
        wanted: Option<(&str, &[u8])>,
    ) -> Result<Outcome, ContainerdError> {
        self.apply_all(mirror, std::slice::from_ref(upstream), wanted)
    }

    /// [`Self::apply`] for several registry hosts at once (the upstream, and in services mode
    /// the mirror's own address that rewritten images name); other directories of the mirror go.
    pub fn apply_all(
        &self,
        mirror: &str,
        upstreams: &[Upstream],
        wanted: Option<(&str, &[u8])>,
    ) -> Result<Outcome, ContainerdError> {
        if !self.dir.is_dir() {
            return Ok(Outcome::Skipped);
        }
        let targets: Vec<PathBuf> = upstreams.iter().map(|u| self.dir.join(&u.name)).collect();
        let mut changed = false;
        for dir in self.dirs_owned_by(mirror)? {
            if wanted.is_none() || !targets.contains(&dir) {
                changed |= release(&dir, mirror)?;
            }
        }
        if let Some((mirror_host, ca)) = wanted {
            for (upstream, target) in upstreams.iter().zip(&targets) {
                changed |= self.write(mirror, upstream, target, mirror_host, ca)?;
            }
        }
        Ok(Outcome::Applied { changed })
    }

    fn write(
        &self,
        mirror: &str,
        upstream: &Upstream,
        target: &Path,
        mirror_host: &str,
        ca: &[u8],
    ) -> Result<bool, ContainerdError> {
        let hosts_toml = target.join(HOSTS_TOML);
        if let Some(existing) = files::read_optional(&hosts_toml)? {
            let owner = hosts_toml_owner(&String::from_utf8_lossy(&existing));
            if owner.as_deref() != Some(mirror) {
                return Err(FileError::Conflict {
                    path: hosts_toml,
                    owner: owner.map_or_else(
                        || "someone else (it was not written by wharf)".to_owned(),
                        |owner| format!("RegistryMirror {owner:?}"),
                    ),
                    mirror: mirror.to_owned(),
                }
                .into());
            }
        }
        let ca_path = target.join(ca_file_name(mirror));
        // The CA first: hosts.toml must never name a file that is not there yet.
        let mut changed = files::write_if_changed(&ca_path, ca, "the mirror's CA for containerd")?;
        let content = render_hosts_toml(
            mirror,
            upstream,
            mirror_host,
            &node_path(&self.host_root, &ca_path),
            self.dial_timeout.as_deref(),
        )?;
        changed |= files::write_if_changed(
            &hosts_toml,
            content.as_bytes(),
            "containerd's hosts.toml for the mirror",
        )?;
        Ok(changed)
    }

    fn dirs_owned_by(&self, mirror: &str) -> Result<Vec<PathBuf>, ContainerdError> {
        let entries = std::fs::read_dir(&self.dir).map_err(files::io_error("list", &self.dir))?;
        let mut owned = Vec::new();
        for entry in entries {
            let dir = entry.map_err(files::io_error("list", &self.dir))?.path();
            // Entries that are not readable directories cannot hold our hosts.toml.
            let Some(content) = files::read_optional(&dir.join(HOSTS_TOML)).unwrap_or(None) else {
                continue;
            };
            if hosts_toml_owner(&String::from_utf8_lossy(&content)).as_deref() == Some(mirror) {
                owned.push(dir);
            }
        }
        Ok(owned)
    }
}

/// hosts.toml first (so containerd stops using the mirror), then the CA, then the directory.
fn release(dir: &Path, mirror: &str) -> Result<bool, ContainerdError> {
    let mut changed = files::remove_if_exists(
        &dir.join(HOSTS_TOML),
        "containerd's hosts.toml for the mirror",
    )?;
    changed |= files::remove_if_exists(
        &dir.join(ca_file_name(mirror)),
        "the mirror's CA for containerd",
    )?;
    changed |= files::remove_dir_if_empty(dir)?;
    Ok(changed)
}

/// A failure to configure containerd.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Render(#[from] RenderError),
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &[u8] = b"-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n";

    fn docker_io() -> Upstream {
        Upstream::parse("docker.io").expect("valid upstream")
    }

    fn certs_dir(dir: &Path) -> ContainerdCertsDir {
        ContainerdCertsDir {
            dir: dir.to_owned(),
            host_root: PathBuf::from("/host"),
            dial_timeout: None,
        }
    }

    #[test]
    fn renders_mirror_first_and_upstream_as_server() {
        let rendered = render_hosts_toml(
            "docker",
            &docker_io(),
            "10.96.0.5",
            Path::new("/etc/containerd/certs.d/docker.io/wharf-docker-ca.crt"),
            Some("3s"),
        )
        .expect("renders");
        assert_eq!(
            rendered,
            r#"# Managed by wharf hostess-agent for RegistryMirror "docker"; changes are overwritten.
# Hosts are tried in order and `server` last, so pulls fall back to the upstream when the mirror is down.
server = "https://registry-1.docker.io"

[host."https://10.96.0.5"]
capabilities = ["pull", "resolve"]
ca = "/etc/containerd/certs.d/docker.io/wharf-docker-ca.crt"
dial_timeout = "3s"
"#
        );
        let parsed: toml::Table = rendered.parse().expect("valid TOML");
        assert_eq!(
            parsed["host"]["https://10.96.0.5"]["capabilities"],
            toml::Value::Array(vec!["pull".into(), "resolve".into()])
        );
        assert_eq!(hosts_toml_owner(&rendered).as_deref(), Some("docker"));
    }

    #[test]
    fn omits_dial_timeout_when_unset_and_handles_ipv6() {
        let rendered = render_hosts_toml(
            "m",
            &Upstream::parse("quay.io").expect("valid"),
            "[fd00::5]",
            Path::new("/ca.crt"),
            None,
        )
        .expect("renders");
        assert!(!rendered.contains("dial_timeout"), "{rendered}");
        assert!(
            rendered.contains("[host.\"https://[fd00::5]\"]"),
            "{rendered}"
        );
        assert!(
            rendered.contains("server = \"https://quay.io\""),
            "{rendered}"
        );
    }

    #[test]
    fn writes_names_the_node_path_and_removes() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("host/etc/containerd/certs.d");
        std::fs::create_dir_all(&dir).expect("certs.d");
        let certs = ContainerdCertsDir {
            dir: dir.clone(),
            host_root: root.path().join("host"),
            dial_timeout: None,
        };
        let outcome = certs
            .apply("docker", &docker_io(), Some(("10.96.0.5", CA)))
            .expect("applies");
        assert_eq!(outcome, Outcome::Applied { changed: true });
        let hosts_toml =
            std::fs::read_to_string(dir.join("docker.io/hosts.toml")).expect("hosts.toml");
        assert!(
            hosts_toml.contains("ca = \"/etc/containerd/certs.d/docker.io/wharf-docker-ca.crt\""),
            "{hosts_toml}"
        );
        assert_eq!(
            std::fs::read(dir.join("docker.io/wharf-docker-ca.crt")).expect("CA"),
            CA
        );
        assert_eq!(
            certs
                .apply("docker", &docker_io(), Some(("10.96.0.5", CA)))
                .expect("applies"),
            Outcome::Applied { changed: false }
        );
        certs
            .apply("docker", &docker_io(), Some(("10.96.7.7", CA)))
            .expect("applies");
        assert!(
            std::fs::read_to_string(dir.join("docker.io/hosts.toml"))
                .expect("hosts.toml")
                .contains("https://10.96.7.7")
        );
        assert_eq!(
            certs.apply("docker", &docker_io(), None).expect("removes"),
            Outcome::Applied { changed: true }
        );
        assert!(!dir.join("docker.io").exists());
    }

    #[test]
    fn moves_when_the_upstream_changes() {
        let root = tempfile::tempdir().expect("temp dir");
        let certs = certs_dir(root.path());
        certs
            .apply("m", &docker_io(), Some(("10.96.0.5", CA)))
            .expect("applies");
        let quay = Upstream::parse("quay.io").expect("valid");
        certs
            .apply("m", &quay, Some(("10.96.0.5", CA)))
            .expect("applies");
        assert!(!root.path().join("docker.io").exists());
        assert!(root.path().join("quay.io/hosts.toml").exists());
    }

    #[test]
    fn never_overwrites_a_foreign_hosts_toml() {
        let root = tempfile::tempdir().expect("temp dir");
        let mine = root.path().join("docker.io");
        std::fs::create_dir(&mine).expect("dir");
        std::fs::write(mine.join("hosts.toml"), "server = \"https://mine\"\n").expect("seed");
        let err = certs_dir(root.path())
            .apply("docker", &docker_io(), Some(("10.96.0.5", CA)))
            .expect_err("refuses");
        assert!(err.to_string().contains("not written by wharf"), "{err}");
        assert_eq!(
            std::fs::read_to_string(mine.join("hosts.toml")).expect("kept"),
            "server = \"https://mine\"\n"
        );
        certs_dir(root.path())
            .apply("docker", &docker_io(), None)
            .expect("removal ignores foreign files");
        assert!(mine.join("hosts.toml").exists());
    }

    #[test]
    fn skips_nodes_without_certs_d() {
        let root = tempfile::tempdir().expect("temp dir");
        assert_eq!(
            certs_dir(&root.path().join("missing"))
                .apply("docker", &docker_io(), Some(("10.96.0.5", CA)))
                .expect("skips"),
            Outcome::Skipped
        );
    }
}
