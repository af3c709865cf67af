//! Records and queries of authorization data: enterprise projects, custom policies, grants.

use crate::identity::{role_from, ROLE_COLS};
use crate::{flag, Db, Result};
use sqlx::any::AnyRow;
use sqlx::FromRow;
use sqlx::Row;
use stratus_model::*;

/// The default enterprise project every deployment has.
pub const DEFAULT_ENTERPRISE_PROJECT: &str = "0";

const EP_COLS: &str = "id, domain_id, name, description, enabled, created_at, updated_at";

fn ep_from(r: &AnyRow) -> Result<EnterpriseProjectRec> {
    Ok(EnterpriseProjectRec::from_row(r)?)
}

pub async fn ep_insert<'e, E: Db<'e>>(e: E, p: &EnterpriseProjectRec) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO enterprise_projects ({EP_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(&p.id)
    .bind(&p.domain_id)
    .bind(&p.name)
    .bind(&p.description)
    .bind(flag(p.enabled))
    .bind(p.created_at)
    .bind(p.updated_at)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn ep_update<'e, E: Db<'e>>(e: E, p: &EnterpriseProjectRec) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE enterprise_projects SET name = $2, description = $3, enabled = $4, updated_at = $5 WHERE id = $1",
    )
    .bind(&p.id)
    .bind(&p.name)
    .bind(&p.description)
    .bind(flag(p.enabled))
    .bind(p.updated_at)
    .execute(e)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn ep_delete<'e, E: Db<'e>>(e: E, id: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM enterprise_projects WHERE id = $1")
        .bind(id)
        .execute(e)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Whether any image, server or volume is in enterprise project `id`.
pub async fn ep_in_use(e: &mut sqlx::AnyConnection, id: &str) -> Result<bool> {
    for table in ["images", "servers", "volumes"] {
        let sql = format!("SELECT 1 FROM {table} WHERE enterprise_project_id = $1 LIMIT 1");
        if sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut *e)
            .await?
            .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

pub async fn ep_get<'e, E: Db<'e>>(e: E, id: &str) -> Result<Option<EnterpriseProjectRec>> {
    sqlx::query(&format!(
        "SELECT {EP_COLS} FROM enterprise_projects WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(e)
    .await?
    .as_ref()
    .map(ep_from)
    .transpose()
}

pub async fn ep_list<'e, E: Db<'e>>(
    e: E,
    domain_id: &str,
    name: Option<&str>,
) -> Result<Vec<EnterpriseProjectRec>> {
    sqlx::query(&format!(
        "SELECT {EP_COLS} FROM enterprise_projects WHERE domain_id = $1 AND ($2 IS NULL OR name = $2) ORDER BY created_at, id"
    ))
    .bind(domain_id)
    .bind(name)
    .fetch_all(e)
    .await?
    .iter()
    .map(ep_from)
    .collect()
}

// ---------------------------------------------------------------------------------------------
// custom policies

pub async fn role_update<'e, E: Db<'e>>(e: E, r: &RoleRec) -> Result<bool> {
    let res = sqlx::query(
        "UPDATE roles SET display_name = $2, description = $3, policy = $4, updated_at = $5 WHERE id = $1",
    )
    .bind(&r.id)
    .bind(&r.display_name)
    .bind(&r.description)
    .bind(&r.policy)
    .bind(crate::now_micros())
    .execute(e)
    .await?;
    Ok(res.rows_affected() > 0)
}

pub async fn role_delete<'e, E: Db<'e>>(e: E, id: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM roles WHERE id = $1")
        .bind(id)
        .execute(e)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn custom_role_count<'e, E: Db<'e>>(e: E, domain_id: &str) -> Result<i64> {
    let r = sqlx::query("SELECT COUNT(*) FROM roles WHERE kind = 'custom' AND domain_id = $1")
        .bind(domain_id)
        .fetch_one(e)
        .await?;
    Ok(r.try_get(0)?)
}

/// System policies and the custom policies of one domain.
pub async fn roles_visible<'e, E: Db<'e>>(e: E, domain_id: &str) -> Result<Vec<RoleRec>> {
    sqlx::query(&format!(
        "SELECT {ROLE_COLS} FROM roles WHERE domain_id IS NULL OR domain_id = $1 ORDER BY kind DESC, display_name, id"
    ))
    .bind(domain_id)
    .fetch_all(e)
    .await?
    .iter()
    .map(role_from)
    .collect()
}

// ---------------------------------------------------------------------------------------------
// grants

pub async fn grant_exists<'e, E: Db<'e>>(e: E, g: &GrantRec) -> Result<bool> {
    let r = sqlx::query(
        "SELECT 1 FROM grants WHERE role_id = $1 AND actor_kind = $2 AND actor_id = $3 AND scope_kind = $4 AND scope_id = $5",
    )
    .bind(&g.role_id)
    .bind(g.actor_kind.as_str())
    .bind(&g.actor_id)
    .bind(g.scope_kind.as_str())
    .bind(&g.scope_id)
    .fetch_optional(e)
    .await?;
    Ok(r.is_some())
}

pub async fn grant_delete<'e, E: Db<'e>>(e: E, g: &GrantRec) -> Result<bool> {
    let r = sqlx::query(
        "DELETE FROM grants WHERE role_id = $1 AND actor_kind = $2 AND actor_id = $3 AND scope_kind = $4 AND scope_id = $5",
    )
    .bind(&g.role_id)
    .bind(g.actor_kind.as_str())
    .bind(&g.actor_id)
    .bind(g.scope_kind.as_str())
    .bind(&g.scope_id)
    .execute(e)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Roles granted to one actor on one scope.
pub async fn grants_on<'e, E: Db<'e>>(
    e: E,
    actor_kind: ActorKind,
    actor_id: &str,
    scope_kind: ScopeKind,
    scope_id: &str,
) -> Result<Vec<RoleRec>> {
    let cols = ROLE_COLS
        .split(", ")
        .map(|c| format!("r.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(&format!(
        "SELECT {cols} FROM roles r JOIN grants g ON g.role_id = r.id WHERE g.actor_kind = $1 AND g.actor_id = $2 \
         AND g.scope_kind = $3 AND g.scope_id = $4 ORDER BY r.display_name"
    ))
    .bind(actor_kind.as_str())
    .bind(actor_id)
    .bind(scope_kind.as_str())
    .bind(scope_id)
    .fetch_all(e)
    .await?
    .iter()
    .map(role_from)
    .collect()
}

/// Every grant that reaches a user, directly or through a group, with its scope and role.
pub async fn grants_reaching_user<'e, E: Db<'e>>(
    e: E,
    user_id: &str,
) -> Result<Vec<(ScopeKind, String, RoleRec)>> {
    let cols = ROLE_COLS
        .split(", ")
        .map(|c| format!("r.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = sqlx::query(&format!(
        "SELECT DISTINCT g.scope_kind, g.scope_id, {cols} FROM grants g JOIN roles r ON r.id = g.role_id \
         WHERE (g.actor_kind = 'user' AND g.actor_id = $1) OR (g.actor_kind = 'group' AND g.actor_id IN \
         (SELECT group_id FROM group_members WHERE user_id = $1))"
    ))
    .bind(user_id)
    .fetch_all(e)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let kind: String = r.try_get("scope_kind")?;
        if let Some(kind) = ScopeKind::parse(&kind) {
            out.push((kind, r.try_get("scope_id")?, role_from(r)?));
        }
    }
    Ok(out)
}
