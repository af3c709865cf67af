//! The Compute API (Nova v2.1 subset) under `/compute`: microversions, discovery, flavors,
//! servers and their actions.
//!
//! Every path is served in one canonical form, `/compute/v2.1/{project_id}/...`: the
//! [`compute_layer`] rewrites `/compute/v2/...` and paths without a project id (`_` stands for the
//! token's project) before routing, negotiates the microversion, and puts the version headers on
//! every compute response, errors included.

mod ecs;
mod images;
mod quotas;
mod servers;
mod version;

use crate::error::{ApiError, ApiResult, Nova};
use crate::extract::Authz;
use crate::routes::RouteTable;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::Method as M;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;
use stratus_services::identity::TokenInfo;
use stratus_services::model::FlavorRec;

pub use version::{compute_layer, Microversion, MAX_MINOR};

pub(crate) type NResult<T> = ApiResult<T, Nova>;
pub(crate) type NAuthz = Authz<Nova>;
pub(crate) type St = State<Arc<AppState>>;

/// The canonical prefix of every project-scoped route.
pub(crate) const P: &str = "/compute/v2.1/{project_id}";

pub fn routes() -> RouteTable<Arc<AppState>> {
    let p = |s: &str| format!("{P}{s}");
    RouteTable::default()
        .at(M::GET, "/compute", versions)
        .at(M::GET, "/compute/", versions)
        .at(M::GET, "/compute/v2.1", version_doc)
        .at(M::GET, "/compute/v2.1/", version_doc)
        .at(M::GET, &p("/flavors"), flavors)
        .at(M::GET, &p("/flavors/detail"), flavors_detail)
        .at(M::GET, &p("/flavors/{flavor_id}"), flavor)
        .merge(servers::routes())
        .merge(ecs::routes())
        .merge(images::routes())
        .merge(quotas::routes())
}

/// The project a request acts in: the token's. A project id in the URL must be the token's
/// (Nova's check); `_` is what the compute layer puts where the URL had none.
pub(crate) fn project_of<'a>(caller: &'a TokenInfo, in_url: &str) -> NResult<&'a str> {
    let Some(p) = caller.project() else {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "The compute service needs a project-scoped token.",
        ));
    };
    if in_url != "_" && in_url != p.id {
        return Err(ApiError::bad_request(format!(
            "Malformed request URL: URL's project_id '{in_url}' doesn't match Context's project_id '{}'",
            p.id
        )));
    }
    Ok(&p.id)
}

/// Nova's time format.
pub(crate) fn time_z(micros: i64) -> String {
    crate::image::seconds_z(micros)
}

fn version_json(s: &AppState) -> Value {
    json!({
        "id": "v2.1", "status": "CURRENT", "version": format!("2.{MAX_MINOR}"), "min_version": "2.1",
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": s.url("/compute/v2.1/")},
                  {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"}],
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.compute+json;version=2.1"}],
    })
}

async fn versions(State(s): St) -> Json<Value> {
    let v2 = json!({
        "id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "",
        "updated": "2011-01-21T11:33:21Z",
        "links": [{"rel": "self", "href": s.url("/compute/v2/")}],
    });
    Json(json!({"versions": [v2, version_json(&s)]}))
}

async fn version_doc(State(s): St) -> Json<Value> {
    Json(json!({"version": version_json(&s)}))
}

fn flavor_links(s: &AppState, project: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": s.url(&format!("/compute/v2.1/{project}/flavors/{id}"))},
        {"rel": "bookmark", "href": s.url(&format!("/compute/{project}/flavors/{id}"))},
    ])
}

fn flavor_json(
    s: &AppState,
    mv: Microversion,
    project: &str,
    f: &FlavorRec,
    detail: bool,
) -> Value {
    let mut v = json!({"id": f.id, "name": f.name, "links": flavor_links(s, project, &f.id)});
    if mv.at_least(55) {
        v["description"] = json!(f.description);
    }
    if detail {
        v["vcpus"] = json!(f.vcpus);
        v["ram"] = json!(f.ram_mb);
        v["disk"] = json!(f.disk_gb);
        v["OS-FLV-EXT-DATA:ephemeral"] = json!(f.ephemeral_gb);
        v["OS-FLV-DISABLED:disabled"] = json!(false);
        v["swap"] = if f.swap_mb == 0 {
            json!("")
        } else {
            json!(f.swap_mb)
        };
        v["rxtx_factor"] = json!(1.0);
        v["os-flavor-access:is_public"] = json!(f.is_public);
    }
    v
}

async fn flavor_list(
    s: &AppState,
    authz: NAuthz,
    pid: &str,
    mv: Microversion,
    detail: bool,
) -> NResult<Json<Value>> {
    let project = project_of(authz.caller(), pid)?.to_string();
    authz.allow().await?;
    let flavors = s.compute.flavors().await?;
    Ok(Json(json!({"flavors": flavors.iter()
        .map(|f| flavor_json(s, mv, &project, f, detail)).collect::<Vec<_>>()})))
}

async fn flavors(
    State(s): St,
    mv: Microversion,
    authz: NAuthz,
    Path(pid): Path<String>,
) -> NResult<Json<Value>> {
    flavor_list(&s, authz, &pid, mv, false).await
}

async fn flavors_detail(
    State(s): St,
    mv: Microversion,
    authz: NAuthz,
    Path(pid): Path<String>,
) -> NResult<Json<Value>> {
    flavor_list(&s, authz, &pid, mv, true).await
}

async fn flavor(
    State(s): St,
    mv: Microversion,
    authz: NAuthz,
    Path((pid, id)): Path<(String, String)>,
) -> NResult<Json<Value>> {
    let project = project_of(authz.caller(), &pid)?.to_string();
    let f = s.compute.flavor(&id).await?;
    authz.allow().await?;
    Ok(Json(
        json!({"flavor": flavor_json(&s, mv, &project, &f, true)}),
    ))
}
