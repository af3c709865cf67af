//! Image data: uploads (`queued → saving → active`), downloads, data stored by the server's own
//! operations (createImage, import, the demo image) and its removal, all through the blob store.

use super::*;
use crate::authz::Authorized;

impl Images {
    /// Receives image data: `queued → saving → active`, or back to `queued` with nothing kept if
    /// anything goes wrong (the stream fails, the data is too large or not of its declared format).
    pub async fn upload<S, E>(&self, caller: &Authorized, id: &str, data: S) -> Result<ImageRec>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let i = self.owned(caller, id).await?;
        self.store_data(i, data).await
    }

    /// `queued → saving → active` with `data` as the image's content.
    pub(super) async fn store_data<S, E>(&self, i: ImageRec, data: S) -> Result<ImageRec>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.store_data_from(i, ImageStatus::Queued, data).await
    }

    /// Stores `data` as the content of an image in status `from`: a `queued` image moves to
    /// `saving` while the data arrives (only one upload wins that move), an `importing` one stays
    /// so; either becomes `active`, or on failure returns to `from` with nothing kept.
    pub(super) async fn store_data_from<S, E>(
        &self,
        mut i: ImageRec,
        from: ImageStatus,
        data: S,
    ) -> Result<ImageRec>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let id = i.id.clone();
        let id = id.as_str();
        if i.status != from {
            return Err(ServiceError::Conflict(format!(
                "Image {id} is {}; data can only be uploaded to a {from} image.",
                i.status
            )));
        }
        let (Some(disk_format), Some(_)) = (i.disk_format.clone(), i.container_format.clone())
        else {
            return Err(bad(
                "Set disk_format and container_format before uploading data.",
            ));
        };
        let during = if from == ImageStatus::Queued {
            ImageStatus::Saving
        } else {
            from
        };
        if during != from {
            i.status = during;
            i.updated_at = now_micros();
            self.save(&i, from).await?;
        }
        let result = self.receive(&i, &disk_format, data).await;
        match result {
            Ok((digest, virtual_size)) => {
                i.status = ImageStatus::Active;
                i.size = Some(digest.size as i64);
                i.checksum = Some(digest.md5);
                i.os_hash_algo = Some("sha512".into());
                i.os_hash_value = Some(digest.sha512);
                i.virtual_size = virtual_size;
                i.updated_at = now_micros();
                if let Err(e) = self.save(&i, during).await {
                    // Deleted meanwhile: drop the data.
                    let _ = self.blobs.delete(id).await;
                    return Err(e);
                }
                Ok(i)
            }
            Err(e) => {
                let _ = self.blobs.delete(id).await;
                if during != from {
                    i.status = from;
                    i.updated_at = now_micros();
                    let _ = self.save(&i, during).await;
                }
                Err(e)
            }
        }
    }

    /// What a failed write of image data means for the client.
    pub(super) fn blob_error(&self, id: &str, e: BlobError) -> ServiceError {
        match e {
            BlobError::TooLarge { limit } => ServiceError::TooLarge(format!(
                "Image data is larger than the limit of {limit} bytes."
            )),
            BlobError::Source(m) => bad(format!("The upload was interrupted: {m}.")),
            BlobError::Full(m) => {
                tracing::warn!(image = %id, "image store full: {m}");
                ServiceError::TooLarge(
                    "Image storage media is full; the upload was discarded.".into(),
                )
            }
            other => ServiceError::Internal(other.to_string()),
        }
    }

    async fn receive<S, E>(
        &self,
        i: &ImageRec,
        disk_format: &str,
        data: S,
    ) -> Result<(stratus_blob::Digest, Option<i64>)>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let digest = self
            .blobs
            .put(&i.id, data, self.max_size)
            .await
            .map_err(|e| self.blob_error(&i.id, e))?;
        let format = ImageFormat::parse(disk_format)
            .ok_or_else(|| bad(format!("Unknown disk_format {disk_format:?}.")))?;
        let file = self.data_file(&i.id).await?;
        let inspected = inspect(file.path(), format)
            .await
            .map_err(|e| bad(format!("Image data refused: {e}.")))?;
        let virtual_size = Some(inspected.virtual_size as i64);
        Ok((digest, virtual_size))
    }

    /// The image's data (or the byte range `range` of it), if it has any.
    pub async fn download(
        &self,
        caller: &Authorized,
        id: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<(
        ImageRec,
        Option<impl Stream<Item = std::result::Result<Bytes, BlobError>> + use<>>,
    )> {
        let i = self.get(caller, id).await?;
        if i.status == ImageStatus::Deactivated {
            return Err(ServiceError::Forbidden(format!(
                "The data of image {id} is not available: the image is deactivated."
            )));
        }
        if i.status != ImageStatus::Active {
            return Ok((i, None));
        }
        let whole = range.is_none();
        let s = self
            .blobs
            .get(id, range)
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        // A whole download is checked against the stored checksum as it streams.
        let expected = i.checksum.clone().filter(|_| whole);
        let image_id = i.id.clone();
        let s = stratus_blob::verify_md5(Box::pin(s), expected).map(move |c| {
            if let Err(e) = &c {
                tracing::error!(image = %image_id, "image data read failed: {e}");
            }
            c
        });
        Ok((i, Some(s)))
    }
}

/// A local file as a stream of chunks of at most 1 MiB.
pub fn file_stream(
    f: tokio::fs::File,
) -> impl Stream<Item = std::io::Result<Bytes>> + Unpin + Send + 'static {
    use tokio::io::AsyncReadExt;
    Box::pin(futures::stream::try_unfold(f, |mut f| async move {
        let mut buf = vec![0u8; 1 << 20];
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), f)))
    }))
}

impl Images {
    /// Registers the public demo image from a local qcow2 file (bootstrap only; no caller). An
    /// earlier interrupted registration is taken over.
    pub async fn register_demo(
        &self,
        id: &str,
        name: &str,
        owner: &str,
        qcow2: &std::path::Path,
    ) -> Result<ImageRec> {
        let now = now_micros();
        let props = [
            (
                "description",
                "A 1 MiB BIOS disk that prints a greeting and halts.",
            ),
            ("__os_type", "Other"),
            ("__platform", "Other"),
            ("__imagetype", "gold"),
            ("hw_firmware_type", "bios"),
            // It halts: it cannot answer the power button, so a stop is a hard one at once.
            ("os_shutdown_timeout", "0"),
        ];
        let props = props.map(|(k, v)| (k.to_string(), serde_json::Value::from(v)));
        let mut image = ImageRec {
            id: id.to_string(),
            owner: owner.to_string(),
            enterprise_project_id: DEFAULT_ENTERPRISE_PROJECT.into(),
            name: Some(name.to_string()),
            status: ImageStatus::Queued,
            visibility: "public".into(),
            protected: false,
            disk_format: Some("qcow2".into()),
            container_format: Some("bare".into()),
            min_disk: 0,
            min_ram: 0,
            size: None,
            virtual_size: None,
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
            properties: props.into_iter().collect(),
            tags: vec![],
            created_at: now,
            updated_at: now,
        };
        match store::image_get(self.store.pool(), id).await? {
            Some(existing) if existing.status == ImageStatus::Active => return Ok(existing),
            Some(existing) => {
                // Left `saving` or `queued` by a start that did not finish: start over.
                let _ = self.blobs.delete(id).await;
                let mut w = self.store.write().await?;
                store::image_update_if(w.conn(), &image, existing.status).await?;
                self.store.commit(w).await?;
            }
            None => {
                let mut w = self.store.write().await?;
                store::image_insert(w.conn(), &image).await?;
                self.store.commit(w).await?;
            }
        }
        image.status = ImageStatus::Queued;
        let f = tokio::fs::File::open(qcow2)
            .await
            .map_err(|e| ServiceError::Internal(format!("cannot read {}: {e}", qcow2.display())))?;
        self.store_data(image, file_stream(f)).await
    }
}

impl Images {
    /// The data of image `id` as a file on this host, for what reads files (the disk cache).
    pub async fn data_file(&self, id: &str) -> Result<stratus_blob::LocalFile> {
        self.blobs
            .materialize(id)
            .await
            .map_err(|e| ServiceError::Internal(format!("image {id} data: {e}")))
    }
}

impl Images {
    /// Deletes an image whatever its state (undoing a snapshot that did not finish), with its
    /// data and any staging data of an interrupted upload.
    pub async fn discard(&self, id: &str) -> Result<()> {
        let mut w = self.store.write().await?;
        store::image_delete(w.conn(), id).await?;
        self.store.commit(w).await?;
        self.drop_data(id).await
    }

    /// Removes the image's data, its staged data (interoperable import) and any staging file of
    /// an interrupted write.
    pub(super) async fn drop_data(&self, id: &str) -> Result<()> {
        for key in [id.to_string(), import::staged_key(id)] {
            self.blobs
                .purge(&key)
                .await
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
        }
        Ok(())
    }

    /// The image by id whoever owns it, or `None` (internal use).
    pub async fn find(&self, id: &str) -> Result<Option<ImageRec>> {
        Ok(store::image_get(self.store.pool(), id).await?)
    }

    /// Stores `path` (or nothing, for `None`) as the data of image `id`, for an operation
    /// authorized earlier. An upload an earlier attempt left `saving` is discarded first, so this
    /// can be run again after an interruption; an image already `active` is left as it is.
    pub async fn put_data(&self, id: &str, path: Option<&std::path::Path>) -> Result<ImageRec> {
        let mut i = self
            .find(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("image", id))?;
        if i.status == ImageStatus::Active {
            return Ok(i);
        }
        if i.status == ImageStatus::Saving {
            self.drop_data(id).await?;
            i.status = ImageStatus::Queued;
            i.updated_at = now_micros();
            self.save(&i, ImageStatus::Saving).await?;
        }
        match path {
            Some(p) => {
                let f = tokio::fs::File::open(p).await.map_err(|e| {
                    ServiceError::Internal(format!("cannot read {}: {e}", p.display()))
                })?;
                self.store_data(i, file_stream(f)).await
            }
            None => {
                let empty = futures::stream::empty::<std::result::Result<Bytes, std::io::Error>>();
                self.store_data(i, empty).await
            }
        }
    }
}
