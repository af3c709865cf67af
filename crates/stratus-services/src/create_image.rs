//! createImage of a server, as a saga of the engine in [`crate::saga`].
//!
//! The request is accepted once the first two steps have run (the server holds the
//! `image_snapshot_pending` task and the image is registered `queued`); the rest runs in the
//! background, and after a crash on whichever node takes the saga over. Every name a step will use
//! (image id, temporary file, snapshot ids and layers) is chosen before the saga starts, so each
//! step can be run again or undone from what was recorded.
//!
//! | kind                   | steps                                               |
//! |------------------------|-----------------------------------------------------|
//! | `create-image`         | reserve, register, flatten, upload, finish          |
//! | `create-image-volumes` | reserve, register, snapshot, activate, finish       |

use crate::authz::Authorized;
use crate::compute::{cannot, Compute};
use crate::disks::Disks;
use crate::images::{ImageCreate, Images};
use crate::saga::{text, Data, SagaKind, StepError, Why};
use crate::volumes::{SnapshotPlan, Volumes};
use crate::{Result, ServiceError};
use futures::future::BoxFuture;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use stratus_blob::format::DiskFormat;
use stratus_store::{self as store, now_micros, ImageRec, ServerRec, Store};

/// The vm_states a server can be snapshotted in.
pub const SNAPSHOT_FROM: &[&str] = &["active", "stopped", "paused", "suspended"];

pub const IMAGE_BACKED: &str = "create-image";
pub const VOLUME_BACKED: &str = "create-image-volumes";

const IMAGE_BACKED_STEPS: &[&str] = &["reserve", "register", "flatten", "upload", "finish"];
const VOLUME_BACKED_STEPS: &[&str] = &["reserve", "register", "snapshot", "activate", "finish"];

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
    "base_image_ref",
    "owner_project_name",
    "owner_user_name",
];

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
    ) -> Result<ImageRec> {
        let s = self.get(caller, id).await?;
        if s.task_state.is_some() || !SNAPSHOT_FROM.contains(&s.vm_state.as_str()) {
            return Err(cannot("createImage", &s));
        }
        let image_id = crate::new_uuid();
        let mut data = Map::new();
        data.insert("server_id".into(), json!(s.id));
        data.insert("project_id".into(), json!(s.project_id));
        data.insert("image_id".into(), json!(image_id));
        let volume_backed = s.image_id.is_empty();
        let (kind, props, disk_format) = if volume_backed {
            let attached = store::volumes_of_server(self.store.pool(), &s.id).await?;
            // Upstream checks the snapshot quota before anything else.
            let usage = self.volumes.usage(caller).await?;
            let limit = crate::volumes::quota("maxTotalSnapshots");
            if usage.snapshots + attached.len() as i64 > limit {
                return Err(ServiceError::Forbidden(format!(
                    "Quota exceeded for snapshots: requested {}, but already used {} of {limit} snapshots",
                    attached.len(),
                    usage.snapshots
                )));
            }
            let plans: Vec<SnapshotPlan> = attached
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
                .zip(&plans)
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
            data.insert("snapshots".into(), json!(plans));
            (VOLUME_BACKED, props, "raw")
        } else {
            data.insert(
                "tmp".into(),
                json!(format!("tmp/snapshot-{image_id}.qcow2")),
            );
            (IMAGE_BACKED, metadata, "qcow2")
        };
        let image = self
            .snapshot_image(caller, &s, name, props, disk_format)
            .await;
        data.insert("image".into(), image);
        self.sagas
            .begin(kind, crate::new_uuid(), data, ACCEPTED_AFTER)
            .await?;
        self.images
            .find(&image_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("image", image_id))
    }

    /// What the snapshot image will be: upstream's properties, the base image's inheritable
    /// ones, the user's metadata last (it wins).
    async fn snapshot_image(
        &self,
        caller: &Authorized,
        s: &ServerRec,
        name: &str,
        metadata: Map<String, Value>,
        disk_format: &str,
    ) -> Value {
        let base = self.images.get(caller, &s.image_id).await.ok();
        let flavor: Value = serde_json::from_str(&s.flavor).unwrap_or_default();
        let mut props = Map::new();
        if let Some(b) = &base {
            let inherited: Map<String, Value> =
                serde_json::from_str(&b.properties).unwrap_or_default();
            for (k, v) in inherited {
                if !NOT_INHERITED.contains(&k.as_str()) {
                    props.insert(k, v);
                }
            }
        }
        let project_name = caller.project().map(|p| p.name.clone()).unwrap_or_default();
        for (k, v) in [
            ("instance_uuid", s.id.clone()),
            ("user_id", caller.user.id.clone()),
            ("image_type", "snapshot".into()),
            ("base_image_ref", s.image_id.clone()),
            ("owner_project_name", project_name),
            ("owner_user_name", caller.user.name.clone()),
        ] {
            props.insert(k.into(), Value::String(v));
        }
        props.extend(metadata);
        let base_min_disk = base.as_ref().map_or(0, |b| b.min_disk);
        json!({
            "name": name,
            "disk_format": disk_format,
            "min_disk": base_min_disk.max(flavor["disk"].as_i64().unwrap_or(0)),
            "min_ram": base.as_ref().map_or(0, |b| b.min_ram),
            "properties": props,
        })
    }
}

/// The two createImage sagas (image-backed and volume-backed servers).
pub struct CreateImageSaga {
    store: Arc<Store>,
    images: Arc<Images>,
    volumes: Arc<Volumes>,
    disks: Arc<Disks>,
    volume_backed: bool,
}

fn failed(msg: impl Into<String>) -> StepError {
    StepError::Failed(ServiceError::Internal(msg.into()))
}

impl CreateImageSaga {
    pub fn new(
        store: Arc<Store>,
        images: Arc<Images>,
        volumes: Arc<Volumes>,
        disks: Arc<Disks>,
        volume_backed: bool,
    ) -> CreateImageSaga {
        CreateImageSaga {
            store,
            images,
            volumes,
            disks,
            volume_backed,
        }
    }

    async fn server(&self, data: &Data) -> std::result::Result<ServerRec, StepError> {
        let id = text(data, "server_id")?;
        store::server_get(self.store.pool(), id)
            .await?
            .ok_or_else(|| failed(format!("server {id} was deleted")))
    }

    /// Moves the server's task from one of `from` to `to`; already at `to` is fine (a retry).
    async fn move_task(
        &self,
        data: &Data,
        from: &[&str],
        to: Option<&str>,
    ) -> std::result::Result<(), StepError> {
        let s = self.server(data).await?;
        let now = s.task_state.as_deref();
        if now == to {
            return Ok(());
        }
        if !now.is_some_and(|t| from.contains(&t)) {
            return Err(failed(format!(
                "server {} is in task_state {now:?}, not createImage's",
                s.id
            )));
        }
        let mut w = self.store.write(false).await?;
        let moved = store::server_transition(
            w.conn(),
            &s.id,
            &[s.vm_state.as_str()],
            now,
            &s.vm_state,
            to,
            s.power_state,
            now_micros(),
        )
        .await?;
        self.store.commit(w).await?;
        if moved {
            Ok(())
        } else {
            Err(failed(format!("server {} changed meanwhile", s.id)))
        }
    }

    /// The image being made, or a quiet stop if its user deleted it.
    async fn image(&self, data: &Data) -> std::result::Result<ImageRec, StepError> {
        let id = text(data, "image_id")?;
        self.images.find(id).await?.ok_or_else(|| {
            StepError::Quiet(format!("image {id} was deleted while it was being made"))
        })
    }

    async fn reserve(&self, data: &Data, retry: bool) -> std::result::Result<(), StepError> {
        let id = text(data, "server_id")?;
        let s = store::server_get(self.store.pool(), id)
            .await?
            .ok_or_else(|| StepError::Refused(ServiceError::not_found("instance", id)))?;
        if retry && s.task_state.as_deref() == Some("image_snapshot_pending") {
            return Ok(());
        }
        if s.task_state.is_some() || !SNAPSHOT_FROM.contains(&s.vm_state.as_str()) {
            return Err(StepError::Refused(cannot("createImage", &s)));
        }
        let mut w = self.store.write(false).await?;
        let moved = store::server_transition(
            w.conn(),
            id,
            SNAPSHOT_FROM,
            None,
            &s.vm_state,
            Some("image_snapshot_pending"),
            s.power_state,
            now_micros(),
        )
        .await?;
        self.store.commit(w).await?;
        if moved {
            return Ok(());
        }
        let now = store::server_get(self.store.pool(), id)
            .await?
            .ok_or_else(|| StepError::Refused(ServiceError::not_found("instance", id)))?;
        Err(StepError::Refused(cannot("createImage", &now)))
    }

    async fn register(&self, data: &Data) -> std::result::Result<(), StepError> {
        let id = text(data, "image_id")?;
        if self.images.find(id).await?.is_some() {
            return Ok(());
        }
        let spec = &data["image"];
        let req = ImageCreate {
            id: Some(id.to_string()),
            name: spec["name"].as_str().map(String::from),
            visibility: Some("private".into()),
            disk_format: spec["disk_format"].as_str().map(String::from),
            container_format: Some("bare".into()),
            min_disk: spec["min_disk"].as_i64().unwrap_or(0),
            min_ram: spec["min_ram"].as_i64().unwrap_or(0),
            properties: spec["properties"].as_object().cloned().unwrap_or_default(),
            ..Default::default()
        };
        let project = text(data, "project_id")?.to_string();
        self.images.create_in(project, req).await?;
        Ok(())
    }

    async fn flatten(&self, data: &Data) -> std::result::Result<(), StepError> {
        // A retry may find the task one step on; the flattening is done again.
        self.move_task(
            data,
            &["image_snapshot_pending", "image_pending_upload"],
            Some("image_snapshot"),
        )
        .await?;
        self.image(data).await?;
        let s = self.server(data).await?;
        let tmp = self.disks.path(text(data, "tmp")?);
        if let Some(dir) = tmp.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| failed(format!("work dir: {e}")))?;
        }
        let root = self.disks.path(&s.root_disk);
        stratus_blob::format::convert(&root, DiskFormat::Qcow2, &tmp, DiskFormat::Qcow2)
            .await
            .map_err(|e| failed(format!("flattening the disk: {e}")))?;
        self.move_task(data, &["image_snapshot"], Some("image_pending_upload"))
            .await
    }

    /// Stores the image's data (the flattened disk, or nothing); a deleted image stops quietly,
    /// a deleted server fails the saga (so the unfinished image goes).
    async fn upload(&self, data: &Data, file: Option<&str>) -> std::result::Result<(), StepError> {
        let image = self.image(data).await?;
        let path = file.map(|f| self.disks.path(f));
        if let Err(e) = self.images.put_data(&image.id, path.as_deref()).await {
            self.image(data).await?;
            return Err(StepError::Failed(e));
        }
        self.server(data).await?;
        Ok(())
    }

    async fn snapshot(&self, data: &Data) -> std::result::Result<(), StepError> {
        self.move_task(data, &["image_snapshot_pending"], Some("image_snapshot"))
            .await?;
        self.server(data).await?;
        self.image(data).await?;
        for plan in plans(&data["snapshots"])? {
            self.volumes.snapshot_apply(&plan).await?;
        }
        Ok(())
    }

    async fn finish(&self, data: &Data, from: &str) -> std::result::Result<(), StepError> {
        if let Some(tmp) = data.get("tmp").and_then(Value::as_str) {
            remove_file(&self.disks, tmp).await?;
        }
        let id = text(data, "server_id")?;
        if store::server_get(self.store.pool(), id).await?.is_none() {
            // Deleted after its image was finished: nothing to reset.
            return Ok(());
        }
        self.move_task(data, &[from], None).await
    }

    async fn run_step(
        &self,
        idx: usize,
        data: &mut Data,
        retry: bool,
    ) -> std::result::Result<(), StepError> {
        match (self.volume_backed, idx) {
            (_, 0) => self.reserve(data, retry).await,
            (_, 1) => self.register(data).await,
            (false, 2) => self.flatten(data).await,
            (false, 3) => {
                self.move_task(data, &["image_pending_upload"], Some("image_uploading"))
                    .await?;
                let tmp = text(data, "tmp")?.to_string();
                self.upload(data, Some(&tmp)).await
            }
            (false, 4) => self.finish(data, "image_uploading").await,
            (true, 2) => self.snapshot(data).await,
            (true, 3) => self.upload(data, None).await,
            (true, 4) => self.finish(data, "image_snapshot").await,
            _ => Err(failed(format!("no step {idx}"))),
        }
    }

    async fn undo_step(&self, idx: usize, record: &Value, why: &Why) -> Result<()> {
        let field = |k: &str| {
            record[k]
                .as_str()
                .ok_or_else(|| ServiceError::Internal(format!("undo record lacks {k:?}")))
        };
        match (self.volume_backed, idx) {
            (_, 0) => {
                let id = field("server_id")?;
                let Some(s) = store::server_get(self.store.pool(), id).await? else {
                    return Ok(());
                };
                if !s
                    .task_state
                    .as_deref()
                    .is_some_and(|t| t.starts_with("image_"))
                {
                    return Ok(());
                }
                let fault = why
                    .error
                    .as_ref()
                    .map(|e| format!("createImage failed: {e}"));
                let mut w = self.store.write(false).await?;
                store::server_clear_task(w.conn(), id, fault.as_deref(), now_micros()).await?;
                Ok(self.store.commit(w).await?)
            }
            (_, 1) | (_, 3) => self.images.discard(field("image_id")?).await,
            (false, 2) => remove_file(&self.disks, field("tmp")?)
                .await
                .map_err(|e| ServiceError::Internal(format!("{e:?}"))),
            (true, 2) => {
                let list = plans(&record["snapshots"])
                    .map_err(|e| ServiceError::Internal(format!("{e:?}")))?;
                for plan in list.iter().rev() {
                    self.volumes.snapshot_revert(plan).await?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn plans(v: &Value) -> std::result::Result<Vec<SnapshotPlan>, StepError> {
    serde_json::from_value(v.clone()).map_err(|e| failed(format!("snapshot plans: {e}")))
}

async fn remove_file(disks: &Disks, rel: &str) -> std::result::Result<(), StepError> {
    match tokio::fs::remove_file(disks.path(rel)).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(failed(format!("removing {rel}: {e}"))),
    }
}

impl SagaKind for CreateImageSaga {
    fn name(&self) -> &'static str {
        if self.volume_backed {
            VOLUME_BACKED
        } else {
            IMAGE_BACKED
        }
    }

    fn steps(&self) -> &'static [&'static str] {
        if self.volume_backed {
            VOLUME_BACKED_STEPS
        } else {
            IMAGE_BACKED_STEPS
        }
    }

    fn undo_record(&self, idx: usize, data: &Data) -> Value {
        let pick = |k: &str| json!({ k: data.get(k).cloned().unwrap_or(Value::Null) });
        match (self.volume_backed, idx) {
            (_, 0) => pick("server_id"),
            (_, 1) | (_, 3) => pick("image_id"),
            (false, 2) => pick("tmp"),
            (true, 2) => pick("snapshots"),
            _ => json!({}),
        }
    }

    fn run<'a>(
        &'a self,
        idx: usize,
        data: &'a mut Data,
        retry: bool,
    ) -> BoxFuture<'a, std::result::Result<(), StepError>> {
        Box::pin(self.run_step(idx, data, retry))
    }

    fn undo<'a>(
        &'a self,
        idx: usize,
        record: &'a Value,
        why: &'a Why,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.undo_step(idx, record, why))
    }
}
