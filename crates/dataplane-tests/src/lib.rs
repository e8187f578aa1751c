//! Harness for wharf's real data-plane tests and for `cargo xtask bench data-plane`: a TLS
//! `docker-registry` upstream (optionally with htpasswd, token auth, or blobs redirected to a
//! second server), Debian's nginx running exactly the config `wharf_core::nginx::render` produced,
//! and the real pull clients `ctr` (with its own containerd) and `skopeo`, all on 127.0.0.1.
//!
//! Every process started here is stopped when its guard is dropped, also when a test panics.

pub mod clients;
pub mod http;
pub mod image;
pub mod mirror;
pub mod pki;
pub mod process;
pub mod registry;
pub mod scenario;
pub mod static_files;
pub mod tools;

pub use clients::{Containerd, Skopeo};
pub use image::{ImageLayout, MediaTypes, MultiArchImage, TestImage};
pub use mirror::{Mirror, MirrorOptions};
pub use pki::TestPki;
pub use process::Workdir;
pub use registry::{Upstream, UpstreamOptions};
pub use scenario::Scenario;
pub use static_files::StaticFileServer;
