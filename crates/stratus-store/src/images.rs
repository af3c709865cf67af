//! Records and queries of image metadata.

use crate::Result;
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRec {
    pub id: String,
    pub owner: String,
    pub enterprise_project_id: String,
    pub name: Option<String>,
    pub status: String,
    pub visibility: String,
    pub protected: bool,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub min_disk: i64,
    pub min_ram: i64,
    pub size: Option<i64>,
    pub virtual_size: Option<i64>,
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
    /// JSON object text.
    pub properties: String,
    /// JSON list text.
    pub tags: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLS: &str = "id, owner, enterprise_project_id, name, status, visibility, protected, disk_format, \
    container_format, min_disk, min_ram, size, virtual_size, checksum, os_hash_algo, os_hash_value, properties, \
    tags, created_at, updated_at";

fn from_row(r: &AnyRow) -> Result<ImageRec> {
    Ok(ImageRec {
        id: r.try_get("id")?,
        owner: r.try_get("owner")?,
        enterprise_project_id: r.try_get("enterprise_project_id")?,
        name: r.try_get("name")?,
        status: r.try_get("status")?,
        visibility: r.try_get("visibility")?,
        protected: crate::get_flag(r, "protected")?,
        disk_format: r.try_get("disk_format")?,
        container_format: r.try_get("container_format")?,
        min_disk: r.try_get("min_disk")?,
        min_ram: r.try_get("min_ram")?,
        size: r.try_get("size")?,
        virtual_size: r.try_get("virtual_size")?,
        checksum: r.try_get("checksum")?,
        os_hash_algo: r.try_get("os_hash_algo")?,
        os_hash_value: r.try_get("os_hash_value")?,
        properties: r.try_get("properties")?,
        tags: r.try_get("tags")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

pub async fn image_insert<'e, E: Executor<'e, Database = Any>>(e: E, i: &ImageRec) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO images ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
    ))
    .bind(&i.id)
    .bind(&i.owner)
    .bind(&i.enterprise_project_id)
    .bind(&i.name)
    .bind(&i.status)
    .bind(&i.visibility)
    .bind(crate::flag(i.protected))
    .bind(&i.disk_format)
    .bind(&i.container_format)
    .bind(i.min_disk)
    .bind(i.min_ram)
    .bind(i.size)
    .bind(i.virtual_size)
    .bind(&i.checksum)
    .bind(&i.os_hash_algo)
    .bind(&i.os_hash_value)
    .bind(&i.properties)
    .bind(&i.tags)
    .bind(i.created_at)
    .bind(i.updated_at)
    .execute(e)
    .await?;
    Ok(())
}

/// Replaces every column of an image whose status is still `expected_status`; false if the row
/// is gone or its status moved (a concurrent change won).
pub async fn image_update_if<'e, E: Executor<'e, Database = Any>>(
    e: E,
    i: &ImageRec,
    expected_status: &str,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE images SET name = $2, status = $3, visibility = $4, protected = $5, disk_format = $6, \
         container_format = $7, min_disk = $8, min_ram = $9, size = $10, virtual_size = $11, checksum = $12, \
         os_hash_algo = $13, os_hash_value = $14, properties = $15, tags = $16, updated_at = $17 \
         WHERE id = $1 AND status = $18",
    )
    .bind(&i.id)
    .bind(&i.name)
    .bind(&i.status)
    .bind(&i.visibility)
    .bind(crate::flag(i.protected))
    .bind(&i.disk_format)
    .bind(&i.container_format)
    .bind(i.min_disk)
    .bind(i.min_ram)
    .bind(i.size)
    .bind(i.virtual_size)
    .bind(&i.checksum)
    .bind(&i.os_hash_algo)
    .bind(&i.os_hash_value)
    .bind(&i.properties)
    .bind(&i.tags)
    .bind(i.updated_at)
    .bind(expected_status)
    .execute(e)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn image_delete<'e, E: Executor<'e, Database = Any>>(e: E, id: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM images WHERE id = $1")
        .bind(id)
        .execute(e)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn image_get<'e, E: Executor<'e, Database = Any>>(
    e: E,
    id: &str,
) -> Result<Option<ImageRec>> {
    sqlx::query(&format!("SELECT {COLS} FROM images WHERE id = $1"))
        .bind(id)
        .fetch_optional(e)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// A page of images visible to `project`, newest first, after the `marker` image if given.
#[derive(Debug, Default, Clone)]
pub struct ImageFilter<'a> {
    pub project: &'a str,
    pub name: Option<&'a str>,
    pub status: Option<&'a str>,
    pub visibility: Option<&'a str>,
    pub owner: Option<&'a str>,
    /// `(created_at, id)` of the marker image.
    pub after: Option<(i64, &'a str)>,
    pub limit: i64,
}

pub async fn image_list<'e, E: Executor<'e, Database = Any>>(
    e: E,
    f: &ImageFilter<'_>,
) -> Result<Vec<ImageRec>> {
    // Without a visibility filter: the project's own images and public ones (Glance's default).
    let q = format!(
        "SELECT {COLS} FROM images WHERE \
         (CASE WHEN $2 IS NULL THEN (owner = $1 OR visibility = 'public') \
               WHEN $2 IN ('public', 'community') THEN visibility = $2 \
               ELSE (owner = $1 AND visibility = $2) END) \
         AND ($3 IS NULL OR name = $3) AND ($4 IS NULL OR status = $4) AND ($5 IS NULL OR owner = $5) \
         AND ($6 IS NULL OR created_at < $6 OR (created_at = $6 AND id < $7)) \
         ORDER BY created_at DESC, id DESC LIMIT $8"
    );
    sqlx::query(&q)
        .bind(f.project)
        .bind(f.visibility)
        .bind(f.name)
        .bind(f.status)
        .bind(f.owner)
        .bind(f.after.map(|a| a.0))
        .bind(f.after.map(|a| a.1).unwrap_or(""))
        .bind(f.limit)
        .fetch_all(e)
        .await?
        .iter()
        .map(from_row)
        .collect()
}
