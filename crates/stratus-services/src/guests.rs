//! Servers' guests, through the [`ComputeDriver`] of `stratus-driver`: what a server boots with,
//! the guest operations behind the power actions (one at a time per server), the console, and
//! the sync of records with what really runs (a guest that died makes its server SHUTOFF; a
//! guest whose server is gone is destroyed), as upstream's `_sync_power_states` does.

use crate::disks::Disks;
use crate::{Result, ServiceError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stratus_driver::{ComputeDriver, DriverError, GuestDisk, GuestSpec, GuestState};
use stratus_store::{
    self as store, now_micros, PowerState, ServerRec, Store, TaskState, Transition, VmState,
};

impl From<DriverError> for ServiceError {
    fn from(e: DriverError) -> Self {
        ServiceError::Internal(e.to_string())
    }
}

/// A volume's drive in its guest.
fn volume_drive(volume: &str) -> String {
    format!("vol-{volume}")
}

/// The advisory lock under which servers are counted against the node's capacity.
const CAPACITY_LOCK: i64 = 0x5354_4341_5041;

/// A server's guest held for one operation ([`Guests::hold`]).
pub struct Held(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>);

/// What a node offers its guests: a server that would take more, with what the others take,
/// is refused (upstream's "No valid host").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub vcpus: i64,
    pub ram_mb: i64,
}

impl Capacity {
    /// The machine's: its memory, and its cores with upstream's CPU overcommit of 16.
    pub fn of_this_machine() -> Capacity {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            .unwrap_or(0);
        Capacity {
            vcpus: i64::try_from(cores).unwrap_or(1) * 16,
            ram_mb: kib / 1024,
        }
    }
}

/// The fault of a server no node can take (upstream's wording).
pub const NO_VALID_HOST: &str = "No valid host was found. There are not enough hosts available.";

/// The drive name of an image-backed server's root disk in its guest.
const ROOT_DRIVE: &str = "root";

/// The guests of this node's servers.
pub struct Guests {
    store: Arc<Store>,
    disks: Arc<Disks>,
    driver: Arc<dyn ComputeDriver>,
    /// How long a guest has to power off when asked (ACPI) before it is stopped hard.
    pub shutdown_timeout: Duration,
    /// What this node's guests may take together; `None`: no limit (a driver that runs none).
    pub capacity: Option<Capacity>,
    /// One operation at a time per server: a start waits for a stop still in its grace time.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Guests {
    pub fn new(
        store: Arc<Store>,
        disks: Arc<Disks>,
        driver: Arc<dyn ComputeDriver>,
        shutdown_timeout: Duration,
        capacity: Option<Capacity>,
    ) -> Guests {
        Guests {
            store,
            disks,
            driver,
            shutdown_timeout,
            capacity,
            locks: Mutex::new(HashMap::new()),
        }
    }

    pub fn driver(&self) -> &Arc<dyn ComputeDriver> {
        &self.driver
    }

    /// Whether a server of `vcpus` and `ram_mb` fits beside the servers recorded, read in the
    /// transaction `w` that records it (under the lock that orders such checks).
    pub async fn fits(&self, w: &mut store::WriteTx, vcpus: i64, ram_mb: i64) -> Result<bool> {
        let Some(cap) = self.capacity else {
            return Ok(true);
        };
        store::advisory_lock(w, CAPACITY_LOCK).await?;
        let (used_vcpus, used_ram) = store::servers_footprint(w.conn()).await?;
        Ok(used_vcpus + vcpus <= cap.vcpus && used_ram + ram_mb <= cap.ram_mb)
    }

    /// Holds server `id`'s guest for one change of record and guest together: the operations
    /// that take a [`Held`] run under it, and the sync waits for it.
    pub async fn hold(&self, id: &str) -> Held {
        let lock = {
            let mut m = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            m.retain(|_, l| Arc::strong_count(l) > 1);
            m.entry(id.to_string()).or_default().clone()
        };
        Held(lock.lock_owned().await)
    }

    /// What server `s` boots with: its flavor, and its root disk or its volumes (boot volume
    /// first).
    pub async fn spec(&self, s: &ServerRec) -> Result<GuestSpec> {
        let int = |k: &str| {
            s.flavor
                .get(k)
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(1)
        };
        // A volume-backed server keeps its boot files where a root disk would be.
        let root = if s.root_disk.is_empty() {
            crate::driver::root_disk_of(&s.id)
        } else {
            s.root_disk.clone()
        };
        let kernel = crate::kernel_boot::read(&self.disks, &root).await;
        let disks = if s.root_disk.is_empty() {
            let mut vols = store::volumes_of_server(self.store.pool(), &s.id).await?;
            vols.sort_by(|a, b| a.device.cmp(&b.device));
            vols.iter()
                .map(|v| GuestDisk {
                    drive: volume_drive(&v.id),
                    path: self.disks.path(&v.disk),
                    format: "qcow2".into(),
                })
                .collect()
        } else {
            vec![GuestDisk {
                drive: ROOT_DRIVE.into(),
                path: self.disks.path(&s.root_disk),
                format: "qcow2".into(),
            }]
        };
        Ok(GuestSpec {
            id: s.id.clone(),
            vcpus: u32::try_from(int("vcpus")).unwrap_or(1).max(1),
            ram_mb: u64::try_from(int("ram")).unwrap_or(64).max(64),
            disks,
            kernel,
        })
    }

    /// Boots the guest of server `id` if the server is ACTIVE. A guest that does not boot leaves
    /// its server ERROR with a fault saying why, as a failed spawn does upstream.
    pub async fn boot(&self, id: &str) -> Result<()> {
        let held = self.hold(id).await;
        self.boot_held(&held, id).await
    }

    /// [`Guests::boot`] for a caller that holds the guest already.
    pub async fn boot_held(&self, _: &Held, id: &str) -> Result<()> {
        let Some(s) = store::server_get(self.store.pool(), id).await? else {
            return Ok(());
        };
        if s.vm_state != VmState::Active {
            return Ok(());
        }
        let spec = self.spec(&s).await?;
        if let Err(e) = self.driver.start(&spec).await {
            tracing::error!(server = %id, "the guest did not boot: {e}");
            let message = format!("Guest of instance {id} did not boot: {e}");
            let mut w = self.store.write().await?;
            store::server_fail_task(w.conn(), id, &message, now_micros()).await?;
            self.store.commit(w).await?;
        }
        Ok(())
    }

    /// Stops the guest of server `id`: asked to power off first unless `hard`.
    pub async fn stop(&self, _: &Held, id: &str, hard: bool) -> Result<()> {
        let grace = if hard {
            Duration::ZERO
        } else {
            self.grace_of(id).await?
        };
        Ok(self.driver.stop(id, grace).await?)
    }

    /// How long server `id`'s guest has to power off: its image's `os_shutdown_timeout` (whole
    /// seconds, upstream's image property; at most the node's `shutdown_timeout`), else the
    /// node's `shutdown_timeout`.
    async fn grace_of(&self, id: &str) -> Result<Duration> {
        let image = match store::server_get(self.store.pool(), id).await? {
            Some(s) if !s.image_id.is_empty() => {
                store::image_get(self.store.pool(), &s.image_id).await?
            }
            _ => None,
        };
        let own = image.and_then(|i| {
            let v = i.properties.get("os_shutdown_timeout")?;
            v.as_u64().or_else(|| v.as_str()?.trim().parse().ok())
        });
        Ok(own.map_or(self.shutdown_timeout, |secs| {
            Duration::from_secs(secs).min(self.shutdown_timeout)
        }))
    }

    /// Whether servers here are guests, whose power actions take time (see `Guests::power_off`).
    pub fn runs_guests(&self) -> bool {
        self.driver.runs_guests()
    }

    /// Powers the guest of server `id` off (ACPI, then hard after the grace time), then records
    /// the server SHUTOFF, ending its `powering-off` task.
    pub async fn power_off(&self, held: &Held, id: &str) -> Result<()> {
        self.stop(held, id, false).await?;
        self.end_power_task(
            id,
            TaskState::PoweringOff,
            VmState::Stopped,
            PowerState::Shutdown,
        )
        .await
    }

    /// Powers the guest of server `id` off and boots it again, then ends its `rebooting` task.
    pub async fn reboot_soft(&self, held: &Held, id: &str) -> Result<()> {
        self.stop(held, id, false).await?;
        self.boot_held(held, id).await?;
        self.end_power_task(
            id,
            TaskState::Rebooting,
            VmState::Active,
            PowerState::Running,
        )
        .await
    }

    async fn end_power_task(
        &self,
        id: &str,
        task: TaskState,
        vm_state: VmState,
        power_state: PowerState,
    ) -> Result<()> {
        let t = Transition {
            from: &[VmState::Active, VmState::Error],
            from_task: Some(task),
            vm_state,
            task_state: None,
            power_state,
        };
        let mut w = self.store.write().await?;
        store::server_transition(w.conn(), id, &t, now_micros()).await?;
        Ok(self.store.commit(w).await?)
    }

    pub async fn set_paused(&self, _: &Held, id: &str, paused: bool) -> Result<()> {
        Ok(self.driver.set_paused(id, paused).await?)
    }

    /// Stops the guest and removes what the driver keeps for it.
    pub async fn destroy(&self, id: &str) -> Result<()> {
        let _held = self.hold(id).await;
        Ok(self.driver.destroy(id).await?)
    }

    /// Copies the qcow2 chain `src` of server `id`'s root disk into one qcow2 `dst`, consistent
    /// at one point. A running guest runs on: QEMU copies its disk as of the copy's start, each
    /// block before the guest overwrites it (see `ComputeDriver::backup`); a guest that is not
    /// running has its files copied.
    pub async fn copy_disk(&self, id: &str, src: &Path, dst: &Path) -> Result<()> {
        use stratus_blob::format::{convert, convert_shared, DiskFormat::Qcow2};
        let _held = self.hold(id).await;
        let copy_err = |e: stratus_blob::format::FormatError| {
            ServiceError::Internal(format!("copying the disk: {e}"))
        };
        match self.state(id).await? {
            None | Some(GuestState::Off) => convert(src, Qcow2, dst, Qcow2).await.map_err(copy_err),
            Some(GuestState::Paused) => convert_shared(src, Qcow2, dst, Qcow2)
                .await
                .map_err(copy_err),
            Some(GuestState::Running) => {
                if self.driver.backup(id, ROOT_DRIVE, dst).await? {
                    Ok(())
                } else {
                    convert(src, Qcow2, dst, Qcow2).await.map_err(copy_err)
                }
            }
        }
    }

    /// Ends the disk copies a [`Guests::copy_disk`] that did not finish left in the guest.
    pub async fn end_copies(&self, id: &str) -> Result<()> {
        Ok(self.driver.end_backups(id).await?)
    }

    /// Whether server `id` has a guest process (running or paused) that holds its disks open.
    pub async fn is_live(&self, id: &str) -> Result<bool> {
        Ok(matches!(
            self.state(id).await?,
            Some(GuestState::Running | GuestState::Paused)
        ))
    }

    /// The file the guest of server `id` writes for volume `volume`, while it runs.
    pub async fn volume_top(&self, id: &str, volume: &str) -> Result<Option<PathBuf>> {
        Ok(self.driver.top_of(id, &volume_drive(volume)).await?)
    }

    /// Moves the running guest of server `id` onto the new top layer `top` of volume `volume`,
    /// over the old top now named `backing` (see `ComputeDriver::switch_top`).
    pub async fn switch_volume_top(
        &self,
        id: &str,
        volume: &str,
        top: &Path,
        backing: &Path,
    ) -> Result<()> {
        let drive = volume_drive(volume);
        Ok(self.driver.switch_top(id, &drive, top, backing).await?)
    }

    /// The last `lines` lines of the guest's console.
    pub async fn console(&self, id: &str, lines: Option<usize>) -> Result<String> {
        Ok(self.driver.console(id, lines).await?)
    }

    /// The power state the hypervisor reports, when the driver runs guests.
    pub async fn state(&self, id: &str) -> Result<Option<GuestState>> {
        Ok(self.driver.state(id).await?)
    }

    /// Brings records in line with the guests: a server recorded ACTIVE or PAUSED, with no task,
    /// whose guest is not running becomes SHUTOFF; a guest whose server is gone is destroyed.
    /// Returns the servers moved to SHUTOFF.
    pub async fn sync(&self) -> Result<Vec<String>> {
        self.sync_with(false).await
    }

    /// [`Guests::sync`]; with `resume`, a server recorded ACTIVE whose guest is gone has it
    /// booted again instead of becoming SHUTOFF (a paused or suspended one, whose memory is
    /// lost, still becomes SHUTOFF). Returns the servers moved to SHUTOFF.
    pub async fn sync_with(&self, resume: bool) -> Result<Vec<String>> {
        let mut stopped = Vec::new();
        for id in self.driver.guests().await? {
            let Some(s) = store::server_get(self.store.pool(), &id).await? else {
                tracing::info!(server = %id, "destroying the guest of a deleted server");
                self.destroy(&id).await?;
                continue;
            };
            let held = self.hold(&id).await;
            // As it is now that no operation on it runs.
            let Some(s) = store::server_get(self.store.pool(), &s.id).await? else {
                continue;
            };
            // A stop or soft reboot whose process was killed before it ended: finished now.
            match s.task_state {
                Some(TaskState::PoweringOff) => {
                    self.power_off(&held, &id).await?;
                    continue;
                }
                Some(TaskState::Rebooting) => {
                    if self.state(&id).await? == Some(GuestState::Off) {
                        self.boot_held(&held, &id).await?;
                    }
                    self.end_power_task(
                        &id,
                        TaskState::Rebooting,
                        VmState::Active,
                        PowerState::Running,
                    )
                    .await?;
                    continue;
                }
                _ => {}
            }
            let live = [VmState::Active, VmState::Paused, VmState::Suspended];
            if s.task_state.is_some() || !live.contains(&s.vm_state) {
                continue;
            }
            // A guest left paused or running against its record (a copy cut short by a crash,
            // say) follows the record.
            let want_paused = s.vm_state != VmState::Active;
            match self.state(&id).await? {
                None => continue,
                Some(GuestState::Off) => {}
                Some(GuestState::Paused) if !want_paused => {
                    tracing::warn!(server = %id, "resuming a guest its record says is active");
                    self.driver.set_paused(&id, false).await?;
                    continue;
                }
                Some(GuestState::Running) if want_paused => {
                    self.driver.set_paused(&id, true).await?;
                    continue;
                }
                Some(_) => continue,
            }
            if resume && s.vm_state == VmState::Active {
                tracing::info!(server = %id, "booting the guest again, as it ran before");
                self.boot_held(&held, &id).await?;
                continue;
            }
            let t = Transition {
                from: &live,
                from_task: None,
                vm_state: VmState::Stopped,
                task_state: None,
                power_state: PowerState::Shutdown,
            };
            let mut w = self.store.write().await?;
            let moved = store::server_transition(w.conn(), &id, &t, now_micros()).await?;
            self.store.commit(w).await?;
            if moved {
                tracing::warn!(server = %id, "the guest is not running: the server is SHUTOFF");
                stopped.push(id);
            }
        }
        Ok(stopped)
    }

    /// Runs [`Guests::sync`] now and then every `every`, until the task is aborted; the first
    /// run boots dead guests again instead if `resume_on_start` (a node coming back up), the
    /// later ones never (a guest that dies while the node runs is SHUTOFF, as upstream).
    pub fn spawn_sync(
        self: &Arc<Self>,
        every: Duration,
        resume_on_start: bool,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut resume = resume_on_start;
            loop {
                if let Err(e) = me.sync_with(resume).await {
                    tracing::warn!("syncing the guests' power states failed: {e}");
                }
                resume = false;
                tokio::time::sleep(every).await;
            }
        })
    }
}
