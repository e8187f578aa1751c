//! Fields of a StatefulSet that Kubernetes will not update in place (selector, serviceName,
//! podManagementPolicy, volume claim templates): finding a change to them, and comparing claim
//! templates as the API server stores them (defaults added, quantities respelled).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::quantity::same_quantity;
use crate::apply::json_subset;

/// The first field of `live` that differs from `desired` although Kubernetes forbids changing
/// it on an existing StatefulSet (then it must be recreated). Quantities count as equal when
/// only their spelling differs.
pub fn immutable_change(desired: &StatefulSet, live: &StatefulSet) -> Option<&'static str> {
    let (Some(want), Some(have)) = (desired.spec.as_ref(), live.spec.as_ref()) else {
        return None;
    };
    if differs(&want.selector, &have.selector) {
        return Some("spec.selector");
    }
    if want.service_name != have.service_name {
        return Some("spec.serviceName");
    }
    if want.pod_management_policy.is_some()
        && want.pod_management_policy != have.pod_management_policy
    {
        return Some("spec.podManagementPolicy");
    }
    let mut want_claims = want.volume_claim_templates.clone().unwrap_or_default();
    let have_claims: Vec<_> = have
        .volume_claim_templates
        .iter()
        .flatten()
        .zip(want_claims.iter().map(Some).chain(std::iter::repeat(None)))
        .map(|(live, desired)| comparable_claim(live, desired))
        .collect();
    align_claim_quantities(&mut want_claims, &have_claims);
    // Both ways: a field the user removed from the template is a change as well.
    if differs(&want_claims, &have_claims) || differs(&have_claims, &want_claims) {
        return Some("spec.volumeClaimTemplates");
    }
    None
}

/// `live` without what the API server adds to a claim template by itself (status, metadata
/// beyond name/labels/annotations, the default volumeMode).
fn comparable_claim(
    live: &PersistentVolumeClaim,
    desired: Option<&PersistentVolumeClaim>,
) -> PersistentVolumeClaim {
    let mut spec = live.spec.clone();
    let desired_mode = desired
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.volume_mode.as_ref());
    if let Some(spec) = spec.as_mut()
        && desired_mode.is_none()
        && spec.volume_mode.as_deref() == Some("Filesystem")
    {
        spec.volume_mode = None;
    }
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: live.metadata.name.clone(),
            labels: live.metadata.labels.clone().filter(|l| !l.is_empty()),
            annotations: live.metadata.annotations.clone().filter(|a| !a.is_empty()),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// Rewrites the claim quantities of `desired` in the API server's spelling found in `live`
/// wherever both denote the same amount, so an unchanged template compares equal.
pub fn align_statefulset_quantities(desired: &mut StatefulSet, live: &StatefulSet) {
    if let (Some(want), Some(have)) = (desired.spec.as_mut(), live.spec.as_ref())
        && let (Some(want), Some(have)) = (
            want.volume_claim_templates.as_mut(),
            have.volume_claim_templates.as_ref(),
        )
    {
        align_claim_quantities(want, have);
    }
}

fn align_claim_quantities(desired: &mut [PersistentVolumeClaim], live: &[PersistentVolumeClaim]) {
    for (want, have) in desired.iter_mut().zip(live) {
        let want_resources = want.spec.as_mut().and_then(|s| s.resources.as_mut());
        let have_resources = have.spec.as_ref().and_then(|s| s.resources.as_ref());
        let (Some(want_resources), Some(have_resources)) = (want_resources, have_resources) else {
            continue;
        };
        for (want_map, have_map) in [
            (
                want_resources.requests.as_mut(),
                have_resources.requests.as_ref(),
            ),
            (
                want_resources.limits.as_mut(),
                have_resources.limits.as_ref(),
            ),
        ] {
            let (Some(want_map), Some(have_map)) = (want_map, have_map) else {
                continue;
            };
            for (key, quantity) in want_map.iter_mut() {
                if let Some(live_quantity) = have_map.get(key)
                    && same_quantity(&quantity.0, &live_quantity.0)
                {
                    quantity.0.clone_from(&live_quantity.0);
                }
            }
        }
    }
}

/// Whether `live` lacks something `desired` sets (see [`json_subset`]).
fn differs<T: serde::Serialize>(desired: &T, live: &T) -> bool {
    match (serde_json::to_value(desired), serde_json::to_value(live)) {
        (Ok(desired), Ok(live)) => !json_subset(&desired, &live),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;
    use crate::mirror::build_statefulset;
    use crate::mirror::test_support::{settings, statefulset, valid_mirror};

    fn first_claim(sts: &mut StatefulSet) -> &mut PersistentVolumeClaim {
        &mut sts
            .spec
            .as_mut()
            .expect("spec")
            .volume_claim_templates
            .as_mut()
            .expect("claims")[0]
    }

    #[test]
    fn immutable_changes_are_found() {
        let desired = statefulset();
        assert_eq!(immutable_change(&desired, &desired), None);
        let mut live = desired.clone();
        live.spec.as_mut().expect("spec").service_name = Some("other".into());
        assert_eq!(immutable_change(&desired, &live), Some("spec.serviceName"));

        let mut live = desired.clone();
        live.spec.as_mut().expect("spec").selector.match_labels =
            Some(BTreeMap::from([("app".into(), "docker-registry".into())]));
        assert_eq!(immutable_change(&desired, &live), Some("spec.selector"));

        let mut live = desired.clone();
        let claim = first_claim(&mut live);
        claim.spec.as_mut().expect("spec").storage_class_name = Some("slow".into());
        assert_eq!(
            immutable_change(&desired, &live),
            Some("spec.volumeClaimTemplates"),
            "a storage class removed from the template is a change"
        );

        let mut live = desired.clone();
        let claim = first_claim(&mut live);
        claim.spec.as_mut().expect("spec").volume_mode = Some("Filesystem".into());
        claim.status = Some(Default::default());
        assert_eq!(
            immutable_change(&desired, &live),
            None,
            "server defaults are no change"
        );
    }

    #[test]
    fn respelled_quantities_are_no_change() {
        let mut mirror = valid_mirror("docker");
        let requests = mirror
            .claim_template
            .spec
            .as_mut()
            .and_then(|s| s.resources.as_mut())
            .and_then(|r| r.requests.as_mut())
            .expect("requests");
        requests.insert("storage".into(), Quantity("1.5Gi".into()));
        let mut desired = build_statefulset(&mirror, &settings(), "t", "h");
        let mut live = desired.clone();
        let live_requests = first_claim(&mut live)
            .spec
            .as_mut()
            .and_then(|s| s.resources.as_mut())
            .and_then(|r| r.requests.as_mut())
            .expect("requests");
        live_requests.insert("storage".into(), Quantity("1536Mi".into()));
        assert_eq!(immutable_change(&desired, &live), None);
        align_statefulset_quantities(&mut desired, &live);
        assert!(crate::apply::is_applied(&desired, &live, "wharf"));
    }
}
