//! Many agents editing one hosts file at once, each under the shared lock, never lose a line:
//! each mirror ends with exactly its last line, and foreign lines stay as they were.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Barrier};

use hostess_agent::hosts::{HostsEntry, HostsFiles, Marker, RealDisk, find_entry, set_entry};

const AGENTS: usize = 8;
const EDITS: u8 = 30;
const FOREIGN: &str = "# managed by hand\r\n127.0.0.1\tlocalhost\n\n::1 ip6-localhost   # v6\n";

#[test]
fn concurrent_agents_never_lose_a_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = HostsFiles {
        hosts: dir.path().join("hosts"),
        lock: dir.path().join("run/hosts.lock"),
        backup: dir.path().join("run/hosts.wharf.bak"),
    };
    std::fs::write(&files.hosts, FOREIGN).expect("hosts");
    let files = Arc::new(files);
    let barrier = Arc::new(Barrier::new(AGENTS));
    let agents: Vec<_> = (0..AGENTS)
        .map(|agent| {
            let files = Arc::clone(&files);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let marker = Marker::new(&format!("mirror-{agent}")).expect("valid");
                let host = format!("mirror-{agent}.example");
                barrier.wait();
                for edit in 0..EDITS {
                    let agent_octet = u8::try_from(agent).expect("few agents");
                    let address = IpAddr::V4(Ipv4Addr::new(10, 96, agent_octet, edit));
                    let entry = HostsEntry::new(address, &host).expect("valid");
                    // Every third edit removes the line first, to mix shrinking and growing writes.
                    if edit % 3 == 0 {
                        set_entry(&files, &mut RealDisk, &marker, None).expect("removes");
                    }
                    set_entry(&files, &mut RealDisk, &marker, Some(&entry)).expect("sets");
                }
            })
        })
        .collect();
    for agent in agents {
        agent.join().expect("agent thread finishes");
    }

    let content = std::fs::read(&files.hosts).expect("hosts");
    let text = String::from_utf8(content.clone()).expect("utf-8");
    assert!(
        text.starts_with(FOREIGN),
        "foreign lines kept in place:\n{text}"
    );
    for agent in 0..AGENTS {
        let marker = Marker::new(&format!("mirror-{agent}")).expect("valid");
        let agent_octet = u8::try_from(agent).expect("few agents");
        assert_eq!(
            find_entry(&content, &marker),
            Some((
                IpAddr::V4(Ipv4Addr::new(10, 96, agent_octet, EDITS - 1)),
                vec![format!("mirror-{agent}.example")]
            )),
            "agent {agent}'s last line survives:\n{text}"
        );
        assert_eq!(
            text.lines()
                .filter(|line| line.ends_with(&format!("# wharf:mirror-{agent}")))
                .count(),
            1,
            "exactly one line of agent {agent}:\n{text}"
        );
    }
    assert_eq!(text.lines().count(), FOREIGN.lines().count() + AGENTS);
    assert!(text.ends_with("\r\n"), "lines follow the file's CRLF style");
}
