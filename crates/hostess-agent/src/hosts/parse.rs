//! A lossless hosts-file parser: lines with their exact terminators, classified as entries,
//! comments, blanks or lines nobody can parse (which are kept, never dropped).

use std::net::IpAddr;

/// One physical line: its bytes without the terminator, and the terminator (`\n`, `\r\n`, or
/// empty for a last line without a line break). Concatenating `text` and `terminator` of every
/// line gives back the file byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    pub text: &'a [u8],
    pub terminator: &'a [u8],
}

/// What a line means to a resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    /// Nothing but spaces and tabs.
    Blank,
    /// A comment (`#` after optional blanks).
    Comment,
    /// An address followed by host names, maybe with a trailing comment.
    Entry {
        address: IpAddr,
        names: Vec<String>,
        comment: Option<Vec<u8>>,
    },
    /// Anything else (a bad address, a missing name, bytes that are not UTF-8): kept as is.
    Unparseable,
}

/// A parsed line: the raw bytes and their meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedLine<'a> {
    pub line: Line<'a>,
    pub kind: LineKind,
}

/// Splits `content` into lines at `\n`; a `\r` right before the `\n` belongs to the terminator.
pub fn split_lines(content: &[u8]) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        match rest.iter().position(|&b| b == b'\n') {
            Some(newline) => {
                let text_end = if newline > 0 && rest[newline - 1] == b'\r' {
                    newline - 1
                } else {
                    newline
                };
                lines.push(Line {
                    text: &rest[..text_end],
                    terminator: &rest[text_end..=newline],
                });
                rest = &rest[newline + 1..];
            }
            None => {
                lines.push(Line {
                    text: rest,
                    terminator: &[],
                });
                rest = &[];
            }
        }
    }
    lines
}

/// Parses every line of a hosts file. Never fails: what it cannot understand is `Unparseable`.
pub fn parse_hosts(content: &[u8]) -> Vec<ParsedLine<'_>> {
    split_lines(content)
        .into_iter()
        .map(|line| ParsedLine {
            line,
            kind: classify(line.text),
        })
        .collect()
}

fn classify(text: &[u8]) -> LineKind {
    let body_end = text.iter().position(|&b| b == b'#').unwrap_or(text.len());
    let body = &text[..body_end];
    if body.iter().all(|&b| is_blank(b)) {
        return if body_end == text.len() {
            LineKind::Blank
        } else {
            LineKind::Comment
        };
    }
    match parse_entry(body) {
        Some((address, names)) => LineKind::Entry {
            address,
            names,
            comment: (body_end < text.len()).then(|| text[body_end + 1..].to_vec()),
        },
        None => LineKind::Unparseable,
    }
}

/// Parses the part of a line before any `#`: an IP address (IPv6 may carry a `%zone`) and one
/// or more names, separated by spaces or tabs.
pub fn parse_entry(body: &[u8]) -> Option<(IpAddr, Vec<String>)> {
    let body = std::str::from_utf8(body).ok()?;
    let mut fields = body
        .split([' ', '\t', '\r'])
        .filter(|field| !field.is_empty());
    let address_field = fields.next()?;
    let (address_part, zone) = match address_field.split_once('%') {
        Some((address, zone)) => (address, Some(zone)),
        None => (address_field, None),
    };
    let address: IpAddr = address_part.parse().ok()?;
    if zone.is_some_and(|zone| zone.is_empty() || address.is_ipv4()) {
        return None;
    }
    let names: Vec<String> = fields.map(str::to_owned).collect();
    if names.is_empty() {
        return None;
    }
    Some((address, names))
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(lines: &[Line<'_>]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|line| line.text.iter().chain(line.terminator))
            .copied()
            .collect()
    }

    #[test]
    fn splitting_is_lossless() {
        for content in [
            &b""[..],
            b"\n",
            b"\r\n",
            b"\r",
            b"a",
            b"a\nb",
            b"a\r\nb\r\n",
            b"a\r\r\n",
            b"\n\n\n",
            b"\xff\xfe\n\x00",
        ] {
            assert_eq!(join(&split_lines(content)), content);
        }
    }

    #[test]
    fn terminators_are_recognised() {
        let lines = split_lines(b"a\r\nb\nc\rd");
        assert_eq!(
            lines,
            vec![
                Line {
                    text: b"a",
                    terminator: b"\r\n"
                },
                Line {
                    text: b"b",
                    terminator: b"\n"
                },
                Line {
                    text: b"c\rd",
                    terminator: b""
                },
            ]
        );
    }

    #[test]
    fn classifies_lines() {
        let parsed = parse_hosts(
            b"127.0.0.1 localhost loopback\n# comment\n \t\n::1\tip6-localhost # lo\nfe80::1%eth0 link\nbogus line\n10.0.0.1\n\xff\xfe x\n1.2.3.4%eth0 zoned-v4\n",
        );
        let kinds: Vec<&LineKind> = parsed.iter().map(|line| &line.kind).collect();
        assert_eq!(
            kinds[0],
            &LineKind::Entry {
                address: "127.0.0.1".parse().expect("IP"),
                names: vec!["localhost".into(), "loopback".into()],
                comment: None
            }
        );
        assert_eq!(kinds[1], &LineKind::Comment);
        assert_eq!(kinds[2], &LineKind::Blank);
        assert_eq!(
            kinds[3],
            &LineKind::Entry {
                address: "::1".parse().expect("IP"),
                names: vec!["ip6-localhost".into()],
                comment: Some(b" lo".to_vec())
            }
        );
        assert!(matches!(kinds[4], LineKind::Entry { .. }));
        assert_eq!(kinds[5], &LineKind::Unparseable);
        assert_eq!(kinds[6], &LineKind::Unparseable);
        assert_eq!(kinds[7], &LineKind::Unparseable);
        assert_eq!(kinds[8], &LineKind::Unparseable);
    }
}
