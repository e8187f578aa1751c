//! What can go wrong in a reconcile, worded for the user who reads it in a condition or an Event.

use kube::runtime::finalizer;

use crate::password::RandomError;

/// A failed reconcile step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed; `action` says which, the API server's message says why.
    #[error("cannot {action}: {}", describe(.cause))]
    Kube { action: String, cause: kube::Error },
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error("cannot hash the new password: {0}")]
    Hash(#[from] bcrypt::BcryptError),
    #[error("the password hashing task did not finish: {0}")]
    HashTask(#[from] tokio::task::JoinError),
    #[error(
        "every account name up to rotation {last} in namespace {namespace} is taken: delete the stale ImageRegistryAccounts named {stem}.*"
    )]
    AccountNamesTaken {
        namespace: String,
        stem: String,
        last: i64,
    },
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

/// The API server's own message when there is one (kube's Display adds a Debug dump).
fn describe(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

impl Error {
    /// An API failure while doing `action` (e.g. "write Secret ns/name").
    pub fn kube(action: impl Into<String>, cause: kube::Error) -> Self {
        Self::Kube {
            action: action.into(),
            cause,
        }
    }

    /// Short, stable label for the failure metric.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Self::Kube { .. } => "KubeApi",
            Self::Random(_) => "Random",
            Self::Hash(_) | Self::HashTask(_) => "PasswordHash",
            Self::AccountNamesTaken { .. } => "AccountNamesTaken",
            Self::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(err) | finalizer::Error::CleanupFailed(err) => {
                    err.metric_reason()
                }
                _ => "Finalizer",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_failures_say_what_was_attempted() {
        let err = Error::kube(
            "write Secret build/x-image-push-secret",
            kube::Error::LinesCodecMaxLineLengthExceeded,
        );
        assert!(
            err.to_string()
                .starts_with("cannot write Secret build/x-image-push-secret: "),
            "{err}"
        );
        assert_eq!(err.metric_reason(), "KubeApi");
        let wrapped = Error::Finalizer(Box::new(finalizer::Error::ApplyFailed(err)));
        assert_eq!(wrapped.metric_reason(), "KubeApi");
    }
}
