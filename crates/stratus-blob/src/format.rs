//! Disks and `qemu-img`: the formats disks are made of, and `qemu-img` run under CPU-time and
//! address-space limits with every format named (never probed). What uploaded data is, is
//! decided by [`crate::inspect`].

use serde_json::Value;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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
    #[error("{0}")]
    Unsafe(String),
    #[error("the image could not be inspected: {0}")]
    Invalid(String),
    #[error("qemu-img failed: {0}")]
    Tool(String),
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

/// `qemu-img info` of `path`, read as `format` (never probed).
pub(crate) async fn qemu_img_info_as(path: &Path, format: &str) -> Result<Value, FormatError> {
    let out = qemu_img(
        &[
            "info".as_ref(),
            "--output=json".as_ref(),
            "-f".as_ref(),
            format.as_ref(),
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
    convert_with(&[], src, from, dst, to).await
}

/// [`convert`] of an image another process holds open for writing (a running guest's QEMU,
/// paused and flushed for the copy): `-U` reads it without QEMU's image lock.
pub async fn convert_shared(
    src: &Path,
    from: DiskFormat,
    dst: &Path,
    to: DiskFormat,
) -> Result<(), FormatError> {
    convert_with(&["-U"], src, from, dst, to).await
}

async fn convert_with(
    options: &[&str],
    src: &Path,
    from: DiskFormat,
    dst: &Path,
    to: DiskFormat,
) -> Result<(), FormatError> {
    let mut args: Vec<&std::ffi::OsStr> = vec!["convert".as_ref()];
    args.extend(options.iter().map(|o| std::ffi::OsStr::new(*o)));
    args.extend([
        "-f".as_ref(),
        from.as_str().as_ref(),
        "-O".as_ref(),
        to.as_str().as_ref(),
        src.as_os_str(),
        dst.as_os_str(),
    ]);
    qemu_img(&args, QEMU_IMG_CONVERT_CPU_SECONDS)
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
}
