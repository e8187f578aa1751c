//! The private registry of an `ImageRegistry`: names, labels, the registry-controller ↔
//! registry-auth contract, access-rule evaluation, the distribution config and the pure builders
//! of every child object.

pub mod access;
pub mod auth_env;
pub mod certificates;
pub mod config;
pub mod labels;
pub mod names;
pub mod rbac;
pub mod workload;
