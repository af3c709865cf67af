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
    disk[..512].copy_from_slice(&stratus_driver::demo_boot_sector());
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
