//! The RegistryMirror's status: observedGeneration, clusterIP, the masquerade host in effect,
//! and the `Synced` and `Ready` conditions — written only when it changes, with an Event when a
//! new failure appears.

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::{Resource, ResourceExt};
use wharf_core::apply::apply_status;
use wharf_core::conditions::{ConditionUpdate, READY, set_condition};
use wharf_core::crd::{RegistryMirror, RegistryMirrorStatus};
use wharf_core::mirror::names::{daemonset_name, statefulset_name};

use crate::context::{Context, Stores};
use crate::error::{Error, Failure};
use crate::stored::StoredMirror;

/// Condition: every child object is applied as the spec asks.
pub const SYNCED: &str = "Synced";

/// What a successful sync established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synced {
    pub cluster_ip: Option<String>,
    pub masquerade_host: String,
}

/// How far the mirror's pods are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodCounts {
    pub mirror_ready: i32,
    pub mirror_wanted: i32,
    pub agents_ready: i32,
    pub agents_wanted: i32,
}

impl PodCounts {
    /// Ready: at least one mirror pod serves, and every node's agent is ready.
    pub fn ready(&self) -> bool {
        self.mirror_ready >= 1 && self.agents_ready >= self.agents_wanted
    }

    /// The node agents are named once a mirror pod serves: until then their count would only
    /// change the message (and cost a status write) on every node added.
    fn message(&self) -> String {
        let mirror = format!(
            "{}/{} mirror pods ready",
            self.mirror_ready, self.mirror_wanted
        );
        if self.mirror_ready == 0 {
            return mirror;
        }
        format!(
            "{mirror}; node agents ready on {}/{} nodes",
            self.agents_ready, self.agents_wanted
        )
    }
}

/// The status the mirror should have after `outcome`, starting from its current one.
pub fn desired_status(
    generation: Option<i64>,
    current: Option<&RegistryMirrorStatus>,
    outcome: &Result<Synced, Failure>,
    pods: PodCounts,
    now: Timestamp,
) -> RegistryMirrorStatus {
    let mut status = current.cloned().unwrap_or_default();
    status.observed_generation = generation;
    match outcome {
        Ok(synced) => {
            if synced.cluster_ip.is_some() {
                status.cluster_ip.clone_from(&synced.cluster_ip);
            }
            status.masquerade_url = Some(synced.masquerade_host.clone());
            set_condition(
                &mut status.conditions,
                ConditionUpdate::ok(SYNCED, "Synced", "every child object is applied")
                    .at_generation(generation),
                now,
            );
            let update = if pods.ready() {
                ConditionUpdate::ok(READY, "MirrorReady", pods.message())
            } else {
                ConditionUpdate::failed(READY, "PodsNotReady", pods.message())
            };
            set_condition(
                &mut status.conditions,
                update.at_generation(generation),
                now,
            );
        }
        Err(failure) => {
            let message = failure.to_string();
            for type_ in [SYNCED, READY] {
                set_condition(
                    &mut status.conditions,
                    ConditionUpdate::failed(type_, failure.reason(), message.clone())
                        .at_generation(generation),
                    now,
                );
            }
        }
    }
    status
}

/// Pod counts from the cached StatefulSet and DaemonSet.
pub fn pod_counts(ctx: &Context, mirror: &str) -> PodCounts {
    let namespace = &ctx.settings.namespace;
    let statefulset: Option<std::sync::Arc<StatefulSet>> = Stores::get(
        &ctx.stores.statefulsets,
        namespace,
        &statefulset_name(mirror),
    );
    let daemonset: Option<std::sync::Arc<DaemonSet>> =
        Stores::get(&ctx.stores.daemonsets, namespace, &daemonset_name(mirror));
    let sts_status = statefulset.as_ref().and_then(|s| s.status.as_ref());
    let ds_status = daemonset.as_ref().and_then(|d| d.status.as_ref());
    PodCounts {
        mirror_ready: sts_status.and_then(|s| s.ready_replicas).unwrap_or(0),
        // What the StatefulSet is applied with, not what the cache may not hold yet.
        mirror_wanted: wharf_core::mirror::REPLICAS,
        agents_ready: ds_status.map_or(0, |s| s.number_ready),
        agents_wanted: ds_status.map_or(0, |s| s.desired_number_scheduled),
    }
}

/// Writes the status when it differs from the live one, and publishes a Warning Event when a
/// failure is new (not the reason the conditions already carry).
pub async fn write(
    ctx: &Context,
    mirror: &StoredMirror,
    outcome: &Result<Synced, Failure>,
) -> Result<(), Error> {
    let name = mirror.name_any();
    let current = ctx.verified.status_of(mirror);
    let pods = pod_counts(ctx, &name);
    let status = desired_status(
        mirror.meta().generation,
        current.as_ref(),
        outcome,
        pods,
        Timestamp::now(),
    );
    if let Err(failure) = outcome {
        let known = current
            .iter()
            .flat_map(|s| &s.conditions)
            .any(|c| c.type_ == SYNCED && c.status == "False" && c.reason == failure.reason());
        if !known && ctx.first_warning(&name, failure.reason()) {
            ctx.warn(
                mirror.object_ref(&()),
                failure.reason(),
                failure.to_string(),
            )
            .await;
        }
    } else {
        ctx.clear_warning(&name);
    }
    if current.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<RegistryMirror> = Api::all(ctx.client.clone());
    ctx.metrics.api_write("RegistryMirror");
    match apply_status(&api, &ctx.manager, &name, &status).await {
        Ok(_) => {
            ctx.verified.record_status(&name, status);
            Ok(())
        }
        // Before CRD validation ratcheting (Kubernetes 1.30) a status cannot be written while
        // the stored spec breaks the schema (it predates it): the Event has told the user.
        Err(kube::Error::Api(response))
            if response.code == 422 && matches!(outcome, Err(Failure::InvalidSpec { .. })) =>
        {
            tracing::info!(
                mirror = %mirror.name_any(),
                "the status of a mirror whose stored spec breaks the schema cannot be written; its Event says what to fix"
            );
            Ok(())
        }
        Err(err) => Err(Error::kube(format!(
            "writing the status of RegistryMirror {}",
            mirror.name_any()
        ))(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use wharf_core::mirror::SpecProblem;

    const GENERATION: Option<i64> = Some(3);

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("time")
    }

    fn synced() -> Result<Synced, Failure> {
        Ok(Synced {
            cluster_ip: Some("10.96.0.9".into()),
            masquerade_host: "mirror-hub.docker.io".into(),
        })
    }

    fn condition<'a>(status: &'a RegistryMirrorStatus, type_: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition")
    }

    #[test]
    fn a_synced_mirror_without_ready_pods_is_not_ready() {
        let pods = PodCounts {
            mirror_wanted: 2,
            ..Default::default()
        };
        let status = desired_status(GENERATION, None, &synced(), pods, at(10));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.cluster_ip.as_deref(), Some("10.96.0.9"));
        assert_eq!(
            status.masquerade_url.as_deref(),
            Some("mirror-hub.docker.io")
        );
        assert_eq!(condition(&status, SYNCED).status, "True");
        let ready = condition(&status, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "PodsNotReady")
        );
        assert_eq!(ready.message, "0/2 mirror pods ready");
        assert_eq!(ready.observed_generation, Some(3));
    }

    #[test]
    fn ready_pods_make_it_ready_and_an_unchanged_outcome_changes_nothing() {
        let pods = PodCounts {
            mirror_ready: 1,
            mirror_wanted: 2,
            agents_ready: 3,
            agents_wanted: 3,
        };
        let status = desired_status(GENERATION, None, &synced(), pods, at(10));
        assert_eq!(condition(&status, READY).status, "True");
        assert_eq!(
            condition(&status, READY).message,
            "1/2 mirror pods ready; node agents ready on 3/3 nodes"
        );
        assert_eq!(
            desired_status(GENERATION, Some(&status), &synced(), pods, at(99)),
            status,
            "same status, same times"
        );
    }

    #[test]
    fn a_failure_keeps_what_is_known_and_names_the_field() {
        let before = desired_status(GENERATION, None, &synced(), PodCounts::default(), at(10));
        let failure = Err(Failure::InvalidSpec {
            problems: vec![SpecProblem {
                field: "spec.upstreamUrl",
                message: "\"x/y\" has a path".into(),
            }],
        });
        let status = desired_status(
            GENERATION,
            Some(&before),
            &failure,
            PodCounts::default(),
            at(20),
        );
        assert_eq!(status.cluster_ip.as_deref(), Some("10.96.0.9"));
        assert_eq!(
            status.masquerade_url.as_deref(),
            Some("mirror-hub.docker.io")
        );
        let synced = condition(&status, SYNCED);
        assert_eq!(
            (synced.status.as_str(), synced.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert!(synced.message.starts_with("spec.upstreamUrl:"));
        assert_eq!(condition(&status, READY).reason, "InvalidSpec");
        assert_eq!(synced.last_transition_time.0, at(20));
    }

    #[test]
    fn agents_must_all_be_ready() {
        let pods = PodCounts {
            mirror_ready: 2,
            mirror_wanted: 2,
            agents_ready: 2,
            agents_wanted: 3,
        };
        assert!(!pods.ready());
    }
}
