//! Authorization: the policies that reach a caller (looked up once per revision of the store,
//! each policy compiled once per content),
//! and the decision of SPEC §4 for a catalogue entry.
//!
//! An [`Authorized`] caller can only be made here, by a positive decision, and every service call
//! that returns or changes data takes one: so nothing is read out or changed before the decision.

use crate::cache::{Clear, Generation, Memo};
use crate::caller::{Scope, TokenInfo};
use crate::{Result, ServiceError};
use std::net::IpAddr;
use std::ops::Deref;
use std::sync::Arc;
use stratus_iam::engine::{
    decide, ActionRef, CompiledPolicy, Context, GrantScope, Outcome, PrincipalPolicies, Request,
};
use stratus_iam::{parse_for, Catalogue, Entry, Limits, ResourceKind, ServiceScope};
use stratus_store::{self as store, RoleRec, ScopeKind, Store};
use time::format_description::well_known::Rfc3339;

/// A caller whose request was allowed.
#[derive(Debug, Clone)]
pub struct Authorized {
    caller: TokenInfo,
    admin: bool,
    /// What deciding more actions for this request needs; `None` for a request decided without
    /// policies (public and self-service routes), which may use nothing on the caller's behalf.
    decider: Option<Arc<Decider>>,
}

/// The route's decision inputs, kept for the actions a request turns out to need once its body
/// is read (the resources it names): decided as the route's own actions are.
struct Decider {
    catalogue: Arc<Catalogue>,
    principal: Arc<Principal>,
    ctx: Context,
    global: bool,
    ep: Option<String>,
}

impl Decider {
    /// The decision for `actions` in this request's context and scopes.
    fn decide(&self, actions: &[&str]) -> Outcome {
        self.decide_in(actions, self.ep.as_deref())
    }

    /// The decision for `actions` with grants on enterprise project `ep` counting (where the
    /// route lets enterprise projects count at all).
    fn decide_in(&self, actions: &[&str], ep: Option<&str>) -> Outcome {
        decide_with(
            &self.catalogue,
            &self.principal.policies,
            actions,
            self.global,
            self.ep.as_deref().and(ep),
            &self.ctx,
            false,
        )
    }
}

impl std::fmt::Debug for Decider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decider")
            .field("global", &self.global)
            .field("ep", &self.ep)
            .finish_non_exhaustive()
    }
}

impl Deref for Authorized {
    type Target = TokenInfo;
    fn deref(&self) -> &TokenInfo {
        &self.caller
    }
}

impl Authorized {
    /// Whether the caller administers the project: granted Tenant Administrator on it or on all
    /// projects. Upstream's "admin" for the rules that single admins out (a locked server
    /// refuses everyone else).
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// Decides `actions` as the route's own were decided; 403 naming the denied ones.
    pub fn require(&self, actions: &[&str]) -> Result<()> {
        let ep = self.decider.as_ref().and_then(|d| d.ep.clone());
        self.require_on(actions, ep.as_deref())
    }

    /// Whether `action` would be allowed for this request.
    pub fn allows(&self, action: &str) -> bool {
        self.require(&[action]).is_ok()
    }

    /// Checks the caller may use a resource of `kind` its request names (what reading it
    /// directly needs). Call it after finding the resource visible, before using it.
    pub fn require_use(&self, kind: ResourceKind) -> Result<()> {
        let ep = self.decider.as_ref().and_then(|d| d.ep.clone());
        self.decide_use(kind, ep.as_deref())
    }

    /// [`Authorized::require_use`] of a resource in enterprise project `ep`: decided as reading
    /// it directly would be, so a grant on the enterprise project a request places its result in
    /// does not reach a resource of another one.
    pub fn require_use_in(&self, kind: ResourceKind, ep: &str) -> Result<()> {
        self.decide_use(kind, Some(ep))
    }

    fn decide_use(&self, kind: ResourceKind, ep: Option<&str>) -> Result<()> {
        let Some(d) = &self.decider else {
            return Err(ServiceError::Forbidden(format!(
                "This request cannot use a {kind:?} resource."
            )));
        };
        self.require_on(&[d.catalogue.use_action(kind)], ep)
    }

    /// Decides `actions` as the route's own were, but with the grants on enterprise project `ep`
    /// counting instead of the request's (a route that acts on a resource of one enterprise
    /// project to make something in another decides what it does to the first in the first's).
    pub fn require_in(&self, actions: &[&str], ep: &str) -> Result<()> {
        self.require_on(actions, Some(ep))
    }

    fn require_on(&self, actions: &[&str], ep: Option<&str>) -> Result<()> {
        let outcome;
        let denied = match &self.decider {
            Some(d) => {
                outcome = d.decide_in(actions, ep);
                outcome.denied()
            }
            None => actions.to_vec(),
        };
        if denied.is_empty() {
            Ok(())
        } else {
            tracing::info!(user = %self.caller.user.id, denied = ?denied, "request denied by policy");
            Err(ServiceError::Forbidden(denial_message(&denied)))
        }
    }
}

/// Who a decision is about, as its conditions see them.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub user_id: &'a str,
    pub user_name: &'a str,
    pub domain_name: &'a str,
    pub project_name: Option<&'a str>,
}

impl<'a> Subject<'a> {
    pub fn of(caller: &'a TokenInfo) -> Subject<'a> {
        Subject {
            user_id: &caller.user.id,
            user_name: &caller.user.name,
            domain_name: &caller.user_domain.name,
            project_name: match &caller.scope {
                Scope::Project { project, .. } => Some(project.name.as_str()),
                _ => None,
            },
        }
    }
}

/// The system policy whose holders are a project's administrators.
pub const ADMIN_POLICY: &str = "te_admin";

/// The policies reaching a caller in one project, and whether they make the caller its
/// administrator.
#[derive(Debug, Default)]
pub struct Principal {
    pub policies: PrincipalPolicies,
    pub admin: bool,
}

/// What the decision needs to know about the request beyond the caller and the route.
#[derive(Debug, Default, Clone)]
pub struct Facts<'a> {
    /// The caller acts on themselves (own user, own token, own project).
    pub is_self: bool,
    /// The enterprise project of the resource, for routes that support enterprise projects.
    pub enterprise_project: Option<&'a str>,
    /// The client's address (`g:SourceIp`).
    pub source_ip: Option<IpAddr>,
}

/// How many compiled policies may accumulate before the cache is emptied at a revision change.
const COMPILED_POLICIES_KEPT: usize = 4096;

pub struct Authorizer {
    store: Arc<Store>,
    catalogue: Arc<Catalogue>,
    generation: Generation,
    /// By policy id, with the name and text it was compiled from: a policy is compiled again only
    /// when it changes, not whenever anything in the store does.
    compiled: Memo<String, (String, String, Option<Arc<CompiledPolicy>>)>,
    principals: Memo<String, Arc<Principal>>,
}

/// The 403 message for denied actions; it names them and nothing else.
pub fn denial_message(denied: &[&str]) -> String {
    format!(
        "Policy doesn't allow {} to be performed.",
        denied.join(", ")
    )
}

impl Authorizer {
    pub fn new(store: Arc<Store>, catalogue: Arc<Catalogue>) -> Authorizer {
        Authorizer {
            store,
            catalogue,
            generation: Generation::new(),
            compiled: Memo::new(),
            principals: Memo::new(),
        }
    }

    pub fn catalogue(&self) -> &Arc<Catalogue> {
        &self.catalogue
    }

    async fn sync(&self) -> Result<i64> {
        let rev = self.store.current_revision().await?;
        // Compiled policies outlive revisions; forget them only if deleted ones have piled up
        // (a domain holds at most 200 custom policies, plus the system ones).
        let compiled: &dyn Clear = &self.compiled;
        let memos: Vec<&dyn Clear> = if self.compiled.len() > COMPILED_POLICIES_KEPT {
            vec![&self.principals, compiled]
        } else {
            vec![&self.principals]
        };
        Ok(self.generation.sync(rev, &memos))
    }

    /// Compiles a stored policy. One that no longer parses (the catalogue changed under it)
    /// grants nothing, and says so in the log.
    fn compile(&self, role: &RoleRec) -> Option<Arc<CompiledPolicy>> {
        if let Some((name, text, c)) = self.compiled.get(role.id.as_str()) {
            if name == role.display_name && text == role.policy {
                return c;
            }
        }
        let c = match parse_for(&self.catalogue, &role.policy, &Limits::SYSTEM) {
            Ok(doc) => Some(Arc::new(CompiledPolicy::compile(
                role.id.as_str(),
                role.display_name.as_str(),
                doc,
                &self.catalogue,
            ))),
            Err(e) => {
                tracing::warn!(policy = %role.id, error = %e, "stored policy no longer validates; it grants nothing");
                None
            }
        };
        self.compiled.insert(
            role.id.clone(),
            (role.display_name.clone(), role.policy.clone(), c.clone()),
        );
        c
    }

    /// The policies reaching `user_id` (of domain `domain_id`) when acting in `project_id`.
    pub async fn principal(
        &self,
        user_id: &str,
        domain_id: &str,
        project_id: Option<&str>,
    ) -> Result<Arc<Principal>> {
        self.principal_limited(user_id, domain_id, project_id, None)
            .await
    }

    /// The policies reaching a caller: those of its user, and for a token of an application
    /// credential only the credential's roles on its project (no domain-wide grant).
    pub async fn principal_of(&self, caller: &TokenInfo) -> Result<Arc<Principal>> {
        let project_id = caller.project().map(|p| p.id.as_str());
        let limit = caller
            .app_cred
            .as_ref()
            .map(|a| (a.id.as_str(), a.role_ids()));
        self.principal_limited(
            &caller.user.id,
            &caller.user.domain_id,
            project_id,
            limit.as_ref().map(|(id, roles)| (*id, roles.as_slice())),
        )
        .await
    }

    async fn principal_limited(
        &self,
        user_id: &str,
        domain_id: &str,
        project_id: Option<&str>,
        app_cred: Option<(&str, &[String])>,
    ) -> Result<Arc<Principal>> {
        let g = self.sync().await?;
        let key = format!(
            "{user_id} {domain_id} {} {}",
            project_id.unwrap_or("-"),
            app_cred.map_or("-", |a| a.0)
        );
        if let Some(p) = self.principals.get(key.as_str()) {
            return Ok(p);
        }
        let mut p = PrincipalPolicies::default();
        let mut admin = false;
        for (kind, scope_id, role) in
            store::grants_reaching_user(self.store.pool(), user_id).await?
        {
            if let Some((_, roles)) = app_cred {
                if !roles.contains(&role.id)
                    || !matches!(kind, ScopeKind::Project | ScopeKind::AllProjects)
                {
                    continue;
                }
            }
            let Some(policy) = self.compile(&role) else {
                continue;
            };
            let is_admin_policy = role.kind == "system" && role.name == ADMIN_POLICY;
            match kind {
                ScopeKind::Project if project_id == Some(scope_id.as_str()) => {
                    admin |= is_admin_policy;
                    p.project.push((GrantScope::Project, policy));
                }
                ScopeKind::AllProjects if scope_id == domain_id => {
                    admin |= is_admin_policy && project_id.is_some();
                    p.project.push((GrantScope::AllProjects, policy.clone()));
                    p.global.push((GrantScope::AllProjects, policy));
                }
                ScopeKind::Domain if scope_id == domain_id => {
                    p.global.push((GrantScope::Domain, policy))
                }
                ScopeKind::EnterpriseProject => {
                    p.enterprise.entry(scope_id).or_default().push(policy)
                }
                _ => {}
            }
        }
        let p = Arc::new(Principal { policies: p, admin });
        self.generation.put(&self.principals, g, key, p.clone());
        Ok(p)
    }

    /// The request context of a decision, for enforcement and simulation alike: who (the
    /// subject), where from, when, for which service; then the `extra` keys a simulation gives
    /// (a key given twice, in any case, is refused: which one counted would be chance).
    pub fn context(
        subject: &Subject<'_>,
        source_ip: Option<IpAddr>,
        service: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Result<Context> {
        let mut ctx = Context::default();
        let mut set = |k: &str, v: &str| {
            let _ = ctx.set(k, vec![v.to_string()]);
        };
        set("g:UserId", subject.user_id);
        set("g:UserName", subject.user_name);
        set("g:DomainName", subject.domain_name);
        set("g:MFAPresent", "false");
        if let Some(p) = subject.project_name {
            set("g:ProjectName", p);
        }
        if let Ok(now) = time::OffsetDateTime::now_utc().format(&Rfc3339) {
            set("g:CurrentTime", &now);
        }
        if let Some(ip) = source_ip {
            set("g:SourceIp", &ip.to_string());
        }
        if let Some(s) = service {
            set("g:ServiceName", s);
        }
        let mut seen = std::collections::HashSet::new();
        for (k, v) in extra {
            let canon = stratus_iam::condition::global_key(k)
                .map(|g| g.0)
                .ok_or_else(|| {
                    ServiceError::BadRequest(format!(
                        "Invalid context: unknown condition key {k:?}."
                    ))
                })?;
            if !seen.insert(canon) {
                return Err(ServiceError::BadRequest(format!(
                    "Invalid context: the key {canon} is given more than once."
                )));
            }
            ctx.set(canon, vec![v.to_string()])
                .map_err(|e| ServiceError::BadRequest(format!("Invalid context: {e}.")))?;
        }
        Ok(ctx)
    }

    /// Which grants count for a route: whether it belongs to a global service (domain-wide
    /// grants) and whether grants on the resource's enterprise project count. One answer for
    /// enforcement and simulation.
    pub fn scopes_of(entry: &Entry) -> (bool, bool) {
        (
            entry.scope == ServiceScope::Global,
            entry.enterprise_project,
        )
    }

    /// The same for a bare action (a simulation of actions): as the catalogue's routes whose
    /// action it is decide it; an action no route has as its own (a dependency only) is decided
    /// in its service's scope, without enterprise projects.
    pub fn scopes_of_action(&self, action: &str) -> (bool, bool) {
        let service = action.split(':').next().unwrap_or("");
        let entries = self.catalogue.entries();
        let own: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.action.as_deref() == Some(action))
            .collect();
        let global = match own.first() {
            Some(e) => e.scope == ServiceScope::Global,
            None => entries.iter().any(|e| {
                e.scope == ServiceScope::Global
                    && e.action
                        .as_deref()
                        .is_some_and(|a| a.split(':').next() == Some(service))
            }),
        };
        (global, own.iter().any(|e| e.enterprise_project))
    }

    /// Decides `entry` for `caller`, before any side effect. Public routes and routes without an
    /// action need no decision; nor do self-service routes when the caller acts on themselves.
    pub async fn authorize(
        &self,
        caller: TokenInfo,
        entry: &Entry,
        facts: &Facts<'_>,
    ) -> Result<Authorized> {
        if entry.public || entry.action.is_none() || (entry.self_service && facts.is_self) {
            return Ok(Authorized {
                caller,
                admin: false,
                decider: None,
            });
        }
        let service = entry.action.as_deref().and_then(|a| a.split(':').next());
        let ctx = Self::context(&Subject::of(&caller), facts.source_ip, service, &[])?;
        let principal = self.principal_of(&caller).await?;
        let (global, ep_counts) = Self::scopes_of(entry);
        let ep = ep_counts.then_some(facts.enterprise_project).flatten();
        let decider = Decider {
            catalogue: self.catalogue.clone(),
            principal,
            ctx,
            global,
            ep: ep.map(str::to_string),
        };
        let outcome = decider.decide(&entry.required());
        let denied = outcome.denied();
        if denied.is_empty() {
            Ok(Authorized {
                caller,
                admin: decider.principal.admin,
                decider: Some(Arc::new(decider)),
            })
        } else {
            tracing::info!(user = %caller.user.id, denied = ?denied, route = %entry.key(), "request denied by policy");
            Err(ServiceError::Forbidden(denial_message(&denied)))
        }
    }
}

/// The decision of SPEC §4 for `actions`, over the policies reaching a caller: the one function
/// enforcement, later checks of the same request and simulation all use.
pub fn decide_with(
    catalogue: &Catalogue,
    p: &PrincipalPolicies,
    actions: &[&str],
    global: bool,
    ep: Option<&str>,
    ctx: &Context,
    explain: bool,
) -> Outcome {
    let req = Request {
        actions: actions
            .iter()
            .map(|a| ActionRef {
                name: a,
                id: catalogue.action_id(a),
            })
            .collect(),
        global,
        enterprise_project: ep,
        resource: None,
        context: ctx,
        explain,
    };
    decide(p, &req)
}

#[cfg(test)]
mod tests {
    #[test]
    fn denials_name_every_denied_action() {
        assert_eq!(
            super::denial_message(&["ims:images:delete"]),
            "Policy doesn't allow ims:images:delete to be performed."
        );
        assert_eq!(
            super::denial_message(&["evs:snapshots:create", "ims:images:delete"]),
            "Policy doesn't allow evs:snapshots:create, ims:images:delete to be performed."
        );
    }
}
