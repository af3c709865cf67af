//! The Identity API (Keystone v3 subset) under `/identity`.

mod wire;

use crate::error::{ApiError, ApiResult, Keystone};
use crate::extract::{ApiJson, ApiQuery, Caller};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;
use stratus_services::identity::{
    GroupCreate, GroupPatch, ProjectCreate, ProjectPatch, UserCreate, UserPatch,
};
use stratus_services::store::{ProjectFilter, UserFilter};
use wire::*;

type KResult<T> = ApiResult<T, Keystone>;
type KJson<T> = ApiJson<T, Keystone>;
type KQuery<T> = ApiQuery<T, Keystone>;
type KCaller = Caller<Keystone>;
type St = State<Arc<AppState>>;

const SUBJECT_TOKEN: &str = "x-subject-token";
/// The Identity API version stratus implements.
const VERSION_ID: &str = "v3.14";

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(versions))
        .route("/v3", get(version))
        .route("/v3/", get(version))
        .route(
            "/v3/auth/tokens",
            post(issue_token).get(validate_token).delete(revoke_token),
        )
        .route("/v3/auth/projects", get(auth_projects))
        .route("/v3/auth/domains", get(auth_domains))
        .route("/v3/auth/catalog", get(auth_catalog))
        .route("/v3/domains", get(list_domains))
        .route("/v3/domains/{id}", get(get_domain))
        .route("/v3/regions", get(list_regions))
        .route("/v3/services", get(list_services))
        .route("/v3/endpoints", get(list_endpoints))
        .route("/v3/projects", get(list_projects).post(create_project))
        .route(
            "/v3/projects/{id}",
            get(get_project)
                .patch(update_project)
                .delete(delete_project),
        )
        .route("/v3/users", get(list_users).post(create_user))
        .route(
            "/v3/users/{id}",
            get(get_user).patch(update_user).delete(delete_user),
        )
        .route("/v3/users/{id}/password", post(change_password))
        .route("/v3/users/{id}/groups", get(user_groups))
        .route("/v3/users/{id}/projects", get(user_projects))
        .route("/v3/groups", get(list_groups).post(create_group))
        .route(
            "/v3/groups/{id}",
            get(get_group).patch(update_group).delete(delete_group),
        )
        .route("/v3/groups/{id}/users", get(group_users))
        .route(
            "/v3/groups/{id}/users/{user_id}",
            put(add_member).head(check_member).delete(remove_member),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found(uri: axum::http::Uri) -> ApiError<Keystone> {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("The resource could not be found: {}.", uri.path()),
    )
}

async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> ApiError<Keystone> {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("The method {method} is not allowed for {}.", uri.path()),
    )
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
    Caller(c, _): KCaller,
    q: KQuery<CatalogQuery>,
    headers: HeaderMap,
) -> KResult<Response> {
    let token = subject(&headers)?;
    // A token validating itself was validated by the extractor already.
    let own = headers
        .get(crate::extract::AUTH_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        == Some(token.as_str());
    let info = if own {
        c
    } else {
        s.identity.check_subject(&c, &token).await?
    };
    let body = token_body(&s, &info, q.0.nocatalog.is_none());
    with_subject(&token, StatusCode::OK, body)
}

async fn revoke_token(
    State(s): St,
    Caller(c, _): KCaller,
    headers: HeaderMap,
) -> KResult<StatusCode> {
    let token = subject(&headers)?;
    let info = s.identity.check_subject(&c, &token).await?;
    s.identity.revoke(&info).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn auth_projects(State(s): St, Caller(c, _): KCaller) -> KResult<Json<Value>> {
    let items = s
        .identity
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

async fn auth_domains(State(s): St, Caller(c, _): KCaller) -> KResult<Json<Value>> {
    let items = vec![domain_json(&s, &c.user_domain)];
    Ok(Json(list_json(
        &s,
        "domains",
        "/identity/v3/auth/domains",
        items,
    )))
}

async fn auth_catalog(State(s): St, Caller(c, _): KCaller) -> KResult<Json<Value>> {
    Ok(Json(json!({
        "catalog": catalog(&s, c.project().map(|p| p.id.as_str())),
        "links": {"self": s.url("/identity/v3/auth/catalog"), "previous": null, "next": null},
    })))
}

// ---------------------------------------------------------------------------------------------
// domains, regions, services, endpoints

async fn list_domains(
    State(s): St,
    Caller(c, _): KCaller,
    ApiQuery(q, _): KQuery<ListQuery>,
) -> KResult<Json<Value>> {
    let items = s
        .identity
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

async fn get_domain(
    State(s): St,
    Caller(c, _): KCaller,
    Path(id): Path<String>,
) -> KResult<Json<Value>> {
    let d = s.identity.get_domain(&c, &id).await?;
    Ok(Json(json!({"domain": domain_json(&s, &d)})))
}

async fn list_regions(State(s): St, Caller(_c, _): KCaller) -> KResult<Json<Value>> {
    let items = s
        .identity
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

async fn list_services(State(s): St, Caller(_c, _): KCaller) -> KResult<Json<Value>> {
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

async fn list_endpoints(State(s): St, Caller(_c, _): KCaller) -> KResult<Json<Value>> {
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
    Caller(c, _): KCaller,
    ApiQuery(q, _): KQuery<ListQuery>,
) -> KResult<Json<Value>> {
    let f = ProjectFilter {
        domain_id: q.domain_id.as_deref(),
        name: q.name.as_deref(),
        enabled: q.enabled().map_err(ApiError::bad_request)?,
    };
    let items = s
        .identity
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
    Caller(c, _): KCaller,
    ApiJson(b, _): KJson<ProjectCreateBody>,
) -> KResult<impl IntoResponse> {
    let p = b.project;
    if p.is_domain == Some(true) {
        return Err(ApiError::bad_request(
            "Creating domains as projects is not supported.",
        ));
    }
    let created = s
        .identity
        .create_project(
            &c,
            ProjectCreate {
                name: p.name,
                domain_id: p.domain_id,
                description: p.description.unwrap_or_default(),
                enabled: p.enabled.unwrap_or(true),
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"project": project_json(&s, &created)})),
    ))
}

async fn get_project(
    State(s): St,
    Caller(c, _): KCaller,
    Path(id): Path<String>,
) -> KResult<Json<Value>> {
    let p = s.identity.get_project(&c, &id).await?;
    Ok(Json(json!({"project": project_json(&s, &p)})))
}

async fn update_project(
    State(s): St,
    Caller(c, _): KCaller,
    Path(id): Path<String>,
    ApiJson(b, _): KJson<ProjectPatchBody>,
) -> KResult<Json<Value>> {
    let p = b.project;
    let patch = ProjectPatch {
        name: p.name,
        description: p.description,
        enabled: p.enabled,
    };
    let updated = s.identity.update_project(&c, &id, patch).await?;
    Ok(Json(json!({"project": project_json(&s, &updated)})))
}

async fn delete_project(
    State(s): St,
    Caller(c, _): KCaller,
    Path(id): Path<String>,
) -> KResult<StatusCode> {
    s.identity.delete_project(&c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// users

async fn list_users(
    State(s): St,
    Caller(c, _): KCaller,
    ApiQuery(q, _): KQuery<ListQuery>,
) -> KResult<Json<Value>> {
    let f = UserFilter {
        domain_id: q.domain_id.as_deref(),
        name: q.name.as_deref(),
        enabled: q.enabled().map_err(ApiError::bad_request)?,
    };
    let items = s
        .identity
        .list_users(&c, f)
        .await?
        .iter()
        .map(|u| user_json(&s, u))
        .collect();
    Ok(Json(list_json(&s, "users", "/identity/v3/users", items)))
}

async fn create_user(
    State(s): St,
    Caller(c, _): KCaller,
    ApiJson(b, _): KJson<UserCreateBody>,
) -> KResult<impl IntoResponse> {
    let u = b.user;
    let created = s
        .identity
        .create_user(
            &c,
            UserCreate {
                name: u.name,
                domain_id: u.domain_id,
                password: u.password,
                description: u.description.unwrap_or_default(),
                email: u.email,
                enabled: u.enabled.unwrap_or(true),
                default_project_id: u.default_project_id,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"user": user_json(&s, &created)})),
    ))
}

async fn get_user(
    State(s): St,
    Caller(c, _): KCaller,
    Path(id): Path<String>,
) -> KResult<Json<Value>> {
    let u = s.identity.get_user(&c, &id).await?;
    Ok(Json(json!({"user": user_json(&s, &u)})))
}

async fn update_user(
    State(s): St,
    Caller(c, _): KCaller,
    Path(id): Path<String>,
    ApiJson(b, _): KJson<UserPatchBody>,
) -> KResult<Json<Value>> {
    let u = b.user;
    let patch = UserPatch {
        name: u.name,
        description: u.description,
        email: u.email,
        enabled: u.enabled,
        password: u.password,
        default_project_id: u.default_project_id,
    };
    let updated = s.identity.update_user(&c, &id, patch).await?;
    Ok(Json(json!({"user": user_json(&s, &updated)})))
}

async fn delete_user(
    State(s): St,
    Caller(c, _): KCaller,
    Path(id): Path<String>,
) -> KResult<StatusCode> {
    s.identity.delete_user(&c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn change_password(
    State(s): St,
    Caller(c, _): KCaller,
    Path(id): Path<String>,
    ApiJson(b, _): KJson<PasswordChangeBody>,
) -> KResult<StatusCode> {
    s.identity
        .change_password(&c, &id, b.user.original_password, b.user.password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn user_groups(
    State(s): St,
    Caller(c, _): KCaller,
    Path(id): Path<String>,
) -> KResult<Json<Value>> {
    let items = s
        .identity
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
    Caller(c, _): KCaller,
    Path(id): Path<String>,
) -> KResult<Json<Value>> {
    if id != c.user.id {
        s.identity
            .require_admin(&c, "identity:list_user_projects")?;
    }
    let items = s
        .identity
        .my_projects(&c)
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
    Caller(c, _): KCaller,
    ApiQuery(q, _): KQuery<ListQuery>,
) -> KResult<Json<Value>> {
    let items = s
        .identity
        .list_groups(&c, q.domain_id.as_deref(), q.name.as_deref())
        .await?
        .iter()
        .map(|g| group_json(&s, g))
        .collect();
    Ok(Json(list_json(&s, "groups", "/identity/v3/groups", items)))
}

async fn create_group(
    State(s): St,
    Caller(c, _): KCaller,
    ApiJson(b, _): KJson<GroupCreateBody>,
) -> KResult<impl IntoResponse> {
    let g = b.group;
    let created = s
        .identity
        .create_group(
            &c,
            GroupCreate {
                name: g.name,
                domain_id: g.domain_id,
                description: g.description.unwrap_or_default(),
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"group": group_json(&s, &created)})),
    ))
}

async fn get_group(
    State(s): St,
    Caller(c, _): KCaller,
    Path(id): Path<String>,
) -> KResult<Json<Value>> {
    let g = s.identity.get_group(&c, &id).await?;
    Ok(Json(json!({"group": group_json(&s, &g)})))
}

async fn update_group(
    State(s): St,
    Caller(c, _): KCaller,
    Path(id): Path<String>,
    ApiJson(b, _): KJson<GroupPatchBody>,
) -> KResult<Json<Value>> {
    let patch = GroupPatch {
        name: b.group.name,
        description: b.group.description,
    };
    let g = s.identity.update_group(&c, &id, patch).await?;
    Ok(Json(json!({"group": group_json(&s, &g)})))
}

async fn delete_group(
    State(s): St,
    Caller(c, _): KCaller,
    Path(id): Path<String>,
) -> KResult<StatusCode> {
    s.identity.delete_group(&c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn group_users(
    State(s): St,
    Caller(c, _): KCaller,
    Path(id): Path<String>,
) -> KResult<Json<Value>> {
    let items = s
        .identity
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

async fn add_member(
    State(s): St,
    Caller(c, _): KCaller,
    Path((g, u)): Path<(String, String)>,
) -> KResult<StatusCode> {
    s.identity.add_member(&c, &g, &u).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn check_member(
    State(s): St,
    Caller(c, _): KCaller,
    Path((g, u)): Path<(String, String)>,
) -> KResult<StatusCode> {
    s.identity.check_member(&c, &g, &u).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_member(
    State(s): St,
    Caller(c, _): KCaller,
    Path((g, u)): Path<(String, String)>,
) -> KResult<StatusCode> {
    s.identity.remove_member(&c, &g, &u).await?;
    Ok(StatusCode::NO_CONTENT)
}
