//! IAM administration under `/identity`: policies (`/v3/roles`, Huawei custom policies at
//! `/v3.0/OS-ROLE/roles`), grants on projects, all projects, the domain and enterprise projects,
//! enterprise projects, and policy simulation.

use crate::error::{ApiError, ApiResult, Keystone};
use crate::extract::{ApiJson, ApiQuery, Authz};
use crate::routes::RouteTable;
use crate::timefmt::micros_z;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{Method as M, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use stratus_services::iam::{
    AssignedOn, Assignee, AssignmentQuery, EnterpriseProjectPatch, GrantTarget, PolicyCreate,
    PolicyPatch, SimulateRequest, SimulateWhat,
};
use stratus_services::model::{EnterpriseProjectRec, RoleRec};

type KResult<T> = ApiResult<T, Keystone>;
type KJson<T> = ApiJson<T, Keystone>;
type KAuthz = Authz<Keystone>;
type St = State<Arc<AppState>>;

const ROLES: &str = "/identity/v3/roles";
const CUSTOM: &str = "/identity/v3.0/OS-ROLE/roles";
const ON_PROJECT: &str = "/identity/v3/projects/{project_id}/groups/{group_id}/roles";
const ON_ALL: &str = "/identity/v3/OS-INHERIT/domains/{domain_id}/groups/{group_id}/roles";
const ON_DOMAIN: &str = "/identity/v3/domains/{domain_id}/groups/{group_id}/roles";
const ON_EP: &str = "/identity/v3.0/OS-PERMISSION/enterprise-projects/{enterprise_project_id}/groups/{group_id}/roles";
const EPS: &str = "/identity/v3.0/enterprise-projects";

pub fn routes() -> RouteTable<Arc<AppState>> {
    let p = |a: &str, b: &str| format!("{a}{b}");
    RouteTable::default()
        .at(M::GET, ROLES, list_roles)
        .at(M::GET, &p(ROLES, "/{role_id}"), get_role)
        .at(M::GET, CUSTOM, list_custom)
        .at(M::POST, CUSTOM, create_custom)
        .at(M::GET, &p(CUSTOM, "/{role_id}"), get_custom)
        .at(M::PATCH, &p(CUSTOM, "/{role_id}"), update_custom)
        .at(M::DELETE, &p(CUSTOM, "/{role_id}"), delete_custom)
        .at(M::GET, ON_PROJECT, grant_list::<OnProject>)
        .at(M::PUT, &p(ON_PROJECT, "/{role_id}"), grant_put::<OnProject>)
        .at(
            M::HEAD,
            &p(ON_PROJECT, "/{role_id}"),
            grant_check::<OnProject>,
        )
        .at(
            M::DELETE,
            &p(ON_PROJECT, "/{role_id}"),
            grant_delete::<OnProject>,
        )
        .at(
            M::GET,
            &p(ON_ALL, "/inherited_to_projects"),
            grant_list::<OnAllProjects>,
        )
        .at(
            M::PUT,
            &p(ON_ALL, "/{role_id}/inherited_to_projects"),
            grant_put::<OnAllProjects>,
        )
        .at(
            M::HEAD,
            &p(ON_ALL, "/{role_id}/inherited_to_projects"),
            grant_check::<OnAllProjects>,
        )
        .at(
            M::DELETE,
            &p(ON_ALL, "/{role_id}/inherited_to_projects"),
            grant_delete::<OnAllProjects>,
        )
        .at(M::GET, ON_DOMAIN, grant_list::<OnDomain>)
        .at(M::PUT, &p(ON_DOMAIN, "/{role_id}"), grant_put::<OnDomain>)
        .at(
            M::HEAD,
            &p(ON_DOMAIN, "/{role_id}"),
            grant_check::<OnDomain>,
        )
        .at(
            M::DELETE,
            &p(ON_DOMAIN, "/{role_id}"),
            grant_delete::<OnDomain>,
        )
        .at(M::GET, ON_EP, grant_list::<OnEnterpriseProject>)
        .at(
            M::PUT,
            &p(ON_EP, "/{role_id}"),
            grant_put::<OnEnterpriseProject>,
        )
        .at(
            M::HEAD,
            &p(ON_EP, "/{role_id}"),
            grant_check::<OnEnterpriseProject>,
        )
        .at(
            M::DELETE,
            &p(ON_EP, "/{role_id}"),
            grant_delete::<OnEnterpriseProject>,
        )
        .at(M::GET, EPS, list_eps)
        .at(M::POST, EPS, create_ep)
        .at(M::GET, &p(EPS, "/{enterprise_project_id}"), get_ep)
        .at(M::PATCH, &p(EPS, "/{enterprise_project_id}"), update_ep)
        .at(M::DELETE, &p(EPS, "/{enterprise_project_id}"), delete_ep)
        .at(M::POST, "/identity/v3/stratus/policy-simulate", simulate)
        .at(M::GET, "/identity/v3/role_assignments", role_assignments)
}

// ---------------------------------------------------------------------------------------------
// policies

fn role_json(s: &AppState, r: &RoleRec, path: &str) -> Value {
    let policy: Value = serde_json::from_str(&r.policy).unwrap_or(Value::Null);
    json!({
        "id": r.id, "name": r.name, "display_name": r.display_name, "description": r.description,
        "domain_id": r.domain_id,
        "type": if r.domain_id.is_none() && policy_is_global(&policy) { "AA" } else { "XA" },
        "catalog": if r.kind == "custom" { "CUSTOMED" } else { "BASE" },
        "policy": policy,
        "links": {"self": s.url(&format!("{path}/{}", r.id))},
    })
}

/// A policy naming only IAM actions applies to the global service.
fn policy_is_global(policy: &Value) -> bool {
    policy["Statement"].as_array().is_some_and(|st| {
        st.iter().all(|s| {
            s["Action"].as_array().is_some_and(|a| {
                a.iter()
                    .all(|x| x.as_str().is_some_and(|x| x.starts_with("iam:")))
            })
        })
    })
}

#[derive(Deserialize, Default)]
struct NameQuery {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
}

async fn roles_list(
    s: &AppState,
    authz: KAuthz,
    q: NameQuery,
    path: &str,
    custom_only: bool,
) -> KResult<Json<Value>> {
    let c = authz.allow().await?;
    let name = q.name.as_deref().or(q.display_name.as_deref());
    let roles: Vec<Value> = s
        .iam
        .list_roles(&c, name)
        .await?
        .iter()
        .filter(|r| !custom_only || r.kind == "custom")
        .map(|r| role_json(s, r, path))
        .collect();
    let n = roles.len();
    Ok(Json(json!({
        "roles": roles,
        "links": {"self": s.url(path), "previous": null, "next": null},
        "total_number": n,
    })))
}

async fn list_roles(
    State(s): St,
    authz: KAuthz,
    ApiQuery(q, _): ApiQuery<NameQuery, Keystone>,
) -> KResult<Json<Value>> {
    roles_list(&s, authz, q, ROLES, false).await
}

async fn list_custom(
    State(s): St,
    authz: KAuthz,
    ApiQuery(q, _): ApiQuery<NameQuery, Keystone>,
) -> KResult<Json<Value>> {
    roles_list(&s, authz, q, CUSTOM, true).await
}

async fn get_role(State(s): St, authz: KAuthz, Path(id): Path<String>) -> KResult<Json<Value>> {
    let r = s.iam.get_role(authz.caller(), &id).await?;
    authz.allow().await?;
    Ok(Json(json!({"role": role_json(&s, &r, ROLES)})))
}

async fn get_custom(State(s): St, authz: KAuthz, Path(id): Path<String>) -> KResult<Json<Value>> {
    let r = s.iam.get_role(authz.caller(), &id).await?;
    authz.allow().await?;
    Ok(Json(json!({"role": role_json(&s, &r, CUSTOM)})))
}

#[derive(Deserialize)]
struct RoleBody<T> {
    role: T,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleCreate {
    display_name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    policy: Value,
    #[serde(default)]
    description_cn: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolePatch {
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    policy: Option<Value>,
    #[serde(default)]
    description_cn: Option<String>,
}

fn check_type(kind: Option<&str>) -> KResult<()> {
    match kind {
        None | Some("AX" | "XA" | "AA") => Ok(()),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid input for field 'role.type': {other:?} is not one of \"AX\", \"XA\", \"AA\"."
        ))),
    }
}

async fn create_custom(
    State(s): St,
    authz: KAuthz,
    ApiJson(b, _): KJson<RoleBody<RoleCreate>>,
) -> KResult<impl IntoResponse> {
    let r = b.role;
    check_type(r.kind.as_deref())?;
    let _ = r.description_cn;
    let c = authz.allow().await?;
    let req = PolicyCreate {
        display_name: r.display_name,
        description: r.description.unwrap_or_default(),
        policy: r.policy.to_string(),
    };
    let created = s.iam.create_policy(&c, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"role": role_json(&s, &created, CUSTOM)})),
    ))
}

async fn update_custom(
    State(s): St,
    authz: KAuthz,
    Path(id): Path<String>,
    ApiJson(b, _): KJson<RoleBody<RolePatch>>,
) -> KResult<Json<Value>> {
    let r = b.role;
    check_type(r.kind.as_deref())?;
    let _ = r.description_cn;
    s.iam.get_role(authz.caller(), &id).await?;
    let c = authz.allow().await?;
    let patch = PolicyPatch {
        display_name: r.display_name,
        description: r.description,
        policy: r.policy.map(|p| p.to_string()),
    };
    let updated = s.iam.update_policy(&c, &id, patch).await?;
    Ok(Json(json!({"role": role_json(&s, &updated, CUSTOM)})))
}

async fn delete_custom(State(s): St, authz: KAuthz, Path(id): Path<String>) -> KResult<StatusCode> {
    s.iam.get_role(authz.caller(), &id).await?;
    let c = authz.allow().await?;
    s.iam.delete_policy(&c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// grants: the same four operations for each kind of scope

/// A kind of scope grants are made on, as its routes name it.
trait GrantKind: Send + Sync + 'static {
    fn target(scope_id: String) -> GrantTarget;
    /// The listing path of a group's grants on `scope_id`.
    fn list_path(scope_id: &str, group: &str) -> String;
}

struct OnProject;
impl GrantKind for OnProject {
    fn target(id: String) -> GrantTarget {
        GrantTarget::Project(id)
    }
    fn list_path(p: &str, g: &str) -> String {
        format!("/identity/v3/projects/{p}/groups/{g}/roles")
    }
}

struct OnAllProjects;
impl GrantKind for OnAllProjects {
    fn target(id: String) -> GrantTarget {
        GrantTarget::AllProjects(id)
    }
    fn list_path(d: &str, g: &str) -> String {
        format!("/identity/v3/OS-INHERIT/domains/{d}/groups/{g}/roles/inherited_to_projects")
    }
}

struct OnDomain;
impl GrantKind for OnDomain {
    fn target(id: String) -> GrantTarget {
        GrantTarget::Domain(id)
    }
    fn list_path(d: &str, g: &str) -> String {
        format!("/identity/v3/domains/{d}/groups/{g}/roles")
    }
}

struct OnEnterpriseProject;
impl GrantKind for OnEnterpriseProject {
    fn target(id: String) -> GrantTarget {
        GrantTarget::EnterpriseProject(id)
    }
    fn list_path(e: &str, g: &str) -> String {
        format!("/identity/v3.0/OS-PERMISSION/enterprise-projects/{e}/groups/{g}/roles")
    }
}

async fn grant_list<K: GrantKind>(
    State(s): St,
    authz: KAuthz,
    Path((scope, group)): Path<(String, String)>,
) -> KResult<Json<Value>> {
    let path = K::list_path(&scope, &group);
    let t = K::target(scope);
    s.iam.check_visible(authz.caller(), &group, &t, "").await?;
    let c = authz.allow().await?;
    let roles = s.iam.list_grants(&c, &group, &t).await?;
    let items: Vec<Value> = roles.iter().map(|r| role_json(&s, r, ROLES)).collect();
    Ok(Json(
        json!({"roles": items, "links": {"self": s.url(&path), "previous": null, "next": null}}),
    ))
}

async fn grant_put<K: GrantKind>(
    State(s): St,
    authz: KAuthz,
    Path((scope, group, role)): Path<(String, String, String)>,
) -> KResult<StatusCode> {
    let t = K::target(scope);
    s.iam
        .check_visible(authz.caller(), &group, &t, &role)
        .await?;
    let c = authz.allow().await?;
    s.iam.put_grant(&c, &group, &t, &role).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn grant_check<K: GrantKind>(
    State(s): St,
    authz: KAuthz,
    Path((scope, group, role)): Path<(String, String, String)>,
) -> KResult<StatusCode> {
    let t = K::target(scope);
    s.iam
        .check_visible(authz.caller(), &group, &t, &role)
        .await?;
    let c = authz.allow().await?;
    s.iam.check_grant(&c, &group, &t, &role).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn grant_delete<K: GrantKind>(
    State(s): St,
    authz: KAuthz,
    Path((scope, group, role)): Path<(String, String, String)>,
) -> KResult<StatusCode> {
    let t = K::target(scope);
    s.iam
        .check_visible(authz.caller(), &group, &t, &role)
        .await?;
    let c = authz.allow().await?;
    s.iam.delete_grant(&c, &group, &t, &role).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// enterprise projects

fn ep_json(e: &EnterpriseProjectRec) -> Value {
    json!({
        "id": e.id, "name": e.name, "description": e.description,
        "status": if e.enabled { 1 } else { 2 }, "type": "prod",
        "created_at": micros_z(e.created_at), "updated_at": micros_z(e.updated_at),
    })
}

async fn list_eps(
    State(s): St,
    authz: KAuthz,
    ApiQuery(q, _): ApiQuery<NameQuery, Keystone>,
) -> KResult<Json<Value>> {
    let c = authz.allow().await?;
    let eps: Vec<Value> = s
        .iam
        .list_enterprise_projects(&c, q.name.as_deref())
        .await?
        .iter()
        .map(ep_json)
        .collect();
    let n = eps.len();
    Ok(Json(json!({"enterprise_projects": eps, "total_count": n})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EpCreate {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EpPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
}

async fn create_ep(
    State(s): St,
    authz: KAuthz,
    ApiJson(b, _): KJson<EpCreate>,
) -> KResult<impl IntoResponse> {
    if b.kind.as_deref().is_some_and(|k| k != "prod" && k != "poc") {
        return Err(ApiError::bad_request(
            "Invalid input for field 'type': expected \"prod\" or \"poc\".",
        ));
    }
    let c = authz.allow().await?;
    let ep = s
        .iam
        .create_enterprise_project(&c, b.name, b.description.unwrap_or_default())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"enterprise_project": ep_json(&ep)})),
    ))
}

async fn get_ep(State(s): St, authz: KAuthz, Path(id): Path<String>) -> KResult<Json<Value>> {
    let ep = s.iam.get_enterprise_project(authz.caller(), &id).await?;
    authz.allow().await?;
    Ok(Json(json!({"enterprise_project": ep_json(&ep)})))
}

async fn update_ep(
    State(s): St,
    authz: KAuthz,
    Path(id): Path<String>,
    ApiJson(b, _): KJson<EpPatch>,
) -> KResult<Json<Value>> {
    s.iam.get_enterprise_project(authz.caller(), &id).await?;
    let c = authz.allow().await?;
    let patch = EnterpriseProjectPatch {
        name: b.name,
        description: b.description,
        enabled: b.enabled,
    };
    let ep = s.iam.update_enterprise_project(&c, &id, patch).await?;
    Ok(Json(json!({"enterprise_project": ep_json(&ep)})))
}

async fn delete_ep(State(s): St, authz: KAuthz, Path(id): Path<String>) -> KResult<StatusCode> {
    s.iam.get_enterprise_project(authz.caller(), &id).await?;
    let c = authz.allow().await?;
    s.iam.delete_enterprise_project(&c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// simulation

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimulateBody {
    simulate: SimulateReq,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimulateReq {
    user_id: String,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    enterprise_project_id: Option<String>,
    #[serde(default)]
    actions: Option<Vec<String>>,
    #[serde(default)]
    route: Option<RouteReq>,
    #[serde(default)]
    context: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteReq {
    method: String,
    path: String,
    #[serde(default)]
    body_key: Option<String>,
}

async fn simulate(
    State(s): St,
    authz: KAuthz,
    ApiJson(b, _): KJson<SimulateBody>,
) -> KResult<Json<Value>> {
    let r = b.simulate;
    let what = match (r.actions, r.route) {
        (Some(a), None) => SimulateWhat::Actions(a),
        (None, Some(rt)) => SimulateWhat::Route {
            method: rt.method,
            path: rt.path,
            body_key: rt.body_key,
        },
        _ => {
            return Err(ApiError::bad_request(
                "Give exactly one of 'actions' and 'route'.",
            ))
        }
    };
    let c = authz.allow().await?;
    let req = SimulateRequest {
        user_id: r.user_id,
        project_id: r.project_id,
        enterprise_project_id: r.enterprise_project_id,
        what,
        context: r.context,
    };
    let outcome = s.iam.simulate(&c, req).await?;
    let results: Vec<Value> = outcome
        .results
        .iter()
        .map(|r| {
            json!({
                "action": r.action,
                "decision": r.decision.as_str(),
                "scope": r.scope.map(|s| s.as_str()).unwrap_or("none"),
                "matched": r.matched.iter().map(|m| json!({
                    "policy_id": &*m.policy_id, "policy_name": &*m.policy_name, "statement": m.statement,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(
        json!({"decision": outcome.decision.as_str(), "results": results}),
    ))
}

// ---------------------------------------------------------------------------------------------
// role assignments

/// Flags of `GET /v3/role_assignments` are true when present with any value but `0`, as
/// Keystone reads them.
fn flag(pairs: &[(String, String)], key: &str) -> bool {
    pairs.iter().any(|(k, v)| k == key && v != "0")
}

/// Keystone's query of `GET /v3/role_assignments`.
fn assignment_query(pairs: &[(String, String)]) -> KResult<(AssignmentQuery, bool)> {
    let one = |key: &str| -> KResult<Option<String>> {
        let mut vals = pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone());
        let first = vals.next();
        if vals.next().is_some() {
            return Err(ApiError::bad_request(format!(
                "{key} is given more than once."
            )));
        }
        Ok(first)
    };
    let q = AssignmentQuery {
        user_id: one("user.id")?,
        group_id: one("group.id")?,
        role_id: one("role.id")?,
        project_id: one("scope.project.id")?,
        domain_id: one("scope.domain.id")?,
        inherited: one("scope.OS-INHERIT:inherited_to")?.map(|v| v == "projects"),
        system: one("scope.system")?.as_deref() == Some("all"),
        effective: flag(pairs, "effective"),
        include_subtree: flag(pairs, "include_subtree"),
    };
    Ok((q, flag(pairs, "include_names")))
}

async fn role_assignments(
    State(s): St,
    authz: KAuthz,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    ApiQuery(pairs, _): ApiQuery<Vec<(String, String)>, Keystone>,
) -> KResult<Json<Value>> {
    let (q, names) = assignment_query(&pairs)?;
    let c = authz.allow().await?;
    let list = s.iam.role_assignments(&c, &q).await?;
    let n = if names {
        Some(s.iam.assignment_names(&list).await?)
    } else {
        None
    };
    let mut out = Vec::with_capacity(list.len());
    for a in &list {
        let url = |p: String| s.url(&format!("/identity/v3{p}"));
        let (actor_key, actor_id) = match &a.to {
            Assignee::User(u) => ("user", u.as_str()),
            Assignee::Group(g) => ("group", g.as_str()),
        };
        // The grant the assignment comes from: the group's (effective), on the domain for
        // inherited ones.
        let (grant_actor, grant_id) = match &a.via_group {
            Some(g) => ("groups", g.as_str()),
            None => (
                if actor_key == "user" {
                    "users"
                } else {
                    "groups"
                },
                actor_id,
            ),
        };
        let mut scope = match &a.on {
            AssignedOn::Project(p) => json!({"project": {"id": p}}),
            AssignedOn::Domain(d) => json!({"domain": {"id": d}}),
        };
        let link = match (&a.on, a.inherited, &a.via_domain) {
            (_, true, Some(d)) | (AssignedOn::Domain(d), true, None) => url(format!(
                "/OS-INHERIT/domains/{d}/{grant_actor}/{grant_id}/roles/{}/inherited_to_projects",
                a.role_id
            )),
            (AssignedOn::Project(p), _, _) => url(format!(
                "/projects/{p}/{grant_actor}/{grant_id}/roles/{}",
                a.role_id
            )),
            (AssignedOn::Domain(d), _, _) => url(format!(
                "/domains/{d}/{grant_actor}/{grant_id}/roles/{}",
                a.role_id
            )),
        };
        if a.inherited {
            scope["OS-INHERIT:inherited_to"] = json!("projects");
        }
        let mut links = json!({"assignment": link});
        if let Some(g) = &a.via_group {
            links["membership"] = json!(url(format!("/groups/{g}/users/{actor_id}")));
        }
        let mut role = json!({"id": a.role_id});
        let mut actor = json!({"id": actor_id});
        if let Some(n) = &n {
            let domain = |id: &str| json!({"id": id, "name": n.domains.get(id).cloned().unwrap_or_default()});
            role["name"] = json!(n.roles.get(&a.role_id).cloned().unwrap_or_default());
            let named = if actor_key == "user" {
                n.users.get(actor_id)
            } else {
                n.groups.get(actor_id)
            };
            let (name, d) = named.cloned().unwrap_or_default();
            actor = json!({"id": actor_id, "name": name, "domain": domain(&d)});
            match &a.on {
                AssignedOn::Project(p) => {
                    let (name, d) = n.projects.get(p).cloned().unwrap_or_default();
                    scope["project"] = json!({"id": p, "name": name, "domain": domain(&d)});
                }
                AssignedOn::Domain(d) => scope["domain"] = domain(d),
            }
        }
        let mut entry = json!({"role": role, "scope": scope, "links": links});
        entry[actor_key] = actor;
        out.push(entry);
    }
    let self_link = match uri.query() {
        Some(q) => s.url(&format!("/identity/v3/role_assignments?{q}")),
        None => s.url("/identity/v3/role_assignments"),
    };
    Ok(Json(json!({
        "role_assignments": out,
        "links": {"self": self_link, "previous": null, "next": null},
    })))
}
