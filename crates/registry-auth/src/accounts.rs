//! Login against the ImageRegistryAccounts of the namespace, read from a watched store (so a
//! deleted account is gone at once), with its ttl checked at every login and successful bcrypt
//! verifications remembered by a keyed hash of (account, password, resourceVersion).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wharf_core::crd::ImageRegistryAccount;
use wharf_core::duration::parse_go_duration;

/// Verified logins remembered at most; when full the memory starts over (each entry costs only
/// one bcrypt to rebuild).
const VERIFIED_CAPACITY: usize = 10_000;

/// Why a login was refused. The client only learns "401"; the log gets this.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoginRefusal {
    #[error("no ImageRegistryAccount of this name in the namespace")]
    UnknownAccount,
    #[error("wrong password")]
    WrongPassword,
    #[error("the account expired at {0} (creationTimestamp + spec.ttl)")]
    Expired(Timestamp),
    #[error("the account is being deleted")]
    Deleting,
    #[error("the account's spec.ttl is invalid ({0}); fix or remove it")]
    InvalidTtl(String),
    #[error("the account's spec.password is not a bcrypt hash ({0})")]
    InvalidHash(String),
}

/// Failures that are not the client's fault.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("password verification was interrupted")]
    VerifierGone,
}

/// The accounts of one namespace, and what it takes to log in as one of them.
#[derive(Clone)]
pub struct AccountDirectory {
    namespace: String,
    store: Store<ImageRegistryAccount>,
    verified: Arc<VerifiedLogins>,
    /// bcrypt runs on blocking threads; this bounds how many at once, so a burst of first (or
    /// wrong-password) logins cannot starve the process.
    bcrypt_slots: Arc<Semaphore>,
}

impl AccountDirectory {
    pub fn new(namespace: String, store: Store<ImageRegistryAccount>) -> Self {
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            namespace,
            store,
            verified: Arc::new(VerifiedLogins::new(VERIFIED_CAPACITY)),
            bcrypt_slots: Arc::new(Semaphore::new(parallelism)),
        }
    }

    /// Logs `username` in with `password` at time `now`.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        now: Timestamp,
    ) -> Result<Result<Arc<ImageRegistryAccount>, LoginRefusal>, LoginError> {
        let reference = ObjectRef::new(username).within(&self.namespace);
        let Some(account) = self.store.get(&reference) else {
            return Ok(Err(LoginRefusal::UnknownAccount));
        };
        if let Err(refusal) = check_usable(&account, now) {
            return Ok(Err(refusal));
        }
        let version = account.resource_version().unwrap_or_default();
        let key = self.verified.key(username, password, &version);
        if self.verified.contains(&key) {
            return Ok(Ok(account));
        }
        let outcome = self.verify_bcrypt(password, &account.spec.password).await?;
        match outcome {
            Ok(true) => {
                self.verified.insert(key);
                Ok(Ok(account))
            }
            Ok(false) => Ok(Err(LoginRefusal::WrongPassword)),
            Err(problem) => Ok(Err(LoginRefusal::InvalidHash(problem))),
        }
    }

    async fn verify_bcrypt(
        &self,
        password: &str,
        hash: &str,
    ) -> Result<Result<bool, String>, LoginError> {
        let _slot = self
            .bcrypt_slots
            .acquire()
            .await
            .map_err(|_| LoginError::VerifierGone)?;
        let (password, hash) = (password.to_owned(), hash.to_owned());
        tokio::task::spawn_blocking(move || {
            bcrypt::verify(password.as_bytes(), &hash).map_err(|err| err.to_string())
        })
        .await
        .map_err(|_| LoginError::VerifierGone)
    }
}

/// An account may log in unless it is being deleted or its ttl has passed.
pub fn check_usable(account: &ImageRegistryAccount, now: Timestamp) -> Result<(), LoginRefusal> {
    if account.metadata.deletion_timestamp.is_some() {
        return Err(LoginRefusal::Deleting);
    }
    let Some(ttl) = account.spec.ttl.as_deref() else {
        return Ok(());
    };
    let ttl = parse_go_duration(ttl).map_err(|err| LoginRefusal::InvalidTtl(err.to_string()))?;
    let Some(created) = account.metadata.creation_timestamp.as_ref() else {
        // Not yet stored by the API server; cannot happen for objects read from it.
        return Err(LoginRefusal::InvalidTtl(
            "the account has no creationTimestamp".into(),
        ));
    };
    let expiry = expiry(created.0, ttl);
    if now >= expiry {
        Err(LoginRefusal::Expired(expiry))
    } else {
        Ok(())
    }
}

fn expiry(created: Timestamp, ttl: Duration) -> Timestamp {
    SignedDuration::try_from(ttl)
        .ok()
        .and_then(|ttl| created.checked_add(ttl).ok())
        .unwrap_or(Timestamp::MAX)
}

/// Logins whose bcrypt check succeeded, as salted SHA-256 digests of (account, password,
/// resourceVersion): a changed password hash changes the resourceVersion, so it cannot match.
/// The per-process random salt means the digests reveal nothing outside this process.
pub struct VerifiedLogins {
    salt: [u8; 32],
    entries: Mutex<HashSet<[u8; 32]>>,
    capacity: usize,
}

impl VerifiedLogins {
    pub fn new(capacity: usize) -> Self {
        Self {
            salt: rand::random(),
            entries: Mutex::new(HashSet::new()),
            capacity,
        }
    }

    /// The digest of one login.
    pub fn key(&self, account: &str, password: &str, resource_version: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.salt);
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        for part in [account, password, resource_version] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        hasher.finalize().into()
    }

    pub fn contains(&self, key: &[u8; 32]) -> bool {
        self.entries
            .lock()
            .map(|entries| entries.contains(key))
            .unwrap_or(false)
    }

    pub fn insert(&self, key: [u8; 32]) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= self.capacity {
                entries.clear();
            }
            entries.insert(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;
    use wharf_core::crd::ImageRegistryAccountSpec;

    const NS: &str = "ns";

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("valid timestamp")
    }

    fn account(
        name: &str,
        password: &str,
        ttl: Option<&str>,
        version: &str,
    ) -> ImageRegistryAccount {
        let mut account = ImageRegistryAccount::new(
            name,
            ImageRegistryAccountSpec {
                password: bcrypt::hash(password, 4).expect("hashes"),
                labels: Default::default(),
                ttl: ttl.map(str::to_owned),
            },
        );
        account.metadata.namespace = Some(NS.into());
        account.metadata.resource_version = Some(version.into());
        account.metadata.creation_timestamp = Some(Time(at(1_000)));
        account
    }

    fn directory(
        accounts: &[ImageRegistryAccount],
    ) -> (AccountDirectory, Writer<ImageRegistryAccount>) {
        let mut writer = Writer::default();
        for account in accounts {
            writer.apply_watcher_event(&Event::Apply(account.clone()));
        }
        (AccountDirectory::new(NS.into(), writer.as_reader()), writer)
    }

    async fn login(
        dir: &AccountDirectory,
        user: &str,
        password: &str,
        now: i64,
    ) -> Result<(), LoginRefusal> {
        dir.login(user, password, at(now))
            .await
            .expect("no internal error")
            .map(|_| ())
    }

    #[tokio::test]
    async fn right_password_logs_in_wrong_one_does_not() {
        let (dir, _writer) = directory(&[account("alice", "s3cret", None, "1")]);
        assert_eq!(login(&dir, "alice", "s3cret", 2_000).await, Ok(()));
        assert_eq!(
            login(&dir, "alice", "wrong", 2_000).await,
            Err(LoginRefusal::WrongPassword)
        );
        assert_eq!(
            login(&dir, "bob", "s3cret", 2_000).await,
            Err(LoginRefusal::UnknownAccount)
        );
    }

    #[tokio::test]
    async fn ttl_is_checked_at_every_login_even_when_cached() {
        let (dir, _writer) = directory(&[account("alice", "pw", Some("1h"), "1")]);
        assert_eq!(login(&dir, "alice", "pw", 1_000 + 3_599).await, Ok(()));
        assert_eq!(
            login(&dir, "alice", "pw", 1_000 + 3_600).await,
            Err(LoginRefusal::Expired(at(4_600)))
        );
    }

    #[tokio::test]
    async fn a_deleted_account_is_refused_at_once() {
        let alice = account("alice", "pw", None, "1");
        let (dir, mut writer) = directory(std::slice::from_ref(&alice));
        assert_eq!(login(&dir, "alice", "pw", 2_000).await, Ok(()));
        writer.apply_watcher_event(&Event::Delete(alice));
        assert_eq!(
            login(&dir, "alice", "pw", 2_000).await,
            Err(LoginRefusal::UnknownAccount)
        );
    }

    #[tokio::test]
    async fn a_new_password_invalidates_the_remembered_login() {
        let (dir, mut writer) = directory(&[account("alice", "old", None, "1")]);
        assert_eq!(login(&dir, "alice", "old", 2_000).await, Ok(()));
        writer.apply_watcher_event(&Event::Apply(account("alice", "new", None, "2")));
        assert_eq!(
            login(&dir, "alice", "old", 2_000).await,
            Err(LoginRefusal::WrongPassword)
        );
        assert_eq!(login(&dir, "alice", "new", 2_000).await, Ok(()));
    }

    #[tokio::test]
    async fn broken_accounts_are_refused_with_the_reason() {
        let mut deleting = account("deleting", "pw", None, "1");
        deleting.metadata.deletion_timestamp = Some(Time(at(1_500)));
        let bad_ttl = account("badttl", "pw", Some("1d"), "1");
        let mut bad_hash = account("badhash", "pw", None, "1");
        bad_hash.spec.password = "plain".into();
        let (dir, _writer) = directory(&[deleting, bad_ttl, bad_hash]);
        assert_eq!(
            login(&dir, "deleting", "pw", 2_000).await,
            Err(LoginRefusal::Deleting)
        );
        assert!(matches!(
            login(&dir, "badttl", "pw", 2_000).await,
            Err(LoginRefusal::InvalidTtl(_))
        ));
        assert!(matches!(
            login(&dir, "badhash", "pw", 2_000).await,
            Err(LoginRefusal::InvalidHash(_))
        ));
    }

    #[test]
    fn remembered_logins_are_keyed_by_every_part() {
        let verified = VerifiedLogins::new(2);
        let key = verified.key("alice", "pw", "1");
        assert_ne!(key, verified.key("alice", "pw", "2"));
        assert_ne!(key, verified.key("alice", "pw2", "1"));
        assert_ne!(verified.key("ab", "c", "1"), verified.key("a", "bc", "1"));
        assert_ne!(
            key,
            VerifiedLogins::new(2).key("alice", "pw", "1"),
            "salted per process"
        );
        verified.insert(key);
        assert!(verified.contains(&key));
        verified.insert(verified.key("b", "b", "1"));
        verified.insert(verified.key("c", "c", "1"));
        assert!(!verified.contains(&key), "starts over when full");
    }
}
