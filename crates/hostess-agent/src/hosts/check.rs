//! The editor's promises, checkable on any input: what the fuzz target and the corpus test
//! run over every hosts file they are given.

use super::edit::{EditKind, HostsEntry, Marker, find_entry, with_entry};
use super::parse::{parse_hosts, split_lines};

/// A broken promise, with the input that broke it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{promise} (input: {input:?})")]
pub struct BrokenPromise {
    pub promise: &'static str,
    pub input: String,
}

/// Checks, for `content` and the mirror `docker`: parsing is lossless; setting the mirror's line
/// gives exactly one such line and is idempotent; every line the mirror does not own keeps its
/// bytes and order; removing the line again restores the original when it had none; and
/// removal leaves no line of the mirror.
pub fn check_promises(content: &[u8]) -> Result<(), BrokenPromise> {
    let broken = |promise| BrokenPromise {
        promise,
        input: String::from_utf8_lossy(content).into_owned(),
    };
    let lines = split_lines(content);
    let rejoined: Vec<u8> = lines
        .iter()
        .flat_map(|line| line.text.iter().chain(line.terminator))
        .copied()
        .collect();
    if rejoined != content {
        return Err(broken("splitting into lines is lossless"));
    }
    if parse_hosts(content).len() != lines.len() {
        return Err(broken("the parser classifies every line"));
    }

    let marker = Marker::new("docker").map_err(|_| broken("the test marker is valid"))?;
    let entry = HostsEntry::new([10, 96, 0, 5].into(), "mirror-docker.io")
        .map_err(|_| broken("the test entry is valid"))?;
    let had_line = find_entry(content, &marker).is_some();

    let (with_line, _) = with_entry(content, &marker, Some(&entry));
    if owned_count(&with_line, &marker) != 1 {
        return Err(broken(
            "setting the line leaves exactly one line of the mirror",
        ));
    }
    if foreign_texts(&with_line, &marker) != foreign_texts(content, &marker) {
        return Err(broken("setting the line keeps every other line"));
    }
    let (again, kind) = with_entry(&with_line, &marker, Some(&entry));
    if again != with_line || kind != EditKind::Unchanged {
        return Err(broken("setting the same line twice changes nothing"));
    }

    let (without_line, _) = with_entry(&with_line, &marker, None);
    if owned_count(&without_line, &marker) != 0 {
        return Err(broken("removal leaves no line of the mirror"));
    }
    if !had_line && without_line != content {
        return Err(broken(
            "adding then removing the line restores the original bytes",
        ));
    }
    let (removed_directly, _) = with_entry(content, &marker, None);
    if foreign_texts(&removed_directly, &marker) != foreign_texts(content, &marker) {
        return Err(broken("removal keeps every other line"));
    }
    Ok(())
}

fn owned_count(content: &[u8], marker: &Marker) -> usize {
    split_lines(content)
        .iter()
        .filter(|line| marker.owns(line.text))
        .count()
}

/// The lines the mirror does not own. `\r`s ending a line count as part of its line break:
/// appending after a file whose last byte is a lone `\r` turns it into half of a CRLF.
fn foreign_texts<'a>(content: &'a [u8], marker: &Marker) -> Vec<&'a [u8]> {
    split_lines(content)
        .into_iter()
        .filter(|line| !marker.owns(line.text))
        .map(|line| {
            let end = line
                .text
                .iter()
                .rposition(|&b| b != b'\r')
                .map_or(0, |last| last + 1);
            &line.text[..end]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_for_simple_files() {
        for content in [
            &b""[..],
            b"a\n",
            b"10.0.0.1 x # wharf:docker",
            b"\r\r\n\n",
            b"a\r",
            b"a\r\r",
        ] {
            check_promises(content).expect("promises hold");
        }
    }
}
