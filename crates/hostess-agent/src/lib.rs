//! hostess-agent: points one node's container runtimes at a registry mirror — the hosts-file
//! line (hostess mode), Docker's and CRI-O's CA directories, containerd's `hosts.toml` and
//! CRI-O's registries drop-in — following the mirror's Service and CA.

pub mod agent;
pub mod ca;
pub mod containerd;
pub mod crio;
pub mod docker;
pub mod files;
pub mod hosts;
pub mod node;
pub mod registry_host;
pub mod service;
pub mod settings;

pub use agent::{AgentError, run};
pub use settings::{AddressingScheme, Config, Settings, SettingsError};
