//! One line of this machine's /etc/hosts that names a private registry, for as long as a guard lives.
//!
//! The local node has no cluster DNS, and containerd (the kubelet's pulls) and skopeo (the push)
//! run on the host, so the registry's host name `<name>.<namespace>.<zone>` must resolve there:
//! a line `<Service ClusterIP> <host name>` does it (the Service CIDR is routed to the node's
//! bridge, so nothing leaves the machine). Other writers edit the same file at the same time —
//! hostess-agent pods of a mirror test, and other tests like this one — so:
//! - each line carries a marker comment naming its owner, and only lines with our marker are
//!   ever removed;
//! - every edit holds the exclusive `flock` hostess-agent holds for its own edits (the same
//!   node path, [`AGENT_LOCK_FILE`]), so no edit is lost between a read and a write;
//! - the file is rewritten in place — the changed tail in one write, then truncated if shorter,
//!   then fsynced, as hostess-agent does — not replaced by a rename: the agents' pods bind-mount
//!   this very file, and a rename would leave them editing a deleted copy.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The node's hosts file, which containerd's and skopeo's resolvers read.
pub const HOSTS_FILE: &str = "/etc/hosts";
/// The lock every hostess-agent of this node takes before editing [`HOSTS_FILE`]
/// (`wharf_core::agent::DEFAULT_HOSTS_LOCK_FILE` without the agent's `/host` mount prefix).
pub const AGENT_LOCK_FILE: &str = "/run/wharf/hosts.lock";
/// Start of our marker comment; hostess-agent's markers start with `wharf:` and are never ours.
const MARKER_PREFIX: &str = "wharf-e2e-registry:";

/// A hosts line this process added; removed again on drop (also when a test panics).
#[derive(Debug)]
pub struct HostsLine {
    files: HostsPaths,
    marker: String,
    line: String,
    removed: bool,
}

#[derive(Clone, Debug)]
struct HostsPaths {
    hosts: PathBuf,
    lock: PathBuf,
}

impl HostsLine {
    /// Adds `<address> <host>  # wharf-e2e-registry:<owner>` to /etc/hosts (replacing an older
    /// line of the same owner, e.g. left by a killed run).
    pub fn add(address: &str, host: &str, owner: &str) -> std::io::Result<Self> {
        Self::add_in(
            HostsPaths {
                hosts: PathBuf::from(HOSTS_FILE),
                lock: PathBuf::from(AGENT_LOCK_FILE),
            },
            address,
            host,
            owner,
        )
    }

    fn add_in(files: HostsPaths, address: &str, host: &str, owner: &str) -> std::io::Result<Self> {
        let marker = format!("{MARKER_PREFIX}{owner}");
        let line = format!("{address} {host}  # {marker}");
        edit(&files, |old| with_line(old, &marker, Some(&line)))?;
        Ok(Self {
            files,
            marker,
            line,
            removed: false,
        })
    }

    /// The line as written.
    pub fn line(&self) -> &str {
        &self.line
    }

    /// Removes the line now, reporting a failure (drop only prints it).
    pub fn remove(mut self) -> std::io::Result<()> {
        self.removed = true;
        edit(&self.files, |old| with_line(old, &self.marker, None))
    }
}

impl Drop for HostsLine {
    fn drop(&mut self) {
        if !self.removed
            && let Err(err) = edit(&self.files, |old| with_line(old, &self.marker, None))
        {
            eprintln!(
                "wharf-e2e: could not remove `{}` from {}: {err}; remove that line by hand",
                self.line,
                self.files.hosts.display()
            );
        }
    }
}

/// Under the agents' lock: reads the file, applies `change`, writes the difference in place.
fn edit(files: &HostsPaths, change: impl FnOnce(&str) -> String) -> std::io::Result<()> {
    let _lock = lock(&files.lock)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&files.hosts)?;
    let mut old = String::new();
    file.read_to_string(&mut old)?;
    let new = change(&old);
    if new == old {
        return Ok(());
    }
    let common = old
        .bytes()
        .zip(new.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    // Grow (or overwrite) first, shrink last: a reader never sees a line cut short.
    file.write_all_at(&new.as_bytes()[common..], common as u64)?;
    if new.len() < old.len() {
        file.set_len(new.len() as u64)?;
    }
    file.flush()?;
    file.sync_all()
}

fn lock(path: &Path) -> std::io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    file.lock()?;
    Ok(file)
}

/// `content` without the lines carrying `marker`, plus `line` (if any) at the end. Pure.
fn with_line(content: &str, marker: &str, line: Option<&str>) -> String {
    let ours = |l: &str| {
        l.split_once('#')
            .is_some_and(|(_, comment)| comment.trim() == marker)
    };
    let mut out: String = content.split_inclusive('\n').filter(|l| !ours(l)).collect();
    if let Some(line) = line {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARK: &str = "wharf-e2e-registry:ns/registry";

    #[test]
    fn adds_once_and_replaces_its_own_line_only() {
        let base = "127.0.0.1 localhost\n10.96.0.9 mirror  # wharf:docker\n";
        let added = with_line(
            base,
            MARK,
            Some("10.96.0.1 r.ns.test  # wharf-e2e-registry:ns/registry"),
        );
        assert_eq!(
            added,
            format!("{base}10.96.0.1 r.ns.test  # wharf-e2e-registry:ns/registry\n")
        );
        let replaced = with_line(
            &added,
            MARK,
            Some("10.96.0.2 r.ns.test  # wharf-e2e-registry:ns/registry"),
        );
        assert_eq!(
            replaced,
            format!("{base}10.96.0.2 r.ns.test  # wharf-e2e-registry:ns/registry\n")
        );
        assert_eq!(with_line(&replaced, MARK, None), base);
    }

    #[test]
    fn other_markers_and_a_missing_final_newline_survive() {
        let base = "127.0.0.1 localhost\n10.0.0.1 x  # wharf-e2e-registry:ns/registry2";
        let added = with_line(
            base,
            MARK,
            Some("1.2.3.4 y  # wharf-e2e-registry:ns/registry"),
        );
        assert_eq!(
            added,
            format!("{base}\n1.2.3.4 y  # wharf-e2e-registry:ns/registry\n")
        );
        assert_eq!(with_line(&added, MARK, None), format!("{base}\n"));
    }

    #[test]
    fn edits_a_file_in_place_and_the_guard_removes_its_line() {
        let dir = std::env::temp_dir().join(format!("wharf-hosts-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let files = HostsPaths {
            hosts: dir.join("hosts"),
            lock: dir.join("lock/hosts.lock"),
        };
        std::fs::write(&files.hosts, "127.0.0.1 localhost\n").expect("hosts file");
        let inode = |path: &Path| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(path).expect("metadata").ino()
        };
        let before = inode(&files.hosts);
        let line = HostsLine::add_in(files.clone(), "10.96.0.7", "r.ns.test", "ns/r")
            .expect("adds the line");
        let content = std::fs::read_to_string(&files.hosts).expect("read");
        assert_eq!(
            content,
            "127.0.0.1 localhost\n10.96.0.7 r.ns.test  # wharf-e2e-registry:ns/r\n"
        );
        assert_eq!(
            inode(&files.hosts),
            before,
            "rewritten in place, not replaced"
        );
        drop(line);
        let content = std::fs::read_to_string(&files.hosts).expect("read");
        assert_eq!(content, "127.0.0.1 localhost\n");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
