//! Property tests of the hosts-file editor: round trips over arbitrary files, foreign lines kept,
//! idempotence, and repair of every tear a power loss can leave.

use std::net::IpAddr;

use hostess_agent::hosts::{
    EditKind, HostsEntry, HostsFiles, Marker, RealDisk, Repair, check_promises, find_entry,
    is_tear, split_lines, with_entry,
};
use proptest::prelude::*;

fn marker() -> Marker {
    Marker::new("docker").expect("valid mirror")
}

/// Lines that look like hosts files, including the traps: other mirrors' lines, our own
/// marker on non-entries, odd whitespace, CR, IPv6, junk.
fn hosts_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"127.0.0.1\tlocalhost".to_vec()),
        Just(b"::1 localhost ip6-localhost".to_vec()),
        Just(b"# a comment".to_vec()),
        Just(b"".to_vec()),
        Just(b"   \t ".to_vec()),
        Just(b"10.96.0.9\tmirror-quay.io  # wharf:quay".to_vec()),
        Just(b"# wharf:docker".to_vec()),
        Just(b"10.96.0.5\tmirror-docker.io  # wharf:docker".to_vec()),
        Just(b"10.0.0.1 mirror-docker.io".to_vec()),
        Just(b"fe80::1%eth0 link".to_vec()),
        Just(b"bogus".to_vec()),
        "[0-9a-f:. \t#a-z-]{0,40}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..30),
    ]
}

fn hosts_file() -> impl Strategy<Value = Vec<u8>> {
    let terminator = prop_oneof![Just(&b"\n"[..]), Just(&b"\r\n"[..]), Just(&b"\r"[..])];
    (
        proptest::collection::vec((hosts_line(), terminator), 0..12),
        any::<bool>(),
    )
        .prop_map(|(lines, final_break)| {
            let mut content = Vec::new();
            let count = lines.len();
            for (index, (line, terminator)) in lines.into_iter().enumerate() {
                content.extend_from_slice(&line);
                if index + 1 < count || final_break {
                    content.extend_from_slice(terminator);
                }
            }
            content
        })
}

fn any_file() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![hosts_file(), proptest::collection::vec(any::<u8>(), 0..200)]
}

fn address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u16; 8]>().prop_map(IpAddr::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn promises_hold_for_any_file(content in any_file()) {
        if let Err(broken) = check_promises(&content) {
            prop_assert!(false, "{}", broken);
        }
    }

    #[test]
    fn insert_then_remove_returns_the_original_bytes(content in any_file(), ip in address()) {
        prop_assume!(find_entry(&content, &marker()).is_none());
        let entry = HostsEntry::new(ip, "mirror-docker.io").expect("valid entry");
        let (added, kind) = with_entry(&content, &marker(), Some(&entry));
        prop_assert_eq!(kind, EditKind::Added);
        prop_assert!(added.starts_with(&content) || content.ends_with(b"\r"));
        prop_assert_eq!(find_entry(&added, &marker()).map(|(found, _)| found), Some(ip));
        let (removed, kind) = with_entry(&added, &marker(), None);
        prop_assert_eq!(kind, EditKind::Removed);
        prop_assert_eq!(removed, content);
    }

    #[test]
    fn changing_the_address_touches_only_our_line(content in any_file(), first in address(), second in address()) {
        let one = HostsEntry::new(first, "mirror-docker.io").expect("valid entry");
        let two = HostsEntry::new(second, "mirror-docker.io").expect("valid entry");
        let (with_one, _) = with_entry(&content, &marker(), Some(&one));
        let (with_two, kind) = with_entry(&with_one, &marker(), Some(&two));
        prop_assert_eq!(kind, if first == second { EditKind::Unchanged } else { EditKind::Replaced });
        let before = split_lines(&with_one);
        let after = split_lines(&with_two);
        prop_assert_eq!(before.len(), after.len());
        for (old, new) in before.iter().zip(&after) {
            if !marker().owns(old.text) {
                prop_assert_eq!(old, new);
            }
        }
    }

    #[test]
    fn other_mirrors_never_see_their_lines_change(content in hosts_file(), ip in address()) {
        let quay = Marker::new("quay").expect("valid mirror");
        let entry = HostsEntry::new(ip, "mirror-docker.io").expect("valid entry");
        let (added, _) = with_entry(&content, &marker(), Some(&entry));
        let (removed, _) = with_entry(&added, &marker(), None);
        // `\r`s ending the file become part of the CRLF before our appended line.
        let quay_lines = |bytes: &[u8]| -> Vec<Vec<u8>> {
            split_lines(bytes)
                .into_iter()
                .filter(|l| quay.owns(l.text))
                .map(|l| {
                    let end = l.text.iter().rposition(|&b| b != b'\r').map_or(0, |at| at + 1);
                    l.text[..end].to_vec()
                })
                .collect()
        };
        prop_assert_eq!(quay_lines(&added), quay_lines(&content));
        prop_assert_eq!(quay_lines(&removed), quay_lines(&content));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// After a power loss only some pages of an unsynced write may reach the disk: any mix of
    /// old and new bytes. Repair turns every such mix into the new content.
    #[test]
    fn repair_completes_every_tear(
        old in hosts_file(),
        new in hosts_file(),
        mask in proptest::collection::vec(any::<bool>(), 0..400),
        length_pick in any::<prop::sample::Index>(),
    ) {
        let shortest = old.len().min(new.len());
        let longest = old.len().max(new.len());
        let length = shortest + length_pick.index(longest - shortest + 1);
        let torn: Vec<u8> = (0..length)
            .map(|at| {
                let take_new = mask.get(at).copied().unwrap_or(true);
                match (take_new, new.get(at), old.get(at)) {
                    (true, Some(byte), _) | (false, _, Some(byte)) | (_, Some(byte), None) | (_, None, Some(byte)) => *byte,
                    (_, None, None) => unreachable!("length is at most the longer content"),
                }
            })
            .collect();
        prop_assert!(is_tear(&torn, &old, &new));

        let dir = tempfile::tempdir().expect("temp dir");
        let files = HostsFiles {
            hosts: dir.path().join("hosts"),
            lock: dir.path().join("hosts.lock"),
            backup: dir.path().join("hosts.wharf.bak"),
        };
        std::fs::write(&files.hosts, &torn).expect("torn hosts");
        std::fs::write(&files.backup, &old).expect("backup");
        std::fs::write(files.journal(), &new).expect("journal");
        let repair = files.repair(&mut RealDisk).expect("repairs");
        prop_assert!(matches!(repair, Repair::RolledForward | Repair::AlreadyComplete));
        prop_assert_eq!(std::fs::read(&files.hosts).expect("reads"), new);
        prop_assert!(!files.journal().exists());
    }
}
