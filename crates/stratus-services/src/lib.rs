//! Domain services: the rules and state machines of stratus, independent of any wire format.
//!
//! Services take domain requests and return domain values or a [`ServiceError`]; they never build
//! HTTP responses. Storage goes through `stratus-store`.

pub mod access_keys;
pub mod app_creds;
pub mod authz;
pub mod bootstrap;
mod cache;
pub mod caller;
pub mod compute;
pub mod create_image;
pub mod demo;
pub mod directory;
pub mod disks;
pub mod driver;
mod error;
pub mod guests;
pub mod iam;
pub mod identity;
pub mod images;
pub mod jobs;
pub mod kernel_boot;
pub mod limits;
pub mod password;
pub mod quotas;
pub mod rebuild;
pub mod saga;
mod secrets;
pub mod server_sagas;
pub mod signing;
pub mod token;
pub mod volume_create;
pub mod volumes;

pub use error::{IfMissing, Result, ServiceError};
pub use stratus_iam as policy;
pub use stratus_model as model;

/// Data files shipped with the binary.
pub mod data {
    pub const FLAVORS: &str = include_str!("../data/flavors.json");
    pub const CATALOG: &str = include_str!("../data/catalog.json");
    pub const SYSTEM_POLICIES: &str = include_str!("../data/system-policies.json");
}

/// A fresh random id in the upstream form (32 lower-case hex digits, as Keystone uses).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A new id in the hyphenated form OpenStack uses for servers, images, volumes and snapshots.
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// The advisory-lock key of one thing (`kind`, `id`): the same on every node and release, so
/// that transactions of any node that check and write it are serialised.
pub(crate) fn lock_key(kind: &str, id: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("{kind}:{id}").as_bytes());
    i64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// The caller's project; 403 naming `service` for a token without one.
pub(crate) fn caller_project<'a>(
    caller: &'a identity::TokenInfo,
    service: &str,
) -> Result<&'a str> {
    caller
        .project()
        .map(|p| p.id.as_str())
        .ok_or_else(|| ServiceError::Forbidden(format!("{service} needs a project-scoped token.")))
}
