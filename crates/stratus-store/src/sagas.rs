//! Records of sagas and their steps, and the lease that says which node runs a saga.

use crate::{Db, Result, SagaState};
use sqlx::any::AnyRow;
use sqlx::FromRow;
use sqlx::Row;
use stratus_model::*;

const COLS: &str =
    "id, kind, state, step, data, error, quiet, owner, lease_until, created_at, updated_at";

fn from_row(r: &AnyRow) -> Result<SagaRec> {
    Ok(SagaRec::from_row(r)?)
}

fn step_from_row(r: &AnyRow) -> Result<SagaStepRec> {
    Ok(SagaStepRec::from_row(r)?)
}

pub async fn saga_insert<'e, E: Db<'e>>(e: E, s: &SagaRec) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO sagas ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    ))
    .bind(&s.id)
    .bind(&s.kind)
    .bind(s.state)
    .bind(s.step)
    .bind(&s.data)
    .bind(&s.error)
    .bind(s.quiet as i64)
    .bind(&s.owner)
    .bind(s.lease_until)
    .bind(s.created_at)
    .bind(s.updated_at)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn saga_get<'e, E: Db<'e>>(e: E, id: &str) -> Result<Option<SagaRec>> {
    sqlx::query(&format!("SELECT {COLS} FROM sagas WHERE id = $1"))
        .bind(id)
        .fetch_optional(e)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// Sagas, newest first; only those in `states` unless it is empty.
pub async fn saga_list<'e, E: Db<'e>>(
    e: E,
    states: &[SagaState],
    limit: i64,
) -> Result<Vec<SagaRec>> {
    let filter = if states.is_empty() {
        String::new()
    } else {
        let ps: Vec<String> = (0..states.len()).map(|n| format!("${}", n + 2)).collect();
        format!("WHERE state IN ({}) ", ps.join(", "))
    };
    let sql = format!("SELECT {COLS} FROM sagas {filter}ORDER BY created_at DESC, id LIMIT $1");
    let mut q = sqlx::query(&sql).bind(limit);
    for s in states {
        q = q.bind(*s);
    }
    q.fetch_all(e).await?.iter().map(from_row).collect()
}

/// Live sagas `owner` may take: its own, and any whose lease ran out before `now`.
pub async fn saga_claimable<'e, E: Db<'e>>(e: E, owner: &str, now: i64) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT id FROM sagas WHERE state IN ('running', 'undoing') \
         AND (owner = $1 OR lease_until < $2) ORDER BY created_at",
    )
    .bind(owner)
    .bind(now)
    .fetch_all(e)
    .await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<String, _>(0)?))
        .collect()
}

/// Takes (or renews) the lease of a live saga for `owner` until `until`, if `owner` holds it or
/// it ran out before `now`. Returns whether `owner` holds it now.
pub async fn saga_claim<'e, E: Db<'e>>(
    e: E,
    id: &str,
    owner: &str,
    now: i64,
    until: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE sagas SET owner = $2, lease_until = $4 WHERE id = $1 \
         AND state IN ('running', 'undoing') AND (owner = $2 OR lease_until < $3)",
    )
    .bind(id)
    .bind(owner)
    .bind(now)
    .bind(until)
    .execute(e)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Saves a saga's progress if `owner` still holds its lease; returns whether it did.
pub async fn saga_save<'e, E: Db<'e>>(e: E, s: &SagaRec, owner: &str) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE sagas SET state = $2, step = $3, data = $4, error = $5, quiet = $6, \
         lease_until = $7, updated_at = $8 WHERE id = $1 AND owner = $9",
    )
    .bind(&s.id)
    .bind(s.state)
    .bind(s.step)
    .bind(&s.data)
    .bind(&s.error)
    .bind(s.quiet as i64)
    .bind(s.lease_until)
    .bind(s.updated_at)
    .bind(owner)
    .execute(e)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Moves a stuck saga back to `undoing` so that a node retries its undo (operator action).
pub async fn saga_retry<'e, E: Db<'e>>(e: E, id: &str, now: i64) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE sagas SET state = 'undoing', lease_until = 0, updated_at = $2 \
         WHERE id = $1 AND state = 'stuck'",
    )
    .bind(id)
    .bind(now)
    .execute(e)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Records a step (insert or update).
pub async fn saga_step_put<'e, E: Db<'e>>(e: E, s: &SagaStepRec) -> Result<()> {
    sqlx::query(
        "INSERT INTO saga_steps (saga_id, idx, name, status, undo, error, started_at, finished_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (saga_id, idx) DO UPDATE SET \
         name = excluded.name, status = excluded.status, undo = excluded.undo, \
         error = excluded.error, started_at = excluded.started_at, finished_at = excluded.finished_at",
    )
    .bind(&s.saga_id)
    .bind(s.idx)
    .bind(&s.name)
    .bind(s.status)
    .bind(&s.undo)
    .bind(&s.error)
    .bind(s.started_at)
    .bind(s.finished_at)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn saga_steps<'e, E: Db<'e>>(e: E, saga_id: &str) -> Result<Vec<SagaStepRec>> {
    sqlx::query(
        "SELECT saga_id, idx, name, status, undo, error, started_at, finished_at \
         FROM saga_steps WHERE saga_id = $1 ORDER BY idx",
    )
    .bind(saga_id)
    .fetch_all(e)
    .await?
    .iter()
    .map(step_from_row)
    .collect()
}

/// Forgets a saga and its steps (one refused before it did anything).
pub async fn saga_delete(c: &mut sqlx::AnyConnection, id: &str) -> Result<()> {
    sqlx::query("DELETE FROM saga_steps WHERE saga_id = $1")
        .bind(id)
        .execute(&mut *c)
        .await?;
    sqlx::query("DELETE FROM sagas WHERE id = $1")
        .bind(id)
        .execute(&mut *c)
        .await?;
    Ok(())
}
