//! Small node files the agent owns (certificates, runtime configs): atomic replacement only when
//! the content changes, ownership markers on directories, and a log line for every change.

use std::io;
use std::path::{Path, PathBuf};

/// File in a certificate directory naming the mirror that owns the directory. Docker and
/// containers-image read only `*.crt`, `*.cert` and `*.key` there, so it is invisible to them.
pub const OWNER_FILE: &str = ".wharf-mirror";

/// A failed file operation on the node.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot {action} {path}: {source} (check that the node directory is mounted writable)")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} belongs to {owner}, not to RegistryMirror {mirror:?}; left untouched: remove it if it is stale, or give the mirrors different hosts"
    )]
    Conflict {
        path: PathBuf,
        owner: String,
        mirror: String,
    },
}

pub(crate) fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FileError {
    let path = path.to_owned();
    move |source| FileError::Io {
        action,
        path,
        source,
    }
}

/// The file's content, or `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, FileError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io_error("read", path)(err)),
    }
}

/// Replaces `path` with `bytes` unless it already holds them, through a temporary file in the
/// same directory and a rename, so the runtime never reads half a file. Logs the change.
pub fn write_if_changed(path: &Path, bytes: &[u8], what: &str) -> Result<bool, FileError> {
    if read_optional(path)?.as_deref() == Some(bytes) {
        return Ok(false);
    }
    let existed = path.exists();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error("create directory", parent))?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".wharf-tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, bytes).map_err(io_error("write", &temporary))?;
    if let Err(err) = std::fs::rename(&temporary, path) {
        // best effort: the rename error is what the user needs to see
        let _ = std::fs::remove_file(&temporary);
        return Err(io_error("rename into place", path)(err));
    }
    let verb = if existed { "updated" } else { "created" };
    tracing::info!(file = %path.display(), "{verb} {what}");
    Ok(true)
}

/// Removes `path` if it exists. Logs the removal.
pub fn remove_if_exists(path: &Path, what: &str) -> Result<bool, FileError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(file = %path.display(), "removed {what}");
            Ok(true)
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(io_error("remove", path)(err)),
    }
}

/// Removes the directory if nothing else is left in it.
pub fn remove_dir_if_empty(dir: &Path) -> Result<bool, FileError> {
    match std::fs::remove_dir(dir) {
        Ok(()) => {
            tracing::info!(dir = %dir.display(), "removed the empty directory");
            Ok(true)
        }
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty
            ) =>
        {
            Ok(false)
        }
        Err(err) => Err(io_error("remove", dir)(err)),
    }
}

/// The mirror named in `dir`'s owner file, if any.
pub fn dir_owner(dir: &Path) -> Result<Option<String>, FileError> {
    Ok(read_optional(&dir.join(OWNER_FILE))?
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned()))
}

/// Makes `dir` the mirror's own certificate directory: creates it and its owner file. A
/// directory without an owner file is adopted (the seed's agent wrote the same files without
/// one); one owned by another mirror is a conflict.
pub fn claim_dir(dir: &Path, mirror: &str) -> Result<(), FileError> {
    match dir_owner(dir)? {
        Some(owner) if owner != mirror => Err(FileError::Conflict {
            path: dir.to_owned(),
            owner: format!("RegistryMirror {owner:?}"),
            mirror: mirror.to_owned(),
        }),
        _ => {
            write_if_changed(
                &dir.join(OWNER_FILE),
                format!("{mirror}\n").as_bytes(),
                "the directory's owner marker",
            )?;
            Ok(())
        }
    }
}

/// Subdirectories of `base` owned by `mirror` (none when `base` does not exist).
pub fn owned_dirs(base: &Path, mirror: &str) -> Result<Vec<PathBuf>, FileError> {
    let entries = match std::fs::read_dir(base) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(io_error("list", base)(err)),
    };
    let mut owned = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("list", base))?;
        let path = entry.path();
        if path.is_dir() && dir_owner(&path)?.as_deref() == Some(mirror) {
            owned.push(path);
        }
    }
    owned.sort();
    Ok(owned)
}

/// Removes the mirror's `files` and owner file from `dir`, then `dir` itself if it is empty.
pub fn release_dir(dir: &Path, files: &[(&str, &str)]) -> Result<bool, FileError> {
    let mut changed = false;
    for (name, what) in files {
        changed |= remove_if_exists(&dir.join(name), what)?;
    }
    changed |= remove_if_exists(&dir.join(OWNER_FILE), "the directory's owner marker")?;
    changed |= remove_dir_if_empty(dir)?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_when_the_content_changes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a/b/ca.crt");
        assert!(write_if_changed(&path, b"one", "a CA").expect("creates"));
        assert!(!write_if_changed(&path, b"one", "a CA").expect("no change"));
        assert!(write_if_changed(&path, b"two", "a CA").expect("updates"));
        assert_eq!(std::fs::read(&path).expect("reads"), b"two");
        assert!(!dir.path().join("a/b/ca.crt.wharf-tmp").exists());
        assert!(remove_if_exists(&path, "a CA").expect("removes"));
        assert!(!remove_if_exists(&path, "a CA").expect("already gone"));
    }

    #[test]
    fn claims_adopts_and_refuses_directories() {
        let base = tempfile::tempdir().expect("temp dir");
        let mine = base.path().join("mirror-docker.io");
        claim_dir(&mine, "docker").expect("claims a new dir");
        assert_eq!(dir_owner(&mine).expect("reads"), Some("docker".into()));

        let seeds = base.path().join("10.96.0.1");
        std::fs::create_dir(&seeds).expect("dir");
        std::fs::write(seeds.join("ca.crt"), b"old").expect("seed CA");
        claim_dir(&seeds, "docker").expect("adopts an unmarked dir");

        let err = claim_dir(&mine, "quay").expect_err("owned by another mirror");
        assert!(matches!(err, FileError::Conflict { .. }), "{err}");
        assert!(err.to_string().contains("\"docker\""), "{err}");

        std::fs::create_dir(base.path().join("unrelated")).expect("dir");
        assert_eq!(
            owned_dirs(base.path(), "docker").expect("lists"),
            vec![seeds.clone(), mine.clone()]
        );
        assert!(
            owned_dirs(&base.path().join("missing"), "docker")
                .expect("lists")
                .is_empty()
        );

        std::fs::write(mine.join("ca.crt"), b"x").expect("CA");
        assert!(release_dir(&mine, &[("ca.crt", "a CA")]).expect("releases"));
        assert!(!mine.exists());
        std::fs::write(seeds.join("extra.cert"), b"x").expect("a foreign file");
        release_dir(&seeds, &[("ca.crt", "a CA")]).expect("releases");
        assert!(
            seeds.join("extra.cert").exists(),
            "foreign files and their directory stay"
        );
    }
}
