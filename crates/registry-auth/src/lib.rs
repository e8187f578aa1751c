//! registry-auth: a Docker registry token server for one ImageRegistry. It authenticates the
//! ImageRegistryAccounts of its namespace (watched, so deletions and new passwords apply at once),
//! authorizes with the ImageRegistry's access rules and signs tokens the registry verifies.
//!
//! It listens on its own port (5001, TLS with the registry's serving certificate); the registry's
//! Service exposes that port next to 443, and the registry's token realm points at it
//! (`https://<host>:5001/auth/token`). It never sits in the image data path.

pub mod accounts;
pub mod http;
pub mod issue;
pub mod listener;
pub mod policy;
pub mod scope;
pub mod settings;
pub mod signer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::api::ListParams;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use wharf_core::crd::{ImageRegistry, ImageRegistryAccount};

use crate::accounts::AccountDirectory;
use crate::issue::TokenService;
use crate::policy::PolicySource;
use crate::settings::AuthArgs;
use crate::signer::{SignerError, TokenSigner};

/// How long start-up waits for the first list of accounts and of the ImageRegistry.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// Why registry-auth cannot start; each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Signer(#[from] SignerError),
    #[error(transparent)]
    Tls(#[from] listener::TlsError),
    #[error("cannot listen on {addr} (set AUTH_ADDR)")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "could not list {what} in namespace {namespace} within {SYNC_TIMEOUT:?}: check that the ServiceAccount may get, list and watch them (Role imageregistry-<name>)"
    )]
    NotSynced {
        what: &'static str,
        namespace: String,
    },
    #[error(
        "the CustomResourceDefinition {0} is not installed: install the chart's CRDs (kubectl apply -f charts/wharf/crds/) and start again"
    )]
    MissingCrd(&'static str),
    #[error(
        "may not list {what} in namespace {namespace}: bind the ServiceAccount to the Role imageregistry-<name> that registry-controller creates"
    )]
    Forbidden {
        what: &'static str,
        namespace: String,
    },
    #[error("cannot list {what} in namespace {namespace}")]
    Api {
        what: &'static str,
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

/// A started token server: listening, with its account and registry watches in sync.
pub struct AuthServer {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: TokenService,
    watches: Watches,
}

/// The watch tasks, stopped when the server is dropped.
struct Watches(Vec<JoinHandle<()>>);

impl Drop for Watches {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl AuthServer {
    /// Loads the keys, binds the listener and waits until the watches have listed once.
    pub async fn start(args: &AuthArgs, client: Client) -> Result<Self, StartError> {
        let signer = TokenSigner::from_files(
            &args.token_cert_file,
            &args.token_key_file,
            args.issuer.clone(),
            args.service.clone(),
            args.token_ttl,
        )?;
        let tls = match (&args.tls_cert_file, &args.tls_key_file) {
            (Some(cert), Some(key)) => Some(listener::tls_acceptor(cert, key)?),
            _ => {
                tracing::warn!("no TLS certificate given: serving tokens over plain HTTP");
                None
            }
        };
        let listener = TcpListener::bind(args.listen_addr)
            .await
            .map_err(|source| StartError::Listen {
                addr: args.listen_addr,
                source,
            })?;

        let accounts_api: Api<ImageRegistryAccount> =
            Api::namespaced(client.clone(), &args.namespace);
        let registry_api: Api<ImageRegistry> = Api::namespaced(client, &args.namespace);
        check_access(
            &accounts_api,
            &ListParams::default(),
            "ImageRegistryAccounts",
            ACCOUNTS_CRD,
            &args.namespace,
        )
        .await?;
        let list_by_name =
            ListParams::default().fields(&format!("metadata.name={}", args.registry_name));
        check_access(
            &registry_api,
            &list_by_name,
            "ImageRegistries",
            REGISTRIES_CRD,
            &args.namespace,
        )
        .await?;
        let (accounts, accounts_task) = watch(accounts_api, watcher::Config::default());
        let by_name =
            watcher::Config::default().fields(&format!("metadata.name={}", args.registry_name));
        let (registries, registry_task) = watch(registry_api, by_name);
        let watches = Watches(vec![accounts_task, registry_task]);
        wait_synced(&accounts, "ImageRegistryAccounts", &args.namespace).await?;
        wait_synced(&registries, "ImageRegistries", &args.namespace).await?;

        let service = TokenService::new(
            AccountDirectory::new(args.namespace.clone(), accounts),
            PolicySource::new(&args.namespace, &args.registry_name, registries),
            Arc::new(signer),
        );
        let addr = listener
            .local_addr()
            .map_or_else(|_| args.listen_addr.to_string(), |addr| addr.to_string());
        tracing::info!(
            %addr,
            tls = tls.is_some(),
            namespace = %args.namespace,
            registry = %args.registry_name,
            "token endpoint ready"
        );
        Ok(Self {
            listener,
            tls,
            service,
            watches,
        })
    }

    /// The address the endpoint listens on (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The token service itself (for in-process benchmarks).
    pub fn token_service(&self) -> TokenService {
        self.service.clone()
    }

    /// Serves until dropped; the watches stop with it.
    pub async fn serve(self) {
        let Self {
            listener,
            tls,
            service,
            watches,
        } = self;
        listener::serve(listener, tls, http::router(service)).await;
        drop(watches);
    }
}

const ACCOUNTS_CRD: &str = "imageregistryaccounts.registry.mgoltzsche.github.com";
const REGISTRIES_CRD: &str = "imageregistries.registry.mgoltzsche.github.com";

/// Lists once in the namespace (all this component may do) so a missing CRD or Role is reported
/// at once, with what to do, instead of as a watch that never syncs.
async fn check_access<K>(
    api: &Api<K>,
    params: &ListParams,
    what: &'static str,
    crd: &'static str,
    namespace: &str,
) -> Result<(), StartError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.list_metadata(&params.clone().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Err(StartError::MissingCrd(crd)),
        Err(kube::Error::Api(status)) if status.code == 403 => Err(StartError::Forbidden {
            what,
            namespace: namespace.to_owned(),
        }),
        Err(source) => Err(StartError::Api {
            what,
            namespace: namespace.to_owned(),
            source,
        }),
    }
}

/// A reflector store of `api`, kept current by a spawned task that logs watch errors.
fn watch<K>(api: Api<K>, config: watcher::Config) -> (Store<K>, JoinHandle<()>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    let task = tokio::spawn(drive(stream, K::kind(&()).into_owned()));
    (store, task)
}

async fn drive<K>(
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    kind: String,
) {
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        if let Err(err) = event {
            tracing::warn!(%kind, %err, "watch failed; retrying");
        }
    }
}

async fn wait_synced<K>(
    store: &Store<K>,
    what: &'static str,
    namespace: &str,
) -> Result<(), StartError>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    tokio::time::timeout(SYNC_TIMEOUT, store.wait_until_ready())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| StartError::NotSynced {
            what,
            namespace: namespace.to_owned(),
        })
}
