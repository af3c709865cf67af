//! The compute API's image proxy (microversions up to 2.35; image metadata up to 2.38): Glance
//! images in Nova's shape, with its upper-case statuses and progress.

use super::{project_of, time_z, Microversion, NAuthz, NResult, St, P};
use crate::error::{ApiError, Nova};
use crate::extract::{parse_json, read_body, ApiQuery};
use crate::routes::RouteTable;
use crate::AppState;
use axum::extract::{Path, Request, State};
use axum::http::{Method as M, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use stratus_services::authz::{Authorized, Facts};
use stratus_services::images::{ListQuery, PatchOp};
use stratus_services::model::{Cmp, ImageFilter, ImageRec, ImageStatus};

/// The last microversion serving `/images`, and `/images/{id}/metadata`.
const IMAGES_MAX: u16 = 35;
const METADATA_MAX: u16 = 38;

/// Glance status → Nova status and progress, as upstream maps them.
const STATUSES: &[(ImageStatus, &str, i64)] = &[
    (ImageStatus::Active, "ACTIVE", 100),
    (ImageStatus::Queued, "SAVING", 25),
    (ImageStatus::Saving, "SAVING", 50),
    (ImageStatus::Deleted, "DELETED", 0),
    (ImageStatus::PendingDelete, "DELETED", 0),
    (ImageStatus::Killed, "ERROR", 0),
];

pub fn routes() -> RouteTable<Arc<AppState>> {
    let p = |s: &str| format!("{P}{s}");
    RouteTable::default()
        .at(M::GET, &p("/images"), list)
        .at(M::GET, &p("/images/detail"), detail)
        .at(M::GET, &p("/images/{image_id}"), show)
        .at(M::DELETE, &p("/images/{image_id}"), delete)
        .at(M::GET, &p("/images/{image_id}/metadata"), metadata)
        .at(M::POST, &p("/images/{image_id}/metadata"), update_metadata)
        .at(M::PUT, &p("/images/{image_id}/metadata"), replace_metadata)
        .at(
            M::GET,
            &p("/images/{image_id}/metadata/{key}"),
            metadata_item,
        )
        .at(
            M::PUT,
            &p("/images/{image_id}/metadata/{key}"),
            set_metadata_item,
        )
        .at(
            M::DELETE,
            &p("/images/{image_id}/metadata/{key}"),
            delete_metadata_item,
        )
}

fn gone_above(mv: Microversion, max: u16) -> NResult<()> {
    if mv.0 > max {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "The resource could not be found.",
        ));
    }
    Ok(())
}

fn links(s: &AppState, project: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": s.url(&format!("/compute/v2.1/{project}/images/{id}"))},
        {"rel": "bookmark", "href": s.url(&format!("/compute/{project}/images/{id}"))},
        {"rel": "alternate", "type": "application/vnd.openstack.image", "href": s.url(&format!("/image/v2/images/{id}"))},
    ])
}

fn image_json(s: &AppState, project: &str, i: &ImageRec) -> Value {
    let (status, progress) = STATUSES
        .iter()
        .find(|(g, _, _)| *g == i.status)
        .map(|(_, n, p)| (*n, *p))
        .unwrap_or(("UNKNOWN", 0));
    let props = &i.properties;
    let mut v = json!({
        "id": i.id, "name": i.name, "minRam": i.min_ram, "minDisk": i.min_disk,
        "metadata": props, "created": time_z(i.created_at), "updated": time_z(i.updated_at),
        "status": status, "progress": progress, "links": links(s, project, &i.id),
        "OS-EXT-IMG-SIZE:size": i.size,
    });
    if let Some(server) = props.get("instance_uuid").and_then(Value::as_str) {
        v["server"] = json!({"id": server, "links": [
            {"rel": "self", "href": s.url(&format!("/compute/v2.1/{project}/servers/{server}"))},
            {"rel": "bookmark", "href": s.url(&format!("/compute/{project}/servers/{server}"))}]});
    }
    v
}

#[derive(Deserialize, Default)]
struct ListParams {
    name: Option<String>,
    status: Option<String>,
    server: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(rename = "changes-since")]
    changes_since: Option<String>,
    #[serde(rename = "minRam")]
    min_ram: Option<String>,
    #[serde(rename = "minDisk")]
    min_disk: Option<String>,
    limit: Option<String>,
    marker: Option<String>,
}

fn number(k: &str, v: &Option<String>) -> NResult<Option<i64>> {
    v.as_ref()
        .map(|s| {
            s.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!("Invalid {k} {s:?}: an integer is required."))
            })
        })
        .transpose()
}

async fn images(
    s: &AppState,
    mv: Microversion,
    authz: NAuthz,
    pid: &str,
    q: ListParams,
) -> NResult<(String, Vec<ImageRec>)> {
    gone_above(mv, IMAGES_MAX)?;
    let project = project_of(authz.caller(), pid)?.to_string();
    let mut f = ImageFilter::new(
        &project,
        number("limit", &q.limit)?.unwrap_or(1000).clamp(0, 1000),
    );
    f.names.extend(q.name);
    if let Some(st) = &q.status {
        let up = st.to_ascii_uppercase();
        f.statuses = STATUSES
            .iter()
            .filter(|(_, n, _)| *n == up)
            .map(|(g, _, _)| g.to_string())
            .collect();
        if f.statuses.is_empty() {
            return Ok((project, vec![]));
        }
    }
    if let Some(server) = q.server {
        // A server reference may be its id or its self or bookmark link: upstream takes the
        // last path segment.
        let id = server.rsplit('/').next().unwrap_or_default().to_string();
        f.properties.push(("instance_uuid".into(), id));
    }
    if let Some(kind) = q.kind {
        f.properties.push(("image_type".into(), kind));
    }
    if let Some(since) = &q.changes_since {
        let t = time::OffsetDateTime::parse(
            since,
            &time::format_description::well_known::Iso8601::DEFAULT,
        )
        .map_err(|_| ApiError::bad_request(format!("Invalid changes-since value {since:?}.")))?;
        f.updated_at
            .push((Cmp::Gte, (t.unix_timestamp_nanos() / 1000) as i64));
    }
    let (min_ram, min_disk) = (
        number("minRam", &q.min_ram)?,
        number("minDisk", &q.min_disk)?,
    );
    let c = authz.allow().await?;
    let all = s
        .images
        .list(
            &c,
            ListQuery {
                filter: f,
                marker: q.marker,
            },
        )
        .await?;
    Ok((
        project,
        all.into_iter()
            .filter(|i| {
                min_ram.is_none_or(|m| i.min_ram >= m) && min_disk.is_none_or(|m| i.min_disk >= m)
            })
            .collect(),
    ))
}

async fn list(
    State(s): St,
    mv: Microversion,
    authz: NAuthz,
    Path(pid): Path<String>,
    ApiQuery(q, _): ApiQuery<ListParams, Nova>,
) -> NResult<Json<Value>> {
    let (project, all) = images(&s, mv, authz, &pid, q).await?;
    Ok(Json(json!({"images": all.iter()
        .map(|i| json!({"id": i.id, "name": i.name, "links": links(&s, &project, &i.id)}))
        .collect::<Vec<_>>()})))
}

async fn detail(
    State(s): St,
    mv: Microversion,
    authz: NAuthz,
    Path(pid): Path<String>,
    ApiQuery(q, _): ApiQuery<ListParams, Nova>,
) -> NResult<Json<Value>> {
    let (project, all) = images(&s, mv, authz, &pid, q).await?;
    Ok(Json(
        json!({"images": all.iter().map(|i| image_json(&s, &project, i)).collect::<Vec<_>>()}),
    ))
}

async fn visible(
    s: &AppState,
    mv: Microversion,
    max: u16,
    authz: NAuthz,
    pid: &str,
    id: &str,
) -> NResult<(String, ImageRec, Authorized)> {
    gone_above(mv, max)?;
    let project = project_of(authz.caller(), pid)?.to_string();
    let i = s.images.get(authz.caller(), id).await?;
    let c = authz
        .require(Facts {
            enterprise_project: Some(&i.enterprise_project_id),
            ..Facts::default()
        })
        .await?;
    Ok((project, i, c))
}

async fn show(
    State(s): St,
    mv: Microversion,
    authz: NAuthz,
    Path((pid, id)): Path<(String, String)>,
) -> NResult<Json<Value>> {
    let (project, i, _) = visible(&s, mv, IMAGES_MAX, authz, &pid, &id).await?;
    Ok(Json(json!({"image": image_json(&s, &project, &i)})))
}

async fn delete(
    State(s): St,
    mv: Microversion,
    authz: NAuthz,
    Path((pid, id)): Path<(String, String)>,
) -> NResult<StatusCode> {
    let (_, _, c) = visible(&s, mv, IMAGES_MAX, authz, &pid, &id).await?;
    s.images.delete(&c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn metadata(
    State(s): St,
    mv: Microversion,
    authz: NAuthz,
    Path((pid, id)): Path<(String, String)>,
) -> NResult<Json<Value>> {
    let (_, i, _) = visible(&s, mv, METADATA_MAX, authz, &pid, &id).await?;
    Ok(Json(json!({"metadata": i.properties})))
}

async fn metadata_item(
    State(s): St,
    mv: Microversion,
    authz: NAuthz,
    Path((pid, id, key)): Path<(String, String, String)>,
) -> NResult<Json<Value>> {
    let (_, i, _) = visible(&s, mv, METADATA_MAX, authz, &pid, &id).await?;
    let v = i.properties.get(&key).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Metadata item was not found: {key}"),
        )
    })?;
    Ok(Json(json!({"meta": {key: v}})))
}

/// The JSON pointer of a property.
fn pointer(key: &str) -> String {
    format!("/{}", key.replace('~', "~0").replace('/', "~1"))
}

/// Applies `items` to the image's properties as JSON-patch additions.
async fn set_items(
    s: &AppState,
    c: &Authorized,
    id: &str,
    items: Map<String, Value>,
) -> NResult<ImageRec> {
    let ops = items
        .into_iter()
        .map(|(k, v)| PatchOp::Set {
            path: pointer(&k),
            value: v,
            must_exist: false,
        })
        .collect();
    Ok(s.images.update(c, id, ops).await?)
}

fn object_under(body: &Value, key: &str) -> NResult<Map<String, Value>> {
    body.get(key)
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| ApiError::bad_request(format!("'{key}' is a required property (an object)")))
}

async fn update_metadata(
    State(s): St,
    mv: Microversion,
    authz: NAuthz,
    Path((pid, id)): Path<(String, String)>,
    req: Request,
) -> NResult<Json<Value>> {
    let body: Value = parse_json(&read_body::<Nova>(req).await?)?;
    let items = object_under(&body, "metadata")?;
    let (_, _, c) = visible(&s, mv, METADATA_MAX, authz, &pid, &id).await?;
    let i = set_items(&s, &c, &id, items).await?;
    Ok(Json(json!({"metadata": i.properties})))
}

/// Metadata items an image may carry through this API (upstream's `metadata_items` quota).
const METADATA_ITEMS: usize = 128;

/// `PUT /images/{id}/metadata`: the image's properties become exactly the given ones.
async fn replace_metadata(
    State(s): St,
    mv: Microversion,
    authz: NAuthz,
    Path((pid, id)): Path<(String, String)>,
    req: Request,
) -> NResult<Json<Value>> {
    let body: Value = parse_json(&read_body::<Nova>(req).await?)?;
    let items = object_under(&body, "metadata")?;
    let (_, i, c) = visible(&s, mv, METADATA_MAX, authz, &pid, &id).await?;
    if items.len() > METADATA_ITEMS {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Image metadata limit exceeded",
        ));
    }
    let mut ops: Vec<PatchOp> = i
        .properties
        .keys()
        .filter(|k| !items.contains_key(*k))
        .map(|k| PatchOp::Remove { path: pointer(k) })
        .collect();
    ops.extend(items.iter().map(|(k, v)| PatchOp::Set {
        path: pointer(k),
        value: v.clone(),
        must_exist: false,
    }));
    s.images.update(&c, &id, ops).await?;
    Ok(Json(json!({"metadata": items})))
}

async fn set_metadata_item(
    State(s): St,
    mv: Microversion,
    authz: NAuthz,
    Path((pid, id, key)): Path<(String, String, String)>,
    req: Request,
) -> NResult<Json<Value>> {
    let body: Value = parse_json(&read_body::<Nova>(req).await?)?;
    let meta = object_under(&body, "meta")?;
    if meta.len() != 1 || !meta.contains_key(&key) {
        return Err(ApiError::bad_request("Request body and URI mismatch"));
    }
    let (_, _, c) = visible(&s, mv, METADATA_MAX, authz, &pid, &id).await?;
    set_items(&s, &c, &id, meta.clone()).await?;
    Ok(Json(json!({"meta": meta})))
}

async fn delete_metadata_item(
    State(s): St,
    mv: Microversion,
    authz: NAuthz,
    Path((pid, id, key)): Path<(String, String, String)>,
) -> NResult<StatusCode> {
    let (_, i, c) = visible(&s, mv, METADATA_MAX, authz, &pid, &id).await?;
    if !i.properties.contains_key(&key) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Metadata item was not found: {key}"),
        ));
    }
    s.images
        .update(
            &c,
            &id,
            vec![PatchOp::Remove {
                path: pointer(&key),
            }],
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
