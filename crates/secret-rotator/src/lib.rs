//! secret-rotator: keeps the Secrets of ImagePushSecrets and ImagePullSecrets holding a registry
//! login whose password rotates by itself, and owns the lifecycle of their ImageRegistryAccounts.
//!
//! Per CR: find the registry (`spec.registryRef`, else the default one); once it is Ready, create
//! an account `<push|pull>.<namespace>.<name>.<rotation>` in its namespace (bcrypt hash of a
//! CSPRNG password, a TTL) and write the Secret `<name>-image-push-secret` /
//! `<name>-image-pull-secret`. A new password every rotation interval; old accounts stay valid
//! until their TTL and are deleted then. Editing or deleting the Secret forces a rotation; a new
//! registry hostname or CA only rewrites the Secret. Deleting the CR deletes its own accounts.

pub mod account;
mod account_api;
mod controller;
pub mod error;
pub mod kind;
mod memory;
pub mod names;
pub mod password;
mod reconcile;
pub mod registry;
mod report;
pub mod schedule;
pub mod secret;
pub mod settings;
pub mod status;

use std::sync::Arc;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use wharf_core::crd::{ImagePullSecret, ImagePushSecret, ImageRegistry, ImageRegistryAccount};
use wharf_core::runtime::ControllerMetrics;

use memory::{RecentAccounts, UnwrittenLogins, WrittenStatuses};
pub use reconcile::FINALIZER;
pub use settings::{RotatorArgs, Settings, SettingsError};

/// Component name: field manager `wharf-secret-rotator`, metrics label, Event reporter.
pub const FIELD_MANAGER_COMPONENT: &str = "secret-rotator";

/// What every reconcile of one controller shares.
pub(crate) struct Context {
    client: Client,
    settings: Arc<Settings>,
    /// Every ImageRegistry, kept by a watch.
    registries: Store<ImageRegistry>,
    /// The accounts this controller's kind created, kept by a watch.
    accounts: Store<ImageRegistryAccount>,
    recorder: Recorder,
    metrics: Arc<ControllerMetrics>,
    manager: String,
    /// Accounts this process created lately, which the store may not show yet.
    recent_accounts: RecentAccounts,
    /// The status last written per CR, which the CR cache may not show yet.
    written_statuses: WrittenStatuses,
    /// Logins whose Secret could not be written, reused by the next attempt.
    unwritten_logins: UnwrittenLogins,
}

/// Runs the ImagePushSecret and ImagePullSecret controllers until their watches end (in practice,
/// until the future is dropped).
pub async fn run(client: Client, settings: Settings, metrics: Arc<ControllerMetrics>) {
    let settings = Arc::new(settings);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: wharf_core::apply::field_manager(FIELD_MANAGER_COMPONENT),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    futures::join!(
        controller::run_kind::<ImagePushSecret>(
            client.clone(),
            settings.clone(),
            metrics.clone(),
            recorder.clone(),
        ),
        controller::run_kind::<ImagePullSecret>(client, settings, metrics, recorder),
    );
}
