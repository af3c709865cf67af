//! Making a volume, as a saga: the `volume-create` kind for a volume on its own, and the
//! [`VolumeMaker`] operations the server sagas use for the volumes a server boots from.
//!
//! | kind            | steps                     |
//! |-----------------|---------------------------|
//! | `volume-create` | reserve, make, finish     |
//!
//! `reserve` counts the volume against the project's quota and records it (`creating`) with its
//! layers, in one transaction; `make` fills the image cache layer it starts over (if any) and
//! makes its first layer; `finish` makes it `available`. A failure after `reserve` leaves the
//! volume `error`, as Cinder does. Every name (volume id, layer) is chosen in the
//! [`VolumePlan`] before the saga starts, so each step can be run again.

use crate::disks::Disks;
use crate::images::Images;
use crate::quotas::{QuotaService, Quotas};
use crate::saga::{nothing, Caller, StepError, StepResult, Why};
use crate::{Result, ServiceError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use stratus_blob::format::DiskFormat;
use stratus_store::{self as store, now_micros, Store, VolumeRec, VolumeStatus};

const GIB: u64 = 1 << 30;

/// The image whose data fills the cache layer a volume starts over, and the data's SHA-512.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheFill {
    pub image_id: String,
    pub sha512: String,
}

/// A volume to make, decided (and authorized) before anything is made: its record, the layer it
/// starts over and the image data to cache first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumePlan {
    /// The volume as it is recorded (`creating`).
    pub volume: VolumeRec,
    /// The layer its first layer is made over: an image's cache layer or a snapshot's layer.
    pub backing: Option<String>,
    /// The format of `backing`.
    pub format: DiskFormat,
    pub fill: Option<CacheFill>,
}

/// What makes volumes: the steps of `volume-create`, and of the server sagas for the volumes
/// a server boots from.
pub struct VolumeMaker {
    pub store: Arc<Store>,
    pub images: Arc<Images>,
    pub disks: Arc<Disks>,
    pub quotas: Arc<Quotas>,
}

impl VolumeMaker {
    /// Counts the volume against its project's quota and records it with its layers, in one
    /// transaction holding the project's quota lock: concurrent creations are counted one after
    /// another, and nothing is recorded for a refused one. Recorded already: done (a retry).
    pub async fn record(&self, p: &VolumePlan) -> Result<()> {
        let v = &p.volume;
        if store::volume_get(self.store.pool(), &v.id).await?.is_some() {
            return Ok(());
        }
        let mut w = self.store.write().await?;
        self.quotas
            .reserve(
                &mut w,
                &v.project_id,
                QuotaService::Volume,
                &[("volumes", 1), ("gigabytes", v.size_gb)],
            )
            .await?;
        let now = now_micros();
        if let Some(b) = &p.backing {
            store::layer_add(w.conn(), b, None, now).await?;
        }
        store::layer_add(w.conn(), &v.disk, p.backing.as_deref(), now).await?;
        store::volume_put(w.conn(), v).await?;
        Ok(self.store.commit(w).await?)
    }

    /// Makes the volume's first layer (over its backing, whose image data is cached first);
    /// made again on a retry, as nothing uses it before the volume is available.
    pub async fn make(&self, p: &VolumePlan) -> Result<()> {
        let v = &p.volume;
        if let (Some(cache), Some(fill)) = (&p.backing, &p.fill) {
            let data = self.images.data_file(&fill.image_id).await?;
            self.disks
                .cache_image(cache, data.path(), &fill.sha512)
                .await?;
        }
        let size = u64::try_from(v.size_gb).unwrap_or(0) * GIB;
        match &p.backing {
            Some(b) => self.disks.overlay(&v.disk, b, p.format, size).await,
            None => self.disks.blank(&v.disk, size).await,
        }
    }

    /// Ends the making of a volume: `available`, or `error` when it failed. A volume in another
    /// status (moved on, or gone) is left as it is.
    pub async fn settle(&self, id: &str, made: bool) -> Result<()> {
        let to = if made {
            VolumeStatus::Available
        } else {
            VolumeStatus::Error
        };
        let mut w = self.store.write().await?;
        store::volume_set_status(w.conn(), id, VolumeStatus::Creating, to, now_micros()).await?;
        Ok(self.store.commit(w).await?)
    }

    /// Removes volumes made for something that was not made after all, and their layers.
    pub async fn remove(&self, ids: &[String]) -> Result<()> {
        let mut w = self.store.write().await?;
        for id in ids {
            store::volume_delete(w.conn(), id).await?;
        }
        self.store.commit(w).await?;
        self.disks.collect(&self.store).await?;
        Ok(())
    }
}

/// The state of `volume-create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeCreateState {
    pub caller: Caller,
    pub plan: VolumePlan,
}

crate::declare_saga! {
    pub CreateVolume = "volume-create" (VolumeMaker, VolumeCreateState) {
        "reserve" => reserve, fail;
        "make" => make, nothing;
        "finish" => finish, nothing;
    }
}

async fn reserve(c: &VolumeMaker, st: &mut VolumeCreateState, _retry: bool) -> StepResult {
    c.record(&st.plan).await.map_err(|e| match e {
        // Over quota: nothing was recorded.
        e @ ServiceError::TooLarge(_) => StepError::Refused(e),
        e => StepError::Failed(e),
    })
}

/// A volume whose making failed is left `error`, as Cinder leaves it.
async fn fail(c: &VolumeMaker, st: &VolumeCreateState, _why: &Why) -> Result<()> {
    c.settle(&st.plan.volume.id, false).await
}

async fn make(c: &VolumeMaker, st: &mut VolumeCreateState, _retry: bool) -> StepResult {
    Ok(c.make(&st.plan).await?)
}

async fn finish(c: &VolumeMaker, st: &mut VolumeCreateState, _retry: bool) -> StepResult {
    Ok(c.settle(&st.plan.volume.id, true).await?)
}
