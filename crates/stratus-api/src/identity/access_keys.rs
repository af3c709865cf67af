//! IAM permanent access keys (`/v3.0/OS-CREDENTIAL/credentials`), in Huawei IAM's wire format.

use super::{KAuthz, KResult, St};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::RouteTable;
use crate::timefmt::micros_z;
use axum::extract::{Path, State};
use axum::http::{Method as M, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use stratus_services::access_keys::AccessKey;
use stratus_services::model::AccessKeyStatus;

const BASE: &str = "/identity/v3.0/OS-CREDENTIAL/credentials";
const SECURITY_TOKENS: &str = "/identity/v3.0/OS-CREDENTIAL/securitytokens";

pub fn routes() -> RouteTable<Arc<crate::AppState>> {
    let one = format!("{BASE}/{{access_key}}");
    RouteTable::default()
        .at(M::GET, BASE, list)
        .at(M::POST, BASE, create)
        .at(M::GET, &one, show)
        .at(M::PUT, &one, update)
        .at(M::DELETE, &one, delete)
        .at(M::POST, SECURITY_TOKENS, create_temporary)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemporaryBody {
    auth: TemporaryAuth,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemporaryAuth {
    identity: TemporaryIdentity,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemporaryIdentity {
    methods: Vec<String>,
    #[serde(default)]
    token: Option<TemporaryToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemporaryToken {
    /// The token to make the key from; when given, it must be the caller's own.
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    duration_seconds: Option<i64>,
}

/// `POST /v3.0/OS-CREDENTIAL/securitytokens` (by token): a temporary access key of the caller.
/// Needs no policy, as upstream; keys by agency (`assume_role`) and keys narrowed by a policy are
/// not made.
async fn create_temporary(
    State(s): St,
    authz: KAuthz,
    ApiJson(b, _): ApiJson<TemporaryBody, crate::error::Keystone>,
) -> KResult<impl IntoResponse> {
    let identity = b.auth.identity;
    if identity.methods != ["token"] {
        return Err(ApiError::bad_request(
            "Invalid auth.identity.methods: temporary access keys are made by [\"token\"].",
        ));
    }
    let token = identity.token.unwrap_or(TemporaryToken {
        id: None,
        duration_seconds: None,
    });
    if let Some(id) = &token.id {
        let named = s.identity.validate(id).await?;
        if named.user.id != authz.caller().user.id {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                stratus_services::identity::AUTH_REQUIRED,
            ));
        }
    }
    let c = authz.allow_self(true).await?;
    let (access, secret, securitytoken, expires_at) = s
        .identity
        .create_temporary_key(&c, token.duration_seconds.unwrap_or(900))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"credential": {
            "access": access, "secret": secret, "securitytoken": securitytoken,
            "expires_at": micros_z(expires_at),
        }})),
    ))
}

fn key_json(k: &AccessKey) -> Value {
    json!({
        "user_id": k.user_id, "access": k.access, "status": k.status.as_str(),
        "create_time": micros_z(k.created_at), "description": k.description,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    credential: CreateReq,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateReq {
    user_id: String,
    #[serde(default)]
    description: Option<String>,
}

async fn create(
    State(s): St,
    authz: KAuthz,
    ApiJson(b, _): ApiJson<CreateBody, crate::error::Keystone>,
) -> KResult<impl IntoResponse> {
    let r = b.credential;
    let target = s.directory.get_user(authz.caller(), &r.user_id).await?;
    let is_self = target.id == authz.caller().user.id;
    let c = authz.allow_self(is_self).await?;
    let (k, secret) = s
        .identity
        .create_access_key(&c, &target.id, r.description.as_deref().unwrap_or(""))
        .await?;
    let mut v = key_json(&k);
    v["secret"] = json!(secret);
    Ok((StatusCode::CREATED, Json(json!({"credential": v}))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    user_id: Option<String>,
}

async fn list(
    State(s): St,
    authz: KAuthz,
    ApiQuery(q, _): ApiQuery<ListQuery, crate::error::Keystone>,
) -> KResult<Json<Value>> {
    // Without a user, the caller's own keys.
    let user_id = match &q.user_id {
        Some(id) => s.directory.get_user(authz.caller(), id).await?.id,
        None => authz.caller().user.id.clone(),
    };
    let is_self = user_id == authz.caller().user.id;
    let c = authz.allow_self(is_self).await?;
    let keys = s.identity.list_access_keys(&c, &user_id).await?;
    Ok(Json(
        json!({"credentials": keys.iter().map(key_json).collect::<Vec<_>>()}),
    ))
}

async fn show(State(s): St, authz: KAuthz, Path(access): Path<String>) -> KResult<Json<Value>> {
    let k = s.identity.get_access_key(authz.caller(), &access).await?;
    let is_self = k.user_id == authz.caller().user.id;
    authz.allow_self(is_self).await?;
    Ok(Json(json!({"credential": key_json(&k)})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    credential: UpdateReq,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateReq {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

async fn update(
    State(s): St,
    authz: KAuthz,
    Path(access): Path<String>,
    ApiJson(b, _): ApiJson<UpdateBody, crate::error::Keystone>,
) -> KResult<Json<Value>> {
    let status = b
        .credential
        .status
        .as_deref()
        .map(|v| {
            v.parse::<AccessKeyStatus>().map_err(|_| {
                ApiError::bad_request("Invalid credential.status: \"active\" or \"inactive\".")
            })
        })
        .transpose()?;
    let k = s.identity.get_access_key(authz.caller(), &access).await?;
    let is_self = k.user_id == authz.caller().user.id;
    let c = authz.allow_self(is_self).await?;
    let k = s
        .identity
        .update_access_key(&c, &access, status, b.credential.description.as_deref())
        .await?;
    Ok(Json(json!({"credential": key_json(&k)})))
}

async fn delete(State(s): St, authz: KAuthz, Path(access): Path<String>) -> KResult<StatusCode> {
    let k = s.identity.get_access_key(authz.caller(), &access).await?;
    let is_self = k.user_id == authz.caller().user.id;
    let c = authz.allow_self(is_self).await?;
    s.identity.delete_access_key(&c, &access).await?;
    Ok(StatusCode::NO_CONTENT)
}
