//! The status of a push/pull secret: which registry, which rotation, and whether it is Ready.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use wharf_core::conditions::{ConditionUpdate, READY, set_condition};
use wharf_core::crd::ImageSecretStatus;

use crate::registry::RegistryKey;
use crate::secret::Credential;

/// Ready=True: the Secret holds a valid login.
pub const REASON_SYNCED: &str = "Synced";
/// Ready=False: the registry is missing or not Ready (the original's reason).
pub const REASON_REGISTRY_UNAVAILABLE: &str = "RegistryUnavailable";
/// Ready=False: writing the account or the Secret failed (the original's reason).
pub const REASON_FAILED_SYNC: &str = "FailedSync";

/// How a reconcile ended, for the Ready condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Synced { secret_name: String },
    RegistryUnavailable(String),
    FailedSync(String),
}

impl Outcome {
    fn condition(&self, credential: Option<&Credential>) -> ConditionUpdate<'static> {
        match self {
            Self::Synced { secret_name } => ConditionUpdate::ok(
                READY,
                REASON_SYNCED,
                match credential {
                    Some(c) => format!(
                        "Secret {secret_name} logs in as {} (rotation {})",
                        c.username, c.rotation
                    ),
                    None => format!("Secret {secret_name} is up to date"),
                },
            ),
            Self::RegistryUnavailable(message) => {
                ConditionUpdate::failed(READY, REASON_REGISTRY_UNAVAILABLE, message.clone())
            }
            Self::FailedSync(message) => {
                ConditionUpdate::failed(READY, REASON_FAILED_SYNC, message.clone())
            }
        }
    }
}

/// The status to write: `credential` (the login the Secret now holds) sets rotation and
/// rotationDate; without one, the previous values stay.
pub fn desired_status(
    generation: Option<i64>,
    previous: Option<&ImageSecretStatus>,
    registry: &RegistryKey,
    credential: Option<&Credential>,
    outcome: &Outcome,
    now: Timestamp,
) -> ImageSecretStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = generation;
    status.registry = Some(registry.to_ref());
    if let Some(credential) = credential {
        status.rotation = Some(credential.rotation);
        status.rotation_date = Some(Time(credential.rotated_at));
    }
    set_condition(
        &mut status.conditions,
        outcome.condition(credential).at_generation(generation),
        now,
    );
    status
}

#[cfg(test)]
mod tests {
    use wharf_core::conditions::is_true;

    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("timestamp")
    }

    fn credential(rotation: i64) -> Credential {
        Credential {
            username: format!("push.a.b.{rotation}"),
            password: "pw".into(),
            rotation,
            rotated_at: at(50),
            account_namespace: "infra".into(),
            registry: RegistryKey::new("infra", "registry"),
        }
    }

    fn synced() -> Outcome {
        Outcome::Synced {
            secret_name: "b-image-push-secret".into(),
        }
    }

    #[test]
    fn a_synced_secret_reports_its_rotation_and_registry() {
        let registry = RegistryKey::new("infra", "registry");
        let status = desired_status(
            Some(2),
            None,
            &registry,
            Some(&credential(3)),
            &synced(),
            at(60),
        );
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(status.rotation, Some(3));
        assert_eq!(status.rotation_date, Some(Time(at(50))));
        assert_eq!(status.registry, Some(registry.to_ref()));
        assert!(is_true(&status.conditions, READY));
        assert_eq!(status.conditions[0].reason, REASON_SYNCED);
        assert_eq!(status.conditions[0].observed_generation, Some(2));
    }

    #[test]
    fn an_unavailable_registry_keeps_the_last_rotation() {
        let registry = RegistryKey::new("infra", "registry");
        let before = desired_status(
            Some(1),
            None,
            &registry,
            Some(&credential(3)),
            &synced(),
            at(60),
        );
        let after = desired_status(
            Some(1),
            Some(&before),
            &registry,
            None,
            &Outcome::RegistryUnavailable("not Ready".into()),
            at(70),
        );
        assert_eq!(after.rotation, Some(3));
        assert!(!is_true(&after.conditions, READY));
        assert_eq!(after.conditions[0].reason, REASON_REGISTRY_UNAVAILABLE);
        assert_eq!(after.conditions[0].message, "not Ready");
        assert_eq!(after.conditions[0].last_transition_time, Time(at(70)));
    }

    #[test]
    fn the_same_outcome_later_is_the_same_status() {
        let registry = RegistryKey::new("infra", "registry");
        let first = desired_status(
            Some(1),
            None,
            &registry,
            Some(&credential(3)),
            &synced(),
            at(60),
        );
        let again = desired_status(
            Some(1),
            Some(&first),
            &registry,
            Some(&credential(3)),
            &synced(),
            at(999),
        );
        assert_eq!(first, again, "no write when nothing changed");
    }

    #[test]
    fn a_failed_sync_says_why() {
        let status = desired_status(
            None,
            None,
            &RegistryKey::new("a", "b"),
            None,
            &Outcome::FailedSync("cannot write Secret".into()),
            at(1),
        );
        assert_eq!(status.conditions[0].reason, REASON_FAILED_SYNC);
        assert_eq!(status.conditions[0].status, "False");
        assert_eq!(status.rotation, None);
    }
}
