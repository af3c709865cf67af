//! Image data: a blob store behind one interface (the `object_store` crate: a local directory
//! today, an S3-compatible bucket later with no change above it), written and read as streams.
//!
//! Writing computes the size, the MD5 `checksum` and the SHA-512 `os_hash_value` in the same
//! pass, the two digests on two threads of their own so that the copy runs at the speed of the
//! slower hash rather than of their sum. Memory stays bounded whatever the size: a few chunks
//! in flight. A write is all or nothing: a failed, interrupted or oversized one leaves no object
//! and no staging file behind.

pub mod format;
pub mod inspect;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use md5::Md5;
use object_store::chunked::ChunkedStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};
use sha2::{Digest as _, Sha512};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::mpsc::{channel, Sender};

/// Digests of written data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub size: u64,
    /// Lower-case hex MD5 (Glance `checksum`).
    pub md5: String,
    /// Lower-case hex SHA-512 (Glance `os_hash_value` with `os_hash_algo=sha512`).
    pub sha512: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the data is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the data stream failed: {0}")]
    Source(String),
    #[error("no blob {0}")]
    NotFound(String),
    #[error("the stored data does not match its checksum: expected MD5 {expected}, read {actual}")]
    Corrupt { expected: String, actual: String },
    #[error("the blob store is out of space: {0}")]
    Full(String),
    #[error("blob store error: {0}")]
    Store(String),
}

/// Whether an error, or anything in its chain of causes, is the file system running out of space
/// (ENOSPC, EDQUOT, or EFBIG from a file-size limit).
fn out_of_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(
                io.raw_os_error(),
                Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG)
            ) || io.kind() == std::io::ErrorKind::StorageFull
            {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

impl From<object_store::Error> for BlobError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { path, .. } => BlobError::NotFound(path),
            other if out_of_space(&other) => BlobError::Full(other.to_string()),
            other => BlobError::Store(other.to_string()),
        }
    }
}

/// Chunks in flight per hashing thread; with the store's own buffering this bounds memory.
const HASH_QUEUE: usize = 4;
/// Parts handed to the store are at least this large (its multipart unit).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Incoming data is hashed and written in blocks of this size.
const BLOCK_SIZE: usize = 1024 * 1024;
/// Reads of local files come in chunks of this size.
const READ_CHUNK: usize = 1024 * 1024;

/// Hashes chunks on a thread of its own.
struct Hasher {
    tx: Option<Sender<Bytes>>,
    handle: Option<JoinHandle<String>>,
}

impl Hasher {
    fn spawn<D: sha2::Digest + Send + 'static>(mut d: D) -> Hasher {
        let (tx, mut rx) = channel::<Bytes>(HASH_QUEUE);
        let handle = std::thread::spawn(move || {
            while let Some(chunk) = rx.blocking_recv() {
                d.update(&chunk);
            }
            hex(&d.finalize())
        });
        Hasher {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    /// Queues a chunk, waiting while the queue is full.
    async fn feed(&self, chunk: Bytes) -> Result<(), BlobError> {
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| BlobError::Store("hasher closed".into()))?;
        tx.send(chunk)
            .await
            .map_err(|_| BlobError::Store("hasher stopped".into()))
    }

    async fn finish(mut self) -> Result<String, BlobError> {
        drop(self.tx.take());
        let handle = self
            .handle
            .take()
            .ok_or_else(|| BlobError::Store("hasher gone".into()))?;
        tokio::task::spawn_blocking(move || handle.join())
            .await
            .map_err(|e| BlobError::Store(e.to_string()))?
            .map_err(|_| BlobError::Store("hasher panicked".into()))
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        // Closing the channel ends the thread; it is not joined here.
        self.tx.take();
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    /// The directory of a local store, whose blobs are files already.
    local: Option<PathBuf>,
    /// Where blobs of another store are copied to be read as files.
    work: PathBuf,
}

/// A blob as a file on this host, for what reads files (`qemu-img`, the disk cache): the local
/// store's own file, or a copy that is removed when this is dropped.
#[derive(Debug)]
pub struct LocalFile {
    path: PathBuf,
    copy: bool,
}

impl LocalFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LocalFile {
    fn drop(&mut self) {
        if self.copy {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Numbers the copies made by [`BlobStore::materialize`] within this process.
static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl BlobStore {
    /// A store in a local directory (created if missing).
    pub fn local(dir: &Path) -> Result<BlobStore, BlobError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| BlobError::Store(format!("cannot create {}: {e}", dir.display())))?;
        let fs = LocalFileSystem::new_with_prefix(dir)?;
        // The local store reads files in 8 KiB pieces, one blocking task each; larger chunks
        // keep downloads at disk and hashing speed.
        let chunked = ChunkedStore::new(Arc::new(fs), READ_CHUNK);
        Ok(BlobStore {
            inner: Arc::new(chunked),
            local: Some(dir.to_path_buf()),
            work: dir.to_path_buf(),
        })
    }

    /// Any `object_store` backend (an S3-compatible bucket, for instance); blobs read as files
    /// are copied into `work` first.
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, work: PathBuf) -> BlobStore {
        BlobStore {
            inner,
            local: None,
            work,
        }
    }

    /// Blob `key` as a file on this host: the local store's own file, or a copy of the blob
    /// made in the work directory (gone when the [`LocalFile`] is dropped).
    pub async fn materialize(&self, key: &str) -> Result<LocalFile, BlobError> {
        if let Some(dir) = &self.local {
            return Ok(LocalFile {
                path: dir.join(key),
                copy: false,
            });
        }
        let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.work.join(format!(".copy-{}-{n}", std::process::id()));
        let file = LocalFile { path, copy: true };
        tokio::fs::create_dir_all(&self.work)
            .await
            .map_err(|e| BlobError::Store(format!("work directory: {e}")))?;
        let mut out = tokio::fs::File::create(file.path())
            .await
            .map_err(|e| BlobError::Store(format!("copy of {key}: {e}")))?;
        let mut data = self.get(key, None).await?;
        while let Some(chunk) = data.next().await {
            tokio::io::AsyncWriteExt::write_all(&mut out, &chunk?)
                .await
                .map_err(|e| BlobError::Store(format!("copy of {key}: {e}")))?;
        }
        tokio::io::AsyncWriteExt::flush(&mut out)
            .await
            .map_err(|e| BlobError::Store(format!("copy of {key}: {e}")))?;
        Ok(file)
    }

    /// Deletes a blob and whatever an interrupted write of it left (the local store stages a
    /// write as `<key>#<n>` files); deleting one that does not exist is not an error.
    pub async fn purge(&self, key: &str) -> Result<(), BlobError> {
        self.delete(key).await?;
        if let Some(dir) = &self.local {
            let prefix = format!("{key}#");
            if let Ok(mut rd) = tokio::fs::read_dir(dir).await {
                while let Ok(Some(e)) = rd.next_entry().await {
                    if e.file_name().to_string_lossy().starts_with(&prefix) {
                        let _ = tokio::fs::remove_file(e.path()).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes `data` to `key`, hashing it on the way. Nothing is left behind unless the whole
    /// stream was written and the size stayed within `max_size`.
    pub async fn put<S, E>(&self, key: &str, data: S, max_size: u64) -> Result<Digest, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let path = ObjectPath::from(key);
        let upload = self.inner.put_multipart(&path).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let md5 = Hasher::spawn(Md5::new());
        let sha = Hasher::spawn(Sha512::new());
        match copy(data, &mut writer, &md5, &sha, max_size).await {
            Ok(size) => {
                writer.finish().await?;
                Ok(Digest {
                    size,
                    md5: md5.finish().await?,
                    sha512: sha.finish().await?,
                })
            }
            Err(e) => {
                // Removes the staging data; the object never appeared.
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }

    /// Reads a blob, or the byte range `range` of it, as a stream of chunks.
    pub async fn get(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<impl Stream<Item = Result<Bytes, BlobError>> + use<>, BlobError> {
        let opts = object_store::GetOptions {
            range: range.map(object_store::GetRange::Bounded),
            ..Default::default()
        };
        let r = self.inner.get_opts(&ObjectPath::from(key), opts).await?;
        Ok(r.into_stream().map(|c| c.map_err(BlobError::from)))
    }

    pub async fn size(&self, key: &str) -> Result<u64, BlobError> {
        Ok(self.inner.head(&ObjectPath::from(key)).await?.size)
    }

    /// Deletes a blob; deleting one that does not exist is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.inner.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

async fn copy<S, E>(
    mut data: S,
    writer: &mut WriteMultipart,
    md5: &Hasher,
    sha: &Hasher,
    max_size: u64,
) -> Result<u64, BlobError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut size = 0u64;
    // Incoming chunks are small (network frames); they are gathered into blocks so that the
    // hashing threads and the store see few, large pieces.
    let mut block = BytesMut::with_capacity(BLOCK_SIZE);
    while let Some(chunk) = data.next().await {
        let chunk = chunk.map_err(|e| BlobError::Source(e.to_string()))?;
        size += chunk.len() as u64;
        if size > max_size {
            return Err(BlobError::TooLarge { limit: max_size });
        }
        block.extend_from_slice(&chunk);
        if block.len() >= BLOCK_SIZE {
            let full = std::mem::replace(&mut block, BytesMut::with_capacity(BLOCK_SIZE));
            write_block(full.freeze(), writer, md5, sha).await?;
        }
    }
    if !block.is_empty() {
        write_block(block.freeze(), writer, md5, sha).await?;
    }
    Ok(size)
}

/// Hashes and writes one block; the hashers run on their own threads meanwhile.
async fn write_block(
    block: Bytes,
    writer: &mut WriteMultipart,
    md5: &Hasher,
    sha: &Hasher,
) -> Result<(), BlobError> {
    let (a, b) = tokio::join!(md5.feed(block.clone()), sha.feed(block.clone()));
    a?;
    b?;
    writer.wait_for_capacity(2).await?;
    writer.put(block);
    Ok(())
}

/// Passes a blob's chunks through while hashing them, one chunk behind: the last chunk is only
/// released once the whole data matched the MD5 `expected`, otherwise the stream ends with
/// [`BlobError::Corrupt`] instead, so a client sees a short, failed transfer rather than silently
/// wrong bytes. Without `expected`, chunks pass straight through.
pub fn verify_md5<S>(inner: S, expected: Option<String>) -> Verified<S>
where
    S: Stream<Item = Result<Bytes, BlobError>> + Unpin,
{
    Verified {
        inner,
        md5: expected.as_ref().map(|_| Md5::new()),
        expected: expected.unwrap_or_default(),
        held: None,
        done: false,
    }
}

pub struct Verified<S> {
    inner: S,
    md5: Option<Md5>,
    expected: String,
    /// The chunk read last, not yet released.
    held: Option<Bytes>,
    /// The inner stream has ended.
    done: bool,
}

impl<S> Stream for Verified<S>
where
    S: Stream<Item = Result<Bytes, BlobError>> + Unpin,
{
    type Item = Result<Bytes, BlobError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.done {
            return Poll::Ready(self.held.take().map(Ok));
        }
        if self.md5.is_none() {
            return self.inner.poll_next_unpin(cx);
        }
        loop {
            match self.inner.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Some(h) = self.md5.as_mut() {
                        h.update(&chunk);
                    }
                    if let Some(previous) = self.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Poll::Ready(None) => {
                    self.done = true;
                    let actual = self.md5.take().map(|h| hex(&h.finalize()));
                    return match actual {
                        Some(actual) if actual != self.expected => {
                            self.held = None;
                            Poll::Ready(Some(Err(BlobError::Corrupt {
                                expected: self.expected.clone(),
                                actual,
                            })))
                        }
                        // Verified: release the last chunk; the next poll ends the stream.
                        _ => Poll::Ready(self.held.take().map(Ok)),
                    };
                }
                other => return other,
            }
        }
    }
}
