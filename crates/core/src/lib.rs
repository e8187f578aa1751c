//! wharf-core: the library every wharf binary shares — CRD types, names, pure builders,
//! renderers, certificate helpers and the controller runtime.

pub mod agent;
pub mod apply;
pub mod conditions;
pub mod crd;
pub mod duration;
pub mod mirror;
pub mod nginx;
pub mod owned_fields;
pub mod registry;
pub mod runtime;
pub mod tls;
