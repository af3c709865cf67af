//! createImage of an image-backed server over real HTTP: validation, authorization of the seed
//! row, conflicts, the task_state steps, and the image's data and properties.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::process::Command;
use stratus_services::demo::DEMO_IMAGE_ID;

const BIN: &str = env!("CARGO_BIN_EXE_stratus");

/// The project of a token.
async fn t_project(c: &TestCloud, t: &str) -> String {
    let r = c
        .http
        .get(format!("{}/identity/v3/auth/tokens", c.url))
        .header("X-Auth-Token", t)
        .header("X-Subject-Token", t)
        .send()
        .await
        .unwrap();
    let b: Value = r.json().await.unwrap();
    b["token"]["project"]["id"].as_str().unwrap().to_string()
}

async fn server(c: &TestCloud, t: &str, name: &str) -> String {
    let (s, b) = c.mv("2.47").post(t, "/compute/v2.1/servers", json!({"server": {"name": name, "imageRef": DEMO_IMAGE_ID, "flavorRef": "1", "networks": "none"}})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    wait(c, t, &format!("/compute/v2.1/servers/{id}"), |v| {
        v["server"]["status"] == "ACTIVE"
    })
    .await;
    id
}

async fn wait(c: &TestCloud, t: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..1000 {
        let (_, v) = c.mv("2.47").get(t, path).await;
        if done(&v) {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{path} never reached the expected state");
}

fn disk_of(c: &TestCloud, id: &str) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["server", "disks", id, "--data-dir"])
        .arg(&c.config.data_dir);
    if let Some(url) = &c.config.database_url {
        cmd.args(["--database-url", url]);
    }
    String::from_utf8(cmd.output().unwrap().stdout)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string()
}

async fn image_backed_snapshot_and_boot(c: &TestCloud) {
    let pw = c.admin_password.clone();
    let t = c.token_for("admin", &pw, Some("demo")).await;
    let id = server(c, &t, "src").await;
    let disk = disk_of(c, &id);
    let w = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 0x5a 1M 2M", &disk])
        .output()
        .unwrap();
    assert!(w.status.success());
    let action = format!("/compute/v2.1/servers/{id}/action");

    let (s, h, b) = c.call_mv(Method::POST, &action, Some(&t), "2.45",
        Some(json!({"createImage": {"name": "snap-1", "metadata": {"image_type": "mine", "k": "v"}}}))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert!(h.get("location").is_none());
    let image_id = b["image_id"].as_str().unwrap().to_string();
    // A second one right after is refused with upstream's message.
    let (s, b) = c
        .mv("2.45")
        .post(&t, &action, json!({"createImage": {"name": "snap-2"}}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let msg = b["conflictingRequest"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!(
            "Cannot 'createImage' instance {id} while it is in task_state image_"
        )),
        "{msg}"
    );

    let img = wait(c, &t, &format!("/image/v2/images/{image_id}"), |v| {
        v["status"] == "active"
    })
    .await;
    let srv = wait(c, &t, &format!("/compute/v2.1/servers/{id}"), |v| {
        v["server"]["OS-EXT-STS:task_state"].is_null()
    })
    .await;
    assert_eq!(srv["server"]["status"], "ACTIVE");
    assert_eq!(
        (
            img["disk_format"].as_str(),
            img["container_format"].as_str()
        ),
        (Some("qcow2"), Some("bare"))
    );
    assert_eq!(img["visibility"], "private");
    assert_eq!(img["instance_uuid"], id.as_str());
    assert_eq!(img["base_image_ref"], DEMO_IMAGE_ID);
    assert_eq!(img["owner_project_name"], "demo");
    assert_eq!(img["owner_user_name"], "admin");
    assert_eq!(img["image_type"], "mine", "the user's metadata wins");
    assert_eq!(img["__os_type"], "Other", "inherited from the base image");
    assert_eq!(img["min_disk"], 1, "the flavor's disk");
    assert_eq!(img["virtual_size"], 1u64 << 30);

    // The image holds the server's data: same content as the disk chain, digests as tools say.
    let r = c
        .http
        .get(format!("{}/image/v2/images/{image_id}/file", c.url))
        .header("X-Auth-Token", &t)
        .send()
        .await
        .unwrap();
    let data = r.bytes().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("img.qcow2");
    std::fs::write(&f, &data).unwrap();
    let cmp = Command::new("qemu-img")
        .args(["compare", "-f", "qcow2", "-F", "qcow2"])
        .arg(&f)
        .arg(&disk)
        .output()
        .unwrap();
    assert!(
        cmp.status.success(),
        "{}",
        String::from_utf8_lossy(&cmp.stdout)
    );
    let info = Command::new("qemu-img")
        .args(["info", "--output=json", "-f", "qcow2"])
        .arg(&f)
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert!(info.get("backing-filename").is_none(), "flattened");
    assert_eq!(img["size"], data.len());

    // A server boots from the snapshot.
    let (s, b) = c.mv("2.47").post(&t, "/compute/v2.1/servers", json!({"server": {"name": "from-snap", "imageRef": image_id, "flavorRef": "1", "networks": "none"}})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let new = b["server"]["id"].as_str().unwrap().to_string();
    wait(c, &t, &format!("/compute/v2.1/servers/{new}"), |v| {
        v["server"]["status"] == "ACTIVE"
    })
    .await;
    let read = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "read -P 0x5a 1M 2M", &disk_of(c, &new)])
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stdout)
    );

    // Below 2.45: Location and no body.
    let (s, h, b) = c
        .call_mv(
            Method::POST,
            &action,
            Some(&t),
            "2.44",
            Some(json!({"createImage": {"name": "snap-3"}})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(b.is_null());
    let loc = h["location"].to_str().unwrap().to_string();
    assert!(loc.contains("/image/v2/images/"), "{loc}");
    let third = loc.rsplit('/').next().unwrap().to_string();
    wait(c, &t, &format!("/image/v2/images/{third}"), |v| {
        v["status"] == "active"
    })
    .await;
}
on_both_stores!(image_backed_snapshot_and_boot);

async fn create_image_bad_input(c: &TestCloud) {
    let pw = c.admin_password.clone();
    let t = c.token_for("admin", &pw, Some("demo")).await;
    let id = server(c, &t, "v").await;
    let action = format!("/compute/v2.1/servers/{id}/action");
    let many: serde_json::Map<String, Value> =
        (0..129).map(|n| (format!("k{n}"), json!("v"))).collect();
    for (mv, body, want) in [
        ("", json!({"createImage": {}}), StatusCode::BAD_REQUEST),
        (
            "",
            json!({"createImage": {"name": ""}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "",
            json!({"createImage": {"name": " lead"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "",
            json!({"createImage": {"name": "x".repeat(256)}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "",
            json!({"createImage": {"name": "ok", "colour": 1}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "",
            json!({"createImage": {"name": "ok", "metadata": {"bad/key": "v"}}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "",
            json!({"createImage": {"name": "ok", "metadata": {"k": 1}}}),
            StatusCode::BAD_REQUEST,
        ),
        ("", json!({"createImage": "x"}), StatusCode::BAD_REQUEST),
        (
            "2.38",
            json!({"createImage": {"name": "ok", "metadata": many}}),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let (s, b) = c.mv(mv).post(&t, &action, body.clone()).await;
        assert_eq!(s, want, "{body}: {b}");
    }
    // Multibyte names are fine; an unknown server is 404 after validation.
    let (s, b) = c
        .post(
            &t,
            "/compute/v2.1/servers/nope/action",
            json!({"createImage": {"name": "镜像"}}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (_, l) = c.get(&t, "/image/v2/images?visibility=private").await;
    assert_eq!(l["images"], json!([]), "bad input made no image");
    let (_, v) = c.get(&t, &format!("/compute/v2.1/servers/{id}")).await;
    assert!(v["server"]["OS-EXT-STS:task_state"].is_null());
    // A reserved image attribute in the metadata is refused before anything starts: no saga, no
    // fault on the server (as upstream, whose image service refuses it first).
    for key in ["owner", "checksum", "status", "os_glance_import_task"] {
        let (s, b) = c
            .post(
                &t,
                &action,
                json!({"createImage": {"name": "ok", "metadata": {key: "x"}}}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{key}: {b}");
    }
    let (_, v) = c.get(&t, &format!("/compute/v2.1/servers/{id}")).await;
    assert!(v["server"]["OS-EXT-STS:task_state"].is_null());
    assert!(v["server"].get("fault").is_none(), "{v}");
    let sagas = image_sagas(c, 10).await;
    assert!(sagas.is_empty(), "{sagas:?}");
}
on_both_stores!(create_image_bad_input);

/// Every action of the seed row is required: a user granted all but one gets 403 naming it, and
/// nothing is created or changed; grants on the project suffice.
async fn the_seed_row_authorizes_create_image(c: &TestCloud) {
    let admin = c.admin_token().await;
    let demo = c.project_id(&admin, "demo").await;
    let owner = {
        let pw = c.admin_password.clone();
        c.token_for("admin", &pw, Some("demo")).await
    };
    let id = server(c, &owner, "guarded").await;
    let all = stratus_iam::SEED_ROW;
    for (n, missing) in all.iter().enumerate() {
        let user = format!("u{n}");
        let uid = c.create_user(&admin, &user, "pw").await;
        let gid = c.group_with(&admin, &format!("g{n}"), &uid).await;
        let mut actions: Vec<&str> = all.iter().copied().filter(|a| a != missing).collect();
        actions.push("ecs:servers:get");
        let policy = c
            .custom_policy(
                &admin,
                &format!("all but {missing}"),
                json!({"Version": "1.1", "Statement": [{"Effect": "Allow", "Action": actions}]}),
            )
            .await;
        c.grant_project(&admin, &demo, &gid, &policy).await;
        let t = c.token_for(&user, "pw", Some("demo")).await;
        let (s, b) = c
            .post(
                &t,
                &format!("/compute/v2.1/servers/{id}/action"),
                json!({"createImage": {"name": "nope"}}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{missing}: {b}");
        assert_eq!(
            b["forbidden"]["message"],
            format!("Policy doesn't allow {missing} to be performed.")
        );
    }
    let (_, l) = c.get(&owner, "/image/v2/images?visibility=private").await;
    assert_eq!(l["images"], json!([]));
    let (_, v) = c.get(&owner, &format!("/compute/v2.1/servers/{id}")).await;
    assert!(v["server"]["OS-EXT-STS:task_state"].is_null());

    // ECS FullAccess on the project: allowed.
    let uid = c.create_user(&admin, "full", "pw").await;
    let gid = c.group_with(&admin, "full", &uid).await;
    let role = c.role_id(&admin, "system_all_ecs_full").await;
    c.grant_project(&admin, &demo, &gid, &role).await;
    let t = c.token_for("full", "pw", Some("demo")).await;
    let (s, b) = c
        .mv("2.45")
        .post(
            &t,
            &format!("/compute/v2.1/servers/{id}/action"),
            json!({"createImage": {"name": "allowed"}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let image = b["image_id"].as_str().unwrap().to_string();
    wait(c, &owner, &format!("/image/v2/images/{image}"), |v| {
        v["status"] == "active"
    })
    .await;
}
on_both_stores!(the_seed_row_authorizes_create_image);

/// Grants on all projects count; grants on an enterprise project do not; a Deny of any one of
/// the eight actions wins.
async fn where_grants_count_for_create_image(c: &TestCloud) {
    let admin = c.admin_token().await;
    let demo = c.project_id(&admin, "demo").await;
    let pw = c.admin_password.clone();
    let owner = c.token_for("admin", &pw, Some("demo")).await;
    let id = server(c, &owner, "scoped").await;
    let full = c.role_id(&admin, "system_all_ecs_full").await;
    let try_as = |user: &'static str| {
        let id = id.clone();
        async move {
            let t = c.token_for(user, "pw", Some("demo")).await;
            let (s, b) = c
                .mv("2.45")
                .post(
                    &t,
                    &format!("/compute/v2.1/servers/{id}/action"),
                    json!({"createImage": {"name": user}}),
                )
                .await;
            (s, b)
        }
    };
    // ECS FullAccess on the enterprise project only: 403.
    let uid = c.create_user(&admin, "epu", "pw").await;
    let gid = c.group_with(&admin, "epg", &uid).await;
    c.grant(
        &admin,
        &format!("/identity/v3.0/OS-PERMISSION/enterprise-projects/0/groups/{gid}/roles/{full}"),
    )
    .await;
    let (s, b) = try_as("epu").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // The same on the project, plus a Deny of one dependency: 403 naming it.
    let uid = c.create_user(&admin, "denied", "pw").await;
    let gid = c.group_with(&admin, "deniedg", &uid).await;
    c.grant_project(&admin, &demo, &gid, &full).await;
    let deny = c.custom_policy(&admin, "no snapshots",
        json!({"Version": "1.1", "Statement": [{"Effect": "Deny", "Action": ["evs:snapshots:create"]}]})).await;
    c.grant_project(&admin, &demo, &gid, &deny).await;
    let (s, b) = try_as("denied").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(
        b["forbidden"]["message"],
        "Policy doesn't allow evs:snapshots:create to be performed."
    );
    let (_, v) = c.get(&owner, &format!("/compute/v2.1/servers/{id}")).await;
    assert!(v["server"]["OS-EXT-STS:task_state"].is_null());
    // On all projects (inherited from the domain): 202.
    let uid = c.create_user(&admin, "inh", "pw").await;
    let gid = c.group_with(&admin, "inhg", &uid).await;
    c.grant(&admin, &format!("/identity/v3/OS-INHERIT/domains/default/groups/{gid}/roles/{full}/inherited_to_projects")).await;
    let (s, b) = try_as("inh").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let image = b["image_id"].as_str().unwrap().to_string();
    wait(c, &owner, &format!("/image/v2/images/{image}"), |v| {
        v["status"] == "active"
    })
    .await;
}
on_both_stores!(where_grants_count_for_create_image);

/// Twenty createImage calls at once on one server: exactly one is accepted.
async fn concurrent_create_image_calls(c: &TestCloud) {
    let pw = c.admin_password.clone();
    let t = c.token_for("admin", &pw, Some("demo")).await;
    let id = server(c, &t, "busy").await;
    // Enough data that the first createImage is still running when the last call arrives.
    let w = Command::new("qemu-io")
        .args([
            "-f",
            "qcow2",
            "-c",
            "write -P 0x11 0 256M",
            &disk_of(c, &id),
        ])
        .output()
        .unwrap();
    assert!(w.status.success(), "{w:?}");
    let calls = (0..20).map(|n| {
        let (t, id) = (t.clone(), id.clone());
        async move {
            c.mv("2.45")
                .post(
                    &t,
                    &format!("/compute/v2.1/servers/{id}/action"),
                    json!({"createImage": {"name": format!("c{n}")}}),
                )
                .await
                .0
        }
    });
    let statuses = futures::future::join_all(calls).await;
    let accepted = statuses
        .iter()
        .filter(|s| **s == StatusCode::ACCEPTED)
        .count();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((accepted, conflicts), (1, 19), "{statuses:?}");
    wait(c, &t, &format!("/compute/v2.1/servers/{id}"), |v| {
        v["server"]["OS-EXT-STS:task_state"].is_null()
    })
    .await;
    let (_, l) = c.get(&t, "/image/v2/images?visibility=private").await;
    assert_eq!(l["images"].as_array().unwrap().len(), 1);
    assert_eq!(l["images"][0]["status"], "active");
    // The 19 refused calls left no saga behind; the accepted one is done.
    settled_saga(c).await;
    let sagas = image_sagas(c, 100).await;
    assert_eq!(
        sagas.iter().map(|s| s.state.as_str()).collect::<Vec<_>>(),
        ["done"]
    );

    // 20 servers at once: 20 active images (above the default quota of 10 servers, which the
    // administrator raises as upstream's would).
    let demo = t_project(c, &t).await;
    let (s, b) = c
        .put(
            &t,
            &format!("/compute/v2.1/os-quota-sets/{demo}"),
            json!({"quota_set": {"instances": 30, "cores": 60, "ram": 102400}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(server(c, &t, &format!("many{n}")).await);
    }
    let calls = ids.iter().map(|id| {
        let t = t.clone();
        async move {
            let (s, b) = c
                .mv("2.45")
                .post(
                    &t,
                    &format!("/compute/v2.1/servers/{id}/action"),
                    json!({"createImage": {"name": format!("of-{id}")}}),
                )
                .await;
            assert_eq!(s, StatusCode::ACCEPTED, "{b}");
            b["image_id"].as_str().unwrap().to_string()
        }
    });
    let images = futures::future::join_all(calls).await;
    for image in &images {
        wait(c, &t, &format!("/image/v2/images/{image}"), |v| {
            v["status"] == "active"
        })
        .await;
    }
    for id in &ids {
        wait(c, &t, &format!("/compute/v2.1/servers/{id}"), |v| {
            v["server"]["OS-EXT-STS:task_state"].is_null()
        })
        .await;
    }
    let distinct: std::collections::HashSet<_> = images.iter().collect();
    assert_eq!(distinct.len(), 20);
}
on_both_stores!(concurrent_create_image_calls);

async fn volume_backed_snapshot_and_boot(c: &TestCloud) {
    let pw = c.admin_password.clone();
    let t = c.token_for("admin", &pw, Some("demo")).await;
    let (s, b) = c
        .post(
            &t,
            "/volume/v3/volumes",
            json!({"volume": {"size": 1, "imageRef": DEMO_IMAGE_ID, "name": "root"}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let root = b["volume"]["id"].as_str().unwrap().to_string();
    let (_, b) = c
        .post(
            &t,
            "/volume/v3/volumes",
            json!({"volume": {"size": 2, "name": "data"}}),
        )
        .await;
    let data = b["volume"]["id"].as_str().unwrap().to_string();
    let (s, b) = c.mv("2.47").post(&t, "/compute/v2.1/servers", json!({"server": {
        "name": "bfv", "flavorRef": "1", "networks": "none", "block_device_mapping_v2": [
            {"uuid": root, "source_type": "volume", "destination_type": "volume", "boot_index": 0},
            {"uuid": data, "source_type": "volume", "destination_type": "volume", "boot_index": 1}]}})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    wait(c, &t, &format!("/compute/v2.1/servers/{id}"), |v| {
        v["server"]["status"] == "ACTIVE"
    })
    .await;
    let boot_disk = disk_of(c, &id);
    let w = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 0x77 0 1M", &boot_disk])
        .output()
        .unwrap();
    assert!(w.status.success());

    let (s, b) = c
        .mv("2.45")
        .post(
            &t,
            &format!("/compute/v2.1/servers/{id}/action"),
            json!({"createImage": {"name": "bfv-image"}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let image_id = b["image_id"].as_str().unwrap().to_string();
    let img = wait(c, &t, &format!("/image/v2/images/{image_id}"), |v| {
        v["status"] == "active"
    })
    .await;
    assert_eq!(
        (
            img["disk_format"].as_str(),
            img["container_format"].as_str(),
            img["size"].as_i64()
        ),
        (Some("raw"), Some("bare"), Some(0))
    );
    assert_eq!(img["bdm_v2"], "True");
    assert_eq!(img["root_device_name"], "/dev/vda");
    let bdm: Value = serde_json::from_str(img["block_device_mapping"].as_str().unwrap()).unwrap();
    assert_eq!(bdm.as_array().unwrap().len(), 2);
    assert_eq!(bdm[0]["boot_index"], 0);
    assert_eq!(bdm[1]["volume_size"], 2);
    let (_, snaps) = c.get(&t, "/volume/v3/snapshots/detail").await;
    let names: Vec<&str> = snaps["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["snapshot for bfv-image", "snapshot for bfv-image"]);
    // As upstream, the task ends just after the image is active.
    wait(c, &t, &format!("/compute/v2.1/servers/{id}"), |v| {
        v["server"]["OS-EXT-STS:task_state"].is_null()
    })
    .await;

    // Booting from the image makes volumes from the snapshots, with the data of the snapshot.
    let (s, b) = c.mv("2.47").post(&t, "/compute/v2.1/servers", json!({"server": {"name": "again", "imageRef": image_id, "flavorRef": "1", "networks": "none"}})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let new = b["server"]["id"].as_str().unwrap().to_string();
    let shown = wait(c, &t, &format!("/compute/v2.1/servers/{new}"), |v| {
        v["server"]["status"] == "ACTIVE"
    })
    .await;
    assert_eq!(
        shown["server"]["os-extended-volumes:volumes_attached"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let read = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "read -P 0x77 0 1M", &disk_of(c, &new)])
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stdout)
    );
}
on_both_stores!(volume_backed_snapshot_and_boot);

/// The newest createImage or createBackup sagas, newest first (servers are made by sagas too).
async fn image_sagas(c: &TestCloud, limit: usize) -> Vec<stratus_store::SagaRec> {
    let all = stratus_store::saga_list(c.store().pool(), &[], 1000)
        .await
        .unwrap();
    all.into_iter()
        .filter(|s| s.kind.starts_with("create-"))
        .take(limit)
        .collect()
}

/// The newest image saga once it is no longer running or undoing (its last undo may be written
/// just after the effects the test waited for).
async fn settled_saga(c: &TestCloud) -> stratus_store::SagaRec {
    for _ in 0..1000 {
        let sagas = image_sagas(c, 1).await;
        if let Some(s) = sagas.into_iter().next() {
            if !stratus_store::SagaState::LIVE.contains(&s.state) {
                return s;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the saga never settled");
}

/// A server with 256 MiB written whose createImage is flattening its disk; (server, image).
async fn busy_server(c: &TestCloud, t: &str, name: &str) -> (String, String) {
    let id = server(c, t, name).await;
    let w = Command::new("qemu-io")
        .args([
            "-f",
            "qcow2",
            "-c",
            "write -P 0x22 0 256M",
            &disk_of(c, &id),
        ])
        .output()
        .unwrap();
    assert!(w.status.success(), "{w:?}");
    let (s, b) = c
        .mv("2.45")
        .post(
            t,
            &format!("/compute/v2.1/servers/{id}/action"),
            json!({"createImage": {"name": format!("{name}-image")}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    wait(c, t, &format!("/compute/v2.1/servers/{id}"), |v| {
        v["server"]["OS-EXT-STS:task_state"] == "image_snapshot"
    })
    .await;
    (id, b["image_id"].as_str().unwrap().to_string())
}

/// The user deletes the image while the saga runs: it stops quietly (no fault), the task ends,
/// nothing is left. The server is deleted while the saga runs: the unfinished image goes.
async fn deletions_midway(c: &TestCloud) {
    let pw = c.admin_password.clone();
    let t = c.token_for("admin", &pw, Some("demo")).await;
    let storage = c.config.storage();
    let (id, image) = busy_server(c, &t, "quiet").await;
    let (s, b) = c.delete(&t, &format!("/image/v2/images/{image}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    wait(c, &t, &format!("/compute/v2.1/servers/{id}"), |v| {
        v["server"]["OS-EXT-STS:task_state"].is_null()
    })
    .await;
    let rec = stratus_store::server_get(c.store().pool(), &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.fault, None, "a quiet stop records no fault");
    assert_eq!(rec.vm_state, stratus_store::VmState::Active);
    let last = settled_saga(c).await;
    assert_eq!((last.state.as_str(), last.quiet), ("undone", true));
    let (s, _) = c.get(&t, &format!("/image/v2/images/{image}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (id, image) = busy_server(c, &t, "doomed").await;
    let (s, b) = c
        .mv("2.47")
        .delete(&t, &format!("/compute/v2.1/servers/{id}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let mut gone = false;
    for _ in 0..1000 {
        let (s, _) = c.get(&t, &format!("/image/v2/images/{image}")).await;
        if s == StatusCode::NOT_FOUND {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(gone, "the unfinished image of a deleted server stayed");
    let last = settled_saga(c).await;
    assert_eq!((last.state.as_str(), last.quiet), ("undone", false));
    let tmp: Vec<_> = std::fs::read_dir(storage.join("disks/tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
    let blobs: Vec<_> = std::fs::read_dir(storage.join("images"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n != DEMO_IMAGE_ID)
        .collect();
    assert!(blobs.is_empty(), "blobs left: {blobs:?}");
}
on_both_stores!(deletions_midway);

/// IMS's `POST /v2/cloudimages/action` with `instance_id`: the createImage saga answered with a
/// job, which `GET /v1/{project_id}/jobs/{job_id}` follows to SUCCESS and which names the image;
/// IMS's fields land on the image; bad bodies are 400 in IMS's format and change nothing.
async fn ims_create_image_is_a_job(c: &TestCloud) {
    const ACTION: &str = "/image/v2/cloudimages/action";
    let admin = c.admin_token().await;
    let demo = c.project_id(&admin, "demo").await;
    let pw = c.admin_password.clone();
    let owner = c.token_for("admin", &pw, Some("demo")).await;
    let id = server(c, &owner, "ims-src").await;
    let images_before = c.get(&owner, "/image/v2/images").await.1["images"]
        .as_array()
        .map(Vec::len);
    assert!(images_before.is_some());
    for (bad, why) in [
        (json!({"name": "x"}), "instance_id is required"),
        (
            json!({"name": "x", "instance_id": id, "image_url": "obs:b/k"}),
            "image_url",
        ),
        (
            json!({"name": "x", "instance_id": id, "volume_id": id}),
            "volume_id",
        ),
        (
            json!({"name": "x", "instance_id": id, "flavor": 1}),
            "unknown field",
        ),
        (json!({"name": " x", "instance_id": id}), "name must be"),
        (
            json!({"name": "x".repeat(129), "instance_id": id}),
            "name must be",
        ),
        (
            json!({"name": "x", "instance_id": id, "type": "BMS"}),
            "only ECS",
        ),
        (
            json!({"name": "x", "instance_id": id, "min_ram": -1}),
            "min_ram",
        ),
        (
            json!({"name": "x", "instance_id": id, "tags": vec!["t"; 11]}),
            "At most 10",
        ),
        (
            json!({"name": "x", "instance_id": id, "enterprise_project_id": "nope"}),
            "Enterprise project",
        ),
        (
            json!({"name": "x\u{0}y", "instance_id": id}),
            "control characters",
        ),
        (
            json!({"name": "x", "instance_id": id, "tags": ["a\nb"]}),
            "control characters",
        ),
        (
            json!({"name": "x", "instance_id": id, "os_version": "v".repeat(129)}),
            "os_version",
        ),
        (
            json!({"name": "x", "instance_id": id, "min_ram": 4096, "max_ram": 1024}),
            "above max_ram",
        ),
    ] {
        let (s, b) = c.post(&owner, ACTION, bad.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {b}");
        assert_eq!(b["error"]["code"], "IMG.0001", "{b}");
        let m = b["error"]["message"].as_str().unwrap_or("");
        assert!(m.contains(why), "{bad}: {m}");
    }
    let (s, b) = c
        .post(
            &owner,
            ACTION,
            json!({"name": "x", "instance_id": "no-such-server"}),
        )
        .await;
    // IMS's own answer for an unknown server: 400 IMG.0005.
    assert_eq!(
        (s, &b["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("IMG.0005")),
        "{b}"
    );
    let (_, v) = c.get(&owner, &format!("/compute/v2.1/servers/{id}")).await;
    assert!(v["server"]["OS-EXT-STS:task_state"].is_null(), "{v}");
    assert_eq!(
        c.get(&owner, "/image/v2/images").await.1["images"]
            .as_array()
            .map(Vec::len),
        images_before
    );

    let (s, b) = c
        .post(
            &owner,
            ACTION,
            json!({"name": "ims-image", "instance_id": id, "description": "made by IMS",
                   "tags": ["env.prod"], "image_tags": [{"key": "team", "value": "blue"}],
                   "min_ram": 512, "max_ram": 4096, "os_version": "Debian GNU/Linux 12 64bit",
                   "enterprise_project_id": "0", "type": "ECS"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let job = b["job_id"].as_str().expect("job id").to_string();
    let path = format!("/image/v1/{demo}/jobs/{job}");
    let done = wait(c, &owner, &path, |v| v["status"] == "SUCCESS").await;
    assert_eq!(done["job_type"], "imsCreateImageByInstance", "{done}");
    assert_eq!(done["entities"]["image_name"], "ims-image", "{done}");
    assert!(done["begin_time"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert!(done["end_time"]
        .as_str()
        .is_some_and(|t| t >= done["begin_time"].as_str().unwrap()));
    assert!(done["fail_reason"].is_null(), "{done}");
    let image = done["entities"]["image_id"].as_str().expect("image id");
    let (s, i) = c.get(&owner, &format!("/image/v2/images/{image}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            &i["name"],
            &i["status"],
            &i["min_ram"],
            &i["__description"],
            &i["max_ram"]
        ),
        (
            &json!("ims-image"),
            &json!("active"),
            &json!(512),
            &json!("made by IMS"),
            &json!("4096")
        ),
        "{i}"
    );
    let mut tags: Vec<&str> = i["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    tags.sort();
    assert_eq!(tags, ["env.prod", "team.blue"]);
    let (_, listed) = c
        .get(
            &owner,
            "/image/v2/cloudimages?__imagetype=private&enterprise_project_id=0",
        )
        .await;
    assert!(
        listed["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == image),
        "{listed}"
    );

    // IMS's update: name, description, OS version and RAM bounds, and nothing else.
    let upd = format!("/image/v2/cloudimages/{image}");
    for bad in [
        json!([]),
        json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
        json!([{"op": "move", "path": "/name", "value": "y"}]),
        json!([{"op": "replace", "path": "/name", "value": ""}]),
        json!([{"op": "replace", "path": "/min_ram", "value": "lots"}]),
        json!([{"op": "remove", "path": "/min_ram"}]),
        json!([{"op": "replace", "path": "/min_ram", "value": 1024}]),
        json!([{"op": "replace", "path": "/name", "value": "y"}, {"op": "replace", "path": "/id"}]),
        json!({"op": "replace", "path": "/name", "value": "y"}),
    ] {
        let (s, _, b) = c
            .call(Method::PATCH, &upd, Some(&owner), Some(bad.clone()))
            .await;
        assert_eq!(
            (s, &b["error"]["code"]),
            (StatusCode::BAD_REQUEST, &json!("IMG.0001")),
            "{bad}: {b}"
        );
    }
    let (s, _, b) = c
        .call(
            Method::PATCH,
            &upd,
            Some(&owner),
            Some(
                json!([{"op": "replace", "path": "/name", "value": "renamed"},
                        {"op": "replace", "path": "/min_ram", "value": "1024"},
                        {"op": "remove", "path": "/__description"}]),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (
            &b["id"],
            &b["name"],
            &b["min_ram"],
            &b["enterprise_project_id"]
        ),
        (&json!(image), &json!("renamed"), &json!(1024), &json!("0")),
        "{b}"
    );
    assert!(b.get("__description").is_none(), "{b}");
    let (s, _, _) = c
        .call(
            Method::PATCH,
            "/image/v2/cloudimages/00000000-0000-4000-8000-000000000000",
            Some(&owner),
            Some(json!([{"op": "replace", "path": "/name", "value": "x"}])),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Jobs of no project but the caller's; ids of no job; the path's project is the token's.
    let other = c.project_id(&admin, "admin").await;
    let (s, b) = c
        .get(&admin, &format!("/image/v1/{other}/jobs/{job}"))
        .await;
    assert_eq!(
        (s, &b["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("IMG.0004")),
        "{b}"
    );
    let (s, _) = c
        .get(
            &owner,
            &format!("/image/v1/{demo}/jobs/{}", "f".repeat(200)),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = c
        .get(&owner, &format!("/image/v1/{other}/jobs/{job}"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}
on_both_stores!(ims_create_image_is_a_job);

/// IMS's image of a server supports enterprise projects: grants on the enterprise project the
/// image is placed in count for the route, the server is used only as its own enterprise
/// project's grants allow, and the image lands in the enterprise project named.
async fn ims_create_image_in_an_enterprise_project(c: &TestCloud) {
    const ACTION: &str = "/image/v2/cloudimages/action";
    let admin = c.admin_token().await;
    let pw = c.admin_password.clone();
    let owner = c.token_for("admin", &pw, Some("demo")).await;
    let id = server(c, &owner, "ep-src").await;
    let (s, b) = c
        .post(
            &admin,
            "/identity/v3.0/enterprise-projects",
            json!({"name": "web"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let web = b["enterprise_project"]["id"].as_str().unwrap().to_string();
    let uid = c.create_user(&admin, "ims-ep", "pw").await;
    let gid = c.group_with(&admin, "ims-epg", &uid).await;
    let imaging = c
        .custom_policy(
            &admin,
            "image servers",
            json!({"Version": "1.1", "Statement": [{"Effect": "Allow",
            "Action": ["ims:images:*", "ecs:cloudServers:get", "ecs:servers:get",
                       "ecs:serverVolumes:use", "ecs:cloudServers:list",
                       "ecs:serverVolumeAttachments:list", "ecs:servers:list",
                       "evs:volumes:get", "evs:volumes:list", "evs:snapshots:create"]}]}),
        )
        .await;
    let ep_grant = |ep: String, role: String| {
        let gid = gid.clone();
        let admin = admin.clone();
        async move {
            c.grant(
                &admin,
                &format!("/identity/v3.0/OS-PERMISSION/enterprise-projects/{ep}/groups/{gid}/roles/{role}"),
            )
            .await
        }
    };
    ep_grant(web.clone(), imaging.clone()).await;
    let t = c.token_for("ims-ep", "pw", Some("demo")).await;
    let body = |ep: Option<&str>| {
        let mut b = json!({"name": "in-web", "instance_id": id});
        if let Some(ep) = ep {
            b["enterprise_project_id"] = json!(ep);
        }
        b
    };
    // The route is allowed in "web"; the server, in "0", is not the user's to read.
    let (s, b) = c.post(&t, ACTION, body(Some(&web))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(
        b["error"]["message"],
        "Policy doesn't allow ecs:servers:get to be performed."
    );
    // Reading the server is not enough: what is done to it (the ECS and EVS dependencies) is
    // decided in its enterprise project too.
    let read = c
        .custom_policy(
            &admin,
            "read servers",
            json!({"Version": "1.1", "Statement": [
            {"Effect": "Allow", "Action": ["ecs:servers:get"]}]}),
        )
        .await;
    ep_grant("0".into(), read).await;
    let (s, b) = c.post(&t, ACTION, body(Some(&web))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(
        b["error"]["message"],
        "Policy doesn't allow ecs:cloudServers:get, ecs:serverVolumes:use, ecs:cloudServers:list, \
         ecs:serverVolumeAttachments:list, ecs:servers:list, evs:volumes:get, evs:volumes:list, \
         evs:snapshots:create to be performed."
    );
    // Those granted in "0" too (but not IMS's own action): the image is made in "web", and only
    // there.
    let on_servers = c
        .custom_policy(
            &admin,
            "server deps",
            json!({"Version": "1.1", "Statement": [{"Effect": "Allow",
            "Action": ["ecs:cloudServers:get", "ecs:serverVolumes:use", "ecs:cloudServers:list",
                       "ecs:serverVolumeAttachments:list", "ecs:servers:list",
                       "evs:volumes:get", "evs:volumes:list", "evs:snapshots:create"]}]}),
        )
        .await;
    ep_grant("0".into(), on_servers).await;
    let (s, b) = c.post(&t, ACTION, body(None)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "not granted in \"0\": {b}");
    assert_eq!(
        b["error"]["message"],
        "Policy doesn't allow ims:images:create to be performed."
    );
    let (_, v) = c.get(&owner, &format!("/compute/v2.1/servers/{id}")).await;
    assert!(v["server"]["OS-EXT-STS:task_state"].is_null(), "{v}");
    let (s, b) = c.post(&t, ACTION, body(Some(&web))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let demo = c.project_id(&admin, "demo").await;
    let job = format!("/image/v1/{demo}/jobs/{}", b["job_id"].as_str().unwrap());
    let done = wait(c, &t, &job, |v| v["status"] == "SUCCESS").await;
    let image = done["entities"]["image_id"].as_str().unwrap().to_string();
    let listed = |ep: String| {
        let (owner, image) = (owner.clone(), image.clone());
        async move {
            let (s, b) = c
                .get(
                    &owner,
                    &format!("/image/v2/cloudimages?enterprise_project_id={ep}"),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
            b["images"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["id"] == image.as_str())
        }
    };
    assert!(listed(web.clone()).await);
    assert!(!listed("0".into()).await);
    // The enterprise project is a filter of the query: a page of one holds the image, though
    // images of "0" come before it.
    let (_, b) = c
        .get(
            &owner,
            &format!("/image/v2/cloudimages?enterprise_project_id={web}&limit=1&sort_dir=asc"),
        )
        .await;
    let ids: Vec<&str> = b["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(ids, [image.as_str()]);
    // The enterprise project holds an image: it cannot be deleted.
    let (s, _) = c
        .delete(&admin, &format!("/identity/v3.0/enterprise-projects/{web}"))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
}
on_both_stores!(ims_create_image_in_an_enterprise_project);

/// IMS's image of a volume-backed server: the same saga as Nova's (a snapshot of each volume, an
/// image that maps them), followed as a job.
async fn ims_create_image_of_a_volume_backed_server(c: &TestCloud) {
    let admin = c.admin_token().await;
    let demo = c.project_id(&admin, "demo").await;
    let pw = c.admin_password.clone();
    let t = c.token_for("admin", &pw, Some("demo")).await;
    let (s, b) = c
        .post(
            &t,
            "/volume/v3/volumes",
            json!({"volume": {"size": 1, "imageRef": DEMO_IMAGE_ID, "name": "ims-root"}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let root = b["volume"]["id"].as_str().unwrap().to_string();
    wait(c, &t, &format!("/volume/v3/volumes/{root}"), |v| {
        v["volume"]["status"] == "available"
    })
    .await;
    let (s, b) = c.mv("2.47").post(&t, "/compute/v2.1/servers", json!({"server": {
        "name": "ims-bfv", "flavorRef": "1", "networks": "none", "block_device_mapping_v2": [
            {"uuid": root, "source_type": "volume", "destination_type": "volume", "boot_index": 0}]}})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    wait(c, &t, &format!("/compute/v2.1/servers/{id}"), |v| {
        v["server"]["status"] == "ACTIVE"
    })
    .await;
    let (s, b) = c
        .post(
            &t,
            "/image/v2/cloudimages/action",
            json!({"name": "ims-bfv-image", "instance_id": id}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let job = format!("/image/v1/{demo}/jobs/{}", b["job_id"].as_str().unwrap());
    let done = wait(c, &t, &job, |v| v["status"] == "SUCCESS").await;
    let image = done["entities"]["image_id"].as_str().unwrap();
    let (_, img) = c.get(&t, &format!("/image/v2/images/{image}")).await;
    assert_eq!(
        (&img["status"], &img["bdm_v2"]),
        (&json!("active"), &json!("True")),
        "{img}"
    );
    let bdm: Value = serde_json::from_str(img["block_device_mapping"].as_str().unwrap()).unwrap();
    assert_eq!(bdm.as_array().map(Vec::len), Some(1), "{bdm}");
    let snapshot = bdm[0]["snapshot_id"].as_str().unwrap();
    let (s, snap) = c.get(&t, &format!("/volume/v3/snapshots/{snapshot}")).await;
    assert_eq!(
        (s, &snap["snapshot"]["volume_id"]),
        (StatusCode::OK, &json!(root)),
        "{snap}"
    );
}
on_both_stores!(ims_create_image_of_a_volume_backed_server);
