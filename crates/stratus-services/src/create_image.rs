//! createImage and createBackup of a server, as sagas of the engine in [`crate::saga`].
//!
//! The request is accepted once the first two steps have run (the server holds its task and the
//! image is registered `queued`); the rest runs in the background, and after a crash on whichever
//! node takes the saga over. Every name a step will use (image id, temporary file, snapshot ids
//! and layers) is chosen before the saga starts and kept in its [`ImageSagaState`], so each step
//! can be run again or undone from the state it started from.
//!
//! | kind                   | steps                                               |
//! |------------------------|-----------------------------------------------------|
//! | `create-image`         | reserve, register, flatten, upload, finish          |
//! | `create-image-volumes` | reserve, register, snapshot, activate, finish       |
//! | `create-backup`        | reserve, register, flatten, upload, rotate, finish  |

use crate::authz::Authorized;
use crate::compute::{cannot, Compute};
use crate::disks::Disks;
use crate::images::{ImageCreate, Images};
use crate::quotas::{QuotaService, Usage};
use crate::saga::{nothing, Caller, Saga, StepError, StepResult, Why};
use crate::volumes::{SnapshotPlan, Volumes};
use crate::{Result, ServiceError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use stratus_store::{
    self as store, now_micros, ImageRec, ServerRec, Store, TaskState, Transition, VmState,
};

/// The vm_states a server can be snapshotted (or backed up) in.
pub const SNAPSHOT_FROM: &[VmState] = &[
    VmState::Active,
    VmState::Stopped,
    VmState::Paused,
    VmState::Suspended,
];

/// Steps run before the 202: the task is held and the image exists.
const ACCEPTED_AFTER: usize = 2;

/// Properties a snapshot does not inherit from its base image (upstream's list).
const NOT_INHERITED: &[&str] = &[
    "cache_in_nova",
    "bittorrent",
    "img_signature_hash_method",
    "img_signature",
    "img_signature_key_type",
    "img_signature_certificate_uuid",
    "instance_uuid",
    "user_id",
    "image_type",
    "backup_type",
    "base_image_ref",
    "owner_project_name",
    "owner_user_name",
];

/// The image a saga registers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageSpec {
    pub name: String,
    pub disk_format: String,
    pub min_disk: i64,
    pub min_ram: i64,
    pub properties: Map<String, Value>,
    pub tags: Vec<String>,
    /// The enterprise project the image is placed in (`None`: the default one).
    pub enterprise_project_id: Option<String>,
}

/// What an image of a server is asked to be beyond the server (createImage's `name` and
/// `metadata`; IMS adds tags, a minimum RAM and an enterprise project).
#[derive(Debug, Clone, Default)]
pub struct ImageRequest {
    pub name: String,
    pub metadata: Map<String, Value>,
    pub tags: Vec<String>,
    /// Overrides the minimum RAM taken from the base image.
    pub min_ram: Option<i64>,
    pub enterprise_project_id: Option<String>,
}

/// An accepted image of a server: the image, registered `queued`, and the job (saga) making it.
#[derive(Debug, Clone)]
pub struct ImageJob {
    pub image: ImageRec,
    pub job_id: String,
}

/// What a createBackup keeps: the newest `rotation` backups of its type.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rotation {
    pub backup_type: String,
    pub rotation: i64,
}

/// The state of the image sagas: their parameters and every name their steps use.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageSagaState {
    pub caller: Caller,
    pub server_id: String,
    /// The project the image belongs to (the server's).
    pub project_id: String,
    pub image_id: String,
    pub image: ImageSpec,
    /// Image-backed: the flattened disk, relative to the disks directory.
    pub tmp: Option<String>,
    /// Volume-backed: one snapshot per attached volume.
    pub snapshots: Vec<SnapshotPlan>,
    /// createBackup: which backups to keep.
    pub backup: Option<Rotation>,
}

impl ImageSagaState {
    /// The task the server holds while its data is copied.
    fn copy_task(&self) -> TaskState {
        if self.backup.is_some() {
            TaskState::ImageBackup
        } else {
            TaskState::ImageSnapshot
        }
    }

    /// The task the server takes when the saga is accepted.
    fn first_task(&self) -> TaskState {
        if self.backup.is_some() {
            TaskState::ImageBackup
        } else {
            TaskState::ImageSnapshotPending
        }
    }

    fn verb(&self) -> &'static str {
        if self.backup.is_some() {
            "createBackup"
        } else {
            "createImage"
        }
    }
}

/// The services the image sagas' steps use.
pub struct ImageSagas {
    pub store: Arc<Store>,
    pub images: Arc<Images>,
    pub volumes: Arc<Volumes>,
    pub disks: Arc<Disks>,
    pub guests: Arc<crate::guests::Guests>,
}

crate::declare_saga! {
    /// createImage of a server booted from an image: its disk chain flattened and uploaded.
    pub ImageBacked = "create-image" (ImageSagas, ImageSagaState) {
        "reserve" => reserve, unreserve;
        "register" => register, discard;
        "flatten" => flatten, remove_tmp;
        "upload" => upload, discard;
        "finish" => finish, nothing;
    }
}

crate::declare_saga! {
    /// createImage of a server booted from volumes: a snapshot of each volume, an image that maps
    /// them.
    pub VolumeBacked = "create-image-volumes" (ImageSagas, ImageSagaState) {
        "reserve" => reserve, unreserve;
        "register" => register, discard;
        "snapshot" => snapshot, revert_snapshots;
        "activate" => activate, discard;
        "finish" => finish, nothing;
    }
}

crate::declare_saga! {
    /// createBackup: createImage of an image-backed server, then the older backups of the same type
    /// beyond the rotation deleted.
    pub Backup = "create-backup" (ImageSagas, ImageSagaState) {
        "reserve" => reserve, unreserve;
        "register" => register, discard;
        "flatten" => flatten, remove_tmp;
        "upload" => upload, discard;
        "rotate" => rotate, nothing;
        "finish" => finish, nothing;
    }
}

impl Compute {
    /// Accepts `createImage` of a server: 409 if it is busy or in a state that cannot be
    /// snapshotted, 403 if a volume-backed server's snapshots would exceed the quota; otherwise
    /// starts the saga and returns the new image once it is registered.
    pub async fn create_image(
        &self,
        caller: &Authorized,
        id: &str,
        name: &str,
        metadata: Map<String, Value>,
    ) -> Result<ImageJob> {
        let req = ImageRequest {
            name: name.to_string(),
            metadata,
            ..ImageRequest::default()
        };
        self.create_image_with(caller, id, req).await
    }

    /// [`Compute::create_image`] with IMS's options. The enterprise project, when given, must be
    /// one of the caller's domain and enabled.
    pub async fn create_image_with(
        &self,
        caller: &Authorized,
        id: &str,
        req: ImageRequest,
    ) -> Result<ImageJob> {
        if let Some(ep) = &req.enterprise_project_id {
            crate::iam::check_enterprise_project(&self.store, caller, ep).await?;
        }
        let ImageRequest {
            name,
            metadata,
            tags,
            min_ram,
            enterprise_project_id,
        } = req;
        let name = name.as_str();
        let s = self.snapshot_source(caller, id, "createImage").await?;
        let mut st = ImageSagaState {
            caller: Caller::of(caller),
            server_id: s.id.clone(),
            project_id: s.project_id.clone(),
            image_id: crate::new_uuid(),
            ..ImageSagaState::default()
        };
        if s.image_id.is_empty() {
            let attached = store::volumes_of_server(self.store.pool(), &s.id).await?;
            // Upstream checks the snapshot quota before anything else (each snapshot is counted
            // again, atomically, when it is taken).
            let q = self
                .volumes
                .quotas()
                .usage(&s.project_id, QuotaService::Volume, false)
                .await?;
            let snaps = q.get("snapshots").copied().unwrap_or(Usage {
                limit: -1,
                in_use: 0,
            });
            if snaps.limit >= 0 && snaps.in_use + attached.len() as i64 > snaps.limit {
                return Err(ServiceError::Forbidden(format!(
                    "Quota exceeded for snapshots: requested {}, but already used {} of {} snapshots",
                    attached.len(),
                    snaps.in_use,
                    snaps.limit
                )));
            }
            st.snapshots = attached
                .iter()
                .map(|v| {
                    SnapshotPlan::new(
                        &v.id,
                        Some(format!("snapshot for {name}")),
                        None,
                        Map::new(),
                    )
                })
                .collect();
            let mapping: Vec<Value> = attached
                .iter()
                .zip(&st.snapshots)
                .enumerate()
                .map(|(n, (v, p))| {
                    json!({
                        "source_type": "snapshot", "destination_type": "volume",
                        "snapshot_id": p.id, "volume_id": null, "image_id": null,
                        "boot_index": if n == 0 { json!(0) } else { Value::Null },
                        "volume_size": v.size_gb, "device_name": v.device,
                        "delete_on_termination": v.delete_on_termination,
                        "disk_bus": null, "device_type": null, "guest_format": null,
                        "no_device": null, "tag": null, "volume_type": null,
                    })
                })
                .collect();
            let mut props = metadata;
            props.insert(
                "block_device_mapping".into(),
                Value::String(Value::Array(mapping).to_string()),
            );
            props.insert("bdm_v2".into(), Value::String("True".into()));
            let root = attached.first().and_then(|v| v.device.clone());
            props.insert(
                "root_device_name".into(),
                Value::String(root.unwrap_or_default()),
            );
            st.image = self.image_spec(caller, &s, name, props, "raw", None).await;
        } else {
            st.tmp = Some(format!("tmp/snapshot-{}.qcow2", st.image_id));
            st.image = self
                .image_spec(caller, &s, name, metadata, "qcow2", None)
                .await;
        }
        st.image.tags = tags;
        st.image.enterprise_project_id = enterprise_project_id;
        if let Some(r) = min_ram {
            st.image.min_ram = r;
        }
        if s.image_id.is_empty() {
            self.begin_image_saga::<VolumeBacked>(st).await
        } else {
            self.begin_image_saga::<ImageBacked>(st).await
        }
    }

    /// Accepts `createBackup` of an image-backed server (400 for a volume-backed one, as
    /// upstream): an image of type `backup`, after which only the newest `rotation` backups of
    /// `backup_type` of the server are kept.
    pub async fn create_backup(
        &self,
        caller: &Authorized,
        id: &str,
        name: &str,
        rotation: Rotation,
        metadata: Map<String, Value>,
    ) -> Result<ImageJob> {
        let s = self.snapshot_source(caller, id, "createBackup").await?;
        if s.image_id.is_empty() {
            return Err(ServiceError::BadRequest(
                "Backup is not supported for volume-backed instances.".into(),
            ));
        }
        let image_id = crate::new_uuid();
        let image = self
            .image_spec(caller, &s, name, metadata, "qcow2", Some(&rotation))
            .await;
        let st = ImageSagaState {
            caller: Caller::of(caller),
            server_id: s.id.clone(),
            project_id: s.project_id.clone(),
            tmp: Some(format!("tmp/snapshot-{image_id}.qcow2")),
            image_id,
            image,
            backup: Some(rotation),
            ..ImageSagaState::default()
        };
        self.begin_image_saga::<Backup>(st).await
    }

    /// The server to make an image of: 409 if it is busy or in a state that cannot be copied.
    async fn snapshot_source(
        &self,
        caller: &Authorized,
        id: &str,
        verb: &str,
    ) -> Result<ServerRec> {
        let s = self.get(caller, id).await?;
        if s.task_state.is_some() || !SNAPSHOT_FROM.contains(&s.vm_state) {
            return Err(cannot(verb, &s));
        }
        Ok(s)
    }

    async fn begin_image_saga<S: Saga<State = ImageSagaState>>(
        &self,
        st: ImageSagaState,
    ) -> Result<ImageJob> {
        // What registering the image would refuse is refused now, before the server takes a
        // task (no fault, no saga), as upstream's image service refuses it first.
        crate::images::check_properties(&st.image.properties)?;
        let job_id = crate::new_uuid();
        let st = self
            .sagas
            .begin::<S>(job_id.clone(), &st, ACCEPTED_AFTER)
            .await?;
        let image = self
            .images
            .find(&st.image_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("image", &st.image_id))?;
        Ok(ImageJob { image, job_id })
    }

    /// What the image will be: upstream's properties, the base image's inheritable ones, the
    /// user's metadata last (it wins).
    async fn image_spec(
        &self,
        caller: &Authorized,
        s: &ServerRec,
        name: &str,
        metadata: Map<String, Value>,
        disk_format: &str,
        backup: Option<&Rotation>,
    ) -> ImageSpec {
        let base = self.images.get(caller, &s.image_id).await.ok();
        let flavor = &s.flavor;
        let mut props = Map::new();
        if let Some(b) = &base {
            for (k, v) in &b.properties {
                if !NOT_INHERITED.contains(&k.as_str()) {
                    props.insert(k.clone(), v.clone());
                }
            }
        }
        let project_name = caller.project().map(|p| p.name.clone()).unwrap_or_default();
        let image_type = if backup.is_some() {
            "backup"
        } else {
            "snapshot"
        };
        for (k, v) in [
            ("instance_uuid", s.id.clone()),
            ("user_id", caller.user.id.clone()),
            ("image_type", image_type.into()),
            ("base_image_ref", s.image_id.clone()),
            ("owner_project_name", project_name),
            ("owner_user_name", caller.user.name.clone()),
        ] {
            props.insert(k.into(), Value::String(v));
        }
        if let Some(b) = backup {
            props.insert("backup_type".into(), Value::String(b.backup_type.clone()));
        }
        props.extend(metadata);
        let base_min_disk = base.as_ref().map_or(0, |b| b.min_disk);
        ImageSpec {
            name: name.to_string(),
            disk_format: disk_format.to_string(),
            min_disk: base_min_disk.max(flavor["disk"].as_i64().unwrap_or(0)),
            min_ram: base.as_ref().map_or(0, |b| b.min_ram),
            properties: props,
            tags: Vec::new(),
            enterprise_project_id: None,
        }
    }
}

fn failed(msg: impl Into<String>) -> StepError {
    StepError::Failed(ServiceError::Internal(msg.into()))
}

impl ImageSagas {
    async fn server(&self, st: &ImageSagaState) -> std::result::Result<ServerRec, StepError> {
        store::server_get(self.store.pool(), &st.server_id)
            .await?
            .ok_or_else(|| failed(format!("server {} was deleted", st.server_id)))
    }

    /// Moves the server's task from one of `from` to `to`; already at `to` is fine (a retry).
    async fn move_task(
        &self,
        st: &ImageSagaState,
        from: &[TaskState],
        to: Option<TaskState>,
    ) -> std::result::Result<(), StepError> {
        let s = self.server(st).await?;
        let now = s.task_state;
        if now == to {
            return Ok(());
        }
        if !now.is_some_and(|t| from.contains(&t)) {
            return Err(failed(format!(
                "server {} is in task_state {now:?}, not {}'s",
                s.id,
                st.verb()
            )));
        }
        let mut w = self.store.write().await?;
        let t = Transition::task(&s, now, to);
        let moved = store::server_transition(w.conn(), &s.id, &t, now_micros()).await?;
        self.store.commit(w).await?;
        if moved {
            Ok(())
        } else {
            Err(failed(format!("server {} changed meanwhile", s.id)))
        }
    }

    /// The image being made, or a quiet stop if its user deleted it.
    async fn image(&self, st: &ImageSagaState) -> std::result::Result<ImageRec, StepError> {
        self.images.find(&st.image_id).await?.ok_or_else(|| {
            StepError::Quiet(format!(
                "image {} was deleted while it was being made",
                st.image_id
            ))
        })
    }

    /// Stores the image's data (the flattened disk, or nothing); a deleted image stops quietly,
    /// a deleted server fails the saga (so the unfinished image goes).
    async fn put_data(&self, st: &ImageSagaState, file: Option<&str>) -> StepResult {
        let image = self.image(st).await?;
        let path = file.map(|f| self.disks.path(f));
        if let Err(e) = self.images.put_data(&image.id, path.as_deref()).await {
            self.image(st).await?;
            return Err(StepError::Failed(e));
        }
        self.server(st).await?;
        Ok(())
    }
}

fn tmp_of(st: &ImageSagaState) -> std::result::Result<&str, StepError> {
    st.tmp
        .as_deref()
        .ok_or_else(|| failed("the saga has no temporary file"))
}

async fn reserve(c: &ImageSagas, st: &mut ImageSagaState, retry: bool) -> StepResult {
    let id = st.server_id.as_str();
    let task = st.first_task();
    let s = store::server_get(c.store.pool(), id)
        .await?
        .ok_or_else(|| StepError::Refused(ServiceError::not_found("instance", id)))?;
    if retry && s.task_state == Some(task) {
        return Ok(());
    }
    if s.task_state.is_some() || !SNAPSHOT_FROM.contains(&s.vm_state) {
        return Err(StepError::Refused(cannot(st.verb(), &s)));
    }
    let mut w = c.store.write().await?;
    let t = Transition {
        from: SNAPSHOT_FROM,
        ..Transition::task(&s, None, Some(task))
    };
    let moved = store::server_transition(w.conn(), id, &t, now_micros()).await?;
    c.store.commit(w).await?;
    if moved {
        return Ok(());
    }
    let now = store::server_get(c.store.pool(), id)
        .await?
        .ok_or_else(|| StepError::Refused(ServiceError::not_found("instance", id)))?;
    Err(StepError::Refused(cannot(st.verb(), &now)))
}

/// Ends the server's task (if it is still one of the image sagas'), with a fault unless the stop
/// was quiet.
async fn unreserve(c: &ImageSagas, st: &ImageSagaState, why: &Why) -> Result<()> {
    let Some(s) = store::server_get(c.store.pool(), &st.server_id).await? else {
        return Ok(());
    };
    if !s.task_state.is_some_and(TaskState::is_image) {
        return Ok(());
    }
    let fault = why
        .error
        .as_ref()
        .map(|e| format!("{} failed: {e}", st.verb()));
    let mut w = c.store.write().await?;
    store::server_clear_task(w.conn(), &s.id, fault.as_deref(), now_micros()).await?;
    Ok(c.store.commit(w).await?)
}

async fn register(c: &ImageSagas, st: &mut ImageSagaState, _retry: bool) -> StepResult {
    if c.images.find(&st.image_id).await?.is_some() {
        return Ok(());
    }
    let spec = &st.image;
    // Checked again here, where the image is placed: the enterprise project may have been
    // disabled or deleted since the request was accepted.
    if let Some(ep) = spec
        .enterprise_project_id
        .as_deref()
        .filter(|ep| *ep != crate::iam::DEFAULT_ENTERPRISE_PROJECT)
    {
        let usable = store::ep_get(c.store.pool(), ep)
            .await?
            .is_some_and(|e| e.enabled);
        if !usable {
            return Err(StepError::Refused(ServiceError::BadRequest(format!(
                "Enterprise project {ep:?} does not exist or is disabled."
            ))));
        }
    }
    let req = ImageCreate {
        id: Some(st.image_id.clone()),
        name: Some(spec.name.clone()),
        visibility: Some("private".into()),
        disk_format: Some(spec.disk_format.clone()),
        container_format: Some("bare".into()),
        min_disk: spec.min_disk,
        min_ram: spec.min_ram,
        properties: spec.properties.clone(),
        tags: spec.tags.clone(),
        enterprise_project_id: spec.enterprise_project_id.clone(),
        ..Default::default()
    };
    c.images.create_in(st.project_id.clone(), req).await?;
    Ok(())
}

async fn discard(c: &ImageSagas, st: &ImageSagaState, _why: &Why) -> Result<()> {
    c.images.discard(&st.image_id).await
}

async fn flatten(c: &ImageSagas, st: &mut ImageSagaState, _retry: bool) -> StepResult {
    // A retry may find the task one step on; the flattening is done again.
    let copying = st.copy_task();
    c.move_task(
        st,
        &[st.first_task(), TaskState::ImagePendingUpload],
        Some(copying),
    )
    .await?;
    c.image(st).await?;
    let s = c.server(st).await?;
    let tmp = c.disks.path(tmp_of(st)?);
    if let Some(dir) = tmp.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| failed(format!("work dir: {e}")))?;
    }
    let root = c.disks.path(&s.root_disk);
    c.guests
        .copy_disk(&s.id, &root, &tmp)
        .await
        .map_err(|e| failed(format!("flattening the disk: {e}")))?;
    c.move_task(st, &[copying], Some(TaskState::ImagePendingUpload))
        .await
}

async fn remove_tmp(c: &ImageSagas, st: &ImageSagaState, _why: &Why) -> Result<()> {
    // A copy the guest's QEMU was making into the file ends first.
    c.guests.end_copies(&st.server_id).await?;
    match &st.tmp {
        Some(tmp) => remove_file(&c.disks, tmp)
            .await
            .map_err(|e| ServiceError::Internal(format!("{e:?}"))),
        None => Ok(()),
    }
}

async fn upload(c: &ImageSagas, st: &mut ImageSagaState, _retry: bool) -> StepResult {
    c.move_task(
        st,
        &[TaskState::ImagePendingUpload],
        Some(TaskState::ImageUploading),
    )
    .await?;
    let tmp = tmp_of(st)?.to_string();
    c.put_data(st, Some(&tmp)).await
}

async fn snapshot(c: &ImageSagas, st: &mut ImageSagaState, _retry: bool) -> StepResult {
    c.move_task(
        st,
        &[TaskState::ImageSnapshotPending],
        Some(TaskState::ImageSnapshot),
    )
    .await?;
    let s = c.server(st).await?;
    c.image(st).await?;
    // One point for all the volumes: a running guest is paused while its volumes' layers switch.
    let held = c.guests.hold(&s.id).await;
    let running = c.guests.state(&s.id).await? == Some(stratus_driver::GuestState::Running);
    if running {
        c.guests.set_paused(&held, &s.id, true).await?;
    }
    let mut taken = Ok(());
    for plan in &st.snapshots {
        if let Err(e) = c.volumes.snapshot_apply(plan).await {
            taken = Err(e);
            break;
        }
    }
    if running {
        c.guests.set_paused(&held, &s.id, false).await?;
    }
    taken?;
    Ok(())
}

async fn revert_snapshots(c: &ImageSagas, st: &ImageSagaState, _why: &Why) -> Result<()> {
    for plan in st.snapshots.iter().rev() {
        c.volumes.snapshot_revert(plan).await?;
    }
    Ok(())
}

async fn activate(c: &ImageSagas, st: &mut ImageSagaState, _retry: bool) -> StepResult {
    c.put_data(st, None).await
}

/// Most backups of one server and type a rotation looks at.
const ROTATION_SCAN: i64 = 10_000;

/// Deletes the server's backups of the same type beyond the newest `rotation` (the new one
/// included, so a rotation of 0 keeps none). A backup that cannot be deleted is logged and left,
/// as upstream does: the new backup is not undone for it.
async fn rotate(c: &ImageSagas, st: &mut ImageSagaState, _retry: bool) -> StepResult {
    let Some(r) = &st.backup else {
        return Ok(());
    };
    let mut f = store::ImageFilter::new(&st.project_id, ROTATION_SCAN);
    f.owner = Some(st.project_id.clone());
    f.properties = vec![
        ("image_type".into(), "backup".into()),
        ("backup_type".into(), r.backup_type.clone()),
        ("instance_uuid".into(), st.server_id.clone()),
    ];
    f.sort = vec![(store::SortKey::CreatedAt, false)];
    let backups = store::image_list(c.store.pool(), &f).await?;
    let keep = usize::try_from(r.rotation.max(0)).unwrap_or(usize::MAX);
    for old in backups.iter().skip(keep) {
        if old.protected {
            tracing::warn!(image = %old.id, "backup rotation leaves a protected backup");
            continue;
        }
        match c.images.discard(&old.id).await {
            Ok(()) => tracing::info!(image = %old.id, server = %st.server_id, "rotated out backup"),
            Err(e) => tracing::warn!(image = %old.id, "backup rotation could not delete it: {e}"),
        }
    }
    Ok(())
}

async fn finish(c: &ImageSagas, st: &mut ImageSagaState, _retry: bool) -> StepResult {
    if let Some(tmp) = &st.tmp {
        remove_file(&c.disks, tmp).await?;
    }
    if store::server_get(c.store.pool(), &st.server_id)
        .await?
        .is_none()
    {
        // Deleted after its image was finished: nothing to reset.
        return Ok(());
    }
    let from = if st.tmp.is_some() {
        TaskState::ImageUploading
    } else {
        TaskState::ImageSnapshot
    };
    c.move_task(st, &[from], None).await
}

async fn remove_file(disks: &Disks, rel: &str) -> StepResult {
    match tokio::fs::remove_file(disks.path(rel)).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(failed(format!("removing {rel}: {e}"))),
    }
}
