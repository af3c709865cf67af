//! The Image API over real HTTP: data, digests, visibility, format safety and bad input.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::process::Command;

const PATCH: &str = "application/openstack-images-v2.1-json-patch";

fn assert_glance_error(status: StatusCode, body: &Value, expected: StatusCode) {
    assert_eq!(status, expected, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["code"]
            .as_str()
            .is_some_and(|c| c.starts_with(&expected.as_u16().to_string())),
        "{body}"
    );
}

async fn project_token(c: &TestCloud, project: &str) -> String {
    let pw = c.admin_password.clone();
    c.token_for("admin", &pw, Some(project)).await
}

async fn create(c: &TestCloud, t: &str, body: Value) -> Value {
    let (s, _, b) = c
        .call(Method::POST, "/image/v2/images", Some(t), Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b
}

async fn put_file(c: &TestCloud, t: &str, id: &str, data: Vec<u8>) -> (StatusCode, Value) {
    let r = c
        .http
        .put(format!("{}/image/v2/images/{id}/file", c.url))
        .header("X-Auth-Token", t)
        .header("Content-Type", "application/octet-stream")
        .body(data)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn patch(c: &TestCloud, t: &str, id: &str, ct: &str, ops: Value) -> (StatusCode, Value) {
    let r = c
        .http
        .patch(format!("{}/image/v2/images/{id}", c.url))
        .header("X-Auth-Token", t)
        .header("Content-Type", ct)
        .body(ops.to_string())
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn qcow2(dir: &std::path::Path, name: &str, extra: &[&str]) -> Vec<u8> {
    let p = dir.join(name);
    let mut args = vec!["create", "-f", "qcow2"];
    args.extend_from_slice(extra);
    let ps = p.to_str().unwrap().to_string();
    args.push(&ps);
    args.push("8M");
    assert!(Command::new("qemu-img")
        .args(&args)
        .current_dir(dir)
        .status()
        .unwrap()
        .success());
    std::fs::read(p).unwrap()
}

async fn data_round_trip_and_patch(c: &TestCloud) {
    let t = project_token(c, "admin").await;
    let tmp = tempfile::tempdir().unwrap();
    let data = qcow2(tmp.path(), "a.qcow2", &[]);
    let img = create(
        c,
        &t,
        json!({"name": "a", "disk_format": "qcow2", "container_format": "bare", "hw_x": "1"}),
    )
    .await;
    let id = img["id"].as_str().unwrap().to_string();
    assert_eq!(img["status"], "queued");
    assert_eq!(img["hw_x"], "1");
    // No data yet: 204.
    let (s, _, _) = c
        .call(
            Method::GET,
            &format!("/image/v2/images/{id}/file"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = put_file(c, &t, &id, data.clone()).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (_, _, img) = c
        .call(
            Method::GET,
            &format!("/image/v2/images/{id}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(img["status"], "active");
    assert_eq!(img["size"], data.len());
    assert_eq!(img["virtual_size"], 8 << 20);
    assert_eq!(img["os_hash_algo"], "sha512");
    // Uploading again: 409.
    let (s, b) = put_file(c, &t, &id, data.clone()).await;
    assert_glance_error(s, &b, StatusCode::CONFLICT);
    // Download: the same bytes, with Content-MD5.
    let r = c
        .http
        .get(format!("{}/image/v2/images/{id}/file", c.url))
        .header("X-Auth-Token", &t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-md5"],
        img["checksum"].as_str().unwrap()
    );
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);

    // JSON-patch, both media types; read-only attributes 403; other media types 415.
    let (s, b) = patch(c, &t, &id, PATCH, json!([{"op": "add", "path": "/k", "value": "v"}, {"op": "replace", "path": "/name", "value": "b"}])).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["k"].as_str(), b["name"].as_str()),
        (Some("v"), Some("b"))
    );
    let (s, b) = patch(
        c,
        &t,
        &id,
        "application/openstack-images-v2.0-json-patch",
        json!([{"remove": "/k"}]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b.get("k").is_none());
    let (s, b) = patch(
        c,
        &t,
        &id,
        PATCH,
        json!([{"op": "replace", "path": "/status", "value": "active"}]),
    )
    .await;
    assert_glance_error(s, &b, StatusCode::FORBIDDEN);
    let (s, b) = patch(c, &t, &id, "application/json", json!([])).await;
    assert_glance_error(s, &b, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, b) = patch(c, &t, &id, PATCH, json!([{"op": "move", "path": "/name"}])).await;
    assert_glance_error(s, &b, StatusCode::BAD_REQUEST);

    // Protected images cannot be deleted.
    let (s, _) = patch(
        c,
        &t,
        &id,
        PATCH,
        json!([{"op": "replace", "path": "/protected", "value": true}]),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, b) = c
        .call(
            Method::DELETE,
            &format!("/image/v2/images/{id}"),
            Some(&t),
            None,
        )
        .await;
    assert_glance_error(s, &b, StatusCode::FORBIDDEN);
    let (s, _) = patch(
        c,
        &t,
        &id,
        PATCH,
        json!([{"op": "replace", "path": "/protected", "value": false}]),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = c
        .call(
            Method::DELETE,
            &format!("/image/v2/images/{id}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, b) = c
        .call(
            Method::GET,
            &format!("/image/v2/images/{id}"),
            Some(&t),
            None,
        )
        .await;
    assert_glance_error(s, &b, StatusCode::NOT_FOUND);
}
on_both_stores!(data_round_trip_and_patch);

async fn unsafe_or_mismatched_data_is_refused_and_discarded(c: &TestCloud) {
    let t = project_token(c, "admin").await;
    let tmp = tempfile::tempdir().unwrap();
    qcow2(tmp.path(), "base.qcow2", &[]);
    let overlay = qcow2(
        tmp.path(),
        "overlay.qcow2",
        &["-b", "base.qcow2", "-F", "qcow2"],
    );
    let plain = qcow2(tmp.path(), "plain.qcow2", &[]);
    for (fmt, data, needle) in [
        ("qcow2", overlay, "backing file"),
        ("raw", plain, "not the declared raw"),
        ("qcow2", vec![0x42u8; 65536], "not the declared qcow2"),
    ] {
        let img = create(
            c,
            &t,
            json!({"name": "x", "disk_format": fmt, "container_format": "bare"}),
        )
        .await;
        let id = img["id"].as_str().unwrap();
        let (s, b) = put_file(c, &t, id, data).await;
        assert_glance_error(s, &b, StatusCode::BAD_REQUEST);
        assert!(b["message"].as_str().unwrap().contains(needle), "{b}");
        let (_, _, img) = c
            .call(
                Method::GET,
                &format!("/image/v2/images/{id}"),
                Some(&t),
                None,
            )
            .await;
        assert_eq!(img["status"], "queued", "{img}");
        assert!(img["size"].is_null() && img["checksum"].is_null());
        let (s, _, _) = c
            .call(
                Method::GET,
                &format!("/image/v2/images/{id}/file"),
                Some(&t),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    // Data before the formats are set: 400.
    let img = create(c, &t, json!({"name": "y"})).await;
    let (s, b) = put_file(c, &t, img["id"].as_str().unwrap(), b"abc".to_vec()).await;
    assert_glance_error(s, &b, StatusCode::BAD_REQUEST);
    // Bad create bodies.
    for body in [
        json!({"disk_format": "floppy"}),
        json!({"visibility": "everyone"}),
        json!({"min_disk": -1}),
        json!({"id": "not-a-uuid"}),
        json!({"name": 5}),
        json!({"k": 5}),
    ] {
        let (s, _, b) = c
            .call(Method::POST, "/image/v2/images", Some(&t), Some(body))
            .await;
        assert_glance_error(s, &b, StatusCode::BAD_REQUEST);
    }
    let (s, _, b) = c
        .call(
            Method::POST,
            "/image/v2/images",
            Some(&t),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_glance_error(s, &b, StatusCode::FORBIDDEN);
}
on_both_stores!(unsafe_or_mismatched_data_is_refused_and_discarded);

async fn visibility_between_projects(c: &TestCloud) {
    let admin = project_token(c, "admin").await;
    let demo = project_token(c, "demo").await;
    let private = create(
        c,
        &admin,
        json!({"name": "private", "visibility": "private"}),
    )
    .await;
    let public = create(c, &admin, json!({"name": "public", "visibility": "public"})).await;
    let (s, _, b) = c
        .call(
            Method::GET,
            &format!("/image/v2/images/{}", private["id"].as_str().unwrap()),
            Some(&demo),
            None,
        )
        .await;
    assert_glance_error(s, &b, StatusCode::NOT_FOUND);
    let (s, _, _) = c
        .call(
            Method::GET,
            &format!("/image/v2/images/{}", public["id"].as_str().unwrap()),
            Some(&demo),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, l) = c
        .call(Method::GET, "/image/v2/images", Some(&demo), None)
        .await;
    let names: Vec<&str> = l["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["public"]);
    // Another project may see a public image but not change it.
    let (s, b) = patch(
        c,
        &demo,
        public["id"].as_str().unwrap(),
        PATCH,
        json!([{"op": "replace", "path": "/name", "value": "x"}]),
    )
    .await;
    assert_glance_error(s, &b, StatusCode::FORBIDDEN);

    // Paging: newest first, `next` while pages are full.
    for n in 0..3 {
        create(c, &admin, json!({"name": format!("p{n}")})).await;
    }
    let (_, _, l) = c
        .call(Method::GET, "/image/v2/images?limit=2", Some(&admin), None)
        .await;
    let first: Vec<&str> = l["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(first, ["p2", "p1"]);
    let next = l["next"].as_str().expect("next link");
    let (_, _, l2) = c
        .call(Method::GET, &format!("/image{next}"), Some(&admin), None)
        .await;
    let second: Vec<&str> = l2["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(second, ["p0", "public"]);
    for q in ["limit=-1", "limit=x", "marker=nope", "visibility=everyone"] {
        let (s, _, b) = c
            .call(
                Method::GET,
                &format!("/image/v2/images?{q}"),
                Some(&admin),
                None,
            )
            .await;
        assert_glance_error(s, &b, StatusCode::BAD_REQUEST);
    }
}
on_both_stores!(visibility_between_projects);

async fn listing_needs_its_action(c: &TestCloud) {
    let admin = c.admin_token().await;
    let uid = c.create_user(&admin, "imgro", "pw").await;
    let gid = c.group_with(&admin, "imgro", &uid).await;
    let demo = c.project_id(&admin, "demo").await;
    let policy = c
        .custom_policy(&admin, "get only", json!({"Version": "1.1", "Statement": [{"Effect": "Allow", "Action": ["ims:images:get"]}]}))
        .await;
    c.grant(
        &admin,
        &format!("/identity/v3/projects/{demo}/groups/{gid}/roles/{policy}"),
    )
    .await;
    let t = c.token_for("imgro", "pw", Some("demo")).await;
    let (s, _, b) = c
        .call(Method::GET, "/image/v2/images", Some(&t), None)
        .await;
    assert_glance_error(s, &b, StatusCode::FORBIDDEN);
    assert_eq!(
        b["message"],
        "Policy doesn't allow ims:images:list to be performed."
    );
}
on_both_stores!(listing_needs_its_action);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_data_is_413_and_discarded() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| cfg.max_image_size = 1 << 20)
        .await
        .unwrap();
    let t = project_token(&c, "admin").await;
    let img = create(
        &c,
        &t,
        json!({"name": "big", "disk_format": "raw", "container_format": "bare"}),
    )
    .await;
    let id = img["id"].as_str().unwrap();
    let (s, b) = put_file(&c, &t, id, vec![0u8; 2 << 20]).await;
    assert_glance_error(s, &b, StatusCode::PAYLOAD_TOO_LARGE);
    let (_, _, img) = c
        .call(
            Method::GET,
            &format!("/image/v2/images/{id}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(img["status"], "queued");
    let files: Vec<_> = std::fs::read_dir(c.config.data_dir.join("images"))
        .unwrap()
        .collect();
    assert!(files.is_empty(), "{files:?}");
    c.stop().await;
}

async fn deactivated_images_keep_their_data_from_downloads(c: &TestCloud) {
    let t = project_token(c, "admin").await;
    let img = create(
        c,
        &t,
        json!({"name": "d", "disk_format": "raw", "container_format": "bare"}),
    )
    .await;
    let id = img["id"].as_str().unwrap().to_string();
    let act = |a: &'static str| format!("/image/v2/images/{id}/actions/{a}");
    // Only an active image can be deactivated.
    let (s, _, b) = c
        .call(Method::POST, &act("deactivate"), Some(&t), None)
        .await;
    assert_glance_error(s, &b, StatusCode::FORBIDDEN);
    let (s, _) = put_file(c, &t, &id, vec![1u8; 4096]).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = c
        .call(Method::POST, &act("deactivate"), Some(&t), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, _, i) = c
        .call(
            Method::GET,
            &format!("/image/v2/images/{id}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(i["status"], "deactivated");
    let (s, _, b) = c
        .call(
            Method::GET,
            &format!("/image/v2/images/{id}/file"),
            Some(&t),
            None,
        )
        .await;
    assert_glance_error(s, &b, StatusCode::FORBIDDEN);
    let (s, _, _) = c
        .call(Method::POST, &act("reactivate"), Some(&t), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = c
        .call(
            Method::GET,
            &format!("/image/v2/images/{id}/file"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}
on_both_stores!(deactivated_images_keep_their_data_from_downloads);
