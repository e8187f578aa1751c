//! A test certificate authority and one server certificate for 127.0.0.1, shared by the upstream
//! registry, the blob server and the mirror; written in the layouts each client expects.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use wharf_core::tls::{generate_ca, issue_server_cert};

use crate::process::make_dir;

pub struct TestPki {
    /// The CA certificate (PEM): what the mirror's `system_ca_bundle` is in tests.
    pub ca_cert: PathBuf,
    /// Server certificate and key for the IP address 127.0.0.1. (Its common name is the
    /// address too: nginx checks an upstream addressed by IP against the name, not the IP SAN.)
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A directory holding only `ca.crt`: skopeo's `--src-cert-dir`/`--dest-cert-dir`.
    pub cert_dir: PathBuf,
}

impl TestPki {
    pub fn create(dir: &Path) -> TestPki {
        let dir = make_dir(dir);
        let now = SystemTime::now();
        let day = Duration::from_secs(24 * 3600);
        let ca = generate_ca("wharf data-plane test CA", day, now).expect("generate a test CA");
        let server = issue_server_cert(&ca, &["127.0.0.1".to_owned()], day, now)
            .expect("issue a test server certificate");
        let cert_dir = make_dir(&dir.join("certs.d"));
        let pki = TestPki {
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
            cert_dir,
        };
        write(&pki.ca_cert, &ca.cert_pem);
        write(&pki.cert_dir.join("ca.crt"), &ca.cert_pem);
        write(&pki.server_cert, &server.cert_pem);
        write(&pki.server_key, &server.key_pem);
        pki
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
