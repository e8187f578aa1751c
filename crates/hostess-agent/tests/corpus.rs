//! Runs the hosts-file parser and editor over every stored file in `tests/corpus` (the fuzz
//! target's seed corpus too) and checks the editor's promises on each.

use std::path::Path;

use hostess_agent::hosts::{LineKind, check_promises, parse_hosts};

#[test]
fn every_corpus_file_keeps_the_editors_promises() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory exists") {
        let path = entry.expect("lists corpus").path();
        let content = std::fs::read(&path).expect("reads corpus file");
        if let Err(broken) = check_promises(&content) {
            panic!("{}: {broken}", path.display());
        }
        checked += 1;
    }
    assert!(
        checked >= 15,
        "only {checked} corpus files in {}",
        dir.display()
    );
}

#[test]
fn corpus_files_parse_as_expected() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let read = |name: &str| std::fs::read(dir.join(name)).expect("corpus file");

    let debian = read("debian-default.hosts");
    let kinds: Vec<LineKind> = parse_hosts(&debian).into_iter().map(|l| l.kind).collect();
    assert_eq!(kinds.len(), 7);
    assert!(
        matches!(&kinds[1], LineKind::Entry { names, .. } if names == &["node-1.example.org", "node-1"])
    );
    assert_eq!(kinds[2], LineKind::Blank);
    assert_eq!(kinds[3], LineKind::Comment);

    let garbage = read("not-utf8.hosts");
    let kinds: Vec<LineKind> = parse_hosts(&garbage).into_iter().map(|l| l.kind).collect();
    assert!(matches!(kinds[0], LineKind::Entry { .. }));
    assert_eq!(kinds[1], LineKind::Unparseable);
    assert_eq!(kinds[2], LineKind::Unparseable);
    assert_eq!(kinds[3], LineKind::Comment);

    let zones = read("ipv6-zones.hosts");
    assert!(
        parse_hosts(&zones)
            .iter()
            .all(|line| matches!(line.kind, LineKind::Entry { .. })),
        "zoned and mapped IPv6 addresses are entries"
    );
}
