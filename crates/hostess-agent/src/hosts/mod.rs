//! The node's hosts file: a lossless parser, the pure editor of the mirror's line, and the
//! locked, crash-safe in-place writer.

pub mod check;
pub mod disk;
pub mod edit;
pub mod parse;
pub mod write;

pub use check::{BrokenPromise, check_promises};
pub use disk::{CrashingDisk, Disk, RealDisk};
pub use edit::{EditKind, HostsEntry, InvalidName, Marker, find_entry, with_entry};
pub use parse::{Line, LineKind, ParsedLine, parse_hosts, split_lines};
pub use write::{HostsFiles, HostsLock, HostsWriteError, Repair, is_tear};

/// Sets (or with `None` removes) one mirror's line in the hosts file, safely, logging what it
/// changed and any repair of an earlier interrupted write.
pub fn set_entry(
    files: &HostsFiles,
    disk: &mut dyn Disk,
    marker: &Marker,
    entry: Option<&HostsEntry>,
) -> Result<EditKind, HostsWriteError> {
    let (kind, repair) = files.update(disk, |old| with_entry(old, marker, entry))?;
    log_repair(files, repair);
    let path = files.hosts.display();
    match (kind, entry) {
        (EditKind::Added, Some(entry)) => {
            tracing::info!(file = %path, %entry, "added the mirror's line to the hosts file");
        }
        (EditKind::Replaced, Some(entry)) => {
            tracing::info!(file = %path, %entry, "updated the mirror's line in the hosts file");
        }
        (EditKind::Removed, _) => {
            tracing::info!(file = %path, marker = marker.comment(), "removed the mirror's line from the hosts file");
        }
        _ => {}
    }
    Ok(kind)
}

/// Resolves a journal left by a writer that crashed (see [`write`]); run once at start-up.
pub fn repair(files: &HostsFiles, disk: &mut dyn Disk) -> Result<Repair, HostsWriteError> {
    let repair = files.repair(disk)?;
    log_repair(files, repair);
    Ok(repair)
}

fn log_repair(files: &HostsFiles, repair: Repair) {
    let file = files.hosts.display();
    let backup = files.backup.display();
    match repair {
        Repair::NotNeeded => {}
        Repair::AlreadyComplete => {
            tracing::info!(%file, "an interrupted hosts-file write had completed; journal removed");
        }
        Repair::RolledForward => tracing::warn!(
            %file,
            %backup,
            "repaired the hosts file: a writer died mid-write, its write was completed"
        ),
        Repair::LeftForeignChange => tracing::warn!(
            %file,
            %backup,
            "a writer died mid-write, but the hosts file was changed since by someone else; left it as it is (the content before the interrupted write is in the backup)"
        ),
        Repair::BackupMissing => tracing::warn!(
            %file,
            %backup,
            "a writer died mid-write and its backup is gone; cannot check the hosts file, left it as it is"
        ),
    }
}
