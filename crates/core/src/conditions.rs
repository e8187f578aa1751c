//! Standard `metav1.Condition` bookkeeping: one entry per type, transition times that mean something.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The condition every wharf kind reports.
pub const READY: &str = "Ready";

/// A condition to record, without its transition time (the helper decides that).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate<'a> {
    pub type_: &'a str,
    pub status: bool,
    pub reason: &'a str,
    pub message: String,
    pub observed_generation: Option<i64>,
}

impl<'a> ConditionUpdate<'a> {
    /// A True condition.
    pub fn ok(type_: &'a str, reason: &'a str, message: impl Into<String>) -> Self {
        Self::new(type_, true, reason, message)
    }

    /// A False condition.
    pub fn failed(type_: &'a str, reason: &'a str, message: impl Into<String>) -> Self {
        Self::new(type_, false, reason, message)
    }

    fn new(type_: &'a str, status: bool, reason: &'a str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
            observed_generation: None,
        }
    }

    /// Records which generation of the spec the condition describes.
    pub fn at_generation(mut self, generation: Option<i64>) -> Self {
        self.observed_generation = generation;
        self
    }
}

/// Sets a condition in place. `lastTransitionTime` changes only when the status changes, so it says
/// when the object last became (un)ready; reason, message and generation are always refreshed.
/// Returns whether anything changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    update: ConditionUpdate<'_>,
    now: Timestamp,
) -> bool {
    let status = if update.status { "True" } else { "False" };
    let desired = |last_transition_time| Condition {
        type_: update.type_.to_owned(),
        status: status.to_owned(),
        reason: update.reason.to_owned(),
        message: update.message.clone(),
        observed_generation: update.observed_generation,
        last_transition_time,
    };
    match conditions.iter_mut().find(|c| c.type_ == update.type_) {
        Some(existing) => {
            let time = if existing.status == status {
                existing.last_transition_time.clone()
            } else {
                Time(now)
            };
            let new = desired(time);
            let changed = *existing != new;
            *existing = new;
            changed
        }
        None => {
            conditions.push(desired(Time(now)));
            true
        }
    }
}

/// Whether the condition of this type is present and True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("valid timestamp")
    }

    #[test]
    fn adds_a_missing_condition() {
        let mut conditions = vec![];
        let changed = set_condition(
            &mut conditions,
            ConditionUpdate::ok(READY, "Ready", "all good"),
            at(10),
        );
        assert!(changed);
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].status, "True");
        assert_eq!(conditions[0].last_transition_time, Time(at(10)));
        assert!(is_true(&conditions, READY));
    }

    #[test]
    fn keeps_transition_time_while_status_holds() {
        let mut conditions = vec![];
        set_condition(
            &mut conditions,
            ConditionUpdate::failed(READY, "Pending", "a"),
            at(10),
        );
        let changed = set_condition(
            &mut conditions,
            ConditionUpdate::failed(READY, "Missing", "b"),
            at(20),
        );
        assert!(changed, "reason and message are refreshed");
        assert_eq!(conditions[0].last_transition_time, Time(at(10)));
        assert_eq!(conditions[0].reason, "Missing");
        assert_eq!(conditions[0].message, "b");
    }

    #[test]
    fn moves_transition_time_when_status_flips() {
        let mut conditions = vec![];
        set_condition(
            &mut conditions,
            ConditionUpdate::failed(READY, "Pending", "a"),
            at(10),
        );
        set_condition(
            &mut conditions,
            ConditionUpdate::ok(READY, "Ready", "b"),
            at(30),
        );
        assert_eq!(conditions[0].last_transition_time, Time(at(30)));
        assert_eq!(conditions.len(), 1);
    }

    #[test]
    fn an_identical_update_changes_nothing() {
        let mut conditions = vec![];
        let update = ConditionUpdate::ok(READY, "Ready", "same").at_generation(Some(3));
        set_condition(&mut conditions, update.clone(), at(10));
        assert!(!set_condition(&mut conditions, update, at(99)));
        assert_eq!(conditions[0].observed_generation, Some(3));
    }

    #[test]
    fn other_types_are_left_alone() {
        let mut conditions = vec![];
        set_condition(
            &mut conditions,
            ConditionUpdate::ok("Synced", "Synced", ""),
            at(1),
        );
        set_condition(
            &mut conditions,
            ConditionUpdate::failed(READY, "Updating", "1/2 pods updating"),
            at(2),
        );
        assert_eq!(conditions.len(), 2);
        assert!(is_true(&conditions, "Synced"));
        assert!(!is_true(&conditions, READY));
    }
}
