//! What the rotator remembers between reconciles: the accounts it created lately and the status
//! it last wrote per CR (its watch caches may lag behind its own writes), and logins whose Secret
//! could not be written yet.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;
use wharf_core::crd::{ImageRegistryAccount, ImageSecretStatus};

use crate::account::SecretOwner;
use crate::secret::Credential;

/// How long a created account is remembered: far longer than a watch takes to report it.
const RECENT: Duration = Duration::from_secs(300);

/// Accounts with the instant they were created.
type Created = Vec<(ObjectRef<ImageRegistryAccount>, Instant)>;

/// Accounts this process created lately, per owner. The account store may not show an account
/// created a moment ago; a CR deleted right after a rotation must not leave it behind (listing
/// from the API instead would cost a scan of every account per deleted CR).
#[derive(Default)]
pub(crate) struct RecentAccounts(Mutex<HashMap<SecretOwner, Created>>);

impl RecentAccounts {
    /// Remembers `account` as `owner`'s, forgetting that owner's entries older than [`RECENT`].
    pub(crate) fn record(&self, owner: &SecretOwner, account: ObjectRef<ImageRegistryAccount>) {
        if let Ok(mut recent) = self.0.lock() {
            let entries = recent.entry(owner.clone()).or_default();
            entries.retain(|(_, created)| created.elapsed() < RECENT);
            entries.push((account, Instant::now()));
        }
    }

    /// `owner`'s remembered accounts; they are forgotten.
    pub(crate) fn take(&self, owner: &SecretOwner) -> Vec<ObjectRef<ImageRegistryAccount>> {
        self.0
            .lock()
            .ok()
            .and_then(|mut recent| recent.remove(owner))
            .unwrap_or_default()
            .into_iter()
            .map(|(account, _)| account)
            .collect()
    }
}

/// The status last written per CR (by uid). The rotator is the only writer of these statuses, so
/// its last write is the current status even while the CR cache still shows an older one; without
/// this, every reconcile that follows a write would write the same status again.
#[derive(Default)]
pub(crate) struct WrittenStatuses(Mutex<HashMap<String, ImageSecretStatus>>);

impl WrittenStatuses {
    pub(crate) fn get(&self, uid: &str) -> Option<ImageSecretStatus> {
        self.0.lock().ok()?.get(uid).cloned()
    }

    pub(crate) fn insert(&self, uid: String, status: ImageSecretStatus) {
        if let Ok(mut statuses) = self.0.lock() {
            statuses.insert(uid, status);
        }
    }

    pub(crate) fn remove(&self, uid: &str) {
        if let Ok(mut statuses) = self.0.lock() {
            statuses.remove(uid);
        }
    }
}

/// Logins (per CR uid) whose account exists but whose Secret write failed, so a retry writes the
/// same login instead of creating one more account per attempt.
#[derive(Default)]
pub(crate) struct UnwrittenLogins(Mutex<HashMap<String, Credential>>);

impl UnwrittenLogins {
    pub(crate) fn get(&self, uid: &str) -> Option<Credential> {
        self.0.lock().ok()?.get(uid).cloned()
    }

    pub(crate) fn insert(&self, uid: String, credential: Credential) {
        if let Ok(mut logins) = self.0.lock() {
            logins.insert(uid, credential);
        }
    }

    pub(crate) fn remove(&self, uid: &str) {
        if let Ok(mut logins) = self.0.lock() {
            logins.remove(uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::AccessMode;

    fn owner(name: &str) -> SecretOwner {
        SecretOwner {
            namespace: "ns".into(),
            name: name.into(),
            mode: AccessMode::Push,
        }
    }

    #[test]
    fn accounts_are_remembered_per_owner_until_taken() {
        let recent = RecentAccounts::default();
        recent.record(&owner("a"), ObjectRef::new("push.ns.a.1").within("reg"));
        recent.record(&owner("a"), ObjectRef::new("push.ns.a.2").within("reg"));
        recent.record(&owner("b"), ObjectRef::new("push.ns.b.1").within("reg"));
        let taken: Vec<String> = recent
            .take(&owner("a"))
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(taken, ["push.ns.a.1", "push.ns.a.2"]);
        assert!(recent.take(&owner("a")).is_empty(), "taken once");
        assert_eq!(recent.take(&owner("b")).len(), 1);
    }

    #[test]
    fn the_last_written_status_is_kept_per_uid() {
        let written = WrittenStatuses::default();
        assert_eq!(written.get("u1"), None);
        let status = ImageSecretStatus {
            rotation: Some(2),
            ..ImageSecretStatus::default()
        };
        written.insert("u1".into(), status.clone());
        assert_eq!(written.get("u1"), Some(status));
        assert_eq!(written.get("u2"), None);
        written.remove("u1");
        assert_eq!(written.get("u1"), None);
    }
}
