//! Checks a RegistryMirror before anything is built from it, naming the field to fix, and derives
//! what the builders need (effective masquerade host, claim template with defaults, cache size).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::{Resource, ResourceExt};

use super::names::IMAGE_STORE_VOLUME;
use super::quantity::parse_quantity;
use super::settings::is_dns_subdomain;
use crate::crd::RegistryMirror;

/// Cache volume size when the spec gives none (the seed's default).
pub const DEFAULT_STORAGE: &str = "20Gi";
/// Share of the volume nginx may fill; the rest is headroom for temp files and metadata.
pub const CACHE_SHARE_OF_VOLUME: f64 = 0.8;
/// Longest mirror name whose children still have valid names: the StatefulSet's pods carry
/// `controller-revision-hash: registry-mirror-<n>-<10 chars>`, a label value of at most 63.
pub const MAX_MIRROR_NAME_LEN: usize = 36;

/// One thing wrong with a RegistryMirror, with the field it is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblem {
    /// Path of the field, e.g. `spec.upstreamUrl`.
    pub field: &'static str,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A RegistryMirror that passed [`validate`], with everything derived from it.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidMirror {
    /// The RegistryMirror's name (`<n>`).
    pub name: String,
    /// Controller ownerReference every child carries.
    pub owner: OwnerReference,
    /// Upstream registry host[:port].
    pub upstream: String,
    /// Masquerade host in effect.
    pub masquerade_host: String,
    /// Name of the credentials Secret, if any.
    pub credentials_secret: Option<String>,
    /// The `image-store` claim template, defaults filled in.
    pub claim_template: PersistentVolumeClaim,
    /// Whether the spec gave a claim template (else it is the known-good default).
    pub custom_claim_template: bool,
    /// Maximum size of nginx's cache, in bytes.
    pub cache_max_size_bytes: u64,
    /// PriorityClass of the mirror's pods.
    pub priority_class: Option<String>,
    /// Tag revalidation TTL.
    pub tag_ttl_seconds: u32,
}

/// Checks `mirror` and derives a [`ValidMirror`], or lists every problem found.
pub fn validate(mirror: &RegistryMirror) -> Result<ValidMirror, Vec<SpecProblem>> {
    let mut problems = Vec::new();
    let name = mirror.name_any();
    if name.len() > MAX_MIRROR_NAME_LEN || !is_dns_label(&name) {
        problems.push(SpecProblem {
            field: "metadata.name",
            message: format!(
                "{name:?} cannot name the mirror's Services and pods: use at most {MAX_MIRROR_NAME_LEN} lowercase letters, digits and '-'"
            ),
        });
    }
    let owner = mirror.controller_owner_ref(&());
    if owner.is_none() {
        problems.push(SpecProblem {
            field: "metadata.uid",
            message: "the object has no uid yet; it must come from the API server".into(),
        });
    }
    let spec = &mirror.spec;
    if let Err(problem) = check_host_port(&spec.upstream_url) {
        problems.push(SpecProblem {
            field: "spec.upstreamUrl",
            message: format!(
                "{:?} {problem}: give the upstream registry's host and optional port, without scheme or path, e.g. registry-1.docker.io",
                spec.upstream_url
            ),
        });
    }
    if let Some(masquerade) = &spec.masquerade_url
        && let Err(problem) = check_host_port(masquerade)
    {
        problems.push(SpecProblem {
            field: "spec.masqueradeUrl",
            message: format!(
                "{masquerade:?} {problem}: give a host name with an optional port, without scheme or path, e.g. mirror.example.com"
            ),
        });
    }
    for (field, value) in [
        ("spec.credentialsSecret", &spec.credentials_secret),
        ("spec.priorityClass", &spec.priority_class),
    ] {
        if let Some(value) = value
            && !is_dns_subdomain(value)
        {
            problems.push(SpecProblem {
                field,
                message: format!(
                    "{value:?} is not an object name: use lowercase letters, digits, '-' and '.'"
                ),
            });
        }
    }
    let claim = claim_template(mirror);
    let cache_max_size_bytes = match cache_size(&claim) {
        Ok(bytes) => bytes,
        Err(problem) => {
            problems.push(problem);
            0
        }
    };
    match (problems.is_empty(), owner) {
        (true, Some(owner)) => Ok(ValidMirror {
            masquerade_host: spec.effective_masquerade_url(),
            upstream: spec.upstream_url.clone(),
            credentials_secret: spec.credentials_secret.clone(),
            claim_template: claim,
            custom_claim_template: spec.volume_claim_template.is_some(),
            cache_max_size_bytes,
            priority_class: spec.priority_class.clone(),
            tag_ttl_seconds: spec.effective_tag_ttl_seconds(),
            name,
            owner,
        }),
        _ => Err(problems),
    }
}

/// The `image-store` claim template: the spec's, with access mode ReadWriteOnce and 20Gi when
/// it sets none (as the seed did).
fn claim_template(mirror: &RegistryMirror) -> PersistentVolumeClaim {
    let template = mirror
        .spec
        .volume_claim_template
        .clone()
        .unwrap_or_default();
    let mut spec: PersistentVolumeClaimSpec = template.spec.unwrap_or_default();
    if spec.access_modes.as_ref().is_none_or(Vec::is_empty) {
        spec.access_modes = Some(vec!["ReadWriteOnce".into()]);
    }
    let resources = spec
        .resources
        .get_or_insert_with(VolumeResourceRequirements::default);
    resources
        .requests
        .get_or_insert_with(BTreeMap::new)
        .entry("storage".into())
        .or_insert_with(|| Quantity(DEFAULT_STORAGE.into()));
    let metadata = template.metadata.unwrap_or_default();
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(IMAGE_STORE_VOLUME.into()),
            labels: (!metadata.labels.is_empty()).then_some(metadata.labels),
            annotations: (!metadata.annotations.is_empty()).then_some(metadata.annotations),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn cache_size(claim: &PersistentVolumeClaim) -> Result<u64, SpecProblem> {
    const FIELD: &str = "spec.volumeClaimTemplate.spec.resources.requests.storage";
    let storage = claim
        .spec
        .as_ref()
        .and_then(|spec| spec.resources.as_ref())
        .and_then(|resources| resources.requests.as_ref())
        .and_then(|requests| requests.get("storage"))
        .map(|quantity| quantity.0.as_str())
        .unwrap_or(DEFAULT_STORAGE);
    let bytes = parse_quantity(storage).map_err(|err| SpecProblem {
        field: FIELD,
        message: err.to_string(),
    })?;
    if bytes < 1024.0 * 1024.0 {
        return Err(SpecProblem {
            field: FIELD,
            message: format!("{storage:?} is too small for a cache: request at least 1Mi"),
        });
    }
    // Truncating to whole bytes is intended; sizes are far below u64::MAX.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok((bytes * CACHE_SHARE_OF_VOLUME) as u64)
}

/// Checks `host[:port]` (a DNS name, an IPv4 address or a bracketed IPv6 address) and says
/// what is wrong otherwise.
pub fn check_host_port(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("is empty");
    }
    if value.contains("://") {
        return Err("has a scheme");
    }
    if value.contains('/') {
        return Err("has a path");
    }
    let (host, port) = split_host_port(value);
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err("has an invalid port");
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(drop)
            .map_err(|_| "has an invalid IPv6 address");
    }
    if host.len() > 253
        || !host.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
                && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        })
    {
        return Err("is not a valid host name");
    }
    Ok(())
}

/// Splits `host[:port]`, keeping brackets of an IPv6 host.
pub fn split_host_port(value: &str) -> (&str, Option<&str>) {
    if value.starts_with('[') {
        return match value.rfind("]:") {
            Some(end) => (&value[..=end], Some(&value[end + 2..])),
            None => (value, None),
        };
    }
    match value.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (value, None),
    }
}

fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// A mirror's claim on its masquerade host, for [`masquerade_taken_by`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostClaim<'a> {
    pub name: &'a str,
    pub created: Option<&'a Time>,
    pub deleting: bool,
    /// The effective masquerade host.
    pub host: String,
}

impl<'a> HostClaim<'a> {
    /// The claim of a RegistryMirror.
    pub fn of(mirror: &'a RegistryMirror) -> Self {
        let meta = mirror.meta();
        Self {
            name: meta.name.as_deref().unwrap_or_default(),
            created: meta.creation_timestamp.as_ref(),
            deleting: meta.deletion_timestamp.is_some(),
            host: mirror.spec.effective_masquerade_url(),
        }
    }
}

/// Name of the mirror (among `others`) that already uses `mine`'s masquerade host, if one
/// does. The oldest mirror (then the first by name) keeps a contested host; the others fail.
/// Host names compare case-insensitively; mirrors being deleted claim nothing.
pub fn masquerade_taken_by<'a>(
    mine: &HostClaim<'_>,
    others: impl IntoIterator<Item = HostClaim<'a>>,
) -> Option<String> {
    let rank = |claim: &HostClaim<'_>| (claim.created.cloned(), claim.name.to_owned());
    let my_rank = rank(mine);
    others
        .into_iter()
        .filter(|other| other.name != mine.name && !other.deleting)
        .filter(|other| other.host.eq_ignore_ascii_case(&mine.host))
        .filter(|other| rank(other) < my_rank)
        .map(|other| other.name.to_owned())
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{RegistryMirrorSpec, VolumeClaimTemplate};
    use k8s_openapi::jiff::Timestamp;

    pub(crate) fn mirror(name: &str, upstream: &str) -> RegistryMirror {
        let mut mirror = RegistryMirror::new(
            name,
            RegistryMirrorSpec {
                upstream_url: upstream.into(),
                masquerade_url: None,
                credentials_secret: None,
                volume_claim_template: None,
                priority_class: None,
                tag_ttl_seconds: None,
            },
        );
        mirror.metadata.uid = Some(format!("uid-{name}"));
        mirror
    }

    #[test]
    fn a_seed_mirror_gets_the_seed_defaults() {
        let valid = validate(&mirror("docker", "hub.docker.io")).expect("valid");
        assert_eq!(valid.masquerade_host, "mirror-hub.docker.io");
        assert_eq!(valid.upstream, "hub.docker.io");
        let spec = valid.claim_template.spec.as_ref().expect("spec");
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
        let storage = &spec
            .resources
            .as_ref()
            .expect("resources")
            .requests
            .as_ref()
            .expect("requests")["storage"];
        assert_eq!(storage.0, "20Gi");
        assert_eq!(
            valid.claim_template.metadata.name.as_deref(),
            Some("image-store")
        );
        assert_eq!(
            valid.cache_max_size_bytes,
            (20.0 * 1024f64.powi(3) * 0.8) as u64
        );
        assert_eq!(valid.owner.kind, "RegistryMirror");
        assert_eq!(valid.owner.controller, Some(true));
        assert_eq!(valid.tag_ttl_seconds, 60);
        assert!(!valid.custom_claim_template);
    }

    #[test]
    fn the_cache_size_follows_the_volume() {
        let mut m = mirror("docker", "hub.docker.io");
        m.spec.volume_claim_template = Some(VolumeClaimTemplate {
            metadata: None,
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: Some("fast".into()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".into(),
                        Quantity("100G".into()),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        });
        let valid = validate(&m).expect("valid");
        assert!(valid.custom_claim_template);
        assert_eq!(valid.cache_max_size_bytes, 80_000_000_000);
        let spec = valid.claim_template.spec.expect("spec");
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
    }

    #[test]
    fn bad_fields_are_named() {
        let mut m = mirror("docker", "https://hub.docker.io/v2");
        m.spec.masquerade_url = Some("local docker".into());
        m.spec.credentials_secret = Some("Creds".into());
        m.spec.volume_claim_template = Some(VolumeClaimTemplate {
            metadata: None,
            spec: Some(PersistentVolumeClaimSpec {
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".into(),
                        Quantity("lots".into()),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        });
        let problems = validate(&m).expect_err("invalid");
        let fields: Vec<_> = problems.iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            vec![
                "spec.upstreamUrl",
                "spec.masqueradeUrl",
                "spec.credentialsSecret",
                "spec.volumeClaimTemplate.spec.resources.requests.storage"
            ]
        );
        assert!(
            problems[0].message.contains("has a scheme"),
            "{}",
            problems[0]
        );
        assert!(
            problems[3].message.contains("\"lots\" is not a quantity"),
            "{}",
            problems[3]
        );
    }

    #[test]
    fn an_empty_upstream_or_a_tiny_volume_is_refused() {
        let problems = validate(&mirror("docker", "")).expect_err("empty upstream");
        assert_eq!(problems[0].field, "spec.upstreamUrl");
        assert!(problems[0].message.contains("is empty"));
        let mut m = mirror("docker", "hub.docker.io");
        m.spec.volume_claim_template = Some(VolumeClaimTemplate {
            metadata: None,
            spec: Some(PersistentVolumeClaimSpec {
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".into(),
                        Quantity("10Ki".into()),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        });
        let problems = validate(&m).expect_err("tiny");
        assert!(problems[0].message.contains("too small"));
    }

    #[test]
    fn names_that_cannot_name_children_are_refused() {
        let problems = validate(&mirror("a.b", "hub.docker.io")).expect_err("dot");
        assert_eq!(problems[0].field, "metadata.name");
        let long = "a".repeat(MAX_MIRROR_NAME_LEN + 1);
        assert!(validate(&mirror(&long, "hub.docker.io")).is_err());
        assert!(validate(&mirror(&"a".repeat(MAX_MIRROR_NAME_LEN), "hub.docker.io")).is_ok());
    }

    #[test]
    fn host_ports() {
        for good in [
            "hub.docker.io",
            "localhost:5000",
            "10.0.0.1",
            "[::1]:443",
            "a-b.c",
        ] {
            assert_eq!(check_host_port(good), Ok(()), "{good}");
        }
        assert_eq!(check_host_port("x:0"), Err("has an invalid port"));
        assert_eq!(check_host_port("x:99999"), Err("has an invalid port"));
        assert_eq!(check_host_port("-x.io"), Err("is not a valid host name"));
        assert_eq!(check_host_port("[zz]"), Err("has an invalid IPv6 address"));
        assert_eq!(split_host_port("[::1]:5000"), ("[::1]", Some("5000")));
        assert_eq!(split_host_port("h:1"), ("h", Some("1")));
    }

    #[test]
    fn the_oldest_mirror_keeps_a_masquerade_host() {
        let at = |secs| Some(Time(Timestamp::from_second(secs).expect("time")));
        let mut old = mirror("old", "hub.docker.io");
        old.metadata.creation_timestamp = at(10);
        let mut new = mirror("new", "other.io");
        new.spec.masquerade_url = Some("MIRROR-hub.docker.io".into());
        new.metadata.creation_timestamp = at(20);
        let unrelated = mirror("x", "quay.io");
        let all = [old.clone(), new.clone(), unrelated];
        let claims = || all.iter().map(HostClaim::of);
        assert_eq!(
            masquerade_taken_by(&HostClaim::of(&new), claims()),
            Some("old".into())
        );
        assert_eq!(masquerade_taken_by(&HostClaim::of(&old), claims()), None);
        let mut deleting = old.clone();
        deleting.metadata.deletion_timestamp = at(30);
        let claims = [HostClaim::of(&deleting), HostClaim::of(&new)];
        assert_eq!(masquerade_taken_by(&HostClaim::of(&new), claims), None);
        let mut same_second = mirror("a-first", "x.io");
        same_second.spec.masquerade_url = new.spec.masquerade_url.clone();
        same_second.metadata.creation_timestamp = at(20);
        assert_eq!(
            masquerade_taken_by(&HostClaim::of(&new), [HostClaim::of(&same_second)]),
            Some("a-first".into()),
            "the same creation second: the name decides"
        );
    }
}
