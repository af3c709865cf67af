//! The Image API (Glance v2 / IMS subset) under `/image`.

use crate::error::{ApiError, ApiResult, Glance};
use crate::extract::{parse_json, read_body, ApiJson, ApiQuery, Authz};
use crate::routes::RouteTable;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method as M, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use stratus_services::authz::{Authorized, Facts};
use stratus_services::images::import::ImportRequest;
use stratus_services::images::{ImageCreate, ListQuery, PatchOp};
use stratus_services::model::{ImageRec, ImageStatus};
use time::OffsetDateTime;

pub(crate) type GResult<T> = ApiResult<T, Glance>;
pub(crate) type GAuthz = Authz<Glance>;
pub(crate) type St = State<Arc<AppState>>;

mod ims;
mod members;
mod query;
mod schemas;

const I: &str = "/image/v2/images";

pub fn routes() -> RouteTable<Arc<AppState>> {
    let p = |s: &str| format!("{I}{s}");
    RouteTable::default()
        .at(M::GET, "/image", versions)
        .at(M::GET, "/image/", versions)
        .at(M::GET, "/image/versions", versions_ok)
        .at(M::GET, "/image/v2/info/import", import_info)
        .at(M::PUT, &p("/{image_id}/stage"), stage)
        .at(M::POST, &p("/{image_id}/import"), import)
        .at(M::GET, I, list)
        .at(M::POST, I, create)
        .at(M::GET, &p("/{image_id}"), show)
        .at(M::PATCH, &p("/{image_id}"), update)
        .at(M::DELETE, &p("/{image_id}"), delete)
        .at(M::PUT, &p("/{image_id}/file"), upload)
        .at(M::GET, &p("/{image_id}/file"), download)
        .at(M::PUT, &p("/{image_id}/tags/{tag}"), add_tag)
        .at(M::DELETE, &p("/{image_id}/tags/{tag}"), remove_tag)
        .at(M::POST, &p("/{image_id}/actions/deactivate"), deactivate)
        .at(M::POST, &p("/{image_id}/actions/reactivate"), reactivate)
        .at(M::GET, &p("/{image_id}/tasks"), tasks)
        .at(M::GET, &p("/{image_id}/members"), members::list)
        .at(M::POST, &p("/{image_id}/members"), members::add)
        .at(M::GET, &p("/{image_id}/members/{member_id}"), members::show)
        .at(
            M::PUT,
            &p("/{image_id}/members/{member_id}"),
            members::update,
        )
        .at(
            M::DELETE,
            &p("/{image_id}/members/{member_id}"),
            members::remove,
        )
        .at(M::GET, "/image/v2/schemas/image", schemas::image)
        .at(M::GET, "/image/v2/schemas/images", schemas::images)
        .at(M::GET, "/image/v2/schemas/member", schemas::member)
        .at(M::GET, "/image/v2/schemas/members", schemas::members)
        .merge(ims::routes())
}

/// Authorizes the caller on an image, in the image's enterprise project.
async fn allow_on(authz: GAuthz, i: &ImageRec) -> GResult<Authorized> {
    authz
        .require(Facts {
            enterprise_project: Some(&i.enterprise_project_id),
            ..Facts::default()
        })
        .await
}

/// The image the caller may see, and the caller authorized on it.
pub(crate) async fn visible(
    s: &AppState,
    authz: GAuthz,
    id: &str,
) -> GResult<(ImageRec, Authorized)> {
    let i = s.images.get(authz.caller(), id).await?;
    let c = allow_on(authz, &i).await?;
    Ok((i, c))
}

/// The versions upstream's current release lists in its default configuration (no image cache
/// API, one store), in its order: 2.15, 2.9, 2.17 (current), 2.7 down to 2.0.
pub const VERSIONS: &[(&str, &str)] = &[
    ("v2.15", "SUPPORTED"),
    ("v2.9", "SUPPORTED"),
    ("v2.17", "CURRENT"),
    ("v2.7", "SUPPORTED"),
    ("v2.6", "SUPPORTED"),
    ("v2.5", "SUPPORTED"),
    ("v2.4", "SUPPORTED"),
    ("v2.3", "SUPPORTED"),
    ("v2.2", "SUPPORTED"),
    ("v2.1", "SUPPORTED"),
    ("v2.0", "SUPPORTED"),
];

fn versions_json(s: &AppState) -> Value {
    let list: Vec<Value> = VERSIONS
        .iter()
        .map(|(id, status)| json!({"id": id, "status": status, "links": [{"rel": "self", "href": s.url("/image/v2/")}]}))
        .collect();
    json!({ "versions": list })
}

/// Serves `/image/v2.N/...` (any version listed) as `/image/v2/...`, as upstream's version
/// negotiation does.
pub async fn image_layer(mut req: Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/image/v2.") {
        let (minor, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if VERSIONS
            .iter()
            .any(|(v, _)| v.strip_prefix("v2.") == Some(minor))
        {
            let canonical = format!("/image/v2{tail}");
            crate::routes::set_path(&mut req, &canonical);
        }
    }
    next.run(req).await
}

async fn versions(State(s): St) -> impl IntoResponse {
    (StatusCode::MULTIPLE_CHOICES, Json(versions_json(&s)))
}

async fn versions_ok(State(s): St) -> impl IntoResponse {
    Json(versions_json(&s))
}

/// `YYYY-MM-DDThh:mm:ss.ffffff` without a zone (Nova's `OS-SRV-USG` times, Cinder's times).
pub(crate) fn micros_naive(micros: i64) -> String {
    let z = seconds_z(micros);
    format!(
        "{}.{:06}",
        z.trim_end_matches('Z'),
        micros.rem_euclid(1_000_000)
    )
}

pub(crate) fn seconds_z(micros: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(micros / 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// An image as Glance shows it: base attributes, then the free-form properties at top level.
fn image_json(i: &ImageRec) -> Value {
    let mut v = json!({
        "id": i.id, "name": i.name, "status": i.status, "visibility": i.visibility,
        "protected": i.protected, "os_hidden": false, "owner": i.owner,
        "checksum": i.checksum, "os_hash_algo": i.os_hash_algo, "os_hash_value": i.os_hash_value,
        "size": i.size, "virtual_size": i.virtual_size, "min_disk": i.min_disk, "min_ram": i.min_ram,
        "disk_format": i.disk_format, "container_format": i.container_format,
        "tags": i.tags,
        "created_at": seconds_z(i.created_at), "updated_at": seconds_z(i.updated_at),
        "self": format!("/v2/images/{}", i.id), "file": format!("/v2/images/{}/file", i.id),
        "schema": "/v2/schemas/image",
    });
    if let Some(obj) = v.as_object_mut() {
        for (k, p) in &i.properties {
            obj.entry(k.clone()).or_insert_with(|| p.clone());
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// list, create, show

async fn list(
    State(s): St,
    authz: GAuthz,
    ApiQuery(pairs, _): ApiQuery<Vec<(String, String)>, Glance>,
) -> GResult<Json<Value>> {
    let q = query::parse(&pairs)?;
    let c = authz.allow().await?;
    let limit = q.filter.limit;
    let images = select(&s, &c, q).await?;
    let mut body = json!({
        "images": images.iter().map(image_json).collect::<Vec<_>>(),
        "first": "/v2/images", "schema": "/v2/schemas/images",
    });
    if images.len() as i64 == limit && limit > 0 {
        if let Some(last) = images.last() {
            // The same query from the last image on.
            let mut next = form_urlencoded::Serializer::new(String::new());
            for (k, v) in pairs.iter().filter(|(k, _)| k != "marker") {
                next.append_pair(k, v);
            }
            next.append_pair("marker", &last.id);
            body["next"] = json!(format!("/v2/images?{}", next.finish()));
        }
    }
    Ok(Json(body))
}

/// The images a parsed listing selects, as the caller sees them.
async fn select(
    s: &AppState,
    c: &stratus_services::authz::Authorized,
    q: query::Parsed,
) -> GResult<Vec<ImageRec>> {
    if q.nothing {
        return Ok(Vec::new());
    }
    Ok(s.images
        .list(
            c,
            ListQuery {
                filter: q.filter,
                marker: q.marker,
            },
        )
        .await?)
}

#[derive(Deserialize)]
struct CreateBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    visibility: Option<String>,
    #[serde(default)]
    protected: Option<bool>,
    #[serde(default)]
    disk_format: Option<String>,
    #[serde(default)]
    container_format: Option<String>,
    #[serde(default)]
    min_disk: Option<i64>,
    #[serde(default)]
    min_ram: Option<i64>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(flatten)]
    properties: Map<String, Value>,
}

async fn create(
    State(s): St,
    authz: GAuthz,
    ApiJson(b, _): ApiJson<CreateBody, Glance>,
) -> GResult<Response> {
    let mut props = Map::new();
    for (k, v) in b.properties {
        match v {
            Value::String(_) => {
                props.insert(k, v);
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "Property {k} must be a string, not {other}."
                )))
            }
        }
    }
    let c = authz.allow().await?;
    let req = ImageCreate {
        id: b.id,
        name: b.name,
        visibility: b.visibility,
        protected: b.protected.unwrap_or(false),
        disk_format: b.disk_format,
        container_format: b.container_format,
        min_disk: b.min_disk.unwrap_or(0),
        min_ram: b.min_ram.unwrap_or(0),
        tags: b.tags.unwrap_or_default(),
        properties: props,
        enterprise_project_id: None,
    };
    let i = s.images.create(&c, req).await?;
    let mut resp = (StatusCode::CREATED, Json(image_json(&i))).into_response();
    if let Ok(v) = HeaderValue::from_str(&s.url(&format!("{I}/{}", i.id))) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    // How the image's data may be imported (clients read this before staging).
    if let Ok(v) = HeaderValue::from_str(&s.imports.methods().join(",")) {
        resp.headers_mut()
            .insert("openstack-image-import-methods", v);
    }
    Ok(resp)
}

async fn show(State(s): St, authz: GAuthz, Path(id): Path<String>) -> GResult<Json<Value>> {
    let (i, _) = visible(&s, authz, &id).await?;
    Ok(Json(image_json(&i)))
}

/// Glance's tasks of an image (its imports run as sagas, not tasks: none are listed).
async fn tasks(State(s): St, authz: GAuthz, Path(id): Path<String>) -> GResult<Json<Value>> {
    visible(&s, authz, &id).await?;
    Ok(Json(json!({"tasks": []})))
}

// ---------------------------------------------------------------------------------------------
// update

const PATCH_V21: &str = "application/openstack-images-v2.1-json-patch";
const PATCH_V20: &str = "application/openstack-images-v2.0-json-patch";

/// Parses a JSON-patch document in either media type Glance accepts.
fn patch_ops(content_type: &str, body: &[u8]) -> GResult<Vec<PatchOp>> {
    let v21 = content_type == PATCH_V21;
    if !v21 && content_type != PATCH_V20 {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Unsupported Content-Type {content_type:?}: use {PATCH_V21} or {PATCH_V20}."),
        ));
    }
    let ops: Vec<Map<String, Value>> = parse_json(body)?;
    ops.into_iter()
        .map(|o| {
            let (kind, path) = if v21 {
                let kind = o
                    .get("op")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                (
                    kind,
                    o.get("path")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                )
            } else {
                match ["add", "replace", "remove"]
                    .iter()
                    .find(|k| o.contains_key(**k))
                {
                    Some(k) => (
                        k.to_string(),
                        o.get(*k).and_then(Value::as_str).unwrap_or("").to_string(),
                    ),
                    None => (String::new(), String::new()),
                }
            };
            let value = o.get("value").cloned();
            match (kind.as_str(), value) {
                ("add", Some(value)) => Ok(PatchOp::Set {
                    path,
                    value,
                    must_exist: false,
                }),
                ("replace", Some(value)) => Ok(PatchOp::Set {
                    path,
                    value,
                    must_exist: true,
                }),
                ("remove", _) => Ok(PatchOp::Remove { path }),
                (k, _) => Err(ApiError::bad_request(format!(
                    "Invalid JSON-patch operation {k:?} (or missing value)."
                ))),
            }
        })
        .collect()
}

async fn update(
    State(s): St,
    authz: GAuthz,
    Path(id): Path<String>,
    req: Request,
) -> GResult<Json<Value>> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let body = read_body::<Glance>(req).await?;
    let ops = patch_ops(&ct, &body)?;
    let (_, c) = visible(&s, authz, &id).await?;
    let i = s.images.update(&c, &id, ops).await?;
    Ok(Json(image_json(&i)))
}

async fn delete(State(s): St, authz: GAuthz, Path(id): Path<String>) -> GResult<StatusCode> {
    let (_, c) = visible(&s, authz, &id).await?;
    s.images.delete(&c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn add_tag(
    State(s): St,
    authz: GAuthz,
    Path((id, tag)): Path<(String, String)>,
) -> GResult<StatusCode> {
    let (_, c) = visible(&s, authz, &id).await?;
    s.images.tag(&c, &id, &tag, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_tag(
    State(s): St,
    authz: GAuthz,
    Path((id, tag)): Path<(String, String)>,
) -> GResult<StatusCode> {
    let (_, c) = visible(&s, authz, &id).await?;
    s.images.tag(&c, &id, &tag, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn deactivate(State(s): St, authz: GAuthz, Path(id): Path<String>) -> GResult<StatusCode> {
    let (_, c) = visible(&s, authz, &id).await?;
    s.images.set_active(&c, &id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn reactivate(State(s): St, authz: GAuthz, Path(id): Path<String>) -> GResult<StatusCode> {
    let (_, c) = visible(&s, authz, &id).await?;
    s.images.set_active(&c, &id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// interoperable import

async fn import_info(State(s): St, authz: GAuthz) -> GResult<Json<Value>> {
    authz.allow().await?;
    Ok(Json(json!({"import-methods": {
        "description": "Import methods available.", "type": "array", "value": s.imports.methods(),
    }})))
}

/// Image data must come as `application/octet-stream` (415 otherwise; upstream's `stage` also
/// requires the header).
fn octet_stream(headers: &HeaderMap, required: bool) -> GResult<()> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    match ct {
        None if !required => Ok(()),
        Some(ct) if ct.split(';').next().unwrap_or("").trim() == "application/octet-stream" => {
            Ok(())
        }
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Unsupported Content-Type {:?}: image data is application/octet-stream.",
                other.unwrap_or("")
            ),
        )),
    }
}

async fn stage(
    State(s): St,
    authz: GAuthz,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> GResult<StatusCode> {
    octet_stream(&headers, true)?;
    let (_, c) = visible(&s, authz, &id).await?;
    s.imports.stage(&c, &id, body.into_data_stream()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportMethod {
    name: String,
    #[serde(default)]
    uri: Option<String>,
    #[serde(default)]
    glance_region: Option<String>,
    #[serde(default)]
    glance_image_id: Option<String>,
    #[serde(default)]
    glance_service_interface: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportBody {
    method: ImportMethod,
    #[serde(default)]
    stores: Option<Vec<String>>,
    #[serde(default)]
    all_stores: Option<bool>,
    #[serde(default)]
    all_stores_must_succeed: Option<bool>,
}

async fn import(
    State(s): St,
    authz: GAuthz,
    Path(id): Path<String>,
    ApiJson(b, _): ApiJson<ImportBody, Glance>,
) -> GResult<StatusCode> {
    // One store: naming stores, or letting some of them fail, needs several (upstream's 400
    // without multiple back ends).
    if b.stores.as_ref().is_some_and(|s| !s.is_empty())
        || b.all_stores == Some(true)
        || b.all_stores_must_succeed == Some(false)
    {
        return Err(ApiError::bad_request(
            "This cloud has one image store: stores, all_stores and all_stores_must_succeed=false cannot be used.",
        ));
    }
    let unused = [
        &b.method.glance_region,
        &b.method.glance_image_id,
        &b.method.glance_service_interface,
    ];
    if unused.iter().any(|v| v.is_some()) {
        return Err(ApiError::bad_request(
            "Unknown import method name 'glance-download'.",
        ));
    }
    let (_, c) = visible(&s, authz, &id).await?;
    s.imports
        .import(
            &c,
            &id,
            ImportRequest {
                method: b.method.name,
                uri: b.method.uri,
            },
        )
        .await?;
    Ok(StatusCode::ACCEPTED)
}

// ---------------------------------------------------------------------------------------------
// data

async fn upload(
    State(s): St,
    authz: GAuthz,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> GResult<StatusCode> {
    octet_stream(&headers, false)?;
    let (_, c) = visible(&s, authz, &id).await?;
    let stream = body.into_data_stream();
    s.images.upload(&c, &id, stream).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A single byte range of a `Range: bytes=...` header, resolved against the data size: `Ok(None)`
/// means the whole data (no header, or one this server ignores as RFC 9110 allows: several
/// ranges, another unit, bad syntax); `Err` means no byte of the range exists (416).
fn byte_range(headers: &HeaderMap, size: u64) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => start..end.saturating_add(1).min(size),
        (Ok(start), Err(_)) if b.is_empty() => start..size,
        (Err(_), Ok(suffix)) if a.is_empty() => size.saturating_sub(suffix)..size,
        _ => return Ok(None),
    };
    if range.start >= size || range.is_empty() {
        return Err(());
    }
    Ok(Some(range))
}

async fn download(
    State(s): St,
    authz: GAuthz,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> GResult<Response> {
    let (seen, c) = visible(&s, authz, &id).await?;
    let size = seen.size.unwrap_or(0).max(0) as u64;
    let range = if seen.status == ImageStatus::Active {
        match byte_range(&headers, size) {
            Ok(r) => r,
            Err(()) => {
                let mut resp = ApiError::<Glance>::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    format!("The requested range is not satisfiable: the image has {size} bytes."),
                )
                .into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(resp);
            }
        }
    } else {
        None
    };
    let (i, data) = s.images.download(&c, &id, range.clone()).await?;
    let Some(data) = data else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let body = Body::from_stream(data.map(|c| c.map_err(std::io::Error::other)));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    match range {
        Some(r) => {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(r.end - r.start));
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end - 1))
            {
                h.insert(header::CONTENT_RANGE, v);
            }
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        }
        None => {
            if let Some(size) = i.size {
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(size as u64));
            }
            if let Some(md5) = i
                .checksum
                .as_deref()
                .and_then(|c| HeaderValue::from_str(c).ok())
            {
                h.insert("content-md5", md5);
            }
        }
    }
    Ok(resp)
}
