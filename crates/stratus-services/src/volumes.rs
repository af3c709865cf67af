//! Block storage (Cinder v3 / EVS): volumes and snapshots on qcow2 layers, with quotas.

use crate::authz::Authorized;
use crate::disks::Disks;
use crate::identity::TokenInfo;
use crate::images::Images;
use crate::quotas::{QuotaService, Quotas};
use crate::saga::{Caller, Saga, Sagas};
use crate::volume_create::{CacheFill, CreateVolume, VolumeCreateState, VolumeMaker, VolumePlan};
use crate::{IfMissing, Result, ServiceError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use stratus_blob::format::DiskFormat;
use stratus_iam::ResourceKind;
use stratus_store::{
    self as store, now_micros, ImageStatus, SnapshotRec, SnapshotStatus, Store, VolumeRec,
    VolumeStatus,
};

const GIB: i64 = 1 << 30;
/// Largest volume, in GiB (64 TiB).
pub const MAX_VOLUME_GB: i64 = 65536;

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
    quotas: Arc<Quotas>,
    maker: Arc<VolumeMaker>,
    sagas: Arc<Sagas>,
    guests: Arc<crate::guests::Guests>,
}

fn bad(msg: impl Into<String>) -> ServiceError {
    ServiceError::BadRequest(msg.into())
}

fn caller_project(caller: &TokenInfo) -> Result<&str> {
    crate::caller_project(caller, "Block storage")
}

impl Volumes {
    /// Block storage over `disks`; registers its saga kind with `sagas`.
    pub fn new(
        store: Arc<Store>,
        images: Arc<Images>,
        disks: Arc<Disks>,
        quotas: Arc<Quotas>,
        sagas: Arc<Sagas>,
        guests: Arc<crate::guests::Guests>,
    ) -> Volumes {
        let maker = Arc::new(VolumeMaker {
            store: store.clone(),
            images: images.clone(),
            disks: disks.clone(),
            quotas: quotas.clone(),
        });
        sagas.register::<CreateVolume>(maker.clone());
        Volumes {
            store,
            images,
            disks,
            quotas,
            maker,
            sagas,
            guests,
        }
    }

    /// What makes volumes, for the sagas of other services.
    pub fn maker(&self) -> &Arc<VolumeMaker> {
        &self.maker
    }

    pub fn quotas(&self) -> &Arc<Quotas> {
        &self.quotas
    }

    pub async fn get(&self, caller: &TokenInfo, id: &str) -> Result<VolumeRec> {
        let project = caller_project(caller)?;
        store::volume_get(self.store.pool(), id)
            .await?
            .filter(|v| v.project_id == project)
            .ok_or_else(|| ServiceError::not_found("volume", id))
    }

    /// A volume a request names to use (to attach, to snapshot): of the caller's project (404
    /// otherwise) and readable by the caller (403 otherwise).
    pub async fn get_for_use(&self, caller: &Authorized, id: &str) -> Result<VolumeRec> {
        let v = self.get(caller, id).await?;
        caller.require_use(ResourceKind::Volume)?;
        Ok(v)
    }

    /// A snapshot a request names to use (to make a volume of), as [`Volumes::get_for_use`].
    pub async fn snapshot_for_use(&self, caller: &Authorized, id: &str) -> Result<SnapshotRec> {
        let s = self.snapshot(caller, id).await?;
        caller.require_use(ResourceKind::Snapshot)?;
        Ok(s)
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
    /// Made by the `volume-create` saga, all of it before the answer.
    pub async fn create(&self, caller: &Authorized, req: VolumeCreate) -> Result<VolumeRec> {
        let plan = self.plan(caller, req).await?;
        let st = VolumeCreateState {
            caller: Caller::of(caller),
            plan,
        };
        self.sagas
            .begin::<CreateVolume>(crate::new_uuid(), &st, CreateVolume::STEPS.len())
            .await?;
        store::volume_get(self.store.pool(), &st.plan.volume.id)
            .await?
            .ok_or_else(|| ServiceError::not_found("volume", &st.plan.volume.id))
    }

    /// Decides everything about a new volume, as the caller, before anything is made: what it is
    /// made over (an image or a snapshot the caller may use), its size, and its record.
    pub async fn plan(&self, caller: &Authorized, req: VolumeCreate) -> Result<VolumePlan> {
        let project = caller_project(caller)?.to_string();
        if req.image_id.is_some() && req.snapshot_id.is_some() {
            return Err(bad("Give at most one of imageRef and snapshot_id."));
        }
        crate::limits::check_metadata(&req.metadata)?;
        check_text(req.name.as_deref(), req.description.as_deref())?;
        let id = crate::new_uuid();
        let disk = format!("volumes/{id}/{}.qcow2", crate::new_id());
        let mut image_metadata = None;
        let mut bootable = false;
        // The image whose data fills the cache layer the volume starts over.
        let mut fill = None;
        // (backing layer, its format, size in GiB)
        let (backing, format, size_gb) = match (&req.image_id, &req.snapshot_id) {
            (Some(image_id), None) => {
                let i = self
                    .images
                    .get_for_use(caller, image_id)
                    .await
                    .if_missing(|| {
                        bad(format!(
                        "Invalid image identifier or unable to access requested image {image_id}."
                    ))
                    })?;
                if i.status != ImageStatus::Active {
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
                let mut meta = json!({"image_id": i.id, "image_name": i.name,
                    "disk_format": i.disk_format, "container_format": i.container_format,
                    "min_disk": i.min_disk.to_string(), "min_ram": i.min_ram.to_string(),
                    "size": i.size.unwrap_or(0).to_string(), "checksum": i.checksum});
                // What booting the volume needs of its image (a kernel boot), as upstream
                // copies image properties into the volume's image metadata.
                for k in crate::kernel_boot::BOOT_PROPERTIES {
                    if let Some(v) = i.properties.get(*k) {
                        meta[*k] = v.clone();
                    }
                }
                image_metadata = Some(meta.to_string());
                bootable = true;
                let cache = crate::disks::cache_layer_of(&i)?;
                fill = Some(CacheFill {
                    image_id: i.id.clone(),
                    sha512: i.os_hash_value.clone().unwrap_or_default(),
                });
                (Some(cache), format, size)
            }
            (None, Some(snap_id)) => {
                let s = self
                    .snapshot_for_use(caller, snap_id)
                    .await
                    .if_missing(|| {
                        bad(format!(
                            "Invalid snapshot: snapshot {snap_id} could not be found."
                        ))
                    })?;
                if s.status != SnapshotStatus::Available {
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
        if !(1..=MAX_VOLUME_GB).contains(&size_gb) {
            return Err(bad(format!(
                "Invalid input received: size {size_gb} must be from 1 to {MAX_VOLUME_GB} GiB."
            )));
        }
        let now = now_micros();
        let volume = VolumeRec {
            id,
            project_id: project,
            user_id: caller.user.id.clone(),
            enterprise_project_id: store::DEFAULT_ENTERPRISE_PROJECT.into(),
            name: req.name,
            description: req.description,
            size_gb,
            status: VolumeStatus::Creating,
            bootable,
            image_id: req.image_id,
            snapshot_id: req.snapshot_id,
            image_metadata,
            disk,
            server_id: None,
            device: None,
            delete_on_termination: false,
            metadata: req.metadata,
            created_at: now,
            updated_at: now,
        };
        Ok(VolumePlan {
            volume,
            backing,
            format,
            fill,
        })
    }

    async fn put(&self, v: &VolumeRec) -> Result<()> {
        let mut w = self.store.write().await?;
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
            || !matches!(v.status, VolumeStatus::Available | VolumeStatus::Error)
            || has_snapshots
        {
            return Err(bad(format!(
                "Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots or be disassociated from snapshots after volume transfer. (volume {id} is {}{})",
                v.status,
                if has_snapshots { " and has snapshots" } else { "" }
            )));
        }
        let mut w = self.store.write().await?;
        if !store::volume_delete_unless_snapshotted(w.conn(), id).await? {
            return Err(bad(format!(
                "Invalid volume: Volume {id} has snapshots or one is being taken."
            )));
        }
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
        crate::limits::check_metadata(&req.metadata)?;
        check_text(req.name.as_deref(), req.description.as_deref())?;
        let v = self.get_for_use(caller, &req.volume_id).await?;
        let allowed =
            v.status == VolumeStatus::Available || (v.status == VolumeStatus::InUse && req.force);
        if !allowed {
            return Err(bad(format!(
                "Invalid volume: Volume {} status must be available, but current status is: {}.",
                v.id, v.status
            )));
        }
        let plan = SnapshotPlan::new(&v.id, req.name, req.description, req.metadata);
        match self.snapshot_apply(&plan).await {
            Ok(s) => Ok(s),
            // Refused before anything was done: another snapshot of the volume is being taken,
            // or the quota is used up.
            Err(e @ (ServiceError::Conflict(_) | ServiceError::TooLarge(_))) => Err(e),
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
        let recorded = store::snapshot_get(self.store.pool(), &plan.id).await?;
        if let Some(s) = recorded
            .as_ref()
            .filter(|s| s.status == SnapshotStatus::Available)
        {
            return Ok(s.clone());
        }
        let mut v = store::volume_get(self.store.pool(), &plan.volume_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("volume", &plan.volume_id))?;
        let frozen = plan.frozen();
        let now = now_micros();
        let mut snap = SnapshotRec {
            id: plan.id.clone(),
            project_id: v.project_id.clone(),
            volume_id: v.id.clone(),
            name: plan.name.clone(),
            description: plan.description.clone(),
            size_gb: v.size_gb,
            status: SnapshotStatus::Creating,
            disk: v.disk.clone(),
            metadata: plan.metadata.clone(),
            created_at: now,
            updated_at: now,
        };
        if recorded.is_none() {
            // One snapshot of a volume at a time (its layers are renamed), and the quota counted
            // with the snapshot's row, in one transaction.
            let mut w = self.store.write().await?;
            if !store::volume_snapshot_lock(w.conn(), &v.id, &plan.id).await? {
                return Err(ServiceError::Conflict(format!(
                    "Invalid volume: a snapshot of volume {} is being taken; try again.",
                    v.id
                )));
            }
            // As it is now that it is ours (another snapshot may have just renamed its layer).
            v = store::volume_get(w.conn(), &plan.volume_id)
                .await?
                .ok_or_else(|| ServiceError::not_found("volume", &plan.volume_id))?;
            snap.disk = v.disk.clone();
            snap.size_gb = v.size_gb;
            self.quotas
                .reserve(
                    &mut w,
                    &v.project_id,
                    QuotaService::Volume,
                    &[("snapshots", 1), ("gigabytes", v.size_gb)],
                )
                .await?;
            store::snapshot_put(w.conn(), &snap).await?;
            self.store.commit(w).await?;
        }
        let old = v.disk.clone();
        if !self.disks.exists(&old).await && !self.disks.exists(&frozen).await {
            return Err(ServiceError::Internal(format!(
                "volume {} has lost its disk {old}",
                v.id
            )));
        }
        let guest = match &v.server_id {
            Some(s) if self.guests.is_live(s).await? => Some(s.clone()),
            _ => None,
        };
        if let Some(server) = guest {
            // The guest writes the layer: QEMU makes the new layer and moves the guest onto it
            // at once, over the old one linked at the snapshot's name; then the old name goes.
            if self.disks.exists(&old).await && !self.disks.exists(&frozen).await {
                self.disks.link(&old, &frozen).await?;
            }
            self.guests
                .switch_volume_top(
                    &server,
                    &v.id,
                    &self.disks.path(&plan.active),
                    &self.disks.path(&frozen),
                )
                .await?;
            self.disks.remove(&old).await;
        } else {
            if self.disks.exists(&old).await {
                self.disks.rename(&old, &frozen).await?;
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
        }
        let now = now_micros();
        snap.status = SnapshotStatus::Available;
        snap.disk = frozen.clone();
        snap.updated_at = now;
        v.disk = plan.active.clone();
        v.updated_at = now;
        let mut w = self.store.write().await?;
        store::layer_rename(w.conn(), &old, &frozen).await?;
        store::layer_add(w.conn(), &plan.active, Some(&frozen), now).await?;
        store::snapshot_put(w.conn(), &snap).await?;
        store::volume_put(w.conn(), &v).await?;
        store::volume_snapshot_unlock(w.conn(), &v.id, &plan.id).await?;
        self.store.commit(w).await?;
        Ok(snap)
    }

    /// Undoes [`Volumes::snapshot_apply`] wherever it stopped: a recorded snapshot is deleted; an
    /// unrecorded one has its new layer removed and the volume's layer put back.
    pub async fn snapshot_revert(&self, plan: &SnapshotPlan) -> Result<()> {
        let recorded = store::snapshot_get(self.store.pool(), &plan.id).await?;
        if recorded
            .as_ref()
            .is_some_and(|s| s.status == SnapshotStatus::Available)
        {
            let mut w = self.store.write().await?;
            store::snapshot_delete(w.conn(), &plan.id).await?;
            self.store.commit(w).await?;
            self.disks.collect(&self.store).await?;
            return Ok(());
        }
        if recorded.is_some() {
            // Reserved but not taken: the row goes, and the volume is free again.
            let mut w = self.store.write().await?;
            store::snapshot_delete(w.conn(), &plan.id).await?;
            store::volume_snapshot_unlock(w.conn(), &plan.volume_id, &plan.id).await?;
            self.store.commit(w).await?;
        }
        let volume = store::volume_get(self.store.pool(), &plan.volume_id).await?;
        if volume.as_ref().is_some_and(|v| v.disk == plan.active) {
            // Taken, then deleted by an earlier run of this undo: the volume writes on the new
            // layer (with whatever it wrote since), which stays.
            return Ok(());
        }
        if let Some(v) = &volume {
            if self.live_on_new_layer(v, plan).await? {
                return Ok(());
            }
        }
        // Nothing was recorded, so neither file is a layer of the store.
        self.disks.remove(&plan.active).await;
        let frozen = plan.frozen();
        if self.disks.exists(&frozen).await {
            match volume {
                Some(v) if !self.disks.exists(&v.disk).await => {
                    self.disks.rename(&frozen, &v.disk).await?
                }
                _ => self.disks.remove(&frozen).await,
            }
        }
        Ok(())
    }

    /// Undoing a snapshot whose guest already writes its new layer cannot take the layer back
    /// from the guest: the layers stay as they are (the old one under the new one) and only the
    /// snapshot is not made. True if that was the case.
    async fn live_on_new_layer(&self, v: &VolumeRec, plan: &SnapshotPlan) -> Result<bool> {
        let Some(server) = &v.server_id else {
            return Ok(false);
        };
        let active = self.disks.path(&plan.active);
        if self.guests.volume_top(server, &v.id).await?.as_deref() != Some(active.as_path()) {
            return Ok(false);
        }
        let frozen = plan.frozen();
        if self.disks.exists(&v.disk).await && !self.disks.exists(&frozen).await {
            self.disks.link(&v.disk, &frozen).await?;
        }
        let frozen_path = self.disks.path(&frozen);
        self.guests
            .switch_volume_top(server, &v.id, &active, &frozen_path)
            .await?;
        let now = now_micros();
        let mut moved = v.clone();
        moved.disk = plan.active.clone();
        moved.updated_at = now;
        let mut w = self.store.write().await?;
        store::layer_rename(w.conn(), &v.disk, &frozen).await?;
        store::layer_add(w.conn(), &plan.active, Some(&frozen), now).await?;
        store::volume_put(w.conn(), &moved).await?;
        self.store.commit(w).await?;
        self.disks.remove(&v.disk).await;
        Ok(true)
    }

    /// Deletes a snapshot; its layer stays while a volume still stands on it.
    pub async fn delete_snapshot(&self, caller: &Authorized, id: &str) -> Result<()> {
        let s = self.snapshot(caller, id).await?;
        let mut w = self.store.write().await?;
        store::snapshot_delete(w.conn(), &s.id).await?;
        self.store.commit(w).await?;
        self.disks.collect(&self.store).await?;
        Ok(())
    }
}

/// Checks the name and description of a volume or snapshot.
fn check_text(name: Option<&str>, description: Option<&str>) -> Result<()> {
    use crate::limits;
    if let Some(n) = name {
        limits::check_chars("name", n, limits::NAME_CHARS)?;
    }
    limits::check_description("description", description)
}
