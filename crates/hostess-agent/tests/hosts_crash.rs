//! Simulated crashes at every step of a hosts-file write — each operation and each byte — must
//! leave the old or the new content, or a journal from which repair restores the new content.

use std::net::IpAddr;
use std::path::Path;

use hostess_agent::hosts::{
    CrashingDisk, Disk, HostsEntry, HostsFiles, Marker, RealDisk, Repair, is_tear, with_entry,
};
use proptest::prelude::*;

fn marker() -> Marker {
    Marker::new("docker").expect("valid mirror")
}

fn entry(ip: &str) -> HostsEntry {
    HostsEntry::new(ip.parse::<IpAddr>().expect("test IP"), "mirror-docker.io").expect("valid")
}

fn files(dir: &Path) -> HostsFiles {
    HostsFiles {
        hosts: dir.join("etc/hosts"),
        lock: dir.join("run/wharf/hosts.lock"),
        backup: dir.join("run/wharf/hosts.wharf.bak"),
    }
}

/// Lays out a node with `content` as its hosts file.
fn node(content: &[u8]) -> (tempfile::TempDir, HostsFiles) {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = files(dir.path());
    std::fs::create_dir_all(dir.path().join("etc")).expect("etc");
    std::fs::create_dir_all(dir.path().join("run/wharf")).expect("run");
    std::fs::write(&files.hosts, content).expect("hosts");
    (dir, files)
}

fn edit(files: &HostsFiles, disk: &mut dyn Disk, wanted: Option<&HostsEntry>) -> bool {
    files
        .update(disk, |old| with_entry(old, &marker(), wanted))
        .is_ok()
}

/// Crashes the edit `old → with_entry(old, wanted)` after every possible amount of work and
/// checks what is left, before and after repair; also crashes the repair itself.
fn check_every_crash_point(old: &[u8], wanted: Option<&HostsEntry>) {
    let (new, _) = with_entry(old, &marker(), wanted);
    let total = {
        let (_dir, files) = node(old);
        let mut counting = CrashingDisk::counting();
        assert!(
            edit(&files, &mut counting, wanted),
            "a run without crash succeeds"
        );
        assert_eq!(std::fs::read(&files.hosts).expect("hosts"), new);
        counting.spent()
    };
    let mut journals_seen = 0;
    for budget in 0..=total {
        let (_dir, files) = node(old);
        let mut disk = CrashingDisk::with_budget(budget);
        let finished = edit(&files, &mut disk, wanted);
        assert_eq!(finished, !disk.crashed(), "budget {budget}");
        let left = std::fs::read(&files.hosts).expect("hosts");
        let journal = files.journal().exists();
        if finished {
            assert_eq!(
                left, new,
                "budget {budget}: finished writes leave the new content"
            );
            assert!(!journal);
            continue;
        }
        assert!(
            left == old || left == new || (journal && is_tear(&left, old, &new)),
            "budget {budget}/{total}: crash left {left:?} without a journal to repair it"
        );
        if journal {
            journals_seen += 1;
            check_crashing_repairs(&files, &left, old, &new, budget);
        }
        let repair = files.repair(&mut RealDisk).expect("repairs");
        let repaired = std::fs::read(&files.hosts).expect("hosts");
        if journal {
            assert_eq!(
                repaired, new,
                "budget {budget}: a journal rolls forward ({repair:?})"
            );
        } else {
            assert_eq!(repair, Repair::NotNeeded);
            assert!(repaired == old || repaired == new, "budget {budget}");
        }
        assert!(!files.journal().exists());
        // The agent's next pass converges, whatever the crash left.
        assert!(edit(&files, &mut RealDisk, wanted));
        assert_eq!(std::fs::read(&files.hosts).expect("hosts"), new);
    }
    assert!(
        old == new || journals_seen > 0,
        "some crash points fall inside the in-place write"
    );
}

/// The repair can crash too: at every point of it, what is left is still repairable.
fn check_crashing_repairs(files: &HostsFiles, torn: &[u8], old: &[u8], new: &[u8], budget: usize) {
    let journal = std::fs::read(files.journal()).expect("journal");
    let backup = std::fs::read(&files.backup).expect("backup");
    let mut repair_budget = 0;
    loop {
        let mut disk = CrashingDisk::with_budget(repair_budget);
        let result = files.repair(&mut disk);
        let left = std::fs::read(&files.hosts).expect("hosts");
        if result.is_ok() {
            assert_eq!(left, new, "budget {budget}: completed repair");
            // Put the crash state back for the caller's own repair.
            std::fs::write(&files.hosts, torn).expect("restore torn");
            std::fs::write(files.journal(), &journal).expect("restore journal");
            std::fs::write(&files.backup, &backup).expect("restore backup");
            return;
        }
        assert!(
            files.journal().exists() && (left == new || is_tear(&left, old, new)),
            "budget {budget}, repair budget {repair_budget}: a crashed repair stays repairable"
        );
        repair_budget += 1;
    }
}

#[test]
fn adding_a_line_survives_every_crash() {
    check_every_crash_point(
        b"127.0.0.1 localhost\n::1 localhost\n",
        Some(&entry("10.96.0.5")),
    );
}

#[test]
fn shrinking_an_address_survives_every_crash() {
    let (old, _) = with_entry(
        b"127.0.0.1 localhost\n# keep\n",
        &marker(),
        Some(&entry("10.96.100.100")),
    );
    let mut old = old;
    old.extend_from_slice(b"10.0.0.1 after-our-line\n");
    check_every_crash_point(&old, Some(&entry("10.96.0.1")));
}

#[test]
fn growing_an_address_survives_every_crash() {
    let (old, _) = with_entry(b"a b\r\nc d\r\n", &marker(), Some(&entry("10.0.0.1")));
    check_every_crash_point(&old, Some(&entry("fd00:1234::5678")));
}

#[test]
fn removing_a_line_survives_every_crash() {
    let (old, _) = with_entry(
        b"127.0.0.1 localhost\nno final newline",
        &marker(),
        Some(&entry("10.96.0.5")),
    );
    check_every_crash_point(&old, None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn random_files_survive_every_crash(
        lines in proptest::collection::vec("[0-9a-z. #\t:]{0,20}", 0..5),
        crlf in any::<bool>(),
        ip in any::<[u8; 4]>(),
        remove in any::<bool>(),
    ) {
        let newline = if crlf { "\r\n" } else { "\n" };
        let old = lines.join(newline);
        let wanted = HostsEntry::new(IpAddr::from(ip), "mirror-docker.io").expect("valid");
        let (with_line, _) = with_entry(old.as_bytes(), &marker(), Some(&entry("10.96.0.5")));
        if remove {
            check_every_crash_point(&with_line, None);
        } else {
            check_every_crash_point(&with_line, Some(&wanted));
        }
    }
}
