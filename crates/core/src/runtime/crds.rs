//! Start-up check that the CRDs a controller serves are installed, with a message saying how to fix it.

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::{Client, Resource};

use super::RuntimeError;

/// The API resource of a kind, for [`require_crds`].
pub fn resource_of<K: Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<K>(&())
}

/// Fails with [`RuntimeError::MissingCrd`] naming the first CRD (e.g.
/// `registrymirrors.k8s.osp.tech`) the API server does not serve. It lists each kind (limit 1)
/// rather than reading CRDs, so it needs no permission beyond what the controller already has.
pub async fn require_crds(client: &Client, resources: &[ApiResource]) -> Result<(), RuntimeError> {
    for resource in resources {
        let name = format!("{}.{}", resource.plural, resource.group);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Err(RuntimeError::MissingCrd(name));
            }
            Err(source) => return Err(RuntimeError::CrdLookup { name, source }),
        }
    }
    Ok(())
}
