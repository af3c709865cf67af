//! Interoperable image import (Glance's `stage` and `import`), as a saga.
//!
//! Methods: `glance-direct` imports data staged beforehand (`PUT .../stage`: `queued →
//! uploading`), `web-download` fetches a URL the deployment allows (off unless an allow-list of
//! URL prefixes is configured: it makes the server fetch URLs), `copy-image` copies an active
//! image to other stores (one store here: nothing to copy).
//!
//! | kind           | steps                     |
//! |----------------|---------------------------|
//! | `image-import` | claim, load, clean        |
//!
//! `claim` runs before the 202: the image becomes `importing` and holds the saga's id in
//! `os_glance_import_task` (a property no user may set). `load` streams the data through the
//! same checks as an upload (size, digests, declared format) and makes the image `active`;
//! `clean` drops the staged data and the lock. A failure returns the image to `queued` with no
//! data, as upstream.

use super::Images;
use crate::authz::Authorized;
use crate::saga::{nothing, Caller, Sagas, StepError, StepResult, Why};
use crate::{Result, ServiceError};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use stratus_store::{now_micros, ImageRec, ImageStatus};

pub const GLANCE_DIRECT: &str = "glance-direct";
pub const WEB_DOWNLOAD: &str = "web-download";
pub const COPY_IMAGE: &str = "copy-image";

/// The property that locks an image to the import running on it (upstream's name).
pub const IMPORT_TASK: &str = "os_glance_import_task";

/// Longest URL a web-download takes.
pub const MAX_URI: usize = 2048;
/// Most redirects a web-download follows (each target checked against the allow-list).
const MAX_REDIRECTS: usize = 5;

/// The blob key of an image's staged data.
pub fn staged_key(id: &str) -> String {
    format!("{id}.staged")
}

/// An import request, as `POST /v2/images/{id}/import` names it.
#[derive(Debug, Clone, Default)]
pub struct ImportRequest {
    pub method: String,
    pub uri: Option<String>,
}

/// Starts imports, and knows which methods this deployment offers.
pub struct Imports {
    images: Arc<Images>,
    sagas: Arc<Sagas>,
    /// URL prefixes a web-download may fetch; empty turns web-download off.
    web_download_allow: Vec<String>,
}

/// What the import saga's steps use.
pub struct ImportSagas {
    pub images: Arc<Images>,
    pub web_download_allow: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportState {
    pub caller: Caller,
    pub saga_id: String,
    pub image_id: String,
    pub method: String,
    pub uri: Option<String>,
}

crate::declare_saga! {
    pub ImageImport = "image-import" (ImportSagas, ImportState) {
        "claim" => claim, unclaim;
        "load" => load, nothing;
        "clean" => clean, nothing;
    }
}

/// Whether `uri` is an http(s) URL under one of the allowed prefixes.
pub fn allowed_uri(allow: &[String], uri: &str) -> bool {
    let web = uri.starts_with("http://") || uri.starts_with("https://");
    web && allow.iter().any(|p| uri.starts_with(p.as_str()))
}

fn conflict(msg: impl Into<String>) -> ServiceError {
    ServiceError::Conflict(msg.into())
}

impl Imports {
    pub fn new(images: Arc<Images>, sagas: Arc<Sagas>, web_download_allow: Vec<String>) -> Self {
        Imports {
            images,
            sagas,
            web_download_allow,
        }
    }

    /// The import methods offered, in Glance's order.
    pub fn methods(&self) -> Vec<&'static str> {
        let mut m = vec![GLANCE_DIRECT];
        if !self.web_download_allow.is_empty() {
            m.push(WEB_DOWNLOAD);
        }
        m.push(COPY_IMAGE);
        m
    }

    /// `PUT /v2/images/{id}/stage`: the data of a `queued` image kept aside for a later
    /// `glance-direct` import; the image becomes `uploading` with its size known.
    pub async fn stage<S, E>(&self, caller: &Authorized, id: &str, data: S) -> Result<ImageRec>
    where
        S: futures::Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let images = &self.images;
        let mut i = images.owned(caller, id).await?;
        if i.status != ImageStatus::Queued {
            return Err(conflict(format!(
                "Image {id} is {}; only a queued image can be staged.",
                i.status
            )));
        }
        i.status = ImageStatus::Uploading;
        i.updated_at = now_micros();
        images.save(&i, ImageStatus::Queued).await?;
        let staged = images
            .blobs
            .put(&staged_key(id), data, images.max_size)
            .await
            .map_err(|e| images.blob_error(id, e));
        match staged {
            Ok(d) => {
                i.size = Some(d.size as i64);
                i.updated_at = now_micros();
                if let Err(e) = images.save(&i, ImageStatus::Uploading).await {
                    let _ = images.drop_data(id).await;
                    return Err(e);
                }
                Ok(i)
            }
            Err(e) => {
                i.status = ImageStatus::Queued;
                i.updated_at = now_micros();
                let _ = images.save(&i, ImageStatus::Uploading).await;
                Err(e)
            }
        }
    }

    /// `POST /v2/images/{id}/import`: checks the request as upstream does (400 for an unknown or
    /// disabled method or a URL outside the allow-list, 409 for an image in the wrong state or
    /// without formats) and starts the import; returns once the image is `importing`.
    pub async fn import(&self, caller: &Authorized, id: &str, req: ImportRequest) -> Result<()> {
        let i = self.images.owned(caller, id).await?;
        if !self.methods().contains(&req.method.as_str()) {
            return Err(ServiceError::BadRequest(format!(
                "Unknown import method name '{}'.",
                req.method
            )));
        }
        if req.method == COPY_IMAGE {
            // One store: an active image is everywhere it can be copied to.
            return if i.status == ImageStatus::Active {
                Ok(())
            } else {
                Err(conflict(format!(
                    "Image {id} is {}; copy-image needs an active image.",
                    i.status
                )))
            };
        }
        if i.status == ImageStatus::Active {
            return Err(conflict(format!("Image {id} is already active.")));
        }
        if i.disk_format.is_none() || i.container_format.is_none() {
            return Err(conflict(format!(
                "Image {id} needs disk_format and container_format before it can be imported."
            )));
        }
        match req.method.as_str() {
            GLANCE_DIRECT if i.status != ImageStatus::Uploading => {
                return Err(conflict(
                    "Image needs to be staged before 'glance-direct' method can be used",
                ))
            }
            WEB_DOWNLOAD => {
                let uri = req.uri.as_deref().unwrap_or("");
                if uri.len() > MAX_URI || !allowed_uri(&self.web_download_allow, uri) {
                    return Err(ServiceError::BadRequest(
                        "URI for web-download does not pass filtering".into(),
                    ));
                }
                if i.status != ImageStatus::Queued {
                    return Err(conflict(format!(
                        "Image {id} is {}; web-download needs a queued image.",
                        i.status
                    )));
                }
            }
            _ => {}
        }
        let saga_id = crate::new_uuid();
        let st = ImportState {
            caller: Caller::of(caller),
            saga_id: saga_id.clone(),
            image_id: id.to_string(),
            method: req.method,
            uri: req.uri,
        };
        self.sagas.begin::<ImageImport>(saga_id, &st, 1).await?;
        Ok(())
    }
}

/// The status an import starts from.
fn start_status(method: &str) -> ImageStatus {
    if method == GLANCE_DIRECT {
        ImageStatus::Uploading
    } else {
        ImageStatus::Queued
    }
}

fn task_of(i: &ImageRec) -> Option<String> {
    i.properties
        .get(IMPORT_TASK)
        .and_then(Value::as_str)
        .map(String::from)
}

fn set_task(i: &mut ImageRec, task: Option<&str>) {
    match task {
        Some(t) => i
            .properties
            .insert(IMPORT_TASK.into(), Value::String(t.into())),
        None => i.properties.remove(IMPORT_TASK),
    };
}

async fn claim(c: &ImportSagas, st: &mut ImportState, retry: bool) -> StepResult {
    let gone = || StepError::Refused(ServiceError::not_found("image", &st.image_id));
    let mut i = c.images.find(&st.image_id).await?.ok_or_else(gone)?;
    if retry && i.status == ImageStatus::Importing && task_of(&i).as_deref() == Some(&st.saga_id) {
        return Ok(());
    }
    let from = start_status(&st.method);
    if i.status != from {
        return Err(StepError::Refused(conflict(format!(
            "Image {} is {}, not {from}; it cannot be imported now.",
            i.id, i.status
        ))));
    }
    i.status = ImageStatus::Importing;
    set_task(&mut i, Some(&st.saga_id));
    i.updated_at = now_micros();
    c.images.save(&i, from).await.map_err(StepError::Refused)
}

/// A failed import leaves the image `queued` with no data, as upstream.
async fn unclaim(c: &ImportSagas, st: &ImportState, _why: &Why) -> Result<()> {
    let Some(mut i) = c.images.find(&st.image_id).await? else {
        return Ok(());
    };
    if task_of(&i).as_deref() != Some(&st.saga_id) {
        return Ok(());
    }
    let was = i.status;
    if was == ImageStatus::Active {
        return Ok(());
    }
    c.images.drop_data(&i.id).await?;
    i.status = ImageStatus::Queued;
    i.size = None;
    i.virtual_size = None;
    set_task(&mut i, None);
    i.updated_at = now_micros();
    c.images.save(&i, was).await
}

async fn load(c: &ImportSagas, st: &mut ImportState, _retry: bool) -> StepResult {
    let quiet = || {
        StepError::Quiet(format!(
            "image {} was deleted while it was imported",
            st.image_id
        ))
    };
    let i = c.images.find(&st.image_id).await?.ok_or_else(quiet)?;
    if task_of(&i).as_deref() != Some(&st.saga_id) {
        return Err(quiet());
    }
    if i.status == ImageStatus::Active {
        return Ok(());
    }
    let images = &c.images;
    if st.method == GLANCE_DIRECT {
        let staged = images
            .blobs
            .get(&staged_key(&i.id), None)
            .await
            .map_err(|e| ServiceError::Internal(format!("the staged data is gone: {e}")))?;
        images
            .store_data_from(i, ImageStatus::Importing, staged)
            .await?;
    } else {
        let uri = st.uri.clone().unwrap_or_default();
        let body = fetch(&c.web_download_allow, &uri).await?;
        images
            .store_data_from(i, ImageStatus::Importing, body)
            .await?;
    }
    Ok(())
}

/// Streams `uri`, following redirects only to URLs the allow-list takes too.
async fn fetch(
    allow: &[String],
    uri: &str,
) -> Result<impl futures::Stream<Item = std::result::Result<Bytes, reqwest::Error>> + Unpin + use<>>
{
    if !allowed_uri(allow, uri) {
        return Err(ServiceError::BadRequest(
            "URI for web-download does not pass filtering".into(),
        ));
    }
    let allow = allow.to_vec();
    let policy = reqwest::redirect::Policy::custom(move |a| {
        if a.previous().len() > MAX_REDIRECTS {
            a.error("too many redirects")
        } else if allowed_uri(&allow, a.url().as_str()) {
            a.follow()
        } else {
            a.error("a redirect target does not pass filtering")
        }
    });
    let client = reqwest::Client::builder()
        .redirect(policy)
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| ServiceError::Internal(format!("http client: {e}")))?;
    let resp = client
        .get(uri)
        .send()
        .await
        .map_err(|e| ServiceError::Internal(format!("web-download of {uri} failed: {e}")))?;
    if !resp.status().is_success() {
        return Err(ServiceError::Internal(format!(
            "web-download of {uri} failed: {}",
            resp.status()
        )));
    }
    Ok(resp.bytes_stream().boxed())
}

async fn clean(c: &ImportSagas, st: &mut ImportState, _retry: bool) -> StepResult {
    let key = staged_key(&st.image_id);
    c.images
        .blobs
        .delete(&key)
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    if let Some(mut i) = c.images.find(&st.image_id).await? {
        if task_of(&i).as_deref() == Some(&st.saga_id) {
            let status = i.status;
            set_task(&mut i, None);
            i.updated_at = now_micros();
            c.images.save(&i, status).await?;
        }
    }
    Ok(())
}
