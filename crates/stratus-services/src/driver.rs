//! The seam between compute and what runs servers: a [`ComputeDriver`] makes and removes a
//! server's disks (and, for a driver that runs guests, the guests). The local driver keeps qcow2
//! files in the disks directory.

use crate::disks::Disks;
use crate::Result;
use futures::future::BoxFuture;
use std::sync::Arc;
use stratus_blob::format::DiskFormat;

/// Makes and removes the disks of servers. The local driver keeps qcow2 files in the disks
/// directory; a QEMU/libvirt driver would also run the guests.
pub trait ComputeDriver: Send + Sync {
    /// Creates the root disk `root` (a path under the disks directory) of `size` bytes over the
    /// cached image layer `image` of format `format`.
    fn create_root<'a>(
        &'a self,
        root: &'a str,
        image: &'a str,
        format: DiskFormat,
        size: u64,
    ) -> BoxFuture<'a, Result<()>>;

    /// Removes the disks of `server` that belong to it alone (nothing to remove is not an error).
    fn destroy<'a>(&'a self, server: &'a str) -> BoxFuture<'a, Result<()>>;
}

/// Root disks as qcow2 files (`servers/<id>/disk`) over the image cache.
pub struct LocalDriver {
    disks: Arc<Disks>,
}

impl LocalDriver {
    pub fn new(disks: Arc<Disks>) -> LocalDriver {
        LocalDriver { disks }
    }
}

impl ComputeDriver for LocalDriver {
    fn create_root<'a>(
        &'a self,
        root: &'a str,
        image: &'a str,
        format: DiskFormat,
        size: u64,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.disks.overlay(root, image, format, size))
    }

    fn destroy<'a>(&'a self, server: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.disks.remove(&root_disk_of(server)).await;
            Ok(())
        })
    }
}

/// Where a server's root disk lives under the disks directory.
pub fn root_disk_of(server: &str) -> String {
    format!("servers/{server}/disk")
}
