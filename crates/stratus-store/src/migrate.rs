//! Embedded, forward-only migrations. A database whose schema is newer than this binary knows is
//! refused before anything is written.

use crate::{Result, Store, StoreError};
use sqlx::{Executor, Row};

/// `(version, name, sql)`, in order. The SQL is portable across SQLite and PostgreSQL.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "identity",
        include_str!("../migrations/0001_identity.sql"),
    ),
    (2, "iam", include_str!("../migrations/0002_iam.sql")),
    (3, "images", include_str!("../migrations/0003_images.sql")),
    (
        4,
        "image_search",
        include_str!("../migrations/0004_image_search.sql"),
    ),
    (5, "compute", include_str!("../migrations/0005_compute.sql")),
    (
        6,
        "block_storage",
        include_str!("../migrations/0006_block_storage.sql"),
    ),
    (7, "sagas", include_str!("../migrations/0007_sagas.sql")),
    (
        8,
        "conformance",
        include_str!("../migrations/0008_conformance.sql"),
    ),
    (
        9,
        "access_keys",
        include_str!("../migrations/0009_access_keys.sql"),
    ),
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

pub(crate) async fn run(store: &Store) -> Result<()> {
    let mut w = store.write().await?;
    // Serialise concurrent start-ups of several nodes.
    crate::advisory_lock(&mut w, 727001).await?;
    w.conn()
        .execute(
            "CREATE TABLE IF NOT EXISTS stratus_schema (version BIGINT PRIMARY KEY, \
             name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .await?;
    let row = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM stratus_schema")
        .fetch_one(w.conn())
        .await?;
    let current: i64 = row.try_get(0)?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tracing::info!(version, name, "applying migration");
        sqlx::raw_sql(sql).execute(w.conn()).await?;
        sqlx::query("INSERT INTO stratus_schema (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(*version)
            .bind(*name)
            .bind(crate::now_micros())
            .execute(w.conn())
            .await?;
        if *version == 4 {
            // Rows for the tags and properties of images stored before they were searchable.
            crate::images::reindex_all(w.conn()).await?;
        }
    }
    store.commit(w).await
}
