//! Servers.

use crate::*;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct ServerRec {
    pub id: String,
    pub project_id: String,
    pub user_id: String,
    pub enterprise_project_id: String,
    pub name: String,
    pub description: Option<String>,
    pub flavor_id: String,
    /// The flavor at creation.
    #[sqlx(try_from = "crate::JsonText")]
    pub flavor: serde_json::Map<String, serde_json::Value>,
    /// Empty for a server booted from a volume.
    pub image_id: String,
    pub vm_state: VmState,
    pub task_state: Option<TaskState>,
    pub power_state: PowerState,
    #[sqlx(try_from = "crate::JsonText")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub availability_zone: String,
    /// JSON object text.
    pub fault: Option<String>,
    /// Relative to the disks directory; empty until the disk exists.
    pub root_disk: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub launched_at: Option<i64>,
    /// As given at create or rebuild; empty when not given.
    pub access_ipv4: String,
    pub access_ipv6: String,
    /// `OS-DCF:diskConfig` AUTO (true) or MANUAL.
    #[sqlx(try_from = "crate::Flag")]
    pub auto_disk_config: bool,
    /// `owner` or `admin` while locked.
    pub locked_by: Option<String>,
}
