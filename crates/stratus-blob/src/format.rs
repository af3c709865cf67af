//! Disk formats: what a file really is, checked against what its uploader declared, without
//! ever letting `qemu-img` probe an untrusted file.
//!
//! The header is read first (qcow2 and the other formats QEMU would recognise have magic bytes);
//! then `qemu-img info -f <declared>` runs under CPU-time and address-space limits. A qcow2 with
//! a backing file or an external data file is refused: either would make QEMU read files of
//! the host.

use serde_json::Value;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskInfo {
    pub format: DiskFormat,
    pub virtual_size: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("the data is {found}, not the declared {declared}")]
    Mismatch {
        declared: &'static str,
        found: &'static str,
    },
    #[error("qcow2 images with a backing file are refused (backing file {0:?})")]
    BackingFile(String),
    #[error("qcow2 images with an external data file are refused (data file {0:?})")]
    DataFile(String),
    #[error("the image could not be inspected: {0}")]
    Invalid(String),
    #[error("qemu-img failed: {0}")]
    Tool(String),
}

/// Magic bytes of the formats QEMU recognises, and their names.
const MAGICS: &[(usize, &[u8], &str)] = &[
    (0, b"QFI\xfb", "qcow2"),
    (0, b"KDMV", "vmdk"),
    (0, b"vhdxfile", "vhdx"),
    (0, b"conectix", "vpc"),
    (0, b"QED\0", "qed"),
    (0x40, b"\x7f\x10\xda\xbe", "vdi"),
    (0x8001, b"CD001", "iso"),
];

/// The format a header claims, if any.
fn sniff(header: &[u8]) -> Option<&'static str> {
    MAGICS
        .iter()
        .find(|(at, magic, _)| {
            header.len() >= at + magic.len() && &header[*at..at + magic.len()] == *magic
        })
        .map(|(_, _, name)| *name)
}

/// CPU seconds and address space `qemu-img` may use (Glance's and Nova's limits for inspecting
/// untrusted images: a crafted image cannot make it eat the host's memory or CPU).
const QEMU_IMG_CPU_SECONDS: u64 = 30;
const QEMU_IMG_ADDRESS_SPACE: u64 = 1 << 30;
/// Stack reserved per thread of `qemu-img` (glibc sizes thread stacks by `RLIMIT_STACK`, 8 MiB by
/// default). QEMU's block layer runs in coroutines with stacks of their own.
const QEMU_IMG_STACK: u64 = 2 << 20;

/// Runs `qemu-img` with `args` under a CPU-time limit of `cpu_seconds` (and twice that in wall
/// time) and the address-space limit; returns its standard output.
///
/// The address-space limit counts reserved, not used, memory. `qemu-img` runs I/O in a pool of up
/// to 64 threads, more of them the slower the machine answers; each reserves a stack and, with
/// glibc's default of one malloc arena per thread (up to 8 per core), a 64 MiB arena. A dozen
/// threads would exhaust 1 GiB and `qemu_thread_create` fails with EAGAIN. One arena and 2 MiB
/// stacks bound the whole pool to about 130 MiB, so the limit is left to do its job: stopping a
/// hostile image from making `qemu-img` allocate without bound.
async fn qemu_img(args: &[&std::ffi::OsStr], cpu_seconds: u64) -> Result<Vec<u8>, FormatError> {
    let mut cmd = tokio::process::Command::new("qemu-img");
    cmd.args(args)
        .env("MALLOC_ARENA_MAX", "1")
        .kill_on_drop(true);
    // SAFETY: only async-signal-safe calls (setrlimit, prctl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // If this process dies (even by SIGKILL), qemu-img dies with it: a convert must not
            // go on writing a file that a restarted process writes or removes.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let limit = |n: u64| libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            let stack = libc::rlimit {
                rlim_cur: QEMU_IMG_STACK,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_CPU, &limit(cpu_seconds)) != 0
                || libc::setrlimit(libc::RLIMIT_AS, &limit(QEMU_IMG_ADDRESS_SPACE)) != 0
                || libc::setrlimit(libc::RLIMIT_STACK, &stack) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = tokio::time::timeout(Duration::from_secs(cpu_seconds * 2), cmd.output())
        .await
        .map_err(|_| FormatError::Tool("qemu-img timed out".into()))?
        .map_err(|e| FormatError::Tool(format!("cannot run qemu-img: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(FormatError::Invalid(err));
    }
    Ok(out.stdout)
}

async fn qemu_img_info(path: &Path, format: DiskFormat) -> Result<Value, FormatError> {
    let out = qemu_img(
        &[
            "info".as_ref(),
            "--output=json".as_ref(),
            "-f".as_ref(),
            format.as_str().as_ref(),
            path.as_os_str(),
        ],
        QEMU_IMG_CPU_SECONDS,
    )
    .await?;
    serde_json::from_slice(&out)
        .map_err(|e| FormatError::Tool(format!("unreadable qemu-img output: {e}")))
}

/// CPU seconds a conversion may use (it copies whole disks).
const QEMU_IMG_CONVERT_CPU_SECONDS: u64 = 3600;

/// Writes the disk `src` (of format `from`, followed through its backing chain) as one
/// self-contained image `dst` of format `to` (`qemu-img convert`, formats always explicit).
pub async fn convert(
    src: &Path,
    from: DiskFormat,
    dst: &Path,
    to: DiskFormat,
) -> Result<(), FormatError> {
    qemu_img(
        &[
            "convert".as_ref(),
            "-f".as_ref(),
            from.as_str().as_ref(),
            "-O".as_ref(),
            to.as_str().as_ref(),
            src.as_os_str(),
            dst.as_os_str(),
        ],
        QEMU_IMG_CONVERT_CPU_SECONDS,
    )
    .await
    .map(|_| ())
}

/// Creates `path`, a qcow2 of `size` bytes whose unwritten clusters read from `backing` (of
/// format `backing_format`, named explicitly so QEMU never probes it).
pub async fn create_overlay(
    backing: &Path,
    backing_format: DiskFormat,
    path: &Path,
    size: u64,
) -> Result<(), FormatError> {
    qemu_img(
        &[
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "-b".as_ref(),
            backing.as_os_str(),
            "-F".as_ref(),
            backing_format.as_str().as_ref(),
            path.as_os_str(),
            size.to_string().as_ref(),
        ],
        QEMU_IMG_CPU_SECONDS,
    )
    .await
    .map(|_| ())
}

/// Creates `path`, an empty qcow2 of `size` bytes.
pub async fn create_blank(path: &Path, size: u64) -> Result<(), FormatError> {
    qemu_img(
        &[
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            path.as_os_str(),
            size.to_string().as_ref(),
        ],
        QEMU_IMG_CPU_SECONDS,
    )
    .await
    .map(|_| ())
}

impl DiskFormat {
    /// The format named `s` (Glance's `disk_format` values this cloud can run).
    pub fn parse(s: &str) -> Option<DiskFormat> {
        match s {
            "raw" => Some(DiskFormat::Raw),
            "qcow2" => Some(DiskFormat::Qcow2),
            _ => None,
        }
    }
}

/// Checks that the file at `path` is a safe image of the `declared` format; returns its
/// virtual size.
pub async fn inspect(path: &Path, declared: DiskFormat) -> Result<DiskInfo, FormatError> {
    let mut header = vec![0u8; 0x8010];
    let n = {
        use tokio::io::AsyncReadExt;
        let mut f = tokio::fs::File::open(path)
            .await
            .map_err(|e| FormatError::Tool(format!("cannot open {}: {e}", path.display())))?;
        let mut n = 0;
        loop {
            let k = f
                .read(&mut header[n..])
                .await
                .map_err(|e| FormatError::Tool(e.to_string()))?;
            if k == 0 || n + k == header.len() {
                break n + k;
            }
            n += k;
        }
    };
    header.truncate(n);
    let found = sniff(&header);
    match (declared, found) {
        (DiskFormat::Raw, None) | (DiskFormat::Qcow2, Some("qcow2")) => {}
        (DiskFormat::Raw, Some(f)) => {
            return Err(FormatError::Mismatch {
                declared: "raw",
                found: f,
            })
        }
        (DiskFormat::Qcow2, f) => {
            return Err(FormatError::Mismatch {
                declared: "qcow2",
                found: f.unwrap_or("raw"),
            })
        }
    }
    let info = qemu_img_info(path, declared).await?;
    for key in ["backing-filename", "full-backing-filename"] {
        if let Some(b) = info.get(key).and_then(Value::as_str) {
            return Err(FormatError::BackingFile(b.to_string()));
        }
    }
    if let Some(d) = info
        .pointer("/format-specific/data/data-file")
        .and_then(Value::as_str)
    {
        return Err(FormatError::DataFile(d.to_string()));
    }
    let virtual_size = info
        .get("virtual-size")
        .and_then(Value::as_u64)
        .ok_or_else(|| FormatError::Tool("qemu-img reported no virtual size".into()))?;
    Ok(DiskInfo {
        format: declared,
        virtual_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `qemu-img bench` with 64 requests in flight on the thread pool makes `qemu-img` start its
    /// whole pool at once: the worst case of a loaded machine, made certain. Under glibc's
    /// default arenas and stacks it dies with `qemu_thread_create: Resource temporarily
    /// unavailable` well below 1 GiB.
    #[tokio::test]
    async fn a_full_io_thread_pool_fits_the_address_space_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        std::fs::write(&path, vec![7u8; 16 << 20]).unwrap();
        let args: Vec<&std::ffi::OsStr> = [
            "bench", "-f", "raw", "-c", "20000", "-d", "64", "-i", "threads", "-s", "4096",
        ]
        .iter()
        .map(|a| a.as_ref())
        .chain([path.as_os_str()])
        .collect();
        let out = qemu_img(&args, QEMU_IMG_CPU_SECONDS).await.unwrap();
        assert!(String::from_utf8_lossy(&out).contains("Run completed"));
    }

    /// The limit still holds: a `qemu-img` that asks for more fails instead of getting it (24
    /// requests of 64 MiB in flight need a 1.5 GiB buffer, which it gets without the limit).
    #[tokio::test]
    async fn the_address_space_limit_still_bounds_qemu_img() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(128 << 20)
            .unwrap();
        let args: Vec<&std::ffi::OsStr> = [
            "bench", "-f", "raw", "-c", "24", "-d", "24", "-s", "64M", "-S", "0",
        ]
        .iter()
        .map(|a| a.as_ref())
        .chain([path.as_os_str()])
        .collect();
        let e = qemu_img(&args, QEMU_IMG_CPU_SECONDS).await.unwrap_err();
        assert!(
            matches!(&e, FormatError::Invalid(m) if m.contains("failed to allocate")),
            "{e:?}"
        );
    }

    #[test]
    fn sniffs_magics() {
        assert_eq!(sniff(b"QFI\xfb\0\0\0\x03"), Some("qcow2"));
        assert_eq!(sniff(b"KDMV...."), Some("vmdk"));
        assert_eq!(sniff(&[0u8; 512]), None);
        assert_eq!(sniff(b"QF"), None);
    }
}
