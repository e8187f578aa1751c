//! Names and label values of what the rotator writes, kept within Kubernetes' length limits
//! deterministically: what fits stays readable, what does not keeps a prefix plus a hash.

use sha2::{Digest, Sha256};

use crate::kind::AccessMode;

/// Longest object name (a DNS subdomain).
pub const MAX_NAME_LEN: usize = 253;
/// Longest label value.
pub const MAX_LABEL_VALUE_LEN: usize = 63;
/// Hex digits of the hash that stands in for a cut-off part (64 bits: collisions are not a
/// practical concern, and ownership checks compare full values anyway).
const HASH_LEN: usize = 16;
/// Room kept for `.<rotation>` in account names: a dot and the 19 digits of the largest i64, so
/// every rotation of one CR shares the same name stem.
const ROTATION_SUFFIX_RESERVE: usize = 20;

/// Hex SHA-256 of `input`.
pub fn sha256_hex(input: &[u8]) -> String {
    Sha256::digest(input)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `value` when it is at most `max` characters long; otherwise its longest prefix that leaves room
/// for `-<hash of value>`, cut back to end on a letter or digit (so the result is still a valid
/// object name or label value).
pub fn fit(value: &str, max: usize) -> String {
    if value.chars().count() <= max {
        return value.to_owned();
    }
    let hash = &sha256_hex(value.as_bytes())[..HASH_LEN];
    let keep = max.saturating_sub(HASH_LEN + 1);
    let prefix: String = value.chars().take(keep).collect();
    let prefix = prefix.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    if prefix.is_empty() {
        hash.to_owned()
    } else {
        format!("{prefix}-{hash}")
    }
}

/// A label value standing for `value` (namespaces always fit; long CR names get hashed).
pub fn label_value(value: &str) -> String {
    fit(value, MAX_LABEL_VALUE_LEN)
}

/// Name of the ImageRegistryAccount of one rotation: `<push|pull>.<namespace>.<name>.<rotation>`
/// as the original, with the stem shortened (the same way for every rotation) when the whole name
/// could exceed 253 characters.
pub fn account_name(mode: AccessMode, namespace: &str, name: &str, rotation: i64) -> String {
    let stem = format!("{}.{namespace}.{name}", mode.as_str());
    let stem = fit(&stem, MAX_NAME_LEN - ROTATION_SUFFIX_RESERVE);
    format!("{stem}.{rotation}")
}

/// Name of the Secret of a push or pull secret: `<name>-image-push-secret` /
/// `<name>-image-pull-secret`, with the CR name shortened when the result would exceed 253.
pub fn secret_name(mode: AccessMode, name: &str) -> String {
    let suffix = mode.secret_suffix();
    format!("{}{suffix}", fit(name, MAX_NAME_LEN - suffix.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API server's rule for object names (DNS-1123 subdomain).
    fn is_dns_subdomain(name: &str) -> bool {
        name.len() <= MAX_NAME_LEN
            && !name.is_empty()
            && name.split('.').all(|segment| {
                !segment.is_empty()
                    && segment
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && segment.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && segment.ends_with(|c: char| c.is_ascii_alphanumeric())
            })
    }

    /// The API server's rule for label values.
    fn is_label_value(value: &str) -> bool {
        value.len() <= MAX_LABEL_VALUE_LEN
            && (value.is_empty()
                || (value.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && value.ends_with(|c: char| c.is_ascii_alphanumeric())
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))))
    }

    fn long_dotted_name(len: usize) -> String {
        let mut name = String::new();
        while name.len() < len {
            name.push_str("segment.");
        }
        name.truncate(len);
        name.trim_end_matches(['.', '-']).to_owned()
    }

    #[test]
    fn account_names_follow_the_seed_scheme() {
        assert_eq!(
            account_name(AccessMode::Push, "build", "example", 1),
            "push.build.example.1"
        );
        assert_eq!(
            account_name(AccessMode::Pull, "team-a", "my.dotted.name", 42),
            "pull.team-a.my.dotted.name.42"
        );
    }

    #[test]
    fn long_account_names_are_shortened_the_same_way_for_every_rotation() {
        let name = long_dotted_name(253);
        let namespace = "n".repeat(63);
        let first = account_name(AccessMode::Push, &namespace, &name, 1);
        let later = account_name(AccessMode::Push, &namespace, &name, i64::MAX);
        assert!(is_dns_subdomain(&first), "{first}");
        assert!(is_dns_subdomain(&later), "{later}");
        assert_eq!(
            first.trim_end_matches(char::is_numeric),
            later.trim_end_matches(char::is_numeric)
        );
        assert!(first.starts_with(&format!("push.{namespace}.segment.")));
        // Deterministic, and distinct for another CR with the same prefix.
        assert_eq!(first, account_name(AccessMode::Push, &namespace, &name, 1));
        let other = format!("{}x", &name[..252]);
        assert_ne!(first, account_name(AccessMode::Push, &namespace, &other, 1));
        assert_ne!(first, account_name(AccessMode::Pull, &namespace, &name, 1));
    }

    #[test]
    fn names_that_fit_are_not_touched() {
        let name = "a".repeat(253 - "push.ns..1".len() - ROTATION_SUFFIX_RESERVE + 2);
        let account = account_name(AccessMode::Push, "ns", &name, 1);
        assert_eq!(account, format!("push.ns.{name}.1"));
    }

    #[test]
    fn secret_names_follow_the_readme() {
        assert_eq!(
            secret_name(AccessMode::Push, "example"),
            "example-image-push-secret"
        );
        assert_eq!(
            secret_name(AccessMode::Pull, "a.b"),
            "a.b-image-pull-secret"
        );
        let long = long_dotted_name(253);
        let secret = secret_name(AccessMode::Pull, &long);
        assert!(is_dns_subdomain(&secret), "{secret}");
        assert!(secret.ends_with("-image-pull-secret"));
    }

    #[test]
    fn label_values_stay_valid_and_distinct() {
        assert_eq!(label_value("example"), "example");
        assert_eq!(label_value(&"a".repeat(63)), "a".repeat(63));
        for len in [64, 100, 253] {
            let name = long_dotted_name(len);
            let value = label_value(&name);
            assert!(is_label_value(&value), "{value}");
            assert_eq!(value, label_value(&name), "deterministic");
        }
        let a = label_value(&format!("{}a", "x".repeat(70)));
        let b = label_value(&format!("{}b", "x".repeat(70)));
        assert_ne!(a, b);
    }

    #[test]
    fn a_cut_that_lands_on_a_separator_is_trimmed() {
        // 46 characters survive the cut: make the 46th a dot.
        let name = format!("{}.{}", "a".repeat(45), "b".repeat(40));
        let value = label_value(&name);
        assert!(is_label_value(&value), "{value}");
        assert!(
            value.starts_with(&format!("{}-", "a".repeat(45))),
            "{value}"
        );
    }

    #[test]
    fn sha256_is_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
