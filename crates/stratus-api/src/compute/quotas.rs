//! Nova's `os-quota-sets`: a project's compute quotas (instances, cores, RAM and the ones shown
//! for clients that expect them), their usage, their defaults, and setting them.

use super::{project_of, Microversion, NAuthz, NResult, St, P};
use crate::error::ApiError;
use crate::extract::{parse_json, read_body};
use crate::quota_sets;
use crate::routes::RouteTable;
use crate::AppState;
use axum::extract::{Path, Request};
use axum::http::{Method as M, StatusCode};
use axum::Json;
use serde_json::Value;
use std::sync::Arc;
use stratus_services::quotas::{QuotaService, Quotas};

pub fn routes() -> RouteTable<Arc<AppState>> {
    let p = |s: &str| format!("{P}{s}");
    RouteTable::default()
        .at(M::GET, &p("/os-quota-sets/{tenant_id}"), show)
        .at(M::GET, &p("/os-quota-sets/{tenant_id}/detail"), detail)
        .at(M::GET, &p("/os-quota-sets/{tenant_id}/defaults"), defaults)
        .at(M::PUT, &p("/os-quota-sets/{tenant_id}"), update)
        .at(M::DELETE, &p("/os-quota-sets/{tenant_id}"), delete)
}

/// The legacy network quotas are shown up to 2.35.
fn legacy(mv: Microversion) -> bool {
    !mv.at_least(36)
}

async fn target(s: &AppState, authz: &NAuthz, pid: &str, tenant: &str) -> NResult<()> {
    project_of(authz.caller(), pid)?;
    stratus_services::quotas::visible_project(s.identity.store(), authz.caller(), tenant).await?;
    Ok(())
}

async fn show(
    axum::extract::State(s): St,
    mv: Microversion,
    authz: NAuthz,
    Path((pid, tenant)): Path<(String, String)>,
) -> NResult<Json<Value>> {
    target(&s, &authz, &pid, &tenant).await?;
    authz.allow().await?;
    let limits = s
        .volumes
        .quotas()
        .limits(&tenant, QuotaService::Compute, legacy(mv))
        .await?;
    Ok(quota_sets::limits(Some(&tenant), limits))
}

async fn detail(
    axum::extract::State(s): St,
    mv: Microversion,
    authz: NAuthz,
    Path((pid, tenant)): Path<(String, String)>,
) -> NResult<Json<Value>> {
    target(&s, &authz, &pid, &tenant).await?;
    authz.allow().await?;
    let usage = s
        .volumes
        .quotas()
        .usage(&tenant, QuotaService::Compute, legacy(mv))
        .await?;
    Ok(quota_sets::usage(&tenant, usage))
}

async fn defaults(
    axum::extract::State(s): St,
    mv: Microversion,
    authz: NAuthz,
    Path((pid, tenant)): Path<(String, String)>,
) -> NResult<Json<Value>> {
    target(&s, &authz, &pid, &tenant).await?;
    authz.allow().await?;
    let defaults = Quotas::defaults(QuotaService::Compute, legacy(mv));
    Ok(quota_sets::limits(Some(&tenant), defaults))
}

async fn update(
    axum::extract::State(s): St,
    mv: Microversion,
    authz: NAuthz,
    Path((pid, tenant)): Path<(String, String)>,
    req: Request,
) -> NResult<Json<Value>> {
    let body: Value = parse_json(&read_body(req).await?)?;
    let mut set = quota_sets::requested(&body)?;
    let force = match set.remove("force") {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(Value::String(t)) if t.eq_ignore_ascii_case("true") => true,
        Some(Value::String(t)) if t.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "Invalid input for field/attribute force. Value: {v}. A boolean is required."
            )))
        }
    };
    let shown = Quotas::defaults(QuotaService::Compute, legacy(mv));
    if let Some(k) = set.keys().find(|k| !shown.contains_key(*k)) {
        return Err(ApiError::bad_request(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    target(&s, &authz, &pid, &tenant).await?;
    let c = authz.allow().await?;
    let quotas = s.volumes.quotas();
    quotas
        .set(&c, &tenant, QuotaService::Compute, &set, force)
        .await?;
    let limits = quotas
        .limits(&tenant, QuotaService::Compute, legacy(mv))
        .await?;
    Ok(quota_sets::limits(None, limits))
}

async fn delete(
    axum::extract::State(s): St,
    authz: NAuthz,
    Path((pid, tenant)): Path<(String, String)>,
) -> NResult<StatusCode> {
    target(&s, &authz, &pid, &tenant).await?;
    let c = authz.allow().await?;
    s.volumes
        .quotas()
        .reset(&c, &tenant, QuotaService::Compute)
        .await?;
    Ok(StatusCode::ACCEPTED)
}
