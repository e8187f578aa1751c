//! ServiceAccount, Role and RoleBinding `imageregistry-<name>`: registry-auth may read the
//! accounts of its own namespace and its ImageRegistry, and nothing else.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::crd::REGISTRY_GROUP;

use super::names;

/// The three RBAC objects of one registry.
#[derive(Clone, Debug, PartialEq)]
pub struct RbacObjects {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
}

/// Builds the RBAC objects of ImageRegistry `name` in `namespace`.
pub fn build(
    name: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    owner: Option<OwnerReference>,
) -> RbacObjects {
    let rbac_name = names::rbac_name(name);
    let metadata = ObjectMeta {
        name: Some(rbac_name.clone()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels.clone()),
        owner_references: owner.map(|owner| vec![owner]),
        ..ObjectMeta::default()
    };
    let read = |resource: &str, names: Option<Vec<String>>| PolicyRule {
        api_groups: Some(vec![REGISTRY_GROUP.to_owned()]),
        resources: Some(vec![resource.to_owned()]),
        resource_names: names,
        verbs: ["get", "list", "watch"].map(str::to_owned).to_vec(),
        ..PolicyRule::default()
    };
    RbacObjects {
        service_account: ServiceAccount {
            metadata: metadata.clone(),
            automount_service_account_token: Some(true),
            ..ServiceAccount::default()
        },
        role: Role {
            metadata: metadata.clone(),
            rules: Some(vec![
                read("imageregistryaccounts", None),
                read("imageregistries", Some(vec![name.to_owned()])),
            ]),
        },
        role_binding: RoleBinding {
            metadata,
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".to_owned(),
                kind: "Role".to_owned(),
                name: rbac_name.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".to_owned(),
                name: rbac_name,
                namespace: Some(namespace.to_owned()),
                ..Subject::default()
            }]),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_only_reading_accounts_and_its_own_registry() {
        let objects = build("registry", "infra", &BTreeMap::new(), None);
        assert_eq!(
            objects.service_account.metadata.name.as_deref(),
            Some("imageregistry-registry")
        );
        let rules = objects.role.rules.expect("rules");
        assert_eq!(rules.len(), 2);
        for rule in &rules {
            assert_eq!(rule.verbs, ["get", "list", "watch"]);
            assert_eq!(
                rule.api_groups.as_deref(),
                Some(&[REGISTRY_GROUP.to_owned()][..])
            );
        }
        assert_eq!(
            rules[1].resource_names.as_deref(),
            Some(&["registry".to_owned()][..])
        );
        let subject = &objects.role_binding.subjects.expect("subjects")[0];
        assert_eq!(subject.name, "imageregistry-registry");
        assert_eq!(subject.namespace.as_deref(), Some("infra"));
        assert_eq!(objects.role_binding.role_ref.name, "imageregistry-registry");
    }
}
