//! Disk files of servers and volumes: qcow2 layers in one directory, each registered with its
//! backing file, and a collector that removes the layers nothing reaches any more.
//!
//! Layout under the disks directory: `cache/sha512-<digest>` (image data, named by its SHA-512),
//! `servers/<id>/disk`, `volumes/<id>/<layer>.qcow2` (a volume's writable layer) and
//! `snapshots/<id>.qcow2` (a volume's frozen layer as of a snapshot). Taking a snapshot renames the
//! volume's writable layer to the snapshot's and starts a new empty layer over it, so it costs the
//! same whatever the volume's size; a volume made from a snapshot is a new layer over it too.

use crate::{Result, ServiceError};
use std::path::{Path, PathBuf};
use stratus_blob::format::{create_blank, create_overlay, DiskFormat};
use stratus_store::{self as store, now_micros, Store};

pub struct Disks {
    dir: PathBuf,
    /// This node's name: the cache fills it has under way are named after it.
    node: String,
    /// Serialises collection against the linking of cached images.
    lock: tokio::sync::Mutex<()>,
}

fn io(what: &str, e: std::io::Error) -> ServiceError {
    ServiceError::Internal(format!("{what}: {e}"))
}

fn qemu(what: &str, e: stratus_blob::format::FormatError) -> ServiceError {
    ServiceError::Internal(format!("{what}: {e}"))
}

impl Disks {
    /// Disks under `dir`, made absolute here: layers name their backing files by absolute path
    /// (a layer may be renamed, so a path relative to it would break), and qemu resolves a
    /// relative backing path against the overlay's own directory, not the process's.
    pub fn new(dir: PathBuf, node: &str) -> Disks {
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        Disks {
            dir,
            node: node.to_string(),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    fn fill_prefix(&self) -> String {
        format!(".fill-{}-", self.node)
    }

    /// Removes the cache fills this node left half-made when it was killed (a fill is written
    /// under a temporary name and renamed into place whole). Run at start, before any saga runs;
    /// other nodes' fills are theirs. Returns how many were removed.
    pub async fn purge_partial_fills(&self) -> usize {
        let prefix = self.fill_prefix();
        let Ok(mut rd) = tokio::fs::read_dir(self.path("cache")).await else {
            return 0;
        };
        let mut n = 0;
        while let Ok(Some(e)) = rd.next_entry().await {
            if e.file_name().to_string_lossy().starts_with(&prefix)
                && tokio::fs::remove_file(e.path()).await.is_ok()
            {
                n += 1;
            }
        }
        n
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    async fn parent_dir(&self, rel: &str) -> Result<()> {
        if let Some(p) = self.path(rel).parent() {
            tokio::fs::create_dir_all(p)
                .await
                .map_err(|e| io("disk directory", e))?;
        }
        Ok(())
    }

    /// Fills the cache layer `rel` (see [`cache_layer_of`]) from the image data at `src` if it
    /// is missing, and checks it against the image's SHA-512 `sha512` before it is used: the
    /// layer can only ever hold data of that digest. Its row is registered beforehand by the
    /// caller, so collection takes the file once nothing reaches it.
    ///
    /// The data is copied and hashed outside the disks lock (it may be large); only the final
    /// rename takes it, and a concurrent fill of the same layer renames identical data.
    pub async fn cache_image(&self, rel: &str, src: &Path, sha512: &str) -> Result<()> {
        let cached = self.path(rel);
        if tokio::fs::try_exists(&cached).await.unwrap_or(false) {
            return Ok(());
        }
        self.parent_dir(rel).await?;
        let tmp = self.path(&format!("cache/{}{}", self.fill_prefix(), crate::new_id()));
        if tokio::fs::hard_link(src, &tmp).await.is_err() {
            tokio::fs::copy(src, &tmp)
                .await
                .map_err(|e| io("image cache copy", e))?;
        }
        let digest = sha512_of(&tmp).await;
        if digest.as_deref().ok() != Some(sha512) {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(ServiceError::Internal(format!(
                "the image data does not match its SHA-512 {sha512}: {}",
                digest.unwrap_or_else(|e| e.to_string())
            )));
        }
        let _held = self.lock.lock().await;
        tokio::fs::rename(&tmp, &cached)
            .await
            .map_err(|e| io("image cache", e))
    }

    /// A new qcow2 layer `rel` of `size` bytes over `backing` (of format `format`).
    pub async fn overlay(
        &self,
        rel: &str,
        backing: &str,
        format: DiskFormat,
        size: u64,
    ) -> Result<()> {
        self.parent_dir(rel).await?;
        create_overlay(&self.path(backing), format, &self.path(rel), size)
            .await
            .map_err(|e| qemu("disk layer", e))
    }

    /// A new empty qcow2 `rel` of `size` bytes.
    pub async fn blank(&self, rel: &str, size: u64) -> Result<()> {
        self.parent_dir(rel).await?;
        create_blank(&self.path(rel), size)
            .await
            .map_err(|e| qemu("blank disk", e))
    }

    /// Writes a small file whole: it is there with all of `data`, or not at all.
    pub async fn write(&self, rel: &str, data: &[u8]) -> Result<()> {
        self.parent_dir(rel).await?;
        self.parent_dir("cache/x").await?;
        let tmp = self.path(&format!("cache/{}{}", self.fill_prefix(), crate::new_id()));
        tokio::fs::write(&tmp, data)
            .await
            .map_err(|e| io("disk file", e))?;
        tokio::fs::rename(&tmp, self.path(rel))
            .await
            .map_err(|e| io("disk file", e))
    }

    pub async fn exists(&self, rel: &str) -> bool {
        tokio::fs::try_exists(self.path(rel)).await.unwrap_or(false)
    }

    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.parent_dir(to).await?;
        tokio::fs::rename(self.path(from), self.path(to))
            .await
            .map_err(|e| io("disk rename", e))
    }

    /// Gives the layer `from` a second name `to` (a hard link): a guest that has `from` open
    /// keeps reading it while the store moves to the new name.
    pub async fn link(&self, from: &str, to: &str) -> Result<()> {
        self.parent_dir(to).await?;
        tokio::fs::hard_link(self.path(from), self.path(to))
            .await
            .map_err(|e| io("disk link", e))
    }

    /// Removes the layer `rel` (a root disk with its boot files), and its directory once empty.
    pub async fn remove(&self, rel: &str) {
        let p = self.path(rel);
        let _ = tokio::fs::remove_file(&p).await;
        for f in boot_files_of(rel) {
            let _ = tokio::fs::remove_file(self.path(&f)).await;
        }
        // Empty per-object directories go too.
        if let Some(parent) = p.parent() {
            if parent != self.dir {
                let _ = tokio::fs::remove_dir(parent).await;
            }
        }
    }

    /// Removes every layer nothing reaches any more (rows, then files).
    pub async fn collect(&self, store: &Store) -> Result<Vec<String>> {
        let _held = self.lock.lock().await;
        let mut w = store.write().await?;
        let dead = store::layers_collect(w.conn()).await?;
        store.commit(w).await?;
        for rel in &dead {
            self.remove(rel).await;
        }
        Ok(dead)
    }
}

/// The cache layer of an image's data: named by the data's SHA-512, which an active image always
/// has, so that the same name never holds other data (an image id could be given to other data;
/// a digest cannot).
/// The boot files kept beside root disk `root` for a kernel boot (see `kernel_boot`): kernel,
/// initial ramdisk, command line. They go when the disk does.
pub fn boot_files_of(root: &str) -> [String; 3] {
    ["kernel", "initrd", "cmdline"].map(|ext| format!("{root}.{ext}"))
}

pub fn cache_layer_of(image: &stratus_store::ImageRec) -> Result<String> {
    match (image.status, image.os_hash_value.as_deref()) {
        (stratus_store::ImageStatus::Active, Some(h))
            if h.len() == 128 && h.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(format!("cache/sha512-{h}"))
        }
        _ => Err(ServiceError::BadRequest(format!(
            "Image {} has no data to boot from (it is {}).",
            image.id, image.status
        ))),
    }
}

/// The lower-case hex SHA-512 of a file, read off the async executor.
async fn sha512_of(path: &Path) -> std::result::Result<String, std::io::Error> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use sha2::{Digest, Sha512};
        use std::io::Read;
        let mut f = std::fs::File::open(path)?;
        let mut h = Sha512::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Registers layers `(path, parent)` in one transaction.
pub async fn register(store: &Store, layers: &[(&str, Option<&str>)]) -> Result<()> {
    let mut w = store.write().await?;
    let now = now_micros();
    for (path, parent) in layers {
        store::layer_add(w.conn(), path, *parent, now).await?;
    }
    Ok(store.commit(w).await?)
}
