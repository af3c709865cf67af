//! Which accelerator runs guests here. `/dev/kvm` proves nothing (a nested hypervisor may offer
//! the device and still fail every guest, or run it slower than emulation), so KVM is tried: a
//! boot sector that does what a kernel does first (enter 64-bit long mode with paging, touch
//! memory, compute for a while; `probe.S`) must print its marker on the serial console within a
//! few seconds under `-accel kvm`, and QEMU must still be running after it. Otherwise guests run
//! under TCG. (A real-mode greeting alone is not enough: on a paravirtual nested hypervisor it
//! prints under KVM while a Linux kernel never gets past its decompressor.)

use crate::{DriverError, Result};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    pub fn parse(s: &str) -> Option<Accel> {
        match s {
            "kvm" => Some(Accel::Kvm),
            "tcg" => Some(Accel::Tcg),
            _ => None,
        }
    }
}

/// The probe's boot sector (assembled from `probe.S`, up to its last non-zero byte).
const PROBE_CODE: &[u8] = &[
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0xe4, 0x92, 0x0c, 0x02,
    0xe6, 0x92, 0xbf, 0x00, 0x10, 0xb9, 0x00, 0x18, 0x31, 0xc0, 0xf3, 0xab, 0x66, 0xc7, 0x06, 0x00,
    0x10, 0x03, 0x20, 0x00, 0x00, 0x66, 0xc7, 0x06, 0x00, 0x20, 0x03, 0x30, 0x00, 0x00, 0xbf, 0x00,
    0x30, 0x66, 0xb8, 0x83, 0x00, 0x00, 0x00, 0xb9, 0x20, 0x00, 0x66, 0x89, 0x05, 0x66, 0x05, 0x00,
    0x00, 0x20, 0x00, 0x83, 0xc7, 0x08, 0xe2, 0xf2, 0x0f, 0x01, 0x16, 0xe8, 0x7c, 0x0f, 0x20, 0xe0,
    0x66, 0x83, 0xc8, 0x20, 0x0f, 0x22, 0xe0, 0x66, 0xb8, 0x00, 0x10, 0x00, 0x00, 0x0f, 0x22, 0xd8,
    0x66, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32, 0x66, 0x0d, 0x00, 0x01, 0x00, 0x00, 0x0f, 0x30,
    0x0f, 0x20, 0xc0, 0x66, 0x0d, 0x01, 0x00, 0x00, 0x80, 0x0f, 0x22, 0xc0, 0xea, 0x81, 0x7c, 0x08,
    0x00, 0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0x48, 0xc7, 0xc7, 0x00, 0x00,
    0x80, 0x00, 0x48, 0xc7, 0xc1, 0x00, 0x20, 0x00, 0x00, 0x48, 0x89, 0x3f, 0x48, 0x81, 0xc7, 0x00,
    0x10, 0x00, 0x00, 0x48, 0xff, 0xc9, 0x75, 0xf1, 0x48, 0xc7, 0xc1, 0x00, 0xa3, 0xe1, 0x11, 0x48,
    0xff, 0xc9, 0x75, 0xfb, 0x48, 0x8d, 0x35, 0x33, 0x00, 0x00, 0x00, 0x66, 0xba, 0xf8, 0x03, 0xac,
    0x84, 0xc0, 0x74, 0x03, 0xee, 0xeb, 0xf8, 0xf4, 0xeb, 0xfd, 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x9a, 0x20, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x92, 0x00, 0x00, 0x17, 0x00, 0xd0, 0x7c, 0x00, 0x00, 0x73, 0x74,
    0x72, 0x61, 0x74, 0x75, 0x73, 0x20, 0x70, 0x72, 0x6f, 0x62, 0x65, 0x3a, 0x20, 0x6c, 0x6f, 0x6e,
    0x67, 0x20, 0x6d, 0x6f, 0x64, 0x65, 0x0d, 0x0a,
];

/// What the probe prints once done.
pub const PROBE_MARKER: &str = "stratus probe: long mode";

/// The probe's bootable disk: its code, then the boot signature.
pub fn probe_sector() -> [u8; 512] {
    let mut s = [0u8; 512];
    s[..PROBE_CODE.len()].copy_from_slice(PROBE_CODE);
    s[510] = 0x55;
    s[511] = 0xaa;
    s
}

/// How long KVM has to print the marker (TCG takes about a second here, real KVM a fraction).
const PROBE_TIME: Duration = Duration::from_secs(5);

/// Boots the probe sector under KVM in `work` (a scratch directory, removed after) and
/// answers KVM if it printed its marker in time and kept running, TCG otherwise.
pub async fn probe(binary: &Path, work: &Path) -> Result<Accel> {
    let dir = work.join("accel-probe");
    let _ = tokio::fs::remove_dir_all(&dir).await;
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(DriverError::io(format!("creating {}", dir.display())))?;
    let mut disk = probe_sector().to_vec();
    disk.resize(1 << 20, 0);
    let disk_path = dir.join("disk.raw");
    let console = dir.join("console.log");
    tokio::fs::write(&disk_path, &disk)
        .await
        .map_err(DriverError::io("writing the probe disk"))?;
    let mut child = tokio::process::Command::new(binary)
        .args([
            "-accel",
            "kvm",
            "-m",
            "64",
            "-nic",
            "none",
            "-nographic",
            "-vga",
            "none",
        ])
        .args(["-monitor", "none", "-no-user-config", "-serial"])
        .arg(format!("file:{}", escape(&console)))
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", escape(&disk_path)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(DriverError::io(format!("running {}", binary.display())))?;
    let start = Instant::now();
    let mut accel = Accel::Tcg;
    while start.elapsed() < PROBE_TIME {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        let text = tokio::fs::read(&console).await.unwrap_or_default();
        if String::from_utf8_lossy(&text).contains(PROBE_MARKER) {
            accel = Accel::Kvm;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Still running after the marker: KVM works.
    if accel == Accel::Kvm && !matches!(child.try_wait(), Ok(None)) {
        accel = Accel::Tcg;
    }
    let _ = child.kill().await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    Ok(accel)
}

/// [`probe`], once per QEMU: the answer is kept in `work/accel` with the QEMU version it was
/// found with, and probed again when QEMU changes.
pub async fn probe_once(binary: &Path, work: &Path) -> Result<Accel> {
    let version = tokio::process::Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(DriverError::io(format!("running {}", binary.display())))?;
    let version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let cache = work.join("accel");
    if let Ok(text) = tokio::fs::read_to_string(&cache).await {
        if let Some((a, v)) = text.trim_end().split_once(' ') {
            if v == version {
                if let Some(a) = Accel::parse(a) {
                    return Ok(a);
                }
            }
        }
    }
    let a = probe(binary, work).await?;
    tokio::fs::write(&cache, format!("{} {version}\n", a.as_str()))
        .await
        .map_err(DriverError::io("keeping the accelerator"))?;
    Ok(a)
}

/// A path as a value in QEMU's option syntax, where a comma is written twice.
pub fn escape(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

#[cfg(test)]
mod tests {
    /// The bytes kept are the ones `probe.S` assembles to (binutils are where Rust links).
    #[test]
    fn the_probe_sector_is_its_source_assembled() {
        let dir = tempfile::tempdir().unwrap();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/probe.S");
        let obj = dir.path().join("probe.o");
        let bin = dir.path().join("probe.bin");
        let ok = std::process::Command::new("as")
            .arg("--64")
            .arg("-o")
            .arg(&obj)
            .arg(&src)
            .status()
            .unwrap();
        assert!(ok.success());
        let ok = std::process::Command::new("ld")
            .args(["-Ttext", "0x7c00", "--oformat", "binary", "-o"])
            .arg(&bin)
            .arg(&obj)
            .status()
            .unwrap();
        assert!(ok.success());
        assert_eq!(std::fs::read(&bin).unwrap(), super::probe_sector());
    }
}
