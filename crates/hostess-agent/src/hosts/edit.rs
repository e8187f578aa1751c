//! Pure hosts-file editing: find, add, replace and remove the one line a mirror owns, keeping every
//! other byte of the file as it was.
//!
//! The agent's line is `<ClusterIP>\t<masquerade host>  # wharf:<mirror>`. A line belongs to a
//! mirror only when it is an address entry (an IP followed by at least one name) whose comment is
//! exactly `wharf:<mirror>`: a plain comment that mentions wharf, another mirror's line, or a line
//! someone wrote by hand for the same host name is never touched.
//!
//! Editing works on bytes, not text, so files that are not UTF-8, use CRLF, lack a final newline
//! or hold lines nobody can parse come back unchanged apart from the one line. Adding a line and
//! removing it again restores the original bytes exactly (see [`with_entry`]).

use std::fmt;
use std::net::IpAddr;

use super::parse::{Line, split_lines};

/// The comment prefix that marks a line as written by wharf's hostess-agent.
pub const MARKER_PREFIX: &str = "wharf:";

/// A name that cannot mark or fill a hosts line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    #[error(
        "mirror name {0:?} cannot mark a hosts line: use a Kubernetes object name (lowercase letters, digits, '-' and '.')"
    )]
    Mirror(String),
    #[error(
        "host name {0:?} cannot go into a hosts file: use a DNS name (letters, digits, '-' and '.', labels of at most 63 characters)"
    )]
    Host(String),
}

/// The mirror whose line is edited: its name is the marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    comment: String,
}

impl Marker {
    /// Marks lines of mirror `name` (a RegistryMirror's object name).
    pub fn new(name: &str) -> Result<Self, InvalidName> {
        let valid = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid {
            return Err(InvalidName::Mirror(name.to_owned()));
        }
        Ok(Self {
            comment: format!("{MARKER_PREFIX}{name}"),
        })
    }

    /// The comment text after `#`, e.g. `wharf:docker`.
    pub fn comment(&self) -> &str {
        &self.comment
    }

    /// Whether `line` (without its terminator) is an address entry carrying this marker.
    pub fn owns(&self, line: &[u8]) -> bool {
        let Some(hash) = line.iter().position(|&b| b == b'#') else {
            return false;
        };
        let comment = trim_blanks(&line[hash + 1..]);
        comment == self.comment.as_bytes() && super::parse::parse_entry(&line[..hash]).is_some()
    }
}

/// The line a mirror wants in the hosts file: `address` resolves `host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsEntry {
    address: IpAddr,
    host: String,
}

impl HostsEntry {
    /// An entry for `host`, which must be a DNS name (a `:port` suffix is dropped: hosts files
    /// know no ports).
    pub fn new(address: IpAddr, host: &str) -> Result<Self, InvalidName> {
        let name = host_without_port(host);
        if !is_dns_name(name) {
            return Err(InvalidName::Host(host.to_owned()));
        }
        Ok(Self {
            address,
            host: name.to_ascii_lowercase(),
        })
    }

    pub fn address(&self) -> IpAddr {
        self.address
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The full line, without terminator.
    pub fn render(&self, marker: &Marker) -> String {
        format!("{}\t{}  # {}", self.address, self.host, marker.comment())
    }
}

impl fmt::Display for HostsEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.address, self.host)
    }
}

/// What an edit did to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditKind {
    Unchanged,
    Added,
    Replaced,
    Removed,
}

/// `content` with exactly one line of `marker` set to `entry`, or with none when `entry` is
/// `None`, plus what changed. Every line the marker does not own keeps its bytes and order.
///
/// A line is appended at the end, in the file's newline style (that of its first line break). If
/// the file does not end with a line break, the break goes before the line and none after it,
/// so that removing the line again (which then also drops the break before it) restores the
/// original bytes.
pub fn with_entry(
    content: &[u8],
    marker: &Marker,
    entry: Option<&HostsEntry>,
) -> (Vec<u8>, EditKind) {
    let lines = split_lines(content);
    let owned: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| marker.owns(line.text))
        .map(|(index, _)| index)
        .collect();
    match entry {
        Some(entry) => {
            let wanted = entry.render(marker);
            match owned.as_slice() {
                [] => (append_line(content, &wanted), EditKind::Added),
                [only] if lines[*only].text == wanted.as_bytes() => {
                    (content.to_vec(), EditKind::Unchanged)
                }
                [first, ..] => (
                    rebuild(&lines, &owned, Some((*first, wanted.as_bytes()))),
                    EditKind::Replaced,
                ),
            }
        }
        None if owned.is_empty() => (content.to_vec(), EditKind::Unchanged),
        None => (rebuild(&lines, &owned, None), EditKind::Removed),
    }
}

/// The address and host of the line `marker` owns, if any (the first one when there are several).
pub fn find_entry(content: &[u8], marker: &Marker) -> Option<(IpAddr, Vec<String>)> {
    split_lines(content)
        .into_iter()
        .find(|line| marker.owns(line.text))
        .and_then(|line| {
            let hash = line.text.iter().position(|&b| b == b'#')?;
            super::parse::parse_entry(&line.text[..hash])
        })
}

fn append_line(content: &[u8], line: &str) -> Vec<u8> {
    let newline = newline_style(content);
    let mut out = Vec::with_capacity(content.len() + line.len() + 2);
    out.extend_from_slice(content);
    if content.is_empty() || content.ends_with(b"\n") {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(newline);
    } else {
        out.extend_from_slice(newline);
        out.extend_from_slice(line.as_bytes());
    }
    out
}

/// Rebuilds the file without the lines in `owned`, except that `replace` puts new text in place
/// of one of them (keeping that line's terminator).
fn rebuild(lines: &[Line<'_>], owned: &[usize], replace: Option<(usize, &[u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut dropped_unterminated_last = false;
    for (index, line) in lines.iter().enumerate() {
        if let Some((at, text)) = replace
            && at == index
        {
            out.extend_from_slice(text);
            out.extend_from_slice(line.terminator);
        } else if owned.contains(&index) {
            // Only a break right after a line we keep can be one append_line added.
            let after_kept_line = index > 0
                && !owned.contains(&(index - 1))
                && replace.is_none_or(|(at, _)| at != index - 1);
            if index + 1 == lines.len() && line.terminator.is_empty() && after_kept_line {
                dropped_unterminated_last = true;
            }
        } else {
            out.extend_from_slice(line.text);
            out.extend_from_slice(line.terminator);
        }
    }
    if dropped_unterminated_last {
        strip_appended_break(&mut out);
    }
    out
}

/// Undoes the break [`append_line`] put before a line appended to a file without a final line
/// break. That break was the file's newline style, so a trailing `\r\n` is dropped whole only
/// when the remaining file's style is CRLF; otherwise only `\n` goes (a lone `\r` before it was
/// the original file's last byte). append_line adds such a break only after a non-empty file
/// that does not end with `\n`; any other break was there before and stays.
fn strip_appended_break(out: &mut Vec<u8>) {
    let cut = if out.ends_with(b"\r\n") && newline_style(&out[..out.len() - 2]) == b"\r\n" {
        2
    } else if out.ends_with(b"\n") {
        1
    } else {
        return;
    };
    let rest = &out[..out.len() - cut];
    if !rest.is_empty() && !rest.ends_with(b"\n") {
        out.truncate(out.len() - cut);
    }
}

/// The terminator of the file's first line: `\r\n` for CRLF files, else `\n`.
fn newline_style(content: &[u8]) -> &'static [u8] {
    match content.iter().position(|&b| b == b'\n') {
        Some(at) if at > 0 && content[at - 1] == b'\r' => b"\r\n",
        _ => b"\n",
    }
}

fn trim_blanks(bytes: &[u8]) -> &[u8] {
    let is_blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\r');
    let start = bytes
        .iter()
        .position(|b| !is_blank(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_blank(b))
        .map_or(start, |at| at + 1);
    &bytes[start..end.max(start)]
}

fn host_without_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
pub fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker() -> Marker {
        Marker::new("docker").expect("valid mirror name")
    }

    fn entry(ip: &str) -> HostsEntry {
        HostsEntry::new(ip.parse().expect("test IP"), "mirror-docker.io").expect("valid host")
    }

    fn set(content: &str, ip: Option<&str>) -> (String, EditKind) {
        let entry = ip.map(entry);
        let (out, kind) = with_entry(content.as_bytes(), &marker(), entry.as_ref());
        (String::from_utf8(out).expect("utf-8 in, utf-8 out"), kind)
    }

    #[test]
    fn renders_the_documented_line() {
        assert_eq!(
            entry("10.96.0.7").render(&marker()),
            "10.96.0.7\tmirror-docker.io  # wharf:docker"
        );
    }

    #[test]
    fn appends_to_a_typical_file() {
        let original = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n";
        let (out, kind) = set(original, Some("10.96.0.7"));
        assert_eq!(kind, EditKind::Added);
        assert_eq!(
            out,
            format!("{original}10.96.0.7\tmirror-docker.io  # wharf:docker\n")
        );
    }

    #[test]
    fn setting_the_same_entry_twice_changes_nothing() {
        let (once, _) = set("127.0.0.1 localhost\n", Some("10.96.0.7"));
        let (twice, kind) = set(&once, Some("10.96.0.7"));
        assert_eq!(kind, EditKind::Unchanged);
        assert_eq!(once, twice);
    }

    #[test]
    fn replaces_in_place_when_the_address_changes() {
        let original =
            "# top\n10.96.0.7\tmirror-docker.io  # wharf:docker\n192.168.1.1 router # mine\n";
        let (out, kind) = set(original, Some("10.96.3.3"));
        assert_eq!(kind, EditKind::Replaced);
        assert_eq!(
            out,
            "# top\n10.96.3.3\tmirror-docker.io  # wharf:docker\n192.168.1.1 router # mine\n"
        );
    }

    #[test]
    fn collapses_duplicates_into_the_first() {
        let original = "10.0.0.1 a # wharf:docker\nx y\n10.0.0.2 b #wharf:docker\n";
        let (out, kind) = set(original, Some("10.96.0.7"));
        assert_eq!(kind, EditKind::Replaced);
        assert_eq!(out, "10.96.0.7\tmirror-docker.io  # wharf:docker\nx y\n");
    }

    #[test]
    fn removal_restores_files_without_a_final_newline() {
        for original in [
            "",
            "a b",
            "a b\n",
            "a\r",
            "x\r\ny",
            "x\r\ny\r",
            "x\ny\r",
            "x\r\n\r\n",
        ] {
            let (added, _) = set(original, Some("10.96.0.7"));
            let (removed, kind) = set(&added, None);
            assert_eq!(kind, EditKind::Removed);
            assert_eq!(removed, original, "round trip through {added:?}");
        }
    }

    #[test]
    fn removal_keeps_breaks_it_did_not_add() {
        // Found by the fuzzer: a blank line before our unterminated line is not ours to drop.
        let line = "10.96.0.5\tmirror-docker.io  # wharf:docker";
        for (before, after) in [
            (format!("\n{line}"), "\n".to_owned()),
            (format!("a\n\n{line}"), "a\n\n".to_owned()),
            (format!("a\r\n\r\n{line}"), "a\r\n\r\n".to_owned()),
            // the break before the last duplicate belonged to our other line
            (format!("a\n{line}\n{line}"), "a\n".to_owned()),
            (format!("a\n{line}"), "a".to_owned()),
        ] {
            assert_eq!(set(&before, None), (after, EditKind::Removed), "{before:?}");
        }
    }

    #[test]
    fn crlf_files_get_a_crlf_line() {
        let (out, _) = set("127.0.0.1 localhost\r\n", Some("10.96.0.7"));
        assert_eq!(
            out,
            "127.0.0.1 localhost\r\n10.96.0.7\tmirror-docker.io  # wharf:docker\r\n"
        );
        let (out, _) = set("127.0.0.1 localhost\r\nfoo", Some("10.96.0.7"));
        assert_eq!(
            out,
            "127.0.0.1 localhost\r\nfoo\r\n10.96.0.7\tmirror-docker.io  # wharf:docker"
        );
    }

    #[test]
    fn never_touches_lines_it_does_not_own() {
        let foreign = [
            "# wharf:docker",                            // a comment, not an entry
            "10.0.0.1 mirror-docker.io",                 // same host, no marker
            "10.0.0.1 mirror-docker.io # wharf:docker2", // another mirror
            "10.0.0.1 mirror-docker.io # wharf:dock",    // a prefix of ours
            "10.0.0.1 # wharf:docker",                   // no host name
            "not-an-ip mirror-docker.io # wharf:docker", // not an address
            "fe80::1%eth0 ip6-link",
            "   \t  ",
            "\u{1F600} weird \u{00e9}",
        ]
        .join("\n");
        let (added, _) = set(&foreign, Some("10.96.0.7"));
        assert!(added.starts_with(&foreign));
        let (removed, _) = set(&added, None);
        assert_eq!(removed, foreign);
        assert_eq!(set(&foreign, None), (foreign.clone(), EditKind::Unchanged));
    }

    #[test]
    fn recognises_its_line_with_other_spacing_and_ipv6() {
        let original = "fd00::5   mirror-docker.io\t#   wharf:docker  \r\nother\n";
        let (out, kind) = set(original, None);
        assert_eq!(kind, EditKind::Removed);
        assert_eq!(out, "other\n");
        let (out, _) = set(original, Some("fd00::9"));
        assert_eq!(out, "fd00::9\tmirror-docker.io  # wharf:docker\r\nother\n");
    }

    #[test]
    fn finds_its_entry() {
        let content = b"1.2.3.4 x\n10.96.0.7\tmirror-docker.io  # wharf:docker\n";
        assert_eq!(
            find_entry(content, &marker()),
            Some((
                "10.96.0.7".parse().expect("IP"),
                vec!["mirror-docker.io".to_owned()]
            ))
        );
        assert_eq!(find_entry(b"1.2.3.4 x\n", &marker()), None);
    }

    #[test]
    fn rejects_names_that_could_break_the_file() {
        assert!(Marker::new("Docker").is_err());
        assert!(Marker::new("a b").is_err());
        assert!(Marker::new("a\nb").is_err());
        assert!(Marker::new("").is_err());
        let ip = "10.0.0.1".parse().expect("IP");
        assert!(HostsEntry::new(ip, "bad host").is_err());
        assert!(HostsEntry::new(ip, "evil\n1.1.1.1 bank.com").is_err());
        assert!(HostsEntry::new(ip, "a#b").is_err());
        assert!(HostsEntry::new(ip, "-a.com").is_err());
        assert_eq!(
            HostsEntry::new(ip, "Mirror-Quay.io:443")
                .expect("port dropped")
                .host(),
            "mirror-quay.io"
        );
        let message = HostsEntry::new(ip, "bad host")
            .expect_err("invalid")
            .to_string();
        assert!(message.contains("DNS name"), "{message}");
    }
}
