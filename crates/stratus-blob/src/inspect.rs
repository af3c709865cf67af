//! The format inspector: uploaded image data is checked against its declared `disk_format` before
//! the image becomes active, the way Glance's format inspector does.
//!
//! The header is read by this code (magic bytes and the few header fields that decide safety),
//! never probed by QEMU. Data that looks like another format than declared is refused, as are
//! features that make QEMU read other files of the host or need a key: a qcow2 backing file or
//! external data file or encryption, a VMDK whose descriptor names other files or whose type
//! keeps its data elsewhere, a differencing VHD. Then `qemu-img info` runs with the declared
//! format (and the limits of [`crate::format`]) for the virtual size and a last check for a
//! backing file.

use crate::format::{qemu_img_info_as, FormatError};
use serde_json::Value;
use std::path::Path;

/// A Glance `disk_format` this cloud accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Raw,
    Qcow2,
    Vmdk,
    Vhd,
    Vhdx,
    Vdi,
    Iso,
    Ploop,
    /// Amazon machine, kernel and ramdisk images: raw data to QEMU.
    Ami,
    Aki,
    Ari,
}

impl ImageFormat {
    /// Every disk format Glance accepts, by its name (in Glance's order), with what checks it.
    pub const ALL: [(&'static str, ImageFormat); 11] = [
        ("ami", ImageFormat::Ami),
        ("ari", ImageFormat::Ari),
        ("aki", ImageFormat::Aki),
        ("vhd", ImageFormat::Vhd),
        ("vhdx", ImageFormat::Vhdx),
        ("vmdk", ImageFormat::Vmdk),
        ("raw", ImageFormat::Raw),
        ("qcow2", ImageFormat::Qcow2),
        ("vdi", ImageFormat::Vdi),
        ("iso", ImageFormat::Iso),
        ("ploop", ImageFormat::Ploop),
    ];

    /// The names of [`ImageFormat::ALL`].
    pub const NAMES: [&'static str; 11] = {
        let mut names = [""; 11];
        let mut i = 0;
        while i < names.len() {
            names[i] = Self::ALL[i].0;
            i += 1;
        }
        names
    };

    pub fn parse(s: &str) -> Option<ImageFormat> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, f)| *f)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("raw", |(n, _)| n)
    }

    /// The format `qemu-img` knows this one by, for those it reads.
    fn qemu_name(self) -> Option<&'static str> {
        match self {
            ImageFormat::Qcow2 => Some("qcow2"),
            ImageFormat::Vmdk => Some("vmdk"),
            ImageFormat::Vhd => Some("vpc"),
            ImageFormat::Vhdx => Some("vhdx"),
            ImageFormat::Vdi => Some("vdi"),
            _ => None,
        }
    }
}

/// What the inspector found: the declared format and the disk's virtual size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub format: ImageFormat,
    pub virtual_size: u64,
}

/// What a header looks like, whatever was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detected {
    Qcow2,
    Vmdk,
    VmdkDescriptor,
    Vhd,
    Vhdx,
    Vdi,
    Qed,
    Luks,
    Ploop,
    Iso,
    /// Nothing recognised (raw data, possibly a partitioned disk).
    Raw,
}

impl Detected {
    fn name(self) -> &'static str {
        match self {
            Detected::Qcow2 => "qcow2",
            Detected::Vmdk => "vmdk",
            Detected::VmdkDescriptor => "vmdk descriptor",
            Detected::Vhd => "vhd",
            Detected::Vhdx => "vhdx",
            Detected::Vdi => "vdi",
            Detected::Qed => "qed",
            Detected::Luks => "luks",
            Detected::Ploop => "ploop",
            Detected::Iso => "iso",
            Detected::Raw => "raw",
        }
    }
}

/// Bytes of the head of a file read for detection (ISO 9660's volume descriptor is at 32 KiB).
const HEAD: usize = 0x9010;
/// Largest VMDK descriptor read.
const MAX_DESCRIPTOR: u64 = 64 * 1024;
const SECTOR: u64 = 512;

fn at(b: &[u8], off: usize, magic: &[u8]) -> bool {
    b.len() >= off + magic.len() && &b[off..off + magic.len()] == magic
}

fn be_u32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn be_u64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

fn le_u64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Where each format's magic bytes stand in the head of a file, first match wins (a VHD's
/// footer may also stand at the end, checked apart).
const MAGIC: &[(usize, &[u8], Detected)] = &[
    (0, b"QFI\xfb", Detected::Qcow2),
    (0, b"KDMV", Detected::Vmdk),
    (0, b"# Disk DescriptorFile", Detected::VmdkDescriptor),
    (0, b"vhdxfile", Detected::Vhdx),
    (0, b"conectix", Detected::Vhd),
    (0x40, b"\x7f\x10\xda\xbe", Detected::Vdi),
    (0, b"QED\0", Detected::Qed),
    (0, b"LUKS\xba\xbe", Detected::Luks),
    (0, b"WithoutFreeSpace", Detected::Ploop),
    (0, b"WithouFreSpacExt", Detected::Ploop),
    (0x8001, b"CD001", Detected::Iso),
    (0x8801, b"CD001", Detected::Iso),
    (0x9001, b"CD001", Detected::Iso),
];

fn detect(head: &[u8], tail: &[u8]) -> Detected {
    let found = MAGIC.iter().find(|(off, magic, kind)| {
        at(head, *off, magic) || (*kind == Detected::Vhd && at(tail, 0, magic))
    });
    found.map_or(Detected::Raw, |(_, _, kind)| *kind)
}

async fn read_at(path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, FormatError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| FormatError::Tool(format!("cannot open {}: {e}", path.display())))?;
    f.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| FormatError::Tool(e.to_string()))?;
    let mut buf = Vec::with_capacity(len);
    f.take(len as u64)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| FormatError::Tool(e.to_string()))?;
    Ok(buf)
}

fn refuse(msg: impl Into<String>) -> FormatError {
    FormatError::Unsafe(msg.into())
}

/// qcow2: no encryption, no external data file, no incompatible feature this code does not know.
fn check_qcow2_header(h: &[u8]) -> Result<(), FormatError> {
    let version = be_u32(h, 4).ok_or_else(|| refuse("truncated qcow2 header"))?;
    if be_u32(h, 32).unwrap_or(0) != 0 {
        return Err(refuse("encrypted qcow2 images are refused"));
    }
    if version >= 3 {
        let incompatible = be_u64(h, 72).ok_or_else(|| refuse("truncated qcow2 header"))?;
        if incompatible & (1 << 2) != 0 {
            return Err(FormatError::DataFile(qcow2_data_file_name(h)));
        }
        // dirty, corrupt, external data, compression type, extended L2: anything else is a
        // feature this inspector cannot vouch for.
        if incompatible >> 5 != 0 {
            return Err(refuse(format!(
                "qcow2 incompatible features {incompatible:#x} are not supported"
            )));
        }
    }
    Ok(())
}

/// The external data file a qcow2 v3 header names (header extension `DATA`), as far as the head
/// read holds it.
fn qcow2_data_file_name(h: &[u8]) -> String {
    let mut off = be_u32(h, 100).unwrap_or(104) as usize;
    while let (Some(kind), Some(len)) = (be_u32(h, off), be_u32(h, off + 4)) {
        let len = len as usize;
        if kind == 0 {
            break;
        }
        if kind == 0x4441_5441 {
            let end = (off + 8 + len).min(h.len());
            return String::from_utf8_lossy(&h[(off + 8).min(end)..end]).to_string();
        }
        off += 8 + len.div_ceil(8) * 8;
    }
    "(named in the header)".into()
}

/// VMDK (hosted sparse): only one file holding its own data (`monolithicSparse`,
/// `streamOptimized`), with no extent naming another directory.
async fn check_vmdk(path: &Path, h: &[u8]) -> Result<(), FormatError> {
    let offset = le_u64(h, 28).ok_or_else(|| refuse("truncated vmdk header"))?;
    let size = le_u64(h, 36).ok_or_else(|| refuse("truncated vmdk header"))?;
    if offset == 0 || size == 0 {
        return Err(refuse("vmdk without an embedded descriptor"));
    }
    let bytes = size
        .checked_mul(SECTOR)
        .filter(|b| *b <= MAX_DESCRIPTOR)
        .ok_or_else(|| refuse("vmdk descriptor too large"))?;
    let start = offset
        .checked_mul(SECTOR)
        .ok_or_else(|| refuse("vmdk descriptor offset out of range"))?;
    let raw = read_at(path, start, bytes as usize).await?;
    let text = String::from_utf8_lossy(&raw);
    let text = text.trim_end_matches('\0');
    let create_type = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("createType"))
        .filter_map(|r| r.trim().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_string())
        .next()
        .ok_or_else(|| refuse("vmdk descriptor without a createType"))?;
    if !matches!(create_type.as_str(), "monolithicSparse" | "streamOptimized") {
        return Err(refuse(format!(
            "vmdk createType {create_type:?} is refused: only monolithicSparse and streamOptimized"
        )));
    }
    let mut extents = 0;
    for line in text.lines().map(str::trim) {
        let access = line.split_whitespace().next().unwrap_or("");
        if !matches!(access, "RW" | "RDONLY" | "NOACCESS") {
            continue;
        }
        extents += 1;
        let name = line.split('"').nth(1).unwrap_or("");
        if name.contains('/') || name.contains('\\') {
            return Err(refuse(format!(
                "vmdk extent {name:?} names another directory"
            )));
        }
    }
    if extents != 1 {
        return Err(refuse(format!(
            "a vmdk of one file has one extent, not {extents}"
        )));
    }
    if text.contains("parentFileNameHint") {
        return Err(FormatError::BackingFile("(vmdk parent)".into()));
    }
    Ok(())
}

/// VHD: not differencing (a differencing disk reads its parent).
fn check_vhd(footer: &[u8]) -> Result<(), FormatError> {
    match be_u32(footer, 60) {
        Some(2) | Some(3) => Ok(()),
        Some(4) => Err(FormatError::BackingFile("(differencing vhd)".into())),
        other => Err(refuse(format!("vhd disk type {other:?} is not supported"))),
    }
}

/// Checks that the file at `path` is safe data of the `declared` format; returns its virtual
/// size (the file's size for formats QEMU reads as raw).
pub async fn inspect(path: &Path, declared: ImageFormat) -> Result<Inspected, FormatError> {
    let len = tokio::fs::metadata(path)
        .await
        .map_err(|e| FormatError::Tool(format!("cannot open {}: {e}", path.display())))?
        .len();
    let head = read_at(path, 0, HEAD).await?;
    let tail = read_at(path, len.saturating_sub(SECTOR), SECTOR as usize).await?;
    let found = detect(&head, &tail);
    let mismatch = || FormatError::Mismatch {
        declared: declared.name(),
        found: found.name(),
    };
    let expected = match declared {
        // Raw data may hold a partitioned disk or an ISO file system; never another container.
        ImageFormat::Raw | ImageFormat::Ami | ImageFormat::Aki | ImageFormat::Ari => {
            if !matches!(found, Detected::Raw | Detected::Iso) {
                return Err(mismatch());
            }
            None
        }
        ImageFormat::Iso => Some(Detected::Iso),
        ImageFormat::Qcow2 => Some(Detected::Qcow2),
        ImageFormat::Vmdk => Some(Detected::Vmdk),
        ImageFormat::Vhd => Some(Detected::Vhd),
        ImageFormat::Vhdx => Some(Detected::Vhdx),
        ImageFormat::Vdi => Some(Detected::Vdi),
        ImageFormat::Ploop => Some(Detected::Ploop),
    };
    if expected.is_some_and(|e| e != found) {
        return Err(mismatch());
    }
    match declared {
        ImageFormat::Qcow2 => check_qcow2_header(&head)?,
        ImageFormat::Vmdk => check_vmdk(path, &head).await?,
        ImageFormat::Vhd => check_vhd(if at(&head, 0, b"conectix") {
            &head
        } else {
            &tail
        })?,
        _ => {}
    }
    let Some(qemu) = declared.qemu_name() else {
        return Ok(Inspected {
            format: declared,
            virtual_size: len,
        });
    };
    let info = qemu_img_info_as(path, qemu).await?;
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
    if info.get("encrypted").and_then(Value::as_bool) == Some(true)
        || info.pointer("/format-specific/data/encrypt").is_some()
    {
        return Err(refuse("encrypted images are refused"));
    }
    let virtual_size = info
        .get("virtual-size")
        .and_then(Value::as_u64)
        .ok_or_else(|| FormatError::Tool("qemu-img reported no virtual size".into()))?;
    Ok(Inspected {
        format: declared,
        virtual_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_headers() {
        assert_eq!(detect(b"QFI\xfb\0\0\0\x03", b""), Detected::Qcow2);
        assert_eq!(detect(b"KDMV....", b""), Detected::Vmdk);
        assert_eq!(detect(&[0u8; 512], b"conectix"), Detected::Vhd);
        assert_eq!(detect(b"LUKS\xba\xbe\0\x02", b""), Detected::Luks);
        assert_eq!(detect(&[0u8; 512], &[0u8; 512]), Detected::Raw);
        let mut iso = vec![0u8; HEAD];
        iso[0x8001..0x8006].copy_from_slice(b"CD001");
        assert_eq!(detect(&iso, b""), Detected::Iso);
    }

    #[test]
    fn qcow2_headers_with_encryption_or_unknown_features_are_refused() {
        let mut h = vec![0u8; 104];
        h[..4].copy_from_slice(b"QFI\xfb");
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        assert!(check_qcow2_header(&h).is_ok());
        h[32..36].copy_from_slice(&1u32.to_be_bytes());
        assert!(check_qcow2_header(&h).is_err());
        h[32..36].copy_from_slice(&0u32.to_be_bytes());
        h[72..80].copy_from_slice(&(1u64 << 2).to_be_bytes());
        assert!(matches!(
            check_qcow2_header(&h),
            Err(FormatError::DataFile(_))
        ));
        h[72..80].copy_from_slice(&(1u64 << 9).to_be_bytes());
        assert!(check_qcow2_header(&h).is_err());
    }
}
