//! Huawei Cloud IMS's own API on the image service: the listing with IMS's filters
//! (`GET /v2/cloudimages`), an image of a server as a job (`POST /v2/cloudimages/action`, the
//! same saga as Nova's createImage) and the job (`GET /v1/{project_id}/jobs/{job_id}`). Errors in
//! IMS's format (`{"error": {"code": "IMG.xxxx", "message"}}`).

use super::{image_json, query, select, St};
use crate::error::{ApiError, ApiResult, Ims};
use crate::extract::{ApiJson, ApiQuery, Authz};
use crate::routes::RouteTable;
use crate::timefmt::millis_z;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::Method as M;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use stratus_services::authz::Facts;
use stratus_services::create_image::ImageRequest;
use stratus_services::iam::DEFAULT_ENTERPRISE_PROJECT;
use stratus_services::images::PatchOp;
use stratus_services::jobs::{Job, JobService};
use stratus_services::policy::ResourceKind;

type IResult<T> = ApiResult<T, Ims>;
type IAuthz = Authz<Ims>;

use stratus_services::limits::{
    IMS_DESCRIPTION_CHARS as MAX_DESCRIPTION, IMS_NAME_CHARS as MAX_NAME, IMS_TAGS as MAX_TAGS,
    TAG_CHARS,
};

pub fn routes() -> RouteTable<Arc<AppState>> {
    RouteTable::default()
        .at(M::GET, "/image/v2/cloudimages", list_cloud_images)
        .at(M::POST, "/image/v2/cloudimages/action", create_cloud_image)
        .at(
            M::PATCH,
            "/image/v2/cloudimages/{image_id}",
            update_cloud_image,
        )
        .at(M::GET, "/image/v1/{project_id}/jobs/{job_id}", show_job)
}

/// An image as IMS shows it: Glance's form (whose additional properties are IMS's `__`
/// attributes) with its enterprise project.
fn cloud_image_json(i: &stratus_services::model::ImageRec) -> Value {
    let mut v = image_json(i);
    v["enterprise_project_id"] = json!(i.enterprise_project_id);
    v
}

/// IMS's own listing (the SDK's `list_images`): Glance's filters, plus `__imagetype` (`gold`:
/// public images, `private`: the project's own that are not public, `shared`: shared with it;
/// `market` images do not exist here) and `enterprise_project_id` (one enterprise project, or
/// `all_granted_eps`). The images in Glance's form, whose additional properties are IMS's `__`
/// attributes, with their enterprise project.
async fn list_cloud_images(
    State(s): St,
    authz: IAuthz,
    ApiQuery(pairs, _): ApiQuery<Vec<(String, String)>, Ims>,
) -> IResult<Json<Value>> {
    let mut glance = Vec::with_capacity(pairs.len());
    let mut own = false;
    let mut market = false;
    let mut ep: Option<String> = None;
    for (k, v) in &pairs {
        match k.as_str() {
            "__imagetype" => {
                let visibility = match v.as_str() {
                    "gold" => "public",
                    // The project's own images that are not public (private or shared).
                    "private" => {
                        own = true;
                        "all"
                    }
                    "shared" => "shared",
                    "market" => {
                        market = true;
                        continue;
                    }
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "Invalid __imagetype {v:?}: gold, private, shared or market."
                        )))
                    }
                };
                glance.push(("visibility".to_string(), visibility.to_string()));
            }
            "enterprise_project_id" if v != "all_granted_eps" => ep = Some(v.clone()),
            "enterprise_project_id" => {}
            _ => glance.push((k.clone(), v.clone())),
        }
    }
    if own {
        let project = authz.caller().project().map(|p| p.id.clone());
        glance.push(("owner".to_string(), project.unwrap_or_default()));
    }
    let mut q = query::parse(&glance).map_err(ApiError::recast)?;
    q.nothing |= market;
    // In the query, so that a page holds `limit` matching images.
    q.filter.enterprise_project_id = ep;
    if own {
        q.filter.visibilities = vec!["private".into(), "shared".into()];
    }
    let c = authz.allow().await?;
    let images = select(&s, &c, q).await.map_err(ApiError::recast)?;
    Ok(Json(json!({
        "images": images.iter().map(cloud_image_json).collect::<Vec<_>>(),
    })))
}

/// A key-value tag (`image_tags`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagKeyValue {
    key: String,
    #[serde(default)]
    value: String,
}

/// `POST /v2/cloudimages/action`: what the SDK's `CreateImageRequestBody` sends for an image of
/// a server. Fields for other sources (files, volumes, data disks) are refused by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    instance_id: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    image_tags: Vec<TagKeyValue>,
    #[serde(default)]
    enterprise_project_id: Option<String>,
    #[serde(default)]
    min_ram: Option<i64>,
    #[serde(default)]
    max_ram: Option<i64>,
    #[serde(default)]
    os_version: Option<String>,
    #[serde(default, rename = "type")]
    image_type: Option<String>,
    // Other sources, refused with a clear message.
    #[serde(default)]
    image_url: Option<Value>,
    #[serde(default)]
    volume_id: Option<Value>,
    #[serde(default)]
    data_images: Option<Value>,
}

/// Refuses control characters (which no name, tag or id of an image has).
fn printable(field: &str, v: &str) -> Result<(), String> {
    if v.chars().any(char::is_control) {
        return Err(format!("{field} has control characters."));
    }
    Ok(())
}

/// Builds the request for the image service, or says what is wrong with the body.
fn image_request(b: CreateBody) -> Result<(String, ImageRequest), String> {
    let texts = [
        ("name", Some(&b.name)),
        ("instance_id", b.instance_id.as_ref()),
        ("description", b.description.as_ref()),
        ("os_version", b.os_version.as_ref()),
        ("enterprise_project_id", b.enterprise_project_id.as_ref()),
    ];
    for (field, v) in texts {
        if let Some(v) = v {
            printable(field, v)?;
        }
    }
    if b.os_version
        .as_ref()
        .is_some_and(|v| v.chars().count() > MAX_NAME)
    {
        return Err(format!("os_version is longer than {MAX_NAME} characters."));
    }
    for (field, set) in [
        ("image_url", b.image_url.is_some()),
        ("volume_id", b.volume_id.is_some()),
        ("data_images", b.data_images.is_some()),
    ] {
        if set {
            return Err(format!(
                "{field}: only images of a server (instance_id) are made here; upload image \
                 files through the image service's Glance API."
            ));
        }
    }
    let server = b
        .instance_id
        .filter(|i| !i.is_empty())
        .ok_or("instance_id is required.")?;
    let name = b.name.trim();
    if name.is_empty() || b.name.chars().count() > MAX_NAME || name.len() != b.name.len() {
        return Err(format!(
            "name must be 1 to {MAX_NAME} characters, not starting or ending with a space."
        ));
    }
    if let Some(t) = b.image_type.as_deref().filter(|t| *t != "ECS") {
        return Err(format!("type {t:?}: only ECS images are made here."));
    }
    let mut metadata = Map::new();
    if let Some(d) = b.description {
        if d.chars().count() > MAX_DESCRIPTION {
            return Err(format!(
                "description is longer than {MAX_DESCRIPTION} characters."
            ));
        }
        metadata.insert("__description".into(), json!(d));
    }
    if let Some(v) = b.os_version {
        metadata.insert("__os_version".into(), json!(v));
    }
    for (field, v) in [("min_ram", b.min_ram), ("max_ram", b.max_ram)] {
        if v.is_some_and(|v| !(0..=1_048_576).contains(&v)) {
            return Err(format!("{field} must be 0 to 1048576 (MB)."));
        }
    }
    if let (Some(min), Some(max)) = (b.min_ram, b.max_ram) {
        if max > 0 && min > max {
            return Err(format!("min_ram {min} is above max_ram {max}."));
        }
    }
    if let Some(m) = b.max_ram {
        metadata.insert("max_ram".into(), json!(m.to_string()));
    }
    // IMS's `key.value` form for both kinds of tag.
    let mut tags = b.tags;
    tags.extend(b.image_tags.into_iter().map(|t| {
        if t.value.is_empty() {
            t.key
        } else {
            format!("{}.{}", t.key, t.value)
        }
    }));
    if tags.len() > MAX_TAGS {
        return Err(format!("At most {MAX_TAGS} tags."));
    }
    if let Some(t) = tags
        .iter()
        .find(|t| t.is_empty() || t.chars().count() > TAG_CHARS)
    {
        return Err(format!("Tag {t:?}: tags are 1 to {TAG_CHARS} characters."));
    }
    for t in &tags {
        printable("A tag", t)?;
    }
    Ok((
        server,
        ImageRequest {
            name: name.to_string(),
            metadata,
            tags,
            min_ram: b.min_ram,
            enterprise_project_id: b.enterprise_project_id,
        },
    ))
}

/// An image of a server (the SDK's `create_image` with `instance_id`): the createImage saga,
/// answered with its job. Decided in the enterprise project the image is to be placed in; the
/// server is looked up as the caller, and reading it and the route's ECS and EVS dependencies
/// (what is done to the server and its volumes) are decided again in the server's own
/// enterprise project, so that grants where the image goes do not reach a server elsewhere.
async fn create_cloud_image(
    State(s): St,
    authz: IAuthz,
    ApiJson(body, _): ApiJson<CreateBody, Ims>,
) -> IResult<Json<Value>> {
    let (server, req) = image_request(body).map_err(ApiError::bad_request)?;
    let ep = req
        .enterprise_project_id
        .clone()
        .unwrap_or_else(|| DEFAULT_ENTERPRISE_PROJECT.to_string());
    // What the request does to the server and its volumes (the ECS and EVS dependencies).
    let on_server: Vec<String> = authz
        .entry()
        .map(|e| {
            e.dependencies
                .iter()
                .filter(|a| !a.starts_with("ims:"))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let c = authz
        .require(Facts {
            enterprise_project: Some(&ep),
            ..Facts::default()
        })
        .await?;
    let v = s.compute.get(&c, &server).await?;
    c.require_use_in(ResourceKind::Server, &v.enterprise_project_id)?;
    let on_server: Vec<&str> = on_server.iter().map(String::as_str).collect();
    c.require_in(&on_server, &v.enterprise_project_id)?;
    // A volume-backed server's volumes are snapshotted: EVS's dependencies in each one's.
    let on_volumes: Vec<&str> = on_server
        .iter()
        .copied()
        .filter(|a| a.starts_with("evs:"))
        .collect();
    for vol in s.compute.attached_volumes(&v.id).await? {
        c.require_in(&on_volumes, &vol.enterprise_project_id)?;
    }
    let job = s.compute.create_image_with(&c, &server, req).await?;
    Ok(Json(json!({ "job_id": job.job_id })))
}

/// One change of `PATCH /v2/cloudimages/{image_id}` (the SDK's `UpdateImageRequestBody`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateOp {
    op: String,
    path: String,
    #[serde(default)]
    value: Option<Value>,
}

/// What an attribute IMS's update changes holds.
#[derive(Clone, Copy, PartialEq)]
enum Holds {
    /// Text of at most this many characters.
    Text(usize),
    /// A number of MB, as the image's own field.
    Mb,
    /// A number of MB, as a property (text).
    MbText,
}

/// The attributes IMS's update changes.
const UPDATABLE: &[(&str, Holds)] = &[
    ("/name", Holds::Text(MAX_NAME)),
    ("/__description", Holds::Text(MAX_DESCRIPTION)),
    ("/__os_version", Holds::Text(MAX_NAME)),
    ("/min_ram", Holds::Mb),
    ("/max_ram", Holds::MbText),
];

/// The image service's changes for IMS's, or what is wrong with them.
fn patch_ops(ops: Vec<UpdateOp>) -> Result<Vec<PatchOp>, String> {
    if ops.is_empty() {
        return Err("The request changes nothing.".into());
    }
    let names: Vec<&str> = UPDATABLE.iter().map(|(p, _)| &p[1..]).collect();
    ops.into_iter()
        .map(|o| {
            let holds = UPDATABLE
                .iter()
                .find(|(p, _)| *p == o.path)
                .map(|(_, h)| *h)
                .ok_or_else(|| {
                    format!(
                        "path {:?}: only {} are changed here.",
                        o.path,
                        names.join(", ")
                    )
                })?;
            if o.op == "remove" {
                if o.path == "/name" || holds == Holds::Mb {
                    return Err(format!("{} cannot be removed.", o.path));
                }
                return Ok(PatchOp::Remove { path: o.path });
            }
            if o.op != "replace" && o.op != "add" {
                return Err(format!("op {:?}: add, replace or remove.", o.op));
            }
            // Values are strings (the SDK's `value: str`), numbers included.
            let Some(Value::String(text)) = o.value else {
                return Err(format!("{}: a string value is required.", o.path));
            };
            let value = match holds {
                Holds::Text(most) => {
                    printable(&o.path, &text)?;
                    if text.chars().count() > most {
                        return Err(format!("{} is longer than {most} characters.", o.path));
                    }
                    if o.path == "/name" && (text.trim().is_empty() || text.trim() != text) {
                        return Err("name must not be empty, start or end with a space.".into());
                    }
                    json!(text)
                }
                Holds::Mb | Holds::MbText => {
                    let n: i64 = text
                        .parse()
                        .ok()
                        .filter(|n| (0..=1_048_576).contains(n))
                        .ok_or_else(|| format!("{}: a number of MB, 0 to 1048576.", o.path))?;
                    if holds == Holds::Mb {
                        json!(n)
                    } else {
                        json!(n.to_string())
                    }
                }
            };
            Ok(PatchOp::Set {
                path: o.path,
                value,
                must_exist: false,
            })
        })
        .collect()
}

/// The SDK's `update_image`: name, description, OS version and RAM bounds of an image the
/// caller may change, decided in the image's enterprise project.
async fn update_cloud_image(
    State(s): St,
    authz: IAuthz,
    Path(id): Path<String>,
    ApiJson(ops, _): ApiJson<Vec<UpdateOp>, Ims>,
) -> IResult<Json<Value>> {
    let ops = patch_ops(ops).map_err(ApiError::bad_request)?;
    let i = s.images.get(authz.caller(), &id).await?;
    let c = authz
        .require(Facts {
            enterprise_project: Some(&i.enterprise_project_id),
            ..Facts::default()
        })
        .await?;
    let i = s.images.update(&c, &id, ops).await?;
    Ok(Json(cloud_image_json(&i)))
}

/// The entities an IMS job shows.
const JOB_ENTITIES: &[&str] = &["image_id", "image_name"];

/// A job in IMS's form.
fn job_json(j: &Job) -> Value {
    let entities: Map<String, Value> = j
        .entities
        .iter()
        .filter(|(k, _)| JOB_ENTITIES.contains(k))
        .map(|(k, v)| ((*k).to_string(), json!(v)))
        .collect();
    json!({
        "job_id": j.id,
        "job_type": j.job_type,
        "status": j.status.as_str(),
        "begin_time": millis_z(j.begin),
        "end_time": j.end.map(millis_z),
        "entities": entities,
        "error_code": j.fail_reason.as_ref().map(|_| "IMG.0000"),
        "fail_reason": j.fail_reason,
    })
}

/// A job of the caller's project (the SDK's `show_job`), decided in the enterprise project of
/// the image it makes.
async fn show_job(
    State(s): St,
    authz: IAuthz,
    Path((pid, id)): Path<(String, String)>,
) -> IResult<Json<Value>> {
    crate::huawei::own_project(authz.caller(), &pid, "IMS")?;
    let job = s.jobs.show(authz.caller(), JobService::Ims, &id).await?;
    authz
        .require(Facts {
            enterprise_project: Some(&job.enterprise_project_id),
            ..Facts::default()
        })
        .await?;
    Ok(Json(job_json(&job)))
}
