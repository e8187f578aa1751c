//! Helpers shared by hostess-agent's integration tests: required tools, loopback ports, child
//! processes that die with the test, test certificates, OCI test images and polling.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Fails the test, naming the script that installs them, when any of `binaries` is missing.
pub fn require_tools(binaries: &[&str]) {
    let missing: Vec<&str> = binaries
        .iter()
        .copied()
        .filter(|binary| which(binary).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "missing {}: install them with `bash xtask/scripts/agent-test-deps.sh` (as root)",
        missing.join(", ")
    );
}

fn which(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}

/// Polls `check` every 100 ms until it holds or `timeout` passes; returns whether it held.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A background process whose output goes to a log file; killed when dropped.
pub struct Daemon {
    pub name: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Self {
        let file = File::create(log).expect("creates the daemon log");
        let stderr = file.try_clone().expect("clones the log handle");
        command.stdin(Stdio::null()).stdout(file).stderr(stderr);
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("starting {name} ({command:?}): {err}"));
        Self {
            name: name.to_owned(),
            log: log.to_owned(),
            child: Some(child),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `addr` accepts connections, failing early if the process died.
    pub fn wait_for_port(&mut self, addr: SocketAddr) {
        let ready = eventually(Duration::from_secs(20), || {
            self.assert_running();
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        assert!(
            ready,
            "{} never listened on {addr}:\n{}",
            self.name,
            self.log_text()
        );
    }

    /// Waits until `path` exists, failing early if the process died.
    pub fn wait_for_path(&mut self, path: &Path) {
        let ready = eventually(Duration::from_secs(20), || {
            self.assert_running();
            path.exists()
        });
        assert!(
            ready,
            "{} never created {}:\n{}",
            self.name,
            path.display(),
            self.log_text()
        );
    }

    pub fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("{} exited ({status}):\n{}", self.name, self.log_text());
        }
    }

    /// Kills the process and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _killed = child.kill();
            let _reaped = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA and a server certificate for 127.0.0.1 it signed, as PEM files in a directory.
pub struct TestCa {
    pub ca_pem: String,
    pub ca_file: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TestCa {
    pub fn create(dir: &Path, name: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
        std::fs::create_dir_all(dir).expect("creates the PKI dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-signs the CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} on 127.0.0.1"));
        params.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
        let server = params
            .signed_by(&server_key, &issuer)
            .expect("signs the server certificate");

        let ca_file = dir.join(format!("{name}-ca.crt"));
        let server_cert = dir.join(format!("{name}.crt"));
        let server_key_file = dir.join(format!("{name}.key"));
        std::fs::write(&ca_file, ca_cert.pem()).expect("writes CA");
        std::fs::write(&server_cert, server.pem()).expect("writes certificate");
        std::fs::write(&server_key_file, server_key.serialize_pem()).expect("writes key");
        Self {
            ca_pem: ca_cert.pem(),
            ca_file,
            server_cert,
            server_key: server_key_file,
        }
    }
}

/// `GET path` on 127.0.0.1:`port` over plain HTTP; returns the status code, or None when
/// nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}
