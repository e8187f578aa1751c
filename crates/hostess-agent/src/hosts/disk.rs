//! The few file operations the crash-safe hosts writer needs, behind a trait so tests can stop
//! the writer after any number of operations or bytes, exactly as a `kill -9` would.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// File operations of the hosts writer. Every method is durable when it returns: data and
/// directory entries are fsynced.
pub trait Disk {
    /// The file's bytes, or `None` when it does not exist.
    fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// Creates or truncates `path`, writes `bytes` and fsyncs it.
    fn write_new(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Renames `from` over `to` and fsyncs their directory.
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes `path` if it exists and fsyncs its directory.
    fn remove(&mut self, path: &Path) -> io::Result<()>;
    /// Writes `bytes` at `offset` of the existing file `path`, without truncating it.
    fn write_at(&mut self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// Truncates (or extends) the existing file `path` to `len` bytes.
    fn set_len(&mut self, path: &Path, len: u64) -> io::Result<()>;
    /// Fsyncs the existing file `path`.
    fn sync(&mut self, path: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealDisk;

impl Disk for RealDisk {
    fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    fn write_new(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut file = File::create(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)?;
        sync_parent(to)
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        match std::fs::remove_file(path) {
            Ok(()) => sync_parent(path),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        }
    }

    fn write_at(&mut self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        open_existing(path)?.write_all_at(bytes, offset)
    }

    fn set_len(&mut self, path: &Path, len: u64) -> io::Result<()> {
        open_existing(path)?.set_len(len)
    }

    fn sync(&mut self, path: &Path) -> io::Result<()> {
        open_existing(path)?.sync_all()
    }
}

fn open_existing(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).open(path)
}

/// Fsyncs the directory holding `path`, so a rename or removal in it survives a power loss.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

/// A [`RealDisk`] that "crashes" once it has spent its budget: every operation costs one unit
/// and every byte written one more. The operation that runs out writes only the bytes still
/// paid for, then fails, and so does everything after it — the state a `kill -9` at that
/// instant leaves on disk. A test aid; the agent never uses it.
#[derive(Debug, Clone)]
pub struct CrashingDisk {
    budget: Option<usize>,
    spent: usize,
    crashed: bool,
}

impl CrashingDisk {
    /// Crashes after `budget` units.
    pub fn with_budget(budget: usize) -> Self {
        Self {
            budget: Some(budget),
            spent: 0,
            crashed: false,
        }
    }

    /// Never crashes; counts what a run costs (see [`CrashingDisk::spent`]).
    pub fn counting() -> Self {
        Self {
            budget: None,
            spent: 0,
            crashed: false,
        }
    }

    /// Units spent so far.
    pub fn spent(&self) -> usize {
        self.spent
    }

    /// Whether the simulated crash happened.
    pub fn crashed(&self) -> bool {
        self.crashed
    }

    /// Pays for one operation plus `bytes`; returns how many bytes may still be written, or an
    /// error when not even the operation could start.
    fn pay(&mut self, bytes: usize) -> io::Result<usize> {
        if self.crashed {
            return Err(crash());
        }
        let Some(budget) = self.budget else {
            self.spent += 1 + bytes;
            return Ok(bytes);
        };
        if self.spent >= budget {
            self.crashed = true;
            return Err(crash());
        }
        self.spent += 1;
        let affordable = bytes.min(budget - self.spent);
        self.spent += affordable;
        Ok(affordable)
    }

    /// Fails after a partial write of `written` out of `wanted` bytes.
    fn after_write(&mut self, written: usize, wanted: usize) -> io::Result<()> {
        if written < wanted {
            self.crashed = true;
            return Err(crash());
        }
        Ok(())
    }
}

fn crash() -> io::Error {
    io::Error::other("simulated crash")
}

impl Disk for CrashingDisk {
    fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        self.pay(0)?;
        RealDisk.read(path)
    }

    fn write_new(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let affordable = self.pay(bytes.len())?;
        RealDisk.write_new(path, &bytes[..affordable])?;
        self.after_write(affordable, bytes.len())
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.pay(0)?;
        RealDisk.rename(from, to)
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.pay(0)?;
        RealDisk.remove(path)
    }

    fn write_at(&mut self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let affordable = self.pay(bytes.len())?;
        RealDisk.write_at(path, offset, &bytes[..affordable])?;
        self.after_write(affordable, bytes.len())
    }

    fn set_len(&mut self, path: &Path, len: u64) -> io::Result<()> {
        self.pay(0)?;
        RealDisk.set_len(path, len)
    }

    fn sync(&mut self, path: &Path) -> io::Result<()> {
        self.pay(0)?;
        RealDisk.sync(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crashing_disk_writes_only_what_its_budget_pays_for() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").expect("seed file");
        // 1 for the operation + 3 bytes
        let mut disk = CrashingDisk::with_budget(4);
        let err = disk
            .write_at(&path, 2, b"abcdef")
            .expect_err("runs out of budget");
        assert_eq!(err.to_string(), "simulated crash");
        assert!(disk.crashed());
        assert_eq!(std::fs::read(&path).expect("reads"), b"01abc56789");
        assert!(disk.sync(&path).is_err(), "nothing runs after a crash");
    }

    #[test]
    fn counting_disk_reports_the_full_cost() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        let mut disk = CrashingDisk::counting();
        disk.write_new(&path, b"abc").expect("writes");
        disk.sync(&path).expect("syncs");
        assert_eq!(disk.spent(), 1 + 3 + 1);
        assert_eq!(RealDisk.read(&path).expect("reads"), Some(b"abc".to_vec()));
        assert_eq!(
            RealDisk.read(&dir.path().join("missing")).expect("reads"),
            None
        );
    }
}
