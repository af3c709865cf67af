//! Compute: servers, their state machine, and the driver that makes their disks.
//!
//! A server is created `building` and made by a saga of [`crate::server_sagas`]: the driver makes
//! its root disk (a qcow2 overlay on the image) and the server becomes `active`, or `error` with
//! a fault; deleting a server is a saga too. Power actions are compare-and-set moves between
//! vm_states, described by the [`ACTIONS`] table.

use crate::authz::Authorized;
use crate::disks::Disks;
pub use crate::driver::root_disk_of;
use crate::guests::Guests;
use crate::identity::TokenInfo;
use crate::images::Images;
use crate::saga::{Caller, Saga, Sagas};
use crate::server_sagas::{
    BuildState, CreateServer, CreateServerFromVolumes, DeleteServer, DeleteState, FromVolumesState,
    ServerSagas,
};
use crate::volume_create::VolumePlan;
use crate::volumes::{VolumeCreate, Volumes};
use crate::{IfMissing, Result, ServiceError};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::sync::Arc;
use stratus_blob::format::DiskFormat;
use stratus_iam::ResourceKind;
use stratus_store::{
    self as store, now_micros, FlavorRec, ImageRec, ImageStatus, PowerState, ServerRec, Store,
    TaskState, Transition, VmState, VolumeRec, VolumeStatus,
};

/// What mapping a volume for deletion with its server needs, when mapped and when deleted: the
/// action deleting it directly needs.
pub const DELETE_VOLUME: &str = "evs:volumes:delete";

/// One server action: the vm_states it may start from (with no task running), and where it
/// leaves the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionRule {
    /// The action's name in messages (`Cannot 'stop' instance ...`).
    pub verb: &'static str,
    pub from: &'static [VmState],
    pub vm_state: VmState,
    pub power_state: PowerState,
}

impl ActionRule {
    /// The compare-and-set move this action makes.
    pub fn transition(&self) -> Transition<'static> {
        Transition {
            from: self.from,
            from_task: None,
            vm_state: self.vm_state,
            task_state: None,
            power_state: self.power_state,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Stop,
    Start,
    SoftReboot,
    HardReboot,
    Pause,
    Unpause,
    Suspend,
    Resume,
}

use PowerState as P;
use VmState as V;

/// The state machine of power actions, as upstream allows them.
pub const ACTIONS: &[(Action, ActionRule)] = &[
    (
        Action::Stop,
        rule("stop", &[V::Active, V::Error], V::Stopped, P::Shutdown),
    ),
    (
        Action::Start,
        rule("start", &[V::Stopped], V::Active, P::Running),
    ),
    (
        Action::SoftReboot,
        rule("reboot", &[V::Active], V::Active, P::Running),
    ),
    (
        Action::HardReboot,
        rule(
            "reboot",
            &[V::Active, V::Stopped, V::Paused, V::Suspended, V::Error],
            V::Active,
            P::Running,
        ),
    ),
    (
        Action::Pause,
        rule("pause", &[V::Active], V::Paused, P::Paused),
    ),
    (
        Action::Unpause,
        rule("unpause", &[V::Paused], V::Active, P::Running),
    ),
    (
        Action::Suspend,
        rule("suspend", &[V::Active], V::Suspended, P::Suspended),
    ),
    (
        Action::Resume,
        rule("resume", &[V::Suspended], V::Active, P::Running),
    ),
];

const fn rule(
    verb: &'static str,
    from: &'static [VmState],
    vm_state: VmState,
    power_state: PowerState,
) -> ActionRule {
    ActionRule {
        verb,
        from,
        vm_state,
        power_state,
    }
}

/// The most of a console a request gets (upstream's libvirt driver cuts at 100 KiB too).
pub const CONSOLE_MAX_BYTES: usize = 100 << 10;

/// Status values a listing can filter on, and the vm_states they stand for.
pub const STATUS_FILTERS: &[VmState] = &[
    V::Active,
    V::Building,
    V::Stopped,
    V::Paused,
    V::Suspended,
    V::Error,
];

/// Where a volume of a server booted from volumes comes from (`block_device_mapping_v2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeSource {
    /// An existing volume.
    Volume,
    /// A new volume made from an image.
    Image,
    /// A new volume made from a snapshot.
    Snapshot,
    /// A new empty volume.
    Blank,
}

#[derive(Debug, Clone)]
pub struct VolumeMapping {
    pub source: VolumeSource,
    pub uuid: Option<String>,
    pub boot_index: Option<i64>,
    /// GiB, for new volumes.
    pub volume_size: Option<i64>,
    pub delete_on_termination: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ServerCreate {
    pub name: String,
    pub description: Option<String>,
    /// Empty when the server boots from volumes.
    pub image_id: String,
    /// Volumes to attach; one has boot index 0 when the server boots from volumes.
    pub volumes: Vec<VolumeMapping>,
    pub flavor_id: String,
    pub metadata: Map<String, Value>,
    pub availability_zone: Option<String>,
    pub admin_pass: Option<String>,
    pub access_ipv4: Option<String>,
    pub access_ipv6: Option<String>,
    /// `OS-DCF:diskConfig`: AUTO (true), MANUAL (false), or from the image when not given.
    pub auto_disk_config: Option<bool>,
}

pub const AVAILABILITY_ZONE: &str = "nova";

pub struct Compute {
    pub(crate) store: Arc<Store>,
    pub(crate) images: Arc<Images>,
    pub(crate) volumes: Arc<Volumes>,
    disks: Arc<Disks>,
    pub(crate) sagas: Arc<Sagas>,
    pub(crate) guests: Arc<Guests>,
}

fn bad(msg: impl Into<String>) -> ServiceError {
    ServiceError::BadRequest(msg.into())
}

fn caller_project(caller: &TokenInfo) -> Result<&str> {
    crate::caller_project(caller, "The compute service")
}

pub use crate::limits::check_metadata;

impl Compute {
    pub fn new(
        store: Arc<Store>,
        images: Arc<Images>,
        volumes: Arc<Volumes>,
        disks: Arc<Disks>,
        guests: Arc<Guests>,
        sagas: Arc<Sagas>,
    ) -> Compute {
        let ctx = Arc::new(ServerSagas {
            store: store.clone(),
            images: images.clone(),
            volumes: volumes.maker().clone(),
            quotas: volumes.quotas().clone(),
            disks: disks.clone(),
            guests: guests.clone(),
        });
        sagas.register::<CreateServer>(ctx.clone());
        sagas.register::<CreateServerFromVolumes>(ctx.clone());
        sagas.register::<DeleteServer>(ctx);
        Compute {
            store,
            images,
            volumes,
            disks,
            sagas,
            guests,
        }
    }

    pub async fn flavors(&self) -> Result<Vec<FlavorRec>> {
        Ok(store::flavor_list(self.store.pool()).await?)
    }

    pub async fn flavor(&self, id: &str) -> Result<FlavorRec> {
        self.flavors()
            .await?
            .into_iter()
            .find(|f| f.id == id)
            .ok_or_else(|| ServiceError::not_found("flavor", id))
    }

    /// The server if it belongs to the caller's project; 404 otherwise (malformed ids included).
    pub async fn get(&self, caller: &TokenInfo, id: &str) -> Result<ServerRec> {
        let project = caller_project(caller)?;
        store::server_get(self.store.pool(), id)
            .await?
            .filter(|s| s.project_id == project)
            .ok_or_else(|| ServiceError::not_found("instance", id))
    }

    pub async fn list(
        &self,
        caller: &Authorized,
        name: Option<&str>,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ServerRec>> {
        let project = caller_project(caller)?;
        let states: Vec<VmState> = match status {
            None => vec![],
            Some(st) => {
                let st = st.to_ascii_uppercase();
                match STATUS_FILTERS.iter().find(|s| s.status() == st) {
                    Some(vm) => vec![*vm],
                    None => return Err(bad(format!("Invalid status value {st:?}."))),
                }
            }
        };
        let all = store::server_list(self.store.pool(), project, &states, limit).await?;
        // Nova matches `name` as a pattern anywhere in the name; a plain name is a substring.
        Ok(match name {
            Some(n) => all.into_iter().filter(|s| s.name.contains(n)).collect(),
            None => all,
        })
    }

    /// Accepts a server for building; returns it (`building`) and its admin password.
    pub async fn create(
        &self,
        caller: &Authorized,
        req: ServerCreate,
    ) -> Result<(ServerRec, String)> {
        let project = caller_project(caller)?.to_string();
        let name = req.name.trim();
        if name.is_empty() || req.name.chars().count() > 255 || name.len() != req.name.len() {
            return Err(bad(
                "Invalid server name: 1 to 255 characters, no leading or trailing white space.",
            ));
        }
        check_metadata(&req.metadata)?;
        crate::limits::check_description("description", req.description.as_deref())?;
        if let Some(p) = &req.admin_pass {
            crate::limits::check_chars("adminPass", p, crate::limits::NAME_CHARS)?;
        }
        if let Some(az) = &req.availability_zone {
            if az != AVAILABILITY_ZONE {
                return Err(bad(format!(
                    "The requested availability zone {az:?} is not available."
                )));
            }
        }
        let flavor = self
            .flavor(&req.flavor_id)
            .await
            .if_missing(|| bad(format!("Flavor {} could not be found.", req.flavor_id)))?;
        caller.require_use(ResourceKind::Flavor)?;
        if !req.volumes.is_empty() {
            return self.create_from_volumes(caller, req, &flavor).await;
        }
        let image = self
            .images
            .get_for_use(caller, &req.image_id)
            .await
            .if_missing(|| bad(format!("Can not find requested image {}.", req.image_id)))?;
        if image.status != ImageStatus::Active {
            return Err(bad(format!(
                "Image {} is not active (it is {}).",
                image.id, image.status
            )));
        }
        if let Some(volumes) = volume_mappings_of(&image)? {
            let mut req = req;
            req.volumes = volumes;
            return self.create_from_volumes(caller, req, &flavor).await;
        }
        let (format, size) = check_image_fits(&image, &FlavorSize::of(&flavor))?;
        let mut req = req;
        req.auto_disk_config = Some(disk_config_for(&image, req.auto_disk_config)?);
        let boot = crate::kernel_boot::of_image(&self.images, caller, &image).await?;
        let admin_pass = admin_pass(&req);
        let mut server = req.record(
            project,
            &caller.user.id,
            &flavor,
            &image.id,
            TaskState::Spawning,
            String::new(),
        );
        server.root_disk = root_disk_of(&server.id);
        let st = BuildState {
            caller: Caller::of(caller),
            server,
            vcpus: flavor.vcpus,
            ram_mb: flavor.ram_mb,
            image_id: image.id.clone(),
            cache: crate::disks::cache_layer_of(&image)?,
            format,
            sha512: image.os_hash_value.clone().unwrap_or_default(),
            size,
            boot,
        };
        // Answered once the server is recorded; it is built in the background.
        let st = self
            .sagas
            .begin::<CreateServer>(crate::new_uuid(), &st, 1)
            .await?;
        Ok((st.server, admin_pass))
    }

    /// Runs a power action through the [`ACTIONS`] table; 409 in a state it cannot start from.
    pub async fn act(&self, caller: &Authorized, id: &str, action: Action) -> Result<ServerRec> {
        let s = self.get(caller, id).await?;
        let rule = ACTIONS
            .iter()
            .find(|(a, _)| *a == action)
            .map(|(_, r)| *r)
            .ok_or_else(|| ServiceError::Internal(format!("no rule for {action:?}")))?;
        let refuse = |s: &ServerRec| cannot(rule.verb, s);
        check_lock(caller, &s)?;
        if s.task_state.is_some() || !rule.from.contains(&s.vm_state) {
            return Err(refuse(&s));
        }
        // The record and the guest change together: no other operation on the guest, and no
        // sync of its power state, runs in between.
        let held = self.guests.hold(id).await;
        // A guest's stop and soft reboot take time: the server shows the task until the guest
        // is done (then `Guests` moves the record on), as upstream's `powering-off`/`rebooting`.
        let task = match action {
            Action::Stop => Some(TaskState::PoweringOff),
            Action::SoftReboot => Some(TaskState::Rebooting),
            _ => None,
        }
        .filter(|_| self.guests.runs_guests());
        let t = match task {
            Some(task) => Transition::task(&s, None, Some(task)),
            None => rule.transition(),
        };
        let mut w = self.store.write().await?;
        let moved = store::server_transition(w.conn(), id, &t, now_micros()).await?;
        self.store.commit(w).await?;
        if moved {
            self.drive(held, id, action).await?;
        }
        let now = self.get(caller, id).await?;
        if moved {
            Ok(now)
        } else {
            Err(refuse(&now))
        }
    }

    /// What an action does to the guest, the record having moved. Powering off can take the
    /// guest's whole grace time, so it runs after the answer; the guest stays held until done.
    async fn drive(&self, held: crate::guests::Held, id: &str, action: Action) -> Result<()> {
        let g = &self.guests;
        match action {
            Action::Stop | Action::SoftReboot => {
                let (g, id) = (g.clone(), id.to_string());
                tokio::spawn(async move {
                    let done = match action {
                        Action::Stop => g.power_off(&held, &id).await,
                        _ => g.reboot_soft(&held, &id).await,
                    };
                    if let Err(e) = done {
                        tracing::error!(server = %id, "{action:?} of the guest failed: {e}");
                    }
                });
                Ok(())
            }
            Action::Start => g.boot_held(&held, id).await,
            Action::HardReboot => {
                g.stop(&held, id, true).await?;
                g.boot_held(&held, id).await
            }
            Action::Pause | Action::Suspend => g.set_paused(&held, id, true).await,
            Action::Unpause | Action::Resume => g.set_paused(&held, id, false).await,
        }
    }

    /// The last `lines` lines of the server's console (`os-getConsoleOutput`), at most
    /// [`CONSOLE_MAX_BYTES`] of them.
    pub async fn console(
        &self,
        caller: &Authorized,
        id: &str,
        lines: Option<usize>,
    ) -> Result<String> {
        let s = self.get(caller, id).await?;
        if s.vm_state == VmState::Building {
            return Err(ServiceError::Conflict(format!(
                "Instance {id} has not been built yet."
            )));
        }
        let text = self.guests.console(id, lines).await?;
        let mut cut = text.len().saturating_sub(CONSOLE_MAX_BYTES);
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        Ok(text[cut..].to_string())
    }

    /// The guests of this node's servers.
    pub fn guests(&self) -> &Arc<Guests> {
        &self.guests
    }

    /// Locks a server (`lock`) or unlocks it: a locked server refuses its power actions, rebuild
    /// and delete to everyone but the project's administrators. Either is a no-op when already
    /// done, as upstream; neither looks at the server's state.
    pub async fn set_lock(&self, caller: &Authorized, id: &str, lock: bool) -> Result<ServerRec> {
        let s = self.get(caller, id).await?;
        if s.locked_by.is_some() == lock {
            return Ok(s);
        }
        // The caller acts in the server's project, so it locks as its owner (upstream's
        // `locked_by` is `admin` only for a lock from another project), and the owner may unlock.
        let by = lock.then_some("owner");
        let mut w = self.store.write().await?;
        store::server_set_lock(w.conn(), &s.id, by, now_micros()).await?;
        self.store.commit(w).await?;
        self.get(caller, id).await
    }

    /// Deletes a server in any state, with its disks. Attached volumes are detached and kept,
    /// except those mapped with `delete_on_termination` (which needed `evs:volumes:delete` when
    /// mapped): they are deleted if this caller may delete volumes too and no snapshot depends on
    /// them (Cinder would refuse that delete), and kept otherwise.
    pub async fn delete(&self, caller: &Authorized, id: &str) -> Result<()> {
        let s = self.get(caller, id).await?;
        check_lock(caller, &s)?;
        let st = DeleteState {
            caller: Caller::of(caller),
            server_id: s.id,
            delete_volumes: caller.allows(DELETE_VOLUME),
        };
        self.sagas
            .begin::<DeleteServer>(crate::new_uuid(), &st, DeleteServer::STEPS.len())
            .await?;
        Ok(())
    }

    /// A server booted from volumes: existing volumes are attached, new ones are made from images,
    /// snapshots or nothing (no data copied), the one with boot index 0 is the root disk.
    async fn create_from_volumes(
        &self,
        caller: &Authorized,
        req: ServerCreate,
        flavor: &FlavorRec,
    ) -> Result<(ServerRec, String)> {
        let project = caller_project(caller)?.to_string();
        let boots = req
            .volumes
            .iter()
            .filter(|m| m.boot_index == Some(0))
            .count();
        if boots != 1 {
            return Err(bad(
                "Boot sequence for the instance and image/block device mapping combination is not valid.",
            ));
        }
        let mut order: Vec<&VolumeMapping> = req.volumes.iter().collect();
        order.sort_by_key(|m| m.boot_index.map_or(i64::MAX, |b| b.max(0)));
        // Everything the mappings name is looked up as the caller, and every permission they
        // need decided, before any volume is made.
        for m in &order {
            self.check_mapping(caller, m).await?;
        }
        // New volumes are planned (as the caller), existing ones checked available; nothing is
        // made before the boot volume is known to be bootable.
        let mut new_volumes = Vec::new();
        let mut attach = Vec::new();
        // Whether the boot volume (the first in order) is bootable, and how it boots.
        let mut boots = None;
        let mut boot = None;
        for m in &order {
            let (id, bootable) = match self.volume_for(caller, m).await? {
                Mapped::Existing { id, bootable } => (id, bootable),
                Mapped::New(p) => {
                    let found = (p.volume.id.clone(), p.volume.bootable);
                    new_volumes.push(*p);
                    found
                }
            };
            if boots.is_none() {
                let v = match new_volumes.iter().find(|p| p.volume.id == id) {
                    Some(p) => Some(p.volume.clone()),
                    None => store::volume_get(self.store.pool(), &id).await?,
                };
                if let Some(v) = v {
                    boot = crate::kernel_boot::of_volume(&self.images, caller, &v).await?;
                }
            }
            boots.get_or_insert(bootable);
            attach.push((id, m.delete_on_termination));
        }
        if boots != Some(true) {
            return Err(bad(format!(
                "Block Device {} is not bootable.",
                attach.first().map_or("", |(id, _)| id.as_str())
            )));
        }
        let server = req.record(
            project,
            &caller.user.id,
            flavor,
            "",
            TaskState::BlockDeviceMapping,
            String::new(),
        );
        let st = FromVolumesState {
            caller: Caller::of(caller),
            server,
            vcpus: flavor.vcpus,
            ram_mb: flavor.ram_mb,
            new_volumes,
            attach,
            boot,
        };
        let steps = CreateServerFromVolumes::STEPS.len();
        let st = self
            .sagas
            .begin::<CreateServerFromVolumes>(crate::new_uuid(), &st, steps)
            .await?;
        Ok((st.server, admin_pass(&req)))
    }

    /// Checks a mapping can be made by the caller: what it names is visible and usable, and
    /// deleting its volume with the server is allowed if it asks for that.
    async fn check_mapping(&self, caller: &Authorized, m: &VolumeMapping) -> Result<()> {
        let uuid = m.uuid.as_deref().unwrap_or_default();
        let invalid = |what: &str| {
            bad(format!(
                "Block Device Mapping is Invalid: failed to get {what} {uuid}."
            ))
        };
        match m.source {
            VolumeSource::Volume => {
                self.mapped_volume(caller, uuid).await?;
            }
            VolumeSource::Image => {
                self.images
                    .get_for_use(caller, uuid)
                    .await
                    .if_missing(|| invalid("image"))?;
            }
            VolumeSource::Snapshot => {
                self.volumes
                    .snapshot_for_use(caller, uuid)
                    .await
                    .if_missing(|| invalid("snapshot"))?;
            }
            VolumeSource::Blank => {}
        }
        if m.delete_on_termination {
            caller.require(&[DELETE_VOLUME])?;
        }
        Ok(())
    }

    /// An existing volume a mapping names: visible, usable by the caller, and available.
    async fn mapped_volume(&self, caller: &Authorized, uuid: &str) -> Result<VolumeRec> {
        let v = self
            .volumes
            .get_for_use(caller, uuid)
            .await
            .if_missing(|| {
                bad(format!(
                    "Block Device Mapping is Invalid: failed to get volume {uuid}."
                ))
            })?;
        if v.status != VolumeStatus::Available {
            return Err(bad(format!(
                "Invalid volume: volume {uuid} is {}, not available.",
                v.status
            )));
        }
        Ok(v)
    }

    /// The volume a mapping names, available, or the plan of the new one it asks for.
    async fn volume_for(&self, caller: &Authorized, m: &VolumeMapping) -> Result<Mapped> {
        let uuid = m.uuid.clone().unwrap_or_default();
        let new = |image_id: Option<String>, snapshot_id: Option<String>| VolumeCreate {
            size_gb: m.volume_size,
            image_id,
            snapshot_id,
            ..VolumeCreate::default()
        };
        let req = match m.source {
            VolumeSource::Volume => {
                let v = self.mapped_volume(caller, &uuid).await?;
                return Ok(Mapped::Existing {
                    id: v.id,
                    bootable: v.bootable,
                });
            }
            VolumeSource::Image => new(Some(uuid), None),
            VolumeSource::Snapshot => new(None, Some(uuid)),
            VolumeSource::Blank => new(None, None),
        };
        let plan = self.volumes.plan(caller, req).await.map_err(|e| match e {
            ServiceError::BadRequest(m) => bad(format!("Block Device Mapping is Invalid: {m}")),
            other => other,
        })?;
        Ok(Mapped::New(Box::new(plan)))
    }

    /// The volumes attached to a server, boot volume first.
    pub async fn attached_volumes(&self, server_id: &str) -> Result<Vec<VolumeRec>> {
        Ok(store::volumes_of_server(self.store.pool(), server_id).await?)
    }

    /// The absolute path of a server's root disk, if it has one (operator tooling).
    pub async fn root_disk_path(&self, id: &str) -> Result<Option<PathBuf>> {
        let s = store::server_get(self.store.pool(), id)
            .await?
            .ok_or_else(|| ServiceError::not_found("instance", id))?;
        Ok((!s.root_disk.is_empty()).then(|| self.disks.path(&s.root_disk)))
    }
}

/// A volume a mapping names: one that exists, or one to make.
enum Mapped {
    Existing { id: String, bootable: bool },
    New(Box<VolumePlan>),
}

/// The volumes an image made by createImage of a volume-backed server stands for
/// (`bdm_v2=True` and its `block_device_mapping`): new volumes from its snapshots.
fn volume_mappings_of(image: &ImageRec) -> Result<Option<Vec<VolumeMapping>>> {
    let props = &image.properties;
    if props.get("bdm_v2").and_then(Value::as_str) != Some("True") {
        return Ok(None);
    }
    let list: Vec<Value> = props
        .get("block_device_mapping")
        .and_then(Value::as_str)
        .and_then(|t| serde_json::from_str(t).ok())
        .ok_or_else(|| {
            bad(format!(
                "Image {} has an unreadable block_device_mapping.",
                image.id
            ))
        })?;
    let mut out = Vec::new();
    for m in list {
        let Some(snapshot) = m["snapshot_id"].as_str() else {
            return Err(bad(format!(
                "Image {} maps a volume without a snapshot.",
                image.id
            )));
        };
        out.push(VolumeMapping {
            source: VolumeSource::Snapshot,
            uuid: Some(snapshot.to_string()),
            boot_index: m["boot_index"].as_i64(),
            volume_size: m["volume_size"].as_i64(),
            delete_on_termination: m["delete_on_termination"].as_bool().unwrap_or(false),
        });
    }
    Ok(Some(out))
}

impl ServerCreate {
    /// The record of a server made from this request, `building` with `task`.
    fn record(
        &self,
        project: String,
        user: &str,
        flavor: &FlavorRec,
        image_id: &str,
        task: TaskState,
        root_disk: String,
    ) -> ServerRec {
        let now = now_micros();
        ServerRec {
            id: crate::new_uuid(),
            project_id: project,
            user_id: user.to_string(),
            enterprise_project_id: store::DEFAULT_ENTERPRISE_PROJECT.into(),
            name: self.name.clone(),
            description: self.description.clone(),
            flavor_id: flavor.id.clone(),
            flavor: flavor_json(flavor),
            image_id: image_id.to_string(),
            vm_state: VmState::Building,
            task_state: Some(task),
            power_state: PowerState::NoState,
            metadata: self.metadata.clone(),
            availability_zone: AVAILABILITY_ZONE.into(),
            fault: None,
            root_disk,
            created_at: now,
            updated_at: now,
            launched_at: None,
            access_ipv4: self.access_ipv4.clone().unwrap_or_default(),
            access_ipv6: self.access_ipv6.clone().unwrap_or_default(),
            auto_disk_config: self.auto_disk_config.unwrap_or(false),
            locked_by: None,
        }
    }
}

/// Whether an image's `auto_disk_config` property turns automatic disk config off (upstream
/// reads only the value `disabled`, in any case, that way).
pub(crate) fn auto_disk_config_disabled(image: &ImageRec) -> bool {
    image
        .properties
        .get("auto_disk_config")
        .and_then(Value::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case("disabled"))
}

/// What `auto_disk_config` a server of `image` gets: as asked (AUTO refused where the image
/// disables it), else the image's property read as a boolean.
pub(crate) fn disk_config_for(image: &ImageRec, asked: Option<bool>) -> Result<bool> {
    match asked {
        Some(true) if auto_disk_config_disabled(image) => Err(bad(format!(
            "Requested image {} has automatic disk resize disabled.",
            image.id
        ))),
        Some(a) => Ok(a),
        None => Ok(image
            .properties
            .get("auto_disk_config")
            .and_then(Value::as_str)
            .is_some_and(|v| {
                matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on")
            })),
    }
}

/// 409 for a locked server unless the caller administers the project (upstream's
/// `check_instance_lock`).
pub(crate) fn check_lock(caller: &Authorized, s: &ServerRec) -> Result<()> {
    if s.locked_by.is_some() && !caller.is_admin() {
        return Err(ServiceError::Conflict(format!(
            "Instance {} is locked",
            s.id
        )));
    }
    Ok(())
}

/// Upstream's 409 for an action a server's task or state does not allow.
pub(crate) fn cannot(verb: &str, s: &ServerRec) -> ServiceError {
    let (attr, state) = match &s.task_state {
        Some(t) => ("task_state", t.as_str()),
        None => ("vm_state", s.vm_state.as_str()),
    };
    ServiceError::Conflict(format!(
        "Cannot '{verb}' instance {} while it is in {attr} {state}",
        s.id
    ))
}

fn admin_pass(req: &ServerCreate) -> String {
    req.admin_pass.clone().unwrap_or_else(generate_password)
}

/// A random admin password, as upstream makes one when none is given.
pub fn generate_password() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(12)
        .map(char::from)
        .collect()
}

/// The sizes of a flavor that an image must fit.
#[derive(Debug, Clone, Copy)]
pub struct FlavorSize {
    pub disk_gb: i64,
    pub ram_mb: i64,
}

impl FlavorSize {
    pub fn of(f: &FlavorRec) -> FlavorSize {
        FlavorSize {
            disk_gb: f.disk_gb,
            ram_mb: f.ram_mb,
        }
    }

    /// The flavor a server was made with (kept with the server).
    pub fn of_server(s: &ServerRec) -> FlavorSize {
        let int = |k: &str| s.flavor.get(k).and_then(Value::as_i64).unwrap_or(0);
        FlavorSize {
            disk_gb: int("disk"),
            ram_mb: int("ram"),
        }
    }
}

/// Checks that `image` can be a root disk of `flavor`: a format servers boot from, its virtual
/// size and `min_disk` within the flavor's disk, its `min_ram` within its memory. Returns the
/// format and the root disk's size.
pub fn check_image_fits(image: &ImageRec, flavor: &FlavorSize) -> Result<(DiskFormat, u64)> {
    let format = image
        .disk_format
        .as_deref()
        .and_then(DiskFormat::parse)
        .ok_or_else(|| {
            bad(format!(
                "Image {} has disk_format {:?}; servers boot from raw or qcow2 images.",
                image.id,
                image.disk_format.as_deref().unwrap_or("none")
            ))
        })?;
    let gib = 1i64 << 30;
    let virtual_size = image.virtual_size.unwrap_or(0);
    if flavor.disk_gb > 0
        && (image.min_disk > flavor.disk_gb || virtual_size > flavor.disk_gb * gib)
    {
        return Err(bad(format!(
            "Flavor's disk is too small for requested image. Flavor disk is {} bytes, image is {} bytes.",
            flavor.disk_gb * gib,
            virtual_size.max(image.min_disk * gib)
        )));
    }
    if image.min_ram > flavor.ram_mb {
        return Err(bad("Flavor's memory is too small for requested image."));
    }
    Ok((
        format,
        (flavor.disk_gb * gib).max(virtual_size).max(1) as u64,
    ))
}

/// The flavor as a server embeds it (from 2.47).
pub fn flavor_json(f: &FlavorRec) -> Map<String, Value> {
    let v = json!({
        "original_name": f.name, "vcpus": f.vcpus, "ram": f.ram_mb, "disk": f.disk_gb,
        "ephemeral": f.ephemeral_gb, "swap": f.swap_mb, "extra_specs": f.extra_specs,
    });
    v.as_object().cloned().unwrap_or_default()
}

/// The one compute host of the local driver.
pub const HOST: &str = "stratus-local";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_one_rule_ending_in_a_reachable_state() {
        for (a, r) in ACTIONS {
            assert_eq!(ACTIONS.iter().filter(|(b, _)| b == a).count(), 1);
            assert!(!r.from.is_empty());
            // Every target state is a state some action can leave (or active).
            assert!(
                r.vm_state == VmState::Active
                    || ACTIONS.iter().any(|(_, o)| o.from.contains(&r.vm_state)),
                "{a:?}"
            );
        }
    }

    #[test]
    fn the_volume_delete_action_is_in_the_catalogue() {
        let c = stratus_iam::Catalogue::shipped().unwrap();
        assert!(c.action_id(DELETE_VOLUME).is_some());
    }
}
