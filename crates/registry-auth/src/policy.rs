//! The access policy in force: the watched ImageRegistry's `spec.auth`, compiled once per
//! resourceVersion. Without the ImageRegistry (not yet seen, or deleted) the default applies:
//! accounts get what their accessMode allows, anonymous clients nothing.

use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use wharf_core::crd::ImageRegistry;
use wharf_core::registry::access::AccessPolicy;

/// A compiled policy and the resourceVersion it was compiled from.
type Compiled = Option<(String, Arc<AccessPolicy>)>;

/// Hands out the compiled policy of one ImageRegistry.
#[derive(Clone)]
pub struct PolicySource {
    reference: ObjectRef<ImageRegistry>,
    store: Store<ImageRegistry>,
    compiled: Arc<Mutex<Compiled>>,
}

impl PolicySource {
    pub fn new(namespace: &str, name: &str, store: Store<ImageRegistry>) -> Self {
        Self {
            reference: ObjectRef::new(name).within(namespace),
            store,
            compiled: Arc::default(),
        }
    }

    /// The policy of the ImageRegistry as last seen.
    pub fn current(&self) -> Arc<AccessPolicy> {
        let Some(registry) = self.store.get(&self.reference) else {
            return Arc::new(AccessPolicy::default());
        };
        let version = registry.resource_version().unwrap_or_default();
        if let Ok(compiled) = self.compiled.lock()
            && let Some((seen, policy)) = compiled.as_ref()
            && *seen == version
        {
            return policy.clone();
        }
        let (policy, errors) = AccessPolicy::compile(registry.spec.auth.as_ref());
        for error in &errors {
            tracing::error!(
                registry = %self.reference,
                %error,
                "access rule left out; rules grant nothing until it is fixed"
            );
        }
        let policy = Arc::new(policy);
        if let Ok(mut compiled) = self.compiled.lock() {
            *compiled = Some((version, policy.clone()));
        }
        policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;
    use wharf_core::crd::{AuthSpec, ImageRegistrySpec, RegistryAction};
    use wharf_core::registry::access::Subject;

    fn registry(anonymous_pull: bool, version: &str) -> ImageRegistry {
        let mut registry = ImageRegistry::new(
            "registry",
            ImageRegistrySpec {
                auth: Some(AuthSpec {
                    anonymous_pull: Some(anonymous_pull),
                    ..AuthSpec::default()
                }),
                ..ImageRegistrySpec::default()
            },
        );
        registry.metadata.namespace = Some("ns".into());
        registry.metadata.resource_version = Some(version.into());
        registry
    }

    fn anonymous_may_pull(source: &PolicySource) -> bool {
        let pull = BTreeSet::from([RegistryAction::Pull]);
        !source
            .current()
            .grant(Subject::Anonymous, "repo", &pull)
            .granted
            .is_empty()
    }

    #[test]
    fn follows_the_registry_and_defaults_when_it_is_gone() {
        let mut writer = Writer::default();
        let source = PolicySource::new("ns", "registry", writer.as_reader());
        assert!(
            !anonymous_may_pull(&source),
            "deny before the registry is seen"
        );

        writer.apply_watcher_event(&Event::Apply(registry(true, "1")));
        assert!(anonymous_may_pull(&source));
        writer.apply_watcher_event(&Event::Apply(registry(false, "2")));
        assert!(
            !anonymous_may_pull(&source),
            "recompiled on a new resourceVersion"
        );
        writer.apply_watcher_event(&Event::Apply(registry(true, "3")));
        writer.apply_watcher_event(&Event::Delete(registry(true, "3")));
        assert!(!anonymous_may_pull(&source));
    }
}
