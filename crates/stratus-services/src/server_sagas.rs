//! Making and deleting servers, as sagas.
//!
//! | kind                     | steps                    | answered after |
//! |--------------------------|--------------------------|----------------|
//! | `server-create`          | reserve, spawn, finish   | reserve        |
//! | `server-create-volumes`  | volumes, attach          | attach         |
//! | `server-delete`          | detach, destroy          | destroy        |
//!
//! `server-create` (a server on an image): `reserve` counts the server against the compute quota
//! and records it (`building`, task `spawning`) with its layers, which collection then keeps;
//! `spawn` fills the image's cache layer and makes the root disk over it; `finish` makes the
//! server `active`. A failure leaves it `error` with a fault, as upstream; a server deleted while
//! it was built has its disks removed.
//!
//! `server-create-volumes` (a server booted from volumes): `volumes` makes the new volumes the
//! mappings ask for (from images, snapshots or nothing); `attach` records the server, counted
//! against the quota, and attaches every volume, in one transaction, so the server is built at
//! once. A failure removes the volumes it made: nothing is left of the request.
//!
//! `server-delete`: `detach` removes the server's record and detaches its volumes (deleting those
//! mapped with `delete_on_termination` if the caller may), in one transaction; `destroy` removes
//! its disks. Killed between the two, the node finishes `destroy` when it comes back.

use crate::disks::Disks;
use crate::driver::root_disk_of;
use crate::guests::{Guests, NO_VALID_HOST};
use crate::images::Images;
use crate::kernel_boot::{self, KernelBoot};
use crate::quotas::{QuotaService, Quotas};
use crate::saga::{nothing, Caller, StepError, StepResult, Why};
use crate::volume_create::{VolumeMaker, VolumePlan};
use crate::{Result, ServiceError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use stratus_blob::format::DiskFormat;
use stratus_store::{self as store, now_micros, ServerRec, Store, VmState, VolumeStatus};

/// What the server sagas' steps use.
pub struct ServerSagas {
    pub store: Arc<Store>,
    pub images: Arc<Images>,
    pub volumes: Arc<VolumeMaker>,
    pub quotas: Arc<Quotas>,
    pub disks: Arc<Disks>,
    pub guests: Arc<Guests>,
}

/// The state of `server-create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildState {
    pub caller: Caller,
    /// The server as recorded (`building`), its root disk named.
    pub server: ServerRec,
    pub vcpus: i64,
    pub ram_mb: i64,
    pub image_id: String,
    /// The image's cache layer, its format, and the data's SHA-512 it is checked against.
    pub cache: String,
    pub format: DiskFormat,
    pub sha512: String,
    /// The root disk's size in bytes.
    pub size: u64,
    /// A kernel to boot over the root disk, as the image's properties ask.
    #[serde(default)]
    pub boot: Option<KernelBoot>,
}

crate::declare_saga! {
    pub CreateServer = "server-create" (ServerSagas, BuildState) {
        "reserve" => reserve, fail_build;
        "spawn" => spawn, remove_if_deleted;
        "finish" => finish_build, nothing;
    }
}

/// The state of `server-create-volumes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FromVolumesState {
    pub caller: Caller,
    /// The server as recorded (`building`).
    pub server: ServerRec,
    pub vcpus: i64,
    pub ram_mb: i64,
    /// The volumes to make.
    pub new_volumes: Vec<VolumePlan>,
    /// Every volume to attach, boot volume first, and whether it goes with the server.
    pub attach: Vec<(String, bool)>,
    /// A kernel to boot over the boot volume, as its image's properties ask (the files are kept
    /// where an image-backed server's root disk would be).
    #[serde(default)]
    pub boot: Option<KernelBoot>,
}

crate::declare_saga! {
    pub CreateServerFromVolumes = "server-create-volumes" (ServerSagas, FromVolumesState) {
        "volumes" => make_volumes, remove_volumes;
        "attach" => attach, nothing;
    }
}

/// The state of `server-delete`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteState {
    pub caller: Caller,
    pub server_id: String,
    /// Whether the caller may delete volumes (`evs:volumes:delete`), decided before the saga:
    /// volumes mapped with `delete_on_termination` go with the server only then.
    pub delete_volumes: bool,
}

crate::declare_saga! {
    pub DeleteServer = "server-delete" (ServerSagas, DeleteState) {
        "detach" => detach, nothing;
        "destroy" => destroy, nothing;
    }
}

impl ServerSagas {
    /// Counts a new server against its project's compute quota, in the transaction `w` that
    /// records it (403 over quota, as upstream).
    async fn reserve_quota(
        &self,
        w: &mut store::WriteTx,
        s: &ServerRec,
        vcpus: i64,
        ram_mb: i64,
    ) -> Result<()> {
        self.quotas
            .reserve(
                w,
                &s.project_id,
                QuotaService::Compute,
                &[("instances", 1), ("cores", vcpus), ("ram", ram_mb)],
            )
            .await
    }

    async fn exists(&self, id: &str) -> Result<bool> {
        Ok(store::server_get(self.store.pool(), id).await?.is_some())
    }

    /// Removes a server's disks and whatever layers nothing reaches any more.
    async fn remove_disks(&self, id: &str) -> Result<()> {
        self.guests.destroy(id).await?;
        self.disks.remove(&root_disk_of(id)).await;
        self.disks.collect(&self.store).await?;
        Ok(())
    }
}

async fn reserve(c: &ServerSagas, st: &mut BuildState, _retry: bool) -> StepResult {
    let s = &st.server;
    if c.exists(&s.id).await? {
        return Ok(());
    }
    // The layers are registered with the server that reaches them, before the files exist:
    // collection never takes them, and takes them once the server is gone.
    let mut w = c.store.write().await?;
    c.reserve_quota(&mut w, s, st.vcpus, st.ram_mb)
        .await
        .map_err(StepError::Refused)?;
    let now = now_micros();
    let mut s = s.clone();
    if !c.guests.fits(&mut w, st.vcpus, st.ram_mb).await? {
        // As upstream: accepted, then ERROR with the scheduler's fault; nothing is made.
        s.vm_state = VmState::Error;
        s.task_state = None;
        s.fault = Some(json!({"code": 500, "message": NO_VALID_HOST, "created": now}).to_string());
    }
    store::layer_add(w.conn(), &st.cache, None, now).await?;
    store::layer_add(w.conn(), &s.root_disk, Some(&st.cache), now).await?;
    store::server_insert(w.conn(), &s).await?;
    c.store.commit(w).await?;
    Ok(())
}

/// A build that failed leaves the server `error` with a fault (if it is still building).
async fn fail_build(c: &ServerSagas, st: &BuildState, why: &Why) -> Result<()> {
    let id = &st.server.id;
    let Some(e) = &why.error else {
        return Ok(());
    };
    tracing::error!(server = %id, "build failed: {e}");
    let fault = json!({"code": 500, "message": format!("Build of instance {id} failed: {e}"),
                       "created": now_micros()});
    let mut w = c.store.write().await?;
    store::server_built(
        w.conn(),
        id,
        &st.server.root_disk,
        Some(&fault.to_string()),
        now_micros(),
    )
    .await?;
    Ok(c.store.commit(w).await?)
}

async fn spawn(c: &ServerSagas, st: &mut BuildState, _retry: bool) -> StepResult {
    let Some(s) = store::server_get(c.store.pool(), &st.server.id).await? else {
        return Err(StepError::Quiet(format!(
            "server {} was deleted while it was built",
            st.server.id
        )));
    };
    if s.vm_state != VmState::Building {
        // No node could take it: nothing to make.
        return Ok(());
    }
    let data = c.images.data_file(&st.image_id).await?;
    c.disks
        .cache_image(&st.cache, data.path(), &st.sha512)
        .await?;
    c.disks
        .overlay(&st.server.root_disk, &st.cache, st.format, st.size)
        .await?;
    if let Some(boot) = &st.boot {
        kernel_boot::place(&c.images, &c.disks, &st.server.root_disk, boot).await?;
    }
    Ok(())
}

/// The disks of a server deleted while it was built are not wanted.
async fn remove_if_deleted(c: &ServerSagas, st: &BuildState, _why: &Why) -> Result<()> {
    if c.exists(&st.server.id).await? {
        return Ok(());
    }
    c.remove_disks(&st.server.id).await
}

async fn finish_build(c: &ServerSagas, st: &mut BuildState, _retry: bool) -> StepResult {
    let s = &st.server;
    let mut w = c.store.write().await?;
    let built = store::server_built(w.conn(), &s.id, &s.root_disk, None, now_micros()).await?;
    c.store.commit(w).await?;
    if !built && !c.exists(&s.id).await? {
        // Deleted while building: its disks are not wanted.
        c.remove_disks(&s.id).await?;
    }
    c.guests.boot(&s.id).await?;
    Ok(())
}

async fn make_volumes(c: &ServerSagas, st: &mut FromVolumesState, _retry: bool) -> StepResult {
    if c.exists(&st.server.id).await? {
        return Ok(());
    }
    for p in &st.new_volumes {
        c.volumes.record(p).await?;
        let made = c.volumes.make(p).await;
        c.volumes.settle(&p.volume.id, made.is_ok()).await?;
        made?;
    }
    if let Some(boot) = &st.boot {
        kernel_boot::place(&c.images, &c.disks, &root_disk_of(&st.server.id), boot).await?;
    }
    Ok(())
}

/// Removes the volumes made for the server, unless the server was made with them.
async fn remove_volumes(c: &ServerSagas, st: &FromVolumesState, _why: &Why) -> Result<()> {
    if c.exists(&st.server.id).await? {
        return Ok(());
    }
    let ids: Vec<String> = st.new_volumes.iter().map(|p| p.volume.id.clone()).collect();
    c.disks.remove(&root_disk_of(&st.server.id)).await;
    c.volumes.remove(&ids).await
}

async fn attach(c: &ServerSagas, st: &mut FromVolumesState, _retry: bool) -> StepResult {
    let s = &st.server;
    if c.exists(&s.id).await? {
        c.guests.boot(&s.id).await?;
        return Ok(());
    }
    let mut w = c.store.write().await?;
    c.reserve_quota(&mut w, s, st.vcpus, st.ram_mb).await?;
    store::server_insert(w.conn(), s).await?;
    let now = now_micros();
    for (n, (id, delete)) in st.attach.iter().enumerate() {
        let device = format!("/dev/vd{}", char::from(b'a' + (n % 26) as u8));
        if !store::volume_attach(w.conn(), id, &s.id, &device, *delete, now).await? {
            // Dropping the transaction undoes the server's record.
            return Err(StepError::Failed(ServiceError::BadRequest(format!(
                "Invalid volume: volume {id} is no longer available."
            ))));
        }
    }
    // The volumes exist already: the server is built.
    store::server_built(w.conn(), &s.id, "", None, now).await?;
    c.store.commit(w).await?;
    c.guests.boot(&s.id).await?;
    Ok(())
}

async fn detach(c: &ServerSagas, st: &mut DeleteState, _retry: bool) -> StepResult {
    if !c.exists(&st.server_id).await? {
        return Ok(());
    }
    let attached = store::volumes_of_server(c.store.pool(), &st.server_id).await?;
    let mut w = c.store.write().await?;
    store::server_delete(w.conn(), &st.server_id).await?;
    for mut v in attached {
        if v.delete_on_termination
            && st.delete_volumes
            && store::volume_delete_unless_snapshotted(w.conn(), &v.id).await?
        {
            continue;
        }
        v.server_id = None;
        v.device = None;
        v.status = VolumeStatus::Available;
        v.delete_on_termination = false;
        v.updated_at = now_micros();
        store::volume_put(w.conn(), &v).await?;
    }
    c.store.commit(w).await?;
    Ok(())
}

async fn destroy(c: &ServerSagas, st: &mut DeleteState, _retry: bool) -> StepResult {
    Ok(c.remove_disks(&st.server_id).await?)
}
