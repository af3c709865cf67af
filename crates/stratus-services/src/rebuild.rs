//! Rebuild of a server: the same server (id, flavor, volumes) with a new root disk made from an
//! image, as a saga.
//!
//! | kind      | steps                                  |
//! |-----------|----------------------------------------|
//! | `rebuild` | accept, detach, spawn, finish          |
//!
//! `accept` runs before the 202: the server takes the task `rebuilding` and the request's
//! attributes. `detach` (`rebuild_block_device_mapping`) has nothing to detach from a local disk;
//! `spawn` (`rebuild_spawning`) makes the new root disk, a layer pinned by the saga until
//! `finish` makes it the server's and collection takes the old one. A failure leaves the server
//! `error` with a fault, as upstream. A volume-backed server keeps its volumes: it can only be
//! rebuilt with the image it was made from, and its disks are not touched.

use crate::authz::Authorized;
use crate::compute::{cannot, check_image_fits, check_lock, disk_config_for, Compute, FlavorSize};
use crate::disks::Disks;
use crate::images::Images;
use crate::saga::{nothing, Caller, StepError, StepResult, Why};
use crate::{IfMissing, Result, ServiceError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use stratus_blob::format::DiskFormat;
use stratus_store::{
    self as store, now_micros, ImageStatus, PowerState, RebuildAccept, ServerRec, Store, TaskState,
    Transition, VmState,
};

/// The vm_states a server can be rebuilt from (with no task, and launched once).
pub const REBUILD_FROM: &[VmState] = &[VmState::Active, VmState::Stopped, VmState::Error];

/// What a rebuild request may change besides the image.
#[derive(Debug, Clone, Default)]
pub struct RebuildRequest {
    pub image_id: String,
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub metadata: Option<Map<String, Value>>,
    pub admin_pass: Option<String>,
    pub access_ipv4: Option<String>,
    pub access_ipv6: Option<String>,
    pub auto_disk_config: Option<bool>,
}

/// The rebuild saga's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RebuildState {
    pub caller: Caller,
    pub saga_id: String,
    pub server_id: String,
    /// The vm_state the server was rebuilt from: a stopped server is stopped again after.
    pub from_vm_state: VmState,
    pub image_id: String,
    /// Image-backed servers: the image's cache layer, its format, and the new root disk.
    pub cache: Option<String>,
    /// The image data's SHA-512, which the cache layer is checked against.
    pub sha512: String,
    pub format: String,
    pub root: Option<String>,
    pub size: u64,
    pub name: String,
    pub description: Option<String>,
    pub metadata: Map<String, Value>,
    pub access_ipv4: String,
    pub access_ipv6: String,
    pub auto_disk_config: bool,
    /// A kernel to boot over the new root disk, as the image's properties ask.
    pub boot: Option<crate::kernel_boot::KernelBoot>,
}

/// What the rebuild's steps use.
pub struct RebuildSagas {
    pub store: Arc<Store>,
    pub images: Arc<Images>,
    pub disks: Arc<Disks>,
    pub guests: Arc<crate::guests::Guests>,
}

crate::declare_saga! {
    pub Rebuild = "rebuild" (RebuildSagas, RebuildState) {
        "accept" => accept, fail_server;
        "detach" => detach, nothing;
        "spawn" => spawn, drop_new_root;
        "finish" => finish, nothing;
    }
}

/// Steps run before the 202: the server holds the task.
const ACCEPTED_AFTER: usize = 1;

impl Compute {
    /// Accepts `rebuild`: 409 if the server is locked, busy or in a state it cannot be rebuilt
    /// from; 400 for an image the caller cannot see, an image that is not active or does not fit
    /// the flavor, or a different image for a volume-backed server. Returns the server as the
    /// rebuild left it (task `rebuilding`) and its admin password.
    pub async fn rebuild(
        &self,
        caller: &Authorized,
        id: &str,
        req: RebuildRequest,
    ) -> Result<(ServerRec, String)> {
        let s = self.get(caller, id).await?;
        check_lock(caller, &s)?;
        if s.task_state.is_some() || !REBUILD_FROM.contains(&s.vm_state) || s.launched_at.is_none()
        {
            return Err(cannot("rebuild", &s));
        }
        crate::limits::check_metadata(req.metadata.as_ref().unwrap_or(&Map::new()))?;
        if let Some(d) = &req.description {
            crate::limits::check_description("description", d.as_deref())?;
        }
        if let Some(p) = &req.admin_pass {
            crate::limits::check_chars("adminPass", p, crate::limits::NAME_CHARS)?;
        }
        let image = self
            .images
            .get_for_use(caller, &req.image_id)
            .await
            .if_missing(|| ServiceError::BadRequest("Cannot find image for rebuild".into()))?;
        if image.status != ImageStatus::Active {
            return Err(ServiceError::BadRequest(format!(
                "Image {} is not active.",
                image.id
            )));
        }
        let flavor = FlavorSize::of_server(&s);
        let saga_id = crate::new_uuid();
        let mut st = RebuildState {
            caller: Caller::of(caller),
            saga_id: saga_id.clone(),
            server_id: s.id.clone(),
            from_vm_state: s.vm_state,
            image_id: image.id.clone(),
            name: req.name.clone().unwrap_or_else(|| s.name.clone()),
            description: req.description.clone().unwrap_or(s.description.clone()),
            metadata: match &req.metadata {
                Some(m) => m.clone(),
                None => s.metadata.clone(),
            },
            access_ipv4: req.access_ipv4.clone().unwrap_or(s.access_ipv4.clone()),
            access_ipv6: req.access_ipv6.clone().unwrap_or(s.access_ipv6.clone()),
            auto_disk_config: disk_config_for(&image, req.auto_disk_config)?,
            ..RebuildState::default()
        };
        if s.image_id.is_empty() {
            // Volume-backed: the boot volume says which image it was made from.
            let boot = store::volumes_of_server(self.store.pool(), &s.id).await?;
            let original = boot.first().and_then(|v| v.image_id.clone());
            if original.as_deref() != Some(image.id.as_str()) {
                return Err(ServiceError::BadRequest(format!(
                    "Image {} is unacceptable: Unable to rebuild with a different image for a volume-backed server.",
                    image.id
                )));
            }
            st.image_id = String::new();
        } else {
            let (format, size) = check_image_fits(&image, &flavor)?;
            st.format = format.as_str().to_string();
            st.size = size;
            st.cache = Some(crate::disks::cache_layer_of(&image)?);
            st.sha512 = image.os_hash_value.clone().unwrap_or_default();
            st.root = Some(format!("servers/{}/disk-{}", s.id, &crate::new_id()[..12]));
            st.boot = crate::kernel_boot::of_image(&self.images, caller, &image).await?;
        }
        let pass = req
            .admin_pass
            .clone()
            .unwrap_or_else(crate::compute::generate_password);
        self.sagas
            .begin::<Rebuild>(saga_id, &st, ACCEPTED_AFTER)
            .await?;
        Ok((self.get(caller, id).await?, pass))
    }
}

fn failed(msg: impl Into<String>) -> StepError {
    StepError::Failed(ServiceError::Internal(msg.into()))
}

impl RebuildSagas {
    async fn server(&self, st: &RebuildState) -> std::result::Result<ServerRec, StepError> {
        store::server_get(self.store.pool(), &st.server_id)
            .await?
            .ok_or_else(|| failed(format!("server {} was deleted", st.server_id)))
    }

    /// Moves the rebuild's task on; already there is fine (a retry).
    async fn move_task(&self, st: &RebuildState, from: TaskState, to: TaskState) -> StepResult {
        let s = self.server(st).await?;
        if s.task_state == Some(to) {
            return Ok(());
        }
        let mut w = self.store.write().await?;
        let t = Transition::task(&s, Some(from), Some(to));
        let moved = store::server_transition(w.conn(), &s.id, &t, now_micros()).await?;
        self.store.commit(w).await?;
        if moved {
            Ok(())
        } else {
            Err(failed(format!(
                "server {} is in task_state {:?}, not {from}",
                s.id, s.task_state
            )))
        }
    }
}

async fn accept(c: &RebuildSagas, st: &mut RebuildState, retry: bool) -> StepResult {
    let refused = |s: &ServerRec| StepError::Refused(cannot("rebuild", s));
    let s = store::server_get(c.store.pool(), &st.server_id)
        .await?
        .ok_or_else(|| StepError::Refused(ServiceError::not_found("instance", &st.server_id)))?;
    if retry && s.task_state == Some(TaskState::Rebuilding) {
        return Ok(());
    }
    if s.task_state.is_some() || s.vm_state != st.from_vm_state {
        return Err(refused(&s));
    }
    let a = RebuildAccept {
        image_id: if st.root.is_some() {
            st.image_id.clone()
        } else {
            s.image_id.clone()
        },
        name: st.name.clone(),
        description: st.description.clone(),
        metadata: st.metadata.clone(),
        access_ipv4: st.access_ipv4.clone(),
        access_ipv6: st.access_ipv6.clone(),
        auto_disk_config: st.auto_disk_config,
    };
    let mut w = c.store.write().await?;
    let moved =
        store::server_rebuild_accept(w.conn(), &s.id, st.from_vm_state, &a, now_micros()).await?;
    c.store.commit(w).await?;
    if moved {
        return Ok(());
    }
    match store::server_get(c.store.pool(), &st.server_id).await? {
        Some(now) => Err(refused(&now)),
        None => Err(StepError::Refused(ServiceError::not_found(
            "instance",
            &st.server_id,
        ))),
    }
}

/// A rebuild that failed after it was accepted leaves the server `error` with a fault.
async fn fail_server(c: &RebuildSagas, st: &RebuildState, why: &Why) -> Result<()> {
    let Some(s) = store::server_get(c.store.pool(), &st.server_id).await? else {
        return Ok(());
    };
    if !s.task_state.is_some_and(TaskState::is_rebuild) {
        return Ok(());
    }
    let message = format!(
        "Rebuild of instance {} failed: {}",
        s.id,
        why.error.as_deref().unwrap_or("stopped")
    );
    let mut w = c.store.write().await?;
    store::server_fail_task(w.conn(), &s.id, &message, now_micros()).await?;
    Ok(c.store.commit(w).await?)
}

async fn detach(c: &RebuildSagas, st: &mut RebuildState, _retry: bool) -> StepResult {
    c.move_task(
        st,
        TaskState::Rebuilding,
        TaskState::RebuildBlockDeviceMapping,
    )
    .await?;
    // The guest stops before its disk is replaced (upstream powers it off as well).
    let held = c.guests.hold(&st.server_id).await;
    c.guests.stop(&held, &st.server_id, true).await?;
    Ok(())
}

async fn spawn(c: &RebuildSagas, st: &mut RebuildState, _retry: bool) -> StepResult {
    c.move_task(
        st,
        TaskState::RebuildBlockDeviceMapping,
        TaskState::RebuildSpawning,
    )
    .await?;
    let (Some(cache), Some(root)) = (&st.cache, &st.root) else {
        return Ok(());
    };
    let format = DiskFormat::parse(&st.format)
        .ok_or_else(|| failed(format!("unknown disk format {:?}", st.format)))?;
    let mut w = c.store.write().await?;
    let now = now_micros();
    store::layer_add_pinned(w.conn(), cache, None, &st.saga_id, now).await?;
    store::layer_add_pinned(w.conn(), root, Some(cache), &st.saga_id, now).await?;
    c.store.commit(w).await?;
    let data = c.images.data_file(&st.image_id).await?;
    c.disks.cache_image(cache, data.path(), &st.sha512).await?;
    c.disks.overlay(root, cache, format, st.size).await?;
    if let Some(boot) = &st.boot {
        crate::kernel_boot::place(&c.images, &c.disks, root, boot).await?;
    }
    Ok(())
}

/// Lets collection take the new root disk (unless the server runs it already).
async fn drop_new_root(c: &RebuildSagas, st: &RebuildState, _why: &Why) -> Result<()> {
    let mut w = c.store.write().await?;
    store::layers_unpin(w.conn(), &st.saga_id).await?;
    c.store.commit(w).await?;
    c.disks.collect(&c.store).await?;
    Ok(())
}

async fn finish(c: &RebuildSagas, st: &mut RebuildState, _retry: bool) -> StepResult {
    let Some(s) = store::server_get(c.store.pool(), &st.server_id).await? else {
        // Deleted while rebuilding: its new disk is not wanted.
        drop_new_root(c, st, &Why { error: None }).await?;
        return Ok(());
    };
    if s.task_state.is_none() && s.root_disk == st.root.clone().unwrap_or(s.root_disk.clone()) {
        return Ok(());
    }
    let (vm_state, power_state) = if st.from_vm_state == VmState::Stopped {
        (VmState::Stopped, PowerState::Shutdown)
    } else {
        (VmState::Active, PowerState::Running)
    };
    let root = st.root.clone().unwrap_or_else(|| s.root_disk.clone());
    let held = c.guests.hold(&s.id).await;
    let mut w = c.store.write().await?;
    let done =
        store::server_rebuilt(w.conn(), &s.id, &root, vm_state, power_state, now_micros()).await?;
    store::layers_unpin(w.conn(), &st.saga_id).await?;
    c.store.commit(w).await?;
    if done {
        c.guests.boot_held(&held, &s.id).await?;
    }
    if !done {
        return Err(failed(format!(
            "server {} changed while it was rebuilt",
            s.id
        )));
    }
    c.disks.collect(&c.store).await?;
    Ok(())
}
