//! The Identity API (Keystone v3 subset) under `/identity`.

mod access_keys;
mod credentials;
mod wire;

use crate::error::{ApiError, ApiResult, Keystone};
use crate::extract::{ApiJson, ApiQuery, Authz};
use crate::routes::RouteTable;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;
use stratus_services::directory::{
    GroupCreate, GroupPatch, ProjectCreate, ProjectPatch, UserCreate, UserPatch,
};
use stratus_services::model::{ProjectFilter, UserFilter};
use wire::*;

type KResult<T> = ApiResult<T, Keystone>;
type KJson<T> = ApiJson<T, Keystone>;
type KQuery<T> = ApiQuery<T, Keystone>;
type KAuthz = Authz<Keystone>;
type St = State<Arc<AppState>>;

const SUBJECT_TOKEN: &str = "x-subject-token";
/// The Identity API version stratus implements.
const VERSION_ID: &str = "v3.14";

/// Every Identity route, with full path templates (as in the action catalogue).
pub fn routes() -> RouteTable<Arc<AppState>> {
    use axum::http::Method as M;
    const I: &str = "/identity";
    let p = |s: &str| format!("{I}{s}");
    RouteTable::default()
        .at(M::GET, I, versions)
        .at(M::GET, &p("/v3"), version)
        .at(M::GET, &p("/v3/"), version)
        .at(M::POST, &p("/v3/auth/tokens"), issue_token)
        .at(M::GET, &p("/v3/auth/tokens"), validate_token)
        .at(M::DELETE, &p("/v3/auth/tokens"), revoke_token)
        .at(M::GET, &p("/v3/auth/projects"), auth_projects)
        .at(M::GET, &p("/v3/auth/domains"), auth_domains)
        .at(M::GET, &p("/v3/auth/catalog"), auth_catalog)
        .at(M::GET, &p("/v3/domains"), list_domains)
        .at(M::GET, &p("/v3/domains/{id}"), get_domain)
        .at(M::GET, &p("/v3/regions"), list_regions)
        .at(M::GET, &p("/v3/services"), list_services)
        .at(M::GET, &p("/v3/endpoints"), list_endpoints)
        .at(M::GET, &p("/v3/projects"), list_projects)
        .at(M::POST, &p("/v3/projects"), create_project)
        .at(M::GET, &p("/v3/projects/{id}"), get_project)
        .at(M::PATCH, &p("/v3/projects/{id}"), update_project)
        .at(M::DELETE, &p("/v3/projects/{id}"), delete_project)
        .at(M::GET, &p("/v3/users"), list_users)
        .at(M::POST, &p("/v3/users"), create_user)
        .at(M::GET, &p("/v3/users/{id}"), get_user)
        .at(M::PATCH, &p("/v3/users/{id}"), update_user)
        .at(M::DELETE, &p("/v3/users/{id}"), delete_user)
        .at(M::POST, &p("/v3/users/{id}/password"), change_password)
        .at(M::GET, &p("/v3/users/{id}/groups"), user_groups)
        .at(M::GET, &p("/v3/users/{id}/projects"), user_projects)
        .at(M::GET, &p("/v3/groups"), list_groups)
        .at(M::POST, &p("/v3/groups"), create_group)
        .at(M::GET, &p("/v3/groups/{id}"), get_group)
        .at(M::PATCH, &p("/v3/groups/{id}"), update_group)
        .at(M::DELETE, &p("/v3/groups/{id}"), delete_group)
        .at(M::GET, &p("/v3/groups/{id}/users"), group_users)
        .at(M::PUT, &p("/v3/groups/{id}/users/{user_id}"), add_member)
        .at(M::HEAD, &p("/v3/groups/{id}/users/{user_id}"), check_member)
        .at(
            M::DELETE,
            &p("/v3/groups/{id}/users/{user_id}"),
            remove_member,
        )
        .merge(credentials::routes())
        .merge(access_keys::routes())
}

fn version_json(s: &AppState) -> Value {
    json!({
        "id": VERSION_ID, "status": "stable", "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": s.url("/identity/v3/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    })
}

async fn versions(State(s): St) -> impl IntoResponse {
    (
        StatusCode::MULTIPLE_CHOICES,
        Json(json!({"versions": {"values": [version_json(&s)]}})),
    )
}

async fn version(State(s): St) -> impl IntoResponse {
    Json(json!({"version": version_json(&s)}))
}

// ---------------------------------------------------------------------------------------------
// tokens

fn with_subject<B: serde::Serialize>(
    token: &str,
    status: StatusCode,
    body: B,
) -> KResult<Response> {
    let mut headers = HeaderMap::new();
    let v = HeaderValue::from_str(token).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "token is not a valid header value",
        )
    })?;
    headers.insert(SUBJECT_TOKEN, v);
    Ok((status, headers, Json(body)).into_response())
}

fn subject(headers: &HeaderMap) -> KResult<String> {
    headers
        .get(SUBJECT_TOKEN)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_request("The X-Subject-Token header is required."))
}

async fn issue_token(
    State(s): St,
    q: KQuery<CatalogQuery>,
    ApiJson(body, _): KJson<AuthBody>,
) -> KResult<Response> {
    let req = body.into_request().map_err(ApiError::bad_request)?;
    let issued = s.identity.authenticate(req).await?;
    let body = token_body(&s, &issued.info, q.0.nocatalog.is_none());
    with_subject(&issued.token, StatusCode::CREATED, body)
}

async fn validate_token(
    State(s): St,
    authz: KAuthz,
    q: KQuery<CatalogQuery>,
    headers: HeaderMap,
) -> KResult<Response> {
    let token = subject(&headers)?;
    // A token validating itself was validated by the extractor already (unless the request
    // was signed: then the extractor authenticated the signature, not `X-Auth-Token`).
    let own = !stratus_services::access_keys::is_signed(authz.caller())
        && headers
            .get(crate::extract::AUTH_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            == Some(token.as_str());
    let info = if own {
        authz.caller().clone()
    } else {
        s.identity.check_subject(authz.caller(), &token).await?
    };
    let is_self = info.user.id == authz.caller().user.id;
    authz.allow_self(is_self).await?;
    let body = token_body(&s, &info, q.0.nocatalog.is_none());
    with_subject(&token, StatusCode::OK, body)
}

async fn revoke_token(State(s): St, authz: KAuthz, headers: HeaderMap) -> KResult<StatusCode> {
    let token = subject(&headers)?;
    let info = s.identity.check_subject(authz.caller(), &token).await?;
    let is_self = info.user.id == authz.caller().user.id;
    let by = authz.allow_self(is_self).await?;
    s.identity.revoke(&by, &info).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn auth_projects(State(s): St, authz: KAuthz) -> KResult<Json<Value>> {
    let c = authz.allow().await?;
    let items = s
        .directory
        .my_projects(&c)
        .await?
        .iter()
        .map(|p| project_json(&s, p))
        .collect();
    Ok(Json(list_json(
        &s,
        "projects",
        "/identity/v3/auth/projects",
        items,
    )))
}

async fn auth_domains(State(s): St, authz: KAuthz) -> KResult<Json<Value>> {
    let c = authz.allow().await?;
    let items = vec![domain_json(&s, &c.user_domain)];
    Ok(Json(list_json(
        &s,
        "domains",
        "/identity/v3/auth/domains",
        items,
    )))
}

async fn auth_catalog(State(s): St, authz: KAuthz) -> KResult<Json<Value>> {
    let c = authz.allow().await?;
    Ok(Json(json!({
        "catalog": catalog(&s, c.project().map(|p| p.id.as_str())),
        "links": {"self": s.url("/identity/v3/auth/catalog"), "previous": null, "next": null},
    })))
}

// ---------------------------------------------------------------------------------------------
// domains, regions, services, endpoints

async fn list_domains(
    State(s): St,
    authz: KAuthz,
    ApiQuery(q, _): KQuery<ListQuery>,
) -> KResult<Json<Value>> {
    let c = authz.allow().await?;
    let items = s
        .directory
        .list_domains(&c, q.name.as_deref())
        .await?
        .iter()
        .map(|d| domain_json(&s, d))
        .collect();
    Ok(Json(list_json(
        &s,
        "domains",
        "/identity/v3/domains",
        items,
    )))
}

async fn get_domain(State(s): St, authz: KAuthz, Path(id): Path<String>) -> KResult<Json<Value>> {
    let d = s.directory.get_domain(authz.caller(), &id).await?;
    let is_self = d.id == authz.caller().user.domain_id;
    authz.allow_self(is_self).await?;
    Ok(Json(json!({"domain": domain_json(&s, &d)})))
}

async fn list_regions(State(s): St, authz: KAuthz) -> KResult<Json<Value>> {
    authz.allow().await?;
    let items = s
        .directory
        .list_regions()
        .await?
        .into_iter()
        .map(|(id, description)| {
            json!({"id": id, "description": description, "parent_region_id": null,
                   "links": {"self": s.url(&format!("/identity/v3/regions/{id}"))}})
        })
        .collect();
    Ok(Json(list_json(
        &s,
        "regions",
        "/identity/v3/regions",
        items,
    )))
}

async fn list_services(State(s): St, authz: KAuthz) -> KResult<Json<Value>> {
    authz.allow().await?;
    let mut items: Vec<Value> = Vec::new();
    for c in s.identity.catalog() {
        if !items.iter().any(|v| v["id"] == c.service_id.as_str()) {
            items.push(json!({
                "id": c.service_id, "type": c.service_type, "name": c.service_name, "enabled": true,
                "links": {"self": s.url(&format!("/identity/v3/services/{}", c.service_id))},
            }));
        }
    }
    Ok(Json(list_json(
        &s,
        "services",
        "/identity/v3/services",
        items,
    )))
}

async fn list_endpoints(State(s): St, authz: KAuthz) -> KResult<Json<Value>> {
    authz.allow().await?;
    let items = s
        .identity
        .catalog()
        .iter()
        .map(|c| {
            json!({
                "id": c.id, "service_id": c.service_id, "interface": c.interface, "region": c.region_id,
                "region_id": c.region_id, "url": s.url(&c.path), "enabled": true,
                "links": {"self": s.url(&format!("/identity/v3/endpoints/{}", c.id))},
            })
        })
        .collect();
    Ok(Json(list_json(
        &s,
        "endpoints",
        "/identity/v3/endpoints",
        items,
    )))
}

// ---------------------------------------------------------------------------------------------
// projects

async fn list_projects(
    State(s): St,
    authz: KAuthz,
    ApiQuery(q, _): KQuery<ListQuery>,
) -> KResult<Json<Value>> {
    let enabled = q.enabled().map_err(ApiError::bad_request)?;
    let c = authz.allow().await?;
    let f = ProjectFilter {
        domain_id: q.domain_id.as_deref(),
        name: q.name.as_deref(),
        enabled,
    };
    let items = s
        .directory
        .list_projects(&c, f)
        .await?
        .iter()
        .map(|p| project_json(&s, p))
        .collect();
    Ok(Json(list_json(
        &s,
        "projects",
        "/identity/v3/projects",
        items,
    )))
}

async fn create_project(
    State(s): St,
    authz: KAuthz,
    ApiJson(b, _): KJson<ProjectCreateBody>,
) -> KResult<impl IntoResponse> {
    let p = b.project;
    if p.is_domain == Some(true) {
        return Err(ApiError::bad_request(
            "Creating domains as projects is not supported.",
        ));
    }
    let c = authz.allow().await?;
    let req = ProjectCreate {
        name: p.name,
        domain_id: p.domain_id,
        description: p.description.unwrap_or_default(),
        enabled: p.enabled.unwrap_or(true),
    };
    let created = s.directory.create_project(&c, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"project": project_json(&s, &created)})),
    ))
}

async fn get_project(State(s): St, authz: KAuthz, Path(id): Path<String>) -> KResult<Json<Value>> {
    let p = s.directory.get_project(authz.caller(), &id).await?;
    let is_self = authz.caller().project().is_some_and(|own| own.id == p.id);
    authz.allow_self(is_self).await?;
    Ok(Json(json!({"project": project_json(&s, &p)})))
}

async fn update_project(
    State(s): St,
    authz: KAuthz,
    Path(id): Path<String>,
    ApiJson(b, _): KJson<ProjectPatchBody>,
) -> KResult<Json<Value>> {
    s.directory.get_project(authz.caller(), &id).await?;
    let c = authz.allow().await?;
    let p = b.project;
    let patch = ProjectPatch {
        name: p.name,
        description: p.description,
        enabled: p.enabled,
    };
    let updated = s.directory.update_project(&c, &id, patch).await?;
    Ok(Json(json!({"project": project_json(&s, &updated)})))
}

async fn delete_project(
    State(s): St,
    authz: KAuthz,
    Path(id): Path<String>,
) -> KResult<StatusCode> {
    s.directory.get_project(authz.caller(), &id).await?;
    let c = authz.allow().await?;
    s.directory.delete_project(&c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// users

async fn list_users(
    State(s): St,
    authz: KAuthz,
    ApiQuery(q, _): KQuery<ListQuery>,
) -> KResult<Json<Value>> {
    let enabled = q.enabled().map_err(ApiError::bad_request)?;
    let c = authz.allow().await?;
    let f = UserFilter {
        domain_id: q.domain_id.as_deref(),
        name: q.name.as_deref(),
        enabled,
    };
    let items = s
        .directory
        .list_users(&c, f)
        .await?
        .iter()
        .map(|u| user_json(&s, u))
        .collect();
    Ok(Json(list_json(&s, "users", "/identity/v3/users", items)))
}

async fn create_user(
    State(s): St,
    authz: KAuthz,
    ApiJson(b, _): KJson<UserCreateBody>,
) -> KResult<impl IntoResponse> {
    let c = authz.allow().await?;
    let u = b.user;
    let req = UserCreate {
        name: u.name,
        domain_id: u.domain_id,
        password: u.password,
        description: u.description.unwrap_or_default(),
        email: u.email,
        enabled: u.enabled.unwrap_or(true),
        default_project_id: u.default_project_id,
    };
    let created = s.directory.create_user(&c, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"user": user_json(&s, &created)})),
    ))
}

/// Resolves the user a route names (404 if not visible) and decides, self-service aware.
async fn on_user(
    s: &AppState,
    authz: KAuthz,
    id: &str,
) -> KResult<(
    stratus_services::authz::Authorized,
    stratus_services::model::UserRec,
)> {
    let u = s.directory.get_user(authz.caller(), id).await?;
    let is_self = u.id == authz.caller().user.id;
    Ok((authz.allow_self(is_self).await?, u))
}

async fn get_user(State(s): St, authz: KAuthz, Path(id): Path<String>) -> KResult<Json<Value>> {
    let (_, u) = on_user(&s, authz, &id).await?;
    Ok(Json(json!({"user": user_json(&s, &u)})))
}

async fn update_user(
    State(s): St,
    authz: KAuthz,
    Path(id): Path<String>,
    ApiJson(b, _): KJson<UserPatchBody>,
) -> KResult<Json<Value>> {
    let (c, _) = on_user(&s, authz, &id).await?;
    let u = b.user;
    let patch = UserPatch {
        name: u.name,
        description: u.description,
        email: u.email,
        enabled: u.enabled,
        password: u.password,
        default_project_id: u.default_project_id,
    };
    let updated = s.directory.update_user(&c, &id, patch).await?;
    Ok(Json(json!({"user": user_json(&s, &updated)})))
}

async fn delete_user(State(s): St, authz: KAuthz, Path(id): Path<String>) -> KResult<StatusCode> {
    let (c, _) = on_user(&s, authz, &id).await?;
    s.directory.delete_user(&c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn change_password(
    State(s): St,
    authz: KAuthz,
    Path(id): Path<String>,
    ApiJson(b, _): KJson<PasswordChangeBody>,
) -> KResult<StatusCode> {
    let (c, _) = on_user(&s, authz, &id).await?;
    s.directory
        .change_password(&c, &id, b.user.original_password, b.user.password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn user_groups(State(s): St, authz: KAuthz, Path(id): Path<String>) -> KResult<Json<Value>> {
    let (c, _) = on_user(&s, authz, &id).await?;
    let items = s
        .directory
        .user_groups(&c, &id)
        .await?
        .iter()
        .map(|g| group_json(&s, g))
        .collect();
    Ok(Json(list_json(
        &s,
        "groups",
        &format!("/identity/v3/users/{id}/groups"),
        items,
    )))
}

async fn user_projects(
    State(s): St,
    authz: KAuthz,
    Path(id): Path<String>,
) -> KResult<Json<Value>> {
    let (c, _) = on_user(&s, authz, &id).await?;
    let items = s
        .directory
        .user_projects(&c, &id)
        .await?
        .iter()
        .map(|p| project_json(&s, p))
        .collect();
    Ok(Json(list_json(
        &s,
        "projects",
        &format!("/identity/v3/users/{id}/projects"),
        items,
    )))
}

// ---------------------------------------------------------------------------------------------
// groups

async fn list_groups(
    State(s): St,
    authz: KAuthz,
    ApiQuery(q, _): KQuery<ListQuery>,
) -> KResult<Json<Value>> {
    let c = authz.allow().await?;
    let items = s
        .directory
        .list_groups(&c, q.domain_id.as_deref(), q.name.as_deref())
        .await?
        .iter()
        .map(|g| group_json(&s, g))
        .collect();
    Ok(Json(list_json(&s, "groups", "/identity/v3/groups", items)))
}

async fn create_group(
    State(s): St,
    authz: KAuthz,
    ApiJson(b, _): KJson<GroupCreateBody>,
) -> KResult<impl IntoResponse> {
    let c = authz.allow().await?;
    let g = b.group;
    let req = GroupCreate {
        name: g.name,
        domain_id: g.domain_id,
        description: g.description.unwrap_or_default(),
    };
    let created = s.directory.create_group(&c, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"group": group_json(&s, &created)})),
    ))
}

/// Resolves the group a route names (404 if not visible), then decides.
async fn on_group(
    s: &AppState,
    authz: KAuthz,
    id: &str,
) -> KResult<(
    stratus_services::authz::Authorized,
    stratus_services::model::GroupRec,
)> {
    let g = s.directory.get_group(authz.caller(), id).await?;
    Ok((authz.allow().await?, g))
}

async fn get_group(State(s): St, authz: KAuthz, Path(id): Path<String>) -> KResult<Json<Value>> {
    let (_, g) = on_group(&s, authz, &id).await?;
    Ok(Json(json!({"group": group_json(&s, &g)})))
}

async fn update_group(
    State(s): St,
    authz: KAuthz,
    Path(id): Path<String>,
    ApiJson(b, _): KJson<GroupPatchBody>,
) -> KResult<Json<Value>> {
    let (c, _) = on_group(&s, authz, &id).await?;
    let patch = GroupPatch {
        name: b.group.name,
        description: b.group.description,
    };
    let g = s.directory.update_group(&c, &id, patch).await?;
    Ok(Json(json!({"group": group_json(&s, &g)})))
}

async fn delete_group(State(s): St, authz: KAuthz, Path(id): Path<String>) -> KResult<StatusCode> {
    let (c, _) = on_group(&s, authz, &id).await?;
    s.directory.delete_group(&c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn group_users(State(s): St, authz: KAuthz, Path(id): Path<String>) -> KResult<Json<Value>> {
    let (c, _) = on_group(&s, authz, &id).await?;
    let items = s
        .directory
        .group_members(&c, &id)
        .await?
        .iter()
        .map(|u| user_json(&s, u))
        .collect();
    Ok(Json(list_json(
        &s,
        "users",
        &format!("/identity/v3/groups/{id}/users"),
        items,
    )))
}

/// Resolves both ends of a membership (404 if either is not visible), then decides.
async fn on_membership(
    s: &AppState,
    authz: KAuthz,
    g: &str,
    u: &str,
) -> KResult<stratus_services::authz::Authorized> {
    s.directory.get_group(authz.caller(), g).await?;
    s.directory.get_user(authz.caller(), u).await?;
    authz.allow().await
}

async fn add_member(
    State(s): St,
    authz: KAuthz,
    Path((g, u)): Path<(String, String)>,
) -> KResult<StatusCode> {
    let c = on_membership(&s, authz, &g, &u).await?;
    s.directory.add_member(&c, &g, &u).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn check_member(
    State(s): St,
    authz: KAuthz,
    Path((g, u)): Path<(String, String)>,
) -> KResult<StatusCode> {
    let c = on_membership(&s, authz, &g, &u).await?;
    s.directory.check_member(&c, &g, &u).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_member(
    State(s): St,
    authz: KAuthz,
    Path((g, u)): Path<(String, String)>,
) -> KResult<StatusCode> {
    let c = on_membership(&s, authz, &g, &u).await?;
    s.directory.remove_member(&c, &g, &u).await?;
    Ok(StatusCode::NO_CONTENT)
}
