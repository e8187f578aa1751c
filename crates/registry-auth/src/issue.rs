//! One token request from credentials and scopes to a signed token: authenticate (or anonymous),
//! authorize each scope against the access policy, leave out what is not granted (Docker
//! semantics), log every refusal with its reason — never a password — and sign.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::jiff::Timestamp;
use wharf_core::crd::RegistryAction;
use wharf_core::registry::access::{AccessPolicy, Subject};

use crate::accounts::{AccountDirectory, LoginError};
use crate::policy::PolicySource;
use crate::scope::{ResourceActions, Scope};
use crate::signer::{SignedToken, TokenSigner};

/// Basic credentials of a request. Its Debug output never shows the password.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What a client asks for.
#[derive(Debug, Default)]
pub struct TokenRequest {
    pub credentials: Option<Credentials>,
    pub service: Option<String>,
    pub scopes: Vec<Scope>,
    pub client: Option<SocketAddr>,
}

/// A request that gets no token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The client sent something unusable; the message says what.
    #[error("{0}")]
    BadRequest(String),
    /// Wrong credentials, unknown, expired or deleted account (the reason is only logged).
    #[error("authentication failed: unknown user, wrong password, or the account expired")]
    Unauthorized,
    /// Our fault.
    #[error("cannot issue a token: {0}")]
    Internal(String),
}

/// Issues tokens for one registry.
#[derive(Clone)]
pub struct TokenService {
    accounts: AccountDirectory,
    policy: PolicySource,
    signer: Arc<TokenSigner>,
}

impl TokenService {
    pub fn new(accounts: AccountDirectory, policy: PolicySource, signer: Arc<TokenSigner>) -> Self {
        Self {
            accounts,
            policy,
            signer,
        }
    }

    /// The service (audience) this endpoint issues tokens for.
    pub fn service_name(&self) -> &str {
        self.signer.service()
    }

    /// Authenticates, authorizes and signs.
    pub async fn issue(&self, request: TokenRequest) -> Result<SignedToken, TokenError> {
        if let Some(service) = request.service.as_deref()
            && service != self.signer.service()
        {
            return Err(TokenError::BadRequest(format!(
                "this token endpoint issues tokens for service {:?}, not {service:?}",
                self.signer.service()
            )));
        }
        let client = request
            .client
            .map(|addr| addr.ip().to_string())
            .unwrap_or_default();
        let account = match &request.credentials {
            None => None,
            Some(credentials) => {
                let login = self
                    .accounts
                    .login(
                        &credentials.username,
                        &credentials.password,
                        Timestamp::now(),
                    )
                    .await
                    .map_err(|err: LoginError| TokenError::Internal(err.to_string()))?;
                match login {
                    Ok(account) => Some(account),
                    Err(refusal) => {
                        tracing::warn!(
                            account = %credentials.username,
                            %client,
                            reason = %refusal,
                            "login refused"
                        );
                        return Err(TokenError::Unauthorized);
                    }
                }
            }
        };
        let subject = match &account {
            None => Subject::Anonymous,
            Some(account) => Subject::Account {
                name: account.metadata.name.as_deref().unwrap_or_default(),
                labels: &account.spec.labels,
            },
        };
        let policy = self.policy.current();
        let access = authorize(&policy, subject, &request.scopes, &client);
        self.signer
            .sign(subject_name(subject), &access, SystemTime::now())
            .map_err(|err| TokenError::Internal(err.to_string()))
    }
}

fn subject_name(subject: Subject<'_>) -> &str {
    // The `sub` claim of an anonymous token is empty, as Docker's token servers do.
    match subject {
        Subject::Anonymous => "",
        Subject::Account { name, .. } => name,
    }
}

/// The `access` claim for `scopes`: granted actions only; each refusal is logged.
pub fn authorize(
    policy: &AccessPolicy,
    subject: Subject<'_>,
    scopes: &[Scope],
    client: &str,
) -> Vec<ResourceActions> {
    let account = match subject {
        Subject::Anonymous => "(anonymous)",
        Subject::Account { name, .. } => name,
    };
    let refuse = |scope: &Scope, action: &str, reason: &dyn fmt::Display| {
        tracing::info!(
            %account,
            %client,
            resource = %format!("{}:{}", scope.kind, scope.name),
            action,
            %reason,
            "action not granted"
        );
    };
    let mut access = vec![];
    for scope in scopes {
        let granted: Vec<String> = match scope.kind.as_str() {
            "repository" => {
                let mut requested = BTreeSet::new();
                for action in &scope.actions {
                    match action.as_str() {
                        "pull" => {
                            requested.insert(RegistryAction::Pull);
                        }
                        "push" => {
                            requested.insert(RegistryAction::Push);
                        }
                        other => refuse(scope, other, &"wharf grants only pull and push"),
                    }
                }
                let grant = policy.grant(subject, &scope.name, &requested);
                for (action, reason) in &grant.refused {
                    refuse(scope, action_name(*action), reason);
                }
                grant
                    .granted
                    .iter()
                    .map(|a| action_name(*a).to_owned())
                    .collect()
            }
            "registry" if scope.name == "catalog" => {
                if policy.may_list_catalog(subject) {
                    scope
                        .actions
                        .iter()
                        .filter(|a| *a == "*")
                        .cloned()
                        .collect()
                } else {
                    for action in &scope.actions {
                        refuse(
                            scope,
                            action,
                            &"the catalog is listed only for accounts, and only when there are no access rules",
                        );
                    }
                    vec![]
                }
            }
            _ => {
                for action in &scope.actions {
                    refuse(scope, action, &"unknown resource type");
                }
                vec![]
            }
        };
        if !granted.is_empty() {
            access.push(ResourceActions {
                kind: scope.kind.clone(),
                name: scope.name.clone(),
                actions: granted,
            });
        }
    }
    access
}

fn action_name(action: RegistryAction) -> &'static str {
    match action {
        RegistryAction::Pull => "pull",
        RegistryAction::Push => "push",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::parse_scopes;
    use wharf_core::crd::AuthSpec;
    use wharf_core::registry::access::Labels;

    fn labels(mode: &str) -> Labels {
        Labels::from([("accessMode".to_owned(), vec![mode.to_owned()])])
    }

    fn scopes(values: &[&str]) -> Vec<Scope> {
        parse_scopes(values.iter().copied()).expect("valid scopes")
    }

    #[test]
    fn push_accounts_get_what_they_ask_for() {
        let push = labels("push");
        let access = authorize(
            &AccessPolicy::default(),
            Subject::Account {
                name: "a",
                labels: &push,
            },
            &scopes(&["repository:app:pull,push", "repository:base:pull"]),
            "",
        );
        assert_eq!(access.len(), 2);
        assert_eq!(access[0].name, "app");
        assert_eq!(access[0].actions, ["pull", "push"]);
        assert_eq!(access[1].actions, ["pull"]);
    }

    #[test]
    fn what_is_not_granted_is_left_out() {
        let pull = labels("pull");
        let access = authorize(
            &AccessPolicy::default(),
            Subject::Account {
                name: "a",
                labels: &pull,
            },
            &scopes(&[
                "repository:app:pull,push,delete",
                "repository(plugin):x:pull",
            ]),
            "",
        );
        assert_eq!(access.len(), 1);
        assert_eq!(access[0].actions, ["pull"]);
        let anonymous = authorize(
            &AccessPolicy::default(),
            Subject::Anonymous,
            &scopes(&["repository:app:pull"]),
            "",
        );
        assert!(anonymous.is_empty());
    }

    #[test]
    fn the_catalog_follows_the_policy() {
        let push = labels("push");
        let subject = Subject::Account {
            name: "a",
            labels: &push,
        };
        let catalog = scopes(&["registry:catalog:*"]);
        let open = authorize(&AccessPolicy::default(), subject, &catalog, "");
        assert_eq!(open[0].actions, ["*"]);
        let auth = AuthSpec {
            rules: vec![wharf_core::crd::AccessRule {
                repositories: vec!["**".into()],
                actions: vec![RegistryAction::Pull],
                ..Default::default()
            }],
            ..AuthSpec::default()
        };
        let (ruled, _) = AccessPolicy::compile(Some(&auth));
        assert!(authorize(&ruled, subject, &catalog, "").is_empty());
    }

    #[test]
    fn credentials_never_show_the_password() {
        let credentials = Credentials {
            username: "alice".into(),
            password: "hunter2".into(),
        };
        let shown = format!("{credentials:?}");
        assert!(
            shown.contains("alice") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
