//! Records and queries of servers.

use crate::{Db, PowerState, Result, TaskState, VmState};
use sqlx::any::AnyRow;
use sqlx::FromRow;
use stratus_model::*;

const COLS: &str = "id, project_id, user_id, enterprise_project_id, name, description, flavor_id, flavor, \
    image_id, vm_state, task_state, power_state, metadata, availability_zone, fault, root_disk, created_at, \
    updated_at, launched_at, access_ipv4, access_ipv6, auto_disk_config, locked_by";

fn from_row(r: &AnyRow) -> Result<ServerRec> {
    Ok(ServerRec::from_row(r)?)
}

pub async fn server_insert<'e, E: Db<'e>>(e: E, s: &ServerRec) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO servers ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
         $15, $16, $17, $18, $19, $20, $21, $22, $23)"
    ))
    .bind(&s.id)
    .bind(&s.project_id)
    .bind(&s.user_id)
    .bind(&s.enterprise_project_id)
    .bind(&s.name)
    .bind(&s.description)
    .bind(&s.flavor_id)
    .bind(json_text(&s.flavor))
    .bind(&s.image_id)
    .bind(s.vm_state)
    .bind(s.task_state)
    .bind(s.power_state)
    .bind(json_text(&s.metadata))
    .bind(&s.availability_zone)
    .bind(&s.fault)
    .bind(&s.root_disk)
    .bind(s.created_at)
    .bind(s.updated_at)
    .bind(s.launched_at)
    .bind(&s.access_ipv4)
    .bind(&s.access_ipv6)
    .bind(s.auto_disk_config as i64)
    .bind(&s.locked_by)
    .execute(e)
    .await?;
    Ok(())
}

/// Locks (`Some(by)`) or unlocks a server.
pub async fn server_set_lock<'e, E: Db<'e>>(
    e: E,
    id: &str,
    locked_by: Option<&str>,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query("UPDATE servers SET locked_by = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(locked_by)
        .bind(now)
        .execute(e)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// What a rebuild changes of a server when it is accepted.
#[derive(Debug, Clone, Default)]
pub struct RebuildAccept {
    pub image_id: String,
    pub name: String,
    pub description: Option<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub access_ipv4: String,
    pub access_ipv6: String,
    pub auto_disk_config: bool,
}

/// Starts a rebuild: the server, still in `vm_state` with no task, takes the task `rebuilding`
/// and the attributes of the request; false if it changed meanwhile.
pub async fn server_rebuild_accept<'e, E: Db<'e>>(
    e: E,
    id: &str,
    vm_state: VmState,
    a: &RebuildAccept,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE servers SET task_state = 'rebuilding', image_id = $3, name = $4, description = $5, \
         metadata = $6, access_ipv4 = $7, access_ipv6 = $8, auto_disk_config = $9, updated_at = $10 \
         WHERE id = $1 AND vm_state = $2 AND task_state IS NULL",
    )
    .bind(id)
    .bind(vm_state)
    .bind(&a.image_id)
    .bind(&a.name)
    .bind(&a.description)
    .bind(json_text(&a.metadata))
    .bind(&a.access_ipv4)
    .bind(&a.access_ipv6)
    .bind(a.auto_disk_config as i64)
    .bind(now)
    .execute(e)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// The end of a rebuild: the server runs `root_disk` (unchanged for a volume-backed server) and
/// is `vm_state` again, its task done.
pub async fn server_rebuilt<'e, E: Db<'e>>(
    e: E,
    id: &str,
    root_disk: &str,
    vm_state: VmState,
    power_state: PowerState,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE servers SET root_disk = $2, vm_state = $3, power_state = $4, task_state = NULL, \
         fault = NULL, launched_at = $5, updated_at = $5 WHERE id = $1 AND task_state = 'rebuild_spawning'",
    )
    .bind(id)
    .bind(root_disk)
    .bind(vm_state)
    .bind(power_state)
    .bind(now)
    .execute(e)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// A failed rebuild: the server is `error` with a fault, its task done (as upstream).
pub async fn server_fail_task<'e, E: Db<'e>>(
    e: E,
    id: &str,
    message: &str,
    now: i64,
) -> Result<bool> {
    let fault = serde_json::json!({"code": 500, "message": message, "created": now}).to_string();
    let r = sqlx::query(
        "UPDATE servers SET vm_state = 'error', power_state = 0, task_state = NULL, fault = $2, \
         updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(fault)
    .bind(now)
    .execute(e)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn server_get<'e, E: Db<'e>>(e: E, id: &str) -> Result<Option<ServerRec>> {
    sqlx::query(&format!("SELECT {COLS} FROM servers WHERE id = $1"))
        .bind(id)
        .fetch_optional(e)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// The vCPUs and RAM (MB) of the flavors of every server not in `error`, all projects: what a
/// node's guests take.
pub async fn servers_footprint<'e, E: Db<'e>>(e: E) -> Result<(i64, i64)> {
    let rows = sqlx::query("SELECT flavor FROM servers WHERE vm_state <> 'error'")
        .fetch_all(e)
        .await?;
    let mut total = (0, 0);
    for r in rows {
        let text: String = sqlx::Row::try_get(&r, "flavor")?;
        let f: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        total.0 += f["vcpus"].as_i64().unwrap_or(0);
        total.1 += f["ram"].as_i64().unwrap_or(0);
    }
    Ok(total)
}

/// A project's servers, newest first, optionally only those in `vm_states`.
pub async fn server_list<'e, E: Db<'e>>(
    e: E,
    project_id: &str,
    vm_states: &[VmState],
    limit: i64,
) -> Result<Vec<ServerRec>> {
    let states = if vm_states.is_empty() {
        String::new()
    } else {
        let ps: Vec<String> = (0..vm_states.len())
            .map(|n| format!("${}", n + 3))
            .collect();
        format!(" AND vm_state IN ({})", ps.join(", "))
    };
    let sql = format!(
        "SELECT {COLS} FROM servers WHERE project_id = $1{states} \
         ORDER BY created_at DESC, id DESC LIMIT $2"
    );
    let mut q = sqlx::query(&sql).bind(project_id).bind(limit);
    for s in vm_states {
        q = q.bind(*s);
    }
    q.fetch_all(e).await?.iter().map(from_row).collect()
}

/// A compare-and-set move of a server's states: it happens only if the server is still in one of
/// the `from` vm_states with the task `from_task` (none for an action starting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition<'a> {
    pub from: &'a [VmState],
    pub from_task: Option<TaskState>,
    pub vm_state: VmState,
    pub task_state: Option<TaskState>,
    pub power_state: PowerState,
}

impl<'a> Transition<'a> {
    /// A move of server `s`'s task alone, from `from` to `to`: its vm_state and power state stay.
    pub fn task(s: &'a ServerRec, from: Option<TaskState>, to: Option<TaskState>) -> Self {
        Transition {
            from: std::slice::from_ref(&s.vm_state),
            from_task: from,
            vm_state: s.vm_state,
            task_state: to,
            power_state: s.power_state,
        }
    }
}

/// Makes transition `t` of server `id`; false if another change got there first.
pub async fn server_transition<'e, E: Db<'e>>(
    e: E,
    id: &str,
    t: &Transition<'_>,
    now: i64,
) -> Result<bool> {
    let ps: Vec<String> = (0..t.from.len()).map(|n| format!("${}", n + 7)).collect();
    let sql = format!(
        "UPDATE servers SET vm_state = $2, task_state = $3, power_state = $4, updated_at = $5 \
         WHERE id = $1 AND COALESCE(task_state, '') = $6 AND vm_state IN ({})",
        ps.join(", ")
    );
    let mut q = sqlx::query(&sql)
        .bind(id)
        .bind(t.vm_state)
        .bind(t.task_state)
        .bind(t.power_state)
        .bind(now)
        .bind(t.from_task.map_or("", TaskState::as_str));
    for s in t.from {
        q = q.bind(*s);
    }
    Ok(q.execute(e).await?.rows_affected() > 0)
}

/// The end of a build: the root disk exists (`active`) or the build failed (`error` + fault).
pub async fn server_built<'e, E: Db<'e>>(
    e: E,
    id: &str,
    root_disk: &str,
    fault: Option<&str>,
    now: i64,
) -> Result<bool> {
    let (vm_state, power_state) = if fault.is_some() {
        (VmState::Error, PowerState::NoState)
    } else {
        (VmState::Active, PowerState::Running)
    };
    let r = sqlx::query(
        "UPDATE servers SET vm_state = $2, task_state = NULL, power_state = $3, root_disk = $4, fault = $5, \
         updated_at = $6, launched_at = CASE WHEN $5 IS NULL THEN $6 ELSE NULL END \
         WHERE id = $1 AND vm_state = 'building'",
    )
    .bind(id)
    .bind(vm_state)
    .bind(power_state)
    .bind(root_disk)
    .bind(fault)
    .bind(now)
    .execute(e)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn server_delete<'e, E: Db<'e>>(e: E, id: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM servers WHERE id = $1")
        .bind(id)
        .execute(e)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Ends whatever task a server runs, recording why in its fault if there is a reason to tell
/// (the server keeps its vm_state and any earlier fault).
pub async fn server_clear_task<'e, E: Db<'e>>(
    e: E,
    id: &str,
    message: Option<&str>,
    now: i64,
) -> Result<bool> {
    let fault =
        message.map(|m| serde_json::json!({"code": 500, "message": m, "created": now}).to_string());
    let r = sqlx::query(
        "UPDATE servers SET task_state = NULL, fault = COALESCE($2, fault), updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(fault)
    .bind(now)
    .execute(e)
    .await?;
    Ok(r.rows_affected() > 0)
}
