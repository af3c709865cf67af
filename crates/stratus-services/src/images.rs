//! Images (Glance v2 / IMS): metadata rules, the `queued → saving → active` state machine, and
//! image data through the blob store.

use crate::authz::Authorized;
use crate::identity::TokenInfo;
use crate::{limits, Result, ServiceError};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::Arc;
use stratus_blob::inspect::{inspect, ImageFormat};
use stratus_blob::{BlobError, BlobStore};
use stratus_iam::ResourceKind;
use stratus_store::{
    self as store, now_micros, ImageFilter, ImageRec, ImageStatus, MemberRec, MemberStatus, Store,
    DEFAULT_ENTERPRISE_PROJECT,
};

/// What making an image public needs besides creating or updating it: public images are offered
/// to every project (upstream's default lets only administrators publicize).
pub const PUBLICIZE: &str = "ims:images:publicize";

/// The disk formats an image may declare: those the format inspector checks.
pub const DISK_FORMATS: &[&str] = &ImageFormat::NAMES;
pub const CONTAINER_FORMATS: &[&str] = &[
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];
pub const VISIBILITIES: &[&str] = &["public", "private", "shared", "community"];
/// Attributes a client can never set.
pub const READ_ONLY: &[&str] = &[
    "id",
    "status",
    "size",
    "virtual_size",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "owner",
    "created_at",
    "updated_at",
    "file",
    "schema",
    "self",
    "direct_url",
    "locations",
];

pub mod import;

pub struct Images {
    store: Arc<Store>,
    blobs: BlobStore,
    /// Where the local blob store keeps its files, for format inspection.
    blob_dir: PathBuf,
    max_size: u64,
}

#[derive(Debug, Clone, Default)]
pub struct ImageCreate {
    pub id: Option<String>,
    pub name: Option<String>,
    pub visibility: Option<String>,
    pub protected: bool,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub min_disk: i64,
    pub min_ram: i64,
    pub tags: Vec<String>,
    /// Free-form properties (string values).
    pub properties: Map<String, Value>,
}

/// One JSON-patch operation on an image.
#[derive(Debug, Clone)]
pub enum PatchOp {
    Set {
        path: String,
        value: Value,
        must_exist: bool,
    },
    Remove {
        path: String,
    },
}

/// A listing: the filter (its project is the caller's) and the id of the marker image.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filter: ImageFilter,
    pub marker: Option<String>,
}

pub const MEMBER_STATUSES: &[&str] = &["pending", "accepted", "rejected"];

fn bad(msg: impl Into<String>) -> ServiceError {
    ServiceError::BadRequest(msg.into())
}

fn one_of(field: &str, v: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(bad(format!(
            "Invalid value {v:?} for {field}: expected one of {}.",
            allowed.join(", ")
        )))
    }
}

fn caller_project(caller: &TokenInfo) -> Result<&str> {
    crate::caller_project(caller, "The image service")
}

impl Images {
    pub fn new(store: Arc<Store>, blob_dir: PathBuf, max_size: u64) -> Result<Images> {
        let blobs =
            BlobStore::local(&blob_dir).map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok(Images {
            store,
            blobs,
            blob_dir,
            max_size,
        })
    }

    /// The image if the caller's project may see it (its own, public, community, or shared with
    /// the project whatever the membership status); 404 otherwise.
    pub async fn get(&self, caller: &TokenInfo, id: &str) -> Result<ImageRec> {
        let project = caller_project(caller)?;
        let missing = || ServiceError::not_found("image", id);
        let i = store::image_get(self.store.pool(), id)
            .await?
            .ok_or_else(missing)?;
        let visible = match i.visibility.as_str() {
            _ if i.owner == project => true,
            "public" | "community" => true,
            "shared" => store::member_get(self.store.pool(), id, project)
                .await?
                .is_some(),
            _ => false,
        };
        if visible {
            Ok(i)
        } else {
            Err(missing())
        }
    }

    /// An image a request names to use (to boot from, to make a volume of): visible to the
    /// caller's project (404 otherwise) and readable by the caller (403 otherwise).
    pub async fn get_for_use(&self, caller: &Authorized, id: &str) -> Result<ImageRec> {
        let i = self.get(caller, id).await?;
        caller.require_use(ResourceKind::Image)?;
        Ok(i)
    }

    /// The image if the caller's project owns it (what may change it).
    async fn owned(&self, caller: &TokenInfo, id: &str) -> Result<ImageRec> {
        let i = self.get(caller, id).await?;
        if i.owner != caller_project(caller)? {
            return Err(ServiceError::Forbidden(format!(
                "You are not permitted to modify image {id}."
            )));
        }
        Ok(i)
    }

    pub async fn create(&self, caller: &Authorized, req: ImageCreate) -> Result<ImageRec> {
        let project = caller_project(caller)?.to_string();
        if req.visibility.as_deref() == Some("public") {
            caller.require(&[PUBLICIZE])?;
        }
        self.create_in(project, req).await
    }

    /// Registers an image owned by `project` (for operations authorized earlier, such as a
    /// server's createImage).
    pub async fn create_in(&self, project: String, req: ImageCreate) -> Result<ImageRec> {
        let visibility = req.visibility.unwrap_or_else(|| "shared".into());
        one_of("visibility", &visibility, VISIBILITIES)?;
        if let Some(d) = &req.disk_format {
            one_of("disk_format", d, DISK_FORMATS)?;
        }
        if let Some(c) = &req.container_format {
            one_of("container_format", c, CONTAINER_FORMATS)?;
        }
        if req.min_disk < 0 || req.min_ram < 0 {
            return Err(bad("min_disk and min_ram must not be negative."));
        }
        if let Some(n) = &req.name {
            if n.chars().count() > limits::NAME_CHARS {
                return Err(bad("The image name is longer than 255 characters."));
            }
        }
        for k in req.properties.keys() {
            check_property_key(k)?;
        }
        let tags = dedup(req.tags);
        check_collections(&req.properties, &tags)?;
        let id = match req.id {
            Some(id) => uuid::Uuid::parse_str(&id)
                .map_err(|_| bad(format!("Image id {id:?} is not a UUID.")))?
                .hyphenated()
                .to_string(),
            None => crate::new_uuid(),
        };
        let now = now_micros();
        let image = ImageRec {
            id,
            owner: project,
            enterprise_project_id: DEFAULT_ENTERPRISE_PROJECT.into(),
            name: req.name,
            status: ImageStatus::Queued,
            visibility,
            protected: req.protected,
            disk_format: req.disk_format,
            container_format: req.container_format,
            min_disk: req.min_disk,
            min_ram: req.min_ram,
            size: None,
            virtual_size: None,
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
            properties: Value::Object(req.properties).to_string(),
            tags: Value::from(tags).to_string(),
            created_at: now,
            updated_at: now,
        };
        let mut w = self.store.write().await?;
        if store::image_was_deleted(w.conn(), &image.id).await? {
            return Err(ServiceError::Conflict(format!(
                "Image {} was deleted; an image id is never used again.",
                image.id
            )));
        }
        store::image_insert(w.conn(), &image)
            .await
            .map_err(|e| match e {
                store::StoreError::Conflict(_) => {
                    ServiceError::Conflict(format!("Image {} already exists.", image.id))
                }
                other => other.into(),
            })?;
        self.store.commit(w).await?;
        Ok(image)
    }

    pub async fn list(&self, caller: &Authorized, q: ListQuery) -> Result<Vec<ImageRec>> {
        let mut f = q.filter;
        f.project = caller_project(caller)?.to_string();
        one_of("member_status", &f.member_status, MEMBER_STATUSES)?;
        if let Some(m) = &q.marker {
            f.after = Some(
                self.get(caller, m)
                    .await
                    .map_err(|_| bad(format!("Marker {m} could not be found.")))?,
            );
        }
        Ok(store::image_list(self.store.pool(), &f).await?)
    }

    pub async fn update(
        &self,
        caller: &Authorized,
        id: &str,
        ops: Vec<PatchOp>,
    ) -> Result<ImageRec> {
        let mut i = self.owned(caller, id).await?;
        let before = i.status;
        let was_public = i.visibility == "public";
        let mut props: Map<String, Value> = serde_json::from_str(&i.properties).unwrap_or_default();
        let mut tags: Vec<String> = serde_json::from_str(&i.tags).unwrap_or_default();
        for op in ops {
            apply(&mut i, &mut props, &mut tags, op)?;
        }
        if i.visibility == "public" && !was_public {
            caller.require(&[PUBLICIZE])?;
        }
        let tags = dedup(tags);
        check_collections(&props, &tags)?;
        i.properties = Value::Object(props).to_string();
        i.tags = Value::from(tags).to_string();
        i.updated_at = now_micros();
        self.save(&i, before).await?;
        Ok(i)
    }

    async fn save(&self, i: &ImageRec, expected_status: ImageStatus) -> Result<()> {
        let mut w = self.store.write().await?;
        let ok = store::image_update_if(w.conn(), i, expected_status).await?;
        self.store.commit(w).await?;
        if ok {
            Ok(())
        } else {
            Err(ServiceError::Conflict(format!(
                "Image {} changed meanwhile; retry.",
                i.id
            )))
        }
    }

    pub async fn delete(&self, caller: &Authorized, id: &str) -> Result<()> {
        let i = self.owned(caller, id).await?;
        if i.protected {
            return Err(ServiceError::Forbidden(format!(
                "Image {id} is protected and cannot be deleted."
            )));
        }
        let mut w = self.store.write().await?;
        store::image_delete(w.conn(), id).await?;
        self.store.commit(w).await?;
        self.drop_data(id).await
    }

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
    async fn store_data<S, E>(&self, i: ImageRec, data: S) -> Result<ImageRec>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.store_data_from(i, ImageStatus::Queued, data).await
    }

    /// Stores `data` as the content of an image in status `from`: a `queued` image moves to
    /// `saving` while the data arrives (only one upload wins that move), an `importing` one stays
    /// so; either becomes `active`, or on failure returns to `from` with nothing kept.
    async fn store_data_from<S, E>(
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
    fn blob_error(&self, id: &str, e: BlobError) -> ServiceError {
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
        let inspected = inspect(&self.blob_dir.join(&i.id), format)
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

fn dedup(tags: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// Checks the free-form properties of an image to be made: 403 for a reserved attribute, 400 for
/// a name out of bounds (what creating it would refuse, checked before anything is started).
pub fn check_properties(props: &Map<String, Value>) -> Result<()> {
    props.keys().try_for_each(|k| check_property_key(k))
}

/// Checks the counts of an image's properties and tags (413, as Glance's quotas), each tag's
/// length and each property value's length.
fn check_collections(props: &Map<String, Value>, tags: &[String]) -> Result<()> {
    if props.len() > limits::IMAGE_PROPERTIES {
        return Err(ServiceError::TooLarge(format!(
            "Maximum number of properties exceeded: {} of at most {}.",
            props.len(),
            limits::IMAGE_PROPERTIES
        )));
    }
    if tags.len() > limits::IMAGE_TAGS {
        return Err(ServiceError::TooLarge(format!(
            "Maximum number of tags exceeded: {} of at most {}.",
            tags.len(),
            limits::IMAGE_TAGS
        )));
    }
    for t in tags {
        if t.is_empty() || t.chars().count() > limits::TAG_CHARS {
            return Err(bad(format!(
                "A tag is 1 to {} characters.",
                limits::TAG_CHARS
            )));
        }
    }
    for (k, v) in props {
        if let Some(s) = v.as_str() {
            if s.chars().count() > limits::PROPERTY_VALUE_CHARS {
                return Err(bad(format!(
                    "The value of property {k:?} is longer than {} characters.",
                    limits::PROPERTY_VALUE_CHARS
                )));
            }
        }
    }
    Ok(())
}

fn check_property_key(k: &str) -> Result<()> {
    if READ_ONLY.contains(&k) || k.starts_with("os_glance") {
        return Err(ServiceError::Forbidden(format!(
            "Attribute '{k}' is read-only or reserved."
        )));
    }
    if k.is_empty() || k.chars().count() > limits::PROPERTY_NAME_CHARS {
        return Err(bad(format!("Invalid property name {k:?}.")));
    }
    Ok(())
}

fn as_string(path: &str, v: &Value) -> Result<String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| bad(format!("The value of {path} must be a string.")))
}

fn as_int(path: &str, v: &Value) -> Result<i64> {
    v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
        bad(format!(
            "The value of {path} must be a non-negative integer."
        ))
    })
}

/// Applies one JSON-patch operation to an image.
fn apply(
    i: &mut ImageRec,
    props: &mut Map<String, Value>,
    tags: &mut Vec<String>,
    op: PatchOp,
) -> Result<()> {
    let path = match &op {
        PatchOp::Set { path, .. } | PatchOp::Remove { path } => path.clone(),
    };
    let key = path
        .strip_prefix('/')
        .filter(|k| !k.is_empty() && !k.contains('/'))
        .ok_or_else(|| bad(format!("Invalid JSON-patch path {path:?}.")))?
        .replace("~1", "/")
        .replace("~0", "~");
    if READ_ONLY.contains(&key.as_str()) || key.starts_with("os_glance") {
        return Err(ServiceError::Forbidden(format!(
            "Attribute '{key}' is read-only or reserved."
        )));
    }
    match op {
        PatchOp::Set {
            value, must_exist, ..
        } => match key.as_str() {
            "name" => {
                i.name = if value.is_null() {
                    None
                } else {
                    Some(as_string(&path, &value)?)
                }
            }
            "visibility" => {
                let v = as_string(&path, &value)?;
                one_of("visibility", &v, VISIBILITIES)?;
                i.visibility = v;
            }
            "protected" => {
                i.protected = value
                    .as_bool()
                    .ok_or_else(|| bad("protected must be a boolean."))?
            }
            "min_disk" => i.min_disk = as_int(&path, &value)?,
            "min_ram" => i.min_ram = as_int(&path, &value)?,
            "disk_format" | "container_format" => {
                if i.status != ImageStatus::Queued {
                    return Err(ServiceError::Forbidden(format!(
                        "{key} can only change while the image is queued."
                    )));
                }
                let v = as_string(&path, &value)?;
                if key == "disk_format" {
                    one_of("disk_format", &v, DISK_FORMATS)?;
                    i.disk_format = Some(v);
                } else {
                    one_of("container_format", &v, CONTAINER_FORMATS)?;
                    i.container_format = Some(v);
                }
            }
            "tags" => {
                *tags = value
                    .as_array()
                    .ok_or_else(|| bad("tags must be a list of strings."))?
                    .iter()
                    .map(|t| as_string(&path, t))
                    .collect::<Result<_>>()?;
            }
            _ => {
                check_property_key(&key)?;
                if must_exist && !props.contains_key(&key) {
                    return Err(ServiceError::Conflict(format!(
                        "Property {key} does not exist."
                    )));
                }
                props.insert(key, Value::String(as_string(&path, &value)?));
            }
        },
        PatchOp::Remove { .. } => match key.as_str() {
            "name" | "visibility" | "protected" | "min_disk" | "min_ram" | "disk_format"
            | "container_format" | "tags" => {
                return Err(ServiceError::Forbidden(format!(
                    "Attribute '{key}' cannot be removed."
                )))
            }
            _ => {
                if props.remove(&key).is_none() {
                    return Err(ServiceError::Conflict(format!(
                        "Property {key} does not exist."
                    )));
                }
            }
        },
    }
    Ok(())
}

impl Images {
    /// `active ⇄ deactivated`; repeating either is a no-op, other states are refused (403).
    pub async fn set_active(&self, caller: &Authorized, id: &str, active: bool) -> Result<()> {
        let mut i = self.owned(caller, id).await?;
        let (from, to) = if active {
            (ImageStatus::Deactivated, ImageStatus::Active)
        } else {
            (ImageStatus::Active, ImageStatus::Deactivated)
        };
        if i.status == to {
            return Ok(());
        }
        if i.status != from {
            let verb = if active { "reactivate" } else { "deactivate" };
            return Err(ServiceError::Forbidden(format!(
                "Not allowed to {verb} image in status '{}'.",
                i.status
            )));
        }
        i.status = to;
        i.updated_at = now_micros();
        self.save(&i, from).await
    }
}

/// Adds or removes one tag (`PUT`/`DELETE /v2/images/{id}/tags/{tag}`).
impl Images {
    pub async fn tag(&self, caller: &Authorized, id: &str, tag: &str, add: bool) -> Result<()> {
        let mut i = self.owned(caller, id).await?;
        let before = i.status;
        let mut tags: Vec<String> = serde_json::from_str(&i.tags).unwrap_or_default();
        if add {
            tags.push(tag.to_string());
            tags = dedup(tags);
            check_collections(&Map::new(), &tags)?;
        } else if let Some(pos) = tags.iter().position(|t| t == tag) {
            tags.remove(pos);
        } else {
            return Err(ServiceError::not_found("tag", tag));
        }
        i.tags = Value::from(dedup(tags)).to_string();
        i.updated_at = now_micros();
        self.save(&i, before).await
    }
}

/// Image members: the projects a `shared` image is offered to, and their answers.
impl Images {
    fn only_shared(i: &ImageRec) -> Result<()> {
        if i.visibility == "shared" {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(format!(
                "Image {} is {}; only shared images have members.",
                i.id, i.visibility
            )))
        }
    }

    /// Offers a shared image the caller's project owns to another project (`pending`).
    pub async fn add_member(
        &self,
        caller: &Authorized,
        id: &str,
        member: &str,
    ) -> Result<MemberRec> {
        let i = self.owned(caller, id).await?;
        Self::only_shared(&i)?;
        if member.is_empty() || member.len() > 255 {
            return Err(bad("The member is a project id of 1 to 255 characters."));
        }
        if member == i.owner {
            return Err(bad("An image cannot be shared with its owner."));
        }
        let members = store::member_list(self.store.pool(), id).await?.len();
        if members >= limits::IMAGE_MEMBERS {
            return Err(ServiceError::TooLarge(format!(
                "Maximum number of image members exceeded: at most {} projects.",
                limits::IMAGE_MEMBERS
            )));
        }
        let now = now_micros();
        let m = MemberRec {
            image_id: id.to_string(),
            member: member.to_string(),
            status: MemberStatus::Pending,
            created_at: now,
            updated_at: now,
        };
        let mut w = self.store.write().await?;
        store::member_insert(w.conn(), &m)
            .await
            .map_err(|e| match e {
                store::StoreError::Conflict(_) => ServiceError::Conflict(format!(
                    "Member {member} already exists for image {id}."
                )),
                other => other.into(),
            })?;
        self.store.commit(w).await?;
        Ok(m)
    }

    /// The owner sees every member; a member project sees only itself.
    pub async fn members(&self, caller: &Authorized, id: &str) -> Result<Vec<MemberRec>> {
        let i = self.get(caller, id).await?;
        Self::only_shared(&i)?;
        let project = caller_project(caller)?;
        let all = store::member_list(self.store.pool(), id).await?;
        Ok(all
            .into_iter()
            .filter(|m| i.owner == project || m.member == project)
            .collect())
    }

    pub async fn member(&self, caller: &Authorized, id: &str, member: &str) -> Result<MemberRec> {
        self.members(caller, id)
            .await?
            .into_iter()
            .find(|m| m.member == member)
            .ok_or_else(|| ServiceError::not_found("member", member))
    }

    /// Only the member project itself answers an offer.
    pub async fn set_member_status(
        &self,
        caller: &Authorized,
        id: &str,
        member: &str,
        status: &str,
    ) -> Result<MemberRec> {
        let mut m = self.member(caller, id, member).await?;
        if m.member != caller_project(caller)? {
            return Err(ServiceError::Forbidden(
                "Only the member project can change its membership status.".into(),
            ));
        }
        one_of("status", status, MEMBER_STATUSES)?;
        m.status = status
            .parse()
            .map_err(|e: store::UnknownState| bad(e.to_string()))?;
        m.updated_at = now_micros();
        let mut w = self.store.write().await?;
        store::member_set_status(w.conn(), id, member, m.status, m.updated_at).await?;
        self.store.commit(w).await?;
        Ok(m)
    }

    pub async fn remove_member(&self, caller: &Authorized, id: &str, member: &str) -> Result<()> {
        let i = self.owned(caller, id).await?;
        Self::only_shared(&i)?;
        let mut w = self.store.write().await?;
        let gone = store::member_delete(w.conn(), id, member).await?;
        self.store.commit(w).await?;
        if gone {
            Ok(())
        } else {
            Err(ServiceError::not_found("member", member))
        }
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
        let props = serde_json::json!({
            "description": "A 1 MiB BIOS disk that prints a greeting and halts.",
            "__os_type": "Other", "__platform": "Other", "__imagetype": "gold",
            "hw_firmware_type": "bios",
        });
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
            properties: props.to_string(),
            tags: "[]".into(),
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
    /// Where the data of image `id` lives on this host (the local blob store's file).
    pub fn local_data_path(&self, id: &str) -> PathBuf {
        self.blob_dir.join(id)
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
    async fn drop_data(&self, id: &str) -> Result<()> {
        for key in [id.to_string(), import::staged_key(id)] {
            self.blobs
                .delete(&key)
                .await
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            // Staging files of the local store are `<key>#<n>`.
            let prefix = format!("{key}#");
            if let Ok(mut dir) = tokio::fs::read_dir(&self.blob_dir).await {
                while let Ok(Some(e)) = dir.next_entry().await {
                    if e.file_name().to_string_lossy().starts_with(&prefix) {
                        let _ = tokio::fs::remove_file(e.path()).await;
                    }
                }
            }
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
