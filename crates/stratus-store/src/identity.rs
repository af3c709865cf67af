//! Records and queries of identity data: domains, projects, users, groups, roles, grants, token
//! keys, revocations, regions, the service catalogue and flavors.
//!
//! Every function takes any executor (the pool for reads, a [`crate::WriteTx`] connection inside
//! a transaction), so one query serves both.

use crate::{flag, Db, Result};
use sqlx::any::AnyRow;
use sqlx::FromRow;
use sqlx::Row;
use stratus_model::*;

// ---------------------------------------------------------------------------------------------
// meta

pub async fn meta_get<'e, E: Db<'e>>(e: E, key: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
        .bind(key)
        .fetch_optional(e)
        .await?;
    Ok(match row {
        Some(r) => Some(r.try_get(0)?),
        None => None,
    })
}

pub async fn meta_set<'e, E: Db<'e>>(e: E, key: &str, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(e)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// regions and domains

pub async fn region_insert<'e, E: Db<'e>>(e: E, id: &str, description: &str) -> Result<()> {
    sqlx::query("INSERT INTO regions (id, description) VALUES ($1, $2)")
        .bind(id)
        .bind(description)
        .execute(e)
        .await?;
    Ok(())
}

pub async fn region_list<'e, E: Db<'e>>(e: E) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query("SELECT id, description FROM regions ORDER BY id")
        .fetch_all(e)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

fn domain_from(r: &AnyRow) -> Result<DomainRec> {
    Ok(DomainRec::from_row(r)?)
}

const DOMAIN_COLS: &str = "id, name, description, enabled";

pub async fn domain_insert<'e, E: Db<'e>>(e: E, d: &DomainRec) -> Result<()> {
    sqlx::query("INSERT INTO domains (id, name, description, enabled, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&d.id)
        .bind(&d.name)
        .bind(&d.description)
        .bind(flag(d.enabled))
        .bind(crate::now_micros())
        .execute(e)
        .await?;
    Ok(())
}

pub async fn domain_get<'e, E: Db<'e>>(e: E, id: &str) -> Result<Option<DomainRec>> {
    let q = format!("SELECT {DOMAIN_COLS} FROM domains WHERE id = $1");
    sqlx::query(&q)
        .bind(id)
        .fetch_optional(e)
        .await?
        .as_ref()
        .map(domain_from)
        .transpose()
}

pub async fn domain_by_name<'e, E: Db<'e>>(e: E, name: &str) -> Result<Option<DomainRec>> {
    let q = format!("SELECT {DOMAIN_COLS} FROM domains WHERE name = $1");
    sqlx::query(&q)
        .bind(name)
        .fetch_optional(e)
        .await?
        .as_ref()
        .map(domain_from)
        .transpose()
}

pub async fn domain_list<'e, E: Db<'e>>(e: E, name: Option<&str>) -> Result<Vec<DomainRec>> {
    let q =
        format!("SELECT {DOMAIN_COLS} FROM domains WHERE ($1 IS NULL OR name = $1) ORDER BY name");
    sqlx::query(&q)
        .bind(name)
        .fetch_all(e)
        .await?
        .iter()
        .map(domain_from)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// projects

const PROJECT_COLS: &str = "id, domain_id, name, description, enabled, tokens_valid_after";

fn project_from(r: &AnyRow) -> Result<ProjectRec> {
    Ok(ProjectRec::from_row(r)?)
}

pub async fn project_insert<'e, E: Db<'e>>(e: E, p: &ProjectRec) -> Result<()> {
    sqlx::query(
        "INSERT INTO projects (id, domain_id, name, description, enabled, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&p.id)
    .bind(&p.domain_id)
    .bind(&p.name)
    .bind(&p.description)
    .bind(flag(p.enabled))
    .bind(crate::now_micros())
    .execute(e)
    .await?;
    Ok(())
}

pub async fn project_update<'e, E: Db<'e>>(e: E, p: &ProjectRec) -> Result<bool> {
    let r =
        sqlx::query("UPDATE projects SET name = $2, description = $3, enabled = $4, tokens_valid_after = $5 WHERE id = $1")
            .bind(&p.id)
            .bind(&p.name)
            .bind(&p.description)
            .bind(flag(p.enabled))
            .bind(p.tokens_valid_after)
            .execute(e)
            .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn project_delete<'e, E: Db<'e>>(e: E, id: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM projects WHERE id = $1")
        .bind(id)
        .execute(e)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn project_get<'e, E: Db<'e>>(e: E, id: &str) -> Result<Option<ProjectRec>> {
    let q = format!("SELECT {PROJECT_COLS} FROM projects WHERE id = $1");
    sqlx::query(&q)
        .bind(id)
        .fetch_optional(e)
        .await?
        .as_ref()
        .map(project_from)
        .transpose()
}

pub async fn project_by_name<'e, E: Db<'e>>(
    e: E,
    domain_id: &str,
    name: &str,
) -> Result<Option<ProjectRec>> {
    let q = format!("SELECT {PROJECT_COLS} FROM projects WHERE domain_id = $1 AND name = $2");
    sqlx::query(&q)
        .bind(domain_id)
        .bind(name)
        .fetch_optional(e)
        .await?
        .as_ref()
        .map(project_from)
        .transpose()
}

pub async fn project_list<'e, E: Db<'e>>(e: E, f: &ProjectFilter<'_>) -> Result<Vec<ProjectRec>> {
    let q = format!(
        "SELECT {PROJECT_COLS} FROM projects WHERE ($1 IS NULL OR domain_id = $1) \
         AND ($2 IS NULL OR name = $2) AND ($3 IS NULL OR enabled = $3) ORDER BY name, id"
    );
    sqlx::query(&q)
        .bind(f.domain_id)
        .bind(f.name)
        .bind(f.enabled.map(flag))
        .fetch_all(e)
        .await?
        .iter()
        .map(project_from)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// users

const USER_COLS: &str =
    "id, domain_id, name, description, email, enabled, password_hash, default_project_id, tokens_valid_after";

fn user_from(r: &AnyRow) -> Result<UserRec> {
    Ok(UserRec::from_row(r)?)
}

pub async fn user_insert<'e, E: Db<'e>>(e: E, u: &UserRec) -> Result<()> {
    sqlx::query(
        "INSERT INTO users (id, domain_id, name, description, email, enabled, password_hash, \
         default_project_id, tokens_valid_after, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&u.id)
    .bind(&u.domain_id)
    .bind(&u.name)
    .bind(&u.description)
    .bind(&u.email)
    .bind(flag(u.enabled))
    .bind(&u.password_hash)
    .bind(&u.default_project_id)
    .bind(u.tokens_valid_after)
    .bind(crate::now_micros())
    .execute(e)
    .await?;
    Ok(())
}

pub async fn user_update<'e, E: Db<'e>>(e: E, u: &UserRec) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE users SET name = $2, description = $3, email = $4, enabled = $5, password_hash = $6, \
         default_project_id = $7, tokens_valid_after = $8 WHERE id = $1",
    )
    .bind(&u.id)
    .bind(&u.name)
    .bind(&u.description)
    .bind(&u.email)
    .bind(flag(u.enabled))
    .bind(&u.password_hash)
    .bind(&u.default_project_id)
    .bind(u.tokens_valid_after)
    .execute(e)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn user_delete<'e, E: Db<'e>>(e: E, id: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(e)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn user_get<'e, E: Db<'e>>(e: E, id: &str) -> Result<Option<UserRec>> {
    let q = format!("SELECT {USER_COLS} FROM users WHERE id = $1");
    sqlx::query(&q)
        .bind(id)
        .fetch_optional(e)
        .await?
        .as_ref()
        .map(user_from)
        .transpose()
}

pub async fn user_by_name<'e, E: Db<'e>>(
    e: E,
    domain_id: &str,
    name: &str,
) -> Result<Option<UserRec>> {
    let q = format!("SELECT {USER_COLS} FROM users WHERE domain_id = $1 AND name = $2");
    sqlx::query(&q)
        .bind(domain_id)
        .bind(name)
        .fetch_optional(e)
        .await?
        .as_ref()
        .map(user_from)
        .transpose()
}

pub async fn user_list<'e, E: Db<'e>>(e: E, f: &UserFilter<'_>) -> Result<Vec<UserRec>> {
    let q = format!(
        "SELECT {USER_COLS} FROM users WHERE ($1 IS NULL OR domain_id = $1) \
         AND ($2 IS NULL OR name = $2) AND ($3 IS NULL OR enabled = $3) ORDER BY name, id"
    );
    sqlx::query(&q)
        .bind(f.domain_id)
        .bind(f.name)
        .bind(f.enabled.map(flag))
        .fetch_all(e)
        .await?
        .iter()
        .map(user_from)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// groups and membership

const GROUP_COLS: &str = "id, domain_id, name, description";

fn group_from(r: &AnyRow) -> Result<GroupRec> {
    Ok(GroupRec::from_row(r)?)
}

pub async fn group_insert<'e, E: Db<'e>>(e: E, g: &GroupRec) -> Result<()> {
    sqlx::query(
        "INSERT INTO user_groups (id, domain_id, name, description, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&g.id)
    .bind(&g.domain_id)
    .bind(&g.name)
    .bind(&g.description)
    .bind(crate::now_micros())
    .execute(e)
    .await?;
    Ok(())
}

pub async fn group_update<'e, E: Db<'e>>(e: E, g: &GroupRec) -> Result<bool> {
    let r = sqlx::query("UPDATE user_groups SET name = $2, description = $3 WHERE id = $1")
        .bind(&g.id)
        .bind(&g.name)
        .bind(&g.description)
        .execute(e)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn group_delete<'e, E: Db<'e>>(e: E, id: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM user_groups WHERE id = $1")
        .bind(id)
        .execute(e)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn group_get<'e, E: Db<'e>>(e: E, id: &str) -> Result<Option<GroupRec>> {
    let q = format!("SELECT {GROUP_COLS} FROM user_groups WHERE id = $1");
    sqlx::query(&q)
        .bind(id)
        .fetch_optional(e)
        .await?
        .as_ref()
        .map(group_from)
        .transpose()
}

pub async fn group_by_name<'e, E: Db<'e>>(
    e: E,
    domain_id: &str,
    name: &str,
) -> Result<Option<GroupRec>> {
    let q = format!("SELECT {GROUP_COLS} FROM user_groups WHERE domain_id = $1 AND name = $2");
    sqlx::query(&q)
        .bind(domain_id)
        .bind(name)
        .fetch_optional(e)
        .await?
        .as_ref()
        .map(group_from)
        .transpose()
}

pub async fn group_list<'e, E: Db<'e>>(
    e: E,
    domain_id: Option<&str>,
    name: Option<&str>,
) -> Result<Vec<GroupRec>> {
    let q = format!(
        "SELECT {GROUP_COLS} FROM user_groups WHERE ($1 IS NULL OR domain_id = $1) \
         AND ($2 IS NULL OR name = $2) ORDER BY name, id"
    );
    sqlx::query(&q)
        .bind(domain_id)
        .bind(name)
        .fetch_all(e)
        .await?
        .iter()
        .map(group_from)
        .collect()
}

/// Adds a member; returns false if the user already was one.
pub async fn member_add<'e, E: Db<'e>>(e: E, group_id: &str, user_id: &str) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(group_id)
    .bind(user_id)
    .execute(e)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn member_remove<'e, E: Db<'e>>(e: E, group_id: &str, user_id: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
        .bind(group_id)
        .bind(user_id)
        .execute(e)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn member_check<'e, E: Db<'e>>(e: E, group_id: &str, user_id: &str) -> Result<bool> {
    let r = sqlx::query("SELECT 1 FROM group_members WHERE group_id = $1 AND user_id = $2")
        .bind(group_id)
        .bind(user_id)
        .fetch_optional(e)
        .await?;
    Ok(r.is_some())
}

pub async fn group_members<'e, E: Db<'e>>(e: E, group_id: &str) -> Result<Vec<UserRec>> {
    let q = format!(
        "SELECT {} FROM users u JOIN group_members m ON m.user_id = u.id WHERE m.group_id = $1 ORDER BY u.name, u.id",
        USER_COLS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ")
    );
    sqlx::query(&q)
        .bind(group_id)
        .fetch_all(e)
        .await?
        .iter()
        .map(user_from)
        .collect()
}

pub async fn user_groups<'e, E: Db<'e>>(e: E, user_id: &str) -> Result<Vec<GroupRec>> {
    let q = format!(
        "SELECT {} FROM user_groups g JOIN group_members m ON m.group_id = g.id WHERE m.user_id = $1 ORDER BY g.name, g.id",
        GROUP_COLS.split(", ").map(|c| format!("g.{c}")).collect::<Vec<_>>().join(", ")
    );
    sqlx::query(&q)
        .bind(user_id)
        .fetch_all(e)
        .await?
        .iter()
        .map(group_from)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// roles and grants

pub(crate) const ROLE_COLS: &str = "id, name, display_name, description, kind, domain_id, policy";

pub(crate) fn role_from(r: &AnyRow) -> Result<RoleRec> {
    Ok(RoleRec::from_row(r)?)
}

/// Inserts a role, or updates it in place if a role of that name exists (system policies are
/// refreshed from data at every start).
pub async fn role_upsert<'e, E: Db<'e>>(e: E, r: &RoleRec) -> Result<()> {
    let now = crate::now_micros();
    sqlx::query(
        "INSERT INTO roles (id, name, display_name, description, kind, domain_id, policy, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (name) DO UPDATE SET \
         display_name = excluded.display_name, description = excluded.description, policy = excluded.policy, \
         updated_at = excluded.updated_at",
    )
    .bind(&r.id)
    .bind(&r.name)
    .bind(&r.display_name)
    .bind(&r.description)
    .bind(&r.kind)
    .bind(&r.domain_id)
    .bind(&r.policy)
    .bind(now)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn role_get<'e, E: Db<'e>>(e: E, id: &str) -> Result<Option<RoleRec>> {
    let q = format!("SELECT {ROLE_COLS} FROM roles WHERE id = $1");
    sqlx::query(&q)
        .bind(id)
        .fetch_optional(e)
        .await?
        .as_ref()
        .map(role_from)
        .transpose()
}

pub async fn role_by_name<'e, E: Db<'e>>(e: E, name: &str) -> Result<Option<RoleRec>> {
    let q = format!("SELECT {ROLE_COLS} FROM roles WHERE name = $1");
    sqlx::query(&q)
        .bind(name)
        .fetch_optional(e)
        .await?
        .as_ref()
        .map(role_from)
        .transpose()
}

pub async fn role_list<'e, E: Db<'e>>(e: E) -> Result<Vec<RoleRec>> {
    let q = format!("SELECT {ROLE_COLS} FROM roles ORDER BY name");
    sqlx::query(&q)
        .fetch_all(e)
        .await?
        .iter()
        .map(role_from)
        .collect()
}

pub async fn grant_put<'e, E: Db<'e>>(e: E, g: &GrantRec) -> Result<()> {
    sqlx::query(
        "INSERT INTO grants (role_id, actor_kind, actor_id, scope_kind, scope_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(&g.role_id)
    .bind(g.actor_kind.as_str())
    .bind(&g.actor_id)
    .bind(g.scope_kind.as_str())
    .bind(&g.scope_id)
    .bind(crate::now_micros())
    .execute(e)
    .await?;
    Ok(())
}

/// The roles a user holds on a scope, directly or through any of their groups.
pub async fn roles_of_user_on<'e, E: Db<'e>>(
    e: E,
    user_id: &str,
    scopes: &[(ScopeKind, &str)],
) -> Result<Vec<RoleRec>> {
    if scopes.is_empty() {
        return Ok(Vec::new());
    }
    let mut scope_sql = Vec::new();
    for i in 0..scopes.len() {
        scope_sql.push(format!(
            "(g.scope_kind = ${} AND g.scope_id = ${})",
            2 + 2 * i,
            3 + 2 * i
        ));
    }
    let q = format!(
        "SELECT DISTINCT {} FROM roles r JOIN grants g ON g.role_id = r.id \
         WHERE ((g.actor_kind = 'user' AND g.actor_id = $1) OR (g.actor_kind = 'group' AND g.actor_id IN \
         (SELECT group_id FROM group_members WHERE user_id = $1))) AND ({}) ORDER BY r.name",
        ROLE_COLS.split(", ").map(|c| format!("r.{c}")).collect::<Vec<_>>().join(", "),
        scope_sql.join(" OR ")
    );
    let mut query = sqlx::query(&q).bind(user_id);
    for (kind, id) in scopes {
        query = query.bind(kind.as_str()).bind(*id);
    }
    query.fetch_all(e).await?.iter().map(role_from).collect()
}

// ---------------------------------------------------------------------------------------------
// token keys and revocations

pub async fn token_keys<'e, E: Db<'e>>(e: E) -> Result<Vec<(i64, String)>> {
    Ok(token_keys_dated(e)
        .await?
        .into_iter()
        .map(|(id, secret, _)| (id, secret))
        .collect())
}

/// Every token key, oldest first: id, secret, creation time.
pub async fn token_keys_dated<'e, E: Db<'e>>(e: E) -> Result<Vec<(i64, String, i64)>> {
    let rows = sqlx::query("SELECT id, secret, created_at FROM token_keys ORDER BY id")
        .fetch_all(e)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

pub async fn token_key_delete<'e, E: Db<'e>>(e: E, id: i64) -> Result<()> {
    sqlx::query("DELETE FROM token_keys WHERE id = $1")
        .bind(id)
        .execute(e)
        .await?;
    Ok(())
}

pub async fn token_key_insert<'e, E: Db<'e>>(e: E, id: i64, secret: &str) -> Result<()> {
    sqlx::query("INSERT INTO token_keys (id, secret, created_at) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(secret)
        .bind(crate::now_micros())
        .execute(e)
        .await?;
    Ok(())
}

pub async fn token_revoke<'e, E: Db<'e>>(e: E, audit_id: &str, expires_at: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO revoked_tokens (audit_id, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(audit_id)
    .bind(expires_at)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn token_is_revoked<'e, E: Db<'e>>(e: E, audit_id: &str) -> Result<bool> {
    let r = sqlx::query("SELECT 1 FROM revoked_tokens WHERE audit_id = $1")
        .bind(audit_id)
        .fetch_optional(e)
        .await?;
    Ok(r.is_some())
}

/// Forgets revocations of tokens that have expired anyway.
pub async fn token_revocations_purge<'e, E: Db<'e>>(e: E, now: i64) -> Result<u64> {
    let r = sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
        .bind(now)
        .execute(e)
        .await?;
    Ok(r.rows_affected())
}

// ---------------------------------------------------------------------------------------------
// catalogue

pub async fn catalog_insert<'e, E: Db<'e>>(e: E, c: &CatalogRec) -> Result<()> {
    sqlx::query(
        "INSERT INTO catalog (id, service_id, service_type, service_name, interface, region_id, path) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(&c.id)
    .bind(&c.service_id)
    .bind(&c.service_type)
    .bind(&c.service_name)
    .bind(&c.interface)
    .bind(&c.region_id)
    .bind(&c.path)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn catalog_list<'e, E: Db<'e>>(e: E) -> Result<Vec<CatalogRec>> {
    let rows = sqlx::query(
        "SELECT id, service_id, service_type, service_name, interface, region_id, path FROM catalog \
         ORDER BY service_type, interface",
    )
    .fetch_all(e)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(CatalogRec {
                id: r.try_get(0)?,
                service_id: r.try_get(1)?,
                service_type: r.try_get(2)?,
                service_name: r.try_get(3)?,
                interface: r.try_get(4)?,
                region_id: r.try_get(5)?,
                path: r.try_get(6)?,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// flavors

pub async fn flavor_upsert<'e, E: Db<'e>>(e: E, f: &FlavorRec) -> Result<()> {
    sqlx::query(
        "INSERT INTO flavors (id, name, vcpus, ram_mb, disk_gb, ephemeral_gb, swap_mb, is_public, description, \
         extra_specs, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&f.id)
    .bind(&f.name)
    .bind(f.vcpus)
    .bind(f.ram_mb)
    .bind(f.disk_gb)
    .bind(f.ephemeral_gb)
    .bind(f.swap_mb)
    .bind(flag(f.is_public))
    .bind(&f.description)
    .bind(json_text(&f.extra_specs))
    .bind(crate::now_micros())
    .execute(e)
    .await?;
    Ok(())
}

pub async fn flavor_list<'e, E: Db<'e>>(e: E) -> Result<Vec<FlavorRec>> {
    let rows = sqlx::query(
        "SELECT id, name, vcpus, ram_mb, disk_gb, ephemeral_gb, swap_mb, is_public, description, extra_specs \
         FROM flavors ORDER BY ram_mb, id",
    )
    .fetch_all(e)
    .await?;
    Ok(rows
        .iter()
        .map(FlavorRec::from_row)
        .collect::<sqlx::Result<_>>()?)
}

pub async fn grants_delete_actor<'e, E: Db<'e>>(e: E, kind: ActorKind, id: &str) -> Result<u64> {
    let r = sqlx::query("DELETE FROM grants WHERE actor_kind = $1 AND actor_id = $2")
        .bind(kind.as_str())
        .bind(id)
        .execute(e)
        .await?;
    Ok(r.rows_affected())
}

pub async fn grants_delete_scope<'e, E: Db<'e>>(e: E, kind: ScopeKind, id: &str) -> Result<u64> {
    let r = sqlx::query("DELETE FROM grants WHERE scope_kind = $1 AND scope_id = $2")
        .bind(kind.as_str())
        .bind(id)
        .execute(e)
        .await?;
    Ok(r.rows_affected())
}

// ---------------------------------------------------------------------------------------------
// application credentials

const APP_CRED_COLS: &str = "id, user_id, project_id, name, description, secret_hash, expires_at, \
    unrestricted, roles, access_rules, created_at";

fn app_cred_from(r: &AnyRow) -> Result<AppCredRec> {
    Ok(AppCredRec::from_row(r)?)
}

/// Inserts an application credential; a name the user already has is [`StoreError::Conflict`].
pub async fn app_cred_insert<'e, E: Db<'e>>(e: E, a: &AppCredRec) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO application_credentials ({APP_CRED_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
         $9, $10, $11)"
    ))
    .bind(&a.id)
    .bind(&a.user_id)
    .bind(&a.project_id)
    .bind(&a.name)
    .bind(&a.description)
    .bind(&a.secret_hash)
    .bind(a.expires_at)
    .bind(a.unrestricted as i64)
    .bind(&a.roles)
    .bind(&a.access_rules)
    .bind(a.created_at)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn app_cred_get<'e, E: Db<'e>>(e: E, id: &str) -> Result<Option<AppCredRec>> {
    sqlx::query(&format!(
        "SELECT {APP_CRED_COLS} FROM application_credentials WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(e)
    .await?
    .as_ref()
    .map(app_cred_from)
    .transpose()
}

/// A user's application credentials, by name, optionally only the one called `name`.
pub async fn app_creds_of_user<'e, E: Db<'e>>(
    e: E,
    user_id: &str,
    name: Option<&str>,
) -> Result<Vec<AppCredRec>> {
    sqlx::query(&format!(
        "SELECT {APP_CRED_COLS} FROM application_credentials WHERE user_id = $1 \
         AND ($2 IS NULL OR name = $2) ORDER BY name"
    ))
    .bind(user_id)
    .bind(name)
    .fetch_all(e)
    .await?
    .iter()
    .map(app_cred_from)
    .collect()
}

pub async fn app_cred_delete<'e, E: Db<'e>>(e: E, id: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM application_credentials WHERE id = $1")
        .bind(id)
        .execute(e)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn app_creds_delete_of_user<'e, E: Db<'e>>(e: E, user_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM application_credentials WHERE user_id = $1")
        .bind(user_id)
        .execute(e)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// access keys

const ACCESS_KEY_COLS: &str = "access, user_id, secret_enc, status, description, created_at";

pub async fn access_key_insert<'e, E: Db<'e>>(e: E, k: &AccessKeyRec) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO access_keys ({ACCESS_KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"
    ))
    .bind(&k.access)
    .bind(&k.user_id)
    .bind(&k.secret_enc)
    .bind(k.status)
    .bind(&k.description)
    .bind(k.created_at)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn access_key_get<'e, E: Db<'e>>(e: E, access: &str) -> Result<Option<AccessKeyRec>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ACCESS_KEY_COLS} FROM access_keys WHERE access = $1"
    ))
    .bind(access)
    .fetch_optional(e)
    .await?)
}

/// A user's access keys, oldest first.
pub async fn access_keys_of_user<'e, E: Db<'e>>(e: E, user_id: &str) -> Result<Vec<AccessKeyRec>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ACCESS_KEY_COLS} FROM access_keys WHERE user_id = $1 ORDER BY created_at, access"
    ))
    .bind(user_id)
    .fetch_all(e)
    .await?)
}

/// Sets the fields given (a `None` keeps the stored value), in one statement: two updates of
/// different fields at once both take effect.
pub async fn access_key_update<'e, E: Db<'e>>(
    e: E,
    access: &str,
    status: Option<AccessKeyStatus>,
    description: Option<&str>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE access_keys SET status = COALESCE($2, status), \
         description = COALESCE($3, description) WHERE access = $1",
    )
    .bind(access)
    .bind(status)
    .bind(description)
    .execute(e)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn access_key_delete<'e, E: Db<'e>>(e: E, access: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM access_keys WHERE access = $1")
        .bind(access)
        .execute(e)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn access_keys_delete_of_user<'e, E: Db<'e>>(e: E, user_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM access_keys WHERE user_id = $1")
        .bind(user_id)
        .execute(e)
        .await?;
    Ok(())
}

/// Every grant of a domain's roles to its users and groups: on its projects, on all its projects
/// and on the domain itself (enterprise-project grants are not Keystone assignments).
pub async fn grants_in_domain<'e, E: Db<'e>>(e: E, domain_id: &str) -> Result<Vec<GrantRec>> {
    let rows = sqlx::query(
        "SELECT g.role_id, g.actor_kind, g.actor_id, g.scope_kind, g.scope_id FROM grants g \
         WHERE (g.scope_kind IN ('domain', 'all_projects') AND g.scope_id = $1) \
         OR (g.scope_kind = 'project' AND g.scope_id IN (SELECT id FROM projects WHERE domain_id = $1)) \
         ORDER BY g.scope_kind, g.scope_id, g.actor_kind, g.actor_id, g.role_id",
    )
    .bind(domain_id)
    .fetch_all(e)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let actor: String = r.try_get(1)?;
        let scope: String = r.try_get(3)?;
        if let (Some(actor_kind), Some(scope_kind)) =
            (ActorKind::parse(&actor), ScopeKind::parse(&scope))
        {
            out.push(GrantRec {
                role_id: r.try_get(0)?,
                actor_kind,
                actor_id: r.try_get(2)?,
                scope_kind,
                scope_id: r.try_get(4)?,
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// login failures

/// A user's failed logins: how many since when, and until when the account is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginFailures {
    pub failures: i64,
    pub since: i64,
    pub locked_until: i64,
}

pub async fn login_failures_get<'e, E: Db<'e>>(
    e: E,
    user_id: &str,
) -> Result<Option<LoginFailures>> {
    let r =
        sqlx::query("SELECT failures, since, locked_until FROM login_failures WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(e)
            .await?;
    r.map(|r| {
        Ok(LoginFailures {
            failures: r.try_get(0)?,
            since: r.try_get(1)?,
            locked_until: r.try_get(2)?,
        })
    })
    .transpose()
}

pub async fn login_failures_put<'e, E: Db<'e>>(
    e: E,
    user_id: &str,
    f: &LoginFailures,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO login_failures (user_id, failures, since, locked_until) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id) DO UPDATE SET failures = excluded.failures, since = excluded.since, \
         locked_until = excluded.locked_until",
    )
    .bind(user_id)
    .bind(f.failures)
    .bind(f.since)
    .bind(f.locked_until)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn login_failures_clear<'e, E: Db<'e>>(e: E, user_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM login_failures WHERE user_id = $1")
        .bind(user_id)
        .execute(e)
        .await?;
    Ok(())
}
