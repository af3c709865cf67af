//! The format inspector with the real qemu-img: every disk format Glance accepts, made by
//! qemu-img, and the unsafe variants of each.

use std::path::Path;
use std::process::Command;
use stratus_blob::format::FormatError;
use stratus_blob::inspect::{inspect, ImageFormat};

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

async fn check(d: &Path, name: &str, f: ImageFormat) -> Result<u64, FormatError> {
    inspect(&d.join(name), f).await.map(|i| i.virtual_size)
}

/// Replaces `from` by `to` (same length) in a file.
fn patch(path: &Path, from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let mut b = std::fs::read(path).unwrap();
    let at = b
        .windows(from.len())
        .position(|w| w == from)
        .unwrap_or_else(|| {
            panic!(
                "{} has no {:?}",
                path.display(),
                String::from_utf8_lossy(from)
            )
        });
    b[at..at + to.len()].copy_from_slice(to);
    std::fs::write(path, b).unwrap();
}

#[tokio::test]
async fn safe_images_of_every_format_give_their_virtual_size() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let made = [
        ("disk.qcow2", "qcow2", &[][..], ImageFormat::Qcow2),
        ("sparse.vmdk", "vmdk", &[][..], ImageFormat::Vmdk),
        (
            "stream.vmdk",
            "vmdk",
            &["-o", "subformat=streamOptimized"][..],
            ImageFormat::Vmdk,
        ),
        ("dynamic.vhd", "vpc", &[][..], ImageFormat::Vhd),
        (
            "fixed.vhd",
            "vpc",
            &["-o", "subformat=fixed"][..],
            ImageFormat::Vhd,
        ),
        ("disk.vhdx", "vhdx", &[][..], ImageFormat::Vhdx),
        ("disk.vdi", "vdi", &[][..], ImageFormat::Vdi),
    ];
    for (name, fmt, opts, f) in made {
        let mut args = vec!["create", "-f", fmt];
        args.extend_from_slice(opts);
        args.extend([name, "64M"]);
        qemu_img(&args, d);
        let size = check(d, name, f)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // VHD rounds to its disk geometry.
        assert!(
            (64 << 20..(64 << 20) + (1 << 20)).contains(&size),
            "{name}: {size}"
        );
    }
    std::fs::write(d.join("disk.raw"), vec![0u8; 3 << 20]).unwrap();
    assert_eq!(
        check(d, "disk.raw", ImageFormat::Raw).await.unwrap(),
        3 << 20
    );
    // An ISO 9660 file system: as iso, and as raw data (it is one).
    let mut iso = vec![0u8; 64 << 10];
    iso[0x8001..0x8006].copy_from_slice(b"CD001");
    std::fs::write(d.join("disk.iso"), &iso).unwrap();
    assert_eq!(
        check(d, "disk.iso", ImageFormat::Iso).await.unwrap(),
        64 << 10
    );
    assert_eq!(
        check(d, "disk.iso", ImageFormat::Raw).await.unwrap(),
        64 << 10
    );
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
    let e = check(d, "overlay.qcow2", ImageFormat::Qcow2)
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
    let e = check(d, "withdata.qcow2", ImageFormat::Qcow2)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, FormatError::DataFile(f) if f.contains("external.raw")),
        "{e}"
    );

    // A differencing VHD reads its parent.
    qemu_img(&["create", "-f", "vpc", "diff.vhd", "1M"], d);
    let mut b = std::fs::read(d.join("diff.vhd")).unwrap();
    b[60..64].copy_from_slice(&4u32.to_be_bytes());
    std::fs::write(d.join("diff.vhd"), b).unwrap();
    let e = check(d, "diff.vhd", ImageFormat::Vhd).await.unwrap_err();
    assert!(matches!(e, FormatError::BackingFile(_)), "{e}");
}

/// Encrypted images are made by hand rather than by `qemu-img create -o encrypt.format=luks`:
/// qemu-img times its key derivation with the thread's CPU clock and gives up with "Unable to
/// get accurate CPU usage" where that clock is coarse, so the real tool cannot make them on
/// every machine. The fields set here are the ones qemu itself reads.
#[tokio::test]
async fn encrypted_images_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    qemu_img(&["create", "-f", "qcow2", "enc.qcow2", "1M"], d);
    // qcow2 header: crypt_method is the big-endian u32 at byte 32; 2 is LUKS, 1 is AES.
    for method in [1u8, 2] {
        let mut b = std::fs::read(d.join("enc.qcow2")).unwrap();
        assert_eq!(
            &b[32..36],
            &[0, 0, 0, 0],
            "qemu-img made an unencrypted image"
        );
        b[35] = method;
        std::fs::write(d.join("encrypted.qcow2"), b).unwrap();
        let e = check(d, "encrypted.qcow2", ImageFormat::Qcow2)
            .await
            .unwrap_err();
        assert!(
            matches!(e, FormatError::Unsafe(ref m) if m.contains("encrypted")),
            "method {method}: {e}"
        );
    }
    // A LUKS volume (version 1 header, "aes" cipher) offered as raw data.
    let mut luks = vec![0u8; 1 << 20];
    luks[..6].copy_from_slice(b"LUKS\xba\xbe");
    luks[6..8].copy_from_slice(&1u16.to_be_bytes());
    luks[8..11].copy_from_slice(b"aes");
    std::fs::write(d.join("disk.luks"), luks).unwrap();
    let e = check(d, "disk.luks", ImageFormat::Raw).await.unwrap_err();
    assert_eq!(
        e,
        FormatError::Mismatch {
            declared: "raw",
            found: "luks"
        }
    );
}

#[tokio::test]
async fn vmdk_only_as_one_self_contained_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // A descriptor naming extent files elsewhere: not a sparse header at all.
    qemu_img(
        &[
            "create",
            "-f",
            "vmdk",
            "-o",
            "subformat=monolithicFlat",
            "flat.vmdk",
            "1M",
        ],
        d,
    );
    let e = check(d, "flat.vmdk", ImageFormat::Vmdk).await.unwrap_err();
    assert_eq!(
        e,
        FormatError::Mismatch {
            declared: "vmdk",
            found: "vmdk descriptor"
        }
    );
    qemu_img(
        &[
            "create",
            "-f",
            "vmdk",
            "-o",
            "subformat=twoGbMaxExtentSparse",
            "split.vmdk",
            "1M",
        ],
        d,
    );
    assert!(check(d, "split.vmdk", ImageFormat::Vmdk).await.is_err());
    // A sparse file whose embedded descriptor names another type, or a file elsewhere.
    qemu_img(&["create", "-f", "vmdk", "typed.vmdk", "1M"], d);
    patch(
        &d.join("typed.vmdk"),
        b"\"monolithicSparse\"",
        b"\"vmfsSparse\"      ",
    );
    let e = check(d, "typed.vmdk", ImageFormat::Vmdk).await.unwrap_err();
    assert!(
        matches!(e, FormatError::Unsafe(ref m) if m.contains("vmfsSparse")),
        "{e}"
    );
    qemu_img(&["create", "-f", "vmdk", "elsewhere.vmdk", "1M"], d);
    patch(
        &d.join("elsewhere.vmdk"),
        b"\"elsewhere.vmdk\"",
        b"\"/etc/passwd\"   ",
    );
    let e = check(d, "elsewhere.vmdk", ImageFormat::Vmdk)
        .await
        .unwrap_err();
    assert!(
        matches!(e, FormatError::Unsafe(ref m) if m.contains("/etc/passwd")),
        "{e}"
    );
}

#[tokio::test]
async fn content_must_match_the_declared_format() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    qemu_img(&["create", "-f", "qcow2", "disk.qcow2", "1M"], d);
    qemu_img(&["create", "-f", "vmdk", "disk.vmdk", "1M"], d);
    qemu_img(&["create", "-f", "vdi", "disk.vdi", "1M"], d);
    std::fs::write(d.join("junk"), vec![0x42u8; 4096]).unwrap();
    let cases = [
        ("disk.qcow2", ImageFormat::Raw, "raw", "qcow2"),
        ("disk.qcow2", ImageFormat::Vmdk, "vmdk", "qcow2"),
        ("disk.vmdk", ImageFormat::Qcow2, "qcow2", "vmdk"),
        ("disk.vmdk", ImageFormat::Ami, "ami", "vmdk"),
        ("disk.vdi", ImageFormat::Vhdx, "vhdx", "vdi"),
        ("junk", ImageFormat::Qcow2, "qcow2", "raw"),
        ("junk", ImageFormat::Iso, "iso", "raw"),
        ("junk", ImageFormat::Vhd, "vhd", "raw"),
    ];
    for (name, declared, d_name, found) in cases {
        let e = check(d, name, declared).await.unwrap_err();
        assert_eq!(
            e,
            FormatError::Mismatch {
                declared: d_name,
                found
            },
            "{name} as {d_name}"
        );
    }
    // A qcow2 header with a damaged body is refused.
    let mut bad = std::fs::read(d.join("disk.qcow2")).unwrap();
    bad.truncate(16);
    std::fs::write(d.join("broken.qcow2"), &bad).unwrap();
    let e = check(d, "broken.qcow2", ImageFormat::Qcow2)
        .await
        .unwrap_err();
    assert!(
        matches!(e, FormatError::Invalid(_) | FormatError::Unsafe(_)),
        "{e}"
    );
}
