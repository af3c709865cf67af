//! The Block Storage API (Cinder v3 / EVS subset) under `/volume`: volumes, snapshots, limits.
//!
//! Paths are served in one canonical form, `/volume/v3/{project_id}/...`; [`volume_layer`]
//! rewrites project-less paths (`_` is the token's project) and answers with the version header.

use crate::error::{ApiError, ApiResult, Cinder};
use crate::extract::{action_body, parse_json, read_body, Authz};
use crate::routes::RouteTable;
use crate::AppState;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method as M, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use stratus_services::authz::{Authorized, Facts};
use stratus_services::identity::TokenInfo;
use stratus_services::model::{SnapshotRec, VolumeRec};
use stratus_services::quotas::{QuotaService, Quotas};
use stratus_services::volumes::{SnapshotCreate, VolumeCreate};

type VResult<T> = ApiResult<T, Cinder>;
type VAuthz = Authz<Cinder>;
type St = State<Arc<AppState>>;

const P: &str = "/volume/v3/{project_id}";
const COLLECTIONS: &[&str] = &[
    "volumes",
    "snapshots",
    "limits",
    "os-quota-sets",
    "types",
    "os-availability-zone",
];
/// The one version served; responses are those of 3.0.
const VERSION: &str = "3.0";

pub fn routes() -> RouteTable<Arc<AppState>> {
    let p = |s: &str| format!("{P}{s}");
    RouteTable::default()
        .at(M::GET, "/volume", versions)
        .at(M::GET, "/volume/", versions)
        .at(M::GET, "/volume/v3", version_doc)
        .at(M::GET, "/volume/v3/", version_doc)
        .at(M::GET, &p("/volumes"), list)
        .at(M::GET, &p("/volumes/detail"), detail)
        .at(M::POST, &p("/volumes"), create)
        .at(M::GET, &p("/volumes/{volume_id}"), show)
        .at(M::DELETE, &p("/volumes/{volume_id}"), delete)
        .at(M::POST, &p("/volumes/{volume_id}/action"), action)
        .at(M::GET, &p("/snapshots"), snapshots)
        .at(M::GET, &p("/snapshots/detail"), snapshots_detail)
        .at(M::POST, &p("/snapshots"), create_snapshot)
        .at(M::GET, &p("/snapshots/{snapshot_id}"), show_snapshot)
        .at(M::DELETE, &p("/snapshots/{snapshot_id}"), delete_snapshot)
        .at(M::GET, &p("/limits"), limits)
        .at(M::GET, &p("/os-quota-sets/{target_project_id}"), quota_show)
        .at(
            M::GET,
            &p("/os-quota-sets/{target_project_id}/defaults"),
            quota_defaults,
        )
        .at(
            M::PUT,
            &p("/os-quota-sets/{target_project_id}"),
            quota_update,
        )
        .at(
            M::DELETE,
            &p("/os-quota-sets/{target_project_id}"),
            quota_delete,
        )
}

/// Rewrites `/volume/v3/<collection>` to the canonical form and sets the version header.
pub async fn volume_layer(mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path != "/volume" && !path.starts_with("/volume/") {
        return next.run(req).await;
    }
    if let Some(p) =
        crate::routes::canonical_path(&path, &["/volume/v3/"], "/volume/v3/", COLLECTIONS)
    {
        crate::routes::set_path(&mut req, &p);
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        "openstack-api-version",
        HeaderValue::from_static("volume 3.0"),
    );
    h.insert(
        axum::http::header::VARY,
        HeaderValue::from_static("OpenStack-API-Version"),
    );
    resp
}

fn project_of<'a>(caller: &'a TokenInfo, in_url: &str) -> VResult<&'a str> {
    let Some(p) = caller.project() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Block storage needs a project-scoped token.",
        ));
    };
    if in_url != "_" && in_url != p.id {
        return Err(ApiError::bad_request(format!(
            "Malformed request url: project_id '{in_url}' does not match the token's project '{}'",
            p.id
        )));
    }
    Ok(&p.id)
}

fn version_json(s: &AppState) -> Value {
    json!({"id": "v3.0", "status": "CURRENT", "version": VERSION, "min_version": VERSION,
           "updated": "2023-08-31T00:00:00Z",
           "links": [{"rel": "self", "href": s.url("/volume/v3/")}],
           "media-types": [{"base": "application/json",
                            "type": "application/vnd.openstack.volume+json;version=3"}]})
}

async fn versions(State(s): St) -> Response {
    (
        StatusCode::MULTIPLE_CHOICES,
        Json(json!({"versions": [version_json(&s)]})),
    )
        .into_response()
}

async fn version_doc(State(s): St) -> Json<Value> {
    Json(json!({"versions": [version_json(&s)]}))
}

use crate::image::micros_naive as time;

fn links(s: &AppState, project: &str, kind: &str, id: &str) -> Value {
    json!([{"rel": "self", "href": s.url(&format!("/volume/v3/{project}/{kind}/{id}"))},
           {"rel": "bookmark", "href": s.url(&format!("/volume/{project}/{kind}/{id}"))}])
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!({}))
}

/// Which view of a volume or snapshot a response shows (Cinder's view builders and the API
/// extensions that extend only `show` and `detail`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    /// The answer to a create: the detail keys only, never updated yet.
    Created,
    /// A summary list entry (snapshots list their summary, which has the detail keys).
    Summary,
    /// `show` and `detail` lists: the detail keys and the extensions' attributes (the
    /// administrators' ones for administrators only).
    Shown { admin: bool },
}

/// A volume in Cinder 3.0's detail shape.
fn volume_json(s: &AppState, v: &VolumeRec, view: View) -> Value {
    let attachments = match &v.server_id {
        Some(server) => {
            json!([{"id": v.id, "attachment_id": v.id, "volume_id": v.id, "server_id": server,
                                "host_name": null, "device": v.device, "attached_at": time(v.updated_at)}])
        }
        None => json!([]),
    };
    let mut out = json!({
        "id": v.id, "name": v.name, "description": v.description, "size": v.size_gb,
        "status": v.status, "availability_zone": "nova", "created_at": time(v.created_at),
        "updated_at": time(v.updated_at), "volume_type": "__DEFAULT__", "snapshot_id": v.snapshot_id,
        "source_volid": null, "bootable": if v.bootable { "true" } else { "false" },
        "encrypted": false, "multiattach": false, "attachments": attachments,
        "metadata": v.metadata, "links": links(s, &v.project_id, "volumes", &v.id),
        "user_id": v.user_id, "replication_status": "disabled", "consistencygroup_id": null,
    });
    match view {
        View::Created => out["updated_at"] = Value::Null,
        View::Summary => {}
        View::Shown { admin } => {
            out["os-vol-tenant-attr:tenant_id"] = json!(v.project_id);
            if let Some(m) = &v.image_metadata {
                out["volume_image_metadata"] = json_of(m);
            }
            if admin {
                out["migration_status"] = Value::Null;
                out["os-vol-host-attr:host"] = json!(format!("{}@local#local", HOST));
                out["os-vol-mig-status-attr:migstat"] = Value::Null;
                out["os-vol-mig-status-attr:name_id"] = Value::Null;
            }
        }
    }
    out
}

/// The block storage host of this cloud, as administrators see it.
const HOST: &str = stratus_services::compute::HOST;

/// A snapshot in Cinder 3.0's shape (summary and detail are the same); shown ones carry the
/// extended attributes.
fn snapshot_json(v: &SnapshotRec, view: View) -> Value {
    let mut out = json!({
        "id": v.id, "name": v.name, "description": v.description, "volume_id": v.volume_id,
        "size": v.size_gb, "status": v.status, "created_at": time(v.created_at),
        "updated_at": time(v.updated_at), "metadata": v.metadata,
    });
    match view {
        View::Created => out["updated_at"] = Value::Null,
        View::Summary => {}
        View::Shown { .. } => {
            out["os-extended-snapshot-attributes:project_id"] = json!(v.project_id);
            out["os-extended-snapshot-attributes:progress"] = json!("100%");
        }
    }
    out
}

fn brief(s: &AppState, project: &str, kind: &str, id: &str, name: &Option<String>) -> Value {
    json!({"id": id, "name": name, "links": links(s, project, kind, id)})
}

async fn volumes(
    s: &AppState,
    authz: VAuthz,
    pid: &str,
) -> VResult<(String, Vec<VolumeRec>, View)> {
    let project = project_of(authz.caller(), pid)?.to_string();
    let c = authz.allow().await?;
    let view = View::Shown {
        admin: c.is_admin(),
    };
    Ok((project, s.volumes.list(&c).await?, view))
}

async fn list(State(s): St, authz: VAuthz, Path(pid): Path<String>) -> VResult<Json<Value>> {
    let (project, all, _) = volumes(&s, authz, &pid).await?;
    Ok(Json(json!({"volumes": all.iter()
        .map(|v| brief(&s, &project, "volumes", &v.id, &v.name)).collect::<Vec<_>>()})))
}

async fn detail(State(s): St, authz: VAuthz, Path(pid): Path<String>) -> VResult<Json<Value>> {
    let (_, all, view) = volumes(&s, authz, &pid).await?;
    Ok(Json(
        json!({"volumes": all.iter().map(|v| volume_json(&s, v, view)).collect::<Vec<_>>()}),
    ))
}

async fn visible(
    s: &AppState,
    authz: VAuthz,
    pid: &str,
    id: &str,
) -> VResult<(VolumeRec, Authorized)> {
    project_of(authz.caller(), pid)?;
    let v = s.volumes.get(authz.caller(), id).await?;
    let c = authz
        .require(Facts {
            enterprise_project: Some(&v.enterprise_project_id),
            ..Facts::default()
        })
        .await?;
    Ok((v, c))
}

async fn show(
    State(s): St,
    authz: VAuthz,
    Path((pid, id)): Path<(String, String)>,
) -> VResult<Json<Value>> {
    let (v, c) = visible(&s, authz, &pid, &id).await?;
    let view = View::Shown {
        admin: c.is_admin(),
    };
    Ok(Json(json!({"volume": volume_json(&s, &v, view)})))
}

async fn delete(
    State(s): St,
    authz: VAuthz,
    Path((pid, id)): Path<(String, String)>,
) -> VResult<StatusCode> {
    let (_, c) = visible(&s, authz, &pid, &id).await?;
    s.volumes.delete(&c, &id).await?;
    Ok(StatusCode::ACCEPTED)
}

/// The object under `key`, with only the `allowed` attributes (400 otherwise, as the schema says).
fn body_object(body: &Value, key: &str, allowed: &[&str]) -> VResult<Map<String, Value>> {
    let o = body
        .get(key)
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::bad_request(format!("'{key}' is a required property")))?;
    if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    Ok(o.clone())
}

fn opt_text(o: &Map<String, Value>, k: &str) -> VResult<Option<String>> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {k}: a string is required."
        ))),
    }
}

/// The first of `keys` present (Cinder still takes the v1 `display_*` names).
fn first_text(o: &Map<String, Value>, keys: &[&str]) -> VResult<Option<String>> {
    for k in keys {
        if let Some(v) = opt_text(o, k)? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

fn metadata(o: &Map<String, Value>) -> VResult<Map<String, Value>> {
    match o.get("metadata") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(ApiError::bad_request(
            "Invalid input for field/attribute metadata: an object is required.",
        )),
    }
}

/// A boolean as Cinder accepts it: JSON or a string like "true"/"False".
fn flag(o: &Map<String, Value>, k: &str) -> VResult<bool> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid value {other} for {k}: a boolean is required."
        ))),
    }
}

const VOLUME_ATTRS: &[&str] = &[
    "size",
    "name",
    "description",
    "imageRef",
    "image_id",
    "snapshot_id",
    "source_volid",
    "volume_type",
    "availability_zone",
    "metadata",
    "multiattach",
    "consistencygroup_id",
    "backup_id",
    "display_name",
    "display_description",
];

async fn create(
    State(s): St,
    authz: VAuthz,
    Path(pid): Path<String>,
    req: Request,
) -> VResult<Response> {
    let body: Value = parse_json(&read_body::<Cinder>(req).await?)?;
    let o = body_object(&body, "volume", VOLUME_ATTRS)?;
    let size = match o.get("size") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Invalid input received: size {v} must be an integer."
                    ))
                })?,
        ),
    };
    for unsupported in ["source_volid", "backup_id", "consistencygroup_id"] {
        if o.get(unsupported).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::bad_request(format!(
                "{unsupported} is not supported by this cloud."
            )));
        }
    }
    if let Some(t) = opt_text(&o, "volume_type")? {
        if t != "__DEFAULT__" {
            return Err(ApiError::bad_request(format!(
                "Volume type {t} could not be found."
            )));
        }
    }
    if let Some(az) = opt_text(&o, "availability_zone")? {
        if az != "nova" {
            return Err(ApiError::bad_request(format!(
                "Availability zone '{az}' is invalid."
            )));
        }
    }
    let image_id = first_text(&o, &["imageRef", "image_id"])?;
    let req = VolumeCreate {
        name: first_text(&o, &["name", "display_name"])?,
        description: first_text(&o, &["description", "display_description"])?,
        size_gb: size,
        image_id,
        snapshot_id: opt_text(&o, "snapshot_id")?,
        metadata: metadata(&o)?,
    };
    project_of(authz.caller(), &pid)?;
    let c = authz.allow().await?;
    let v = s.volumes.create(&c, req).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"volume": volume_json(&s, &v, View::Created)})),
    )
        .into_response())
}

async fn action(
    State(s): St,
    authz: VAuthz,
    Path((pid, id)): Path<(String, String)>,
    req: Request,
) -> VResult<StatusCode> {
    let (authz, _, arg) = action_body(authz, req).await?;
    let bootable = flag(arg.as_object().unwrap_or(&Map::new()), "bootable")?;
    if arg.get("bootable").is_none() {
        return Err(ApiError::bad_request("'bootable' is a required property"));
    }
    let (_, c) = visible(&s, authz, &pid, &id).await?;
    s.volumes.set_bootable(&c, &id, bootable).await?;
    Ok(StatusCode::OK)
}

async fn all_snapshots(s: &AppState, authz: VAuthz, pid: &str) -> VResult<Vec<SnapshotRec>> {
    project_of(authz.caller(), pid)?;
    let c = authz.allow().await?;
    Ok(s.volumes.snapshots(&c).await?)
}

/// `GET /snapshots`: Cinder's summary list (the same keys as a created snapshot's).
async fn snapshots(State(s): St, authz: VAuthz, Path(pid): Path<String>) -> VResult<Json<Value>> {
    let all = all_snapshots(&s, authz, &pid).await?;
    Ok(Json(
        json!({"snapshots": all.iter().map(|v| snapshot_json(v, View::Summary)).collect::<Vec<_>>()}),
    ))
}

async fn snapshots_detail(
    State(s): St,
    authz: VAuthz,
    Path(pid): Path<String>,
) -> VResult<Json<Value>> {
    let all = all_snapshots(&s, authz, &pid).await?;
    let view = View::Shown { admin: false };
    Ok(Json(
        json!({"snapshots": all.iter().map(|v| snapshot_json(v, view)).collect::<Vec<_>>()}),
    ))
}

async fn create_snapshot(
    State(s): St,
    authz: VAuthz,
    Path(pid): Path<String>,
    req: Request,
) -> VResult<Response> {
    let body: Value = parse_json(&read_body::<Cinder>(req).await?)?;
    let o = body_object(
        &body,
        "snapshot",
        &[
            "volume_id",
            "name",
            "description",
            "force",
            "metadata",
            "display_name",
            "display_description",
        ],
    )?;
    let volume_id = opt_text(&o, "volume_id")?
        .ok_or_else(|| ApiError::bad_request("'volume_id' is a required property"))?;
    let req = SnapshotCreate {
        volume_id,
        name: first_text(&o, &["name", "display_name"])?,
        description: first_text(&o, &["description", "display_description"])?,
        force: flag(&o, "force")?,
        metadata: metadata(&o)?,
    };
    project_of(authz.caller(), &pid)?;
    let c = authz.allow().await?;
    let snap = s.volumes.create_snapshot(&c, req).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"snapshot": snapshot_json(&snap, View::Created)})),
    )
        .into_response())
}

async fn show_snapshot(
    State(s): St,
    authz: VAuthz,
    Path((pid, id)): Path<(String, String)>,
) -> VResult<Json<Value>> {
    project_of(authz.caller(), &pid)?;
    let snap = s.volumes.snapshot(authz.caller(), &id).await?;
    authz.allow().await?;
    let view = View::Shown { admin: false };
    Ok(Json(json!({"snapshot": snapshot_json(&snap, view)})))
}

async fn delete_snapshot(
    State(s): St,
    authz: VAuthz,
    Path((pid, id)): Path<(String, String)>,
) -> VResult<StatusCode> {
    project_of(authz.caller(), &pid)?;
    s.volumes.snapshot(authz.caller(), &id).await?;
    let c = authz.allow().await?;
    s.volumes.delete_snapshot(&c, &id).await?;
    Ok(StatusCode::ACCEPTED)
}

async fn limits(State(s): St, authz: VAuthz, Path(pid): Path<String>) -> VResult<Json<Value>> {
    let project = project_of(authz.caller(), &pid)?.to_string();
    authz.allow().await?;
    let usage = s
        .volumes
        .quotas()
        .usage(&project, QuotaService::Volume, false)
        .await?;
    let get = |k: &str| usage.get(k).copied().unwrap_or_default();
    Ok(Json(json!({"limits": {"rate": [], "absolute": {
        "maxTotalVolumes": get("volumes").limit,
        "maxTotalSnapshots": get("snapshots").limit,
        "maxTotalVolumeGigabytes": get("gigabytes").limit,
        "maxTotalBackups": get("backups").limit,
        "maxTotalBackupGigabytes": get("backup_gigabytes").limit,
        "totalVolumesUsed": get("volumes").in_use,
        "totalGigabytesUsed": get("gigabytes").in_use,
        "totalSnapshotsUsed": get("snapshots").in_use,
        "totalBackupsUsed": 0,
        "totalBackupGigabytesUsed": 0,
    }}})))
}

/// The project a quota request is about: one of the caller's domain (400 otherwise, as
/// upstream says of an unknown project).
async fn quota_target(s: &AppState, authz: &VAuthz, pid: &str, target: &str) -> VResult<()> {
    project_of(authz.caller(), pid)?;
    stratus_services::quotas::visible_project(s.identity.store(), authz.caller(), target).await?;
    Ok(())
}

#[derive(serde::Deserialize, Default)]
struct UsageQuery {
    #[serde(default)]
    usage: Option<String>,
}

async fn quota_show(
    State(s): St,
    authz: VAuthz,
    Path((pid, target)): Path<(String, String)>,
    crate::extract::ApiQuery(q, _): crate::extract::ApiQuery<UsageQuery, Cinder>,
) -> VResult<Json<Value>> {
    let usage = match q.usage.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") | Some("0") | Some("no") | Some("off") => false,
        Some("true") | Some("1") | Some("yes") | Some("on") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid value {other:?} for usage: a boolean is required."
            )))
        }
    };
    quota_target(&s, &authz, &pid, &target).await?;
    authz.allow().await?;
    let quotas = s.volumes.quotas();
    Ok(if usage {
        let usage = quotas.usage(&target, QuotaService::Volume, false).await?;
        crate::quota_sets::usage(&target, usage)
    } else {
        let limits = quotas.limits(&target, QuotaService::Volume, false).await?;
        crate::quota_sets::limits(Some(&target), limits)
    })
}

async fn quota_defaults(
    State(s): St,
    authz: VAuthz,
    Path((pid, target)): Path<(String, String)>,
) -> VResult<Json<Value>> {
    quota_target(&s, &authz, &pid, &target).await?;
    authz.allow().await?;
    let defaults = Quotas::defaults(QuotaService::Volume, false);
    Ok(crate::quota_sets::limits(Some(&target), defaults))
}

async fn quota_update(
    State(s): St,
    authz: VAuthz,
    Path((pid, target)): Path<(String, String)>,
    req: Request,
) -> VResult<Json<Value>> {
    let body: Value = parse_json(&read_body::<Cinder>(req).await?)?;
    let mut set = crate::quota_sets::requested(&body)?;
    set.remove("tenant_id");
    set.remove("id");
    quota_target(&s, &authz, &pid, &target).await?;
    let c = authz.allow().await?;
    let quotas = s.volumes.quotas();
    quotas
        .set(&c, &target, QuotaService::Volume, &set, false)
        .await?;
    let limits = quotas.limits(&target, QuotaService::Volume, false).await?;
    Ok(crate::quota_sets::limits(None, limits))
}

async fn quota_delete(
    State(s): St,
    authz: VAuthz,
    Path((pid, target)): Path<(String, String)>,
) -> VResult<StatusCode> {
    quota_target(&s, &authz, &pid, &target).await?;
    let c = authz.allow().await?;
    s.volumes
        .quotas()
        .reset(&c, &target, QuotaService::Volume)
        .await?;
    Ok(StatusCode::OK)
}
