//! Volumes and snapshots.

use crate::*;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct VolumeRec {
    pub id: String,
    pub project_id: String,
    pub user_id: String,
    pub enterprise_project_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub size_gb: i64,
    pub status: VolumeStatus,
    #[sqlx(try_from = "crate::Flag")]
    pub bootable: bool,
    pub image_id: Option<String>,
    pub snapshot_id: Option<String>,
    pub image_metadata: Option<String>,
    pub disk: String,
    pub server_id: Option<String>,
    pub device: Option<String>,
    #[sqlx(try_from = "crate::Flag")]
    pub delete_on_termination: bool,
    #[sqlx(try_from = "crate::JsonText")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SnapshotRec {
    pub id: String,
    pub project_id: String,
    pub volume_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub size_gb: i64,
    pub status: SnapshotStatus,
    pub disk: String,
    #[sqlx(try_from = "crate::JsonText")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub created_at: i64,
    pub updated_at: i64,
}
