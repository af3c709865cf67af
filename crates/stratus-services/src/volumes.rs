//! Block storage (Cinder v3 / EVS): volumes and snapshots on qcow2 layers, with quotas.

use crate::authz::Authorized;
use crate::disks::Disks;
use crate::identity::TokenInfo;
use crate::images::Images;
use crate::{Result, ServiceError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use stratus_blob::format::DiskFormat;
use stratus_store::{self as store, now_micros, SnapshotRec, Store, VolumeRec};

const GIB: i64 = 1 << 30;

/// Per-project limits, as data: `(name in /limits, value)`.
pub const QUOTAS: &[(&str, i64)] = &[
    ("maxTotalVolumes", 10),
    ("maxTotalSnapshots", 10),
    ("maxTotalVolumeGigabytes", 1000),
    ("maxTotalBackups", 10),
    ("maxTotalBackupGigabytes", 1000),
];

pub fn quota(name: &str) -> i64 {
    QUOTAS
        .iter()
        .find(|q| q.0 == name)
        .map(|q| q.1)
        .unwrap_or(0)
}

/// What a project uses against [`QUOTAS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub volumes: i64,
    pub gigabytes: i64,
    pub snapshots: i64,
}

#[derive(Debug, Clone, Default)]
pub struct VolumeCreate {
    pub name: Option<String>,
    pub description: Option<String>,
    /// GiB; defaults to the snapshot's size.
    pub size_gb: Option<i64>,
    pub image_id: Option<String>,
    pub snapshot_id: Option<String>,
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Clone, Default)]
pub struct SnapshotCreate {
    pub volume_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub force: bool,
    pub metadata: Map<String, Value>,
}

/// A snapshot to take, with every name it will use chosen beforehand, so that taking it can be
/// retried or undone from the plan alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotPlan {
    pub id: String,
    pub volume_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// The volume's new writable layer.
    pub active: String,
}

impl SnapshotPlan {
    pub fn new(
        volume_id: &str,
        name: Option<String>,
        description: Option<String>,
        metadata: Map<String, Value>,
    ) -> SnapshotPlan {
        SnapshotPlan {
            id: crate::new_uuid(),
            volume_id: volume_id.to_string(),
            name,
            description,
            metadata,
            active: format!("volumes/{volume_id}/{}.qcow2", crate::new_id()),
        }
    }

    /// The snapshot's layer: the volume's writable layer as it was.
    pub fn frozen(&self) -> String {
        format!("snapshots/{}.qcow2", self.id)
    }
}

pub struct Volumes {
    store: Arc<Store>,
    images: Arc<Images>,
    disks: Arc<Disks>,
}

fn bad(msg: impl Into<String>) -> ServiceError {
    ServiceError::BadRequest(msg.into())
}

fn caller_project(caller: &TokenInfo) -> Result<&str> {
    crate::caller_project(caller, "Block storage")
}

impl Volumes {
    pub fn new(store: Arc<Store>, images: Arc<Images>, disks: Arc<Disks>) -> Volumes {
        Volumes {
            store,
            images,
            disks,
        }
    }

    pub async fn usage(&self, caller: &TokenInfo) -> Result<Usage> {
        let (volumes, gigabytes, snapshots) =
            store::block_usage(self.store.pool(), caller_project(caller)?).await?;
        Ok(Usage {
            volumes,
            gigabytes,
            snapshots,
        })
    }

    pub async fn get(&self, caller: &TokenInfo, id: &str) -> Result<VolumeRec> {
        let project = caller_project(caller)?;
        store::volume_get(self.store.pool(), id)
            .await?
            .filter(|v| v.project_id == project)
            .ok_or_else(|| ServiceError::not_found("volume", id))
    }

    pub async fn list(&self, caller: &Authorized) -> Result<Vec<VolumeRec>> {
        Ok(store::volume_list(self.store.pool(), caller_project(caller)?).await?)
    }

    pub async fn snapshot(&self, caller: &TokenInfo, id: &str) -> Result<SnapshotRec> {
        let project = caller_project(caller)?;
        store::snapshot_get(self.store.pool(), id)
            .await?
            .filter(|s| s.project_id == project)
            .ok_or_else(|| ServiceError::not_found("snapshot", id))
    }

    pub async fn snapshots(&self, caller: &Authorized) -> Result<Vec<SnapshotRec>> {
        Ok(store::snapshot_list(self.store.pool(), caller_project(caller)?).await?)
    }

    /// A blank volume, or one over an image or a snapshot; its data is never copied up front.
    pub async fn create(&self, caller: &Authorized, req: VolumeCreate) -> Result<VolumeRec> {
        let project = caller_project(caller)?.to_string();
        if req.image_id.is_some() && req.snapshot_id.is_some() {
            return Err(bad("Give at most one of imageRef and snapshot_id."));
        }
        crate::compute::check_metadata(&req.metadata)?;
        let id = crate::new_uuid();
        let disk = format!("volumes/{id}/{}.qcow2", crate::new_id());
        let mut image_metadata = None;
        let mut bootable = false;
        // (backing layer, its format, size in GiB)
        let (backing, format, size_gb) = match (&req.image_id, &req.snapshot_id) {
            (Some(image_id), None) => {
                let i = self.images.get(caller, image_id).await.map_err(|_| {
                    bad(format!(
                        "Invalid image identifier or unable to access requested image {image_id}."
                    ))
                })?;
                if i.status != "active" {
                    return Err(bad(format!("Image {image_id} is not active.")));
                }
                let format = i
                    .disk_format
                    .as_deref()
                    .and_then(DiskFormat::parse)
                    .ok_or_else(|| {
                        bad(format!(
                            "Image {image_id} is not raw or qcow2; volumes are made from those."
                        ))
                    })?;
                let size = req
                    .size_gb
                    .ok_or_else(|| bad("A size is required for a volume from an image."))?;
                let needed = (i.virtual_size.unwrap_or(0) + GIB - 1) / GIB;
                if size < needed.max(i.min_disk) {
                    return Err(bad(format!(
                        "Image {image_id} needs a volume of at least {}GB; {size}GB was requested.",
                        needed.max(i.min_disk)
                    )));
                }
                image_metadata = Some(
                    json!({"image_id": i.id, "image_name": i.name, "disk_format": i.disk_format,
                           "container_format": i.container_format, "min_disk": i.min_disk.to_string(),
                           "min_ram": i.min_ram.to_string(), "size": i.size.unwrap_or(0).to_string(),
                           "checksum": i.checksum})
                        .to_string(),
                );
                bootable = true;
                let src = self.images.local_data_path(&i.id);
                let cache = self.disks.cache_image(&i.id, &src).await?;
                (Some(cache), format, size)
            }
            (None, Some(snap_id)) => {
                let s = self.snapshot(caller, snap_id).await.map_err(|_| {
                    bad(format!(
                        "Invalid snapshot: snapshot {snap_id} could not be found."
                    ))
                })?;
                if s.status != "available" {
                    return Err(bad(format!(
                        "Invalid snapshot: snapshot {snap_id} is {}.",
                        s.status
                    )));
                }
                let size = req.size_gb.unwrap_or(s.size_gb);
                if size < s.size_gb {
                    return Err(bad(format!(
                        "Invalid input received: Volume size '{size}'GB cannot be smaller than the snapshot size {}GB.",
                        s.size_gb
                    )));
                }
                if let Some(src) = store::volume_get(self.store.pool(), &s.volume_id).await? {
                    bootable = src.bootable;
                    image_metadata = src.image_metadata;
                }
                (Some(s.disk.clone()), DiskFormat::Qcow2, size)
            }
            _ => (
                None,
                DiskFormat::Qcow2,
                req.size_gb
                    .ok_or_else(|| bad("'size' is a required property"))?,
            ),
        };
        if !(1..=quota("maxTotalVolumeGigabytes")).contains(&size_gb) {
            return Err(bad(format!(
                "Invalid input received: size {size_gb} must be a positive number of GiB."
            )));
        }
        let usage = self.usage(caller).await?;
        if usage.volumes + 1 > quota("maxTotalVolumes")
            || usage.gigabytes + size_gb > quota("maxTotalVolumeGigabytes")
        {
            return Err(ServiceError::TooLarge(format!(
                "VolumeLimitExceeded: Maximum number of volumes allowed ({}) or gigabytes ({}) exceeded",
                quota("maxTotalVolumes"),
                quota("maxTotalVolumeGigabytes")
            )));
        }
        crate::disks::register(&self.store, &[(&disk, backing.as_deref())]).await?;
        let now = now_micros();
        let mut v = VolumeRec {
            id,
            project_id: project,
            user_id: caller.user.id.clone(),
            enterprise_project_id: store::DEFAULT_ENTERPRISE_PROJECT.into(),
            name: req.name,
            description: req.description,
            size_gb,
            status: "creating".into(),
            bootable,
            image_id: req.image_id,
            snapshot_id: req.snapshot_id,
            image_metadata,
            disk: disk.clone(),
            server_id: None,
            device: None,
            delete_on_termination: false,
            metadata: Value::Object(req.metadata).to_string(),
            created_at: now,
            updated_at: now,
        };
        self.put(&v).await?;
        let size = (size_gb * GIB) as u64;
        let made = match &backing {
            Some(b) => self.disks.overlay(&disk, b, format, size).await,
            None => self.disks.blank(&disk, size).await,
        };
        v.status = if made.is_ok() { "available" } else { "error" }.into();
        v.updated_at = now_micros();
        self.put(&v).await?;
        made.map(|_| v)
    }

    async fn put(&self, v: &VolumeRec) -> Result<()> {
        let mut w = self.store.write(false).await?;
        store::volume_put(w.conn(), v).await?;
        Ok(self.store.commit(w).await?)
    }

    pub async fn set_bootable(&self, caller: &Authorized, id: &str, bootable: bool) -> Result<()> {
        let mut v = self.get(caller, id).await?;
        v.bootable = bootable;
        v.updated_at = now_micros();
        self.put(&v).await
    }

    /// Deletes a volume that is not attached and has no snapshots (400 otherwise, as upstream).
    pub async fn delete(&self, caller: &Authorized, id: &str) -> Result<()> {
        let v = self.get(caller, id).await?;
        let has_snapshots = store::snapshot_list(self.store.pool(), &v.project_id)
            .await?
            .iter()
            .any(|s| s.volume_id == v.id);
        if v.server_id.is_some()
            || !matches!(v.status.as_str(), "available" | "error")
            || has_snapshots
        {
            return Err(bad(format!(
                "Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots or be disassociated from snapshots after volume transfer. (volume {id} is {}{})",
                v.status,
                if has_snapshots { " and has snapshots" } else { "" }
            )));
        }
        let mut w = self.store.write(false).await?;
        store::volume_delete(w.conn(), id).await?;
        self.store.commit(w).await?;
        self.disks.collect(&self.store).await?;
        Ok(())
    }

    /// Freezes the volume's writable layer as the snapshot and starts a new empty layer over it:
    /// the same cost whatever the volume's size.
    pub async fn create_snapshot(
        &self,
        caller: &Authorized,
        req: SnapshotCreate,
    ) -> Result<SnapshotRec> {
        crate::compute::check_metadata(&req.metadata)?;
        let v = self
            .get(caller, &req.volume_id)
            .await
            .map_err(|_| ServiceError::NotFound {
                kind: "volume",
                id: req.volume_id.clone(),
            })?;
        let allowed = v.status == "available" || (v.status == "in-use" && req.force);
        if !allowed {
            return Err(bad(format!(
                "Invalid volume: Volume {} status must be available, but current status is: {}.",
                v.id, v.status
            )));
        }
        let usage = self.usage(caller).await?;
        if usage.snapshots + 1 > quota("maxTotalSnapshots") {
            return Err(ServiceError::TooLarge(format!(
                "SnapshotLimitExceeded: Maximum number of snapshots allowed ({}) exceeded",
                quota("maxTotalSnapshots")
            )));
        }
        let plan = SnapshotPlan::new(&v.id, req.name, req.description, req.metadata);
        match self.snapshot_apply(&plan).await {
            Ok(s) => Ok(s),
            Err(e) => {
                let _ = self.snapshot_revert(&plan).await;
                Err(e)
            }
        }
    }

    /// Takes the snapshot `plan` describes; idempotent, so that it can be run again after being
    /// interrupted at any point: the volume's writable layer is renamed to the snapshot's layer
    /// (unless it already was), a new empty layer is made over it, then the store records both.
    pub async fn snapshot_apply(&self, plan: &SnapshotPlan) -> Result<SnapshotRec> {
        if let Some(s) = store::snapshot_get(self.store.pool(), &plan.id).await? {
            return Ok(s);
        }
        let mut v = store::volume_get(self.store.pool(), &plan.volume_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("volume", &plan.volume_id))?;
        let frozen = plan.frozen();
        let old = v.disk.clone();
        if self.disks.exists(&old).await {
            self.disks.rename(&old, &frozen).await?;
        } else if !self.disks.exists(&frozen).await {
            return Err(ServiceError::Internal(format!(
                "volume {} has lost its disk {old}",
                v.id
            )));
        }
        // A layer left by an interrupted attempt is made again.
        self.disks.remove(&plan.active).await;
        self.disks
            .overlay(
                &plan.active,
                &frozen,
                DiskFormat::Qcow2,
                (v.size_gb * GIB) as u64,
            )
            .await?;
        let now = now_micros();
        let snap = SnapshotRec {
            id: plan.id.clone(),
            project_id: v.project_id.clone(),
            volume_id: v.id.clone(),
            name: plan.name.clone(),
            description: plan.description.clone(),
            size_gb: v.size_gb,
            status: "available".into(),
            disk: frozen.clone(),
            metadata: Value::Object(plan.metadata.clone()).to_string(),
            created_at: now,
            updated_at: now,
        };
        v.disk = plan.active.clone();
        v.updated_at = now;
        let mut w = self.store.write(false).await?;
        store::layer_rename(w.conn(), &old, &frozen).await?;
        store::layer_add(w.conn(), &plan.active, Some(&frozen), now).await?;
        store::snapshot_put(w.conn(), &snap).await?;
        store::volume_put(w.conn(), &v).await?;
        self.store.commit(w).await?;
        Ok(snap)
    }

    /// Undoes [`Volumes::snapshot_apply`] wherever it stopped: a recorded snapshot is deleted; an
    /// unrecorded one has its new layer removed and the volume's layer put back.
    pub async fn snapshot_revert(&self, plan: &SnapshotPlan) -> Result<()> {
        if store::snapshot_get(self.store.pool(), &plan.id)
            .await?
            .is_some()
        {
            let mut w = self.store.write(false).await?;
            store::snapshot_delete(w.conn(), &plan.id).await?;
            self.store.commit(w).await?;
            self.disks.collect(&self.store).await?;
            return Ok(());
        }
        // Nothing was recorded, so neither file is a layer of the store.
        self.disks.remove(&plan.active).await;
        let frozen = plan.frozen();
        if self.disks.exists(&frozen).await {
            match store::volume_get(self.store.pool(), &plan.volume_id).await? {
                Some(v) if !self.disks.exists(&v.disk).await => {
                    self.disks.rename(&frozen, &v.disk).await?
                }
                _ => self.disks.remove(&frozen).await,
            }
        }
        Ok(())
    }

    /// Deletes a snapshot; its layer stays while a volume still stands on it.
    pub async fn delete_snapshot(&self, caller: &Authorized, id: &str) -> Result<()> {
        let s = self.snapshot(caller, id).await?;
        let mut w = self.store.write(false).await?;
        store::snapshot_delete(w.conn(), &s.id).await?;
        self.store.commit(w).await?;
        self.disks.collect(&self.store).await?;
        Ok(())
    }
}
