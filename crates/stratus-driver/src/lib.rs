//! Running guests. [`ComputeDriver`] is the seam between compute and what runs servers: services
//! call it, never QEMU. Two drivers: [`qemu::QemuDriver`], one supervised `qemu-system-x86_64`
//! process per running server (KVM where it really works, TCG otherwise), spoken to over QMP;
//! and [`NoGuests`], which runs nothing (servers are their disks alone).
//!
//! A guest is named by its server's id. Every operation is idempotent: starting a running guest,
//! stopping a stopped one or destroying a gone one succeeds, so that a saga step can run again.

pub mod accel;
pub mod qemu;
pub mod qmp;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The driver cannot run guests on this host (no QEMU binary, say).
    #[error("{0}")]
    Unavailable(String),
    /// QEMU refused to start the guest or failed a command.
    #[error("{0}")]
    Failed(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl DriverError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DriverError {
        let what = what.into();
        move |source| DriverError::Io { what, source }
    }
}

pub type Result<T> = std::result::Result<T, DriverError>;

/// What a guest runs with: its server's flavor and disks, the boot disk first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSpec {
    pub id: String,
    pub vcpus: u32,
    pub ram_mb: u64,
    pub disks: Vec<GuestDisk>,
    /// Direct kernel boot (a kernel, maybe an initial ramdisk, and the kernel's command line)
    /// instead of the boot disk's own boot loader.
    #[serde(default)]
    pub kernel: Option<KernelBoot>,
}

/// A guest booted from a kernel file, as Glance's `kernel_id`/`ramdisk_id`/`os_command_line`
/// image properties ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelBoot {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestDisk {
    /// The drive's name in QEMU (`root`, `vol-<volume id>`): a letter, then letters, digits,
    /// dashes.
    pub drive: String,
    pub path: PathBuf,
    /// `qcow2` or `raw`, always given (a disk's format is never probed).
    pub format: String,
}

/// A guest's power state as its hypervisor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestState {
    Running,
    Paused,
    /// No guest process (never started, stopped, or died).
    Off,
}

pub trait ComputeDriver: Send + Sync {
    /// What runs guests here, for the banner and the logs (`qemu (tcg)`, `none`).
    fn describe(&self) -> String;

    /// Whether servers here are guests (false: a server is its disks alone, and a power action
    /// is its record's change alone).
    fn runs_guests(&self) -> bool {
        true
    }

    /// Boots the guest; a guest already running (or paused) is left as it is.
    fn start<'a>(&'a self, spec: &'a GuestSpec) -> BoxFuture<'a, Result<()>>;

    /// Asks the guest to power off (ACPI) and waits up to `grace`; then stops it hard. A guest
    /// that is not running is already stopped.
    fn stop<'a>(&'a self, id: &'a str, grace: Duration) -> BoxFuture<'a, Result<()>>;

    /// Freezes the guest's vCPUs (`pause`), or lets them run again.
    fn set_paused<'a>(&'a self, id: &'a str, paused: bool) -> BoxFuture<'a, Result<()>>;

    /// The guest's power state; `None` from a driver that runs no guests.
    fn state<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<GuestState>>>;

    /// The last `lines` lines of the guest's serial console (all that is kept without a limit).
    fn console<'a>(&'a self, id: &'a str, lines: Option<usize>) -> BoxFuture<'a, Result<String>>;

    /// Stops the guest hard and removes everything the driver keeps for it (sockets, logs).
    fn destroy<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;

    /// The ids of the guests this driver keeps anything for, running or not.
    fn guests(&self) -> BoxFuture<'_, Result<Vec<String>>>;

    /// The file the running guest writes for `drive` (its top layer), if the guest runs.
    fn top_of<'a>(&'a self, id: &'a str, drive: &'a str) -> BoxFuture<'a, Result<Option<PathBuf>>>;

    /// Switches the running guest's `drive` to a new top layer `top`, a qcow2 file that QEMU
    /// creates over the current top at once (the guest's writes go to it from then on), then
    /// writes `backing` as the new layer's backing file name (the caller has linked the old top's
    /// file there). A drive already on `top` only gets its backing name written.
    fn switch_top<'a>(
        &'a self,
        id: &'a str,
        drive: &'a str,
        top: &'a Path,
        backing: &'a Path,
    ) -> BoxFuture<'a, Result<()>>;

    /// Copies the running guest's `drive` as it is now into `target`, a new qcow2 holding the
    /// whole disk (no backing file), while the guest runs on: QEMU's `blockdev-backup` with
    /// `sync=full` copies each block before the guest overwrites it, so the copy is of one
    /// point in time. Returns when the copy is complete. Copies that an earlier call left (a
    /// process killed mid-copy) are ended first. `false` if the guest does not run.
    fn backup<'a>(
        &'a self,
        id: &'a str,
        drive: &'a str,
        target: &'a Path,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Ends every copy [`ComputeDriver::backup`] left in the guest (cancelled if unfinished),
    /// releasing their targets. Nothing to do for a guest that does not run.
    fn end_backups<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;
}

/// A driver that runs no guest: a server is its disks, its power state its record alone.
pub struct NoGuests;

impl ComputeDriver for NoGuests {
    fn describe(&self) -> String {
        "none (disks only)".into()
    }

    fn runs_guests(&self) -> bool {
        false
    }

    fn start<'a>(&'a self, _: &'a GuestSpec) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn stop<'a>(&'a self, _: &'a str, _: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn set_paused<'a>(&'a self, _: &'a str, _: bool) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn state<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<GuestState>>> {
        Box::pin(async { Ok(None) })
    }

    fn console<'a>(&'a self, _: &'a str, _: Option<usize>) -> BoxFuture<'a, Result<String>> {
        Box::pin(async { Ok(String::new()) })
    }

    fn destroy<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn guests(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async { Ok(vec![]) })
    }

    fn top_of<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<Option<PathBuf>>> {
        Box::pin(async { Ok(None) })
    }

    fn switch_top<'a>(
        &'a self,
        id: &'a str,
        _: &'a str,
        _: &'a Path,
        _: &'a Path,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { Err(DriverError::Failed(format!("no guest {id} runs here"))) })
    }

    fn backup<'a>(&'a self, _: &'a str, _: &'a str, _: &'a Path) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async { Ok(false) })
    }

    fn end_backups<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// The demo disk's boot sector: 16-bit real-mode code loaded at 0x7c00 that prints
/// [`DEMO_GREETING`] with BIOS teletype (on the serial console when the guest has no display),
/// then halts. The accelerator probe boots it too.
pub fn demo_boot_sector() -> [u8; 512] {
    let code: [u8; 26] = [
        0x31, 0xc0, // xor ax, ax
        0x8e, 0xd8, // mov ds, ax
        0xbe, 0x1a, 0x7c, // mov si, 0x7c1a (the greeting)
        0xfc, // cld
        0xac, // .print: lodsb
        0x08, 0xc0, // or al, al
        0x74, 0x09, // jz .halt
        0xb4, 0x0e, // mov ah, 0x0e
        0xbb, 0x07, 0x00, // mov bx, 7
        0xcd, 0x10, // int 0x10
        0xeb, 0xf2, // jmp .print
        0xfa, // .halt: cli
        0xf4, // hlt
        0xeb, 0xfd, // jmp hlt
    ];
    let text = DEMO_GREETING.as_bytes();
    let mut s = [0u8; 512];
    s[..code.len()].copy_from_slice(&code);
    s[code.len()..code.len() + text.len()].copy_from_slice(text);
    s[code.len() + text.len()..code.len() + text.len() + 3].copy_from_slice(b"\r\n\0");
    s[510] = 0x55;
    s[511] = 0xaa;
    s
}

/// What the demo disk prints when it boots.
pub const DEMO_GREETING: &str = "stratus demo image: booted.";

/// What of [`DEMO_GREETING`] reaches the serial console for sure: the BIOS's serial console
/// holds back the last characters of a guest that halts with interrupts off.
pub const DEMO_MARKER: &str = "stratus demo image: booted";

#[cfg(test)]
mod tests {
    #[test]
    fn the_boot_sector_is_bootable_and_points_at_its_greeting() {
        let s = super::demo_boot_sector();
        assert_eq!(&s[510..], &[0x55, 0xaa]);
        // `mov si, imm16` loads the greeting's address at 0x7c00 + its offset.
        let at = u16::from_le_bytes([s[5], s[6]]) as usize - 0x7c00;
        assert!(s[at..].starts_with(b"stratus demo image"));
        // Both jumps land on instructions inside the code: jz +9 from 13 → 22 (cli), jmp -14 from
        // 22 → 8 (lodsb), jmp -3 from 26 → 23 (hlt).
        assert_eq!(s[13 + s[12] as usize], 0xfa);
        assert_eq!(s[(22 - 14) as usize], 0xac);
        assert_eq!(s[23], 0xf4);
    }
}
