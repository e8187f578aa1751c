//! ImageRegistryAccounts of a push/pull secret: how one is built, how the rotator finds a CR's own
//! accounts again (labels plus the full values in `spec.labels`), and when each expires.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use wharf_core::crd::{
    ACCOUNT_LABEL_ACCESS_MODE, ACCOUNT_LABEL_NAME, ACCOUNT_LABEL_NAMESPACE, ImageRegistryAccount,
    ImageRegistryAccountSpec,
};
use wharf_core::duration::{format_go_duration, parse_go_duration};

use crate::kind::{AccessMode, ImageSecretKind};
use crate::names;

/// Label every object the rotator writes carries.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "wharf-secret-rotator";
/// Label: namespace of the push/pull secret an account belongs to.
pub const OWNER_NAMESPACE_LABEL: &str = "wharf.dev/secret-namespace";
/// Label: name of that push/pull secret (hashed when longer than 63 characters; the full name is
/// in `spec.labels.name`).
pub const OWNER_NAME_LABEL: &str = "wharf.dev/secret-name";
/// Label: `push` or `pull`, i.e. the kind of the push/pull secret.
pub const ACCESS_MODE_LABEL: &str = "wharf.dev/access-mode";
/// Label: the rotation an account was created for.
pub const ROTATION_LABEL: &str = "wharf.dev/rotation";

/// The push/pull secret an account belongs to: namespace, name and kind identify it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretOwner {
    pub namespace: String,
    pub name: String,
    pub mode: AccessMode,
}

impl SecretOwner {
    /// The owner identity of a CR.
    pub fn of<K: ImageSecretKind>(cr: &K) -> Self {
        Self {
            namespace: cr.namespace().unwrap_or_default(),
            name: cr.name_any(),
            mode: K::ACCESS_MODE,
        }
    }

    /// The owner an account names in `spec.labels` (full values, never hashed).
    pub fn from_account(account: &ImageRegistryAccount) -> Option<Self> {
        let first = |key: &str| {
            account
                .spec
                .labels
                .get(key)
                .and_then(|values| values.first())
                .cloned()
        };
        Some(Self {
            namespace: first(ACCOUNT_LABEL_NAMESPACE)?,
            name: first(ACCOUNT_LABEL_NAME)?,
            mode: AccessMode::parse(&first(ACCOUNT_LABEL_ACCESS_MODE)?)?,
        })
    }

    /// Metadata labels that select this owner's accounts (a hashed name may, in theory, be shared:
    /// confirm with [`SecretOwner::owns`]).
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
            (
                OWNER_NAMESPACE_LABEL.to_owned(),
                names::label_value(&self.namespace),
            ),
            (OWNER_NAME_LABEL.to_owned(), names::label_value(&self.name)),
            (ACCESS_MODE_LABEL.to_owned(), self.mode.as_str().to_owned()),
        ])
    }

    /// [`SecretOwner::labels`] as a label selector.
    pub fn label_selector(&self) -> String {
        self.labels()
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether `account` is one of this owner's: its selector labels and its full back-reference
    /// both match, so another CR's accounts are never touched.
    pub fn owns(&self, account: &ImageRegistryAccount) -> bool {
        let labels = account.labels();
        self.labels()
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
            && Self::from_account(account).as_ref() == Some(self)
    }

    /// Name of this owner's account for `rotation`.
    pub fn account_name(&self, rotation: i64) -> String {
        names::account_name(self.mode, &self.namespace, &self.name, rotation)
    }
}

/// The account of one rotation, in the registry's namespace, valid for `ttl` from its creation.
pub fn build_account(
    owner: &SecretOwner,
    registry_namespace: &str,
    rotation: i64,
    password_hash: String,
    ttl: Duration,
) -> ImageRegistryAccount {
    let mut labels = owner.labels();
    labels.insert(ROTATION_LABEL.to_owned(), rotation.to_string());
    ImageRegistryAccount {
        metadata: ObjectMeta {
            name: Some(owner.account_name(rotation)),
            namespace: Some(registry_namespace.to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: ImageRegistryAccountSpec {
            password: password_hash,
            labels: BTreeMap::from([
                (
                    ACCOUNT_LABEL_NAMESPACE.to_owned(),
                    vec![owner.namespace.clone()],
                ),
                (ACCOUNT_LABEL_NAME.to_owned(), vec![owner.name.clone()]),
                (
                    ACCOUNT_LABEL_ACCESS_MODE.to_owned(),
                    vec![owner.mode.as_str().to_owned()],
                ),
            ]),
            ttl: Some(format_go_duration(ttl)),
        },
        status: None,
    }
}

/// The rotation an account was created for.
pub fn rotation_of(account: &ImageRegistryAccount) -> Option<i64> {
    account.labels().get(ROTATION_LABEL)?.parse().ok()
}

/// When an account stops being valid: creation time plus `spec.ttl` (None: it never expires, or it
/// has no creation time yet).
pub fn expiry_of(account: &ImageRegistryAccount) -> Option<Timestamp> {
    let created = account.metadata.creation_timestamp.as_ref()?.0;
    let ttl = parse_go_duration(account.spec.ttl.as_deref()?).ok()?;
    created.checked_add(ttl).ok()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn owner(name: &str) -> SecretOwner {
        SecretOwner {
            namespace: "build".into(),
            name: name.into(),
            mode: AccessMode::Push,
        }
    }

    #[test]
    fn accounts_carry_the_seed_labels_and_lookup_labels() {
        let account = build_account(
            &owner("example"),
            "registry-ns",
            3,
            "$2b$10$hash".into(),
            Duration::from_secs(86_400),
        );
        assert_eq!(account.name_any(), "push.build.example.3");
        assert_eq!(account.namespace().as_deref(), Some("registry-ns"));
        assert_eq!(account.spec.ttl.as_deref(), Some("24h0m0s"));
        assert_eq!(account.spec.password, "$2b$10$hash");
        assert_eq!(account.spec.labels["namespace"], vec!["build"]);
        assert_eq!(account.spec.labels["name"], vec!["example"]);
        assert_eq!(account.spec.labels["accessMode"], vec!["push"]);
        let labels = account.labels();
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(labels[OWNER_NAMESPACE_LABEL], "build");
        assert_eq!(labels[OWNER_NAME_LABEL], "example");
        assert_eq!(labels[ACCESS_MODE_LABEL], "push");
        assert_eq!(rotation_of(&account), Some(3));
        assert!(owner("example").owns(&account));
        assert_eq!(SecretOwner::from_account(&account), Some(owner("example")));
    }

    #[test]
    fn the_selector_names_every_identity_label() {
        let selector = owner("example").label_selector();
        assert_eq!(
            selector,
            "app.kubernetes.io/managed-by=wharf-secret-rotator,wharf.dev/access-mode=push,\
             wharf.dev/secret-name=example,wharf.dev/secret-namespace=build"
        );
    }

    #[test]
    fn another_crs_accounts_are_not_owned() {
        let account = build_account(&owner("a"), "ns", 1, "h".into(), Duration::from_secs(60));
        assert!(!owner("b").owns(&account));
        let pull = SecretOwner {
            mode: AccessMode::Pull,
            ..owner("a")
        };
        assert!(!pull.owns(&account));
        let elsewhere = SecretOwner {
            namespace: "other".into(),
            ..owner("a")
        };
        assert!(!elsewhere.owns(&account));
    }

    #[test]
    fn long_names_with_the_same_hashed_label_are_told_apart_by_spec_labels() {
        let long_a = format!("{}.a", "x".repeat(100));
        let account = build_account(
            &owner(&long_a),
            "ns",
            1,
            "h".into(),
            Duration::from_secs(60),
        );
        assert!(account.labels()[OWNER_NAME_LABEL].len() <= 63);
        assert!(owner(&long_a).owns(&account));
        // Forge a collision: same metadata labels, different full name.
        let mut forged = account.clone();
        forged
            .spec
            .labels
            .insert("name".into(), vec!["other".into()]);
        assert!(!owner(&long_a).owns(&forged));
    }

    #[test]
    fn expiry_is_creation_plus_ttl() {
        let mut account = build_account(&owner("a"), "ns", 1, "h".into(), Duration::from_secs(20));
        assert_eq!(expiry_of(&account), None, "not created yet");
        let created = Timestamp::from_second(1_000).expect("timestamp");
        account.metadata.creation_timestamp = Some(Time(created));
        assert_eq!(
            expiry_of(&account),
            Some(Timestamp::from_second(1_020).expect("timestamp"))
        );
        account.spec.ttl = None;
        assert_eq!(expiry_of(&account), None, "no ttl: never expires");
    }
}
