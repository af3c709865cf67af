//! Servers: create, list, show, delete, and the power actions, shaped per microversion.

use super::{project_of, time_z, Microversion, NAuthz, NResult, St, P};
use crate::error::{ApiError, Nova};
use crate::extract::{action_body, parse_json, read_body, ApiQuery};
use crate::routes::RouteTable;
use crate::AppState;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Method as M, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use stratus_services::authz::{Authorized, Facts};
use stratus_services::compute::{Action, ServerCreate, VolumeMapping, VolumeSource};
use stratus_services::create_image::Rotation;
use stratus_services::model::{ServerRec, TaskState, VmState, VolumeRec};
use stratus_services::rebuild::RebuildRequest;

pub fn routes() -> RouteTable<Arc<AppState>> {
    let p = |s: &str| format!("{P}{s}");
    RouteTable::default()
        .at(M::GET, &p("/servers"), list)
        .at(M::GET, &p("/servers/detail"), detail)
        .at(M::POST, &p("/servers"), create)
        .at(M::GET, &p("/servers/{server_id}"), show)
        .at(M::DELETE, &p("/servers/{server_id}"), delete)
        .at(M::POST, &p("/servers/{server_id}/action"), action)
}

fn links(s: &AppState, project: &str, kind: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": s.url(&format!("/compute/v2.1/{project}/{kind}/{id}"))},
        {"rel": "bookmark", "href": s.url(&format!("/compute/{project}/{kind}/{id}"))},
    ])
}

fn brief(s: &AppState, v: &ServerRec) -> Value {
    json!({"id": v.id, "name": v.name, "links": links(s, &v.project_id, "servers", &v.id)})
}

/// A server as `GET /servers/{id}` shows it at microversion `mv`.
fn server_json(s: &AppState, mv: Microversion, v: &ServerRec, attached: &[VolumeRec]) -> Value {
    let status = status_of(v);
    let image = if v.image_id.is_empty() {
        json!("")
    } else {
        json!({"id": v.image_id, "links": [{"rel": "bookmark",
            "href": s.url(&format!("/compute/{}/images/{}", v.project_id, v.image_id))}]})
    };
    let flavor = if mv.at_least(47) {
        Value::Object(v.flavor.clone())
    } else {
        json!({"id": v.flavor_id, "links": [{"rel": "bookmark",
            "href": s.url(&format!("/compute/{}/flavors/{}", v.project_id, v.flavor_id))}]})
    };
    let mut out = json!({
        "id": v.id, "name": v.name, "status": status, "tenant_id": v.project_id,
        "user_id": v.user_id,
        "metadata": v.metadata,
        "hostId": if v.vm_state == VmState::Building { String::new() } else { host_id(&v.project_id) },
        "image": image, "flavor": flavor,
        "created": time_z(v.created_at), "updated": time_z(v.updated_at),
        "addresses": {}, "accessIPv4": v.access_ipv4, "accessIPv6": v.access_ipv6,
        "links": links(s, &v.project_id, "servers", &v.id),
        "OS-DCF:diskConfig": disk_config(v.auto_disk_config),
        "OS-EXT-AZ:availability_zone": v.availability_zone,
        "config_drive": "", "key_name": null,
        "OS-SRV-USG:launched_at": v.launched_at.map(crate::image::micros_naive),
        "OS-SRV-USG:terminated_at": null,
        "OS-EXT-STS:task_state": v.task_state, "OS-EXT-STS:vm_state": v.vm_state,
        "OS-EXT-STS:power_state": v.power_state,
        "os-extended-volumes:volumes_attached": attached.iter().map(|a| if mv.at_least(3) {
            json!({"id": a.id, "delete_on_termination": a.delete_on_termination})
        } else {
            json!({"id": a.id})
        }).collect::<Vec<_>>(),
    });
    // No network service, so no ports and no security groups: upstream leaves the key out.
    if matches!(status, "ACTIVE" | "BUILD") {
        out["progress"] = json!(0);
    }
    if status == "ERROR" {
        if let Some(f) = v
            .fault
            .as_deref()
            .and_then(|f| serde_json::from_str::<Value>(f).ok())
        {
            out["fault"] = json!({"code": f["code"], "message": f["message"],
                                  "created": f["created"].as_i64().map(time_z)});
        }
    }
    if mv.at_least(9) {
        out["locked"] = json!(v.locked_by.is_some());
    }
    if mv.at_least(19) {
        out["description"] = json!(v.description);
    }
    if mv.at_least(26) {
        out["tags"] = json!([]);
    }
    out
}

/// A server as Huawei ECS's own API shows it: Nova's view (at 2.47) with ECS's flavor (its id
/// and sizes as text), image, volumes (`bootIndex`, `device`), enterprise project and the
/// system tag naming it.
pub(super) fn ecs_view(s: &AppState, v: &ServerRec, attached: &[VolumeRec]) -> Value {
    let mut out = server_json(s, Microversion(47), v, attached);
    let size = |k: &str| json!(v.flavor.get(k).map(|n| n.to_string()).unwrap_or_default());
    out["flavor"] = json!({
        "id": v.flavor_id,
        "name": v.flavor.get("original_name").cloned().unwrap_or_else(|| json!(v.flavor_id)),
        "disk": size("disk"), "vcpus": size("vcpus"), "ram": size("ram"),
    });
    out["image"] = json!({"id": v.image_id});
    // The boot volume of a server booted from volumes is "0"; other volumes follow by device.
    let boots_from =
        |a: &VolumeRec| v.image_id.is_empty() && a.device.as_deref() == Some("/dev/vda");
    let mut next = 0;
    out["os-extended-volumes:volumes_attached"] = attached
        .iter()
        .map(|a| {
            let index = if boots_from(a) {
                0
            } else {
                next += 1;
                next
            };
            json!({"id": a.id, "delete_on_termination": a.delete_on_termination.to_string(),
                   "bootIndex": index.to_string(), "device": a.device})
        })
        .collect();
    out["enterprise_project_id"] = json!(v.enterprise_project_id);
    out["sys_tags"] =
        json!([{"key": "_sys_enterprise_project_id", "value": v.enterprise_project_id}]);
    out["security_groups"] = json!([]);
    out["host_status"] = json!("UP");
    if let Some(o) = out.as_object_mut() {
        o.remove("links");
    }
    out
}

#[derive(Deserialize, Default)]
struct ListParams {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

async fn servers(s: &AppState, authz: NAuthz, pid: &str, q: ListParams) -> NResult<Vec<ServerRec>> {
    project_of(authz.caller(), pid)?;
    let limit = match &q.limit {
        None => 1000,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                ApiError::bad_request(format!("Invalid limit {l:?}: a non-negative integer."))
            })?
            .min(1000),
    };
    let c = authz.allow().await?;
    Ok(s.compute
        .list(&c, q.name.as_deref(), q.status.as_deref(), limit)
        .await?)
}

async fn list(
    State(s): St,
    authz: NAuthz,
    Path(pid): Path<String>,
    ApiQuery(q, _): ApiQuery<ListParams, Nova>,
) -> NResult<Json<Value>> {
    let all = servers(&s, authz, &pid, q).await?;
    Ok(Json(
        json!({"servers": all.iter().map(|v| brief(&s, v)).collect::<Vec<_>>()}),
    ))
}

async fn detail(
    State(s): St,
    mv: Microversion,
    authz: NAuthz,
    Path(pid): Path<String>,
    ApiQuery(q, _): ApiQuery<ListParams, Nova>,
) -> NResult<Json<Value>> {
    let all = servers(&s, authz, &pid, q).await?;
    let mut out = Vec::with_capacity(all.len());
    for v in &all {
        let attached = s.compute.attached_volumes(&v.id).await?;
        out.push(server_json(&s, mv, v, &attached));
    }
    Ok(Json(json!({"servers": out})))
}

async fn visible(
    s: &AppState,
    authz: NAuthz,
    pid: &str,
    id: &str,
) -> NResult<(ServerRec, Authorized)> {
    project_of(authz.caller(), pid)?;
    let v = s.compute.get(authz.caller(), id).await?;
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
    mv: Microversion,
    authz: NAuthz,
    Path((pid, id)): Path<(String, String)>,
) -> NResult<Json<Value>> {
    let (v, _) = visible(&s, authz, &pid, &id).await?;
    let attached = s.compute.attached_volumes(&v.id).await?;
    Ok(Json(json!({"server": server_json(&s, mv, &v, &attached)})))
}

async fn delete(
    State(s): St,
    authz: NAuthz,
    Path((pid, id)): Path<(String, String)>,
) -> NResult<StatusCode> {
    let (_, c) = visible(&s, authz, &pid, &id).await?;
    s.compute.delete(&c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The last path segment of a reference that may be a URL (`imageRef`, `flavorRef`).
fn reference(v: &Value, field: &str) -> NResult<String> {
    let s = v.as_str().ok_or_else(|| {
        ApiError::bad_request(format!(
            "Invalid input for field/attribute {field}: a string is required."
        ))
    })?;
    let id = s.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    if id.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {field}: empty reference."
        )));
    }
    Ok(id.to_string())
}

fn disk_config(auto: bool) -> &'static str {
    if auto {
        "AUTO"
    } else {
        "MANUAL"
    }
}

/// The keys of the server view a rebuild answers with (upstream's rebuild response schema up to
/// 2.47: no extended attributes, no security groups).
const REBUILD_VIEW: &[&str] = &[
    "accessIPv4",
    "accessIPv6",
    "addresses",
    "created",
    "flavor",
    "hostId",
    "id",
    "image",
    "links",
    "metadata",
    "name",
    "progress",
    "status",
    "tenant_id",
    "updated",
    "user_id",
    "OS-DCF:diskConfig",
    "fault",
    "locked",
    "description",
    "tags",
];

/// A string field of a request body: absent or null is `None`, anything but a string is a 400.
fn opt_text(o: &Map<String, Value>, k: &str) -> NResult<Option<String>> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {k}: a string is required."
        ))),
    }
}

/// `accessIPv4` / `accessIPv6`: an address of that family (upstream's schema: `format` ipv4 or
/// ipv6; the empty string is not one).
fn access_ip(o: &Map<String, Value>, k: &str) -> NResult<Option<String>> {
    let Some(v) = o.get(k) else {
        return Ok(None);
    };
    let (text, ok) = match v.as_str() {
        Some(t) if k == "accessIPv4" => (t, t.parse::<std::net::Ipv4Addr>().is_ok()),
        Some(t) => (t, t.parse::<std::net::Ipv6Addr>().is_ok()),
        None => ("", false),
    };
    if !ok {
        let family = if k == "accessIPv4" { "ipv4" } else { "ipv6" };
        return Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {k}. Value: {v}. '{text}' is not a '{family}'"
        )));
    }
    Ok(Some(text.to_string()))
}

/// `OS-DCF:diskConfig`: AUTO or MANUAL.
fn disk_config_of(o: &Map<String, Value>) -> NResult<Option<bool>> {
    match o.get("OS-DCF:diskConfig") {
        None => Ok(None),
        Some(v) if v == "AUTO" => Ok(Some(true)),
        Some(v) if v == "MANUAL" => Ok(Some(false)),
        Some(v) => Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute OS-DCF:diskConfig. Value: {v}. {v} is not one of ['AUTO', 'MANUAL']"
        ))),
    }
}

/// A server or image name as upstream's schema takes it: 1 to 255 printable characters without
/// leading or trailing white space.
fn checked_name(o: &Map<String, Value>, required: bool) -> NResult<Option<String>> {
    let bad = |m: String| ApiError::<Nova>::bad_request(m);
    let Some(v) = o.get("name") else {
        return if required {
            Err(bad("'name' is a required property".into()))
        } else {
            Ok(None)
        };
    };
    let name = v.as_str().ok_or_else(|| {
        bad("Invalid input for field/attribute name: a string is required.".into())
    })?;
    let count = name.chars().count();
    if count == 0 || count > 255 || name.trim() != name || name.chars().any(char::is_control) {
        return Err(bad(format!(
            "Invalid input for field/attribute name. Value: {name}. 1 to 255 printable characters without leading or trailing white space."
        )));
    }
    Ok(Some(name.to_string()))
}

/// The security groups a create asks for: with no network service only `default` exists.
fn security_groups(o: &Map<String, Value>, project: &str) -> NResult<Value> {
    let Some(v) = o.get("security_groups") else {
        return Ok(json!([{"name": "default"}]));
    };
    let list = v.as_array().ok_or_else(|| {
        ApiError::bad_request(
            "Invalid input for field/attribute security_groups: a list is required.",
        )
    })?;
    for g in list {
        match g.get("name").and_then(Value::as_str) {
            Some("default") => {}
            Some(n) => {
                return Err(ApiError::bad_request(format!(
                    "Security group {n} not found for project {project}."
                )))
            }
            None => {
                return Err(ApiError::bad_request(
                    "Invalid input for field/attribute security_groups: each needs a 'name'.",
                ))
            }
        }
    }
    Ok(v.clone())
}

/// The server attributes `POST /servers` accepts at microversion `mv` (anything else is 400, as
/// upstream's schema says).
fn known_attribute(mv: Microversion, k: &str) -> bool {
    matches!(
        k,
        "name"
            | "imageRef"
            | "flavorRef"
            | "metadata"
            | "availability_zone"
            | "networks"
            | "adminPass"
            | "security_groups"
            | "user_data"
            | "config_drive"
            | "min_count"
            | "max_count"
            | "return_reservation_id"
            | "key_name"
            | "block_device_mapping_v2"
            | "OS-DCF:diskConfig"
            | "accessIPv4"
            | "accessIPv6"
    ) || (k == "description" && mv.at_least(19))
}

fn parse_create(mv: Microversion, body: &Value) -> NResult<ServerCreate> {
    let bad = |m: String| ApiError::<Nova>::bad_request(m);
    let top = body
        .as_object()
        .ok_or_else(|| bad("The request body must be a JSON object.".into()))?;
    if let Some(k) = top.keys().find(|k| {
        *k != "server" && *k != "os:scheduler_hints" && *k != "OS-SCH-HNT:scheduler_hints"
    }) {
        return Err(bad(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    let srv = top
        .get("server")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("'server' is a required property".into()))?;
    if let Some(k) = srv.keys().find(|k| !known_attribute(mv, k)) {
        return Err(bad(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    let name = srv
        .get("name")
        .ok_or_else(|| bad("'name' is a required property".into()))?
        .as_str()
        .ok_or_else(|| bad("Invalid input for field/attribute name: a string is required.".into()))?
        .to_string();
    let flavor_id = reference(
        srv.get("flavorRef")
            .ok_or_else(|| bad("'flavorRef' is a required property".into()))?,
        "flavorRef",
    )?;
    // A mapping of the image to the local root disk is the same as imageRef; mappings to volumes
    // attach (or make) volumes.
    let mut bdm_image = None;
    let mut volumes = Vec::new();
    if let Some(bdm) = srv.get("block_device_mapping_v2") {
        let list = bdm.as_array().ok_or_else(|| {
            bad(
                "Invalid input for field/attribute block_device_mapping_v2: a list is required."
                    .into(),
            )
        })?;
        for m in list {
            volumes_or_image(m, &mut volumes, &mut bdm_image)?;
        }
    }
    let image_id = match (srv.get("imageRef"), bdm_image) {
        (Some(r), _) if r.as_str() != Some("") => reference(r, "imageRef")?,
        (_, Some(id)) => id,
        _ if !volumes.is_empty() => String::new(),
        _ => return Err(bad("'imageRef' is a required property".into())),
    };
    match srv.get("networks") {
        None if mv.at_least(37) => return Err(bad("'networks' is a required property".into())),
        None => {}
        Some(Value::String(n)) if (n == "auto" || n == "none") && mv.at_least(37) => {}
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(other) => {
            return Err(bad(format!(
                "Invalid networks {other}: this cloud has no networks; use \"auto\" or \"none\" (2.37+) or leave them out."
            )))
        }
    }
    if srv.get("key_name").is_some_and(|k| !k.is_null()) {
        return Err(bad(
            "Invalid key_name provided: this cloud has no key pairs.".into(),
        ));
    }
    for count in ["min_count", "max_count"] {
        if let Some(c) = srv.get(count) {
            if c.as_i64() != Some(1) && c.as_str() != Some("1") {
                return Err(bad(format!(
                    "Invalid {count} {c}: this cloud creates one server per request."
                )));
            }
        }
    }
    let metadata: Map<String, Value> = match srv.get("metadata") {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(bad(
                "Invalid input for field/attribute metadata: an object is required.".into(),
            ))
        }
    };
    let text = |k: &str| -> NResult<Option<String>> {
        match srv.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!(
                "Invalid input for field/attribute {k}: a string is required."
            ))),
        }
    };
    Ok(ServerCreate {
        name,
        description: text("description")?,
        image_id,
        volumes,
        flavor_id,
        metadata,
        availability_zone: text("availability_zone")?,
        admin_pass: text("adminPass")?,
        access_ipv4: access_ip(srv, "accessIPv4")?,
        access_ipv6: access_ip(srv, "accessIPv6")?,
        auto_disk_config: disk_config_of(srv)?,
    })
}

/// One `block_device_mapping_v2` entry: the image as the local root disk, or a volume.
fn volumes_or_image(
    m: &Value,
    volumes: &mut Vec<VolumeMapping>,
    image: &mut Option<String>,
) -> NResult<()> {
    let bad = |msg: String| {
        ApiError::<Nova>::bad_request(format!("Block Device Mapping is Invalid: {msg}"))
    };
    let o = m
        .as_object()
        .ok_or_else(|| bad("each mapping is an object.".into()))?;
    let text = |k: &str| o.get(k).and_then(Value::as_str);
    let boot_index = match o.get("boot_index") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| bad(format!("boot_index {v} is not an integer.")))?,
        ),
    };
    let destination = text("destination_type").unwrap_or("local");
    let source = text("source_type").unwrap_or("");
    let uuid = text("uuid").map(str::to_string);
    if destination == "local" {
        if source == "image" && boot_index == Some(0) {
            *image = Some(uuid.ok_or_else(|| bad("an image mapping needs a uuid.".into()))?);
            return Ok(());
        }
        return Err(bad(format!(
            "local disks from {source:?} are not supported; map volumes instead."
        )));
    }
    if destination != "volume" {
        return Err(bad(format!("unknown destination_type {destination:?}.")));
    }
    let source = match source {
        "volume" => VolumeSource::Volume,
        "image" => VolumeSource::Image,
        "snapshot" => VolumeSource::Snapshot,
        "blank" => VolumeSource::Blank,
        other => return Err(bad(format!("unknown source_type {other:?}."))),
    };
    if source != VolumeSource::Blank && uuid.is_none() {
        return Err(bad("the mapping needs a uuid.".into()));
    }
    let volume_size = match o.get("volume_size") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| bad(format!("volume_size {v} is not an integer.")))?,
        ),
    };
    let delete_on_termination = match o.get("delete_on_termination") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        Some(v) => return Err(bad(format!("delete_on_termination {v} is not a boolean."))),
    };
    volumes.push(VolumeMapping {
        source,
        uuid,
        boot_index,
        volume_size,
        delete_on_termination,
    });
    Ok(())
}

async fn create(
    State(s): St,
    mv: Microversion,
    authz: NAuthz,
    Path(pid): Path<String>,
    req: Request,
) -> NResult<Response> {
    let body: Value = parse_json(&read_body::<Nova>(req).await?)?;
    let create = parse_create(mv, &body)?;
    let project = project_of(authz.caller(), &pid)?.to_string();
    let groups = security_groups(body["server"].as_object().unwrap_or(&Map::new()), &project)?;
    let c = authz.allow().await?;
    let (v, pass) = s.compute.create(&c, create).await?;
    let out = json!({"server": {
        "id": v.id, "links": links(&s, &v.project_id, "servers", &v.id),
        "OS-DCF:diskConfig": disk_config(v.auto_disk_config), "security_groups": groups,
        "adminPass": pass,
    }});
    let mut resp = (StatusCode::ACCEPTED, Json(out)).into_response();
    let loc = s.url(&format!("/compute/v2.1/{}/servers/{}", v.project_id, v.id));
    if let Ok(h) = HeaderValue::from_str(&loc) {
        resp.headers_mut().insert(header::LOCATION, h);
    }
    Ok(resp)
}

/// The power action a body names; `None` for an action of the catalogue not served yet.
fn power_action(key: &str, arg: &Value) -> NResult<Option<Action>> {
    Ok(Some(match key {
        "os-stop" => Action::Stop,
        "os-start" => Action::Start,
        "pause" => Action::Pause,
        "unpause" => Action::Unpause,
        "suspend" => Action::Suspend,
        "resume" => Action::Resume,
        "reboot" => match arg.get("type").and_then(Value::as_str) {
            Some(t) if t.eq_ignore_ascii_case("SOFT") => Action::SoftReboot,
            Some(t) if t.eq_ignore_ascii_case("HARD") => Action::HardReboot,
            _ => {
                return Err(ApiError::bad_request(
                    "Invalid reboot: 'type' is required and must be SOFT or HARD.",
                ))
            }
        },
        _ => return Ok(None),
    }))
}

/// `{"length": n}` of os-getConsoleOutput: the last `n` lines; absent, null or -1 for all (an
/// integer or its decimal string, as upstream's schema allows).
fn parse_console_length(arg: &Value) -> NResult<Option<usize>> {
    let o = action_object("os-getConsoleOutput", arg)?;
    only_keys(o, &["length"])?;
    let n = match o.get("length") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(t)) => t.parse::<i64>().ok(),
        Some(_) => None,
    };
    match n {
        Some(-1) => Ok(None),
        Some(n) if n >= 0 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        _ => Err(ApiError::bad_request(
            "Invalid input for field/attribute length: must be an integer of at least -1.",
        )),
    }
}

/// Metadata items a createImage may carry before 2.39 (the metadata-items quota).
const METADATA_ITEMS: usize = 128;

/// `{"name", "metadata"}` of createImage, checked as upstream's schema does.
fn parse_create_image(mv: Microversion, arg: &Value) -> NResult<(String, Map<String, Value>)> {
    let o = action_object("createImage", arg)?;
    only_keys(o, &["name", "metadata"])?;
    let name = checked_name(o, true)?.unwrap_or_default();
    Ok((name, image_metadata(mv, o)?))
}

/// The `metadata` of createImage and createBackup, checked as upstream's schema does.
fn image_metadata(mv: Microversion, o: &Map<String, Value>) -> NResult<Map<String, Value>> {
    let bad = |m: String| ApiError::<Nova>::bad_request(m);
    let metadata = match o.get("metadata") {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(bad(
                "Invalid input for field/attribute metadata: an object is required.".into(),
            ))
        }
    };
    for (k, v) in &metadata {
        let key_ok = (1..=255).contains(&k.chars().count())
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_:. ".contains(c));
        if !key_ok {
            return Err(bad(format!(
                "Invalid input for field/attribute metadata. Invalid key {k:?}."
            )));
        }
        if v.as_str().is_none_or(|s| s.chars().count() > 255) {
            return Err(bad(format!(
                "Invalid input for field/attribute metadata. Value of {k:?} must be a string of at most 255 characters."
            )));
        }
    }
    if !mv.at_least(39) && metadata.len() > METADATA_ITEMS {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("Quota exceeded for metadata_items: Requested {}, but already used 0 of {METADATA_ITEMS} metadata_items", metadata.len()),
        ));
    }
    Ok(metadata)
}

/// Rejects keys of an action's body that upstream's schema does not have.
fn only_keys(o: &Map<String, Value>, allowed: &[&str]) -> NResult<()> {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad_request(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        ))),
        None => Ok(()),
    }
}

fn action_object<'a>(verb: &str, arg: &'a Value) -> NResult<&'a Map<String, Value>> {
    arg.as_object()
        .ok_or_else(|| ApiError::bad_request(format!("Invalid {verb}: an object is required.")))
}

/// `createBackup`: `name`, `backup_type`, `rotation` (a non-negative integer, or a string of
/// digits), `metadata`.
fn parse_create_backup(
    mv: Microversion,
    arg: &Value,
) -> NResult<(String, Rotation, Map<String, Value>)> {
    let o = action_object("createBackup", arg)?;
    only_keys(o, &["name", "backup_type", "rotation", "metadata"])?;
    let name = checked_name(o, true)?.unwrap_or_default();
    let backup_type = match o.get("backup_type") {
        None => {
            return Err(ApiError::bad_request(
                "'backup_type' is a required property",
            ))
        }
        Some(Value::String(t)) => t.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "Invalid input for field/attribute backup_type: a string is required.",
            ))
        }
    };
    let rotation = match o.get("rotation") {
        None => return Err(ApiError::bad_request("'rotation' is a required property")),
        Some(Value::Number(n)) => n.as_i64().filter(|n| *n >= 0),
        Some(Value::String(t)) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
            t.parse::<i64>().ok()
        }
        Some(_) => None,
    }
    .ok_or_else(|| {
        ApiError::bad_request(format!(
            "Invalid input for field/attribute rotation. Value: {}. A non-negative integer is required.",
            o["rotation"]
        ))
    })?;
    let metadata = image_metadata(mv, o)?;
    Ok((
        name,
        Rotation {
            backup_type,
            rotation,
        },
        metadata,
    ))
}

/// `rebuild` up to 2.47: `imageRef` and what else a rebuild may change.
fn parse_rebuild(mv: Microversion, arg: &Value) -> NResult<RebuildRequest> {
    let o = action_object("rebuild", arg)?;
    let mut allowed = vec![
        "imageRef",
        "name",
        "adminPass",
        "metadata",
        "preserve_ephemeral",
        "OS-DCF:diskConfig",
        "accessIPv4",
        "accessIPv6",
        "personality",
    ];
    if mv.at_least(19) {
        allowed.push("description");
    }
    only_keys(o, &allowed)?;
    let image_id = reference(
        o.get("imageRef")
            .ok_or_else(|| ApiError::bad_request("'imageRef' is a required property"))?,
        "imageRef",
    )?;
    let metadata = match o.get("metadata") {
        None => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "Invalid input for field/attribute metadata: an object is required.",
            ))
        }
    };
    if o.get("preserve_ephemeral").is_some_and(|v| !v.is_boolean()) {
        return Err(ApiError::bad_request(
            "Invalid input for field/attribute preserve_ephemeral: a boolean is required.",
        ));
    }
    match o.get("personality") {
        None => {}
        Some(Value::Array(files)) if files.is_empty() => {}
        Some(Value::Array(_)) => {
            return Err(ApiError::bad_request(
                "Personality files cannot be injected: this cloud has no file injection.",
            ))
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "Invalid input for field/attribute personality: a list is required.",
            ))
        }
    }
    Ok(RebuildRequest {
        image_id,
        name: checked_name(o, false)?,
        description: if o.contains_key("description") {
            Some(opt_text(o, "description")?)
        } else {
            None
        },
        metadata,
        admin_pass: opt_text(o, "adminPass")?,
        access_ipv4: access_ip(o, "accessIPv4")?,
        access_ipv6: access_ip(o, "accessIPv6")?,
        auto_disk_config: disk_config_of(o)?,
    })
}

/// The security group an `addSecurityGroup`/`removeSecurityGroup` names.
fn security_group_name(key: &str, arg: &Value) -> NResult<String> {
    let o = action_object(key, arg)?;
    match o.get("name") {
        None => Err(ApiError::bad_request("Security group not specified")),
        Some(Value::String(n)) if n.trim().is_empty() => {
            Err(ApiError::bad_request("Security group name cannot be empty"))
        }
        Some(Value::String(n)) => Ok(n.clone()),
        Some(_) => Err(ApiError::bad_request(
            "Invalid input for field/attribute name: a string is required.",
        )),
    }
}

/// `202` with the image's location below 2.45 (`Location` only when `with_location`), its id
/// in the body from 2.45.
fn image_accepted(s: &AppState, mv: Microversion, image_id: &str, with_location: bool) -> Response {
    if mv.at_least(45) {
        return (StatusCode::ACCEPTED, Json(json!({"image_id": image_id}))).into_response();
    }
    let mut resp = StatusCode::ACCEPTED.into_response();
    let loc = s.url(&format!("/image/v2/images/{image_id}"));
    if let (true, Ok(h)) = (with_location, HeaderValue::from_str(&loc)) {
        resp.headers_mut().insert(header::LOCATION, h);
    }
    resp
}

async fn action(
    State(s): St,
    mv: Microversion,
    authz: NAuthz,
    Path((pid, id)): Path<(String, String)>,
    req: Request,
) -> NResult<Response> {
    let (authz, key, arg) = action_body(authz, req).await?;
    match key.as_str() {
        "createImage" => {
            let (name, metadata) = parse_create_image(mv, &arg)?;
            let (_, c) = visible(&s, authz, &pid, &id).await?;
            let image = s.compute.create_image(&c, &id, &name, metadata).await?;
            return Ok(image_accepted(&s, mv, &image.image.id, true));
        }
        "createBackup" => {
            let (name, rotation, metadata) = parse_create_backup(mv, &arg)?;
            let keep = rotation.rotation;
            let (_, c) = visible(&s, authz, &pid, &id).await?;
            let image = s
                .compute
                .create_backup(&c, &id, &name, rotation, metadata)
                .await?;
            // Upstream names the image only when it is kept.
            return Ok(image_accepted(&s, mv, &image.image.id, keep > 0));
        }
        "rebuild" => {
            let req = parse_rebuild(mv, &arg)?;
            let (_, c) = visible(&s, authz, &pid, &id).await?;
            let (v, pass) = s.compute.rebuild(&c, &id, req).await?;
            let attached = s.compute.attached_volumes(&v.id).await?;
            let mut view = server_json(&s, mv, &v, &attached);
            if let Some(o) = view.as_object_mut() {
                o.retain(|k, _| REBUILD_VIEW.contains(&k.as_str()));
                o.insert("adminPass".into(), json!(pass));
            }
            let mut resp = (StatusCode::ACCEPTED, Json(json!({"server": view}))).into_response();
            let loc = s.url(&format!("/compute/v2.1/{}/servers/{}", v.project_id, v.id));
            if let Ok(h) = HeaderValue::from_str(&loc) {
                resp.headers_mut().insert(header::LOCATION, h);
            }
            return Ok(resp);
        }
        "os-getConsoleOutput" => {
            let lines = parse_console_length(&arg)?;
            let (_, c) = visible(&s, authz, &pid, &id).await?;
            let output = s.compute.console(&c, &id, lines).await?;
            return Ok(Json(json!({ "output": output })).into_response());
        }
        "lock" | "unlock" => {
            let (_, c) = visible(&s, authz, &pid, &id).await?;
            s.compute.set_lock(&c, &id, key == "lock").await?;
            return Ok(StatusCode::ACCEPTED.into_response());
        }
        "addSecurityGroup" | "removeSecurityGroup" => {
            let name = security_group_name(&key, &arg)?;
            let (v, _) = visible(&s, authz, &pid, &id).await?;
            // No network service: no security group exists, so none can be added or removed.
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "Security group {name} is not found for project {}",
                    v.project_id
                ),
            ));
        }
        _ => {}
    }
    let action = power_action(&key, &arg)?;
    let (_, c) = visible(&s, authz, &pid, &id).await?;
    let Some(action) = action else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("The server action {key} is not available in this cloud yet."),
        ));
    };
    s.compute.act(&c, &id, action).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Nova's status of a server, from its vm_state and task_state.
fn status_of(s: &ServerRec) -> &'static str {
    match (s.vm_state, s.task_state) {
        (VmState::Active | VmState::Stopped | VmState::Error, Some(t)) if t.is_rebuild() => {
            "REBUILD"
        }
        (VmState::Active, Some(TaskState::Rebooting)) => "REBOOT",
        (VmState::Active, Some(TaskState::RebootingHard)) => "HARD_REBOOT",
        (vm, _) => vm.status(),
    }
}

/// Nova's `hostId`: an opaque hash of the project and the host, the same for a project's servers
/// on one host.
fn host_id(project_id: &str) -> String {
    use sha2::{Digest, Sha224};
    let d = Sha224::digest(format!("{project_id}{}", stratus_services::compute::HOST).as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}
