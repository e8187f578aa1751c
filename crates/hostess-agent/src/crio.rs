//! CRI-O (containers-image): a `registries.conf.d` drop-in naming the mirror as a
//! `[[registry.mirror]]` of the upstream, the CA under `certs.d/<mirror>/ca.crt`, and a SIGHUP to
//! CRI-O so it reloads the drop-in.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::files::{self, FileError};
use crate::registry_host::Upstream;

const CA_FILE_NAME: &str = "ca.crt";
const CA_WHAT: &str = "the mirror's CA for CRI-O";
const DROP_IN_WHAT: &str = "CRI-O's registries.conf.d drop-in for the mirror";

/// The drop-in's file name: `wharf-<mirror>.conf`.
pub fn drop_in_name(mirror: &str) -> String {
    format!("wharf-{mirror}.conf")
}

#[derive(Serialize)]
struct RegistriesConf<'a> {
    registry: [Registry<'a>; 1],
}

#[derive(Serialize)]
struct Registry<'a> {
    prefix: &'a str,
    location: &'a str,
    mirror: [Mirror<'a>; 1],
}

#[derive(Serialize)]
struct Mirror<'a> {
    location: &'a str,
}

/// The drop-in sending pulls of `upstream` to the mirror at `mirror_host` first.
pub fn render_drop_in(
    mirror: &str,
    upstream: &Upstream,
    mirror_host: &str,
) -> Result<String, toml::ser::Error> {
    let conf = RegistriesConf {
        registry: [Registry {
            prefix: &upstream.name,
            location: &upstream.name,
            mirror: [Mirror {
                location: mirror_host,
            }],
        }],
    };
    Ok(format!(
        "# Managed by wharf hostess-agent for RegistryMirror {mirror:?}; changes are overwritten.\n{}",
        toml::to_string(&conf)?
    ))
}

/// A failure to configure CRI-O.
#[derive(Debug, thiserror::Error)]
pub enum CrioError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("cannot render the CRI-O drop-in")]
    Render(#[from] toml::ser::Error),
}

/// What CRI-O's directories looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Up to date; `drop_in_changed` says whether CRI-O must reload.
    Applied {
        changed: bool,
        drop_in_changed: bool,
    },
    /// `registries.conf.d` does not exist on this node: not a CRI-O node.
    Skipped,
}

/// CRI-O's directories on the node.
#[derive(Debug, Clone)]
pub struct CrioDirs {
    /// `registries.conf.d`, as the agent sees it.
    pub registries_dir: PathBuf,
    /// containers-image's `certs.d`, as the agent sees it.
    pub certs_dir: PathBuf,
}

impl CrioDirs {
    /// Points `upstream` at the mirror at `mirror_host` with `ca`, or with `None` removes the
    /// mirror's files.
    pub fn apply(
        &self,
        mirror: &str,
        upstream: &Upstream,
        wanted: Option<(&str, &[u8])>,
    ) -> Result<Outcome, CrioError> {
        if !self.registries_dir.is_dir() {
            return Ok(Outcome::Skipped);
        }
        let drop_in = self.registries_dir.join(drop_in_name(mirror));
        let ca_dir = wanted.map(|(host, _)| self.certs_dir.join(host));
        let mut changed = false;
        let drop_in_changed = match wanted {
            Some((mirror_host, ca)) => {
                let ca_dir = self.certs_dir.join(mirror_host);
                files::claim_dir(&ca_dir, mirror)?;
                // The CA before the drop-in: CRI-O must trust the mirror once it uses it.
                changed |= files::write_if_changed(&ca_dir.join(CA_FILE_NAME), ca, CA_WHAT)?;
                let content = render_drop_in(mirror, upstream, mirror_host)?;
                files::write_if_changed(&drop_in, content.as_bytes(), DROP_IN_WHAT)?
            }
            None => files::remove_if_exists(&drop_in, DROP_IN_WHAT)?,
        };
        for dir in files::owned_dirs(&self.certs_dir, mirror)? {
            if ca_dir.as_ref() != Some(&dir) {
                changed |= files::release_dir(&dir, &[(CA_FILE_NAME, CA_WHAT)])?;
            }
        }
        Ok(Outcome::Applied {
            changed: changed || drop_in_changed,
            drop_in_changed,
        })
    }
}

/// Whether CRI-O got the reload signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    Signalled(Vec<i32>),
    NotRunning,
}

/// Sends SIGHUP to every `crio` process visible under `proc_dir` (`/proc`; the agent needs the
/// host's PID namespace to see it).
pub fn reload_crio(proc_dir: &Path) -> Result<Reload, FileError> {
    let pids = crio_pids(proc_dir)?;
    if pids.is_empty() {
        return Ok(Reload::NotRunning);
    }
    for &pid in &pids {
        let process = rustix::process::Pid::from_raw(pid).ok_or_else(|| FileError::Io {
            action: "signal",
            path: proc_dir.join(pid.to_string()),
            source: std::io::Error::other("not a process id"),
        })?;
        rustix::process::kill_process(process, rustix::process::Signal::HUP).map_err(|err| {
            FileError::Io {
                action: "send SIGHUP to CRI-O",
                path: proc_dir.join(pid.to_string()),
                source: err.into(),
            }
        })?;
        tracing::info!(pid, "sent SIGHUP to CRI-O so it reloads registries.conf.d");
    }
    Ok(Reload::Signalled(pids))
}

/// Process ids whose `comm` is `crio`.
pub fn crio_pids(proc_dir: &Path) -> Result<Vec<i32>, FileError> {
    let entries = std::fs::read_dir(proc_dir).map_err(files::io_error("list", proc_dir))?;
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        // Processes come and go while we look: an unreadable comm is simply not CRI-O.
        if let Ok(comm) = std::fs::read_to_string(entry.path().join("comm"))
            && comm.trim_end() == "crio"
        {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_drop_in() {
        let rendered = render_drop_in(
            "docker",
            &Upstream::parse("docker.io").expect("valid"),
            "10.96.0.5",
        )
        .expect("renders");
        assert_eq!(
            rendered,
            r#"# Managed by wharf hostess-agent for RegistryMirror "docker"; changes are overwritten.
[[registry]]
prefix = "docker.io"
location = "docker.io"

[[registry.mirror]]
location = "10.96.0.5"
"#
        );
    }

    #[test]
    fn writes_and_removes_files() {
        let root = tempfile::tempdir().expect("temp dir");
        let dirs = CrioDirs {
            registries_dir: root.path().join("registries.conf.d"),
            certs_dir: root.path().join("certs.d"),
        };
        let quay = Upstream::parse("quay.io").expect("valid");
        assert_eq!(
            dirs.apply("q", &quay, Some(("10.96.0.5", b"ca")))
                .expect("skips"),
            Outcome::Skipped
        );
        std::fs::create_dir(&dirs.registries_dir).expect("dir");
        assert_eq!(
            dirs.apply("q", &quay, Some(("10.96.0.5", b"ca")))
                .expect("applies"),
            Outcome::Applied {
                changed: true,
                drop_in_changed: true
            }
        );
        assert_eq!(
            std::fs::read(root.path().join("certs.d/10.96.0.5/ca.crt")).expect("CA"),
            b"ca"
        );
        assert_eq!(
            dirs.apply("q", &quay, Some(("10.96.0.5", b"ca2")))
                .expect("applies"),
            Outcome::Applied {
                changed: true,
                drop_in_changed: false
            }
        );
        dirs.apply("q", &quay, Some(("10.96.0.6", b"ca2")))
            .expect("applies");
        assert!(!root.path().join("certs.d/10.96.0.5").exists());
        assert_eq!(
            dirs.apply("q", &quay, None).expect("removes"),
            Outcome::Applied {
                changed: true,
                drop_in_changed: true
            }
        );
        assert!(!root.path().join("registries.conf.d/wharf-q.conf").exists());
        assert!(!root.path().join("certs.d/10.96.0.6").exists());
    }

    #[test]
    fn finds_crio_by_comm() {
        let proc = tempfile::tempdir().expect("temp dir");
        for (pid, comm) in [("1", "systemd\n"), ("42", "crio\n"), ("77", "crio-foo\n")] {
            std::fs::create_dir(proc.path().join(pid)).expect("dir");
            std::fs::write(proc.path().join(pid).join("comm"), comm).expect("comm");
        }
        std::fs::create_dir(proc.path().join("self")).expect("dir");
        assert_eq!(crio_pids(proc.path()).expect("lists"), vec![42]);
        std::fs::remove_dir_all(proc.path().join("42")).expect("rm");
        assert_eq!(reload_crio(proc.path()).expect("looks"), Reload::NotRunning);
    }

    #[test]
    fn signals_a_real_process() {
        // A child that exits 0 on SIGHUP proves the signal arrives.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "trap 'exit 0' HUP; while :; do sleep 0.05; done"])
            .spawn()
            .expect("spawns sh");
        let pid = i32::try_from(child.id()).expect("pid fits");
        let proc = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(proc.path().join(pid.to_string())).expect("dir");
        std::fs::write(proc.path().join(pid.to_string()).join("comm"), "crio\n").expect("comm");
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(
            reload_crio(proc.path()).expect("signals"),
            Reload::Signalled(vec![pid])
        );
        let status = child.wait().expect("waits");
        assert!(status.success(), "{status:?}");
    }
}
