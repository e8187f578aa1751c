//! The push/pull Secret: its Docker config, the keys the original wrote, and annotations that let
//! the rotator read back which login it holds and notice when someone edited it.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::account::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::kind::{AccessMode, ImageSecretKind};
use crate::names;
use crate::registry::RegistryKey;

/// Annotation: hash of the data keys the rotator wrote; a mismatch means someone edited them.
pub const DATA_HASH_ANNOTATION: &str = "wharf.dev/data-hash";
/// Annotation: the rotation whose password the Secret holds.
pub const ROTATION_ANNOTATION: &str = "wharf.dev/rotation";
/// Annotation: when that password was generated (RFC 3339).
pub const ROTATION_DATE_ANNOTATION: &str = "wharf.dev/rotation-date";
/// Annotation: `namespace/name` of the account the Secret logs in as.
pub const ACCOUNT_ANNOTATION: &str = "wharf.dev/account";
/// Annotation: `namespace/name` of the ImageRegistry the Secret logs in to.
pub const REGISTRY_ANNOTATION: &str = "wharf.dev/registry";

/// Data key: the registry's hostname (README).
pub const HOSTNAME_KEY: &str = "hostname";
/// Data key: the registry's hostname again (what the original's code wrote).
pub const REGISTRY_KEY: &str = "registry";
/// Data key: the registry's CA certificate (PEM; empty when the registry names no TLS Secret).
pub const CA_KEY: &str = "ca.crt";
/// Data key: the account name (the original wrote it too).
pub const USERNAME_KEY: &str = "username";
/// Data key: the password (the original wrote it too).
pub const PASSWORD_KEY: &str = "password";

/// A login of one rotation, as the Secret holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
    pub rotation: i64,
    /// When the password was generated, to the second.
    pub rotated_at: Timestamp,
    /// Namespace of the account (the registry's).
    pub account_namespace: String,
    pub registry: RegistryKey,
}

/// Where the registry is and what clients must trust.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub hostname: String,
    pub ca_certificate: String,
}

/// What the live Secret tells about the login it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretState {
    Missing,
    /// Present but edited (or not written by the rotator): it cannot be trusted to hold a login.
    Edited,
    Intact(Credential),
}

/// Docker config JSON with one login for `hostname` (`auth` as Docker and containers-auth read it,
/// plus `username`/`password` as the kubelet also accepts).
pub fn docker_config_json(hostname: &str, username: &str, password: &str) -> String {
    let auth = STANDARD.encode(format!("{username}:{password}"));
    serde_json::json!({
        "auths": {
            hostname: {"username": username, "password": password, "auth": auth}
        }
    })
    .to_string()
}

/// The data keys the rotator owns for `mode`.
fn managed_keys(mode: AccessMode) -> [&'static str; 6] {
    [
        mode.docker_config_key(),
        HOSTNAME_KEY,
        REGISTRY_KEY,
        CA_KEY,
        USERNAME_KEY,
        PASSWORD_KEY,
    ]
}

/// The Secret's data for a login.
pub fn secret_data(
    mode: AccessMode,
    endpoint: &Endpoint,
    credential: &Credential,
) -> BTreeMap<String, ByteString> {
    let text = |value: &str| ByteString(value.as_bytes().to_vec());
    BTreeMap::from([
        (
            mode.docker_config_key().to_owned(),
            text(&docker_config_json(
                &endpoint.hostname,
                &credential.username,
                &credential.password,
            )),
        ),
        (HOSTNAME_KEY.to_owned(), text(&endpoint.hostname)),
        (REGISTRY_KEY.to_owned(), text(&endpoint.hostname)),
        (CA_KEY.to_owned(), text(&endpoint.ca_certificate)),
        (USERNAME_KEY.to_owned(), text(&credential.username)),
        (PASSWORD_KEY.to_owned(), text(&credential.password)),
    ])
}

/// `sha256:<hex>` over the managed keys of `data` (keys other writers add do not count, so adding
/// one never forces a rotation that could not make the hash match again).
pub fn data_hash(mode: AccessMode, data: &BTreeMap<String, ByteString>) -> String {
    let mut input = Vec::new();
    for key in managed_keys(mode) {
        input.extend_from_slice(key.as_bytes());
        match data.get(key) {
            Some(value) => {
                input.push(1);
                input.extend_from_slice(&(value.0.len() as u64).to_be_bytes());
                input.extend_from_slice(&value.0);
            }
            None => input.push(0),
        }
    }
    format!("sha256:{}", names::sha256_hex(&input))
}

/// The Secret of `cr` holding `credential` for `endpoint`, owned by `cr`.
pub fn build_secret<K: ImageSecretKind>(
    cr: &K,
    endpoint: &Endpoint,
    credential: &Credential,
) -> Secret {
    let mode = K::ACCESS_MODE;
    let data = secret_data(mode, endpoint, credential);
    let annotations = BTreeMap::from([
        (DATA_HASH_ANNOTATION.to_owned(), data_hash(mode, &data)),
        (
            ROTATION_ANNOTATION.to_owned(),
            credential.rotation.to_string(),
        ),
        (
            ROTATION_DATE_ANNOTATION.to_owned(),
            credential.rotated_at.to_string(),
        ),
        (
            ACCOUNT_ANNOTATION.to_owned(),
            format!("{}/{}", credential.account_namespace, credential.username),
        ),
        (
            REGISTRY_ANNOTATION.to_owned(),
            credential.registry.to_annotation(),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(names::secret_name(mode, &cr.name_any())),
            namespace: cr.namespace(),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_owned(),
                MANAGED_BY.to_owned(),
            )])),
            annotations: Some(annotations),
            owner_references: cr.controller_owner_ref(&()).map(|owner| vec![owner]),
            ..ObjectMeta::default()
        },
        type_: Some(mode.secret_type().to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Reads the login a live Secret holds; anything missing, unparsable or not matching the data hash
/// counts as edited.
pub fn read_secret(mode: AccessMode, live: Option<&Secret>) -> SecretState {
    let Some(secret) = live else {
        return SecretState::Missing;
    };
    read_credential(mode, secret).map_or(SecretState::Edited, SecretState::Intact)
}

fn read_credential(mode: AccessMode, secret: &Secret) -> Option<Credential> {
    let empty = BTreeMap::new();
    let data = secret.data.as_ref().unwrap_or(&empty);
    let annotations = secret.annotations();
    if annotations.get(DATA_HASH_ANNOTATION)? != &data_hash(mode, data) {
        return None;
    }
    if secret.type_.as_deref().unwrap_or("Opaque") != mode.secret_type() {
        return None;
    }
    let text = |key: &str| String::from_utf8(data.get(key)?.0.clone()).ok();
    let (account_namespace, account_name) = annotations.get(ACCOUNT_ANNOTATION)?.split_once('/')?;
    let username = text(USERNAME_KEY)?;
    if username != account_name {
        return None;
    }
    Some(Credential {
        password: text(PASSWORD_KEY).filter(|p| !p.is_empty())?,
        rotation: annotations.get(ROTATION_ANNOTATION)?.parse().ok()?,
        rotated_at: annotations.get(ROTATION_DATE_ANNOTATION)?.parse().ok()?,
        account_namespace: account_namespace.to_owned(),
        registry: RegistryKey::from_annotation(annotations.get(REGISTRY_ANNOTATION)?)?,
        username,
    })
}

#[cfg(test)]
mod tests {
    use wharf_core::crd::{ImagePullSecret, ImagePushSecret};

    use super::*;

    fn credential() -> Credential {
        Credential {
            username: "push.build.example.2".into(),
            password: "s3cretPassw0rd".into(),
            rotation: 2,
            rotated_at: Timestamp::from_second(1_700_000_000).expect("timestamp"),
            account_namespace: "infra".into(),
            registry: RegistryKey::new("infra", "registry"),
        }
    }

    fn endpoint() -> Endpoint {
        Endpoint {
            hostname: "registry.infra.svc.example.org".into(),
            ca_certificate: "-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n".into(),
        }
    }

    fn push_cr() -> ImagePushSecret {
        let mut cr = ImagePushSecret::new("example", Default::default());
        cr.metadata.namespace = Some("build".into());
        cr.metadata.uid = Some("uid-1".into());
        cr
    }

    #[test]
    fn docker_config_has_one_login_for_the_hostname() {
        let json: serde_json::Value =
            serde_json::from_str(&docker_config_json("reg.example:443", "user.a.b.1", "pw"))
                .expect("valid JSON");
        let login = &json["auths"]["reg.example:443"];
        assert_eq!(login["username"], "user.a.b.1");
        assert_eq!(login["password"], "pw");
        let auth = STANDARD
            .decode(login["auth"].as_str().expect("auth string"))
            .expect("base64");
        assert_eq!(auth, b"user.a.b.1:pw");
        assert_eq!(json["auths"].as_object().map(|a| a.len()), Some(1));
    }

    #[test]
    fn a_push_secret_is_an_opaque_docker_config_owned_by_its_cr() {
        let secret = build_secret(&push_cr(), &endpoint(), &credential());
        assert_eq!(secret.name_any(), "example-image-push-secret");
        assert_eq!(secret.namespace().as_deref(), Some("build"));
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
        let data = secret.data.as_ref().expect("data");
        for key in [
            "config.json",
            "hostname",
            "registry",
            "ca.crt",
            "username",
            "password",
        ] {
            assert!(data.contains_key(key), "{key}");
        }
        assert_eq!(data["hostname"].0, b"registry.infra.svc.example.org");
        let owner = &secret.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(owner.kind, "ImagePushSecret");
        assert_eq!(owner.name, "example");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(secret.annotations()[ROTATION_ANNOTATION], "2");
        assert_eq!(
            secret.annotations()[ROTATION_DATE_ANNOTATION],
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            secret.annotations()[ACCOUNT_ANNOTATION],
            "infra/push.build.example.2"
        );
    }

    #[test]
    fn a_pull_secret_is_a_dockerconfigjson() {
        let mut cr = ImagePullSecret::new("example", Default::default());
        cr.metadata.namespace = Some("build".into());
        cr.metadata.uid = Some("uid-2".into());
        let secret = build_secret(&cr, &endpoint(), &credential());
        assert_eq!(secret.name_any(), "example-image-pull-secret");
        assert_eq!(
            secret.type_.as_deref(),
            Some("kubernetes.io/dockerconfigjson")
        );
        let data = secret.data.as_ref().expect("data");
        assert!(data.contains_key(".dockerconfigjson"));
        assert!(!data.contains_key("config.json"));
    }

    #[test]
    fn the_credential_reads_back_from_an_untouched_secret() {
        let secret = build_secret(&push_cr(), &endpoint(), &credential());
        assert_eq!(
            read_secret(AccessMode::Push, Some(&secret)),
            SecretState::Intact(credential())
        );
        assert_eq!(read_secret(AccessMode::Push, None), SecretState::Missing);
    }

    #[test]
    fn an_edited_secret_is_noticed() {
        let secret = build_secret(&push_cr(), &endpoint(), &credential());
        let mut edited = secret.clone();
        if let Some(data) = edited.data.as_mut() {
            data.insert("password".into(), ByteString(b"guessed".to_vec()));
        }
        assert_eq!(
            read_secret(AccessMode::Push, Some(&edited)),
            SecretState::Edited
        );
        let mut removed = secret.clone();
        if let Some(data) = removed.data.as_mut() {
            data.remove("config.json");
        }
        assert_eq!(
            read_secret(AccessMode::Push, Some(&removed)),
            SecretState::Edited
        );
        let mut unannotated = secret.clone();
        unannotated.metadata.annotations = None;
        assert_eq!(
            read_secret(AccessMode::Push, Some(&unannotated)),
            SecretState::Edited
        );
        assert_eq!(
            read_secret(AccessMode::Pull, Some(&secret)),
            SecretState::Edited,
            "a push Secret is no pull Secret"
        );
    }

    #[test]
    fn keys_added_by_others_do_not_count_as_edits() {
        let mut secret = build_secret(&push_cr(), &endpoint(), &credential());
        if let Some(data) = secret.data.as_mut() {
            data.insert("extra".into(), ByteString(b"mine".to_vec()));
        }
        assert!(matches!(
            read_secret(AccessMode::Push, Some(&secret)),
            SecretState::Intact(_)
        ));
    }

    #[test]
    fn a_new_hostname_or_ca_changes_data_but_not_the_login() {
        let before = build_secret(&push_cr(), &endpoint(), &credential());
        let moved = Endpoint {
            hostname: "registry.new.example".into(),
            ..endpoint()
        };
        let after = build_secret(&push_cr(), &moved, &credential());
        assert_ne!(before.data, after.data);
        assert_ne!(
            before.annotations()[DATA_HASH_ANNOTATION],
            after.annotations()[DATA_HASH_ANNOTATION]
        );
        assert_eq!(
            read_secret(AccessMode::Push, Some(&after)),
            SecretState::Intact(credential())
        );
    }
}
