//! The mirror's CA certificate: given in CA_CERT (a generated CA), or from the mounted TLS
//! Secret: `ca.crt`, or `tls.crt` when the user's own Secret has no CA. Files are re-read on
//! every poll, since the kubelet swaps a symlink when the Secret changes.

use std::path::PathBuf;

use crate::files::{self, FileError};

/// The certificate of a user-provided TLS Secret, used when it carries no `ca.crt`.
pub const FALLBACK_FILE_NAME: &str = "tls.crt";
const PEM_CERTIFICATE: &[u8] = b"-----BEGIN CERTIFICATE-----";

/// A CA that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(
        "{0} holds no PEM certificate (-----BEGIN CERTIFICATE-----): put the mirror's CA certificate in the TLS Secret's ca.crt (or tls.crt)"
    )]
    NotPem(String),
}

/// Where the CA is read from.
#[derive(Debug, Clone)]
pub struct CaSource {
    /// `CA_CERT`: the certificate itself; when set, no file is read.
    pub inline: Option<Vec<u8>>,
    /// `CA_FILE`, e.g. `/etc/wharf/mirror-tls/ca.crt`.
    pub ca_file: PathBuf,
}

/// A CA certificate and where it came from (CA_CERT or a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ca {
    pub pem: Vec<u8>,
    pub origin: String,
}

impl CaSource {
    /// The CA: `inline`, else `ca_file`, else `tls.crt` in the same directory, else `None` (the
    /// Secret is not mounted yet, or has neither key).
    pub fn read(&self) -> Result<Option<Ca>, CaError> {
        if let Some(pem) = &self.inline {
            return checked(pem.clone(), wharf_core::agent::ENV_CA_CERT.to_owned()).map(Some);
        }
        for path in self.candidates() {
            if let Some(pem) = files::read_optional(&path)? {
                return checked(pem, path.display().to_string()).map(Some);
            }
        }
        Ok(None)
    }

    /// The files looked at, in order.
    pub fn candidates(&self) -> Vec<PathBuf> {
        let mut candidates = vec![self.ca_file.clone()];
        if let Some(dir) = self.ca_file.parent() {
            let fallback = dir.join(FALLBACK_FILE_NAME);
            if fallback != self.ca_file {
                candidates.push(fallback);
            }
        }
        candidates
    }
}

fn checked(pem: Vec<u8>, origin: String) -> Result<Ca, CaError> {
    if contains(&pem, PEM_CERTIFICATE) {
        Ok(Ca { pem, origin })
    } else {
        Err(CaError::NotPem(origin))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Describes where the CA is looked for, for messages.
pub fn describe(source: &CaSource) -> String {
    if source.inline.is_some() {
        return wharf_core::agent::ENV_CA_CERT.to_owned();
    }
    source
        .candidates()
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn prefers_ca_crt_then_tls_crt() {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = CaSource {
            inline: None,
            ca_file: dir.path().join("ca.crt"),
        };
        assert_eq!(source.read().expect("reads"), None);
        std::fs::write(dir.path().join("tls.crt"), PEM).expect("tls.crt");
        assert_eq!(
            source.read().expect("reads").map(|ca| ca.origin),
            Some(dir.path().join("tls.crt").display().to_string())
        );
        std::fs::write(dir.path().join("ca.crt"), PEM).expect("ca.crt");
        assert_eq!(
            source.read().expect("reads").map(|ca| ca.origin),
            Some(dir.path().join("ca.crt").display().to_string())
        );
    }

    #[test]
    fn follows_a_swapped_symlink_like_the_kubelet_makes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = dir.path().join("..2024_01");
        let second = dir.path().join("..2024_02");
        std::fs::create_dir(&first).expect("dir");
        std::fs::create_dir(&second).expect("dir");
        std::fs::write(first.join("ca.crt"), PEM).expect("first");
        let mut rotated = PEM.to_vec();
        rotated.extend_from_slice(PEM);
        std::fs::write(second.join("ca.crt"), &rotated).expect("second");
        std::os::unix::fs::symlink("..2024_01", dir.path().join("..data")).expect("link");
        std::os::unix::fs::symlink("..data/ca.crt", dir.path().join("ca.crt")).expect("link");
        let source = CaSource {
            inline: None,
            ca_file: dir.path().join("ca.crt"),
        };
        assert_eq!(
            source.read().expect("reads").map(|ca| ca.pem),
            Some(PEM.to_vec())
        );
        std::os::unix::fs::symlink("..2024_02", dir.path().join("..data_tmp")).expect("link");
        std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).expect("swap");
        assert_eq!(
            source.read().expect("reads").map(|ca| ca.pem),
            Some(rotated)
        );
    }

    #[test]
    fn refuses_what_is_not_pem() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("ca.crt"), b"garbage").expect("ca.crt");
        let err = CaSource {
            inline: None,
            ca_file: dir.path().join("ca.crt"),
        }
        .read()
        .expect_err("not PEM");
        assert!(err.to_string().contains("PEM"), "{err}");
    }

    #[test]
    fn an_inline_ca_wins_and_is_checked_too() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("ca.crt"), b"other").expect("ca.crt");
        let source = CaSource {
            inline: Some(PEM.to_vec()),
            ca_file: dir.path().join("ca.crt"),
        };
        let ca = source.read().expect("reads").expect("a CA");
        assert_eq!((ca.pem.as_slice(), ca.origin.as_str()), (PEM, "CA_CERT"));
        assert_eq!(describe(&source), "CA_CERT");
        let err = CaSource {
            inline: Some(b"garbage".to_vec()),
            ca_file: dir.path().join("ca.crt"),
        }
        .read()
        .expect_err("not PEM");
        assert!(err.to_string().starts_with("CA_CERT holds no PEM"), "{err}");
    }
}
