//! `stratus saga list|show|retry`: the operator's view of sagas, read from the store directly.

use crate::config::Config;
use anyhow::{Context, Result};
use std::fmt::Write;

fn when(micros: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(micros as i128 * 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| micros.to_string())
}

/// One line per saga, newest first: id, kind, state, step, owner, age of the last change, error.
pub async fn list(cfg: &Config, states: &[stratus_store::SagaState], limit: i64) -> Result<String> {
    let store = crate::open_store(cfg).await?;
    let sagas = stratus_store::saga_list(store.pool(), states, limit).await;
    store.close().await;
    let mut out = String::new();
    writeln!(
        out,
        "{:<36}  {:<20}  {:<8}  {:>4}  {:<37}  {:<27}  ERROR",
        "ID", "KIND", "STATE", "STEP", "OWNER", "UPDATED"
    )?;
    for s in sagas? {
        writeln!(
            out,
            "{:<36}  {:<20}  {:<8}  {:>4}  {:<37}  {:<27}  {}",
            s.id,
            s.kind,
            s.state,
            s.step,
            s.owner,
            when(s.updated_at),
            s.error.unwrap_or_default()
        )?;
    }
    Ok(out)
}

/// A saga, its data and every step with its undo record.
pub async fn show(cfg: &Config, id: &str) -> Result<String> {
    let store = crate::open_store(cfg).await?;
    let view = stratus_services::saga::show(&store, id).await;
    store.close().await;
    let view = view?.with_context(|| format!("no saga {id}"))?;
    let s = &view.saga;
    let mut out = String::new();
    writeln!(out, "id:          {}", s.id)?;
    writeln!(out, "kind:        {}", s.kind)?;
    writeln!(out, "state:       {}", s.state)?;
    writeln!(out, "step:        {}", s.step)?;
    writeln!(out, "owner:       {}", s.owner)?;
    writeln!(out, "lease until: {}", when(s.lease_until))?;
    writeln!(out, "created:     {}", when(s.created_at))?;
    writeln!(out, "updated:     {}", when(s.updated_at))?;
    writeln!(out, "quiet:       {}", s.quiet)?;
    writeln!(out, "error:       {}", s.error.as_deref().unwrap_or("-"))?;
    writeln!(out, "data:        {}", s.data)?;
    writeln!(out, "steps:")?;
    for st in &view.steps {
        writeln!(
            out,
            "  {} {:<10} {:<12} undo={} {}",
            st.idx,
            st.name,
            st.status,
            st.undo,
            st.error.as_deref().unwrap_or("")
        )?;
    }
    Ok(out)
}

/// Sends a stuck saga back to its undo; a running node retries it within a lease period.
pub async fn retry(cfg: &Config, id: &str) -> Result<bool> {
    let store = crate::open_store(cfg).await?;
    let ok = stratus_services::saga::retry(&store, id).await;
    store.close().await;
    Ok(ok?)
}
