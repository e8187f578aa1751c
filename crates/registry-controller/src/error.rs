//! What can go wrong in a reconcile, each with a reason (condition, Event, metric label) and a
//! message that says what to fix.

use std::time::Duration;

use wharf_core::tls::TlsError;

/// A failed reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The ImageRegistry itself cannot be served as written.
    #[error("{0}")]
    InvalidSpec(String),
    #[error(
        "Secret {name} named by {field} does not exist in the namespace: create it (type kubernetes.io/tls, keys tls.crt and tls.key) or remove {field}"
    )]
    MissingSecret { field: &'static str, name: String },
    #[error(
        "Secret {name} named by {field} has no key {key}: it must hold tls.crt and tls.key (a kubernetes.io/tls Secret)"
    )]
    IncompleteSecret {
        field: &'static str,
        name: String,
        key: &'static str,
    },
    #[error(
        "cert-manager is not installed (the API has no cert-manager.io/v1 Certificate): install cert-manager or remove {field}"
    )]
    NoCertManager { field: &'static str },
    #[error("cannot make a certificate: {0}")]
    Certificate(#[from] TlsError),
    #[error("the API server refused {what}: {message}")]
    Rejected { what: String, message: String },
    #[error("cannot {action}: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
}

impl Failure {
    /// Short, stable reason: the Synced condition's reason, the Event's reason, the metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidSpec(_) => "InvalidSpec",
            Self::MissingSecret { .. } => "SecretNotFound",
            Self::IncompleteSecret { .. } => "InvalidSecret",
            Self::NoCertManager { .. } => "CertManagerMissing",
            Self::Certificate(_) => "CertificateFailed",
            Self::Rejected { .. } => "Rejected",
            Self::Api { .. } => "ApiError",
        }
    }

    /// When to try again: soon for API hiccups (with backoff), later for what a user must fix
    /// (a watched Secret appearing triggers a reconcile anyway).
    pub fn retry_after(&self, attempt: u32) -> Duration {
        match self {
            Self::Api { .. } => Duration::from_secs(5u64 << attempt.min(6)),
            _ => Duration::from_secs(60),
        }
    }

    /// Maps an API error of `action` on `what`: a 422 is the user's to fix, the rest transient.
    pub fn api(
        action: impl Into<String>,
        what: impl Into<String>,
    ) -> impl FnOnce(kube::Error) -> Self {
        move |source| match &source {
            kube::Error::Api(status) if status.code == 422 => Self::Rejected {
                what: what.into(),
                message: status.message.clone(),
            },
            _ => Self::Api {
                action: action.into(),
                source,
            },
        }
    }
}

/// Whether an API error is a 404.
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_errors_wait_and_api_errors_back_off() {
        let user = Failure::MissingSecret {
            field: "spec.tls.secretName",
            name: "mine".into(),
        };
        assert_eq!(user.reason(), "SecretNotFound");
        assert_eq!(user.retry_after(5), Duration::from_secs(60));
        assert!(user.to_string().contains("create it"), "{user}");
        let api = Failure::Api {
            action: "read".into(),
            source: kube::Error::LinesCodecMaxLineLengthExceeded,
        };
        assert_eq!(api.retry_after(0), Duration::from_secs(5));
        assert_eq!(api.retry_after(2), Duration::from_secs(20));
        assert_eq!(api.retry_after(30), Duration::from_secs(320));
    }
}
