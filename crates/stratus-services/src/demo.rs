//! The demo image: a tiny real bootable disk, built locally at first start (no download), so a
//! new cloud can boot a server at once.
//!
//! The disk is 1 MiB with a BIOS boot sector that prints a greeting and halts, converted to
//! qcow2 by `qemu-img` and stored through the same path as an upload (hashes, format checks).

use crate::images::Images;
use crate::{Result, ServiceError};
use std::path::Path;
use stratus_blob::format::{convert, DiskFormat};
use stratus_store::{self as store, Store};

/// The demo image's id, the same in every cloud.
pub const DEMO_IMAGE_ID: &str = "1f3a7b52-6c0e-4d8a-9b1e-5d2c3a4f6e70";
pub const DEMO_IMAGE_NAME: &str = "stratus-demo";
/// Marks, in the store's metadata, that the demo image was registered once (a deleted demo image
/// is not brought back).
const META_KEY: &str = "demo_image";

const GREETING: &[u8] = b"stratus demo image: booted.\r\n\0";

/// 16-bit real-mode code loaded at 0x7c00: print `GREETING` with BIOS teletype, then halt.
fn boot_sector() -> [u8; 512] {
    let code: [u8; 26] = [
        0x31, 0xc0, // xor ax, ax
        0x8e, 0xd8, // mov ds, ax
        0xbe, 0x1a, 0x7c, // mov si, 0x7c1a (GREETING)
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
    let mut s = [0u8; 512];
    s[..code.len()].copy_from_slice(&code);
    s[code.len()..code.len() + GREETING.len()].copy_from_slice(GREETING);
    s[510] = 0x55;
    s[511] = 0xaa;
    s
}

/// Registers the demo image (public, owned by `owner`) unless it was registered before; an
/// interrupted earlier attempt is finished. `work` is a scratch directory on the data disk.
pub async fn ensure_demo_image(
    store: &Store,
    images: &Images,
    owner: &str,
    work: &Path,
) -> Result<()> {
    if store::meta_get(store.pool(), META_KEY).await?.is_some() {
        return Ok(());
    }
    let internal = |e: std::io::Error| ServiceError::Internal(format!("demo image: {e}"));
    tokio::fs::create_dir_all(work).await.map_err(internal)?;
    let raw = work.join("demo.raw");
    let qcow2 = work.join("demo.qcow2");
    let mut disk = vec![0u8; 1 << 20];
    disk[..512].copy_from_slice(&boot_sector());
    tokio::fs::write(&raw, &disk).await.map_err(internal)?;
    let _ = tokio::fs::remove_file(&qcow2).await;
    let converted = convert(&raw, DiskFormat::Raw, &qcow2, DiskFormat::Qcow2)
        .await
        .map_err(|e| ServiceError::Internal(format!("demo image: {e}")));
    let registered = match converted {
        Ok(()) => {
            images
                .register_demo(DEMO_IMAGE_ID, DEMO_IMAGE_NAME, owner, &qcow2)
                .await
        }
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&raw).await;
    let _ = tokio::fs::remove_file(&qcow2).await;
    registered?;
    let mut w = store.write().await?;
    store::meta_set(w.conn(), META_KEY, DEMO_IMAGE_ID).await?;
    Ok(store.commit(w).await?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_boot_sector_is_bootable_and_points_at_its_greeting() {
        let s = super::boot_sector();
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
