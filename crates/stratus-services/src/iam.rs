//! IAM administration: policies (system and custom), grants on projects, on all projects, on
//! the domain and on enterprise projects, enterprise projects, and policy simulation.

use crate::authz::{Authorized, Authorizer, Subject};
use crate::identity::{duplicate, TokenInfo};
use crate::{new_id, Result, ServiceError};
use std::collections::HashMap;
use std::sync::Arc;
use stratus_iam::engine::Outcome;
use stratus_iam::policy::MAX_CUSTOM_POLICIES_PER_DOMAIN;
use stratus_iam::{parse_for, Limits};
pub use stratus_store::DEFAULT_ENTERPRISE_PROJECT;

/// Refuses (400) an enterprise project a resource of the caller cannot be placed in: one of
/// another domain, unknown, or disabled. The default one (`"0"`) always can.
pub(crate) async fn check_enterprise_project(
    st: &stratus_store::Store,
    caller: &TokenInfo,
    id: &str,
) -> Result<()> {
    if id == DEFAULT_ENTERPRISE_PROJECT {
        return Ok(());
    }
    let ok = id.len() <= 64
        && store::ep_get(st.pool(), id)
            .await?
            .is_some_and(|e| e.domain_id == caller.user.domain_id && e.enabled);
    if ok {
        Ok(())
    } else {
        Err(ServiceError::BadRequest(format!(
            "Enterprise project {id:?} does not exist or is disabled."
        )))
    }
}
use stratus_store::{
    self as store, now_micros, ActorKind, EnterpriseProjectRec, GrantRec, RoleRec, ScopeKind, Store,
};

pub struct Iam {
    store: Arc<Store>,
    authz: Arc<Authorizer>,
}

/// Where a grant is made, as the API names it.
#[derive(Debug, Clone)]
pub enum GrantTarget {
    Project(String),
    /// All projects of a domain (`OS-INHERIT ... inherited_to_projects`).
    AllProjects(String),
    Domain(String),
    EnterpriseProject(String),
}

#[derive(Debug, Clone, Default)]
pub struct PolicyCreate {
    pub display_name: String,
    pub description: String,
    /// The policy document as JSON text.
    pub policy: String,
}

#[derive(Debug, Clone, Default)]
pub struct PolicyPatch {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub policy: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct EnterpriseProjectPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// What to simulate: a list of actions, or the route whose catalogue entry gives them.
#[derive(Debug, Clone)]
pub enum SimulateWhat {
    Actions(Vec<String>),
    Route {
        method: String,
        path: String,
        body_key: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct SimulateRequest {
    pub user_id: String,
    pub project_id: Option<String>,
    pub enterprise_project_id: Option<String>,
    pub what: SimulateWhat,
    pub context: HashMap<String, String>,
}

impl Iam {
    pub fn new(store: Arc<Store>, authz: Arc<Authorizer>) -> Iam {
        Iam { store, authz }
    }

    // -----------------------------------------------------------------------------------------
    // policies

    /// System policies and the caller's domain's custom policies, optionally by name.
    pub async fn list_roles(
        &self,
        caller: &Authorized,
        name: Option<&str>,
    ) -> Result<Vec<RoleRec>> {
        let all = store::roles_visible(self.store.pool(), &caller.user.domain_id).await?;
        Ok(all
            .into_iter()
            .filter(|r| name.is_none_or(|n| r.name == n || r.display_name == n))
            .collect())
    }

    /// A policy visible to the caller (system, or custom of their domain); 404 otherwise.
    pub async fn get_role(&self, caller: &TokenInfo, id: &str) -> Result<RoleRec> {
        store::role_get(self.store.pool(), id)
            .await?
            .filter(|r| {
                r.domain_id.is_none()
                    || r.domain_id.as_deref() == Some(caller.user.domain_id.as_str())
            })
            .ok_or_else(|| ServiceError::not_found("role", id))
    }

    fn validate_policy(&self, text: &str) -> Result<()> {
        parse_for(self.authz.catalogue(), text, &Limits::CUSTOM)
            .map(|_| ())
            .map_err(|e| ServiceError::BadRequest(format!("Invalid policy: {e}.")))
    }

    fn validate_display_name(name: &str) -> Result<()> {
        let n = name.chars().count();
        if n == 0 || n > 128 || name.trim() != name || name.chars().any(char::is_control) {
            return Err(ServiceError::BadRequest(
                "Invalid display_name: 1 to 128 printable characters, no leading or trailing spaces.".into(),
            ));
        }
        Ok(())
    }

    async fn name_taken(
        &self,
        domain_id: &str,
        display_name: &str,
        except: Option<&str>,
    ) -> Result<bool> {
        Ok(store::roles_visible(self.store.pool(), domain_id)
            .await?
            .iter()
            .any(|r| r.display_name == display_name && Some(r.id.as_str()) != except))
    }

    pub async fn create_policy(&self, caller: &Authorized, req: PolicyCreate) -> Result<RoleRec> {
        Self::validate_display_name(&req.display_name)?;
        crate::limits::check_chars(
            "role.description",
            &req.description,
            crate::limits::DESCRIPTION_CHARS,
        )?;
        self.validate_policy(&req.policy)?;
        let domain_id = caller.user.domain_id.clone();
        if self.name_taken(&domain_id, &req.display_name, None).await? {
            return Err(ServiceError::Conflict(format!(
                "A policy named {:?} already exists.",
                req.display_name
            )));
        }
        let id = new_id();
        let role = RoleRec {
            name: format!("custom_{id}"),
            id,
            display_name: req.display_name,
            description: req.description,
            kind: "custom".into(),
            domain_id: Some(domain_id.clone()),
            policy: req.policy,
        };
        let mut w = self.store.write_identity().await?;
        // Count inside the write transaction so that concurrent creations cannot pass the limit.
        store::advisory_lock(&mut w, 727003).await?;
        let count = store::custom_role_count(w.conn(), &domain_id).await?;
        if count >= MAX_CUSTOM_POLICIES_PER_DOMAIN as i64 {
            return Err(ServiceError::BadRequest(format!(
                "The domain already has {count} custom policies, the limit is {MAX_CUSTOM_POLICIES_PER_DOMAIN}."
            )));
        }
        store::role_upsert(w.conn(), &role).await?;
        self.store.commit(w).await?;
        Ok(role)
    }

    async fn own_custom(&self, caller: &TokenInfo, id: &str) -> Result<RoleRec> {
        let role = self.get_role(caller, id).await?;
        if role.kind != "custom" {
            return Err(ServiceError::Forbidden(format!(
                "System policy {} cannot be changed.",
                role.display_name
            )));
        }
        Ok(role)
    }

    pub async fn update_policy(
        &self,
        caller: &Authorized,
        id: &str,
        patch: PolicyPatch,
    ) -> Result<RoleRec> {
        let mut role = self.own_custom(caller, id).await?;
        if let Some(n) = patch.display_name {
            Self::validate_display_name(&n)?;
            if self
                .name_taken(&caller.user.domain_id, &n, Some(id))
                .await?
            {
                return Err(ServiceError::Conflict(format!(
                    "A policy named {n:?} already exists."
                )));
            }
            role.display_name = n;
        }
        if let Some(d) = patch.description {
            crate::limits::check_chars("description", &d, crate::limits::DESCRIPTION_CHARS)?;
            role.description = d;
        }
        if let Some(p) = patch.policy {
            self.validate_policy(&p)?;
            role.policy = p;
        }
        let mut w = self.store.write_identity().await?;
        store::role_update(w.conn(), &role).await?;
        self.store.commit(w).await?;
        Ok(role)
    }

    pub async fn delete_policy(&self, caller: &Authorized, id: &str) -> Result<()> {
        let role = self.own_custom(caller, id).await?;
        let mut w = self.store.write_identity().await?;
        store::role_delete(w.conn(), &role.id).await?;
        self.store.commit(w).await?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // grants

    /// Resolves a grant: the group, the scope and the policy must all be visible to the caller.
    async fn grant(
        &self,
        caller: &TokenInfo,
        group_id: &str,
        target: &GrantTarget,
        role_id: &str,
    ) -> Result<GrantRec> {
        let domain = caller.user.domain_id.as_str();
        store::group_get(self.store.pool(), group_id)
            .await?
            .filter(|g| g.domain_id == domain)
            .ok_or_else(|| ServiceError::not_found("group", group_id))?;
        let (scope_kind, scope_id) = match target {
            GrantTarget::Project(p) => {
                store::project_get(self.store.pool(), p)
                    .await?
                    .filter(|x| x.domain_id == domain)
                    .ok_or_else(|| ServiceError::not_found("project", p))?;
                (ScopeKind::Project, p.clone())
            }
            GrantTarget::AllProjects(d) | GrantTarget::Domain(d) => {
                if d != domain {
                    return Err(ServiceError::not_found("domain", d));
                }
                let kind = if matches!(target, GrantTarget::Domain(_)) {
                    ScopeKind::Domain
                } else {
                    ScopeKind::AllProjects
                };
                (kind, d.clone())
            }
            GrantTarget::EnterpriseProject(ep) => {
                self.get_enterprise_project(caller, ep).await?;
                (ScopeKind::EnterpriseProject, ep.clone())
            }
        };
        if role_id.is_empty() {
            return Ok(GrantRec {
                role_id: String::new(),
                actor_kind: ActorKind::Group,
                actor_id: group_id.to_string(),
                scope_kind,
                scope_id,
            });
        }
        let role = self.get_role(caller, role_id).await?;
        Ok(GrantRec {
            role_id: role.id,
            actor_kind: ActorKind::Group,
            actor_id: group_id.to_string(),
            scope_kind,
            scope_id,
        })
    }

    /// 404 unless the group, the scope and the policy of a grant are all visible to the caller.
    pub async fn check_visible(
        &self,
        caller: &TokenInfo,
        group_id: &str,
        target: &GrantTarget,
        role_id: &str,
    ) -> Result<()> {
        self.grant(caller, group_id, target, role_id)
            .await
            .map(|_| ())
    }

    pub async fn put_grant(
        &self,
        caller: &Authorized,
        group_id: &str,
        target: &GrantTarget,
        role_id: &str,
    ) -> Result<()> {
        let g = self.grant(caller, group_id, target, role_id).await?;
        let mut w = self.store.write_identity().await?;
        store::grant_put(w.conn(), &g).await?;
        self.store.commit(w).await?;
        Ok(())
    }

    pub async fn check_grant(
        &self,
        caller: &TokenInfo,
        group_id: &str,
        target: &GrantTarget,
        role_id: &str,
    ) -> Result<()> {
        let g = self.grant(caller, group_id, target, role_id).await?;
        if store::grant_exists(self.store.pool(), &g).await? {
            Ok(())
        } else {
            Err(ServiceError::not_found(
                "grant",
                format!("role {role_id} for group {group_id}"),
            ))
        }
    }

    pub async fn delete_grant(
        &self,
        caller: &Authorized,
        group_id: &str,
        target: &GrantTarget,
        role_id: &str,
    ) -> Result<()> {
        let g = self.grant(caller, group_id, target, role_id).await?;
        let mut w = self.store.write_identity().await?;
        let removed = store::grant_delete(w.conn(), &g).await?;
        self.store.commit(w).await?;
        if removed {
            Ok(())
        } else {
            Err(ServiceError::not_found(
                "grant",
                format!("role {role_id} for group {group_id}"),
            ))
        }
    }

    pub async fn list_grants(
        &self,
        caller: &Authorized,
        group_id: &str,
        target: &GrantTarget,
    ) -> Result<Vec<RoleRec>> {
        let g = self.grant(caller, group_id, target, "").await?;
        Ok(store::grants_on(
            self.store.pool(),
            ActorKind::Group,
            group_id,
            g.scope_kind,
            &g.scope_id,
        )
        .await?)
    }

    // -----------------------------------------------------------------------------------------
    // enterprise projects

    pub async fn list_enterprise_projects(
        &self,
        caller: &Authorized,
        name: Option<&str>,
    ) -> Result<Vec<EnterpriseProjectRec>> {
        Ok(store::ep_list(self.store.pool(), &caller.user.domain_id, name).await?)
    }

    pub async fn get_enterprise_project(
        &self,
        caller: &TokenInfo,
        id: &str,
    ) -> Result<EnterpriseProjectRec> {
        store::ep_get(self.store.pool(), id)
            .await?
            .filter(|e| e.domain_id == caller.user.domain_id)
            .ok_or_else(|| ServiceError::not_found("enterprise project", id))
    }

    pub async fn create_enterprise_project(
        &self,
        caller: &Authorized,
        name: String,
        description: String,
    ) -> Result<EnterpriseProjectRec> {
        crate::identity::validate_name("enterprise_project", &name)?;
        crate::limits::check_chars(
            "description",
            &description,
            crate::limits::DESCRIPTION_CHARS,
        )?;
        let now = now_micros();
        let ep = EnterpriseProjectRec {
            id: uuid::Uuid::new_v4().to_string(),
            domain_id: caller.user.domain_id.clone(),
            name,
            description,
            enabled: true,
            created_at: now,
            updated_at: now,
        };
        let mut w = self.store.write_identity().await?;
        store::ep_insert(w.conn(), &ep)
            .await
            .map_err(|e| duplicate(e, "enterprise project", &ep.name))?;
        self.store.commit(w).await?;
        Ok(ep)
    }

    pub async fn update_enterprise_project(
        &self,
        caller: &Authorized,
        id: &str,
        patch: EnterpriseProjectPatch,
    ) -> Result<EnterpriseProjectRec> {
        let mut ep = self.get_enterprise_project(caller, id).await?;
        if let Some(n) = patch.name {
            crate::identity::validate_name("enterprise_project", &n)?;
            ep.name = n;
        }
        if let Some(d) = patch.description {
            crate::limits::check_chars("description", &d, crate::limits::DESCRIPTION_CHARS)?;
            ep.description = d;
        }
        if let Some(e) = patch.enabled {
            if !e && ep.id == DEFAULT_ENTERPRISE_PROJECT {
                return Err(ServiceError::BadRequest(
                    "The default enterprise project cannot be disabled.".into(),
                ));
            }
            ep.enabled = e;
        }
        ep.updated_at = now_micros();
        let mut w = self.store.write_identity().await?;
        store::ep_update(w.conn(), &ep)
            .await
            .map_err(|e| duplicate(e, "enterprise project", &ep.name))?;
        self.store.commit(w).await?;
        Ok(ep)
    }

    pub async fn delete_enterprise_project(&self, caller: &Authorized, id: &str) -> Result<()> {
        let ep = self.get_enterprise_project(caller, id).await?;
        if ep.id == DEFAULT_ENTERPRISE_PROJECT {
            return Err(ServiceError::BadRequest(
                "The default enterprise project cannot be deleted.".into(),
            ));
        }
        let mut w = self.store.write_identity().await?;
        if store::ep_in_use(w.conn(), &ep.id).await? {
            return Err(ServiceError::Conflict(format!(
                "Enterprise project {} still holds resources; move or delete them first.",
                ep.id
            )));
        }
        store::grants_delete_scope(w.conn(), ScopeKind::EnterpriseProject, &ep.id).await?;
        store::ep_delete(w.conn(), &ep.id).await?;
        self.store.commit(w).await?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // simulation

    /// Decides, for another user of the caller's domain, as a request would be decided. Returns
    /// the outcome and whether the route (if any) is of a global service.
    pub async fn simulate(&self, caller: &Authorized, req: SimulateRequest) -> Result<Outcome> {
        let domain = caller.user.domain_id.as_str();
        let user = store::user_get(self.store.pool(), &req.user_id)
            .await?
            .filter(|u| u.domain_id == domain)
            .ok_or_else(|| ServiceError::not_found("user", &req.user_id))?;
        let project = match &req.project_id {
            Some(p) => Some(
                store::project_get(self.store.pool(), p)
                    .await?
                    .filter(|x| x.domain_id == domain)
                    .ok_or_else(|| ServiceError::not_found("project", p))?,
            ),
            None => None,
        };
        // Each action with the scopes enforcement would decide it in.
        let mut decide: Vec<(String, bool, bool)> = Vec::new();
        let mut service = None;
        match &req.what {
            SimulateWhat::Actions(a) => {
                if a.is_empty() {
                    return Err(ServiceError::BadRequest(
                        "Give at least one action to simulate.".into(),
                    ));
                }
                for x in a {
                    stratus_iam::action::ActionPattern::parse(x)
                        .ok()
                        .filter(|_| !x.contains('*'))
                        .ok_or_else(|| {
                            ServiceError::BadRequest(format!(
                                "Invalid action {x:?}: expected service:resourceType:operation."
                            ))
                        })?;
                    let (global, ep) = self.authz.scopes_of_action(x);
                    decide.push((x.clone(), global, ep));
                }
            }
            SimulateWhat::Route {
                method,
                path,
                body_key,
            } => {
                let e = self
                    .authz
                    .catalogue()
                    .entry(&method.to_ascii_uppercase(), path, body_key.as_deref())
                    .ok_or_else(|| {
                        ServiceError::BadRequest(format!(
                            "No route {method} {path} is in the action catalogue."
                        ))
                    })?;
                if e.action.is_none() {
                    return Err(ServiceError::BadRequest(format!(
                        "Route {} needs no policy decision.",
                        e.key()
                    )));
                }
                let (global, ep) = Authorizer::scopes_of(e);
                service = e.action.as_deref().and_then(|a| a.split(':').next());
                for a in e.required() {
                    decide.push((a.to_string(), global, ep));
                }
            }
        }
        let domain_name = store::domain_get(self.store.pool(), domain)
            .await?
            .map(|d| d.name)
            .unwrap_or_default();
        let subject = Subject {
            user_id: &user.id,
            user_name: &user.name,
            domain_name: &domain_name,
            project_name: project.as_ref().map(|p| p.name.as_str()),
        };
        let extra: Vec<(&str, &str)> = req
            .context
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let principal = self
            .authz
            .principal(&user.id, domain, project.as_ref().map(|p| p.id.as_str()))
            .await?;
        // Each action in the scopes enforcement decides it in; the outcome lists them in order.
        let mut outcome: Option<Outcome> = None;
        for (action, global, ep_counts) in &decide {
            let svc = service.or_else(|| action.split(':').next());
            let ctx = Authorizer::context(&subject, None, svc, &extra)?;
            let ep = ep_counts
                .then_some(req.enterprise_project_id.as_deref())
                .flatten();
            let o = crate::authz::decide_with(
                self.authz.catalogue(),
                &principal.policies,
                &[action.as_str()],
                *global,
                ep,
                &ctx,
                true,
            );
            outcome = Some(match outcome {
                None => o,
                Some(mut all) => {
                    all.merge(o);
                    all
                }
            });
        }
        outcome.ok_or_else(|| ServiceError::BadRequest("Nothing to simulate.".into()))
    }
}

/// `GET /v3/role_assignments`: which filters to apply, as Keystone names them.
#[derive(Debug, Clone, Default)]
pub struct AssignmentQuery {
    pub user_id: Option<String>,
    pub group_id: Option<String>,
    pub role_id: Option<String>,
    pub project_id: Option<String>,
    pub domain_id: Option<String>,
    /// `scope.OS-INHERIT:inherited_to`: `Some(true)` only inherited assignments, `Some(false)`
    /// only direct ones.
    pub inherited: Option<bool>,
    /// `scope.system`: only system assignments (there are none here).
    pub system: bool,
    /// Group assignments as their members', inherited ones on each project they reach.
    pub effective: bool,
    pub include_subtree: bool,
}

/// Who an assignment is to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignee {
    User(String),
    Group(String),
}

/// Where an assignment applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignedOn {
    Project(String),
    Domain(String),
}

/// One role assignment, with the grant it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub role_id: String,
    pub to: Assignee,
    pub on: AssignedOn,
    /// Inherited by the domain's projects.
    pub inherited: bool,
    /// The grant it comes from: to this group (effective listings of group assignments).
    pub via_group: Option<String>,
    /// The grant it comes from: on this domain (effective listings of inherited assignments).
    pub via_domain: Option<String>,
}

/// Most assignments one listing returns; a larger result is a 403 asking for filters, as
/// Keystone's `list_limit` truncation would hide assignments.
pub const MAX_ASSIGNMENTS: usize = 10_000;

impl Iam {
    /// The role assignments of the caller's domain that `q` selects (Keystone's semantics:
    /// direct grants, or with `effective` the assignments users really hold).
    pub async fn role_assignments(
        &self,
        caller: &Authorized,
        q: &AssignmentQuery,
    ) -> Result<Vec<Assignment>> {
        let bad = |m: &str| Err(ServiceError::BadRequest(m.to_string()));
        if q.user_id.is_some() && q.group_id.is_some() {
            return bad("Specify a user or group, not both");
        }
        if q.project_id.is_some() && q.domain_id.is_some() {
            return bad("Specify a domain or project, not both");
        }
        if q.system && (q.project_id.is_some() || q.domain_id.is_some()) {
            return bad("Specify system or domain, not both");
        }
        if q.effective && q.group_id.is_some() {
            return bad(
                "Combining effective and group filter will always result in an empty list.",
            );
        }
        if q.effective && q.domain_id.is_some() && q.inherited.is_some() {
            return bad("Combining effective, domain and inherited filters will always result in an empty list.");
        }
        if q.include_subtree && q.project_id.is_none() {
            return bad("scope.project.id must be specified if include_subtree is also specified");
        }
        if q.system {
            // No role is granted on the system here.
            return Ok(Vec::new());
        }
        let domain = caller.acting_domain_id().to_string();
        let grants = store::grants_in_domain(self.store.pool(), &domain).await?;
        let mut out = Vec::new();
        let projects = if q.effective {
            store::project_list(
                self.store.pool(),
                &store::ProjectFilter {
                    domain_id: Some(&domain),
                    name: None,
                    enabled: None,
                },
            )
            .await?
        } else {
            Vec::new()
        };
        for g in grants {
            let (on, inherited) = match g.scope_kind {
                ScopeKind::Project => (AssignedOn::Project(g.scope_id.clone()), false),
                ScopeKind::Domain => (AssignedOn::Domain(g.scope_id.clone()), false),
                ScopeKind::AllProjects => (AssignedOn::Domain(g.scope_id.clone()), true),
                ScopeKind::EnterpriseProject => continue,
            };
            let direct = Assignment {
                role_id: g.role_id.clone(),
                to: match g.actor_kind {
                    ActorKind::User => Assignee::User(g.actor_id.clone()),
                    ActorKind::Group => Assignee::Group(g.actor_id.clone()),
                },
                on,
                inherited,
                via_group: None,
                via_domain: None,
            };
            if !q.effective {
                out.push(direct);
                continue;
            }
            // Effective: members of a group hold its roles; an inherited grant reaches each
            // project of the domain.
            let holders: Vec<(String, Option<String>)> = match g.actor_kind {
                ActorKind::User => vec![(g.actor_id.clone(), None)],
                ActorKind::Group => store::group_members(self.store.pool(), &g.actor_id)
                    .await?
                    .into_iter()
                    .map(|u| (u.id, Some(g.actor_id.clone())))
                    .collect(),
            };
            for (user, via_group) in holders {
                let base = Assignment {
                    to: Assignee::User(user),
                    via_group,
                    ..direct.clone()
                };
                if inherited {
                    for p in &projects {
                        out.push(Assignment {
                            on: AssignedOn::Project(p.id.clone()),
                            via_domain: Some(g.scope_id.clone()),
                            ..base.clone()
                        });
                    }
                } else {
                    out.push(base);
                }
            }
            if out.len() > MAX_ASSIGNMENTS {
                return Err(ServiceError::Forbidden(format!(
                    "More than {MAX_ASSIGNMENTS} role assignments match: narrow the listing with filters."
                )));
            }
        }
        out.retain(|a| {
            let to_ok = match (&q.user_id, &q.group_id, &a.to) {
                (Some(u), _, Assignee::User(x)) => u == x,
                (Some(_), _, Assignee::Group(_)) => false,
                (_, Some(g), Assignee::Group(x)) => g == x,
                (_, Some(_), Assignee::User(_)) => false,
                _ => true,
            };
            let on_ok = match (&q.project_id, &q.domain_id, &a.on) {
                (Some(p), _, AssignedOn::Project(x)) => p == x,
                (Some(_), _, AssignedOn::Domain(_)) => false,
                (_, Some(d), AssignedOn::Domain(x)) => d == x && !(q.effective && a.inherited),
                (_, Some(_), AssignedOn::Project(_)) => false,
                _ => true,
            };
            let inherited_ok = match q.inherited {
                Some(want) if !q.effective => a.inherited == want,
                _ => true,
            };
            to_ok && on_ok && inherited_ok && q.role_id.as_ref().is_none_or(|r| *r == a.role_id)
        });
        if out.len() > MAX_ASSIGNMENTS {
            return Err(ServiceError::Forbidden(format!(
                "More than {MAX_ASSIGNMENTS} role assignments match: narrow the listing with filters."
            )));
        }
        Ok(out)
    }
}

/// The names of what role assignments refer to (`include_names`): by id, the name and, for
/// users, groups and projects, the domain id.
#[derive(Debug, Clone, Default)]
pub struct AssignmentNames {
    pub roles: HashMap<String, String>,
    pub users: HashMap<String, (String, String)>,
    pub groups: HashMap<String, (String, String)>,
    pub projects: HashMap<String, (String, String)>,
    pub domains: HashMap<String, String>,
}

impl Iam {
    /// Looks up, once each, the names of the roles, users, groups, projects and domains the
    /// assignments name.
    pub async fn assignment_names(&self, list: &[Assignment]) -> Result<AssignmentNames> {
        let pool = self.store.pool();
        let mut n = AssignmentNames::default();
        let mut domains = std::collections::BTreeSet::new();
        for a in list {
            if !n.roles.contains_key(&a.role_id) {
                let name = store::role_get(pool, &a.role_id).await?.map(|r| r.name);
                n.roles.insert(a.role_id.clone(), name.unwrap_or_default());
            }
            match &a.to {
                Assignee::User(u) if !n.users.contains_key(u) => {
                    let v = store::user_get(pool, u)
                        .await?
                        .map(|x| (x.name, x.domain_id));
                    let v = v.unwrap_or_default();
                    domains.insert(v.1.clone());
                    n.users.insert(u.clone(), v);
                }
                Assignee::Group(g) if !n.groups.contains_key(g) => {
                    let v = store::group_get(pool, g)
                        .await?
                        .map(|x| (x.name, x.domain_id));
                    let v = v.unwrap_or_default();
                    domains.insert(v.1.clone());
                    n.groups.insert(g.clone(), v);
                }
                _ => {}
            }
            match &a.on {
                AssignedOn::Project(p) if !n.projects.contains_key(p) => {
                    let v = store::project_get(pool, p)
                        .await?
                        .map(|x| (x.name, x.domain_id));
                    let v = v.unwrap_or_default();
                    domains.insert(v.1.clone());
                    n.projects.insert(p.clone(), v);
                }
                AssignedOn::Domain(d) => {
                    domains.insert(d.clone());
                }
                _ => {}
            }
        }
        for d in domains {
            let name = store::domain_get(pool, &d).await?.map(|x| x.name);
            n.domains.insert(d, name.unwrap_or_default());
        }
        Ok(n)
    }
}
