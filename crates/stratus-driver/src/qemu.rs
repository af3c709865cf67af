//! Guests as `qemu-system-x86_64` processes, one a running server.
//!
//! Each guest has a directory `<dir>/<server id>/` holding its QMP socket (`qmp.sock`), its pid
//! file (`qemu.pid`) and its serial console (`console.log`, appended to across boots and cut to
//! its last [`CONSOLE_KEEP`] bytes at each boot). QEMU runs in a session of its own: a guest keeps running when
//! `stratus serve` stops or dies, and a new driver over the same directory finds it again by its
//! pid file and QMP socket. A guest that powers off ends its process, so "off" is "no process".

use crate::accel::{escape, Accel};
use crate::qmp::Qmp;
use crate::{ComputeDriver, DriverError, GuestSpec, GuestState, Result};
use futures::future::BoxFuture;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The console log kept across boots.
pub const CONSOLE_KEEP: u64 = 256 << 10;
/// The console log read for `console`, at most.
const CONSOLE_READ: u64 = 1 << 20;
/// A UNIX socket path's limit (`sun_path`).
const SOCKET_PATH_MAX: usize = 107;
/// How long QEMU has to get ready.
const START_WAIT: Duration = Duration::from_secs(60);
/// How long QEMU has to exit after `quit`, and then after SIGKILL.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// The job and node names of this driver's disk copies (`blockdev-backup`), then the drive's.
const BACKUP_PREFIX: &str = "stratus-backup-";
/// How long a cancelled copy has to end.
const BACKUP_END_WAIT: Duration = Duration::from_secs(30);

pub struct QemuDriver {
    dir: PathBuf,
    binary: PathBuf,
    accel: Accel,
}

impl QemuDriver {
    /// A driver keeping its guests under `dir`, running `binary` (or `qemu-system-x86_64` from
    /// `PATH`) with `accel`, or with the accelerator a probe finds.
    pub async fn new(dir: PathBuf, binary: Option<PathBuf>, accel: Option<Accel>) -> Result<Self> {
        let binary = match binary {
            Some(b) => b,
            None => find_qemu().ok_or_else(|| {
                DriverError::Unavailable(
                    "qemu-system-x86_64 is not installed (Debian: apt-get install qemu-system-x86)"
                        .into(),
                )
            })?,
        };
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(DriverError::io(format!("creating {}", dir.display())))?;
        let accel = match accel {
            Some(a) => a,
            None => crate::accel::probe_once(&binary, &dir).await?,
        };
        Ok(QemuDriver { dir, binary, accel })
    }

    pub fn accel(&self) -> Accel {
        self.accel
    }

    fn guest_dir(&self, id: &str) -> Result<PathBuf> {
        // Ids are the services' UUIDs; anything else never names a path.
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(DriverError::Failed(format!("invalid guest id {id:?}")));
        }
        Ok(self.dir.join(id))
    }

    /// The pid of the guest's QEMU, if that process is alive and is this guest's.
    fn alive(&self, id: &str) -> Result<Option<i32>> {
        let pidfile = self.guest_dir(id)?.join("qemu.pid");
        let Ok(text) = std::fs::read_to_string(&pidfile) else {
            return Ok(None);
        };
        let Ok(pid) = text.trim().parse::<i32>() else {
            return Ok(None);
        };
        if pid <= 0 {
            return Ok(None);
        }
        // A pid reused by another process is not this guest.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let ours = String::from_utf8_lossy(&cmdline).contains(id);
        // SAFETY: signal 0 only checks that the process exists.
        let exists = unsafe { libc::kill(pid, 0) } == 0;
        Ok((ours && exists).then_some(pid))
    }

    async fn qmp(&self, id: &str) -> Result<Qmp> {
        let sock = self.guest_dir(id)?.join("qmp.sock");
        Qmp::connect(&sock)
            .await
            .map_err(DriverError::io(format!("QMP of guest {id}")))
    }

    async fn wait_gone(&self, id: &str, limit: Duration) -> Result<bool> {
        let start = Instant::now();
        loop {
            if self.alive(id)?.is_none() {
                return Ok(true);
            }
            if start.elapsed() >= limit {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn start_guest(&self, spec: &GuestSpec) -> Result<()> {
        if self.alive(&spec.id)?.is_some() {
            return Ok(());
        }
        let dir = self.guest_dir(&spec.id)?;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(DriverError::io(format!("creating {}", dir.display())))?;
        let sock = dir.join("qmp.sock");
        if sock.as_os_str().len() > SOCKET_PATH_MAX {
            return Err(DriverError::Failed(format!(
                "the QMP socket path {} is longer than {SOCKET_PATH_MAX} bytes; use a shorter data dir",
                sock.display()
            )));
        }
        let _ = tokio::fs::remove_file(&sock).await;
        let _ = tokio::fs::remove_file(dir.join("qemu.pid")).await;
        let console = dir.join("console.log");
        trim_console(&console).await?;
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.args(["-name", &spec.id, "-accel", self.accel.as_str()])
            .args([
                "-m",
                &spec.ram_mb.to_string(),
                "-smp",
                &spec.vcpus.to_string(),
            ])
            .args([
                "-no-user-config",
                "-nographic",
                "-vga",
                "none",
                "-monitor",
                "none",
            ])
            .args(["-nic", "none", "-chardev"])
            .arg(format!(
                "file,id=console,path={},append=on",
                escape(&console)
            ))
            .args(["-serial", "chardev:console", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", escape(&sock)))
            .arg("-pidfile")
            .arg(dir.join("qemu.pid"));
        for d in &spec.disks {
            if d.format != "qcow2" && d.format != "raw" {
                return Err(DriverError::Failed(format!("disk format {:?}", d.format)));
            }
            let name_ok = d.drive.starts_with(|c: char| c.is_ascii_alphabetic())
                && d.drive
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !name_ok {
                return Err(DriverError::Failed(format!("drive name {:?}", d.drive)));
            }
            cmd.arg("-drive").arg(format!(
                "file={},format={},if=virtio,cache=writeback,id={}",
                escape(&d.path),
                d.format,
                d.drive
            ));
        }
        if let Some(k) = &spec.kernel {
            cmd.arg("-kernel").arg(&k.kernel);
            if let Some(initrd) = &k.initrd {
                cmd.arg("-initrd").arg(initrd);
            }
            cmd.arg("-append").arg(&k.cmdline);
        }
        let log_path = dir.join("qemu.log");
        let log = std::fs::File::create(&log_path)
            .map_err(DriverError::io(format!("creating {}", log_path.display())))?;
        // A session of its own, so that the guest outlives `stratus serve` (and no signal to
        // its process group reaches it); QEMU's own messages go to `qemu.log`.
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(DriverError::io(format!(
                "running {}",
                self.binary.display()
            )))?;
        let start = Instant::now();
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                let err = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(DriverError::Failed(format!(
                    "QEMU refused to start guest {}: {}",
                    spec.id,
                    err.trim()
                )));
            }
            // Ready once it listens on QMP and wrote its pid; the child is reaped when it ends.
            if sock.exists() && self.alive(&spec.id)?.is_some() {
                return Ok(());
            }
            if start.elapsed() > START_WAIT {
                let _ = child.kill().await;
                return Err(DriverError::Failed(format!(
                    "guest {} did not start in {} s",
                    spec.id,
                    START_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop_guest(&self, id: &str, grace: Duration) -> Result<()> {
        if let Some(pid) = self.alive(id)? {
            if !grace.is_zero() {
                if let Ok(mut q) = self.qmp(id).await {
                    let _ = q.execute("system_powerdown", None).await;
                }
            }
            if !self.wait_gone(id, grace).await? {
                if let Ok(mut q) = self.qmp(id).await {
                    // QEMU may close the socket before it answers `quit`.
                    let _ = q.execute("quit", None).await;
                }
                if !self.wait_gone(id, EXIT_WAIT).await? {
                    // SAFETY: `pid` is this guest's QEMU (checked by `alive`).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    if !self.wait_gone(id, EXIT_WAIT).await? {
                        return Err(DriverError::Failed(format!("guest {id} does not stop")));
                    }
                }
            }
        }
        let dir = self.guest_dir(id)?;
        let _ = tokio::fs::remove_file(dir.join("qmp.sock")).await;
        let _ = tokio::fs::remove_file(dir.join("qemu.pid")).await;
        Ok(())
    }

    async fn guest_state(&self, id: &str) -> Result<GuestState> {
        if self.alive(id)?.is_none() {
            return Ok(GuestState::Off);
        }
        let mut q = self.qmp(id).await?;
        let st = q.execute("query-status", None).await?;
        Ok(match st["status"].as_str().unwrap_or("") {
            "running" => GuestState::Running,
            "shutdown" | "internal-error" | "guest-panicked" => GuestState::Off,
            _ => GuestState::Paused,
        })
    }

    /// The `inserted` block of `drive` in `query-block`.
    async fn drive_info(q: &mut Qmp, drive: &str) -> Result<Value> {
        let blocks = q.execute("query-block", None).await?;
        blocks
            .as_array()
            .and_then(|a| a.iter().find(|b| b["device"] == drive))
            .map(|b| b["inserted"].clone())
            .filter(|i| i.is_object())
            .ok_or_else(|| DriverError::Failed(format!("the guest has no drive {drive}")))
    }

    async fn top(&self, id: &str, drive: &str) -> Result<Option<PathBuf>> {
        if self.alive(id)?.is_none() {
            return Ok(None);
        }
        let mut q = self.qmp(id).await?;
        let info = Self::drive_info(&mut q, drive).await?;
        Ok(top_file(&info))
    }

    async fn switch(&self, id: &str, drive: &str, top: &Path, backing: &Path) -> Result<()> {
        let mut q = self.qmp(id).await?;
        let info = Self::drive_info(&mut q, drive).await?;
        let on_top = top_file(&info).as_deref() == Some(top);
        if !on_top {
            // A file left by an attempt that did not switch is made again.
            let _ = tokio::fs::remove_file(top).await;
            let args = serde_json::json!({
                "device": drive, "snapshot-file": top.to_string_lossy(),
                "format": "qcow2", "mode": "absolute-paths",
            });
            q.execute("blockdev-snapshot-sync", Some(args)).await?;
        }
        let info = Self::drive_info(&mut q, drive).await?;
        let node = info["node-name"]
            .as_str()
            .ok_or_else(|| DriverError::Failed(format!("drive {drive} has no node name")))?;
        let args = serde_json::json!({
            "device": drive, "image-node-name": node, "backing-file": backing.to_string_lossy(),
        });
        q.execute("change-backing-file", Some(args)).await?;
        Ok(())
    }

    async fn backup_drive(&self, id: &str, drive: &str, target: &Path) -> Result<bool> {
        if self.alive(id)?.is_none() {
            return Ok(false);
        }
        let mut q = self.qmp(id).await?;
        Self::end_backup_jobs(&mut q).await?;
        let info = Self::drive_info(&mut q, drive).await?;
        let size = info["image"]["virtual-size"]
            .as_u64()
            .ok_or_else(|| DriverError::Failed(format!("drive {drive} has no size")))?;
        let _ = tokio::fs::remove_file(target).await;
        let made = tokio::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(target)
            .arg(size.to_string())
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(DriverError::io("running qemu-img"))?;
        if !made.status.success() {
            return Err(DriverError::Failed(format!(
                "qemu-img create {}: {}",
                target.display(),
                String::from_utf8_lossy(&made.stderr).trim()
            )));
        }
        let node = format!("{BACKUP_PREFIX}{drive}");
        // Zeros the guest never wrote stay unallocated in the copy.
        let add = serde_json::json!({
            "node-name": node, "driver": "qcow2", "discard": "unmap", "detect-zeroes": "unmap",
            "file": {"driver": "file", "filename": target.to_string_lossy()},
        });
        q.execute("blockdev-add", Some(add)).await?;
        let copied = Self::run_backup(&mut q, drive, &node).await;
        let ended = Self::end_backup_jobs(&mut q).await;
        copied?;
        ended?;
        Ok(true)
    }

    /// Starts the copy of `drive` into node `node` and waits for it to conclude.
    async fn run_backup(q: &mut Qmp, drive: &str, node: &str) -> Result<()> {
        let args = serde_json::json!({
            "job-id": node, "device": drive, "target": node, "sync": "full",
            "auto-dismiss": false,
        });
        q.execute("blockdev-backup", Some(args)).await?;
        loop {
            let jobs = q.execute("query-jobs", None).await?;
            let job = jobs
                .as_array()
                .and_then(|a| a.iter().find(|j| j["id"] == node))
                .cloned()
                .ok_or_else(|| DriverError::Failed(format!("the copy job {node} is gone")))?;
            if job["status"] == "concluded" {
                return match job["error"].as_str() {
                    Some(e) => Err(DriverError::Failed(format!("copying {drive}: {e}"))),
                    None => Ok(()),
                };
            }
            q.take_events();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Cancels, waits for and dismisses the copy jobs of this driver, then removes their target
    /// nodes (which closes the targets' files).
    async fn end_backup_jobs(q: &mut Qmp) -> Result<()> {
        let start = Instant::now();
        loop {
            let jobs = q.execute("query-jobs", None).await?;
            let ours: Vec<Value> = jobs
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|j| {
                            j["id"]
                                .as_str()
                                .is_some_and(|i| i.starts_with(BACKUP_PREFIX))
                        })
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if ours.is_empty() {
                break;
            }
            for j in &ours {
                let id = serde_json::json!({"id": j["id"]});
                if j["status"] == "concluded" {
                    q.execute("job-dismiss", Some(id)).await?;
                } else {
                    // Refused once the job is aborting already.
                    let _ = q.execute("job-cancel", Some(id)).await;
                }
            }
            if start.elapsed() > BACKUP_END_WAIT {
                return Err(DriverError::Failed("a copy job does not end".into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let nodes = q.execute("query-named-block-nodes", None).await?;
        let names: Vec<String> = nodes
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n["node-name"].as_str())
                    .filter(|n| n.starts_with(BACKUP_PREFIX))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        for n in names {
            q.execute("blockdev-del", Some(serde_json::json!({"node-name": n})))
                .await?;
        }
        Ok(())
    }

    async fn end_backups_of(&self, id: &str) -> Result<()> {
        if self.alive(id)?.is_none() {
            return Ok(());
        }
        let mut q = self.qmp(id).await?;
        Self::end_backup_jobs(&mut q).await
    }

    async fn read_console(&self, id: &str, lines: Option<usize>) -> Result<String> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let path = self.guest_dir(id)?.join("console.log");
        let Ok(mut f) = tokio::fs::File::open(&path).await else {
            return Ok(String::new());
        };
        let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
        let from = len.saturating_sub(CONSOLE_READ);
        f.seek(std::io::SeekFrom::Start(from))
            .await
            .map_err(DriverError::io("reading the console"))?;
        let mut buf = Vec::new();
        f.take(CONSOLE_READ)
            .read_to_end(&mut buf)
            .await
            .map_err(DriverError::io("reading the console"))?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        Ok(match lines {
            None => text,
            Some(n) => {
                let all: Vec<&str> = text.split_inclusive('\n').collect();
                all[all.len().saturating_sub(n)..].concat()
            }
        })
    }
}

/// The file of a drive's top layer. QEMU names a layer whose backing differs from what its
/// header says (after `change-backing-file`) by a `json:{...}` description of the chain, whose
/// `file.filename` is the top's file.
fn top_file(inserted: &Value) -> Option<PathBuf> {
    let name = inserted["file"].as_str()?;
    match name.strip_prefix("json:") {
        Some(desc) => {
            let v: Value = serde_json::from_str(desc).ok()?;
            v["file"]["filename"].as_str().map(PathBuf::from)
        }
        None => Some(PathBuf::from(name)),
    }
}

/// Keeps the last [`CONSOLE_KEEP`] bytes of a console log before a boot appends to it.
async fn trim_console(path: &Path) -> Result<()> {
    let Ok(meta) = tokio::fs::metadata(path).await else {
        return Ok(());
    };
    if meta.len() <= CONSOLE_KEEP {
        return Ok(());
    }
    let data = tokio::fs::read(path)
        .await
        .map_err(DriverError::io("reading the console"))?;
    let keep = &data[data.len() - CONSOLE_KEEP as usize..];
    tokio::fs::write(path, keep)
        .await
        .map_err(DriverError::io("trimming the console"))
}

/// `qemu-system-x86_64` on `PATH`, if it is installed.
pub fn find_qemu() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("qemu-system-x86_64"))
            .find(|p| p.is_file())
    })
}

impl ComputeDriver for QemuDriver {
    fn describe(&self) -> String {
        format!("qemu ({})", self.accel.as_str())
    }

    fn start<'a>(&'a self, spec: &'a GuestSpec) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.start_guest(spec))
    }

    fn stop<'a>(&'a self, id: &'a str, grace: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.stop_guest(id, grace))
    }

    fn set_paused<'a>(&'a self, id: &'a str, paused: bool) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut q = self.qmp(id).await?;
            q.execute(if paused { "stop" } else { "cont" }, None)
                .await
                .map(|_: Value| ())
        })
    }

    fn state<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<GuestState>>> {
        Box::pin(async move { self.guest_state(id).await.map(Some) })
    }

    fn console<'a>(&'a self, id: &'a str, lines: Option<usize>) -> BoxFuture<'a, Result<String>> {
        Box::pin(self.read_console(id, lines))
    }

    fn destroy<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.stop_guest(id, Duration::ZERO).await?;
            let dir = self.guest_dir(id)?;
            match tokio::fs::remove_dir_all(&dir).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(DriverError::io(format!("removing {}", dir.display()))(e))
                }
                _ => Ok(()),
            }
        })
    }

    fn guests(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut dir = match tokio::fs::read_dir(&self.dir).await {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(DriverError::io("listing the guests")(e)),
            };
            while let Some(e) = dir
                .next_entry()
                .await
                .map_err(DriverError::io("listing the guests"))?
            {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.path().is_dir() && name != "accel-probe" && self.guest_dir(&name).is_ok() {
                    out.push(name);
                }
            }
            out.sort();
            Ok(out)
        })
    }

    fn top_of<'a>(&'a self, id: &'a str, drive: &'a str) -> BoxFuture<'a, Result<Option<PathBuf>>> {
        Box::pin(self.top(id, drive))
    }

    fn switch_top<'a>(
        &'a self,
        id: &'a str,
        drive: &'a str,
        top: &'a Path,
        backing: &'a Path,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.switch(id, drive, top, backing))
    }

    fn backup<'a>(
        &'a self,
        id: &'a str,
        drive: &'a str,
        target: &'a Path,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.backup_drive(id, drive, target))
    }

    fn end_backups<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.end_backups_of(id))
    }
}
