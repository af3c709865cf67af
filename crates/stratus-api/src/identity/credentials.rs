//! Application credentials (`/v3/users/{user_id}/application_credentials`), in Keystone's wire
//! format, and the enforcement of their access rules on every authenticated request.

use super::{KAuthz, KResult, St};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::RouteTable;
use crate::timefmt::micros_z;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{Method as M, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use stratus_services::app_creds::{AppCred, AppCredCreate, RoleSel, RuleRef};

const BASE: &str = "/identity/v3/users/{user_id}/application_credentials";

pub fn routes() -> RouteTable<Arc<AppState>> {
    let one = format!("{BASE}/{{application_credential_id}}");
    RouteTable::default()
        .at(M::GET, BASE, list)
        .at(M::POST, BASE, create)
        .at(M::GET, &one, show)
        .at(M::DELETE, &one, delete)
}

fn app_cred_json(s: &AppState, a: &AppCred) -> Value {
    let mut v = json!({
        "id": a.id, "name": a.name, "description": a.description, "user_id": a.user_id,
        "project_id": a.project_id, "system": null, "unrestricted": a.unrestricted,
        "expires_at": a.expires_at.map(naive_micros),
        "roles": a.roles.iter().map(|r| json!({"id": r.id, "name": r.name, "domain_id": r.domain_id}))
            .collect::<Vec<_>>(),
        "links": {"self": s.url(&format!("/identity/v3/users/{}/application_credentials/{}", a.user_id, a.id))},
    });
    if !a.access_rules.is_empty() {
        v["access_rules"] = json!(a
            .access_rules
            .iter()
            .map(|r| json!({"id": r.id, "service": r.service, "method": r.method, "path": r.path}))
            .collect::<Vec<_>>());
    }
    v
}

/// Keystone's `expires_at` of application credentials: no zone, microseconds.
fn naive_micros(micros: i64) -> String {
    micros_z(micros).trim_end_matches('Z').to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    application_credential: CreateReq,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateReq {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    roles: Option<Vec<RoleReq>>,
    #[serde(default)]
    unrestricted: Option<bool>,
    #[serde(default)]
    access_rules: Option<Vec<RuleReq>>,
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    project_id: Option<Value>,
    #[serde(default)]
    system: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleReq {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleReq {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: Option<String>,
}

/// An expiry as clients send it: ISO 8601 with or without a zone (UTC when none).
fn parse_expiry(t: &str) -> Result<i64, String> {
    use time::format_description::well_known::Iso8601;
    let with_zone = if t.ends_with('Z') || t[t.len().saturating_sub(6)..].contains(['+', '-']) {
        t.to_string()
    } else {
        format!("{t}Z")
    };
    time::OffsetDateTime::parse(&with_zone, &Iso8601::DEFAULT)
        .map(|d| (d.unix_timestamp_nanos() / 1000) as i64)
        .map_err(|_| format!("Invalid expires_at {t:?}: an ISO 8601 time is required."))
}

async fn create(
    State(s): St,
    authz: KAuthz,
    Path(user_id): Path<String>,
    ApiJson(b, _): ApiJson<CreateBody, crate::error::Keystone>,
) -> KResult<impl IntoResponse> {
    let r = b.application_credential;
    if [&r.id, &r.project_id, &r.system]
        .iter()
        .any(|v| v.is_some())
    {
        return Err(ApiError::bad_request(
            "id, project_id and system of an application credential are set by the server.",
        ));
    }
    let roles = r
        .roles
        .unwrap_or_default()
        .into_iter()
        .map(|x| match (x.id, x.name) {
            (Some(id), None) => Ok(RoleSel::Id(id)),
            (None, Some(n)) => Ok(RoleSel::Name(n)),
            _ => Err(ApiError::bad_request(
                "Each role is given by exactly one of id and name.",
            )),
        })
        .collect::<KResult<Vec<_>>>()?;
    let rules = r
        .access_rules
        .unwrap_or_default()
        .into_iter()
        .map(|x| match (x.id, x.service, x.method, x.path) {
            (Some(id), None, None, None) => Ok(RuleRef::Id(id)),
            (_, Some(service), Some(method), Some(path)) => Ok(RuleRef::New {
                service,
                method,
                path,
            }),
            _ => Err(ApiError::bad_request(
                "Each access rule has service, method and path, or only the id of an existing rule.",
            )),
        })
        .collect::<KResult<Vec<_>>>()?;
    let expires_at = r
        .expires_at
        .as_deref()
        .map(parse_expiry)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let target = s.directory.get_user(authz.caller(), &user_id).await?;
    let is_self = target.id == authz.caller().user.id;
    let c = authz.allow_self(is_self).await?;
    let (a, secret) = s
        .identity
        .create_app_cred(
            &c,
            &user_id,
            AppCredCreate {
                name: r.name,
                description: r.description,
                secret: r.secret,
                expires_at,
                roles,
                unrestricted: r.unrestricted.unwrap_or(false),
                access_rules: rules,
            },
        )
        .await?;
    let mut v = app_cred_json(&s, &a);
    v["secret"] = json!(secret);
    Ok((
        StatusCode::CREATED,
        Json(json!({"application_credential": v})),
    ))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    name: Option<String>,
}

async fn list(
    State(s): St,
    authz: KAuthz,
    Path(user_id): Path<String>,
    ApiQuery(q, _): ApiQuery<ListQuery, crate::error::Keystone>,
) -> KResult<Json<Value>> {
    let target = s.directory.get_user(authz.caller(), &user_id).await?;
    let is_self = target.id == authz.caller().user.id;
    let c = authz.allow_self(is_self).await?;
    let all = s
        .identity
        .list_app_creds(&c, &user_id, q.name.as_deref())
        .await?;
    Ok(Json(json!({
        "application_credentials": all.iter().map(|a| app_cred_json(&s, a)).collect::<Vec<_>>(),
        "links": {"self": s.url(&format!("/identity/v3/users/{user_id}/application_credentials")),
                  "previous": null, "next": null},
    })))
}

async fn show(
    State(s): St,
    authz: KAuthz,
    Path((user_id, id)): Path<(String, String)>,
) -> KResult<Json<Value>> {
    let a = s
        .identity
        .get_app_cred(authz.caller(), &user_id, &id)
        .await?;
    let is_self = a.user_id == authz.caller().user.id;
    authz.allow_self(is_self).await?;
    Ok(Json(
        json!({"application_credential": app_cred_json(&s, &a)}),
    ))
}

async fn delete(
    State(s): St,
    authz: KAuthz,
    Path((user_id, id)): Path<(String, String)>,
) -> KResult<StatusCode> {
    let a = s
        .identity
        .get_app_cred(authz.caller(), &user_id, &id)
        .await?;
    let is_self = a.user_id == authz.caller().user.id;
    let c = authz.allow_self(is_self).await?;
    s.identity.delete_app_cred(&c, &user_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
