//! Huawei Cloud ECS's own API on the compute service (`/v1/{project_id}/cloudservers`): the
//! details of one server and of a page of them, as the SDK's `show_server` and
//! `list_servers_details` read them. Errors in ECS's format (`{"error": {"code": "Ecs.xxxx",
//! "message"}}`).

use super::servers::ecs_view;
use super::St;
use crate::error::{ApiError, ApiResult, Ecs};
use crate::extract::{ApiQuery, Authz};
use crate::routes::RouteTable;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::Method as M;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use stratus_services::authz::Facts;
use stratus_services::identity::TokenInfo;
use stratus_services::limits::SERVERS_SCANNED;

type EResult<T> = ApiResult<T, Ecs>;
type EAuthz = Authz<Ecs>;

/// Servers of one page when `limit` is not given, and at most (ECS's).
const DEFAULT_LIMIT: usize = 25;
const MAX_LIMIT: usize = 1000;

pub fn routes() -> RouteTable<Arc<AppState>> {
    RouteTable::default()
        .at(
            M::GET,
            "/compute/v1/{project_id}/cloudservers/detail",
            list_servers_details,
        )
        .at(
            M::GET,
            "/compute/v1/{project_id}/cloudservers/{server_id}",
            show_server,
        )
}

fn own_project(caller: &TokenInfo, pid: &str) -> EResult<()> {
    crate::huawei::own_project(caller, pid, "ECS")
}

/// The SDK's `show_server`: decided as `ecs:cloudServers:get` in the server's enterprise
/// project.
async fn show_server(
    State(s): St,
    authz: EAuthz,
    Path((pid, id)): Path<(String, String)>,
) -> EResult<Json<Value>> {
    own_project(authz.caller(), &pid)?;
    let v = s.compute.get(authz.caller(), &id).await?;
    authz
        .require(Facts {
            enterprise_project: Some(&v.enterprise_project_id),
            ..Facts::default()
        })
        .await?;
    let attached = s.compute.attached_volumes(&v.id).await?;
    Ok(Json(json!({"server": ecs_view(&s, &v, &attached)})))
}

/// The query of `list_servers_details`. Filters on what stratus servers never have (tags, IP
/// addresses, reservations) select nothing, as they would select no such server.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    offset: Option<String>,
    limit: Option<String>,
    name: Option<String>,
    status: Option<String>,
    flavor: Option<String>,
    enterprise_project_id: Option<String>,
    server_id: Option<String>,
    marker: Option<String>,
    tags: Option<String>,
    /// Accepted: it excludes servers with the tags named, and no server has tags.
    #[serde(rename = "not-tags")]
    #[allow(dead_code)]
    not_tags: Option<String>,
    ip: Option<String>,
    ip_eq: Option<String>,
    reservation_id: Option<String>,
}

fn number(field: &str, v: &Option<String>, default: usize, max: usize) -> EResult<usize> {
    match v {
        None => Ok(default),
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("Invalid {field} {t:?}: 1 to {max}."))),
    }
}

/// The SDK's `list_servers_details`: `count` of the servers that match, and the page `offset`
/// (1 first; 0 is 1 too) of `limit` of them, newest first; `server_id` is a comma-separated
/// list. Decided as `ecs:cloudServers:list`, in the
/// enterprise project asked for when one is.
async fn list_servers_details(
    State(s): St,
    authz: EAuthz,
    Path(pid): Path<String>,
    ApiQuery(q, _): ApiQuery<ListQuery, Ecs>,
) -> EResult<Json<Value>> {
    own_project(authz.caller(), &pid)?;
    let limit = number("limit", &q.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    // ECS takes 0 for the first page too.
    let page = match q.offset.as_deref() {
        Some("0") => 1,
        _ => number("offset", &q.offset, 1, SERVERS_SCANNED)?,
    };
    let ep = q
        .enterprise_project_id
        .clone()
        .filter(|e| e != "all_granted_eps");
    let c = authz
        .require(Facts {
            enterprise_project: ep.as_deref(),
            ..Facts::default()
        })
        .await?;
    let never =
        q.tags.is_some() || q.ip.is_some() || q.ip_eq.is_some() || q.reservation_id.is_some();
    let mut all = if never {
        Vec::new()
    } else {
        s.compute
            .list(
                &c,
                q.name.as_deref(),
                q.status.as_deref(),
                SERVERS_SCANNED as i64,
            )
            .await?
    };
    all.retain(|v| {
        ep.as_ref().is_none_or(|e| *e == v.enterprise_project_id)
            && q.flavor.as_ref().is_none_or(|f| *f == v.flavor_id)
            && q.server_id
                .as_ref()
                .is_none_or(|ids| ids.split(',').any(|i| i.trim() == v.id))
    });
    // `count` is of every match; the page starts after `marker` when one is given (and then
    // `offset` is not used), else at page `offset`.
    let count = all.len();
    let start = match &q.marker {
        Some(m) => {
            all.iter().position(|v| &v.id == m).ok_or_else(|| {
                ApiError::bad_request(format!("Marker {m:?} is no server listed."))
            })? + 1
        }
        None => (page - 1).saturating_mul(limit),
    };
    let mut servers = Vec::with_capacity(limit.min(count));
    for v in all.iter().skip(start).take(limit) {
        let attached = s.compute.attached_volumes(&v.id).await?;
        servers.push(ecs_view(&s, v, &attached));
    }
    Ok(Json(json!({"count": count, "servers": servers})))
}
