//! What one project can do to another's data, tried as an attacker would: image ids taken over
//! after a delete, images, volumes and snapshots of other projects named in request bodies, and
//! the image cache those paths share.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A deleted image's id is never given to new data, by its project or any other, and the cache
/// the image's servers booted from goes once nothing uses it.
async fn a_deleted_image_id_is_never_reused(c: &TestCloud) {
    let a = c.project_token("demo").await;
    let b = c.project_token("admin").await;
    let (x, digest) = c.upload_filled_image(&a, "x", 0xa1).await;
    let cache = format!("sha512-{digest}");

    // A boots from X, then deletes X; the server keeps its disk.
    let (s, srv) = c
        .post(
            &a,
            "/compute/v2.1/servers",
            json!({"server": {"name": "a1", "imageRef": x, "flavorRef": "1"}}),
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
    let (s, _) = c.delete(&a, &format!("/image/v2/images/{x}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Neither B nor A can create an image with X's id again.
    for t in [&b, &a] {
        let (s, body) = c.post(t, "/image/v2/images", json!({"id": x, "name": "taken", "disk_format": "qcow2", "container_format": "bare"})).await;
        assert_eq!(s, StatusCode::CONFLICT, "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(&x)),
            "{body}"
        );
    }
    // Nor import under it: the id does not exist.
    let (s, _) = c.get(&b, &format!("/image/v2/images/{x}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The cache stays while the server uses it and goes with the server.
    assert!(c.cached_images().contains(&cache));
    let (s, _) = c.delete(&a, &format!("/compute/v2.1/servers/{sid}")).await;
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
    let (s, b) = c
        .put(&t, &quota, json!({"quota_set": {"volumes": 0}}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = c
        .post(
            &t,
            "/volume/v3/volumes",
            json!({"volume": {"size": 1, "imageRef": one}}),
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert_eq!(c.cached_images(), before);
    let (s, _) = c.delete(&t, &quota).await;
    assert_eq!(s, StatusCode::OK);

    // Volumes from each image hold each image's bytes.
    let mut made: Vec<(Value, u8)> = Vec::new();
    for (image, fill) in [(&one, 0x11u8), (&two, 0x22u8)] {
        let (s, b) = c
            .post(
                &t,
                "/volume/v3/volumes",
                json!({"volume": {"size": 1, "imageRef": image}}),
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

/// Another project's image, volume, snapshot and server, as each route taking one in its body would be
/// asked to use them: `(catalogue key, kind, path, body)`.
fn foreign_uses(
    image: &str,
    volume: &str,
    snapshot: &str,
    server: &str,
    own_server: &str,
) -> Vec<(&'static str, &'static str, String, Value)> {
    let bdm = |source: &str, uuid: &str| {
        json!({"server": {"name": "x", "flavorRef": "1", "block_device_mapping_v2": [
            {"boot_index": 0, "source_type": source, "destination_type": "volume", "uuid": uuid,
             "volume_size": 1, "delete_on_termination": true}]}})
    };
    vec![
        (
            "POST /compute/v2.1/{project_id}/servers",
            "image",
            "/compute/v2.1/servers".into(),
            json!({"server": {"name": "x", "imageRef": image, "flavorRef": "1"}}),
        ),
        (
            "POST /compute/v2.1/{project_id}/servers",
            "image",
            "/compute/v2.1/servers".into(),
            bdm("image", image),
        ),
        (
            "POST /compute/v2.1/{project_id}/servers",
            "volume",
            "/compute/v2.1/servers".into(),
            bdm("volume", volume),
        ),
        (
            "POST /compute/v2.1/{project_id}/servers",
            "snapshot",
            "/compute/v2.1/servers".into(),
            bdm("snapshot", snapshot),
        ),
        (
            "POST /compute/v2.1/{project_id}/servers/{server_id}/action rebuild",
            "image",
            format!("/compute/v2.1/servers/{own_server}/action"),
            json!({"rebuild": {"imageRef": image}}),
        ),
        (
            "POST /volume/v3/{project_id}/volumes",
            "image",
            "/volume/v3/volumes".into(),
            json!({"volume": {"size": 1, "imageRef": image}}),
        ),
        (
            "POST /volume/v3/{project_id}/volumes",
            "snapshot",
            "/volume/v3/volumes".into(),
            json!({"volume": {"snapshot_id": snapshot}}),
        ),
        (
            "POST /volume/v3/{project_id}/snapshots",
            "volume",
            "/volume/v3/snapshots".into(),
            json!({"snapshot": {"volume_id": volume}}),
        ),
        (
            "POST /image/v2/cloudimages/action",
            "server",
            "/image/v2/cloudimages/action".into(),
            json!({"name": "x", "instance_id": server}),
        ),
    ]
}

/// What a project holds, as its own lists show it.
async fn holdings(c: &TestCloud, t: &str) -> Vec<usize> {
    c.list_lengths(t, &HOLDINGS).await
}

/// Every route that takes a resource in its body, asked to use another project's private image,
/// volume and snapshot: the API's own "not found" answer, and nothing made or changed.
async fn resources_of_other_projects_are_never_used(c: &TestCloud) {
    let a = c.project_token("demo").await;
    let b = c.project_token("admin").await;
    let (image, _) = c.upload_filled_image(&a, "private", 0x5a).await;
    let (s, v) = c
        .post(&a, "/volume/v3/volumes", json!({"volume": {"size": 1}}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let volume = v["volume"]["id"].as_str().unwrap().to_string();
    let (s, sn) = c
        .post(
            &a,
            "/volume/v3/snapshots",
            json!({"snapshot": {"volume_id": volume}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{sn}");
    let snapshot = sn["snapshot"]["id"].as_str().unwrap().to_string();
    let (s, srv) = c.post(&a, "/compute/v2.1/servers", json!({"server": {"name": "theirs", "imageRef": stratus_services::demo::DEMO_IMAGE_ID, "flavorRef": "1"}})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{srv}");
    let server = srv["server"]["id"].as_str().unwrap().to_string();
    c.wait_server(&a, &server, "ACTIVE").await;
    let (s, srv) = c.post(&b, "/compute/v2.1/servers", json!({"server": {"name": "own", "imageRef": stratus_services::demo::DEMO_IMAGE_ID, "flavorRef": "1"}})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{srv}");
    let own = srv["server"]["id"].as_str().unwrap().to_string();
    let own_before = c.wait_server(&b, &own, "ACTIVE").await;

    let a_before = holdings(c, &a).await;
    let b_before = holdings(c, &b).await;
    let uses = foreign_uses(&image, &volume, &snapshot, &server, &own);
    // Every route the catalogue says takes a resource in its body is tried with each kind it
    // names (flavors belong to no project).
    let cat = stratus_iam::Catalogue::shipped().unwrap();
    for e in cat.entries() {
        for kind in &e.body_resources {
            let kind = format!("{kind:?}").to_lowercase();
            if kind == "flavor" {
                continue;
            }
            assert!(
                uses.iter()
                    .any(|(k, what, _, _)| *k == e.key() && *what == kind),
                "no case using another project's {kind} through {}",
                e.key()
            );
        }
    }
    for (key, kind, path, body) in &uses {
        let (s, r) = c.post(&b, path, body.clone()).await;
        let expected = if key.ends_with("/snapshots") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(s, expected, "{key} with another project's {kind}: {r}");
    }
    assert_eq!(holdings(c, &a).await, a_before);
    assert_eq!(holdings(c, &b).await, b_before);
    let own_after = c.wait_server(&b, &own, "ACTIVE").await;
    assert_eq!(own_after["image"], own_before["image"]);
    assert_eq!(own_after["updated"], own_before["updated"]);
    let (_, v) = c.get(&a, &format!("/volume/v3/volumes/{volume}")).await;
    assert_eq!(v["volume"]["status"], "available");
    assert!(v["volume"]["attachments"].as_array().unwrap().is_empty());
}
on_both_stores!(resources_of_other_projects_are_never_used);

/// A body naming a visible resource the caller may not read is a 403 naming the action, before
/// anything is made.
async fn using_a_resource_needs_reading_it(c: &TestCloud) {
    let admin = c.project_token("demo").await;
    let (image, _) = c.upload_filled_image(&admin, "mine", 0x33).await;
    let (_, v) = c
        .post(&admin, "/volume/v3/volumes", json!({"volume": {"size": 1}}))
        .await;
    let volume = v["volume"]["id"].as_str().unwrap().to_string();
    let (_, sn) = c
        .post(
            &admin,
            "/volume/v3/snapshots",
            json!({"snapshot": {"volume_id": volume}}),
        )
        .await;
    let snapshot = sn["snapshot"]["id"].as_str().unwrap().to_string();
    // Allowed to create volumes, denied reading snapshots and images.
    let t = c
        .demo_member(
            "no-reads",
            &["EVS FullAccess"],
            &[json!({"Version": "1.1", "Statement": [
                {"Effect": "Deny", "Action": ["evs:snapshots:get", "ims:images:get"]}]})],
        )
        .await;
    let before = holdings(c, &admin).await;
    for (body, action) in [
        (
            json!({"volume": {"snapshot_id": snapshot}}),
            "evs:snapshots:get",
        ),
        (
            json!({"volume": {"size": 1, "imageRef": image}}),
            "ims:images:get",
        ),
    ] {
        let (s, b) = c.post(&t, "/volume/v3/volumes", body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
        assert_eq!(
            b["forbidden"]["message"],
            format!("Policy doesn't allow {action} to be performed.")
        );
    }
    assert_eq!(holdings(c, &admin).await, before);
}
on_both_stores!(using_a_resource_needs_reading_it);

async fn volume_status(c: &TestCloud, t: &str, id: &str) -> (StatusCode, Value) {
    let (s, b) = c.get(t, &format!("/volume/v3/volumes/{id}")).await;
    (s, b)
}

/// A server booted from volume `volume` with `delete_on_termination`, by `t`.
async fn boot_from(c: &TestCloud, t: &str, volume: &str) -> (StatusCode, Value) {
    let (s, b) = c
        .post(
            t,
            "/compute/v2.1/servers",
            json!({"server": {"name": "bfv", "flavorRef": "1", "block_device_mapping_v2": [
                {"boot_index": 0, "source_type": "volume", "destination_type": "volume",
                 "uuid": volume, "delete_on_termination": true}]}}),
        )
        .await;
    (s, b)
}

async fn bootable_volume(c: &TestCloud, t: &str) -> String {
    let (s, v) = c
        .post(
            t,
            "/volume/v3/volumes",
            json!({"volume": {"size": 1, "imageRef": stratus_services::demo::DEMO_IMAGE_ID}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    v["volume"]["id"].as_str().unwrap().to_string()
}

/// `delete_on_termination` deletes a volume only when its mapper and the server's deleter may
/// delete volumes and no snapshot depends on it; an explicit Deny holds on every path.
async fn delete_on_termination_is_authorized(c: &TestCloud) {
    let admin = c.project_token("demo").await;
    // A user who may do everything with servers and volumes but delete volumes.
    let denied = c
        .demo_member(
            "keeps-volumes",
            &["ECS FullAccess"],
            &[json!({"Version": "1.1", "Statement": [
                {"Effect": "Deny", "Action": ["evs:volumes:delete"]}]})],
        )
        .await;

    // Mapping for deletion needs the delete action: 403, nothing attached.
    let v0 = bootable_volume(c, &admin).await;
    let (s, b) = boot_from(c, &denied, &v0).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(
        b["forbidden"]["message"],
        "Policy doesn't allow evs:volumes:delete to be performed."
    );
    assert_eq!(
        volume_status(c, &admin, &v0).await.1["volume"]["status"],
        "available"
    );

    // A volume with a snapshot is detached and kept.
    let v1 = bootable_volume(c, &admin).await;
    let (s, b) = c
        .post(
            &admin,
            "/volume/v3/snapshots",
            json!({"snapshot": {"volume_id": v1}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let (s, b) = boot_from(c, &admin, &v1).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let s1 = b["server"]["id"].as_str().unwrap().to_string();
    c.wait_server(&admin, &s1, "ACTIVE").await;
    let (s, _) = c
        .delete(&admin, &format!("/compute/v2.1/servers/{s1}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    c.wait_gone(&admin, &format!("/compute/v2.1/servers/{s1}"))
        .await;
    assert_eq!(
        volume_status(c, &admin, &v1).await.1["volume"]["status"],
        "available"
    );

    // Mapped by the administrator, deleted by the user denied volume deletes: kept.
    let v2 = bootable_volume(c, &admin).await;
    let (s, b) = boot_from(c, &admin, &v2).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let s2 = b["server"]["id"].as_str().unwrap().to_string();
    c.wait_server(&admin, &s2, "ACTIVE").await;
    let (s, b) = c
        .delete(&denied, &format!("/compute/v2.1/servers/{s2}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    c.wait_gone(&admin, &format!("/compute/v2.1/servers/{s2}"))
        .await;
    assert_eq!(
        volume_status(c, &admin, &v2).await.1["volume"]["status"],
        "available"
    );

    // Mapped and deleted by the administrator, no snapshot: deleted with the server.
    let (s, b) = boot_from(c, &admin, &v2).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let s3 = b["server"]["id"].as_str().unwrap().to_string();
    c.wait_server(&admin, &s3, "ACTIVE").await;
    let (s, _) = c
        .delete(&admin, &format!("/compute/v2.1/servers/{s3}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    c.wait_gone(&admin, &format!("/compute/v2.1/servers/{s3}"))
        .await;
    assert_eq!(volume_status(c, &admin, &v2).await.0, StatusCode::NOT_FOUND);
}
on_both_stores!(delete_on_termination_is_authorized);

/// Making an image public needs `ims:images:publicize`, which IMS FullAccess lacks: a tenant
/// cannot offer every project an image named like the demo image.
async fn only_administrators_publicize_images(c: &TestCloud) {
    let t = c.demo_member("imager", &["IMS FullAccess"], &[]).await;
    let denied = "Policy doesn't allow ims:images:publicize to be performed.";
    let (s, b) = c
        .post(
            &t,
            "/image/v2/images",
            json!({"name": "stratus-demo", "visibility": "public"}),
        )
        .await;
    assert_eq!(
        (s, b["message"].as_str()),
        (StatusCode::FORBIDDEN, Some(denied)),
        "{b}"
    );
    let (s, b) = c
        .post(
            &t,
            "/image/v2/images",
            json!({"name": "stratus-demo", "visibility": "private"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    let r = c
        .http
        .patch(format!("{}/image/v2/images/{id}", c.url))
        .header("X-Auth-Token", &t)
        .header(
            "Content-Type",
            "application/openstack-images-v2.1-json-patch",
        )
        .body(json!([{"op": "replace", "path": "/visibility", "value": "public"}]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["message"], denied);
    // Other projects still find exactly one public stratus-demo: the cloud's.
    let other = c.project_token("admin").await;
    let (_, l) = c.get(&other, "/image/v2/images?name=stratus-demo").await;
    let found: Vec<&str> = l["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(found, [stratus_services::demo::DEMO_IMAGE_ID]);
    // The administrator (Tenant Administrator) may publish.
    let (s, b) = c
        .post(
            &other,
            "/image/v2/images",
            json!({"name": "published", "visibility": "public"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}
on_both_stores!(only_administrators_publicize_images);
