//! Real parts for registry-auth's integration tests: certificates, a real distribution registry
//! configured for token auth, an OCI image layout, skopeo and raw token requests with curl.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::PostParams;
use registry_auth::AuthServer;
use registry_auth::settings::AuthArgs;
use wharf_core::crd::{
    AuthSpec, ImageRegistry, ImageRegistryAccount, ImageRegistryAccountSpec, ImageRegistrySpec,
};
use wharf_core::registry::config::{RegistryConfig, render};
use wharf_core::tls::{CertifiedKey, generate_ca, issue_server_cert};
use wharf_e2e::{TestEnv, free_port};

pub const ISSUER: &str = "wharf-test-issuer";
pub const SERVICE: &str = "wharf-test-registry";
/// bcrypt cost in tests: the verification path is the same at any cost, and debug builds are slow.
pub const TEST_BCRYPT_COST: u32 = 4;

/// Makes sure docker-registry, skopeo and curl are installed (the project's own script).
pub fn ensure_tools() {
    let script = wharf_e2e::repo_root().join("xtask/scripts/registry-test-deps.sh");
    let status = Command::new("bash")
        .arg(&script)
        .status()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
    assert!(status.success(), "{} failed", script.display());
}

/// Files of a test: certificates, registry storage and config, image layouts.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("creates parent");
        }
        std::fs::write(&path, content).expect("writes file");
        path
    }
}

/// The serving certificate (for 127.0.0.1) with its CA, and the token-signing CA, on disk.
pub struct Certificates {
    pub ca_dir: PathBuf,
    pub ca_file: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub token_cert: PathBuf,
    pub token_key: PathBuf,
}

pub fn certificates(work: &Workdir) -> Certificates {
    const DAY: Duration = Duration::from_secs(86_400);
    let now = SystemTime::now();
    let ca = generate_ca("wharf test TLS CA", 30 * DAY, now).expect("TLS CA");
    let server = issue_server_cert(
        &ca,
        &["localhost".to_owned(), "127.0.0.1".to_owned()],
        30 * DAY,
        now,
    )
    .expect("server certificate");
    let token: CertifiedKey = generate_ca("wharf test token CA", 30 * DAY, now).expect("token CA");
    Certificates {
        // containers/image trusts every *.crt of a cert dir.
        ca_file: work.write("certs/ca.crt", &ca.cert_pem),
        ca_dir: work.path("certs"),
        tls_cert: work.write("tls/tls.crt", &server.cert_pem),
        tls_key: work.write("tls/tls.key", &server.key_pem),
        token_cert: work.write("token/tls.crt", &token.cert_pem),
        token_key: work.write("token/tls.key", &token.key_pem),
    }
}

/// Creates ServiceAccount, Role and RoleBinding for registry-auth the way registry-controller
/// builds them, and returns a client acting as that ServiceAccount.
pub async fn registry_auth_client(env: &TestEnv, registry: &str) -> kube::Client {
    let objects = wharf_core::registry::rbac::build(
        registry,
        &env.namespace,
        &wharf_core::registry::labels::selector_labels(registry),
        None,
    );
    let pp = PostParams::default();
    let ns = &env.namespace;
    Api::<ServiceAccount>::namespaced(env.client.clone(), ns)
        .create(&pp, &objects.service_account)
        .await
        .expect("creates ServiceAccount");
    Api::<Role>::namespaced(env.client.clone(), ns)
        .create(&pp, &objects.role)
        .await
        .expect("creates Role");
    Api::<RoleBinding>::namespaced(env.client.clone(), ns)
        .create(&pp, &objects.role_binding)
        .await
        .expect("creates RoleBinding");
    env.client_as(ns, &wharf_core::registry::names::rbac_name(registry))
}

/// Starts registry-auth in-process for ImageRegistry `registry`; returns its port.
pub async fn start_registry_auth(
    env: &TestEnv,
    certs: &Certificates,
    registry: &str,
    client: kube::Client,
) -> u16 {
    let args = AuthArgs {
        namespace: env.namespace.clone(),
        registry_name: registry.to_owned(),
        listen_addr: "127.0.0.1:0".parse().expect("address"),
        tls_cert_file: Some(certs.tls_cert.clone()),
        tls_key_file: Some(certs.tls_key.clone()),
        token_cert_file: certs.token_cert.clone(),
        token_key_file: certs.token_key.clone(),
        issuer: ISSUER.to_owned(),
        service: SERVICE.to_owned(),
        token_ttl: Duration::from_secs(300),
    };
    let server = AuthServer::start(&args, client)
        .await
        .unwrap_or_else(|err| panic!("registry-auth does not start: {err}"));
    let port = server.local_addr().expect("bound").port();
    env.spawn("registry-auth", server.serve());
    port
}

/// registry-auth for `registry` (as the ServiceAccount registry-controller gives it) and a
/// distribution registry that trusts its tokens; returns the registry's and registry-auth's ports.
pub async fn start_registry_with_auth(
    env: &TestEnv,
    work: &Workdir,
    certs: &Certificates,
    registry: &str,
) -> (u16, u16) {
    let client = registry_auth_client(env, registry).await;
    let auth_port = start_registry_auth(env, certs, registry, client).await;
    (start_registry(env, work, certs, auth_port).await, auth_port)
}

/// Starts the real distribution registry with the rendered token-auth config; returns its port.
pub async fn start_registry(
    env: &TestEnv,
    work: &Workdir,
    certs: &Certificates,
    auth_port: u16,
) -> u16 {
    let port = free_port();
    let config = RegistryConfig {
        listen_addr: format!("127.0.0.1:{port}"),
        storage_dir: work.path("storage").display().to_string(),
        tls: Some((
            certs.tls_cert.display().to_string(),
            certs.tls_key.display().to_string(),
        )),
        realm: format!("https://127.0.0.1:{auth_port}/auth/token"),
        issuer: ISSUER.to_owned(),
        service: SERVICE.to_owned(),
        root_cert_bundle: certs.token_cert.display().to_string(),
        http_secret: "test-http-secret".to_owned(),
    };
    let config_file = work.write("registry/config.yml", &render(&config));
    let mut command = Command::new("docker-registry");
    command.arg("serve").arg(&config_file);
    env.spawn_process("docker-registry", command);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = curl(certs, &format!("https://127.0.0.1:{port}/v2/"), None).await;
        if status == 401 {
            return port;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "docker-registry did not answer /v2/ with 401 within 20s (last status {status})\n{}",
            env.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET url` with curl trusting the test CA; returns (status, body). Status 0: no answer.
pub async fn curl(certs: &Certificates, url: &str, basic: Option<&str>) -> (u16, String) {
    let mut command = tokio::process::Command::new("curl");
    command
        .args(["-s", "--max-time", "10", "--cacert"])
        .arg(&certs.ca_file)
        .args(["-w", "\n%{http_code}"]);
    if let Some(user_password) = basic {
        command.args(["-u", user_password]);
    }
    let output = command.arg(url).output().await.expect("runs curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// A token request for `scope` as `user:password` (or anonymous); returns (status, granted
/// actions of the first access entry).
pub async fn request_token(
    certs: &Certificates,
    auth_port: u16,
    scope: &str,
    basic: Option<&str>,
) -> (u16, Vec<String>) {
    let url = format!("https://127.0.0.1:{auth_port}/auth/token?service={SERVICE}&scope={scope}");
    let (status, body) = curl(certs, &url, basic).await;
    if status != 200 {
        return (status, vec![]);
    }
    let json: serde_json::Value = serde_json::from_str(&body).expect("token JSON");
    let token = json["token"].as_str().expect("token field");
    let payload = token.split('.').nth(1).expect("JWT payload");
    use base64::Engine;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("claims JSON");
    let actions = claims["access"][0]["actions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (status, actions)
}

/// Runs skopeo with the given arguments; returns (success, stderr).
pub async fn skopeo(args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .await
        .expect("runs skopeo");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Pushes the OCI layout's `v1` to `reference` (`127.0.0.1:PORT/repo:tag`) with credentials.
pub async fn push(
    certs: &Certificates,
    layout: &Path,
    reference: &str,
    creds: Option<&str>,
) -> (bool, String) {
    let source = format!("oci:{}:v1", layout.display());
    let destination = format!("docker://{reference}");
    let cert_dir = certs.ca_dir.display().to_string();
    let mut args = vec!["copy", "--dest-cert-dir", &cert_dir];
    match creds {
        Some(creds) => args.extend(["--dest-creds", creds]),
        None => args.push("--dest-no-creds"),
    }
    args.extend([source.as_str(), destination.as_str()]);
    skopeo(&args).await
}

/// Pulls `reference` into a fresh OCI layout under `into`.
pub async fn pull(
    certs: &Certificates,
    reference: &str,
    into: &Path,
    creds: Option<&str>,
) -> (bool, String) {
    let source = format!("docker://{reference}");
    let destination = format!("oci:{}:pulled", into.display());
    let cert_dir = certs.ca_dir.display().to_string();
    let mut args = vec!["copy", "--src-cert-dir", &cert_dir];
    match creds {
        Some(creds) => args.extend(["--src-creds", creds]),
        None => args.push("--src-no-creds"),
    }
    args.extend([source.as_str(), destination.as_str()]);
    skopeo(&args).await
}

/// Creates ImageRegistry `name` with `auth`.
pub async fn create_registry(env: &TestEnv, name: &str, auth: Option<AuthSpec>) {
    let registry = ImageRegistry::new(
        name,
        ImageRegistrySpec {
            auth,
            ..ImageRegistrySpec::default()
        },
    );
    Api::<ImageRegistry>::namespaced(env.client.clone(), &env.namespace)
        .create(&PostParams::default(), &registry)
        .await
        .expect("creates ImageRegistry");
}

/// Creates an account with a bcrypt hash of `password`, `accessMode` and extra labels.
pub async fn create_account(
    env: &TestEnv,
    name: &str,
    password: &str,
    access_mode: &str,
    extra_labels: &[(&str, &str)],
    ttl: Option<&str>,
) {
    let mut labels = BTreeMap::from([("accessMode".to_owned(), vec![access_mode.to_owned()])]);
    for (key, value) in extra_labels {
        labels.insert((*key).to_owned(), vec![(*value).to_owned()]);
    }
    let account = ImageRegistryAccount::new(
        name,
        ImageRegistryAccountSpec {
            password: bcrypt::hash(password, TEST_BCRYPT_COST).expect("hashes"),
            labels,
            ttl: ttl.map(str::to_owned),
        },
    );
    Api::<ImageRegistryAccount>::namespaced(env.client.clone(), &env.namespace)
        .create(&PostParams::default(), &account)
        .await
        .expect("creates ImageRegistryAccount");
}
