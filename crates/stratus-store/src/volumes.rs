//! Records and queries of volumes, snapshots and disk layers.

use crate::{Db, Result, VolumeStatus};
use sqlx::any::AnyRow;
use sqlx::FromRow;
use sqlx::Row;
use stratus_model::*;

const VCOLS: &str = "id, project_id, user_id, enterprise_project_id, name, description, size_gb, status, \
    bootable, image_id, snapshot_id, image_metadata, disk, server_id, device, delete_on_termination, metadata, \
    created_at, updated_at";
const SCOLS: &str =
    "id, project_id, volume_id, name, description, size_gb, status, disk, metadata, created_at, updated_at";

fn volume_from(r: &AnyRow) -> Result<VolumeRec> {
    Ok(VolumeRec::from_row(r)?)
}

fn snapshot_from(r: &AnyRow) -> Result<SnapshotRec> {
    Ok(SnapshotRec::from_row(r)?)
}

/// Inserts or replaces every column of a volume.
pub async fn volume_put<'e, E: Db<'e>>(e: E, v: &VolumeRec) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO volumes ({VCOLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
         $15, $16, $17, $18, $19) ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
         description = excluded.description, size_gb = excluded.size_gb, status = excluded.status, \
         bootable = excluded.bootable, disk = excluded.disk, server_id = excluded.server_id, \
         device = excluded.device, delete_on_termination = excluded.delete_on_termination, \
         metadata = excluded.metadata, updated_at = excluded.updated_at"
    ))
    .bind(&v.id)
    .bind(&v.project_id)
    .bind(&v.user_id)
    .bind(&v.enterprise_project_id)
    .bind(&v.name)
    .bind(&v.description)
    .bind(v.size_gb)
    .bind(v.status)
    .bind(crate::flag(v.bootable))
    .bind(&v.image_id)
    .bind(&v.snapshot_id)
    .bind(&v.image_metadata)
    .bind(&v.disk)
    .bind(&v.server_id)
    .bind(&v.device)
    .bind(crate::flag(v.delete_on_termination))
    .bind(json_text(&v.metadata))
    .bind(v.created_at)
    .bind(v.updated_at)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn volume_get<'e, E: Db<'e>>(e: E, id: &str) -> Result<Option<VolumeRec>> {
    sqlx::query(&format!("SELECT {VCOLS} FROM volumes WHERE id = $1"))
        .bind(id)
        .fetch_optional(e)
        .await?
        .as_ref()
        .map(volume_from)
        .transpose()
}

pub async fn volume_list<'e, E: Db<'e>>(e: E, project_id: &str) -> Result<Vec<VolumeRec>> {
    sqlx::query(&format!(
        "SELECT {VCOLS} FROM volumes WHERE project_id = $1 ORDER BY created_at DESC, id DESC"
    ))
    .bind(project_id)
    .fetch_all(e)
    .await?
    .iter()
    .map(volume_from)
    .collect()
}

pub async fn volumes_of_server<'e, E: Db<'e>>(e: E, server_id: &str) -> Result<Vec<VolumeRec>> {
    sqlx::query(&format!(
        "SELECT {VCOLS} FROM volumes WHERE server_id = $1 ORDER BY device, id"
    ))
    .bind(server_id)
    .fetch_all(e)
    .await?
    .iter()
    .map(volume_from)
    .collect()
}

pub async fn volume_delete<'e, E: Db<'e>>(e: E, id: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM volumes WHERE id = $1")
        .bind(id)
        .execute(e)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Attaches an available volume to `server_id` as `device`; false (and nothing done) if it is
/// attached already or not available.
pub async fn volume_attach<'e, E: Db<'e>>(
    e: E,
    id: &str,
    server_id: &str,
    device: &str,
    delete_on_termination: bool,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE volumes SET server_id = $2, device = $3, status = $4, delete_on_termination = $5, \
         updated_at = $6 WHERE id = $1 AND status = $7 AND server_id IS NULL",
    )
    .bind(id)
    .bind(server_id)
    .bind(device)
    .bind(VolumeStatus::InUse)
    .bind(i64::from(delete_on_termination))
    .bind(now)
    .bind(VolumeStatus::Available)
    .execute(e)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Moves a volume from status `from` to `to`; false if it is gone or in another status.
pub async fn volume_set_status<'e, E: Db<'e>>(
    e: E,
    id: &str,
    from: VolumeStatus,
    to: VolumeStatus,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE volumes SET status = $3, updated_at = $4 WHERE id = $1 AND status = $2",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .bind(now)
    .execute(e)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Deletes a volume no snapshot depends on and none is being taken of; false (and nothing done)
/// otherwise. One statement, so a snapshot begun meanwhile keeps its volume.
pub async fn volume_delete_unless_snapshotted<'e, E: Db<'e>>(e: E, id: &str) -> Result<bool> {
    let r = sqlx::query(
        "DELETE FROM volumes WHERE id = $1 AND snapshot_lock IS NULL \
         AND NOT EXISTS (SELECT 1 FROM snapshots WHERE snapshots.volume_id = $1)",
    )
    .bind(id)
    .execute(e)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn snapshot_put<'e, E: Db<'e>>(e: E, s: &SnapshotRec) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO snapshots ({SCOLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, description = excluded.description, \
         status = excluded.status, disk = excluded.disk, metadata = excluded.metadata, \
         updated_at = excluded.updated_at"
    ))
    .bind(&s.id)
    .bind(&s.project_id)
    .bind(&s.volume_id)
    .bind(&s.name)
    .bind(&s.description)
    .bind(s.size_gb)
    .bind(s.status)
    .bind(&s.disk)
    .bind(json_text(&s.metadata))
    .bind(s.created_at)
    .bind(s.updated_at)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn snapshot_get<'e, E: Db<'e>>(e: E, id: &str) -> Result<Option<SnapshotRec>> {
    sqlx::query(&format!("SELECT {SCOLS} FROM snapshots WHERE id = $1"))
        .bind(id)
        .fetch_optional(e)
        .await?
        .as_ref()
        .map(snapshot_from)
        .transpose()
}

pub async fn snapshot_list<'e, E: Db<'e>>(e: E, project_id: &str) -> Result<Vec<SnapshotRec>> {
    sqlx::query(&format!(
        "SELECT {SCOLS} FROM snapshots WHERE project_id = $1 ORDER BY created_at DESC, id DESC"
    ))
    .bind(project_id)
    .fetch_all(e)
    .await?
    .iter()
    .map(snapshot_from)
    .collect()
}

pub async fn snapshot_delete<'e, E: Db<'e>>(e: E, id: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM snapshots WHERE id = $1")
        .bind(id)
        .execute(e)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// `(volumes, gigabytes, snapshots)` a project uses.
pub async fn block_usage(e: &mut sqlx::AnyConnection, project_id: &str) -> Result<(i64, i64, i64)> {
    let v = sqlx::query("SELECT COUNT(*), CAST(COALESCE(SUM(size_gb), 0) AS BIGINT) FROM volumes WHERE project_id = $1")
        .bind(project_id)
        .fetch_one(&mut *e)
        .await?;
    let s = sqlx::query("SELECT COUNT(*), CAST(COALESCE(SUM(size_gb), 0) AS BIGINT) FROM snapshots WHERE project_id = $1")
        .bind(project_id)
        .fetch_one(&mut *e)
        .await?;
    let count = |r: &AnyRow, i: usize| -> Result<i64> { Ok(r.try_get::<i64, _>(i)?) };
    Ok((count(&v, 0)?, count(&v, 1)? + count(&s, 1)?, count(&s, 0)?))
}

/// Registers a disk file and its backing file (idempotent).
pub async fn layer_add<'e, E: Db<'e>>(
    e: E,
    path: &str,
    parent: Option<&str>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO disk_layers (path, parent, created_at) VALUES ($1, $2, $3) ON CONFLICT (path) DO NOTHING",
    )
    .bind(path)
    .bind(parent)
    .bind(now)
    .execute(e)
    .await?;
    Ok(())
}

/// Registers a layer that nothing reaches yet, held by `pinned_by` (a saga) so that collection
/// keeps it until [`layers_unpin`].
pub async fn layer_add_pinned<'e, E: Db<'e>>(
    e: E,
    path: &str,
    parent: Option<&str>,
    pinned_by: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO disk_layers (path, parent, created_at, pinned_by) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (path) DO UPDATE SET pinned_by = excluded.pinned_by",
    )
    .bind(path)
    .bind(parent)
    .bind(now)
    .bind(pinned_by)
    .execute(e)
    .await?;
    Ok(())
}

/// Lets collection take the layers `pinned_by` held, once something else reaches them (or
/// nothing should).
pub async fn layers_unpin<'e, E: Db<'e>>(e: E, pinned_by: &str) -> Result<()> {
    sqlx::query("UPDATE disk_layers SET pinned_by = NULL WHERE pinned_by = $1")
        .bind(pinned_by)
        .execute(e)
        .await?;
    Ok(())
}

/// Moves a layer's row to a new path (a file renamed), keeping its parent; children follow.
pub async fn layer_rename(conn: &mut sqlx::AnyConnection, from: &str, to: &str) -> Result<()> {
    sqlx::query("UPDATE disk_layers SET path = $2 WHERE path = $1")
        .bind(from)
        .bind(to)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE disk_layers SET parent = $2 WHERE parent = $1")
        .bind(from)
        .bind(to)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Deletes and returns every layer that no server, volume or snapshot reaches through `parent`
/// links; the caller removes the files.
pub async fn layers_collect(conn: &mut sqlx::AnyConnection) -> Result<Vec<String>> {
    let layers: Vec<(String, Option<String>)> = sqlx::query("SELECT path, parent FROM disk_layers")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_>>()?;
    let roots: Vec<String> = sqlx::query(
        "SELECT root_disk FROM servers WHERE root_disk <> '' UNION SELECT disk FROM volumes \
         UNION SELECT disk FROM snapshots UNION SELECT path FROM disk_layers WHERE pinned_by IS NOT NULL",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| Ok(r.try_get(0)?))
    .collect::<Result<_>>()?;
    let parent: std::collections::HashMap<&str, Option<&str>> = layers
        .iter()
        .map(|(p, parent)| (p.as_str(), parent.as_deref()))
        .collect();
    let mut live = std::collections::HashSet::new();
    for root in &roots {
        let mut cur = Some(root.as_str());
        while let Some(p) = cur {
            if !live.insert(p) {
                break;
            }
            cur = parent.get(p).copied().flatten();
        }
    }
    let dead: Vec<String> = layers
        .iter()
        .filter(|(p, _)| !live.contains(p.as_str()))
        .map(|(p, _)| p.clone())
        .collect();
    for p in &dead {
        sqlx::query("DELETE FROM disk_layers WHERE path = $1")
            .bind(p)
            .execute(&mut *conn)
            .await?;
    }
    Ok(dead)
}

// ---------------------------------------------------------------------------------------------
// quotas

/// The limits set for a project's `service` (resources without a row use the defaults).
pub async fn quota_limits<'e, E: Db<'e>>(
    e: E,
    project_id: &str,
    service: &str,
) -> Result<Vec<(String, i64)>> {
    sqlx::query(
        "SELECT resource, hard_limit FROM quota_limits WHERE project_id = $1 AND service = $2",
    )
    .bind(project_id)
    .bind(service)
    .fetch_all(e)
    .await?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}

pub async fn quota_limit_put<'e, E: Db<'e>>(
    e: E,
    project_id: &str,
    service: &str,
    resource: &str,
    limit: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO quota_limits (project_id, service, resource, hard_limit) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (project_id, service, resource) DO UPDATE SET hard_limit = excluded.hard_limit",
    )
    .bind(project_id)
    .bind(service)
    .bind(resource)
    .bind(limit)
    .execute(e)
    .await?;
    Ok(())
}

/// Back to the defaults for a project's `service`.
pub async fn quota_limits_clear<'e, E: Db<'e>>(
    e: E,
    project_id: &str,
    service: &str,
) -> Result<()> {
    sqlx::query("DELETE FROM quota_limits WHERE project_id = $1 AND service = $2")
        .bind(project_id)
        .bind(service)
        .execute(e)
        .await?;
    Ok(())
}

/// The flavors (JSON) of a project's servers, for counting cores and RAM.
pub async fn server_flavors_of<'e, E: Db<'e>>(e: E, project_id: &str) -> Result<Vec<String>> {
    sqlx::query("SELECT flavor FROM servers WHERE project_id = $1")
        .bind(project_id)
        .fetch_all(e)
        .await?
        .iter()
        .map(|r| Ok(r.try_get(0)?))
        .collect()
}

/// Takes a volume for snapshot `plan` (again, for the same plan); false if another snapshot of
/// it is being taken.
pub async fn volume_snapshot_lock<'e, E: Db<'e>>(
    e: E,
    volume_id: &str,
    plan: &str,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE volumes SET snapshot_lock = $2 WHERE id = $1 AND (snapshot_lock IS NULL OR snapshot_lock = $2)",
    )
    .bind(volume_id)
    .bind(plan)
    .execute(e)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Lets other snapshots of the volume be taken.
pub async fn volume_snapshot_unlock<'e, E: Db<'e>>(
    e: E,
    volume_id: &str,
    plan: &str,
) -> Result<()> {
    sqlx::query("UPDATE volumes SET snapshot_lock = NULL WHERE id = $1 AND snapshot_lock = $2")
        .bind(volume_id)
        .bind(plan)
        .execute(e)
        .await?;
    Ok(())
}
