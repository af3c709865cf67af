//! Decisions. Policies are compiled once (per change of policies or grants) into per-action
//! statement lists, so deciding an action is a table lookup plus the conditions of the few
//! statements that name it.

use crate::catalogue::Catalogue;
use crate::policy::{Effect, PolicyDocument};
use std::collections::HashMap;
use std::sync::Arc;

/// A policy compiled against a catalogue.
#[derive(Debug)]
pub struct CompiledPolicy {
    pub id: Arc<str>,
    pub name: Arc<str>,
    doc: PolicyDocument,
    /// For each catalogue action id, the statements whose actions match it.
    by_action: Vec<Vec<u16>>,
}

impl CompiledPolicy {
    pub fn compile(
        id: impl Into<Arc<str>>,
        name: impl Into<Arc<str>>,
        doc: PolicyDocument,
        cat: &Catalogue,
    ) -> Self {
        let by_action = cat
            .actions()
            .iter()
            .map(|a| {
                doc.statements
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.actions.iter().any(|p| p.matches(a)))
                    .map(|(i, _)| i as u16)
                    .collect()
            })
            .collect();
        CompiledPolicy {
            id: id.into(),
            name: name.into(),
            doc,
            by_action,
        }
    }

    pub fn document(&self) -> &PolicyDocument {
        &self.doc
    }

    /// Calls `f` with each statement that names `action`: from the table for catalogue
    /// actions, by matching for others.
    fn for_statements(&self, action: &ActionRef<'_>, mut f: impl FnMut(usize)) {
        match action.id.and_then(|i| self.by_action.get(usize::from(i))) {
            Some(list) => list.iter().for_each(|&i| f(usize::from(i))),
            None => {
                for (i, s) in self.doc.statements.iter().enumerate() {
                    if s.actions.iter().any(|p| p.matches(action.name)) {
                        f(i)
                    }
                }
            }
        }
    }
}

/// The scope a grant was made on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrantScope {
    Project,
    AllProjects,
    Domain,
    EnterpriseProject,
}

impl GrantScope {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantScope::Project => "project",
            GrantScope::AllProjects => "all_projects",
            GrantScope::Domain => "domain",
            GrantScope::EnterpriseProject => "enterprise_project",
        }
    }
}

/// The policies that reach one principal (a user, through their groups) in one project.
#[derive(Debug, Default, Clone)]
pub struct PrincipalPolicies {
    /// Grants on the project and on all projects (regional services).
    pub project: Vec<(GrantScope, Arc<CompiledPolicy>)>,
    /// Grants on the domain and on all projects (global services).
    pub global: Vec<(GrantScope, Arc<CompiledPolicy>)>,
    /// Grants per enterprise project.
    pub enterprise: HashMap<String, Vec<Arc<CompiledPolicy>>>,
}

/// Request attributes conditions may test: canonical global key name → values.
#[derive(Debug, Default, Clone)]
pub struct Context {
    values: HashMap<&'static str, Vec<String>>,
}

impl Context {
    /// Sets a global key (case-insensitive name); unknown keys are refused.
    pub fn set(&mut self, key: &str, values: Vec<String>) -> Result<(), String> {
        let (canon, _) = crate::condition::global_key(key)
            .ok_or_else(|| format!("unknown condition key {key:?}"))?;
        self.values.insert(canon, values);
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.values.get(key).map(Vec::as_slice)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    ExplicitDeny,
    ImplicitDeny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::ExplicitDeny => "explicitDeny",
            Decision::ImplicitDeny => "implicitDeny",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matched {
    pub policy_id: Arc<str>,
    pub policy_name: Arc<str>,
    pub statement: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionResult {
    pub action: String,
    pub decision: Decision,
    /// The scope whose grants decided; `None` for an implicit deny.
    pub scope: Option<GrantScope>,
    pub matched: Vec<Matched>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub decision: Decision,
    pub results: Vec<ActionResult>,
}

impl Outcome {
    /// Appends another outcome's results; the decision is the stronger refusal of the two
    /// (an explicit deny over an implicit one over an allow).
    pub fn merge(&mut self, other: Outcome) {
        let rank = |d: Decision| match d {
            Decision::Allowed => 0,
            Decision::ImplicitDeny => 1,
            Decision::ExplicitDeny => 2,
        };
        if rank(other.decision) > rank(self.decision) {
            self.decision = other.decision;
        }
        self.results.extend(other.results);
    }

    /// The actions not allowed, in request order.
    pub fn denied(&self) -> Vec<&str> {
        self.results
            .iter()
            .filter(|r| r.decision != Decision::Allowed)
            .map(|r| r.action.as_str())
            .collect()
    }
}

/// An action to decide, with its catalogue id when known.
pub struct ActionRef<'a> {
    pub name: &'a str,
    pub id: Option<u16>,
}

/// What is asked.
pub struct Request<'a> {
    pub actions: Vec<ActionRef<'a>>,
    /// Global service (IAM) rather than a regional one.
    pub global: bool,
    /// The route supports enterprise-project authorization, and the resource's enterprise project.
    pub enterprise_project: Option<&'a str>,
    /// The resource URN, for statements with a `Resource`.
    pub resource: Option<&'a str>,
    pub context: &'a Context,
    /// Record which statements matched (simulation); enforcement needs only the decision.
    pub explain: bool,
}

impl<'a> Request<'a> {
    pub fn new(cat: &Catalogue, actions: &[&'a str], context: &'a Context) -> Request<'a> {
        Request {
            actions: actions
                .iter()
                .map(|a| ActionRef {
                    name: a,
                    id: cat.action_id(a),
                })
                .collect(),
            global: false,
            enterprise_project: None,
            resource: None,
            context,
            explain: true,
        }
    }
}

/// Applies the statements of `policies` that name `action`: Deny wins over Allow. The matching
/// statements are recorded only when the request asks for an explanation.
fn evaluate<'p>(
    policies: impl Iterator<Item = (GrantScope, &'p Arc<CompiledPolicy>)>,
    action: &ActionRef<'_>,
    req: &Request<'_>,
) -> Option<(Decision, GrantScope, Vec<Matched>)> {
    let mut allow: Option<(GrantScope, Vec<Matched>)> = None;
    let mut deny: Option<(GrantScope, Vec<Matched>)> = None;
    for (scope, p) in policies {
        p.for_statements(action, |i| {
            let s = &p.doc.statements[i];
            if let Some(res) = &s.resources {
                match req.resource {
                    Some(urn) if res.iter().any(|r| r.matches(urn)) => {}
                    Some(_) => return,
                    // The resource is not known to the decision (a stored policy from before
                    // such statements were refused): a Deny applies, an Allow grants nothing.
                    None if s.effect == Effect::Deny => {}
                    None => return,
                }
            }
            if !s.conditions.iter().all(|c| c.holds(req.context.get(c.key))) {
                return;
            }
            let slot = match s.effect {
                Effect::Deny => &mut deny,
                Effect::Allow => &mut allow,
            };
            let found = slot.get_or_insert_with(|| (scope, Vec::new()));
            if req.explain {
                found.1.push(Matched {
                    policy_id: p.id.clone(),
                    policy_name: p.name.clone(),
                    statement: i,
                });
            }
        });
    }
    if let Some((scope, m)) = deny {
        Some((Decision::ExplicitDeny, scope, m))
    } else {
        allow.map(|(scope, m)| (Decision::Allowed, scope, m))
    }
}

/// Decides every action of the request, in order: grants on the project (or the domain for a
/// global service) and on all projects first, where a Deny is final and an Allow is final; only
/// if neither applies, and only if the route supports them, the grants on the resource's
/// enterprise project; else an implicit deny. The whole request is allowed only if every action is.
pub fn decide(p: &PrincipalPolicies, req: &Request<'_>) -> Outcome {
    let primary = if req.global { &p.global } else { &p.project };
    let mut results = Vec::with_capacity(req.actions.len());
    for a in &req.actions {
        let mut r = evaluate(primary.iter().map(|(s, p)| (*s, p)), a, req);
        if r.is_none() {
            if let Some(ep) = req.enterprise_project {
                if let Some(list) = p.enterprise.get(ep) {
                    r = evaluate(
                        list.iter().map(|p| (GrantScope::EnterpriseProject, p)),
                        a,
                        req,
                    );
                }
            }
        }
        results.push(match r {
            Some((decision, scope, matched)) => ActionResult {
                action: a.name.to_string(),
                decision,
                scope: Some(scope),
                matched,
            },
            None => ActionResult {
                action: a.name.to_string(),
                decision: Decision::ImplicitDeny,
                scope: None,
                matched: Vec::new(),
            },
        });
    }
    let decision = if results.iter().any(|r| r.decision == Decision::ExplicitDeny) {
        Decision::ExplicitDeny
    } else if results.iter().any(|r| r.decision == Decision::ImplicitDeny) {
        Decision::ImplicitDeny
    } else {
        Decision::Allowed
    };
    Outcome { decision, results }
}
