//! Token throughput of registry-auth (run by `cargo xtask bench registry-auth`, release build):
//! tokens per second for an account whose login is already verified — in-process, over plain
//! HTTP and over TLS with keep-alive connections on loopback — and for first logins (bcrypt at
//! the cost secret-rotator uses). Accounts live in the same watched store type registry-auth
//! reads from the API server, filled directly so the numbers measure registry-auth alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;
use registry_auth::accounts::AccountDirectory;
use registry_auth::issue::{Credentials, TokenRequest, TokenService};
use registry_auth::policy::PolicySource;
use registry_auth::scope::parse_scopes;
use registry_auth::signer::TokenSigner;
use registry_auth::{http, listener};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use wharf_core::crd::{
    AccessRule, AuthSpec, ImageRegistry, ImageRegistryAccount, ImageRegistryAccountSpec,
    ImageRegistrySpec, RegistryAction,
};
use wharf_core::tls::{generate_ca, issue_server_cert};

const NAMESPACE: &str = "bench";
const SERVICE: &str = "bench-registry";
/// The bcrypt cost secret-rotator hashes passwords with.
const BCRYPT_COST: u32 = 10;
/// How long each throughput phase runs.
const PHASE: Duration = Duration::from_secs(3);
/// Concurrent clients of each throughput phase.
const CLIENTS: usize = 8;
/// Accounts logged in once each in the first-login phase.
const FIRST_LOGINS: usize = 24;
const SCOPE: &str = "repository:team/app:pull,push";

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "registry-auth token throughput ({cores} cores, {CLIENTS} concurrent clients, bcrypt cost {BCRYPT_COST})"
    );
    let fixture = Fixture::new()?;

    let service = fixture.service.clone();
    service.issue(request("verified", "pw-verified")).await?;
    let shared = service.clone();
    let in_process = throughput(move || {
        let service = shared.clone();
        async move {
            service
                .issue(request("verified", "pw-verified"))
                .await
                .is_ok()
        }
    })
    .await;
    report("verified account, in-process", in_process);

    let plain = serve(&fixture, None).await?;
    let http = http_throughput(plain, None).await?;
    report("verified account, HTTP keep-alive", http);

    let tls = serve(&fixture, Some(fixture.tls_acceptor()?)).await?;
    let https = http_throughput(tls, Some(fixture.tls_connector()?)).await?;
    report("verified account, HTTPS keep-alive", https);

    let started = Instant::now();
    let logins = (0..FIRST_LOGINS).map(|i| {
        let service = service.clone();
        tokio::spawn(async move {
            service
                .issue(request(&format!("first-{i}"), &format!("pw-first-{i}")))
                .await
                .is_ok()
        })
    });
    let mut ok = 0;
    for login in futures::future::join_all(logins).await {
        ok += usize::from(login.unwrap_or(false));
    }
    anyhow::ensure!(
        ok == FIRST_LOGINS,
        "only {ok} of {FIRST_LOGINS} first logins succeeded"
    );
    let first = FIRST_LOGINS as f64 / started.elapsed().as_secs_f64();
    report("first login (bcrypt verify)", first);

    let target = 5_000.0;
    let verdict = if https.min(http) >= target {
        "met"
    } else {
        "NOT met"
    };
    println!("target ≥ {target:.0} tokens/s for a verified account over HTTP(S): {verdict}");
    Ok(())
}

fn report(what: &str, per_second: f64) {
    println!("  {what:<40} {per_second:>10.0} tokens/s");
}

fn request(user: &str, password: &str) -> TokenRequest {
    TokenRequest {
        credentials: Some(Credentials {
            username: user.to_owned(),
            password: password.to_owned(),
        }),
        service: Some(SERVICE.to_owned()),
        scopes: parse_scopes([SCOPE]).unwrap_or_default(),
        client: None,
    }
}

/// Runs `CLIENTS` concurrent loops of `once` for `PHASE`; returns successes per second.
async fn throughput<F, Fut>(once: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + PHASE;
    let started = Instant::now();
    let loops: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (once, count) = (once.clone(), count.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    if once().await {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    futures::future::join_all(loops).await;
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

struct Fixture {
    service: TokenService,
    ca_pem: String,
    server: wharf_core::tls::CertifiedKey,
    _accounts: Writer<ImageRegistryAccount>,
    _registries: Writer<ImageRegistry>,
}

impl Fixture {
    fn new() -> anyhow::Result<Self> {
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let token_ca = generate_ca("bench token CA", day, now)?;
        let tls_ca = generate_ca("bench TLS CA", day, now)?;
        let server = issue_server_cert(&tls_ca, &["localhost".to_owned()], day, now)?;
        let signer = TokenSigner::from_pem(
            token_ca.cert_pem.as_bytes(),
            token_ca.key_pem.as_bytes(),
            "token cert",
            "token key",
            "bench-issuer".into(),
            SERVICE.into(),
            Duration::from_secs(300),
        )?;

        let mut accounts = Writer::default();
        let mut add = |name: &str, password: &str| -> anyhow::Result<()> {
            let mut account = ImageRegistryAccount::new(
                name,
                ImageRegistryAccountSpec {
                    password: bcrypt::hash(password, BCRYPT_COST)?,
                    labels: BTreeMap::from([
                        ("accessMode".to_owned(), vec!["push".to_owned()]),
                        ("team".to_owned(), vec!["team".to_owned()]),
                    ]),
                    ttl: Some("24h".into()),
                },
            );
            account.metadata.namespace = Some(NAMESPACE.into());
            account.metadata.resource_version = Some("1".into());
            account.metadata.creation_timestamp = Some(Time(Timestamp::now()));
            accounts.apply_watcher_event(&Event::Apply(account));
            Ok(())
        };
        add("verified", "pw-verified")?;
        for i in 0..FIRST_LOGINS {
            add(&format!("first-{i}"), &format!("pw-first-{i}"))?;
        }

        // Realistic rules: the request is granted by the second one.
        let mut registries = Writer::default();
        let mut registry = ImageRegistry::new(
            "registry",
            ImageRegistrySpec {
                auth: Some(AuthSpec {
                    rules: vec![
                        AccessRule {
                            match_labels: BTreeMap::from([("team".into(), vec!["other".into()])]),
                            repositories: vec!["other/**".into()],
                            actions: vec![RegistryAction::Pull],
                        },
                        AccessRule {
                            match_labels: BTreeMap::from([("team".into(), vec!["team".into()])]),
                            repositories: vec!["${labels.team}/*".into()],
                            actions: vec![RegistryAction::Pull, RegistryAction::Push],
                        },
                    ],
                    ..AuthSpec::default()
                }),
                ..ImageRegistrySpec::default()
            },
        );
        registry.metadata.namespace = Some(NAMESPACE.into());
        registry.metadata.resource_version = Some("1".into());
        registries.apply_watcher_event(&Event::Apply(registry));

        let service = TokenService::new(
            AccountDirectory::new(NAMESPACE.into(), accounts.as_reader()),
            PolicySource::new(NAMESPACE, "registry", registries.as_reader()),
            Arc::new(signer),
        );
        Ok(Self {
            service,
            ca_pem: tls_ca.cert_pem,
            server,
            _accounts: accounts,
            _registries: registries,
        })
    }

    fn tls_acceptor(&self) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
        let dir = std::env::temp_dir().join(format!("wharf-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert, &self.server.cert_pem)?;
        std::fs::write(&key, &self.server.key_pem)?;
        let acceptor = listener::tls_acceptor(&cert, &key)?;
        std::fs::remove_dir_all(&dir)?;
        Ok(acceptor)
    }

    fn tls_connector(&self) -> anyhow::Result<tokio_rustls::TlsConnector> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes())?)?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }
}

async fn serve(
    fixture: &Fixture,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(listener::serve(
        listener,
        tls,
        http::router(fixture.service.clone()),
    ));
    Ok(addr)
}

/// `CLIENTS` keep-alive connections sending token requests for `PHASE`; tokens per second.
async fn http_throughput(
    addr: std::net::SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
) -> anyhow::Result<f64> {
    let credentials = STANDARD.encode("verified:pw-verified");
    let request = format!(
        "GET /auth/token?service={SERVICE}&scope={SCOPE} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {credentials}\r\n\r\n"
    );
    let deadline = Instant::now() + PHASE;
    let started = Instant::now();
    let mut clients = vec![];
    for _ in 0..CLIENTS {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let request = request.clone();
        match &tls {
            Some(connector) => {
                let stream = connector
                    .connect(ServerName::try_from("localhost")?, stream)
                    .await?;
                clients.push(tokio::spawn(client_loop(stream, request, deadline)));
            }
            None => clients.push(tokio::spawn(client_loop(stream, request, deadline))),
        }
    }
    let mut total = 0;
    for client in clients {
        total += client.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Sends requests one after another on one connection until `deadline`; counts 200 answers.
async fn client_loop<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    request: String,
    deadline: Instant,
) -> anyhow::Result<u64> {
    let mut stream = BufReader::new(stream);
    let mut ok = 0;
    let mut line = String::new();
    while Instant::now() < deadline {
        stream.get_mut().write_all(request.as_bytes()).await?;
        line.clear();
        stream.read_line(&mut line).await?;
        let success = line.starts_with("HTTP/1.1 200");
        let mut length = 0;
        loop {
            line.clear();
            stream.read_line(&mut line).await?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse()?;
            }
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await?;
        anyhow::ensure!(
            success,
            "token request failed: {}",
            String::from_utf8_lossy(&body)
        );
        ok += 1;
    }
    Ok(ok)
}
