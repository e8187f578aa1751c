//! Each controller of the chart, run as a process under the chart's own ServiceAccount (an
//! impersonating kubeconfig) with the environment the chart's Deployment gives it and leader
//! election on, fully reconciles its kinds — children, status, updates, deletion — without one
//! refused request, and is refused what lies outside its RBAC. The same holds for what the
//! controllers start: hostess-agent under the agent ServiceAccount of the chart, registry-auth
//! under the ServiceAccount registry-controller makes for each registry.
//!
//! The chart is installed once per test as its own release with `replicas: 0`, and every
//! namespace of a test gets a zero-pod ResourceQuota: the local node may be up with wharf's
//! images imported, and nothing a test makes may run (or reconcile other tests' objects) there.
//! So mirrors and registries report Ready=False for want of pods, which is what is asserted.

#[path = "chart_rbac/mirror.rs"]
mod mirror;
#[path = "chart_rbac/pod.rs"]
mod pod;
#[path = "chart_rbac/registry.rs"]
mod registry;
#[path = "chart_rbac/rotator.rs"]
mod rotator;
#[path = "chart_rbac/support.rs"]
mod support;
