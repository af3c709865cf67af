//! Per-project quotas of compute (instances, cores, RAM) and block storage (volumes, snapshots,
//! gigabytes): defaults shipped as data (`data/quotas.json`), limits an administrator sets per
//! project, and the check that holds under concurrency: usage is counted and the new row written
//! in one transaction that holds the project's quota lock.

use crate::authz::Authorized;
use crate::identity::TokenInfo;
use crate::{Result, ServiceError};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use stratus_store::{self as store, Store, WriteTx};

/// The services that have quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaService {
    Compute,
    Volume,
}

impl QuotaService {
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaService::Compute => "compute",
            QuotaService::Volume => "volume",
        }
    }
}

/// Largest quota value accepted (upstream's).
pub const MAX_LIMIT: i64 = 0x7FFF_FFFF;

struct Defaults {
    compute: BTreeMap<String, i64>,
    compute_legacy: BTreeMap<String, i64>,
    volume: BTreeMap<String, i64>,
}

fn defaults() -> &'static Defaults {
    static D: OnceLock<Defaults> = OnceLock::new();
    D.get_or_init(|| {
        let v: Value =
            serde_json::from_str(include_str!("../data/quotas.json")).unwrap_or_default();
        let section = |k: &str| -> BTreeMap<String, i64> {
            v[k].as_object()
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| v.as_i64().map(|n| (k.clone(), n)))
                        .collect()
                })
                .unwrap_or_default()
        };
        Defaults {
            compute: section("compute"),
            compute_legacy: section("compute_before_2_36"),
            volume: section("volume"),
        }
    })
}

/// One resource over its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Over {
    pub resource: String,
    pub requested: i64,
    pub used: i64,
    pub limit: i64,
}

/// A resource's limit and what is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub limit: i64,
    pub in_use: i64,
}

pub struct Quotas {
    store: Arc<Store>,
}

/// The lock key of a project's quotas (held by the transaction that checks and writes).
fn lock_key(project: &str) -> i64 {
    crate::lock_key("quota", project)
}

impl Quotas {
    pub fn new(store: Arc<Store>) -> Quotas {
        Quotas { store }
    }

    /// The defaults of a service (with the compute resources shown before 2.36 when `legacy`).
    pub fn defaults(service: QuotaService, legacy: bool) -> BTreeMap<String, i64> {
        let d = defaults();
        match service {
            QuotaService::Compute if legacy => {
                let mut m = d.compute.clone();
                m.extend(d.compute_legacy.clone());
                m
            }
            QuotaService::Compute => d.compute.clone(),
            QuotaService::Volume => d.volume.clone(),
        }
    }

    /// The limits of a project's service: the defaults, overridden by what was set.
    pub async fn limits(
        &self,
        project: &str,
        service: QuotaService,
        legacy: bool,
    ) -> Result<BTreeMap<String, i64>> {
        let mut m = Self::defaults(service, legacy);
        for (k, v) in store::quota_limits(self.store.pool(), project, service.as_str()).await? {
            if m.contains_key(&k) {
                m.insert(k, v);
            }
        }
        Ok(m)
    }

    /// Limits and usage of a project's service.
    pub async fn usage(
        &self,
        project: &str,
        service: QuotaService,
        legacy: bool,
    ) -> Result<BTreeMap<String, Usage>> {
        let limits = self.limits(project, service, legacy).await?;
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(store::StoreError::from)?;
        let used = counted(&mut conn, project, service).await?;
        Ok(limits
            .into_iter()
            .map(|(k, limit)| {
                let in_use = used.get(k.as_str()).copied().unwrap_or(0);
                (k, Usage { limit, in_use })
            })
            .collect())
    }

    /// Sets limits of a project's service. Unknown resources are a 400; a limit below what is
    /// in use is a 400 unless `force` (upstream's rule).
    pub async fn set(
        &self,
        _caller: &Authorized,
        project: &str,
        service: QuotaService,
        wanted: &Map<String, Value>,
        force: bool,
    ) -> Result<()> {
        let defaults = Self::defaults(service, true);
        let mut parsed = Vec::new();
        for (k, v) in wanted {
            if !defaults.contains_key(k) {
                return Err(ServiceError::BadRequest(format!(
                    "Bad key(s) in quota set: {k}"
                )));
            }
            let n = v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .filter(|n| (-1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ServiceError::BadRequest(format!(
                        "Invalid quota {k} {v}: an integer from -1 (unlimited) to {MAX_LIMIT}."
                    ))
                })?;
            parsed.push((k.clone(), n));
        }
        let mut w = self.store.write().await?;
        store::advisory_lock(&mut w, lock_key(project)).await?;
        let used = counted(w.conn(), project, service).await?;
        for (k, n) in &parsed {
            let in_use = used.get(k.as_str()).copied().unwrap_or(0);
            if !force && *n != -1 && *n < in_use {
                return Err(ServiceError::BadRequest(format!(
                    "Quota limit {n} for {k} must be greater than or equal to already used and reserved {in_use}."
                )));
            }
            store::quota_limit_put(w.conn(), project, service.as_str(), k, *n).await?;
        }
        Ok(self.store.commit(w).await?)
    }

    /// Back to the defaults.
    pub async fn reset(
        &self,
        _caller: &Authorized,
        project: &str,
        service: QuotaService,
    ) -> Result<()> {
        let mut w = self.store.write().await?;
        store::quota_limits_clear(w.conn(), project, service.as_str()).await?;
        Ok(self.store.commit(w).await?)
    }

    /// Counts `wants` more of each resource against a project's quota, inside the transaction
    /// `w` that is about to write what they count: holds the project's quota lock until `w` ends,
    /// so that concurrent creations are counted one after the other, and refuses with the
    /// service's own error (Nova's 403, Cinder's 413) when any resource would go over its limit.
    pub async fn reserve(
        &self,
        w: &mut WriteTx,
        project: &str,
        service: QuotaService,
        wants: &[(&str, i64)],
    ) -> Result<()> {
        let over = self.check_in(w, project, service, wants).await?;
        match (over.is_empty(), service) {
            (true, _) => Ok(()),
            (false, QuotaService::Compute) => Err(compute_over(&over)),
            (false, QuotaService::Volume) => Err(volume_over(&over)),
        }
    }

    /// The resources of `wants` that would go over the project's limits (empty: go ahead),
    /// taking the project's quota lock in `w`.
    async fn check_in(
        &self,
        w: &mut WriteTx,
        project: &str,
        service: QuotaService,
        wants: &[(&str, i64)],
    ) -> Result<Vec<Over>> {
        store::advisory_lock(w, lock_key(project)).await?;
        let mut limits = Self::defaults(service, false);
        for (k, v) in store::quota_limits(w.conn(), project, service.as_str()).await? {
            if limits.contains_key(&k) {
                limits.insert(k, v);
            }
        }
        let used = counted(w.conn(), project, service).await?;
        Ok(wants
            .iter()
            .filter_map(|(r, n)| {
                let limit = *limits.get(*r)?;
                let u = used.get(*r).copied().unwrap_or(0);
                (limit >= 0 && u + n > limit).then(|| Over {
                    resource: r.to_string(),
                    requested: *n,
                    used: u,
                    limit,
                })
            })
            .collect())
    }
}

/// What a project uses of the resources that are counted.
async fn counted(
    conn: &mut store::AnyConnection,
    project: &str,
    service: QuotaService,
) -> Result<BTreeMap<&'static str, i64>> {
    let mut m = BTreeMap::new();
    match service {
        QuotaService::Compute => {
            let flavors = store::server_flavors_of(&mut *conn, project).await?;
            let (mut cores, mut ram) = (0, 0);
            for f in &flavors {
                let f: Value = serde_json::from_str(f).unwrap_or_default();
                cores += f["vcpus"].as_i64().unwrap_or(0);
                ram += f["ram"].as_i64().unwrap_or(0);
            }
            m.insert("instances", flavors.len() as i64);
            m.insert("cores", cores);
            m.insert("ram", ram);
        }
        QuotaService::Volume => {
            let (volumes, gigabytes, snapshots) = store::block_usage(conn, project).await?;
            m.insert("volumes", volumes);
            m.insert("gigabytes", gigabytes);
            m.insert("snapshots", snapshots);
        }
    }
    Ok(m)
}

/// Nova's 403 for a server over quota.
pub fn compute_over(over: &[Over]) -> ServiceError {
    let names: Vec<&str> = over.iter().map(|o| o.resource.as_str()).collect();
    let join = |f: &dyn Fn(&Over) -> i64| {
        over.iter()
            .map(|o| f(o).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    ServiceError::Forbidden(format!(
        "Quota exceeded for {}: Requested {}, but already used {} of {} {}",
        names.join(", "),
        join(&|o| o.requested),
        join(&|o| o.used),
        join(&|o| o.limit),
        names.join(", ")
    ))
}

/// Cinder's 413 for a volume or snapshot over quota (the gigabytes one first, as upstream sorts).
pub fn volume_over(over: &[Over]) -> ServiceError {
    let mut over = over.to_vec();
    over.sort_by(|a, b| a.resource.cmp(&b.resource));
    let Some(o) = over.first() else {
        return ServiceError::Internal("no quota named".into());
    };
    ServiceError::TooLarge(match o.resource.as_str() {
        "gigabytes" => format!(
            "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed gigabytes quota. Requested {}G, quota is {}G and {}G has been consumed.",
            o.requested, o.limit, o.used
        ),
        "snapshots" => format!(
            "SnapshotLimitExceeded: Maximum number of snapshots allowed ({}) exceeded",
            o.limit
        ),
        r => format!(
            "VolumeLimitExceeded: Maximum number of volumes allowed ({}) exceeded for quota '{r}'.",
            o.limit
        ),
    })
}

/// The project a quota request is about must be the caller's domain's (404 otherwise).
pub async fn visible_project(store: &Store, caller: &TokenInfo, project: &str) -> Result<()> {
    match store::project_get(store.pool(), project).await? {
        Some(p) if p.domain_id == caller.acting_domain_id() => Ok(()),
        _ => Err(ServiceError::BadRequest(format!(
            "Project ID {project} is not a valid project."
        ))),
    }
}
