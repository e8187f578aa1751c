//! The logins the rotator writes, and what they may do: a push from the node with the push
//! Secret's login (skopeo, trusting the Secret's `ca.crt`) and a push with the pull login, refused.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::{Value, json};
use wharf_core::crd::{ImagePullSecret, ImagePushSecret};

use super::objects::{create, ready};
use super::{Narrator, PrivateRegistry, SECRET_TIMEOUT, skopeo};
use crate::scenario::wait_until;

/// A login the rotator wrote: the Secret and what it holds.
#[derive(Clone)]
pub struct Login {
    pub secret: String,
    pub username: String,
    pub password: String,
    /// The registry's CA (`ca.crt` of the Secret).
    pub ca_pem: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("secret", &self.secret)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The push and the pull login of one registry.
#[derive(Clone, Debug)]
pub struct Logins {
    pub push: Login,
    pub pull: Login,
}

impl PrivateRegistry {
    /// Creates ImagePushSecret `push` and ImagePullSecret `pull` for this registry and waits
    /// until the rotator has written their Secrets and marked them Ready.
    pub async fn create_logins(&self, push: &str, pull: &str, narrator: &Narrator) -> Logins {
        narrator.step(format!(
            "creating ImagePushSecret {push} and ImagePullSecret {pull} for ImageRegistry {}",
            self.name
        ));
        let registry_ref = json!({"registryRef": {"name": self.name}});
        for (kind, name) in [("ImagePushSecret", push), ("ImagePullSecret", pull)] {
            create(
                &self.client,
                &self.namespace,
                json!({
                    "apiVersion": "registry.mgoltzsche.github.com/v1alpha1", "kind": kind,
                    "metadata": {"name": name}, "spec": registry_ref,
                }),
            )
            .await;
        }
        let pushes: Api<ImagePushSecret> = Api::namespaced(self.client.clone(), &self.namespace);
        let pulls: Api<ImagePullSecret> = Api::namespaced(self.client.clone(), &self.namespace);
        wait_until(&pushes, push, SECRET_TIMEOUT, "Ready", |s| {
            s.status.as_ref().is_some_and(|s| ready(&s.conditions))
        })
        .await;
        wait_until(&pulls, pull, SECRET_TIMEOUT, "Ready", |s| {
            s.status.as_ref().is_some_and(|s| ready(&s.conditions))
        })
        .await;
        let push = self
            .login(&format!("{push}-image-push-secret"), "config.json")
            .await;
        let pull = self
            .login(&format!("{pull}-image-pull-secret"), ".dockerconfigjson")
            .await;
        for login in [&push, &pull] {
            narrator.detail(format!(
                "Secret {} logs in as {} to {}",
                login.secret, login.username, self.hostname
            ));
        }
        Logins { push, pull }
    }

    /// Reads Secret `secret` and decodes the login for this registry from its Docker config.
    async fn login(&self, secret: &str, config_key: &str) -> Login {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let found = wait_until(&secrets, secret, SECRET_TIMEOUT, "written", |s| {
            s.data.as_ref().is_some_and(|d| d.contains_key(config_key))
        })
        .await;
        let data = found.data.unwrap_or_default();
        let text = |key: &str| {
            data.get(key)
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                .unwrap_or_default()
        };
        let (username, password) = decode_login(&text(config_key), &self.hostname)
            .unwrap_or_else(|problem| panic!("Secret {secret} key {config_key}: {problem}"));
        Login {
            secret: secret.to_owned(),
            username,
            password,
            ca_pem: text("ca.crt"),
        }
    }

    /// Pushes `archive` (an OCI archive) to `image` from this machine with `login`; the time
    /// taken and the digest of the pushed manifest.
    pub fn push(
        &self,
        login: &Login,
        archive: &Path,
        image: &str,
        narrator: &Narrator,
    ) -> (Duration, String) {
        narrator.step(format!(
            "pushing {} from the node with {}'s login: skopeo copy oci-archive:… docker://{image}",
            archive.display(),
            login.secret
        ));
        let started = Instant::now();
        let digest = skopeo::copy(&self.work_dir, login, archive, image).unwrap_or_else(|error| {
            panic!(
                "pushing {image} with {}'s login failed: {error}",
                login.secret
            )
        });
        let took = started.elapsed();
        narrator.detail(format!("pushed {digest} in {:.1}s", took.as_secs_f64()));
        (took, digest)
    }

    /// Tries to push with a pull login, which must be refused; the refusal.
    pub fn refused_push(&self, login: &Login, archive: &Path, narrator: &Narrator) -> String {
        let image = self.image("wharf-demo/not-allowed:1");
        narrator.step(format!(
            "a pull login cannot push: skopeo copy … docker://{image} with {}'s login",
            login.secret
        ));
        match skopeo::copy(&self.work_dir, login, archive, &image) {
            Ok(_) => panic!(
                "the registry accepted a push from pull-only login {} ({}) to {image}",
                login.secret, login.username
            ),
            Err(error) => {
                let reason = skopeo::last_line(&error);
                assert!(
                    is_auth_refusal(&reason),
                    "the push with the pull login failed, but not for lack of rights: {error}"
                );
                narrator.detail(format!("refused: {reason}"));
                reason
            }
        }
    }
}

/// The username and password for `hostname` in a Docker config JSON.
pub(super) fn decode_login(config: &str, hostname: &str) -> Result<(String, String), String> {
    let config: Value =
        serde_json::from_str(config).map_err(|err| format!("not a Docker config JSON: {err}"))?;
    let auth = config
        .get("auths")
        .and_then(|a| a.get(hostname))
        .ok_or_else(|| format!("no login for {hostname} under .auths"))?;
    let field = |name: &str| {
        auth.get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!(".auths[{hostname:?}].{name} is missing"))
    };
    Ok((field("username")?, field("password")?))
}

/// Whether an error says the client lacked rights (not that it could not connect).
pub(super) fn is_auth_refusal(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "denied",
        "unauthorized",
        "forbidden",
        "authentication required",
        "insufficient_scope",
    ]
    .iter()
    .any(|word| message.contains(word))
}

/// The end of a long error message, where the kubelet and skopeo put the cause.
pub(super) fn short(message: &str) -> String {
    const MAX: usize = 200;
    let count = message.chars().count();
    if count <= MAX {
        return message.to_owned();
    }
    let tail: String = message.chars().skip(count - MAX).collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_read_from_a_docker_config() {
        let config =
            r#"{"auths":{"r.ns.wharf.test":{"username":"push.ci.1","password":"pw","auth":"x"}}}"#;
        assert_eq!(
            decode_login(config, "r.ns.wharf.test"),
            Ok(("push.ci.1".into(), "pw".into()))
        );
        let err = decode_login(config, "other.test").expect_err("no login");
        assert!(err.contains("no login for other.test"), "{err}");
        let err = decode_login(r#"{"auths":{"h":{"username":"u"}}}"#, "h").expect_err("no pw");
        assert!(err.contains("password is missing"), "{err}");
        assert!(decode_login("nope", "h").is_err());
    }

    #[test]
    fn only_refusals_for_rights_count() {
        assert!(is_auth_refusal(
            "Error: writing blob: initiating layer upload: requested access to the resource is denied"
        ));
        assert!(is_auth_refusal("failed to authorize: 401 Unauthorized"));
        assert!(!is_auth_refusal(
            "dial tcp: lookup r.ns.wharf.test: no such host"
        ));
        assert!(!is_auth_refusal(
            "x509: certificate signed by unknown authority"
        ));
    }

    #[test]
    fn long_messages_keep_their_end() {
        assert_eq!(short("abc"), "abc");
        let cut = short(&format!("{}401 Unauthorized", "x".repeat(300)));
        assert_eq!(cut.chars().count(), 201);
        assert!(
            cut.starts_with('…') && cut.ends_with("401 Unauthorized"),
            "{cut}"
        );
    }
}
