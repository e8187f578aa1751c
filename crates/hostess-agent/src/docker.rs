//! Docker: the mirror's CA at `certs.d/<host>/ca.crt`, where dockerd looks for the CA of a
//! registry host (the masquerade host in hostess mode, the ClusterIP in services mode).

use std::path::PathBuf;

use crate::files::{self, FileError};

/// File name Docker reads a registry's CA from.
pub const CA_FILE_NAME: &str = "ca.crt";
const WHAT: &str = "the mirror's CA for Docker";

/// Docker's `certs.d` directory on the node.
#[derive(Debug, Clone)]
pub struct DockerCertsDir {
    /// As the agent sees it (e.g. `/host/etc/docker/certs.d`).
    pub dir: PathBuf,
}

impl DockerCertsDir {
    /// Installs `ca` for `host`, or with `None` removes the mirror's CA directories. Any other
    /// directory the mirror owned (a previous ClusterIP) is removed. Returns whether files
    /// changed. The directory is created when missing, as the seed's agent did: Docker reads it
    /// whenever it exists, so it does no harm on other nodes.
    pub fn apply(&self, mirror: &str, wanted: Option<(&str, &[u8])>) -> Result<bool, FileError> {
        let target = wanted.map(|(host, _)| self.dir.join(host));
        let mut changed = false;
        for dir in files::owned_dirs(&self.dir, mirror)? {
            if target.as_ref() != Some(&dir) {
                changed |= files::release_dir(&dir, &[(CA_FILE_NAME, WHAT)])?;
            }
        }
        if let (Some(target), Some((_, ca))) = (target, wanted) {
            files::claim_dir(&target, mirror)?;
            changed |= files::write_if_changed(&target.join(CA_FILE_NAME), ca, WHAT)?;
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_moves_and_removes_the_ca() {
        let root = tempfile::tempdir().expect("temp dir");
        let docker = DockerCertsDir {
            dir: root.path().join("certs.d"),
        };
        assert!(
            docker
                .apply("m", Some(("10.96.0.5", b"ca-1")))
                .expect("installs")
        );
        assert_eq!(
            std::fs::read(root.path().join("certs.d/10.96.0.5/ca.crt")).expect("CA"),
            b"ca-1"
        );
        assert!(
            !docker
                .apply("m", Some(("10.96.0.5", b"ca-1")))
                .expect("no change")
        );
        assert!(
            docker
                .apply("m", Some(("10.96.0.5", b"ca-2")))
                .expect("rotates")
        );
        assert!(
            docker
                .apply("m", Some(("10.96.9.9", b"ca-2")))
                .expect("moves")
        );
        assert!(!root.path().join("certs.d/10.96.0.5").exists());
        assert!(docker.apply("m", None).expect("removes"));
        assert!(!root.path().join("certs.d/10.96.9.9").exists());
        assert!(root.path().join("certs.d").exists());
    }

    #[test]
    fn leaves_other_mirrors_alone() {
        let root = tempfile::tempdir().expect("temp dir");
        let docker = DockerCertsDir {
            dir: root.path().to_owned(),
        };
        docker
            .apply("a", Some(("mirror-a.io", b"a")))
            .expect("installs a");
        docker
            .apply("b", Some(("mirror-b.io", b"b")))
            .expect("installs b");
        docker.apply("a", None).expect("removes a");
        assert!(root.path().join("mirror-b.io/ca.crt").exists());
        let err = docker
            .apply("a", Some(("mirror-b.io", b"a")))
            .expect_err("b owns that host");
        assert!(matches!(err, FileError::Conflict { .. }));
    }
}
