//! What differs between ImagePushSecret and ImagePullSecret (access mode, Secret name, type and
//! key), so one reconciler serves both kinds.

use std::fmt::Debug;

use kube::Resource;
use kube::core::NamespaceResourceScope;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wharf_core::crd::{ImagePullSecret, ImagePushSecret, ImageRegistryRef, ImageSecretStatus};

/// Whether an account may push (and pull) or only pull.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessMode {
    Push,
    Pull,
}

impl AccessMode {
    /// The value of the account's `accessMode` label, and the first part of its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Pull => "pull",
        }
    }

    /// Parses an `accessMode` label value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "push" => Some(Self::Push),
            "pull" => Some(Self::Pull),
            _ => None,
        }
    }

    /// Appended to the CR name to name its Secret.
    pub fn secret_suffix(self) -> &'static str {
        match self {
            Self::Push => "-image-push-secret",
            Self::Pull => "-image-pull-secret",
        }
    }

    /// Type of the Secret: a push secret is mounted as a Docker config file, a pull secret is an
    /// imagePullSecret.
    pub fn secret_type(self) -> &'static str {
        match self {
            Self::Push => "Opaque",
            Self::Pull => "kubernetes.io/dockerconfigjson",
        }
    }

    /// The Secret key holding the Docker config JSON.
    pub fn docker_config_key(self) -> &'static str {
        match self {
            Self::Push => "config.json",
            Self::Pull => ".dockerconfigjson",
        }
    }
}

/// A kind the rotator serves: a namespaced custom resource with a registry reference and the
/// shared status.
pub trait ImageSecretKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The access mode of the accounts this kind gets.
    const ACCESS_MODE: AccessMode;

    /// `spec.registryRef`.
    fn registry_ref(&self) -> Option<&ImageRegistryRef>;

    /// `status`.
    fn image_secret_status(&self) -> Option<&ImageSecretStatus>;
}

impl ImageSecretKind for ImagePushSecret {
    const ACCESS_MODE: AccessMode = AccessMode::Push;

    fn registry_ref(&self) -> Option<&ImageRegistryRef> {
        self.spec.registry_ref.as_ref()
    }

    fn image_secret_status(&self) -> Option<&ImageSecretStatus> {
        self.status.as_ref()
    }
}

impl ImageSecretKind for ImagePullSecret {
    const ACCESS_MODE: AccessMode = AccessMode::Pull;

    fn registry_ref(&self) -> Option<&ImageRegistryRef> {
        self.spec.registry_ref.as_ref()
    }

    fn image_secret_status(&self) -> Option<&ImageSecretStatus> {
        self.status.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_and_differ_where_the_seed_says() {
        for mode in [AccessMode::Push, AccessMode::Pull] {
            assert_eq!(AccessMode::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(AccessMode::parse("admin"), None);
        assert_eq!(AccessMode::Push.secret_type(), "Opaque");
        assert_eq!(AccessMode::Push.docker_config_key(), "config.json");
        assert_eq!(
            AccessMode::Pull.secret_type(),
            "kubernetes.io/dockerconfigjson"
        );
        assert_eq!(AccessMode::Pull.docker_config_key(), ".dockerconfigjson");
        assert_eq!(ImagePushSecret::ACCESS_MODE, AccessMode::Push);
        assert_eq!(ImagePullSecret::ACCESS_MODE, AccessMode::Pull);
    }
}
