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

mod data;
pub mod import;
mod members;

pub use data::file_stream;

pub struct Images {
    store: Arc<Store>,
    blobs: BlobStore,
    /// Where the local blob store keeps its files, for format inspection.
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
    /// The enterprise project (`None`: the default one); checked by the caller.
    pub enterprise_project_id: Option<String>,
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
            enterprise_project_id: req
                .enterprise_project_id
                .unwrap_or_else(|| DEFAULT_ENTERPRISE_PROJECT.into()),
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
            properties: req.properties,
            tags,
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
        let mut props = std::mem::take(&mut i.properties);
        let mut tags = std::mem::take(&mut i.tags);
        for op in ops {
            apply(&mut i, &mut props, &mut tags, op)?;
        }
        if i.visibility == "public" && !was_public {
            caller.require(&[PUBLICIZE])?;
        }
        let tags = dedup(tags);
        check_collections(&props, &tags)?;
        i.properties = props;
        i.tags = tags;
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
        let mut tags = std::mem::take(&mut i.tags);
        if add {
            tags.push(tag.to_string());
            tags = dedup(tags);
            check_collections(&Map::new(), &tags)?;
        } else if let Some(pos) = tags.iter().position(|t| t == tag) {
            tags.remove(pos);
        } else {
            return Err(ServiceError::not_found("tag", tag));
        }
        i.tags = dedup(tags);
        i.updated_at = now_micros();
        self.save(&i, before).await
    }
}
