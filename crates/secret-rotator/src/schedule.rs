//! Rotation decisions: whether a new password is needed now, which rotation number it gets, and
//! when the rotator must look again (next rotation or next account expiry, to the second).

use std::fmt;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::registry::RegistryKey;
use crate::secret::SecretState;

/// The longest a CR goes without a reconcile, even when nothing is due (a safety net only: watches
/// bring every change sooner).
pub const RESYNC: Duration = Duration::from_secs(3600);
/// The shortest requeue, so a time that is (just) past never spins the controller.
const MIN_REQUEUE: Duration = Duration::from_millis(100);

/// Why a new password is generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationReason {
    /// The Secret does not exist (first reconcile, or someone deleted it).
    SecretMissing,
    /// The Secret's data no longer matches what the rotator wrote.
    SecretEdited,
    /// The account the Secret logs in as is gone or expired.
    AccountInvalid,
    /// The CR now points at another registry, whose namespace needs an account of its own.
    RegistryChanged,
    /// The rotation interval has passed.
    Due,
}

impl fmt::Display for RotationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SecretMissing => "the Secret does not exist",
            Self::SecretEdited => "the Secret was edited",
            Self::AccountInvalid => "its account is gone or expired",
            Self::RegistryChanged => "the registry changed",
            Self::Due => "the rotation interval passed",
        })
    }
}

/// Whether the Secret needs a new password now, and why. `account_valid`: the account the Secret
/// names exists, belongs to this CR and has not expired.
pub fn rotation_reason(
    state: &SecretState,
    target: &RegistryKey,
    account_valid: bool,
    now: Timestamp,
    interval: Duration,
) -> Option<RotationReason> {
    let credential = match state {
        SecretState::Missing => return Some(RotationReason::SecretMissing),
        SecretState::Edited => return Some(RotationReason::SecretEdited),
        SecretState::Intact(credential) => credential,
    };
    if credential.registry != *target || credential.account_namespace != target.namespace {
        Some(RotationReason::RegistryChanged)
    } else if !account_valid {
        Some(RotationReason::AccountInvalid)
    } else if now >= next_rotation(credential.rotated_at, interval) {
        Some(RotationReason::Due)
    } else {
        None
    }
}

/// When a password generated at `rotated_at` is due for rotation.
pub fn next_rotation(rotated_at: Timestamp, interval: Duration) -> Timestamp {
    rotated_at.checked_add(interval).unwrap_or(Timestamp::MAX)
}

/// The rotation number after every one seen so far (status, Secret, existing accounts); 1 first,
/// as the original.
pub fn next_rotation_number(seen: impl IntoIterator<Item = i64>) -> i64 {
    seen.into_iter().max().unwrap_or(0).max(0).saturating_add(1)
}

/// How long until the earliest of `times` (rotation, expiries), capped at [`RESYNC`].
pub fn requeue_after(now: Timestamp, times: impl IntoIterator<Item = Timestamp>) -> Duration {
    times
        .into_iter()
        .map(|time| {
            let wait = now.duration_until(time);
            Duration::try_from(wait).unwrap_or(Duration::ZERO)
        })
        .min()
        .unwrap_or(RESYNC)
        .clamp(MIN_REQUEUE, RESYNC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Credential;

    const INTERVAL: Duration = Duration::from_secs(10);

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("timestamp")
    }

    fn registry() -> RegistryKey {
        RegistryKey::new("infra", "registry")
    }

    fn intact(rotated_at: i64) -> SecretState {
        SecretState::Intact(Credential {
            username: "push.a.b.1".into(),
            password: "pw".into(),
            rotation: 1,
            rotated_at: at(rotated_at),
            account_namespace: "infra".into(),
            registry: registry(),
        })
    }

    #[test]
    fn a_missing_or_edited_secret_rotates() {
        let reason = |state| rotation_reason(&state, &registry(), true, at(0), INTERVAL);
        assert_eq!(
            reason(SecretState::Missing),
            Some(RotationReason::SecretMissing)
        );
        assert_eq!(
            reason(SecretState::Edited),
            Some(RotationReason::SecretEdited)
        );
    }

    #[test]
    fn rotation_is_due_exactly_one_interval_later() {
        let state = intact(100);
        let reason = |now| rotation_reason(&state, &registry(), true, at(now), INTERVAL);
        assert_eq!(reason(100), None);
        assert_eq!(reason(109), None);
        assert_eq!(reason(110), Some(RotationReason::Due));
        assert_eq!(reason(500), Some(RotationReason::Due));
        assert_eq!(next_rotation(at(100), INTERVAL), at(110));
    }

    #[test]
    fn a_lost_account_or_another_registry_rotates_at_once() {
        let state = intact(100);
        assert_eq!(
            rotation_reason(&state, &registry(), false, at(101), INTERVAL),
            Some(RotationReason::AccountInvalid)
        );
        let moved = RegistryKey::new("other", "registry");
        assert_eq!(
            rotation_reason(&state, &moved, true, at(101), INTERVAL),
            Some(RotationReason::RegistryChanged)
        );
    }

    #[test]
    fn rotation_numbers_never_repeat() {
        assert_eq!(next_rotation_number([]), 1);
        assert_eq!(next_rotation_number([3, 7, 5]), 8);
        assert_eq!(next_rotation_number([-4]), 1);
        assert_eq!(next_rotation_number([i64::MAX]), i64::MAX);
    }

    #[test]
    fn requeue_targets_the_earliest_time() {
        let now = at(100);
        assert_eq!(
            requeue_after(now, [at(110), at(105), at(130)]),
            Duration::from_secs(5)
        );
        assert_eq!(requeue_after(now, []), RESYNC);
        assert_eq!(requeue_after(now, [at(100 + 10 * 3600)]), RESYNC);
        assert_eq!(requeue_after(now, [at(99)]), MIN_REQUEUE, "past: soon");
    }
}
