//! Records and queries of image metadata.

use crate::{Db, ImageStatus, MemberStatus, Result};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use sqlx::FromRow;
use stratus_model::*;

const COLS: &str = "id, owner, enterprise_project_id, name, status, visibility, protected, disk_format, \
    container_format, min_disk, min_ram, size, virtual_size, checksum, os_hash_algo, os_hash_value, properties, \
    tags, created_at, updated_at";

fn from_row(r: &AnyRow) -> Result<ImageRec> {
    Ok(ImageRec::from_row(r)?)
}

pub async fn image_insert(e: &mut AnyConnection, i: &ImageRec) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO images ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
    ))
    .bind(&i.id)
    .bind(&i.owner)
    .bind(&i.enterprise_project_id)
    .bind(&i.name)
    .bind(i.status)
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
    .bind(json_text(&i.properties))
    .bind(json_text(&i.tags))
    .bind(i.created_at)
    .bind(i.updated_at)
    .execute(&mut *e)
    .await?;
    write_search_rows(e, i).await
}

/// Replaces every column of an image whose status is still `expected_status`; false if the row
/// is gone or its status moved (a concurrent change won).
pub async fn image_update_if(
    e: &mut AnyConnection,
    i: &ImageRec,
    expected_status: ImageStatus,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE images SET name = $2, status = $3, visibility = $4, protected = $5, disk_format = $6, \
         container_format = $7, min_disk = $8, min_ram = $9, size = $10, virtual_size = $11, checksum = $12, \
         os_hash_algo = $13, os_hash_value = $14, properties = $15, tags = $16, updated_at = $17 \
         WHERE id = $1 AND status = $18",
    )
    .bind(&i.id)
    .bind(&i.name)
    .bind(i.status)
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
    .bind(json_text(&i.properties))
    .bind(json_text(&i.tags))
    .bind(i.updated_at)
    .bind(expected_status)
    .execute(&mut *e)
    .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    write_search_rows(e, i).await?;
    Ok(true)
}

/// Rewrites the tag and property rows of an image from its display copy.
async fn write_search_rows(e: &mut AnyConnection, i: &ImageRec) -> Result<()> {
    sqlx::query("DELETE FROM image_tags WHERE image_id = $1")
        .bind(&i.id)
        .execute(&mut *e)
        .await?;
    sqlx::query("DELETE FROM image_properties WHERE image_id = $1")
        .bind(&i.id)
        .execute(&mut *e)
        .await?;
    for t in &i.tags {
        sqlx::query(
            "INSERT INTO image_tags (image_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(&i.id)
        .bind(t)
        .execute(&mut *e)
        .await?;
    }
    for (k, v) in &i.properties {
        let v = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        sqlx::query("INSERT INTO image_properties (image_id, name, value) VALUES ($1, $2, $3)")
            .bind(&i.id)
            .bind(k)
            .bind(v)
            .execute(&mut *e)
            .await?;
    }
    Ok(())
}

/// Rebuilds every image's tag and property rows (schema upgrade).
pub(crate) async fn reindex_all(e: &mut AnyConnection) -> Result<()> {
    let rows = sqlx::query(&format!("SELECT {COLS} FROM images"))
        .fetch_all(&mut *e)
        .await?;
    for r in rows {
        write_search_rows(e, &from_row(&r)?).await?;
    }
    Ok(())
}

/// Deletes an image and keeps its id, so that it is never given to another image.
pub async fn image_delete(e: &mut AnyConnection, id: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM images WHERE id = $1")
        .bind(id)
        .execute(&mut *e)
        .await?;
    if r.rows_affected() > 0 {
        sqlx::query(
            "INSERT INTO deleted_images (id, deleted_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(crate::now_micros())
        .execute(&mut *e)
        .await?;
    }
    Ok(r.rows_affected() > 0)
}

/// Whether an image with this id existed and was deleted.
pub async fn image_was_deleted<'e, E: Db<'e>>(e: E, id: &str) -> Result<bool> {
    Ok(sqlx::query("SELECT 1 FROM deleted_images WHERE id = $1")
        .bind(id)
        .fetch_optional(e)
        .await?
        .is_some())
}

pub async fn image_get<'e, E: Db<'e>>(e: E, id: &str) -> Result<Option<ImageRec>> {
    sqlx::query(&format!("SELECT {COLS} FROM images WHERE id = $1"))
        .bind(id)
        .fetch_optional(e)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

fn cmp_sql(c: Cmp) -> &'static str {
    match c {
        Cmp::Eq => "=",
        Cmp::Neq => "<>",
        Cmp::Gt => ">",
        Cmp::Gte => ">=",
        Cmp::Lt => "<",
        Cmp::Lte => "<=",
    }
}

/// The SQL a sort key orders by; nullable columns sort as the empty string or -1.
fn sort_expr(k: SortKey) -> &'static str {
    match k {
        SortKey::Name => "COALESCE(name, '')",
        SortKey::Status => "status",
        SortKey::ContainerFormat => "COALESCE(container_format, '')",
        SortKey::DiskFormat => "COALESCE(disk_format, '')",
        SortKey::Size => "COALESCE(size, -1)",
        SortKey::Id => "id",
        SortKey::CreatedAt => "created_at",
        SortKey::UpdatedAt => "updated_at",
    }
}

/// The marker image's value for a sort key, as it sorts.
fn sort_value(k: SortKey, i: &ImageRec) -> Arg {
    let text = |o: &Option<String>| Arg::Text(o.clone().unwrap_or_default());
    match k {
        SortKey::Name => text(&i.name),
        SortKey::Status => Arg::Text(i.status.as_str().to_string()),
        SortKey::ContainerFormat => text(&i.container_format),
        SortKey::DiskFormat => text(&i.disk_format),
        SortKey::Size => Arg::Int(i.size.unwrap_or(-1)),
        SortKey::Id => Arg::Text(i.id.clone()),
        SortKey::CreatedAt => Arg::Int(i.created_at),
        SortKey::UpdatedAt => Arg::Int(i.updated_at),
    }
}

#[derive(Debug, Clone)]
enum Arg {
    Text(String),
    Int(i64),
}

/// Builds SQL with numbered placeholders.
#[derive(Default)]
struct Sql {
    args: Vec<Arg>,
}

impl Sql {
    fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }

    fn text(&mut self, s: &str) -> String {
        self.arg(Arg::Text(s.to_string()))
    }

    fn int(&mut self, n: i64) -> String {
        self.arg(Arg::Int(n))
    }

    fn any_of(&mut self, col: &str, values: &[String]) -> Option<String> {
        if values.is_empty() {
            return None;
        }
        let ps: Vec<String> = values.iter().map(|v| self.text(v)).collect();
        Some(format!("{col} IN ({})", ps.join(", ")))
    }
}

/// A page of the images `f` selects, in its sort order.
///
/// Each way an image can be visible (owned, public, community, shared with the project) is its own
/// indexed branch, limited on its own, and the branches are merged; so the default listing walks
/// `(owner, created_at, id)` and `(visibility, created_at, id)` instead of scanning the table.
pub async fn image_list<'e, E: Db<'e>>(e: E, f: &ImageFilter) -> Result<Vec<ImageRec>> {
    let mut q = Sql::default();
    let mut sort = f.sort.clone();
    if sort.is_empty() {
        sort.push((SortKey::CreatedAt, false));
    }
    let last_asc = sort.last().map(|s| s.1).unwrap_or(false);
    if !sort.iter().any(|s| s.0 == SortKey::Id) {
        sort.push((SortKey::Id, last_asc));
    }
    let order = sort
        .iter()
        .map(|(k, asc)| format!("{} {}", sort_expr(*k), if *asc { "ASC" } else { "DESC" }))
        .collect::<Vec<_>>()
        .join(", ");

    let mut conds: Vec<String> = Vec::new();
    let lists = [
        ("id", &f.ids),
        ("name", &f.names),
        ("status", &f.statuses),
        ("disk_format", &f.disk_formats),
        ("container_format", &f.container_formats),
        ("visibility", &f.visibilities),
    ];
    for (col, values) in lists {
        conds.extend(q.any_of(col, values));
    }
    let equal = [
        ("owner", &f.owner),
        ("enterprise_project_id", &f.enterprise_project_id),
        ("checksum", &f.checksum),
        ("os_hash_value", &f.os_hash_value),
    ];
    for (col, value) in equal {
        if let Some(v) = value {
            conds.push(format!("{col} = {}", q.text(v)));
        }
    }
    if let Some(p) = f.protected {
        conds.push(format!("protected = {}", q.int(crate::flag(p))));
    }
    if let Some(n) = f.size_min {
        conds.push(format!("size >= {}", q.int(n)));
    }
    if let Some(n) = f.size_max {
        conds.push(format!("size <= {}", q.int(n)));
    }
    for (col, cmps) in [("created_at", &f.created_at), ("updated_at", &f.updated_at)] {
        for (cmp, t) in cmps {
            conds.push(format!("{col} {} {}", cmp_sql(*cmp), q.int(*t)));
        }
    }
    for t in &f.tags {
        conds.push(format!(
            "EXISTS (SELECT 1 FROM image_tags t WHERE t.image_id = images.id AND t.tag = {})",
            q.text(t)
        ));
    }
    for (k, v) in &f.properties {
        let (k, v) = (q.text(k), q.text(v));
        conds.push(format!(
            "EXISTS (SELECT 1 FROM image_properties p WHERE p.image_id = images.id \
             AND p.name = {k} AND p.value = {v})"
        ));
    }
    // Keyset: strictly after the marker in the sort order.
    if let Some(m) = &f.after {
        let mut alts = Vec::new();
        for n in 0..sort.len() {
            let mut parts = Vec::new();
            for (k, _) in &sort[..n] {
                parts.push(format!("{} = {}", sort_expr(*k), q.arg(sort_value(*k, m))));
            }
            let (k, asc) = sort[n];
            let op = if asc { ">" } else { "<" };
            parts.push(format!("{} {op} {}", sort_expr(k), q.arg(sort_value(k, m))));
            alts.push(format!("({})", parts.join(" AND ")));
        }
        conds.push(format!("({})", alts.join(" OR ")));
    }

    let project = q.text(&f.project);
    let mut branches: Vec<String> = Vec::new();
    let shared_with_me = |q: &mut Sql| {
        let status = q.text(&f.member_status);
        format!(
            "visibility = 'shared' AND owner <> {project} AND id IN (SELECT image_id FROM \
             image_members WHERE member = {project} AND status = {status})"
        )
    };
    match f.scope {
        Scope::Default | Scope::All => {
            branches.push(format!("owner = {project}"));
            branches.push(format!("visibility = 'public' AND owner <> {project}"));
            if f.scope == Scope::All {
                branches.push(format!("visibility = 'community' AND owner <> {project}"));
            }
            branches.push(shared_with_me(&mut q));
        }
        Scope::Public => branches.push("visibility = 'public'".into()),
        Scope::Community => branches.push("visibility = 'community'".into()),
        Scope::Private => branches.push(format!("owner = {project} AND visibility = 'private'")),
        Scope::Shared => {
            branches.push(format!("owner = {project} AND visibility = 'shared'"));
            branches.push(shared_with_me(&mut q));
        }
    }
    let limit = q.int(f.limit);
    let common: String = conds.iter().map(|c| format!(" AND {c}")).collect();
    let branch_sql = |b: &String| {
        format!("SELECT {COLS} FROM images WHERE {b}{common} ORDER BY {order} LIMIT {limit}")
    };
    let sql = if branches.len() == 1 {
        branch_sql(&branches[0])
    } else {
        let union = branches
            .iter()
            .enumerate()
            .map(|(n, b)| format!("SELECT * FROM ({}) AS b{n}", branch_sql(b)))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        format!("SELECT * FROM ({union}) AS u ORDER BY {order} LIMIT {limit}")
    };
    let mut query = sqlx::query(&sql);
    for a in q.args {
        query = match a {
            Arg::Text(s) => query.bind(s),
            Arg::Int(n) => query.bind(n),
        };
    }
    query.fetch_all(e).await?.iter().map(from_row).collect()
}

fn member_from_row(r: &AnyRow) -> Result<MemberRec> {
    Ok(MemberRec::from_row(r)?)
}

const MEMBER_COLS: &str = "image_id, member, status, created_at, updated_at";

pub async fn member_insert<'e, E: Db<'e>>(e: E, m: &MemberRec) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO image_members ({MEMBER_COLS}) VALUES ($1, $2, $3, $4, $5)"
    ))
    .bind(&m.image_id)
    .bind(&m.member)
    .bind(m.status)
    .bind(m.created_at)
    .bind(m.updated_at)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn member_get<'e, E: Db<'e>>(
    e: E,
    image_id: &str,
    member: &str,
) -> Result<Option<MemberRec>> {
    sqlx::query(&format!(
        "SELECT {MEMBER_COLS} FROM image_members WHERE image_id = $1 AND member = $2"
    ))
    .bind(image_id)
    .bind(member)
    .fetch_optional(e)
    .await?
    .as_ref()
    .map(member_from_row)
    .transpose()
}

pub async fn member_list<'e, E: Db<'e>>(e: E, image_id: &str) -> Result<Vec<MemberRec>> {
    sqlx::query(&format!(
        "SELECT {MEMBER_COLS} FROM image_members WHERE image_id = $1 ORDER BY created_at, member"
    ))
    .bind(image_id)
    .fetch_all(e)
    .await?
    .iter()
    .map(member_from_row)
    .collect()
}

pub async fn member_set_status<'e, E: Db<'e>>(
    e: E,
    image_id: &str,
    member: &str,
    status: MemberStatus,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE image_members SET status = $3, updated_at = $4 WHERE image_id = $1 AND member = $2",
    )
    .bind(image_id)
    .bind(member)
    .bind(status)
    .bind(now)
    .execute(e)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn member_delete<'e, E: Db<'e>>(e: E, image_id: &str, member: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM image_members WHERE image_id = $1 AND member = $2")
        .bind(image_id)
        .bind(member)
        .execute(e)
        .await?;
    Ok(r.rows_affected() > 0)
}
