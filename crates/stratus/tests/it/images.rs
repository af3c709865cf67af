//! The Image API over real HTTP: data, digests, visibility, format safety and bad input.

use crate::common::*;
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
    let (s, b) = c.post(t, "/image/v2/images", body).await;
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

/// Files of the blob store other than the demo image's (staging files included).
fn blob_files(c: &TestCloud) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![c.config.data_dir.join("images")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                let name = e.file_name().to_string_lossy().to_string();
                if name != stratus_services::demo::DEMO_IMAGE_ID {
                    out.push(name);
                }
            }
        }
    }
    out
}

async fn get_json(c: &TestCloud, t: &str, path: &str) -> (StatusCode, Value) {
    let (s, b) = c.get(t, path).await;
    (s, b)
}

fn names(list: &Value) -> Vec<String> {
    list["images"]
        .as_array()
        .unwrap_or_else(|| panic!("no images in {list}"))
        .iter()
        .map(|i| i["name"].as_str().unwrap_or("").to_string())
        .collect()
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
    let (s, _) = c.get(&t, &format!("/image/v2/images/{id}/file")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = put_file(c, &t, &id, data.clone()).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (_, img) = c.get(&t, &format!("/image/v2/images/{id}")).await;
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
    let (s, b) = c.delete(&t, &format!("/image/v2/images/{id}")).await;
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
    let (s, _) = c.delete(&t, &format!("/image/v2/images/{id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = c.get(&t, &format!("/image/v2/images/{id}")).await;
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
    let made = |fmt: &str, opts: &[&str], name: &str| -> Vec<u8> {
        let mut cmd = Command::new("qemu-img");
        cmd.args(["create", "-f", fmt])
            .args(opts)
            .arg(name)
            .arg("1M");
        assert!(cmd.current_dir(tmp.path()).status().unwrap().success());
        std::fs::read(tmp.path().join(name)).unwrap()
    };
    let flat = made("vmdk", &["-o", "subformat=monolithicFlat"], "flat.vmdk");
    let vdi = made("vdi", &[], "disk.vdi");
    // An encrypted qcow2: the header's crypt_method (big-endian u32 at byte 32) set to LUKS.
    // Made by hand because qemu-img's key derivation refuses to run where the thread CPU clock
    // is coarse ("Unable to get accurate CPU usage").
    let mut encrypted = plain.clone();
    encrypted[35] = 2;
    for (fmt, data, needle) in [
        ("qcow2", overlay, "backing file"),
        ("raw", plain, "not the declared raw"),
        ("qcow2", vec![0x42u8; 65536], "not the declared qcow2"),
        ("vmdk", flat, "vmdk descriptor, not the declared vmdk"),
        ("vhd", vdi, "vdi, not the declared vhd"),
        ("qcow2", encrypted, "encrypted"),
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
        let (_, img) = c.get(&t, &format!("/image/v2/images/{id}")).await;
        assert_eq!(img["status"], "queued", "{img}");
        assert!(img["size"].is_null() && img["checksum"].is_null());
        let (s, _) = c.get(&t, &format!("/image/v2/images/{id}/file")).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    // Every format the inspector vouches for becomes active with its virtual size.
    for (fmt, qemu, opts) in [
        ("vmdk", "vmdk", &["-o", "subformat=streamOptimized"][..]),
        ("vhd", "vpc", &[][..]),
        ("vhdx", "vhdx", &[][..]),
        ("vdi", "vdi", &[][..]),
    ] {
        let data = made(qemu, opts, &format!("ok.{fmt}"));
        let img = create(
            c,
            &t,
            json!({"name": fmt, "disk_format": fmt, "container_format": "bare"}),
        )
        .await;
        let id = img["id"].as_str().unwrap();
        let (s, b) = put_file(c, &t, id, data).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{fmt}: {b}");
        let (_, img) = c.get(&t, &format!("/image/v2/images/{id}")).await;
        assert_eq!(img["status"], "active", "{img}");
        let vs = img["virtual_size"].as_i64().unwrap();
        assert!((1 << 20..2 << 20).contains(&vs), "{fmt}: {vs}");
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
        let (s, b) = c.post(&t, "/image/v2/images", body).await;
        assert_glance_error(s, &b, StatusCode::BAD_REQUEST);
    }
    let (s, b) = c
        .post(&t, "/image/v2/images", json!({"status": "active"}))
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
    let (s, b) = c
        .get(
            &demo,
            &format!("/image/v2/images/{}", private["id"].as_str().unwrap()),
        )
        .await;
    assert_glance_error(s, &b, StatusCode::NOT_FOUND);
    let (s, _) = c
        .get(
            &demo,
            &format!("/image/v2/images/{}", public["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, l) = c.get(&demo, "/image/v2/images").await;
    let names: Vec<&str> = l["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["public", "stratus-demo"]);
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
    let (_, l) = c.get(&admin, "/image/v2/images?limit=2").await;
    let first: Vec<&str> = l["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(first, ["p2", "p1"]);
    let next = l["next"].as_str().expect("next link");
    let (_, l2) = c.get(&admin, &format!("/image{next}")).await;
    let second: Vec<&str> = l2["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(second, ["p0", "public"]);
    for q in ["limit=-1", "limit=x", "marker=nope", "visibility=everyone"] {
        let (s, b) = c.get(&admin, &format!("/image/v2/images?{q}")).await;
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
    c.grant_project(&admin, &demo, &gid, &policy).await;
    let t = c.token_for("imgro", "pw", Some("demo")).await;
    let (s, b) = c.get(&t, "/image/v2/images").await;
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
    let (_, img) = c.get(&t, &format!("/image/v2/images/{id}")).await;
    assert_eq!(img["status"], "queued");
    assert!(blob_files(&c).is_empty(), "{:?}", blob_files(&c));
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
    let (_, i) = c.get(&t, &format!("/image/v2/images/{id}")).await;
    assert_eq!(i["status"], "deactivated");
    let (s, b) = c.get(&t, &format!("/image/v2/images/{id}/file")).await;
    assert_glance_error(s, &b, StatusCode::FORBIDDEN);
    let (s, _, _) = c
        .call(Method::POST, &act("reactivate"), Some(&t), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = c.get(&t, &format!("/image/v2/images/{id}/file")).await;
    assert_eq!(s, StatusCode::OK);
}
on_both_stores!(deactivated_images_keep_their_data_from_downloads);

/// Creates `name` with data `size` bytes long (raw/bare), the given tags and properties.
async fn image_with(
    c: &TestCloud,
    t: &str,
    name: &str,
    size: usize,
    tags: &[&str],
    props: Value,
) -> String {
    let mut body =
        json!({"name": name, "disk_format": "raw", "container_format": "bare", "tags": tags});
    for (k, v) in props.as_object().unwrap() {
        body[k] = v.clone();
    }
    let img = create(c, t, body).await;
    let id = img["id"].as_str().unwrap().to_string();
    if size > 0 {
        let (s, b) = put_file(c, t, &id, vec![7u8; size]).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    }
    id
}

async fn listing_filters_and_sorts(c: &TestCloud) {
    let t = project_token(c, "demo").await;
    image_with(
        c,
        &t,
        "alpha",
        3000,
        &["x", "y"],
        json!({"__os_type": "Linux"}),
    )
    .await;
    image_with(
        c,
        &t,
        "bravo",
        1000,
        &["x"],
        json!({"__os_type": "Windows"}),
    )
    .await;
    // A second apart, so that created_at (whole seconds on the wire) separates them.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (_, charlie) = {
        let id = image_with(c, &t, "charlie", 2000, &[], json!({"__os_type": "Linux"})).await;
        get_json(c, &t, &format!("/image/v2/images/{id}")).await
    };
    create(
        c,
        &t,
        json!({"name": "delta", "disk_format": "qcow2", "container_format": "bare"}),
    )
    .await;
    let own = "owner=".to_string() + charlie["owner"].as_str().unwrap();

    let cases: Vec<(String, Vec<&str>)> = vec![
        (own.clone(), vec!["delta", "charlie", "bravo", "alpha"]),
        (format!("{own}&name=bravo"), vec!["bravo"]),
        (format!("{own}&name=in:alpha,delta"), vec!["delta", "alpha"]),
        (format!("{own}&tag=x"), vec!["bravo", "alpha"]),
        (format!("{own}&tag=x&tag=y"), vec!["alpha"]),
        (format!("{own}&disk_format=qcow2"), vec!["delta"]),
        (
            format!("{own}&container_format=bare&status=queued"),
            vec!["delta"],
        ),
        (format!("{own}&size_min=1500"), vec!["charlie", "alpha"]),
        (
            format!("{own}&size_min=1500&size_max=2500"),
            vec!["charlie"],
        ),
        (format!("{own}&__os_type=Linux"), vec!["charlie", "alpha"]),
        (
            format!("{own}&sort_key=name&sort_dir=asc"),
            vec!["alpha", "bravo", "charlie", "delta"],
        ),
        (
            format!("{own}&sort_key=size&sort_dir=desc&status=active"),
            vec!["alpha", "charlie", "bravo"],
        ),
        (
            format!("{own}&sort=size:asc,name:desc&status=active"),
            vec!["bravo", "charlie", "alpha"],
        ),
        (
            format!("{own}&sort_key=status&sort_key=name&sort_dir=asc&sort_dir=desc"),
            vec!["charlie", "bravo", "alpha", "delta"],
        ),
        (
            format!(
                "{own}&created_at=gte:{}",
                charlie["created_at"].as_str().unwrap()
            ),
            vec!["delta", "charlie"],
        ),
        (
            format!(
                "{own}&created_at=lt:{}",
                charlie["created_at"].as_str().unwrap()
            ),
            vec!["bravo", "alpha"],
        ),
        (
            format!("{own}&updated_at=gt:2000-01-01T00:00:00Z&protected=false"),
            vec!["delta", "charlie", "bravo", "alpha"],
        ),
        (format!("{own}&os_hidden=true"), vec![]),
        (
            format!("{own}&checksum={}", charlie["checksum"].as_str().unwrap()),
            vec!["charlie"],
        ),
        ("visibility=public".to_string(), vec!["stratus-demo"]),
        ("visibility=private".to_string(), vec![]),
    ];
    for (q, want) in cases {
        let (s, l) = get_json(c, &t, &format!("/image/v2/images?{q}")).await;
        assert_eq!(s, StatusCode::OK, "{q}: {l}");
        assert_eq!(names(&l), want, "{q}");
    }

    // Walking pages of a non-default sort visits every image once, in order.
    let mut seen = Vec::new();
    let mut path = format!("/image/v2/images?{own}&sort_key=name&sort_dir=asc&limit=1");
    loop {
        let (s, l) = get_json(c, &t, &path).await;
        assert_eq!(s, StatusCode::OK, "{path}: {l}");
        seen.extend(names(&l));
        match l["next"].as_str() {
            Some(next) => {
                assert!(next.contains("sort_key=name"), "{next}");
                path = format!("/image{next}");
            }
            None => break,
        }
        assert!(seen.len() <= 5, "paging does not end: {seen:?}");
    }
    assert_eq!(seen, ["alpha", "bravo", "charlie", "delta"]);

    for q in [
        "sort_key=colour",
        "sort_dir=sideways",
        "sort=name:up",
        "sort=name&sort_key=size",
        "sort_key=name&sort_key=size&sort_dir=asc&sort_dir=desc&sort_dir=asc",
        "size_min=-1",
        "size_min=5&size_max=1",
        "created_at=gt:yesterday",
        "protected=maybe",
        "member_status=maybe",
    ] {
        let (s, b) = get_json(c, &t, &format!("/image/v2/images?{q}")).await;
        assert_glance_error(s, &b, StatusCode::BAD_REQUEST);
    }
}
on_both_stores!(listing_filters_and_sorts);

async fn range_downloads_and_schemas(c: &TestCloud) {
    let t = project_token(c, "admin").await;
    let data: Vec<u8> = (0..1000u32).map(|n| (n % 251) as u8).collect();
    let img = create(
        c,
        &t,
        json!({"name": "r", "disk_format": "raw", "container_format": "bare"}),
    )
    .await;
    let id = img["id"].as_str().unwrap();
    assert_eq!(
        put_file(c, &t, id, data.clone()).await.0,
        StatusCode::NO_CONTENT
    );
    let get = |range: Option<&'static str>| {
        let mut r = c
            .http
            .get(format!("{}/image/v2/images/{id}/file", c.url))
            .header("X-Auth-Token", &t);
        if let Some(range) = range {
            r = r.header("Range", range);
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status();
            let cr = r
                .headers()
                .get("content-range")
                .map(|v| v.to_str().unwrap().to_string());
            let md5 = r.headers().get("content-md5").is_some();
            (status, cr, md5, r.bytes().await.unwrap().to_vec())
        }
    };
    let cases: [(&str, usize, usize); 4] = [
        ("bytes=0-9", 0, 10),
        ("bytes=990-", 990, 1000),
        ("bytes=-5", 995, 1000),
        ("bytes=100-5000", 100, 1000),
    ];
    for (h, from, to) in cases {
        let (s, cr, md5, body) = get(Some(h)).await;
        assert_eq!(s, StatusCode::PARTIAL_CONTENT, "{h}");
        assert_eq!(
            cr.as_deref(),
            Some(format!("bytes {from}-{}/1000", to - 1).as_str())
        );
        assert!(!md5, "a part has no Content-MD5");
        assert!(body == data[from..to], "{h}");
    }
    let (s, cr, _, _) = get(Some("bytes=1000-")).await;
    assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(cr.as_deref(), Some("bytes */1000"));
    // Several ranges, or nonsense: the whole data, as RFC 9110 allows.
    for h in ["bytes=0-1,5-6", "pages=1-2"] {
        let (s, _, md5, body) = get(Some(h)).await;
        assert_eq!(s, StatusCode::OK, "{h}");
        assert!(md5 && body == data, "{h}");
    }

    for name in ["image", "images", "member", "members"] {
        let (s, b) = get_json(c, &t, &format!("/image/v2/schemas/{name}")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(b["name"], name);
    }
    let (s, b) = get_json(c, &t, &format!("/image/v2/images/{id}/tasks")).await;
    assert_eq!((s, b), (StatusCode::OK, json!({"tasks": []})));
    let demo = project_token(c, "demo").await;
    let (s, b) = get_json(c, &demo, &format!("/image/v2/images/{id}/tasks")).await;
    assert_glance_error(s, &b, StatusCode::NOT_FOUND);
}
on_both_stores!(range_downloads_and_schemas);

async fn shared_images_and_members(c: &TestCloud) {
    let admin = project_token(c, "admin").await;
    let demo = project_token(c, "demo").await;
    let demo_id = c.project_id(&c.admin_token().await, "demo").await;
    let shared = create(c, &admin, json!({"name": "sh", "visibility": "shared"})).await;
    let private = create(c, &admin, json!({"name": "pv", "visibility": "private"})).await;
    let id = shared["id"].as_str().unwrap();
    let members = format!("/image/v2/images/{id}/members");
    let (s, _) = get_json(c, &demo, &format!("/image/v2/images/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Only shared images have members; only the owner adds them.
    let (s, b) = c
        .post(
            &admin,
            &format!(
                "/image/v2/images/{}/members",
                private["id"].as_str().unwrap()
            ),
            json!({"member": demo_id}),
        )
        .await;
    assert_glance_error(s, &b, StatusCode::FORBIDDEN);
    let (s, m) = c.post(&admin, &members, json!({"member": demo_id})).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(
        (m["status"].as_str(), m["member_id"].as_str()),
        (Some("pending"), Some(demo_id.as_str()))
    );
    let (s, b) = c.post(&admin, &members, json!({"member": demo_id})).await;
    assert_glance_error(s, &b, StatusCode::CONFLICT);
    let (s, b) = c
        .post(&admin, &members, json!({"member": demo_id, "x": 1}))
        .await;
    assert_glance_error(s, &b, StatusCode::BAD_REQUEST);

    // Pending: visible by id, not in the default list, listed with member_status=pending.
    let (s, _) = get_json(c, &demo, &format!("/image/v2/images/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    let (_, l) = get_json(c, &demo, "/image/v2/images").await;
    assert!(!names(&l).contains(&"sh".to_string()), "{l}");
    let (_, l) = get_json(
        c,
        &demo,
        "/image/v2/images?visibility=shared&member_status=pending",
    )
    .await;
    assert_eq!(names(&l), ["sh"]);
    let (s, b) = c.post(&demo, &members, json!({"member": "someone"})).await;
    assert_glance_error(s, &b, StatusCode::FORBIDDEN);
    // The owner cannot answer for the member; the member can.
    let me = format!("{members}/{demo_id}");
    let (s, b) = c.put(&admin, &me, json!({"status": "accepted"})).await;
    assert_glance_error(s, &b, StatusCode::FORBIDDEN);
    let (s, b) = c.put(&demo, &me, json!({"status": "sure"})).await;
    assert_glance_error(s, &b, StatusCode::BAD_REQUEST);
    let (s, m) = c.put(&demo, &me, json!({"status": "accepted"})).await;
    assert_eq!(
        (s, m["status"].as_str()),
        (StatusCode::OK, Some("accepted"))
    );
    let (_, l) = get_json(c, &demo, "/image/v2/images").await;
    assert!(names(&l).contains(&"sh".to_string()), "{l}");
    let (s, l) = get_json(c, &demo, &members).await;
    assert_eq!(
        (s, l["members"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
    // A member cannot change the image.
    let (s, b) = patch(
        c,
        &demo,
        id,
        PATCH,
        json!([{"op": "replace", "path": "/name", "value": "x"}]),
    )
    .await;
    assert_glance_error(s, &b, StatusCode::FORBIDDEN);

    let (s, _) = c.delete(&admin, &me).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = get_json(c, &demo, &format!("/image/v2/images/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = c.delete(&admin, &me).await;
    assert_glance_error(s, &b, StatusCode::NOT_FOUND);
}
on_both_stores!(shared_images_and_members);

/// Opens a raw HTTP/1.1 upload of `total` bytes and sends the headers and `first` bytes of it.
async fn start_upload(
    c: &TestCloud,
    t: &str,
    id: &str,
    total: usize,
    first: usize,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr = c.url.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /image/v2/images/{id}/file HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: {t}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(&vec![1u8; first]).await.unwrap();
    sock.flush().await.unwrap();
    sock
}

async fn status_of(c: &TestCloud, t: &str, id: &str) -> String {
    let (_, b) = get_json(c, t, &format!("/image/v2/images/{id}")).await;
    b["status"].as_str().unwrap_or("").to_string()
}

async fn wait_for_status(c: &TestCloud, t: &str, id: &str, want: &str) {
    for _ in 0..500 {
        if status_of(c, t, id).await == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!(
        "image {id} never became {want}: {}",
        status_of(c, t, id).await
    );
}

async fn interrupted_and_concurrent_uploads(c: &TestCloud) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = project_token(c, "admin").await;
    let raw = json!({"name": "u", "disk_format": "raw", "container_format": "bare"});

    // A client that goes away mid-upload: back to queued, no data, no staging file.
    let id = create(c, &t, raw.clone()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sock = start_upload(c, &t, &id, 64 << 20, 4 << 20).await;
    wait_for_status(c, &t, &id, "saving").await;
    drop(sock);
    wait_for_status(c, &t, &id, "queued").await;
    let (_, img) = get_json(c, &t, &format!("/image/v2/images/{id}")).await;
    assert!(img["size"].is_null() && img["checksum"].is_null(), "{img}");
    let r = c
        .http
        .get(format!("{}/image/v2/images/{id}/file", c.url))
        .header("X-Auth-Token", &t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(blob_files(c).is_empty(), "{:?}", blob_files(c));

    // Two uploads at once: the second gets 409 while the first is saving; the first completes.
    let mut first = start_upload(c, &t, &id, 2 << 20, 1 << 20).await;
    wait_for_status(c, &t, &id, "saving").await;
    let (s, b) = put_file(c, &t, &id, vec![2u8; 1 << 20]).await;
    assert_glance_error(s, &b, StatusCode::CONFLICT);
    first.write_all(&vec![1u8; 1 << 20]).await.unwrap();
    let mut reply = vec![0u8; 12];
    first.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"HTTP/1.1 204");
    let (_, img) = get_json(c, &t, &format!("/image/v2/images/{id}")).await;
    assert_eq!(
        (img["status"].as_str(), img["size"].as_i64()),
        (Some("active"), Some(2 << 20))
    );
    // The data is the first upload's.
    let r = c
        .http
        .get(format!("{}/image/v2/images/{id}/file", c.url))
        .header("X-Auth-Token", &t)
        .send()
        .await
        .unwrap();
    assert!(r.bytes().await.unwrap().iter().all(|b| *b == 1));
}
on_both_stores!(interrupted_and_concurrent_uploads);

async fn the_demo_image_is_a_bootable_disk(c: &TestCloud) {
    let t = project_token(c, "demo").await;
    let (s, l) = get_json(c, &t, "/image/v2/images?name=stratus-demo").await;
    assert_eq!(s, StatusCode::OK);
    let img = &l["images"][0];
    assert_eq!(img["id"], stratus_services::demo::DEMO_IMAGE_ID);
    assert_eq!(
        (
            img["status"].as_str(),
            img["visibility"].as_str(),
            img["disk_format"].as_str()
        ),
        (Some("active"), Some("public"), Some("qcow2"))
    );
    assert_eq!(img["virtual_size"], 1 << 20);
    let r = c
        .http
        .get(format!(
            "{}/image/v2/images/{}/file",
            c.url,
            img["id"].as_str().unwrap()
        ))
        .header("X-Auth-Token", &t)
        .send()
        .await
        .unwrap();
    let data = r.bytes().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.qcow2"), &data).unwrap();
    assert!(Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw", "d.qcow2", "d.raw"])
        .current_dir(dir.path())
        .status()
        .unwrap()
        .success());
    let disk = std::fs::read(dir.path().join("d.raw")).unwrap();
    assert_eq!(disk.len(), 1 << 20);
    assert_eq!(&disk[510..512], &[0x55, 0xaa], "boot signature");
    assert_eq!(&disk[0..2], &[0x31, 0xc0], "boot code");
}
on_both_stores!(the_demo_image_is_a_bootable_disk);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_are_checked_against_the_stored_checksum() {
    let c = TestCloud::start(Backend::Sqlite).await.unwrap();
    let t = project_token(&c, "admin").await;
    let id = image_with(&c, &t, "v", 3 << 20, &[], json!({})).await;
    let fetch = || async {
        c.http
            .get(format!("{}/image/v2/images/{id}/file", c.url))
            .header("X-Auth-Token", &t)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
    };
    assert_eq!(fetch().await.unwrap().len(), 3 << 20);
    // The stored bytes change behind the service's back (bit rot, a bad disk).
    let blob = c.config.data_dir.join("images").join(&id);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[1 << 20] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    assert!(
        fetch().await.is_err(),
        "a download whose data no longer matches its checksum must not end cleanly"
    );
    c.stop().await;
}

/// Image get/update/delete count grants on the image's enterprise project; list and create do
/// not (the catalogue's scope rules).
async fn enterprise_project_grants_reach_only_what_the_catalogue_allows(c: &TestCloud) {
    let admin = c.admin_token().await;
    let uid = c.create_user(&admin, "epuser", "pw").await;
    let gid = c.group_with(&admin, "epgroup", &uid).await;
    let role = c.role_id(&admin, "system_all_ims_full").await;
    c.grant(
        &admin,
        &format!("/identity/v3.0/OS-PERMISSION/enterprise-projects/0/groups/{gid}/roles/{role}"),
    )
    .await;
    let t = c.token_for("epuser", "pw", Some("demo")).await;
    let (s, b) = c.get(&t, "/image/v2/images").await;
    assert_glance_error(s, &b, StatusCode::FORBIDDEN);
    let (s, b) = c.post(&t, "/image/v2/images", json!({"name": "x"})).await;
    assert_glance_error(s, &b, StatusCode::FORBIDDEN);
    let demo = stratus_services::demo::DEMO_IMAGE_ID;
    let (s, b) = get_json(c, &t, &format!("/image/v2/images/{demo}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}
on_both_stores!(enterprise_project_grants_reach_only_what_the_catalogue_allows);

async fn stage(c: &TestCloud, t: &str, id: &str, ct: &str, data: Vec<u8>) -> (StatusCode, Value) {
    let r = c
        .http
        .put(format!("{}/image/v2/images/{id}/stage", c.url))
        .header("X-Auth-Token", t)
        .header("Content-Type", ct)
        .body(data)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Waits until the image leaves `importing`; returns it.
async fn settled(c: &TestCloud, t: &str, id: &str) -> Value {
    for _ in 0..1000 {
        let (_, b) = c.get(t, &format!("/image/v2/images/{id}")).await;
        if b["status"] != "importing" && b.get("os_glance_import_task").is_none() {
            return b;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("image {id} is still importing");
}

fn qcow2_bytes(size: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.qcow2");
    assert!(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&p)
        .arg(size)
        .status()
        .unwrap()
        .success());
    std::fs::read(p).unwrap()
}

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn versions_and_glance_direct_import(c: &TestCloud) {
    for path in ["/image", "/image/"] {
        let (s, _, b) = c.call(Method::GET, path, None, None).await;
        assert_eq!(s, StatusCode::MULTIPLE_CHOICES, "{path}");
        let ids: Vec<&str> = b["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                "v2.15", "v2.9", "v2.17", "v2.7", "v2.6", "v2.5", "v2.4", "v2.3", "v2.2", "v2.1",
                "v2.0"
            ]
        );
        assert_eq!(b["versions"][2]["status"], "CURRENT");
    }
    let t = project_token(c, "demo").await;
    // Any listed version serves the v2 API.
    let (s, _) = c.get(&t, "/image/v2.17/images").await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = c.get(&t, "/image/v2.8/images").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = c.get(&t, "/image/v2/info/import").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["import-methods"]["value"],
        json!(["glance-direct", "copy-image"]),
        "web-download is off"
    );

    let (s, h, i) = c
        .call(
            Method::POST,
            "/image/v2/images",
            Some(&t),
            Some(json!({"name": "imp", "disk_format": "qcow2", "container_format": "bare"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        h["openstack-image-import-methods"],
        "glance-direct,copy-image"
    );
    let id = i["id"].as_str().unwrap().to_string();
    let data = qcow2_bytes("16M");
    // Not staged yet.
    let import = |body: Value| {
        let (t, id) = (t.clone(), id.clone());
        async move {
            c.call(
                Method::POST,
                &format!("/image/v2/images/{id}/import"),
                Some(&t),
                Some(body),
            )
            .await
        }
    };
    let (s, _, b) = import(json!({"method": {"name": "glance-direct"}})).await;
    assert_glance_error(s, &b, StatusCode::CONFLICT);
    let (s, b) = stage(c, &t, &id, "application/json", data.clone()).await;
    assert_glance_error(s, &b, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Refused before its body was read, the answer closes the connection (the rest of the body
    // is still on it), so a client does not send its next request into it.
    let r = c
        .http
        .put(format!("{}/image/v2/images/{id}/stage", c.url))
        .header("X-Auth-Token", &t)
        .header("Content-Type", "text/plain")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            r.status(),
            r.headers().get("connection").map(|v| v.to_str().unwrap())
        ),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("close"))
    );
    let r = c
        .http
        .get(format!("{}/image/v2/images/{id}", c.url))
        .header("X-Auth-Token", &t)
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("connection").is_none());
    let (s, b) = stage(c, &t, &id, "application/octet-stream", data.clone()).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (_, i) = c.get(&t, &format!("/image/v2/images/{id}")).await;
    assert_eq!(
        (i["status"].as_str(), i["size"].as_u64(), &i["checksum"]),
        (Some("uploading"), Some(data.len() as u64), &Value::Null)
    );
    let (s, b) = stage(c, &t, &id, "application/octet-stream", data.clone()).await;
    assert_glance_error(s, &b, StatusCode::CONFLICT);
    for bad in [
        json!({"method": {"name": "web-download", "uri": "http://127.0.0.1/x"}}),
        json!({"method": {"name": "nope"}}),
        json!({"method": {}}),
        json!({"method": {"name": "glance-direct"}, "stores": ["s1"]}),
        json!({"method": {"name": "glance-direct"}, "all_stores_must_succeed": false}),
        json!({"method": {"name": "glance-direct"}, "extra": 1}),
    ] {
        let (s, _, b) = import(bad.clone()).await;
        assert_glance_error(s, &b, StatusCode::BAD_REQUEST);
    }
    let (s, _, b) = import(json!({"method": {"name": "glance-direct"}})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let i = settled(c, &t, &id).await;
    assert_eq!(i["status"], "active", "{i}");
    assert_eq!(i["checksum"], md5_hex(&data));
    assert_eq!(i["virtual_size"], 16 << 20);
    let r = c
        .http
        .get(format!("{}/image/v2/images/{id}/file", c.url))
        .header("X-Auth-Token", &t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
    let blobs = c.config.data_dir.join("images");
    let left: Vec<String> = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(&id))
        .collect();
    assert_eq!(left, std::slice::from_ref(&id), "the staged data is gone");
    // copy-image of an active image: one store, nothing to copy.
    let (s, _, _) = import(json!({"method": {"name": "copy-image"}})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _, b) = import(json!({"method": {"name": "glance-direct"}})).await;
    assert_glance_error(s, &b, StatusCode::CONFLICT);
    // os_glance_* properties are the service's.
    let (s, b) = patch(
        c,
        &t,
        &id,
        PATCH,
        json!([{"op": "add", "path": "/os_glance_import_task", "value": "x"}]),
    )
    .await;
    assert_glance_error(s, &b, StatusCode::FORBIDDEN);

    // Staged data that is not what the image declares: the import fails, the image is queued
    // again with nothing kept, and can be staged anew.
    let (_, i) = c
        .post(
            &t,
            "/image/v2/images",
            json!({"name": "bad", "disk_format": "qcow2", "container_format": "bare"}),
        )
        .await;
    let bad = i["id"].as_str().unwrap().to_string();
    let (s, _) = stage(c, &t, &bad, "application/octet-stream", vec![0u8; 4096]).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = c
        .post(
            &t,
            &format!("/image/v2/images/{bad}/import"),
            json!({"method": {"name": "glance-direct"}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let i = settled(c, &t, &bad).await;
    assert_eq!(
        (i["status"].as_str(), &i["size"], &i["checksum"]),
        (Some("queued"), &Value::Null, &Value::Null),
        "{i}"
    );
    assert!(!std::fs::read_dir(&blobs).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(&bad)));
    let (s, _) = stage(c, &t, &bad, "application/octet-stream", data.clone()).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}
on_both_stores!(versions_and_glance_direct_import);

/// Serves `files` over HTTP/1.1 on a loopback port; a value starting with `redirect:` answers
/// 302 to that location. Returns the base URL.
async fn file_server(files: Vec<(&'static str, Vec<u8>)>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let files = std::sync::Arc::new(files);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = l.accept().await else {
                return;
            };
            let files = files.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                let head = |status: &str, extra: &str, len: usize| {
                    format!("HTTP/1.1 {status}\r\n{extra}Content-Length: {len}\r\nConnection: close\r\n\r\n")
                };
                match files.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) if body.starts_with(b"redirect:") => {
                        let to = String::from_utf8_lossy(&body[9..]).to_string();
                        let _ = sock
                            .write_all(
                                head("302 Found", &format!("Location: {to}\r\n"), 0).as_bytes(),
                            )
                            .await;
                    }
                    Some((_, body)) => {
                        let _ = sock
                            .write_all(head("200 OK", "", body.len()).as_bytes())
                            .await;
                        let _ = sock.write_all(body).await;
                    }
                    None => {
                        let _ = sock
                            .write_all(head("404 Not Found", "", 0).as_bytes())
                            .await;
                    }
                }
            });
        }
    });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_download_fetches_only_allowed_urls() {
    let data = qcow2_bytes("8M");
    // The same data outside the allow-list (a redirect there must not be followed).
    let base = file_server(vec![("/other/disk.qcow2", data.clone())]).await;
    let files = file_server(vec![
        ("/ok/disk.qcow2", data.clone()),
        (
            "/ok/elsewhere",
            format!("redirect:{base}/other/disk.qcow2").into_bytes(),
        ),
        ("/ok/hop", b"redirect:/ok/disk.qcow2".to_vec()),
    ])
    .await;
    let allow = format!("{files}/ok/");
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| {
        cfg.image_import_allow = vec![allow.clone()]
    })
    .await
    .unwrap();
    let t = project_token(&c, "demo").await;
    let (_, b) = c.get(&t, "/image/v2/info/import").await;
    assert_eq!(
        b["import-methods"]["value"],
        json!(["glance-direct", "web-download", "copy-image"])
    );
    let new_image = |name: &'static str| {
        let t = t.clone();
        let c = &c;
        async move {
            let (_, i) = c
                .post(
                    &t,
                    "/image/v2/images",
                    json!({"name": name, "disk_format": "qcow2", "container_format": "bare"}),
                )
                .await;
            i["id"].as_str().unwrap().to_string()
        }
    };
    let import = |id: String, uri: String| {
        let t = t.clone();
        let c = &c;
        async move {
            c.call(
                Method::POST,
                &format!("/image/v2/images/{id}/import"),
                Some(&t),
                Some(json!({"method": {"name": "web-download", "uri": uri}})),
            )
            .await
        }
    };
    for (name, path) in [("direct", "/ok/disk.qcow2"), ("hop", "/ok/hop")] {
        let id = new_image(name).await;
        let (s, _, b) = import(id.clone(), format!("{files}{path}")).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        let i = settled(&c, &t, &id).await;
        assert_eq!(
            (i["status"].as_str(), i["checksum"].as_str()),
            (Some("active"), Some(md5_hex(&data).as_str())),
            "{i}"
        );
    }
    // Outside the allow-list: refused before anything happens.
    let id = new_image("outside").await;
    for uri in [
        format!("{base}/other/disk.qcow2"),
        format!("{files}/okay"),
        "file:///etc/passwd".to_string(),
        format!("{files}/ok/{}", "x".repeat(3000)),
    ] {
        let (s, _, b) = import(id.clone(), uri).await;
        assert_glance_error(s, &b, StatusCode::BAD_REQUEST);
    }
    // A redirect out of the allow-list fails the import: the image is queued again.
    let (s, _, _) = import(id.clone(), format!("{files}/ok/elsewhere")).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let i = settled(&c, &t, &id).await;
    assert_eq!(
        (i["status"].as_str(), &i["checksum"]),
        (Some("queued"), &Value::Null),
        "{i}"
    );
    c.stop().await;
}

/// IMS's own listing (`/v2/cloudimages`): `__imagetype` picks public, own or shared images,
/// `enterprise_project_id` narrows (every image is in "0"), Glance's filters apply, bad values 400.
async fn cloud_images_listing(c: &TestCloud) {
    let t = c.admin_token().await;
    let (id, _) = c.upload_filled_image(&t, "own-img", 7).await;
    let ids = |b: &Value| -> Vec<String> {
        b["images"]
            .as_array()
            .expect("images")
            .iter()
            .map(|i| i["id"].as_str().expect("id").to_string())
            .collect()
    };
    let demo = stratus_services::demo::DEMO_IMAGE_ID.to_string();
    let (s, b) = c.get(&t, "/image/v2/cloudimages?__imagetype=gold").await;
    assert_eq!((s, ids(&b)), (StatusCode::OK, vec![demo.clone()]), "{b}");
    let (_, b) = c
        .get(
            &t,
            "/image/v2/cloudimages?__imagetype=private&enterprise_project_id=0",
        )
        .await;
    assert_eq!(ids(&b), vec![id.clone()], "{b}");
    assert_eq!(b["images"][0]["enterprise_project_id"], "0");
    let (_, b) = c.get(&t, "/image/v2/cloudimages?name=own-img").await;
    assert_eq!(ids(&b), vec![id]);
    for q in ["__imagetype=market", "enterprise_project_id=ep1"] {
        let (s, b) = c.get(&t, &format!("/image/v2/cloudimages?{q}")).await;
        assert_eq!((s, ids(&b).len()), (StatusCode::OK, 0), "{q}: {b}");
    }
    let (s, b) = c.get(&t, "/image/v2/cloudimages?__imagetype=nope").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
}
on_both_stores!(cloud_images_listing);
