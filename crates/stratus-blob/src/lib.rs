//! Image data: a blob store behind one interface (the `object_store` crate: a local directory
//! today, an S3-compatible bucket later with no change above it), written and read as streams.
//!
//! Writing computes the size, the MD5 `checksum` and the SHA-512 `os_hash_value` in the same
//! pass, the two digests on two threads of their own so that the copy runs at the speed of the
//! slower hash rather than of their sum. Memory stays bounded whatever the size: a few chunks
//! in flight. A write is all or nothing: a failed, interrupted or oversized one leaves no object
//! and no staging file behind.

pub mod format;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::Md5;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};
use sha2::{Digest as _, Sha512};
use std::path::Path;
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
    #[error("blob store error: {0}")]
    Store(String),
}

impl From<object_store::Error> for BlobError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { path, .. } => BlobError::NotFound(path),
            other => BlobError::Store(other.to_string()),
        }
    }
}

/// Chunks in flight per hashing thread; with the store's own buffering this bounds memory.
const HASH_QUEUE: usize = 4;
/// Parts handed to the store are at least this large (its multipart unit).
const PART_SIZE: usize = 8 * 1024 * 1024;

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
}

impl BlobStore {
    /// A store in a local directory (created if missing).
    pub fn local(dir: &Path) -> Result<BlobStore, BlobError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| BlobError::Store(format!("cannot create {}: {e}", dir.display())))?;
        let fs = LocalFileSystem::new_with_prefix(dir)?;
        Ok(BlobStore {
            inner: Arc::new(fs),
        })
    }

    /// Any `object_store` backend (an S3-compatible bucket, for instance).
    pub fn from_object_store(inner: Arc<dyn ObjectStore>) -> BlobStore {
        BlobStore { inner }
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

    /// Reads a blob as a stream of chunks.
    pub async fn get(
        &self,
        key: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, BlobError>> + use<>, BlobError> {
        let r = self.inner.get(&ObjectPath::from(key)).await?;
        Ok(r.into_stream().map(|c| c.map_err(BlobError::from)))
    }

    /// Reads `start..end` of a blob.
    pub async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Bytes, BlobError> {
        Ok(self
            .inner
            .get_range(&ObjectPath::from(key), start..end)
            .await?)
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
    while let Some(chunk) = data.next().await {
        let chunk = chunk.map_err(|e| BlobError::Source(e.to_string()))?;
        size += chunk.len() as u64;
        if size > max_size {
            return Err(BlobError::TooLarge { limit: max_size });
        }
        // Hash and write the same chunk; the hashers run on their own threads meanwhile.
        let (a, b) = tokio::join!(md5.feed(chunk.clone()), sha.feed(chunk.clone()));
        a?;
        b?;
        writer.wait_for_capacity(2).await?;
        writer.put(chunk);
    }
    Ok(size)
}
