//! The `scope` parameters of a token request (`repository:NAME:pull,push`, `registry:catalog:*`),
//! parsed and merged per resource, and the `access` claim entries built from what is granted.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// A resource a client asks about, and the actions it asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// `repository`, `registry`, or another type (which wharf never grants).
    pub kind: String,
    /// Repository name, or `catalog` for `registry`.
    pub name: String,
    /// Requested actions as sent (`pull`, `push`, `*`, `delete`, …).
    pub actions: BTreeSet<String>,
}

/// A scope that is not `TYPE:NAME:ACTIONS`.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("scope {0:?} is malformed: expected TYPE:NAME:ACTIONS, e.g. repository:team/app:pull,push")]
pub struct ScopeError(pub String);

impl Scope {
    /// Parses one scope. The name may itself contain `:`, so the type ends at the first colon
    /// and the actions start after the last one.
    pub fn parse(scope: &str) -> Result<Self, ScopeError> {
        let malformed = || ScopeError(scope.to_owned());
        let (kind, rest) = scope.split_once(':').ok_or_else(malformed)?;
        let (name, actions) = rest.rsplit_once(':').ok_or_else(malformed)?;
        if kind.is_empty() || name.is_empty() {
            return Err(malformed());
        }
        Ok(Self {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: actions
                .split(',')
                .filter(|action| !action.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }
}

/// Parses every `scope` value of a request (each may hold several, space-separated, as OAuth2
/// clients send them) and merges the actions of scopes naming the same resource.
pub fn parse_scopes<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Scope>, ScopeError> {
    let mut merged: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for value in values {
        for scope in value.split(' ').filter(|s| !s.is_empty()) {
            let scope = Scope::parse(scope)?;
            merged
                .entry((scope.kind, scope.name))
                .or_default()
                .extend(scope.actions);
        }
    }
    Ok(merged
        .into_iter()
        .map(|((kind, name), actions)| Scope {
            kind,
            name,
            actions,
        })
        .collect())
}

/// One entry of the token's `access` claim, as distribution reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResourceActions {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(actions: &[&str]) -> BTreeSet<String> {
        actions.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn parses_repository_and_catalog_scopes() {
        assert_eq!(
            Scope::parse("repository:team/app:pull,push").expect("valid"),
            Scope {
                kind: "repository".into(),
                name: "team/app".into(),
                actions: set(&["pull", "push"]),
            }
        );
        let catalog = Scope::parse("registry:catalog:*").expect("valid");
        assert_eq!(
            (catalog.kind.as_str(), catalog.name.as_str()),
            ("registry", "catalog")
        );
        assert_eq!(catalog.actions, set(&["*"]));
    }

    #[test]
    fn a_name_may_contain_colons() {
        let scope = Scope::parse("repository:host:5000/app:pull").expect("valid");
        assert_eq!(scope.name, "host:5000/app");
        assert_eq!(scope.actions, set(&["pull"]));
    }

    #[test]
    fn malformed_scopes_are_refused() {
        for bad in [
            "repository",
            "repository:app",
            ":app:pull",
            "repository::pull",
        ] {
            let err = Scope::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("TYPE:NAME:ACTIONS"), "{err}");
        }
    }

    #[test]
    fn scopes_are_merged_per_resource_and_split_on_spaces() {
        let scopes = parse_scopes(["repository:a:pull", "repository:b:pull repository:a:push"])
            .expect("valid");
        assert_eq!(scopes.len(), 2);
        assert_eq!(scopes[0].name, "a");
        assert_eq!(scopes[0].actions, set(&["pull", "push"]));
        assert_eq!(scopes[1].name, "b");
        assert!(parse_scopes(Vec::<&str>::new()).expect("empty").is_empty());
    }

    #[test]
    fn access_entries_serialize_as_distribution_expects() {
        let entry = ResourceActions {
            kind: "repository".into(),
            name: "a".into(),
            actions: vec!["pull".into()],
        };
        assert_eq!(
            serde_json::to_value(&entry).expect("serializes"),
            serde_json::json!({"type": "repository", "name": "a", "actions": ["pull"]})
        );
    }
}
