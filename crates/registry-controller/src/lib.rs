//! registry-controller: for every ImageRegistry, a private registry with token authentication —
//! StatefulSet (distribution registry + registry-auth), Service, PVC, certificates (cert-manager,
//! a given Secret, or self-signed and renewed), the registry config, and RBAC for registry-auth —
//! and the ImageRegistry's status.

pub mod certs;
pub mod context;
pub mod error;
pub mod reconcile;
pub mod settings;
pub mod status;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use wharf_core::crd::ImageRegistry;
use wharf_core::registry::{certificates, names};
use wharf_core::runtime::ControllerMetrics;

use crate::context::Context;
use crate::settings::Settings;

/// Runs the controller until the stream ends (it does not, unless the process stops).
pub async fn run(client: Client, settings: Settings, metrics: Arc<ControllerMetrics>) {
    let namespace = settings.watch_namespace.clone();
    let registries: Api<ImageRegistry> = api(&client, namespace.as_deref());
    let controller = Controller::new(registries, watcher::Config::default());
    let store = controller.store();
    let config = watcher::Config::default;
    controller
        .owns(api::<StatefulSet>(&client, namespace.as_deref()), config())
        .owns(api::<Service>(&client, namespace.as_deref()), config())
        .owns(
            api::<PersistentVolumeClaim>(&client, namespace.as_deref()),
            config(),
        )
        .owns(
            api::<ServiceAccount>(&client, namespace.as_deref()),
            config(),
        )
        .owns(api::<Role>(&client, namespace.as_deref()), config())
        .owns(api::<RoleBinding>(&client, namespace.as_deref()), config())
        // Certificate Secrets may be the user's or cert-manager's (not owned): map by name.
        .watches(
            api::<Secret>(&client, namespace.as_deref()),
            config(),
            move |secret| registries_using(&store, &secret),
        )
        .run(
            reconcile::reconcile,
            reconcile::error_policy,
            Arc::new(Context::new(client, settings, metrics)),
        )
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(%err, "controller event");
            }
        })
        .await;
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// The ImageRegistries of the Secret's namespace that read it (certificates, CA, config).
pub fn registries_using(
    store: &Store<ImageRegistry>,
    secret: &Secret,
) -> Vec<ObjectRef<ImageRegistry>> {
    let namespace = secret.namespace();
    let secret_name = secret.name_any();
    store
        .state()
        .iter()
        .filter(|registry| registry.namespace() == namespace)
        .filter(|registry| secret_names(registry).contains(&secret_name))
        .map(|registry| ObjectRef::from_obj(registry.as_ref()))
        .collect()
}

/// Every Secret an ImageRegistry's pods or certificates depend on.
pub fn secret_names(registry: &ImageRegistry) -> Vec<String> {
    let name = registry.name_any();
    vec![
        certificates::tls_plan(&name, &registry.spec).secret_name,
        certificates::token_plan(&name, &registry.spec).secret_name,
        names::tls_ca_secret_name(&name),
        names::config_secret_name(&name),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;
    use wharf_core::crd::{CertificateSource, ImageRegistrySpec};

    fn registry(name: &str, namespace: &str, tls_secret: Option<&str>) -> ImageRegistry {
        let mut registry = ImageRegistry::new(
            name,
            ImageRegistrySpec {
                tls: tls_secret.map(|secret| CertificateSource {
                    issuer_ref: None,
                    secret_name: Some(secret.into()),
                }),
                ..ImageRegistrySpec::default()
            },
        );
        registry.metadata.namespace = Some(namespace.into());
        registry
    }

    fn secret(name: &str, namespace: &str) -> Secret {
        let mut secret = Secret::default();
        secret.metadata.name = Some(name.into());
        secret.metadata.namespace = Some(namespace.into());
        secret
    }

    #[test]
    fn a_secret_change_reaches_the_registries_that_use_it() {
        let mut writer = Writer::default();
        writer.apply_watcher_event(&Event::Apply(registry("a", "ns", Some("shared-tls"))));
        writer.apply_watcher_event(&Event::Apply(registry("b", "ns", Some("shared-tls"))));
        writer.apply_watcher_event(&Event::Apply(registry("c", "other", Some("shared-tls"))));
        let store = writer.as_reader();
        let mut hit: Vec<String> = registries_using(&store, &secret("shared-tls", "ns"))
            .into_iter()
            .map(|r| r.name)
            .collect();
        hit.sort();
        assert_eq!(hit, ["a", "b"]);
        assert_eq!(
            registries_using(&store, &secret("a-auth-ca", "ns")).len(),
            1
        );
        assert!(registries_using(&store, &secret("unrelated", "ns")).is_empty());
    }
}
