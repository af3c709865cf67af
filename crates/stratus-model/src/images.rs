//! Images, their members, and what an image listing asks for.

use crate::*;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ImageRec {
    pub id: String,
    pub owner: String,
    pub enterprise_project_id: String,
    pub name: Option<String>,
    pub status: ImageStatus,
    pub visibility: String,
    #[sqlx(try_from = "crate::Flag")]
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
    /// Free-form properties (Glance's additional properties).
    #[sqlx(try_from = "crate::JsonText")]
    pub properties: serde_json::Map<String, serde_json::Value>,
    #[sqlx(try_from = "crate::JsonText")]
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Which images a listing covers, relative to the caller's project (Glance's `visibility`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Own images of any visibility, public images, and images shared with the project and
    /// accepted (Glance's default).
    #[default]
    Default,
    /// As `Default`, plus community images.
    All,
    Public,
    Community,
    /// Own private images.
    Private,
    /// Own shared images and images shared with the project (with the given member status).
    Shared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
}

/// The columns an image listing can be sorted by (Glance's `sort_key` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Name,
    Status,
    ContainerFormat,
    DiskFormat,
    Size,
    Id,
    CreatedAt,
    UpdatedAt,
}

impl SortKey {
    /// Every key with its name in Glance's `sort_key`.
    pub const ALL: &'static [(&'static str, SortKey)] = &[
        ("name", SortKey::Name),
        ("status", SortKey::Status),
        ("container_format", SortKey::ContainerFormat),
        ("disk_format", SortKey::DiskFormat),
        ("size", SortKey::Size),
        ("id", SortKey::Id),
        ("created_at", SortKey::CreatedAt),
        ("updated_at", SortKey::UpdatedAt),
    ];

    pub fn parse(s: &str) -> Option<SortKey> {
        Self::ALL.iter().find(|k| k.0 == s).map(|k| k.1)
    }
}

/// A page of an image listing. Every field narrows the result; empty lists mean "any".
#[derive(Debug, Clone)]
pub struct ImageFilter {
    pub project: String,
    pub scope: Scope,
    /// Member status of images shared with the project (`accepted` unless asked otherwise).
    pub member_status: String,
    pub ids: Vec<String>,
    pub names: Vec<String>,
    pub statuses: Vec<String>,
    pub disk_formats: Vec<String>,
    pub container_formats: Vec<String>,
    /// Any of these visibilities (within what the scope selects).
    pub visibilities: Vec<String>,
    pub owner: Option<String>,
    pub enterprise_project_id: Option<String>,
    pub protected: Option<bool>,
    pub checksum: Option<String>,
    pub os_hash_value: Option<String>,
    /// Every tag must be present.
    pub tags: Vec<String>,
    /// Every `(name, value)` property must be present.
    pub properties: Vec<(String, String)>,
    pub size_min: Option<i64>,
    pub size_max: Option<i64>,
    pub created_at: Vec<(Cmp, i64)>,
    pub updated_at: Vec<(Cmp, i64)>,
    /// Sort keys in order; `id` in the last direction is always appended as the tie-breaker.
    pub sort: Vec<(SortKey, bool)>,
    /// The marker image: the page starts after it.
    pub after: Option<ImageRec>,
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MemberRec {
    pub image_id: String,
    pub member: String,
    pub status: MemberStatus,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ImageFilter {
    pub fn new(project: &str, limit: i64) -> ImageFilter {
        ImageFilter {
            project: project.to_string(),
            scope: Scope::Default,
            member_status: "accepted".into(),
            ids: vec![],
            names: vec![],
            statuses: vec![],
            disk_formats: vec![],
            container_formats: vec![],
            visibilities: vec![],
            owner: None,
            enterprise_project_id: None,
            protected: None,
            checksum: None,
            os_hash_value: None,
            tags: vec![],
            properties: vec![],
            size_min: None,
            size_max: None,
            created_at: vec![],
            updated_at: vec![],
            sort: vec![],
            after: None,
            limit,
        }
    }
}
