//! Services mode: the mirror's line in the imageswap webhook's `maps`
//! (`<masquerade>:<ClusterIP>/<masquerade>`), edited so that every other line stays byte-for-byte.

/// The line that sends images of `masquerade_host` to the mirror's ClusterIP.
pub fn mirror_line(masquerade_host: &str, cluster_ip: &str) -> String {
    format!("{masquerade_host}:{cluster_ip}/{masquerade_host}")
}

/// What the maps need for one mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapEdit<'a> {
    /// The masquerade host whose line this is.
    pub masquerade_host: &'a str,
    /// The line it must be, or `None` to remove it.
    pub line: Option<&'a str>,
    /// A masquerade host the mirror used before (its line goes away too).
    pub previous_host: Option<&'a str>,
}

/// Applies `edit` to `maps`: the line keyed by the masquerade host is replaced in place (or
/// appended, after a `default:` line when the maps were empty), the previous host's line is
/// removed, and nothing else changes. Returns the text unchanged when it already holds the line.
pub fn edit_maps(maps: &str, edit: MapEdit<'_>) -> String {
    let key = format!("{}:", edit.masquerade_host);
    let previous_key = edit
        .previous_host
        .filter(|previous| *previous != edit.masquerade_host)
        .map(|previous| (format!("{previous}:"), format!("/{previous}")));
    let is_previous = |line: &str| {
        previous_key.as_ref().is_some_and(|(prefix, suffix)| {
            line.starts_with(prefix.as_str()) && line.ends_with(suffix.as_str())
        })
    };
    let mut out = String::with_capacity(maps.len() + 64);
    let mut placed = false;
    for line in maps.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        if content.starts_with(&key) {
            if let Some(wanted) = edit.line
                && !placed
            {
                out.push_str(wanted);
                out.push('\n');
                placed = true;
            }
            continue;
        }
        if is_previous(content) {
            continue;
        }
        out.push_str(line);
    }
    if let Some(wanted) = edit.line
        && !placed
    {
        if out.trim().is_empty() {
            out = "default:\n".into();
        } else if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(wanted);
        out.push('\n');
    }
    out
}

/// Whether `maps` already holds exactly `line` for its masquerade host (and no other line for it).
pub fn has_line(maps: &str, masquerade_host: &str, line: &str) -> bool {
    let key = format!("{masquerade_host}:");
    let mut ours = maps
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| l.starts_with(&key));
    ours.next() == Some(line) && ours.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOREIGN: &str =
        "default:\nquay.io:registry.corp/quay.io\n# a comment, kept\n\nweird line without colon\n";

    fn put<'a>(host: &'a str, line: &'a str) -> MapEdit<'a> {
        MapEdit {
            masquerade_host: host,
            line: Some(line),
            previous_host: None,
        }
    }

    #[test]
    fn the_line_format_follows_the_seed() {
        assert_eq!(
            mirror_line("mirror-hub.docker.io", "10.96.0.5"),
            "mirror-hub.docker.io:10.96.0.5/mirror-hub.docker.io"
        );
    }

    #[test]
    fn empty_maps_get_a_default_line_first() {
        let line = mirror_line("m.io", "10.0.0.1");
        assert_eq!(
            edit_maps("", put("m.io", &line)),
            "default:\nm.io:10.0.0.1/m.io\n"
        );
    }

    #[test]
    fn foreign_lines_stay_byte_for_byte() {
        let line = mirror_line("m.io", "10.0.0.1");
        let out = edit_maps(FOREIGN, put("m.io", &line));
        assert_eq!(out, format!("{FOREIGN}m.io:10.0.0.1/m.io\n"));
        let no_newline = "default:\nx:y";
        assert_eq!(
            edit_maps(no_newline, put("m.io", &line)),
            "default:\nx:y\nm.io:10.0.0.1/m.io\n"
        );
    }

    #[test]
    fn the_line_is_replaced_in_place_and_duplicates_dropped() {
        let maps = "default:\nm.io:10.0.0.9/m.io\nquay.io:q\nm.io:old\n";
        let line = mirror_line("m.io", "10.0.0.1");
        let out = edit_maps(maps, put("m.io", &line));
        assert_eq!(out, "default:\nm.io:10.0.0.1/m.io\nquay.io:q\n");
        assert!(has_line(&out, "m.io", &line));
        assert!(!has_line(maps, "m.io", &line));
        assert_eq!(edit_maps(&out, put("m.io", &line)), out, "idempotent");
    }

    #[test]
    fn a_longer_host_with_the_same_prefix_is_not_ours() {
        let maps = "default:\nm.io.corp:1.2.3.4/m.io.corp\n";
        let line = mirror_line("m.io", "10.0.0.1");
        let out = edit_maps(maps, put("m.io", &line));
        assert!(out.contains("m.io.corp:1.2.3.4/m.io.corp\n"));
    }

    #[test]
    fn removal_and_rename() {
        let maps = "default:\nold.io:10.0.0.1/old.io\nq:r\n";
        let removed = edit_maps(
            maps,
            MapEdit {
                masquerade_host: "old.io",
                line: None,
                previous_host: None,
            },
        );
        assert_eq!(removed, "default:\nq:r\n");
        let line = mirror_line("new.io", "10.0.0.1");
        let renamed = edit_maps(
            maps,
            MapEdit {
                masquerade_host: "new.io",
                line: Some(&line),
                previous_host: Some("old.io"),
            },
        );
        assert_eq!(renamed, "default:\nq:r\nnew.io:10.0.0.1/new.io\n");
    }

    #[test]
    fn a_foreign_line_for_the_previous_host_is_kept() {
        let maps = "default:\nold.io:elsewhere.corp\n";
        let line = mirror_line("new.io", "10.0.0.1");
        let out = edit_maps(
            maps,
            MapEdit {
                masquerade_host: "new.io",
                line: Some(&line),
                previous_host: Some("old.io"),
            },
        );
        assert!(out.contains("old.io:elsewhere.corp\n"), "{out}");
    }
}
