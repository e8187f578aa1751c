//! The ImageRegistry's status: `hostname`, `tlsSecretName`, `observedGeneration` and the
//! original's conditions — `Synced` (the children are as the spec says) and `Ready` (every pod
//! runs the current template; False with reason `Updating` "x/y pods updating", or `FailedSync`).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::jiff::Timestamp;
use wharf_core::conditions::{ConditionUpdate, READY, set_condition};
use wharf_core::crd::ImageRegistryStatus;

/// The condition saying whether the last reconcile applied everything.
pub const SYNCED: &str = "Synced";
/// Ready's reason while pods are not all updated and ready (the original's).
pub const REASON_UPDATING: &str = "Updating";
/// Ready's reason when the reconcile failed (the original's).
pub const REASON_FAILED_SYNC: &str = "FailedSync";

/// How many of the desired pods run the current template and are ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rollout {
    pub desired: i32,
    pub updated: i32,
    pub ready: bool,
}

/// The rollout of `statefulset` against `desired` replicas, as the original judged it: an
/// outdated observed generation counts as nothing updated yet.
pub fn rollout(statefulset: &StatefulSet, desired: i32) -> Rollout {
    let status = statefulset.status.clone().unwrap_or_default();
    let current = status.observed_generation.is_some()
        && status.observed_generation == statefulset.metadata.generation;
    let updated = if current {
        status.updated_replicas.unwrap_or(0)
    } else {
        0
    };
    let spec_replicas = statefulset.spec.as_ref().and_then(|s| s.replicas);
    let ready = current
        && spec_replicas == Some(desired)
        && status.replicas == desired
        && status.ready_replicas.unwrap_or(0) == desired
        && updated == desired;
    Rollout {
        desired,
        updated,
        ready,
    }
}

/// The new status from the current one and the reconcile's outcome: `Ok(rollout)` when every
/// child was applied, `Err((reason, message))` when the reconcile failed.
pub fn next_status(
    current: Option<&ImageRegistryStatus>,
    generation: Option<i64>,
    hostname: &str,
    tls_secret_name: &str,
    outcome: Result<Rollout, (&str, String)>,
    now: Timestamp,
) -> ImageRegistryStatus {
    let mut status = current.cloned().unwrap_or_default();
    status.observed_generation = generation;
    status.hostname = Some(hostname.to_owned());
    status.tls_secret_name = Some(tls_secret_name.to_owned());
    let (synced, ready) = match outcome {
        Ok(rollout) => (
            ConditionUpdate::ok(SYNCED, "Synced", "every child object is as the spec says"),
            if rollout.ready {
                ConditionUpdate::ok(
                    READY,
                    "Ready",
                    format!("{}/{} pods ready", rollout.desired, rollout.desired),
                )
            } else {
                ConditionUpdate::failed(
                    READY,
                    REASON_UPDATING,
                    format!("{}/{} pods updating", rollout.updated, rollout.desired),
                )
            },
        ),
        Err((reason, message)) => (
            ConditionUpdate::failed(SYNCED, reason, message.clone()),
            ConditionUpdate::failed(READY, REASON_FAILED_SYNC, message),
        ),
    };
    set_condition(
        &mut status.conditions,
        synced.at_generation(generation),
        now,
    );
    set_condition(&mut status.conditions, ready.at_generation(generation), now);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{StatefulSetSpec, StatefulSetStatus};
    use wharf_core::conditions::is_true;

    fn statefulset(
        generation: i64,
        observed: i64,
        replicas: i32,
        updated: i32,
        ready: i32,
    ) -> StatefulSet {
        let mut sts = StatefulSet {
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                ..StatefulSetSpec::default()
            }),
            status: Some(StatefulSetStatus {
                observed_generation: Some(observed),
                replicas,
                updated_replicas: Some(updated),
                ready_replicas: Some(ready),
                ..StatefulSetStatus::default()
            }),
            ..StatefulSet::default()
        };
        sts.metadata.generation = Some(generation);
        sts
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_000).expect("valid")
    }

    #[test]
    fn ready_needs_every_pod_updated_and_ready() {
        assert!(rollout(&statefulset(2, 2, 2, 2, 2), 2).ready);
        assert!(!rollout(&statefulset(2, 2, 2, 1, 2), 2).ready);
        assert!(!rollout(&statefulset(2, 2, 2, 2, 1), 2).ready);
        let stale = rollout(&statefulset(3, 2, 2, 2, 2), 2);
        assert!(!stale.ready);
        assert_eq!(
            stale.updated, 0,
            "an old generation counts as nothing updated"
        );
        assert!(!rollout(&StatefulSet::default(), 1).ready);
    }

    #[test]
    fn status_reports_updating_pods_like_the_original() {
        let rollout = rollout(&statefulset(1, 1, 2, 1, 1), 2);
        let status = next_status(
            None,
            Some(4),
            "r.ns.example.org",
            "r-tls",
            Ok(rollout),
            now(),
        );
        assert_eq!(status.observed_generation, Some(4));
        assert_eq!(status.hostname.as_deref(), Some("r.ns.example.org"));
        assert_eq!(status.tls_secret_name.as_deref(), Some("r-tls"));
        assert!(is_true(&status.conditions, SYNCED));
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == READY)
            .expect("Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, "Updating");
        assert_eq!(ready.message, "1/2 pods updating");
    }

    #[test]
    fn a_failure_is_failed_sync_and_an_unchanged_outcome_changes_nothing() {
        let failed = next_status(
            None,
            Some(1),
            "h",
            "s",
            Err(("SecretNotFound", "Secret x does not exist".into())),
            now(),
        );
        let synced = failed
            .conditions
            .iter()
            .find(|c| c.type_ == SYNCED)
            .expect("Synced");
        assert_eq!(
            (synced.status.as_str(), synced.reason.as_str()),
            ("False", "SecretNotFound")
        );
        let ready = failed
            .conditions
            .iter()
            .find(|c| c.type_ == READY)
            .expect("Ready");
        assert_eq!(ready.reason, "FailedSync");

        let ok = Rollout {
            desired: 1,
            updated: 1,
            ready: true,
        };
        let first = next_status(None, Some(1), "h", "s", Ok(ok), now());
        let later = Timestamp::from_second(2_000).expect("valid");
        let again = next_status(Some(&first), Some(1), "h", "s", Ok(ok), later);
        assert_eq!(first, again, "same outcome, same status: no write");
    }
}
