//! What one project can do to another's data, tried as an attacker would: image ids taken over
//! after a delete, images, volumes and snapshots of other projects named in request bodies, and
//! the image cache those paths share.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A deleted image's id is never given to new data, by its project or any other, and the cache
/// the image's servers booted from goes once nothing uses it.
async fn a_deleted_image_id_is_never_reused(c: &TestCloud) {
    let a = c.project_token("demo").await;
    let b = c.project_token("admin").await;
    let (x, digest) = c.upload_filled_image(&a, "x", 0xa1).await;
    let cache = format!("sha512-{digest}");

    // A boots from X, then deletes X; the server keeps its disk.
    let (s, _, srv) = c
        .call(
            Method::POST,
            "/compute/v2.1/servers",
            Some(&a),
            Some(json!({"server": {"name": "a1", "imageRef": x, "flavorRef": "1"}})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{srv}");
    let sid = srv["server"]["id"].as_str().unwrap().to_string();
    c.wait_server(&a, &sid, "ACTIVE").await;
    assert!(
        c.cached_images().contains(&cache),
        "{:?}",
        c.cached_images()
    );
    let (s, _, _) = c
        .call(
            Method::DELETE,
            &format!("/image/v2/images/{x}"),
            Some(&a),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Neither B nor A can create an image with X's id again.
    for t in [&b, &a] {
        let (s, _, body) = c
            .call(
                Method::POST,
                "/image/v2/images",
                Some(t),
                Some(json!({"id": x, "name": "taken", "disk_format": "qcow2", "container_format": "bare"})),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(&x)),
            "{body}"
        );
    }
    // Nor import under it: the id does not exist.
    let (s, _, _) = c
        .call(
            Method::GET,
            &format!("/image/v2/images/{x}"),
            Some(&b),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The cache stays while the server uses it and goes with the server.
    assert!(c.cached_images().contains(&cache));
    let (s, _, _) = c
        .call(
            Method::DELETE,
            &format!("/compute/v2.1/servers/{sid}"),
            Some(&a),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    c.wait_gone(&a, &format!("/compute/v2.1/servers/{sid}"))
        .await;
    assert!(
        !c.cached_images().contains(&cache),
        "{:?}",
        c.cached_images()
    );
}
on_both_stores!(a_deleted_image_id_is_never_reused);

/// Two images with different data never share a cache file, and a volume create refused by quota
/// leaves no cache behind.
async fn cached_data_is_the_data_of_its_image(c: &TestCloud) {
    let t = c.project_token("demo").await;
    let (one, d1) = c.upload_filled_image(&t, "one", 0x11).await;
    let (two, d2) = c.upload_filled_image(&t, "two", 0x22).await;
    assert_ne!(d1, d2);
    let before = c.cached_images();

    // Refused by quota: no volume, no cache.
    let demo = c.project_id(&c.admin_token().await, "demo").await;
    let quota = format!("/volume/v3/os-quota-sets/{demo}");
    let (s, _, b) = c
        .call(
            Method::PUT,
            &quota,
            Some(&t),
            Some(json!({"quota_set": {"volumes": 0}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _, b) = c
        .call(
            Method::POST,
            "/volume/v3/volumes",
            Some(&t),
            Some(json!({"volume": {"size": 1, "imageRef": one}})),
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert_eq!(c.cached_images(), before);
    let (s, _, _) = c.call(Method::DELETE, &quota, Some(&t), None).await;
    assert_eq!(s, StatusCode::OK);

    // Volumes from each image hold each image's bytes.
    let mut made: Vec<(Value, u8)> = Vec::new();
    for (image, fill) in [(&one, 0x11u8), (&two, 0x22u8)] {
        let (s, _, b) = c
            .call(
                Method::POST,
                "/volume/v3/volumes",
                Some(&t),
                Some(json!({"volume": {"size": 1, "imageRef": image}})),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        made.push((b["volume"]["id"].clone(), fill));
    }
    let mut cached = c.cached_images();
    cached.retain(|f| !before.contains(f));
    cached.sort();
    let mut want = vec![format!("sha512-{d1}"), format!("sha512-{d2}")];
    want.sort();
    assert_eq!(cached, want);
    for (id, fill) in made {
        let id = id.as_str().unwrap();
        let disk = c.volume_disk(id).await;
        let read = std::process::Command::new("qemu-io")
            .args(["-r", "-f", "qcow2", "-c", &format!("read -P {fill} 0 64k")])
            .arg(&disk)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&read.stdout);
        assert!(
            read.status.success() && !text.contains("Pattern verification failed"),
            "{}: {text}",
            disk.display()
        );
    }
}
on_both_stores!(cached_data_is_the_data_of_its_image);
