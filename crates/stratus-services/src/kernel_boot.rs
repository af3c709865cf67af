//! Direct kernel boot, as Glance's image properties ask: `kernel_id` names an image holding the
//! kernel (disk format `aki`), `ramdisk_id` one holding the initial ramdisk (`ari`), and
//! `os_command_line` the kernel's command line. A server built from such an image boots that
//! kernel over its root disk instead of the disk's own boot loader (as Nova's libvirt driver
//! does); a snapshot of it inherits the three properties and boots the same way.
//!
//! The kernel and ramdisk images are looked up as the caller who builds the server, like the
//! image itself. Their data is copied beside the root disk when the disk is made (`<root>.kernel`,
//! `<root>.initrd`, then `<root>.cmdline`, written last), so that a server keeps booting after
//! the images are deleted, and the files go when the root disk does.

use crate::authz::Authorized;
use crate::disks::{boot_files_of, cache_layer_of, Disks};
use crate::images::Images;
use crate::limits::KERNEL_CMDLINE_BYTES;
use crate::{IfMissing, Result, ServiceError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use stratus_store::{ImageRec, VolumeRec};

/// The command line when the image has no `os_command_line` (Nova's for a kernel boot).
pub const DEFAULT_CMDLINE: &str = "root=/dev/vda console=tty0 console=ttyS0";

/// What a server's root disk boots with, decided when the server is built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelBoot {
    pub kernel: BootFile,
    pub ramdisk: Option<BootFile>,
    pub cmdline: String,
}

/// An image whose data is a boot file, and the data's SHA-512 it is checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootFile {
    pub image_id: String,
    pub sha512: String,
}

fn bad(msg: String) -> ServiceError {
    ServiceError::BadRequest(msg)
}

fn property<'a>(props: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    props
        .get(key)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
}

/// How a server built from `image` boots: `None` for its disk's own boot loader. 400 when a
/// named kernel or ramdisk image is not one the caller may use, has no data, or the command line
/// is too long or holds a control character.
pub async fn of_image(
    images: &Images,
    caller: &Authorized,
    image: &ImageRec,
) -> Result<Option<KernelBoot>> {
    of_properties(
        images,
        caller,
        &image.properties,
        &format!("image {}", image.id),
    )
    .await
}

/// [`of_image`] for a boot volume, from the image properties it keeps
/// (`volume_image_metadata`).
pub async fn of_volume(
    images: &Images,
    caller: &Authorized,
    volume: &VolumeRec,
) -> Result<Option<KernelBoot>> {
    let Some(meta) = volume.image_metadata.as_deref() else {
        return Ok(None);
    };
    let props: Map<String, Value> = serde_json::from_str(meta).unwrap_or_default();
    of_properties(images, caller, &props, &format!("volume {}", volume.id)).await
}

/// The image properties a volume made from an image keeps for booting it.
pub const BOOT_PROPERTIES: &[&str] = &["kernel_id", "ramdisk_id", "os_command_line"];

async fn of_properties(
    images: &Images,
    caller: &Authorized,
    props: &Map<String, Value>,
    of: &str,
) -> Result<Option<KernelBoot>> {
    let Some(kernel_id) = property(props, "kernel_id") else {
        return Ok(None);
    };
    let file = |key: &'static str, id: &str| {
        let id = id.to_string();
        async move {
            let named = images.get_for_use(caller, &id).await.if_missing(|| {
                bad(format!(
                    "Image {id} named by {key} of {of} could not be found."
                ))
            })?;
            cache_layer_of(&named)?;
            Ok::<_, ServiceError>(BootFile {
                image_id: named.id.clone(),
                sha512: named.os_hash_value.clone().unwrap_or_default(),
            })
        }
    };
    let kernel = file("kernel_id", kernel_id).await?;
    let ramdisk = match property(props, "ramdisk_id") {
        Some(id) => Some(file("ramdisk_id", id).await?),
        None => None,
    };
    let cmdline = property(props, "os_command_line").unwrap_or(DEFAULT_CMDLINE);
    if cmdline.len() > KERNEL_CMDLINE_BYTES || cmdline.chars().any(char::is_control) {
        return Err(bad(format!(
            "os_command_line of {of} must be at most {KERNEL_CMDLINE_BYTES} bytes without control \
             characters."
        )));
    }
    Ok(Some(KernelBoot {
        kernel,
        ramdisk,
        cmdline: cmdline.to_string(),
    }))
}

/// Copies the boot files of `boot` beside root disk `root`; again after a crash, it finishes.
pub async fn place(images: &Images, disks: &Disks, root: &str, boot: &KernelBoot) -> Result<()> {
    let [kernel, initrd, cmdline] = boot_files_of(root);
    for (rel, file) in [
        (kernel, Some(&boot.kernel)),
        (initrd, boot.ramdisk.as_ref()),
    ] {
        if let Some(f) = file {
            let data = images.data_file(&f.image_id).await?;
            disks.cache_image(&rel, data.path(), &f.sha512).await?;
        }
    }
    disks.write(&cmdline, boot.cmdline.as_bytes()).await
}

/// The kernel boot of root disk `root` for the driver, if it has one (all its files placed).
pub async fn read(disks: &Disks, root: &str) -> Option<stratus_driver::KernelBoot> {
    let [kernel, initrd, cmdline] = boot_files_of(root);
    let cmdline = tokio::fs::read_to_string(disks.path(&cmdline)).await.ok()?;
    Some(stratus_driver::KernelBoot {
        kernel: disks.path(&kernel),
        initrd: Some(disks.path(&initrd)).filter(|p| p.exists()),
        cmdline,
    })
}
