//! Image members (`/v2/images/{id}/members`): the projects a `shared` image is offered to.

use super::{seconds_z, visible, GAuthz, GResult, St};
use crate::error::Glance;
use crate::extract::ApiJson;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use stratus_services::model::MemberRec;

fn member_json(m: &MemberRec) -> Value {
    json!({
        "image_id": m.image_id, "member_id": m.member, "status": m.status,
        "created_at": seconds_z(m.created_at), "updated_at": seconds_z(m.updated_at),
        "schema": "/v2/schemas/member",
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddBody {
    member: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatusBody {
    status: String,
}

pub(super) async fn list(
    axum::extract::State(s): St,
    authz: GAuthz,
    Path(id): Path<String>,
) -> GResult<Json<Value>> {
    let (_, c) = visible(&s, authz, &id).await?;
    let members = s.images.members(&c, &id).await?;
    Ok(Json(json!({
        "members": members.iter().map(member_json).collect::<Vec<_>>(),
        "schema": "/v2/schemas/members",
    })))
}

pub(super) async fn add(
    axum::extract::State(s): St,
    authz: GAuthz,
    Path(id): Path<String>,
    ApiJson(b, _): ApiJson<AddBody, Glance>,
) -> GResult<Json<Value>> {
    let (_, c) = visible(&s, authz, &id).await?;
    Ok(Json(member_json(
        &s.images.add_member(&c, &id, &b.member).await?,
    )))
}

pub(super) async fn show(
    axum::extract::State(s): St,
    authz: GAuthz,
    Path((id, member)): Path<(String, String)>,
) -> GResult<Json<Value>> {
    let (_, c) = visible(&s, authz, &id).await?;
    Ok(Json(member_json(&s.images.member(&c, &id, &member).await?)))
}

pub(super) async fn update(
    axum::extract::State(s): St,
    authz: GAuthz,
    Path((id, member)): Path<(String, String)>,
    ApiJson(b, _): ApiJson<StatusBody, Glance>,
) -> GResult<Json<Value>> {
    let (_, c) = visible(&s, authz, &id).await?;
    let m = s
        .images
        .set_member_status(&c, &id, &member, &b.status)
        .await?;
    Ok(Json(member_json(&m)))
}

pub(super) async fn remove(
    axum::extract::State(s): St,
    authz: GAuthz,
    Path((id, member)): Path<(String, String)>,
) -> GResult<StatusCode> {
    let (_, c) = visible(&s, authz, &id).await?;
    s.images.remove_member(&c, &id, &member).await?;
    Ok(StatusCode::NO_CONTENT)
}
