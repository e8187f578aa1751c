//! mirror-controller: for every RegistryMirror, an nginx pull-through cache (StatefulSet,
//! Services, a config Secret with the nginx config and the generated certificate) and a node
//! agent DaemonSet pointing the nodes at it; in services mode also the mirror's line in the
//! imageswap webhook's ConfigMap.
//!
//! [`run`] is the whole controller, so tests and benchmarks run it in-process; `main.rs` only
//! adds the process runtime (logs, health, metrics, leader election) and `--map-check`.

mod cache;
mod certificates;
mod children;
mod context;
mod controller;
mod error;
mod imageswap;
mod inputs;
mod reconcile;
pub mod settings;
mod status;
mod stored;

pub use context::COMPONENT;
pub use controller::{StartError, run};
pub use imageswap::{MapCheck, map_check};
pub use settings::Settings;
pub use status::SYNCED;
