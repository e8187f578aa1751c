//! A real containerd pulls through a real mirror using only the `hosts.toml` the agent wrote,
//! and falls back to the upstream when the mirror is stopped.
//!
//! Everything runs on 127.0.0.1: an upstream `docker-registry` (TLS, its own CA), a mirror
//! `docker-registry` in pull-through mode (TLS, another CA that only the agent's `hosts.toml`
//! names), and a private containerd driven by `ctr`. The upstream's CA stands in for the
//! system trust store (`ctr --tlscacert`); the mirror is trusted only through hosts.toml.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use hostess_agent::containerd::{ContainerdCertsDir, Outcome};
use hostess_agent::registry_host::Upstream;
use support::{Daemon, TestCa, require_tools};
use wharf_e2e::{free_port, write_test_image};

const MIRROR: &str = "pull-test";

fn registry_config(storage: &Path, port: u16, ca: &TestCa, proxy: Option<&str>) -> String {
    let proxy = proxy.map_or_else(String::new, |url| format!("proxy:\n  remoteurl: {url}\n"));
    format!(
        "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {}\n    key: {}\n{proxy}",
        storage.display(),
        ca.server_cert.display(),
        ca.server_key.display(),
    )
}

fn start_registry(
    work: &Path,
    name: &str,
    ca: &TestCa,
    proxy: Option<&str>,
    extra_env: &[(&str, &Path)],
) -> (Daemon, u16) {
    let port = free_port();
    let config = work.join(format!("{name}.yml"));
    std::fs::write(
        &config,
        registry_config(&work.join(format!("{name}-storage")), port, ca, proxy),
    )
    .expect("writes the registry config");
    let mut command = Command::new("docker-registry");
    command.arg("serve").arg(&config);
    for (key, value) in extra_env {
        command.env(key, value);
    }
    let mut daemon = Daemon::spawn(name, command, &work.join(format!("{name}.log")));
    daemon.wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)));
    (daemon, port)
}

fn start_containerd(work: &Path) -> (Daemon, PathBuf) {
    let dir = work.join("containerd");
    std::fs::create_dir_all(&dir).expect("creates the containerd dir");
    let socket = dir.join("containerd.sock");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\n[grpc]\n  address = \"{socket}\"\n\n[ttrpc]\n  address = \"{socket}.ttrpc\"\n\n[debug]\n  address = \"\"\n\n[metrics]\n  address = \"\"\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            socket = socket.display(),
        ),
    )
    .expect("writes the containerd config");
    let mut command = Command::new("containerd");
    command.arg("--config").arg(&config);
    let mut daemon = Daemon::spawn("containerd", command, &work.join("containerd.log"));
    daemon.wait_for_path(&socket);
    (daemon, socket)
}

/// `ctr images pull` of `reference`, resolving hosts only through `hosts_dir`.
fn ctr_pull(
    socket: &Path,
    hosts_dir: &Path,
    upstream_ca: &Path,
    reference: &str,
) -> Result<(), String> {
    let output = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["images", "pull", "--snapshotter", "native", "--hosts-dir"])
        .arg(hosts_dir)
        .arg("--tlscacert")
        .arg(upstream_ca)
        .arg(reference)
        .output()
        .expect("runs ctr");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ctr pull {reference} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn push(layout: &Path, destination: &str) {
    let output = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{destination}"))
        .output()
        .expect("runs skopeo");
    assert!(
        output.status.success(),
        "skopeo copy to {destination} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Access-log lines of a docker-registry that requested `path_part`.
fn requests<'a>(log: &'a str, path_part: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|line| line.contains(path_part))
        .filter(|line| line.contains("\"GET ") || line.contains("\"HEAD "))
        .collect()
}

#[test]
fn ctr_pulls_through_the_mirror_and_falls_back_to_the_upstream() {
    require_tools(&["containerd", "ctr", "docker-registry", "skopeo"]);
    assert!(
        rustix::process::geteuid().is_root(),
        "a private containerd needs root: run this test as root"
    );
    let work = tempfile::Builder::new()
        .prefix("wharf-ctr-")
        .tempdir()
        .expect("temp dir");
    let work = work.path();

    let upstream_pki = TestCa::create(&work.join("pki"), "upstream");
    let mirror_pki = TestCa::create(&work.join("pki"), "mirror");
    let (_upstream, upstream_port) = start_registry(work, "upstream", &upstream_pki, None, &[]);
    let upstream_host = format!("127.0.0.1:{upstream_port}");
    for (repository, message) in [
        ("test/through-mirror", "pulled via the mirror"),
        ("test/fallback", "pulled from the upstream"),
    ] {
        let layout = work.join(repository.replace('/', "-"));
        write_test_image(&layout, message);
        push(&layout, &format!("{upstream_host}/{repository}:v1"));
    }
    // The mirror trusts the upstream through Go's SSL_CERT_FILE.
    let (mut mirror, mirror_port) = start_registry(
        work,
        "mirror",
        &mirror_pki,
        Some(&format!("https://{upstream_host}")),
        &[("SSL_CERT_FILE", &upstream_pki.ca_file)],
    );
    let (_containerd, socket) = start_containerd(work);

    // What the agent does on a node, with the mirror at 127.0.0.1:PORT instead of a ClusterIP.
    let certs_d = work.join("certs.d");
    std::fs::create_dir_all(&certs_d).expect("creates certs.d");
    let containerd_dir = ContainerdCertsDir {
        dir: certs_d.clone(),
        host_root: PathBuf::from("/host"),
        dial_timeout: Some("2s".into()),
    };
    let upstream = Upstream::parse(&upstream_host).expect("valid upstream");
    let mirror_host = format!("127.0.0.1:{mirror_port}");
    let outcome = containerd_dir
        .apply(
            MIRROR,
            &upstream,
            Some((&mirror_host, mirror_pki.ca_pem.as_bytes())),
        )
        .expect("writes hosts.toml");
    assert_eq!(outcome, Outcome::Applied { changed: true });
    let hosts_toml = std::fs::read_to_string(certs_d.join(&upstream_host).join("hosts.toml"))
        .expect("hosts.toml written");
    assert!(
        hosts_toml.contains(&format!("server = \"https://{upstream_host}\"")),
        "{hosts_toml}"
    );

    // 1. Through the mirror: containerd asks the mirror first, with ?ns=<upstream>.
    ctr_pull(
        &socket,
        &certs_d,
        &upstream_pki.ca_file,
        &format!("{upstream_host}/test/through-mirror:v1"),
    )
    .unwrap_or_else(|err| {
        panic!(
            "{err}\nhosts.toml:\n{hosts_toml}\nmirror log:\n{}",
            mirror.log_text()
        )
    });
    let mirror_log = mirror.log_text();
    let via_mirror = requests(&mirror_log, "/v2/test/through-mirror/manifests/v1");
    assert!(
        via_mirror
            .iter()
            .any(|line| line.contains(&format!("ns={}", upstream_host.replace(':', "%3A")))),
        "the mirror served the manifest with containerd's ?ns=:\n{mirror_log}"
    );
    assert!(
        !requests(&mirror_log, "/v2/test/through-mirror/blobs/sha256:").is_empty(),
        "the mirror served the blobs:\n{mirror_log}"
    );

    // 2. Mirror down: the same hosts.toml falls back to the upstream (`server`).
    mirror.stop();
    ctr_pull(
        &socket,
        &certs_d,
        &upstream_pki.ca_file,
        &format!("{upstream_host}/test/fallback:v1"),
    )
    .unwrap_or_else(|err| panic!("no fallback to the upstream: {err}"));
    let upstream_log = std::fs::read_to_string(work.join("upstream.log")).expect("upstream log");
    let direct = requests(&upstream_log, "/v2/test/fallback/manifests/v1");
    assert!(
        direct.iter().any(|line| line.contains("containerd")),
        "containerd itself fetched the manifest from the upstream:\n{upstream_log}"
    );
    assert!(
        !mirror.log_text().contains("test/fallback"),
        "the stopped mirror saw nothing of the fallback pull"
    );

    // 3. The mirror goes away: its hosts.toml and CA are removed, nothing else.
    containerd_dir
        .apply(MIRROR, &upstream, None)
        .expect("removes hosts.toml");
    assert!(!certs_d.join(&upstream_host).exists());
    assert!(certs_d.exists());
}
