//! Crash-safe, locked, in-place rewriting of the node's hosts file.
//!
//! The node's `/etc/hosts` reaches the agent as a bind mount of one file, so the usual "write a
//! temporary file and rename it over" is impossible: a rename would replace the mount point's
//! directory entry in the container, not the node's file. The file must be rewritten in place,
//! and a crash (`kill -9`, OOM kill, node power loss) in the middle of that must never leave a
//! truncated or half-written file behind for good. The protocol:
//!
//! 1. **Lock.** Every edit holds an exclusive `flock` on the lock file shared by all agents of
//!    the node (`HOSTS_LOCK_FILE`), so edits of different mirrors never interleave.
//! 2. **Repair first.** Under the lock, before reading, a pending journal left by a writer that
//!    died is resolved (below). The agent also does this once at start-up.
//! 3. **Backup.** The current content `old` is written to `<backup>.tmp`, fsynced and renamed to
//!    `<backup>` (one copy, always the content before the latest change; also handy for people).
//! 4. **Journal.** The new content `new` is written the same way to `<backup>.new`. From now on
//!    the journal says "a write from `<backup>` to `<backup>.new` may be in progress".
//! 5. **Write in place.** Only the bytes after the common prefix of `old` and `new` are written,
//!    at their offset, in one `pwrite`; then, only if `new` is shorter, the file is truncated to
//!    `new`'s length; then it is fsynced. The file never shrinks before the new bytes are in
//!    place, so a reader never sees valid lines cut off.
//! 6. **Commit.** The journal is removed (and the directory fsynced).
//!
//! **Repair.** When a journal exists, the hosts file is checked against `old` (the backup) and
//! `new` (the journal). If it is `new`, the write completed and only the commit was missing. If
//! it is a *tear* — its length lies between the two lengths and each byte equals the byte of
//! `new` or of `old` at that offset, which is every state steps 5 can leave, even after a power
//! loss that kept only some pages — the write is rolled forward by doing step 5 again (which is
//! itself idempotent: a crash during the repair leaves another tear of the same two contents).
//! Anything else means someone changed the file after the crash; it is left alone, with a
//! warning. Then the journal is removed. A crash before step 4 leaves `old` in place, and stray
//! `.tmp` files are simply overwritten next time.
//!
//! Backup and journal live next to the lock file by default (a node directory every agent
//! mounts), so whichever agent takes the lock next repairs the file, even if the one that crashed
//! never comes back.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::disk::Disk;

/// A failed hosts-file operation, naming the file and what to check.
#[derive(Debug, thiserror::Error)]
pub enum HostsWriteError {
    #[error(
        "cannot lock {path}: mount the node's lock directory there (HOSTS_LOCK_FILE) and make it writable"
    )]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the hosts file {0} does not exist: mount the node's /etc/hosts there (HOSTS_FILE)")]
    MissingHostsFile(PathBuf),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The hosts file and the files that make editing it safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsFiles {
    pub hosts: PathBuf,
    pub lock: PathBuf,
    pub backup: PathBuf,
}

/// How a pending journal was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// No journal: the last write finished.
    NotNeeded,
    /// The file already held the new content; the journal was just removed.
    AlreadyComplete,
    /// The file was torn; the interrupted write was completed.
    RolledForward,
    /// The file matched neither the old nor the new content: someone changed it after the
    /// crash. It was left as it is.
    LeftForeignChange,
    /// The backup was missing, so a tear could not be recognised; the file was left as it is.
    BackupMissing,
}

/// The exclusive lock on the node's hosts file; released when dropped.
#[derive(Debug)]
pub struct HostsLock {
    _file: File,
}

impl HostsLock {
    /// Blocks until this process holds the exclusive lock on `path` (created if missing).
    pub fn acquire(path: &Path) -> Result<Self, HostsWriteError> {
        let lock_error = |source| HostsWriteError::Lock {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(lock_error)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(lock_error)?;
        file.lock().map_err(lock_error)?;
        Ok(Self { _file: file })
    }
}

impl HostsFiles {
    /// The journal holding the content being written: `<backup>.new`.
    pub fn journal(&self) -> PathBuf {
        with_suffix(&self.backup, ".new")
    }

    /// Under the lock: repairs a torn file, then replaces the content with `edit(content)`.
    /// Returns what `edit` returned besides the new content, and the repair done.
    pub fn update<T>(
        &self,
        disk: &mut dyn Disk,
        edit: impl FnOnce(&[u8]) -> (Vec<u8>, T),
    ) -> Result<(T, Repair), HostsWriteError> {
        let _lock = HostsLock::acquire(&self.lock)?;
        let repair = self.repair_locked(disk)?;
        let old = self.read_hosts(disk)?;
        let (new, result) = edit(&old);
        if new != old {
            self.replace_locked(disk, &old, &new)?;
        }
        Ok((result, repair))
    }

    /// Takes the lock and resolves a journal a crashed writer left (see the module docs).
    pub fn repair(&self, disk: &mut dyn Disk) -> Result<Repair, HostsWriteError> {
        let _lock = HostsLock::acquire(&self.lock)?;
        self.repair_locked(disk)
    }

    fn repair_locked(&self, disk: &mut dyn Disk) -> Result<Repair, HostsWriteError> {
        let journal = self.journal();
        let Some(new) = disk.read(&journal).map_err(io_error("read", &journal))? else {
            return Ok(Repair::NotNeeded);
        };
        let current = self.read_hosts(disk)?;
        let repair = if current == new {
            disk.sync(&self.hosts)
                .map_err(io_error("fsync", &self.hosts))?;
            Repair::AlreadyComplete
        } else {
            match disk
                .read(&self.backup)
                .map_err(io_error("read", &self.backup))?
            {
                None => Repair::BackupMissing,
                Some(old) if is_tear(&current, &old, &new) => {
                    self.write_in_place(disk, &old, &new)?;
                    Repair::RolledForward
                }
                Some(_) => Repair::LeftForeignChange,
            }
        };
        disk.remove(&journal)
            .map_err(io_error("remove", &journal))?;
        Ok(repair)
    }

    fn read_hosts(&self, disk: &mut dyn Disk) -> Result<Vec<u8>, HostsWriteError> {
        disk.read(&self.hosts)
            .map_err(io_error("read", &self.hosts))?
            .ok_or_else(|| HostsWriteError::MissingHostsFile(self.hosts.clone()))
    }

    fn replace_locked(
        &self,
        disk: &mut dyn Disk,
        old: &[u8],
        new: &[u8],
    ) -> Result<(), HostsWriteError> {
        if let Some(parent) = self.backup.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(io_error("create the backup directory", parent))?;
        }
        write_atomically(disk, &self.backup, old)?;
        let journal = self.journal();
        write_atomically(disk, &journal, new)?;
        self.write_in_place(disk, old, new)?;
        disk.remove(&journal).map_err(io_error("remove", &journal))
    }

    /// Step 5: the changed tail at its offset, then truncation if shorter, then fsync.
    fn write_in_place(
        &self,
        disk: &mut dyn Disk,
        old: &[u8],
        new: &[u8],
    ) -> Result<(), HostsWriteError> {
        let hosts = &self.hosts;
        let start = common_prefix(old, new);
        if start < new.len() {
            disk.write_at(hosts, offset(start), &new[start..])
                .map_err(io_error("write", hosts))?;
        }
        if new.len() < old.len() {
            disk.set_len(hosts, offset(new.len()))
                .map_err(io_error("truncate", hosts))?;
        }
        disk.sync(hosts).map_err(io_error("fsync", hosts))
    }
}

/// Writes `<path>.tmp`, fsyncs it and renames it to `path`: a reader sees the old or the new file.
fn write_atomically(disk: &mut dyn Disk, path: &Path, bytes: &[u8]) -> Result<(), HostsWriteError> {
    let temporary = with_suffix(path, ".tmp");
    disk.write_new(&temporary, bytes)
        .map_err(io_error("write", &temporary))?;
    disk.rename(&temporary, path)
        .map_err(io_error("rename into place", path))
}

/// Whether `current` is a state an interrupted in-place write from `old` to `new` can leave.
pub fn is_tear(current: &[u8], old: &[u8], new: &[u8]) -> bool {
    let shortest = old.len().min(new.len());
    let longest = old.len().max(new.len());
    (shortest..=longest).contains(&current.len())
        && current
            .iter()
            .enumerate()
            .all(|(at, byte)| new.get(at) == Some(byte) || old.get(at) == Some(byte))
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn offset(position: usize) -> u64 {
    // usize → u64 never loses bits on the 32- and 64-bit targets Rust supports.
    u64::try_from(position).unwrap_or(u64::MAX)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> HostsWriteError {
    let path = path.to_owned();
    move |source| HostsWriteError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::super::disk::RealDisk;
    use super::*;

    fn files(dir: &Path) -> HostsFiles {
        HostsFiles {
            hosts: dir.join("hosts"),
            lock: dir.join("run/hosts.lock"),
            backup: dir.join("run/hosts.wharf.bak"),
        }
    }

    #[test]
    fn update_rewrites_in_place_and_keeps_a_backup() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = files(dir.path());
        std::fs::write(&files.hosts, b"127.0.0.1 localhost\n").expect("seed hosts");
        let inode_before =
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&files.hosts).expect("stat"));
        let ((), repair) = files
            .update(&mut RealDisk, |old| {
                let mut new = old.to_vec();
                new.extend_from_slice(b"10.0.0.1 x\n");
                (new, ())
            })
            .expect("updates");
        assert_eq!(repair, Repair::NotNeeded);
        assert_eq!(
            std::fs::read(&files.hosts).expect("reads"),
            b"127.0.0.1 localhost\n10.0.0.1 x\n"
        );
        assert_eq!(
            std::fs::read(&files.backup).expect("backup"),
            b"127.0.0.1 localhost\n"
        );
        assert!(!files.journal().exists());
        let inode_after =
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&files.hosts).expect("stat"));
        assert_eq!(
            inode_before, inode_after,
            "rewritten in place, not replaced"
        );
    }

    #[test]
    fn shrinking_truncates() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = files(dir.path());
        std::fs::write(&files.hosts, b"a\nbbbbbbbb\n").expect("seed hosts");
        files
            .update(&mut RealDisk, |_| (b"a\n".to_vec(), ()))
            .expect("updates");
        assert_eq!(std::fs::read(&files.hosts).expect("reads"), b"a\n");
    }

    #[test]
    fn unchanged_content_writes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = files(dir.path());
        std::fs::write(&files.hosts, b"a\n").expect("seed hosts");
        files
            .update(&mut RealDisk, |old| (old.to_vec(), ()))
            .expect("updates");
        assert!(!files.backup.exists(), "no change, no backup");
    }

    #[test]
    fn a_missing_hosts_file_is_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = files(dir.path())
            .update(&mut RealDisk, |old| (old.to_vec(), ()))
            .expect_err("no hosts file");
        assert!(err.to_string().contains("HOSTS_FILE"), "{err}");
    }

    #[test]
    fn repair_rolls_a_torn_write_forward() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = files(dir.path());
        std::fs::create_dir_all(dir.path().join("run")).expect("run dir");
        std::fs::write(&files.backup, b"a\nold line\nz\n").expect("backup");
        std::fs::write(files.journal(), b"a\nnew\nz\n").expect("journal");
        // "new" written over "old", not yet truncated
        std::fs::write(&files.hosts, b"a\nnew\nz\nne\nz\n").expect("torn hosts");
        assert_eq!(
            files.repair(&mut RealDisk).expect("repairs"),
            Repair::RolledForward
        );
        assert_eq!(std::fs::read(&files.hosts).expect("reads"), b"a\nnew\nz\n");
        assert!(!files.journal().exists());
    }

    #[test]
    fn repair_leaves_foreign_changes_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = files(dir.path());
        std::fs::create_dir_all(dir.path().join("run")).expect("run dir");
        std::fs::write(&files.backup, b"a\n").expect("backup");
        std::fs::write(files.journal(), b"a\nb\n").expect("journal");
        std::fs::write(&files.hosts, b"somebody else's file\n").expect("hosts");
        assert_eq!(
            files.repair(&mut RealDisk).expect("repairs"),
            Repair::LeftForeignChange
        );
        assert_eq!(
            std::fs::read(&files.hosts).expect("reads"),
            b"somebody else's file\n"
        );
        assert!(!files.journal().exists());
    }

    #[test]
    fn tears_are_recognised() {
        assert!(is_tear(b"abc", b"abc", b"abd"));
        assert!(is_tear(b"abd", b"abc", b"abd"));
        assert!(is_tear(b"abdxx", b"abcxx", b"abd"));
        assert!(is_tear(b"abcx", b"abc", b"abdxy"));
        assert!(!is_tear(b"ab", b"abc", b"abd"), "shorter than both");
        assert!(!is_tear(b"abz", b"abc", b"abd"), "a byte from neither");
    }
}
