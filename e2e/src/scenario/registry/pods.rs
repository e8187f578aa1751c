//! Pods of the pushed image: refused without the pull Secret, running with it.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};

use super::login::{Login, is_auth_refusal, short};
use super::objects::create;
use super::{Narrator, POD_TIMEOUT, PrivateRegistry};
use crate::scenario::wait_until;

impl PrivateRegistry {
    /// Runs a pod of `image` without any pull Secret: the kubelet must be refused. The refusal.
    pub async fn refused_pull(&self, image: &str, narrator: &Narrator) -> String {
        let pod = "without-pull-secret";
        narrator.step(format!(
            "pod {pod}: {image} without imagePullSecrets — the kubelet must be refused"
        ));
        create(&self.client, &self.namespace, pod_object(pod, image, None)).await;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let refused = wait_until(&pods, pod, POD_TIMEOUT, "refused its image", |p| {
            waiting(p).is_some_and(|(reason, _)| {
                matches!(reason.as_str(), "ErrImagePull" | "ImagePullBackOff")
            }) || phase(p) == "Running"
        })
        .await;
        assert_ne!(
            phase(&refused),
            "Running",
            "pod {pod} ran {image} without a pull Secret: the registry let an anonymous client pull"
        );
        let (_, message) = waiting(&refused).unwrap_or_default();
        // The refusal must be about rights: a TLS or name-resolution error would prove nothing.
        assert!(
            is_auth_refusal(&message),
            "pod {pod} could not pull {image}, but not because credentials were missing: {message}"
        );
        let _deleted = pods.delete(pod, &DeleteParams::default()).await;
        narrator.detail(format!("refused: {}", short(&message)));
        message
    }

    /// Runs a pod of `image` with `login`'s Secret as its imagePullSecret and waits until it
    /// runs the manifest `digest` (the reference resolved anew: `imagePullPolicy: Always`). The
    /// pod and how long it took.
    pub async fn run(
        &self,
        image: &str,
        digest: &str,
        login: &Login,
        narrator: &Narrator,
    ) -> (String, Duration) {
        let pod = "with-pull-secret";
        narrator.step(format!(
            "pod {pod}: {image} with imagePullSecrets: [{}]",
            login.secret
        ));
        let started = Instant::now();
        create(
            &self.client,
            &self.namespace,
            pod_object(pod, image, Some(&login.secret)),
        )
        .await;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let running = wait_until(&pods, pod, POD_TIMEOUT, "Running", |p| {
            phase(p) == "Running"
        })
        .await;
        let took = started.elapsed();
        let image_id = running
            .status
            .and_then(|s| s.container_statuses)
            .and_then(|c| c.into_iter().next())
            .map(|c| c.image_id)
            .unwrap_or_default();
        // The node may name the digest after another repository that held it first; the
        // digest itself is what matters.
        assert!(
            image_id.ends_with(&format!("@{digest}")),
            "pod {pod} runs {image_id}, not the pushed manifest {digest}"
        );
        narrator.detail(format!("running {digest} after {:.1}s", took.as_secs_f64()));
        (pod.to_owned(), took)
    }
}

fn pod_object(name: &str, image: &str, pull_secret: Option<&str>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "app", "image": image, "imagePullPolicy": "Always",
                "command": ["sh", "-c", "echo pulled from the private registry; exec sleep 3600"],
                "securityContext": {
                    "runAsNonRoot": true,
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]},
                },
            }],
        },
    });
    if let Some(secret) = pull_secret {
        pod["spec"]["imagePullSecrets"] = json!([{"name": secret}]);
    }
    pod
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The first container's waiting reason and message.
fn waiting(pod: &Pod) -> Option<(String, String)> {
    let state = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .as_ref()?;
    Some((
        state.reason.clone().unwrap_or_default(),
        state.message.clone().unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_pull_always_and_name_their_secret() {
        let pod = pod_object("p", "r.ns.wharf.test/a:1", Some("s"));
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(pod["spec"]["imagePullSecrets"], json!([{"name": "s"}]));
        assert!(
            pod_object("p", "i", None)["spec"]
                .get("imagePullSecrets")
                .is_none()
        );
    }
}
