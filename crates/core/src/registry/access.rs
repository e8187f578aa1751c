//! Who may do what on which repository: an ImageRegistry's `spec.auth` (access rules, anonymous
//! pull) applied to an account's labels. Pure, so registry-auth and registry-controller (which
//! validates the rules) agree.
//!
//! Semantics, deny by default:
//! - an account's `accessMode` label caps what it can ever get: `push` → pull and push,
//!   `pull` → pull, missing or anything else → nothing;
//! - without rules, an account gets its whole cap on every repository;
//! - with rules, it gets an action on a repository only if a rule whose `matchLabels` match the
//!   account lists that action and a repository pattern matching the repository (still capped);
//! - `matchLabels`: every key must be among the account's labels with at least one of the listed
//!   values (an empty list: any value);
//! - patterns: `*` matches within one path segment, `**` across segments, `${account}` is the
//!   account name and `${labels.KEY}` any of the account's values of label KEY;
//! - anonymous clients get pull on every repository if `anonymousPull` is true, else nothing;
//! - the catalog (`registry:catalog:*`) is listed only for accounts when there are no rules (with
//!   rules it would reveal repositories the account cannot see).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::crd::{ACCOUNT_LABEL_ACCESS_MODE, AccessRule, AuthSpec, RegistryAction};

/// An account's labels (`spec.labels`): key → values.
pub type Labels = BTreeMap<String, Vec<String>>;

/// Who is asking for access.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    /// No credentials were given.
    Anonymous,
    /// An authenticated ImageRegistryAccount.
    Account { name: &'a str, labels: &'a Labels },
}

/// Why an action was left out of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Anonymous client, and the ImageRegistry does not allow anonymous pull.
    AnonymousNotAllowed,
    /// Anonymous clients may only pull.
    AnonymousPullOnly,
    /// The account has no `accessMode` label of `push` or `pull`.
    NoAccessMode,
    /// The account's access mode is `pull`.
    PullAccount,
    /// Access rules exist and none grants the action on this repository to this account.
    NoRuleGrants,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AnonymousNotAllowed => {
                "anonymous access is not allowed (the ImageRegistry's spec.auth.anonymousPull is not true)"
            }
            Self::AnonymousPullOnly => "anonymous clients may only pull",
            Self::NoAccessMode => {
                "the account has no accessMode label (spec.labels.accessMode: [push] or [pull])"
            }
            Self::PullAccount => "the account's accessMode is pull",
            Self::NoRuleGrants => {
                "no rule of the ImageRegistry's spec.auth.rules grants it to this account"
            }
        })
    }
}

/// The outcome for one repository: the actions granted and why the others were not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    pub granted: BTreeSet<RegistryAction>,
    pub refused: Vec<(RegistryAction, Refusal)>,
}

/// An access rule that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("spec.auth.rules[{rule}].repositories[{index}] {pattern:?}: {problem}")]
pub struct RuleError {
    pub rule: usize,
    pub index: usize,
    pub pattern: String,
    pub problem: String,
}

/// The compiled `spec.auth` of one ImageRegistry.
#[derive(Clone, Debug, Default)]
pub struct AccessPolicy {
    anonymous_pull: bool,
    rules: Vec<CompiledRule>,
    /// Some rules were invalid and left out: the policy then grants nothing by rule (fail closed).
    has_invalid_rules: bool,
}

#[derive(Clone, Debug)]
struct CompiledRule {
    match_labels: Labels,
    repositories: Vec<Pattern>,
    actions: BTreeSet<RegistryAction>,
}

impl AccessPolicy {
    /// Compiles `spec.auth`. Invalid rules are reported and left out; any invalid rule makes
    /// the rule set restrictive even if no valid rule remains, so a typo never opens access.
    pub fn compile(auth: Option<&AuthSpec>) -> (Self, Vec<RuleError>) {
        let Some(auth) = auth else {
            return (Self::default(), vec![]);
        };
        let mut errors = vec![];
        let rules = auth
            .rules
            .iter()
            .enumerate()
            .filter_map(|(index, rule)| match compile_rule(index, rule) {
                Ok(rule) => Some(rule),
                Err(error) => {
                    errors.push(error);
                    None
                }
            })
            .collect();
        let policy = Self {
            anonymous_pull: auth.anonymous_pull.unwrap_or(false),
            rules,
            has_invalid_rules: !errors.is_empty(),
        };
        (policy, errors)
    }

    /// Checks `spec.auth.rules` without compiling a policy (for status messages).
    pub fn validate(auth: Option<&AuthSpec>) -> Result<(), Vec<RuleError>> {
        let (_, errors) = Self::compile(auth);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn is_restrictive(&self) -> bool {
        self.has_invalid_rules || !self.rules.is_empty()
    }

    /// The actions of `requested` the subject gets on `repository`.
    pub fn grant(
        &self,
        subject: Subject<'_>,
        repository: &str,
        requested: &BTreeSet<RegistryAction>,
    ) -> Grant {
        let mut grant = Grant::default();
        for &action in requested {
            match self.decide(subject, repository, action) {
                Ok(()) => {
                    grant.granted.insert(action);
                }
                Err(refusal) => grant.refused.push((action, refusal)),
            }
        }
        grant
    }

    fn decide(
        &self,
        subject: Subject<'_>,
        repository: &str,
        action: RegistryAction,
    ) -> Result<(), Refusal> {
        let (name, labels) = match subject {
            Subject::Anonymous => {
                return match (self.anonymous_pull, action) {
                    (false, _) => Err(Refusal::AnonymousNotAllowed),
                    (true, RegistryAction::Pull) => Ok(()),
                    (true, _) => Err(Refusal::AnonymousPullOnly),
                };
            }
            Subject::Account { name, labels } => (name, labels),
        };
        let cap = access_mode_cap(labels);
        if cap.is_empty() {
            return Err(Refusal::NoAccessMode);
        }
        if !cap.contains(&action) {
            return Err(Refusal::PullAccount);
        }
        if !self.is_restrictive() {
            return Ok(());
        }
        let granted_by_rule = self.rules.iter().any(|rule| {
            rule.actions.contains(&action)
                && labels_match(&rule.match_labels, labels)
                && rule
                    .repositories
                    .iter()
                    .any(|pattern| pattern.matches(repository, name, labels))
        });
        if granted_by_rule {
            Ok(())
        } else {
            Err(Refusal::NoRuleGrants)
        }
    }

    /// Whether the subject may list the catalog (`registry:catalog:*`).
    pub fn may_list_catalog(&self, subject: Subject<'_>) -> bool {
        match subject {
            Subject::Anonymous => false,
            Subject::Account { labels, .. } => {
                !self.is_restrictive() && !access_mode_cap(labels).is_empty()
            }
        }
    }
}

/// The most an account may ever get, from its `accessMode` label.
pub fn access_mode_cap(labels: &Labels) -> BTreeSet<RegistryAction> {
    let modes = labels
        .get(ACCOUNT_LABEL_ACCESS_MODE)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if modes.iter().any(|mode| mode == "push") {
        BTreeSet::from([RegistryAction::Pull, RegistryAction::Push])
    } else if modes.iter().any(|mode| mode == "pull") {
        BTreeSet::from([RegistryAction::Pull])
    } else {
        BTreeSet::new()
    }
}

fn labels_match(wanted: &Labels, labels: &Labels) -> bool {
    wanted.iter().all(|(key, values)| match labels.get(key) {
        Some(have) => values.is_empty() || values.iter().any(|value| have.contains(value)),
        None => false,
    })
}

fn compile_rule(index: usize, rule: &AccessRule) -> Result<CompiledRule, RuleError> {
    let repositories = rule
        .repositories
        .iter()
        .enumerate()
        .map(|(position, pattern)| {
            Pattern::parse(pattern).map_err(|problem| RuleError {
                rule: index,
                index: position,
                pattern: pattern.clone(),
                problem,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(CompiledRule {
        match_labels: rule.match_labels.clone(),
        repositories,
        actions: rule.actions.iter().copied().collect(),
    })
}

/// A repository pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(String),
    /// `*`: any characters but `/`.
    Star,
    /// `**`: any characters.
    DoubleStar,
    /// `${account}`.
    Account,
    /// `${labels.KEY}`.
    Label(String),
}

impl Pattern {
    /// Parses a pattern; the error says what is wrong with it.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err(
                "a repository pattern must not be empty; use ** for every repository".into(),
            );
        }
        let mut tokens = vec![];
        let mut literal = String::new();
        let mut rest = pattern;
        while let Some(c) = rest.chars().next() {
            if c == '*' {
                let stars = rest.len() - rest.trim_start_matches('*').len();
                let token = match stars {
                    1 => Token::Star,
                    2 => Token::DoubleStar,
                    _ => {
                        return Err(
                            "use * (within a path segment) or ** (across segments), not more stars"
                                .into(),
                        );
                    }
                };
                flush(&mut literal, &mut tokens);
                tokens.push(token);
                rest = &rest[stars..];
            } else if let Some(after) = rest.strip_prefix("${") {
                let end = after
                    .find('}')
                    .ok_or("a placeholder ${… is not closed with }")?;
                let placeholder = &after[..end];
                let token = if placeholder == "account" {
                    Token::Account
                } else if let Some(key) = placeholder.strip_prefix("labels.")
                    && !key.is_empty()
                {
                    Token::Label(key.to_owned())
                } else {
                    return Err(format!(
                        "unknown placeholder ${{{placeholder}}}; use ${{account}} or ${{labels.KEY}}"
                    ));
                };
                flush(&mut literal, &mut tokens);
                tokens.push(token);
                rest = &after[end + 1..];
            } else {
                literal.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        flush(&mut literal, &mut tokens);
        Ok(Self { tokens })
    }

    /// Whether `repository` matches, for the account `account` with `labels`.
    pub fn matches(&self, repository: &str, account: &str, labels: &Labels) -> bool {
        let subject = repository.as_bytes();
        let mut matcher = Matcher {
            tokens: &self.tokens,
            subject,
            account: account.as_bytes(),
            labels,
            width: subject.len() + 1,
            memo: vec![None; (self.tokens.len() + 1) * (subject.len() + 1)],
        };
        matcher.matches_from(0, 0)
    }
}

/// Glob matching with memoization: `memo[t * width + p]` says whether `tokens[t..]` match
/// `subject[p..]`, which keeps the work at pattern × name² however many wildcards there are.
struct Matcher<'a> {
    tokens: &'a [Token],
    subject: &'a [u8],
    account: &'a [u8],
    labels: &'a Labels,
    width: usize,
    memo: Vec<Option<bool>>,
}

impl Matcher<'_> {
    fn matches_from(&mut self, token: usize, position: usize) -> bool {
        let slot = token * self.width + position;
        if let Some(known) = self.memo[slot] {
            return known;
        }
        let rest_len = self.subject.len() - position;
        let result = match self.tokens.get(token) {
            None => rest_len == 0,
            Some(Token::Literal(literal)) => self.literal(token, position, literal.as_bytes()),
            Some(Token::Account) => self.literal(token, position, self.account),
            Some(Token::Label(key)) => {
                let labels = self.labels;
                labels.get(key).is_some_and(|values| {
                    values
                        .iter()
                        .any(|value| self.literal(token, position, value.as_bytes()))
                })
            }
            Some(Token::Star) => {
                let segment = self.subject[position..]
                    .iter()
                    .position(|&b| b == b'/')
                    .unwrap_or(rest_len);
                (0..=segment).any(|skip| self.matches_from(token + 1, position + skip))
            }
            Some(Token::DoubleStar) => {
                (0..=rest_len).any(|skip| self.matches_from(token + 1, position + skip))
            }
        };
        self.memo[slot] = Some(result);
        result
    }

    /// `literal` at `position`, then the tokens after `token`.
    fn literal(&mut self, token: usize, position: usize, literal: &[u8]) -> bool {
        self.subject[position..].starts_with(literal)
            && self.matches_from(token + 1, position + literal.len())
    }
}

fn flush(literal: &mut String, tokens: &mut Vec<Token>) {
    if !literal.is_empty() {
        tokens.push(Token::Literal(std::mem::take(literal)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RegistryAction::{Pull, Push};

    fn labels(pairs: &[(&str, &[&str])]) -> Labels {
        pairs
            .iter()
            .map(|(k, vs)| {
                (
                    (*k).to_owned(),
                    vs.iter().map(|v| (*v).to_owned()).collect(),
                )
            })
            .collect()
    }

    fn both() -> BTreeSet<RegistryAction> {
        BTreeSet::from([Pull, Push])
    }

    fn rule(
        match_labels: &[(&str, &[&str])],
        repos: &[&str],
        actions: &[RegistryAction],
    ) -> AccessRule {
        AccessRule {
            match_labels: labels(match_labels),
            repositories: repos.iter().map(|r| (*r).to_owned()).collect(),
            actions: actions.to_vec(),
        }
    }

    fn policy(rules: Vec<AccessRule>, anonymous_pull: bool) -> AccessPolicy {
        let auth = AuthSpec {
            rules,
            anonymous_pull: Some(anonymous_pull),
            ..AuthSpec::default()
        };
        let (policy, errors) = AccessPolicy::compile(Some(&auth));
        assert!(errors.is_empty(), "{errors:?}");
        policy
    }

    fn matches(pattern: &str, repo: &str) -> bool {
        let l = labels(&[("team", &["a", "b"])]);
        Pattern::parse(pattern)
            .expect("valid")
            .matches(repo, "acct", &l)
    }

    #[test]
    fn star_stays_in_a_segment_double_star_crosses() {
        assert!(matches("team/*", "team/app"));
        assert!(!matches("team/*", "team/app/x"));
        assert!(matches("team/**", "team/app/x"));
        assert!(!matches("team/**", "team"));
        assert!(matches("**", "anything/at/all"));
        assert!(matches("*-cache", "build-cache"));
        assert!(!matches("*-cache", "x/build-cache"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
    }

    #[test]
    fn placeholders_take_the_accounts_values() {
        assert!(matches("${labels.team}/**", "a/app"));
        assert!(matches("${labels.team}/**", "b/app"));
        assert!(!matches("${labels.team}/**", "c/app"));
        assert!(!matches("${labels.missing}/**", "a/app"));
        assert!(matches("users/${account}", "users/acct"));
        assert!(!matches("users/${account}", "users/other"));
    }

    #[test]
    fn many_wildcards_stay_fast() {
        let pattern = "*a*a*a*a*a*a*a*a*a*a*b";
        let name = "a".repeat(250);
        assert!(!matches(pattern, &name));
    }

    #[test]
    fn bad_patterns_say_what_to_fix() {
        for (pattern, hint) in [
            ("", "must not be empty"),
            ("a/***", "not more stars"),
            ("${labels.team", "not closed"),
            ("${user}/x", "unknown placeholder ${user}"),
            ("${labels.}/x", "unknown placeholder"),
        ] {
            let err = Pattern::parse(pattern).expect_err(pattern);
            assert!(err.contains(hint), "{pattern}: {err}");
        }
    }

    #[test]
    fn access_mode_caps_the_grant_without_rules() {
        let policy = policy(vec![], false);
        let push = labels(&[("accessMode", &["push"])]);
        let pull = labels(&[("accessMode", &["pull"])]);
        let none = labels(&[]);
        let account = |labels| Subject::Account { name: "x", labels };

        assert_eq!(
            policy.grant(account(&push), "any/repo", &both()).granted,
            both()
        );
        let grant = policy.grant(account(&pull), "any/repo", &both());
        assert_eq!(grant.granted, BTreeSet::from([Pull]));
        assert_eq!(grant.refused, vec![(Push, Refusal::PullAccount)]);
        let grant = policy.grant(account(&none), "any/repo", &both());
        assert!(grant.granted.is_empty());
        assert!(
            grant
                .refused
                .iter()
                .all(|(_, r)| *r == Refusal::NoAccessMode)
        );
    }

    #[test]
    fn rules_restrict_and_never_exceed_the_access_mode() {
        let policy = policy(
            vec![
                rule(&[("team", &["a"])], &["a/**"], &[Pull, Push]),
                rule(&[], &["shared/*"], &[Pull, Push]),
            ],
            false,
        );
        let team_a_push = labels(&[("accessMode", &["push"]), ("team", &["a"])]);
        let team_a_pull = labels(&[("accessMode", &["pull"]), ("team", &["a"])]);
        let team_b_push = labels(&[("accessMode", &["push"]), ("team", &["b"])]);
        let account = |labels| Subject::Account { name: "x", labels };

        assert_eq!(
            policy
                .grant(account(&team_a_push), "a/app", &both())
                .granted,
            both()
        );
        assert_eq!(
            policy
                .grant(account(&team_a_pull), "a/app", &both())
                .granted,
            BTreeSet::from([Pull])
        );
        let grant = policy.grant(account(&team_b_push), "a/app", &both());
        assert!(grant.granted.is_empty());
        assert!(
            grant
                .refused
                .iter()
                .all(|(_, r)| *r == Refusal::NoRuleGrants)
        );
        assert_eq!(
            policy
                .grant(account(&team_b_push), "shared/base", &both())
                .granted,
            both()
        );
        assert!(!policy.may_list_catalog(account(&team_a_push)));
    }

    #[test]
    fn match_labels_need_every_key_and_one_value() {
        let wanted = labels(&[("team", &["a", "b"]), ("env", &[])]);
        assert!(labels_match(
            &wanted,
            &labels(&[("team", &["b"]), ("env", &["x"])])
        ));
        assert!(!labels_match(&wanted, &labels(&[("team", &["b"])])));
        assert!(!labels_match(
            &wanted,
            &labels(&[("team", &["c"]), ("env", &["x"])])
        ));
        assert!(labels_match(&labels(&[]), &labels(&[])));
    }

    #[test]
    fn anonymous_gets_pull_only_when_allowed() {
        let closed = policy(vec![], false);
        let grant = closed.grant(Subject::Anonymous, "repo", &both());
        assert!(grant.granted.is_empty());
        assert!(
            grant
                .refused
                .iter()
                .all(|(_, r)| *r == Refusal::AnonymousNotAllowed)
        );

        let open = policy(vec![], true);
        let grant = open.grant(Subject::Anonymous, "repo", &both());
        assert_eq!(grant.granted, BTreeSet::from([Pull]));
        assert_eq!(grant.refused, vec![(Push, Refusal::AnonymousPullOnly)]);
        assert!(!open.may_list_catalog(Subject::Anonymous));
        assert!(
            AccessPolicy::default()
                .grant(Subject::Anonymous, "r", &both())
                .granted
                .is_empty()
        );
    }

    #[test]
    fn an_invalid_rule_fails_closed() {
        let auth = AuthSpec {
            rules: vec![rule(&[], &["${oops}"], &[Pull])],
            ..AuthSpec::default()
        };
        let (policy, errors) = AccessPolicy::compile(Some(&auth));
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .to_string()
                .starts_with("spec.auth.rules[0].repositories[0]")
        );
        let push = labels(&[("accessMode", &["push"])]);
        let grant = policy.grant(
            Subject::Account {
                name: "x",
                labels: &push,
            },
            "r",
            &both(),
        );
        assert!(grant.granted.is_empty());
        assert!(AccessPolicy::validate(Some(&auth)).is_err());
        assert!(AccessPolicy::validate(None).is_ok());
    }
}
