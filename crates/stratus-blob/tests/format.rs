//! Format safety with the real qemu-img.

use std::path::Path;
use std::process::Command;
use stratus_blob::format::{inspect, DiskFormat, FormatError};

fn qemu_img(args: &[&str], dir: &Path) {
    let out = Command::new("qemu-img")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("qemu-img installed");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn safe_images_give_their_virtual_size() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    qemu_img(&["create", "-f", "qcow2", "disk.qcow2", "64M"], d);
    let info = inspect(&d.join("disk.qcow2"), DiskFormat::Qcow2)
        .await
        .unwrap();
    assert_eq!(info.virtual_size, 64 << 20);
    std::fs::write(d.join("disk.raw"), vec![0u8; 3 << 20]).unwrap();
    let info = inspect(&d.join("disk.raw"), DiskFormat::Raw).await.unwrap();
    assert_eq!(info.virtual_size, 3 << 20);
}

#[tokio::test]
async fn backing_and_data_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    qemu_img(&["create", "-f", "qcow2", "base.qcow2", "1M"], d);
    qemu_img(
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            "overlay.qcow2",
        ],
        d,
    );
    let e = inspect(&d.join("overlay.qcow2"), DiskFormat::Qcow2)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, FormatError::BackingFile(b) if b.contains("base.qcow2")),
        "{e}"
    );

    qemu_img(
        &[
            "create",
            "-f",
            "qcow2",
            "-o",
            "data_file=external.raw",
            "withdata.qcow2",
            "1M",
        ],
        d,
    );
    let e = inspect(&d.join("withdata.qcow2"), DiskFormat::Qcow2)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, FormatError::DataFile(f) if f.contains("external.raw")),
        "{e}"
    );
}

#[tokio::test]
async fn content_must_match_the_declared_format() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    qemu_img(&["create", "-f", "qcow2", "disk.qcow2", "1M"], d);
    let e = inspect(&d.join("disk.qcow2"), DiskFormat::Raw)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        FormatError::Mismatch {
            declared: "raw",
            found: "qcow2"
        }
    );
    std::fs::write(d.join("junk"), vec![0x42u8; 4096]).unwrap();
    let e = inspect(&d.join("junk"), DiskFormat::Qcow2)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        FormatError::Mismatch {
            declared: "qcow2",
            found: "raw"
        }
    );
    // A qcow2 header with a damaged body: qemu-img refuses it, and so do we.
    let mut bad = std::fs::read(d.join("disk.qcow2")).unwrap();
    bad.truncate(16);
    std::fs::write(d.join("broken.qcow2"), &bad).unwrap();
    let e = inspect(&d.join("broken.qcow2"), DiskFormat::Qcow2)
        .await
        .unwrap_err();
    assert!(matches!(e, FormatError::Invalid(_)), "{e}");
}
