//! Why a mirror is not synced, as its conditions and Events tell the user, and the errors that
//! end a reconcile early.

use std::time::Duration;

use wharf_core::mirror::SpecProblem;
use wharf_core::nginx::InvalidNginxConfig;
use wharf_core::tls::TlsError;

/// Reason of [`Failure::MasqueradeTaken`].
pub const MASQUERADE_TAKEN: &str = "MasqueradeHostTaken";

/// Something that keeps a mirror from being synced. Every variant but [`Failure::Api`] is the
/// user's to fix (or resolves by itself, [`Failure::Recreating`]) and says how.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidSpec { problems: Vec<SpecProblem> },

    #[error(
        "spec.masqueradeUrl: {host:?} is already used by RegistryMirror {other:?}; give this mirror another masqueradeUrl"
    )]
    MasqueradeTaken { host: String, other: String },

    #[error(
        "spec.credentialsSecret: Secret {namespace}/{name} does not exist; create it with keys `username` and `password` (the mirror stays unchanged until then)"
    )]
    CredentialsSecretMissing { namespace: String, name: String },

    #[error(
        "spec.credentialsSecret: Secret {namespace}/{name} has no key `{key}`; it needs keys `username` and `password`"
    )]
    CredentialsKeyMissing {
        namespace: String,
        name: String,
        key: &'static str,
    },

    #[error("spec.credentialsSecret: Secret {namespace}/{name}: key `{key}` is not UTF-8 text")]
    CredentialsNotText {
        namespace: String,
        name: String,
        key: &'static str,
    },

    #[error("{0}")]
    InvalidNginxInput(#[from] InvalidNginxConfig),

    #[error(
        "DOCKER_CERTIFICATE_SECRET: Secret {namespace}/{name} does not exist; create it (type kubernetes.io/tls) or unset DOCKER_CERTIFICATE_SECRET to have certificates generated"
    )]
    CertificateSecretMissing { namespace: String, name: String },

    #[error(
        "DOCKER_CERTIFICATE_SECRET: Secret {namespace}/{name} has no key `{key}`; it needs `tls.crt` and `tls.key` (PEM)"
    )]
    CertificateSecretIncomplete {
        namespace: String,
        name: String,
        key: &'static str,
    },

    #[error(
        "CA_CERTIFICATE_BUNDLE: ConfigMap {namespace}/{name} does not exist or has no key `ca-certificates.crt`; create it or unset CA_CERTIFICATE_BUNDLE"
    )]
    CaBundleMissing { namespace: String, name: String },

    #[error("{field}: the API server rejected {kind} {name}: {message}")]
    Rejected {
        kind: &'static str,
        name: String,
        field: &'static str,
        message: String,
    },

    #[error(
        "{kind} {name} is being recreated because {field} changed, which Kubernetes cannot update in place"
    )]
    Recreating {
        kind: &'static str,
        name: String,
        field: &'static str,
    },

    #[error("cannot make the mirror's certificate: {0}")]
    Certificate(#[from] TlsError),

    #[error("{action} failed: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },

    #[error(transparent)]
    Controller(#[from] Error),
}

impl Failure {
    /// The condition reason (CamelCase, stable: also the failure metric's label).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidSpec { .. } => "InvalidSpec",
            Self::MasqueradeTaken { .. } => MASQUERADE_TAKEN,
            Self::CredentialsSecretMissing { .. } => "CredentialsSecretMissing",
            Self::CredentialsKeyMissing { .. } => "CredentialsKeyMissing",
            Self::CredentialsNotText { .. } | Self::InvalidNginxInput(_) => "InvalidCredentials",
            Self::CertificateSecretMissing { .. } => "CertificateSecretMissing",
            Self::CertificateSecretIncomplete { .. } => "CertificateSecretIncomplete",
            Self::CaBundleMissing { .. } => "CaBundleMissing",
            Self::Rejected {
                field: "spec.volumeClaimTemplate",
                ..
            } => "VolumeClaimTemplateRejected",
            Self::Rejected { .. } => "ObjectRejected",
            Self::Recreating { .. } => "Recreating",
            Self::Certificate(_) => "CertificateError",
            Self::Api { .. } => "ApiError",
            Self::Controller(err) => err.reason(),
        }
    }

    /// Whether the failure is the API's or this process's rather than the user's.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Api { .. } | Self::Certificate(_) | Self::Controller(_)
        )
    }

    /// When to try again without a triggering change. Input the user must fix is re-read when
    /// it changes (watches), so those wait long; a masquerade conflict also ends when the other
    /// mirror goes away, which is not watched per host.
    pub fn retry_after(&self, attempt: u32) -> Duration {
        match self {
            Self::Api { .. } | Self::Certificate(_) | Self::Controller(_) => {
                Duration::from_millis(500 * 2u64.pow(attempt.min(7))).min(Duration::from_secs(60))
            }
            Self::Recreating { .. } => Duration::from_secs(2),
            Self::MasqueradeTaken { .. } => Duration::from_secs(30),
            _ => Duration::from_secs(300),
        }
    }

    /// A failure of the API (the Kubernetes error as is) while doing `action`.
    pub fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Self::Api { action, source }
    }
}

/// An error that ends a reconcile (the error policy retries it with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} failed: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot record the imageswap-maps version in {path}: {source}")]
    VersionFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{action} failed: {message}")]
    GaveUp { action: String, message: String },
}

impl Error {
    /// A stable label for the failure metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kube { .. } => "ApiError",
            Self::VersionFile { .. } => "VersionFileError",
            Self::GaveUp { .. } => "ApiError",
        }
    }

    /// A Kubernetes API failure while doing `action`.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Self::Kube { action, source }
    }
}

/// Whether `err` is the API server's "not found".
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

/// Whether `err` is an optimistic-concurrency conflict (or a create of something that exists).
pub fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 409)
}

/// The API server's message when it refused an object as invalid (422), else `None`.
pub fn invalid_message(err: &kube::Error) -> Option<String> {
    match err {
        kube::Error::Api(status) if status.code == 422 || status.code == 400 => {
            Some(status.message.clone())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field_to_fix() {
        let failure = Failure::CredentialsSecretMissing {
            namespace: "mirrors".into(),
            name: "creds".into(),
        };
        assert_eq!(failure.reason(), "CredentialsSecretMissing");
        assert!(
            failure
                .to_string()
                .starts_with("spec.credentialsSecret: Secret mirrors/creds does not exist")
        );
        let failure = Failure::InvalidSpec {
            problems: vec![
                SpecProblem {
                    field: "spec.upstreamUrl",
                    message: "is empty".into(),
                },
                SpecProblem {
                    field: "metadata.name",
                    message: "too long".into(),
                },
            ],
        };
        assert_eq!(
            failure.to_string(),
            "spec.upstreamUrl: is empty; metadata.name: too long"
        );
        let failure = Failure::Rejected {
            kind: "StatefulSet",
            name: "registry-mirror-x".into(),
            field: "spec.volumeClaimTemplate",
            message: "bad".into(),
        };
        assert_eq!(failure.reason(), "VolumeClaimTemplateRejected");
        assert!(
            failure
                .to_string()
                .starts_with("spec.volumeClaimTemplate: ")
        );
    }

    #[test]
    fn api_failures_back_off() {
        let failure = Failure::Recreating {
            kind: "StatefulSet",
            name: "x".into(),
            field: "spec.selector",
        };
        assert_eq!(failure.retry_after(0), Duration::from_secs(2));
        let failure = Failure::Certificate(TlsError::Validity);
        assert_eq!(failure.retry_after(0), Duration::from_millis(500));
        assert_eq!(failure.retry_after(3), Duration::from_secs(4));
        assert_eq!(failure.retry_after(30), Duration::from_secs(60));
    }
}
