//! The Compute API over real HTTP: microversions, discovery, flavors, servers with real qcow2
//! disks, the power state machine, and bad input.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::process::Command;
use stratus_services::demo::DEMO_IMAGE_ID;

const BIN: &str = env!("CARGO_BIN_EXE_stratus");

fn assert_nova_error(s: StatusCode, b: &Value, expected: StatusCode, fault: &str) {
    assert_eq!(s, expected, "{b}");
    assert_eq!(b[fault]["code"], expected.as_u16(), "{b}");
    assert!(
        b[fault]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{b}"
    );
}

async fn project_token(c: &TestCloud, project: &str) -> String {
    let pw = c.admin_password.clone();
    c.token_for("admin", &pw, Some(project)).await
}

async fn create_server(c: &TestCloud, t: &str, name: &str) -> Value {
    let (s, h, b) = c.call_mv(
        Method::POST,
        "/compute/v2.1/servers",
        Some(t),
        "2.47",
        Some(json!({"server": {"name": name, "imageRef": DEMO_IMAGE_ID, "flavorRef": "1", "networks": "none"}})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert!(b["server"]["adminPass"]
        .as_str()
        .is_some_and(|p| p.len() >= 8));
    let id = b["server"]["id"].as_str().unwrap();
    assert!(h["location"]
        .to_str()
        .unwrap()
        .ends_with(&format!("/servers/{id}")));
    b["server"].clone()
}

async fn wait_status(c: &TestCloud, t: &str, id: &str, want: &str) -> Value {
    for _ in 0..500 {
        let (_, b) = c
            .mv("2.47")
            .get(t, &format!("/compute/v2.1/servers/{id}"))
            .await;
        if b["server"]["status"] == want {
            return b["server"].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("server {id} never became {want}");
}

async fn discovery_and_microversions(c: &TestCloud) {
    let (s, h, b) = c.call_mv(Method::GET, "/compute/", None, "", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["versions"][1]["version"], "2.47");
    assert_eq!(h["openstack-api-version"], "compute 2.1");
    let (s, h, b) = c
        .call_mv(Method::GET, "/compute/v2.1/", None, "latest", None)
        .await;
    assert_eq!(
        (s, b["version"]["min_version"].as_str()),
        (StatusCode::OK, Some("2.1"))
    );
    assert_eq!(h["openstack-api-version"], "compute 2.47");
    assert_eq!(h["x-openstack-nova-api-version"], "2.47");
    assert!(h["vary"]
        .to_str()
        .unwrap()
        .contains("OpenStack-API-Version"));
    let (s, h, b) = c
        .call_mv(Method::GET, "/compute/v2.1/", None, "2.48", None)
        .await;
    assert_eq!(s, StatusCode::NOT_ACCEPTABLE, "{b}");
    assert!(h.contains_key("openstack-api-version"));
    let (s, _, b) = c
        .call_mv(Method::GET, "/compute/v2.1/", None, "2.x", None)
        .await;
    assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    // Errors carry the headers too, in Nova's format.
    let (s, h, b) = c
        .call_mv(Method::GET, "/compute/v2.1/servers", None, "2.10", None)
        .await;
    assert_nova_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(h["openstack-api-version"], "compute 2.10");
    let (s, h, b) = c
        .call_mv(Method::GET, "/compute/v2.1/nothing/here", None, "2.3", None)
        .await;
    assert_nova_error(s, &b, StatusCode::NOT_FOUND, "itemNotFound");
    assert_eq!(h["x-openstack-nova-api-version"], "2.3");

    let t = project_token(c, "demo").await;
    let (s, b) = c.get(&t, "/compute/v2.1/flavors").await;
    assert_eq!(s, StatusCode::OK);
    assert!(b["flavors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "m1.tiny"));
    let (_, b) = c.get(&t, "/compute/v2/flavors/detail").await;
    let tiny = b["flavors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "1")
        .unwrap()
        .clone();
    assert_eq!(
        (tiny["ram"].as_i64(), tiny["disk"].as_i64()),
        (Some(512), Some(1))
    );
    let (s, b) = c.get(&t, "/compute/v2.1/flavors/nope").await;
    assert_nova_error(s, &b, StatusCode::NOT_FOUND, "itemNotFound");
}
on_both_stores!(discovery_and_microversions);

async fn server_lifecycle_and_state_machine(c: &TestCloud) {
    let t = project_token(c, "demo").await;
    let pid = c.project_id(&c.admin_token().await, "demo").await;
    let created = create_server(c, &t, "s1").await;
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/compute/v2.1/{pid}/servers/{id}");
    let active = wait_status(c, &t, &id, "ACTIVE").await;
    assert_eq!(active["OS-EXT-STS:vm_state"], "active");
    assert_eq!(active["OS-EXT-STS:power_state"], 1);
    assert!(active["OS-EXT-STS:task_state"].is_null());
    assert_eq!(active["image"]["id"], DEMO_IMAGE_ID);
    assert!(active["OS-SRV-USG:launched_at"].is_string());

    // The same server at 2.1 and at 2.47 differs exactly as upstream.
    let (_, old) = c.mv("2.1").get(&t, &path).await;
    let (_, new) = c.mv("2.47").get(&t, &path).await;
    let (old, new) = (
        old["server"].as_object().unwrap(),
        new["server"].as_object().unwrap(),
    );
    let mut only_new: Vec<&String> = new.keys().filter(|k| !old.contains_key(*k)).collect();
    only_new.sort();
    assert_eq!(only_new, ["description", "locked", "tags"]);
    assert!(old.keys().all(|k| new.contains_key(k)));
    assert_eq!(old["flavor"]["id"], "1");
    assert!(new["flavor"].get("id").is_none());
    assert_eq!(new["flavor"]["original_name"], "m1.tiny");
    assert_eq!(new["flavor"]["vcpus"], 1);
    for (k, v) in old {
        if k != "flavor" && k != "updated" {
            assert_eq!(&new[k], v, "{k}");
        }
    }

    // Its root disk is a qcow2 overlay on the cached image, as the operator command shows.
    let mut cmd = Command::new(BIN);
    cmd.args(["server", "disks", &id, "--data-dir"])
        .arg(&c.config.data_dir);
    if let Some(url) = &c.config.database_url {
        cmd.args(["--database-url", url]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let disk = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let info = Command::new("qemu-img")
        .args(["info", "--output=json", "-f", "qcow2", &disk])
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["virtual-size"], 1u64 << 30);
    // The root disk stands on the image's data, cached under its SHA-512.
    let (_, demo) = c
        .get(&t, &format!("/image/v2/images/{DEMO_IMAGE_ID}"))
        .await;
    let sha512 = demo["os_hash_value"].as_str().unwrap();
    assert!(info["backing-filename"]
        .as_str()
        .unwrap()
        .ends_with(&format!("cache/sha512-{sha512}")));
    let w = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 0xab 0 64k", &disk])
        .output()
        .unwrap();
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));

    // Listing with filters.
    create_server(c, &t, "other").await;
    let (_, l) = c.get(&t, "/compute/v2.1/servers?name=s1").await;
    assert_eq!(l["servers"].as_array().unwrap().len(), 1);
    assert_eq!(l["servers"][0]["id"], id.as_str());
    let (_, l) = c
        .get(&t, "/compute/v2.1/servers/detail?status=ACTIVE&name=s1")
        .await;
    assert_eq!(l["servers"][0]["status"], "ACTIVE");
    let (s, b) = c.get(&t, "/compute/v2.1/servers?status=NAPPING").await;
    assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");

    // The state machine: each action from where it may start; 409 elsewhere.
    let act = |body: Value| {
        let (t, path) = (t.clone(), format!("{path}/action"));
        async move {
            c.call_mv(Method::POST, &path, Some(&t), "", Some(body))
                .await
        }
    };
    let steps: Vec<(Value, StatusCode, &str)> = vec![
        (json!({"resume": null}), StatusCode::CONFLICT, "ACTIVE"),
        (json!({"os-stop": null}), StatusCode::ACCEPTED, "SHUTOFF"),
        (json!({"os-stop": null}), StatusCode::CONFLICT, "SHUTOFF"),
        (json!({"pause": null}), StatusCode::CONFLICT, "SHUTOFF"),
        (
            json!({"reboot": {"type": "SOFT"}}),
            StatusCode::CONFLICT,
            "SHUTOFF",
        ),
        (json!({"os-start": null}), StatusCode::ACCEPTED, "ACTIVE"),
        (
            json!({"reboot": {"type": "SOFT"}}),
            StatusCode::ACCEPTED,
            "ACTIVE",
        ),
        (json!({"pause": null}), StatusCode::ACCEPTED, "PAUSED"),
        (json!({"suspend": null}), StatusCode::CONFLICT, "PAUSED"),
        (json!({"unpause": null}), StatusCode::ACCEPTED, "ACTIVE"),
        (json!({"suspend": null}), StatusCode::ACCEPTED, "SUSPENDED"),
        (
            json!({"reboot": {"type": "HARD"}}),
            StatusCode::ACCEPTED,
            "ACTIVE",
        ),
        (json!({"suspend": null}), StatusCode::ACCEPTED, "SUSPENDED"),
        (json!({"resume": null}), StatusCode::ACCEPTED, "ACTIVE"),
    ];
    for (body, want, status) in steps {
        let (s, _, b) = act(body.clone()).await;
        assert_eq!(s, want, "{body}: {b}");
        if want == StatusCode::CONFLICT {
            let msg = b["conflictingRequest"]["message"].as_str().unwrap();
            assert!(
                msg.starts_with("Cannot '") && msg.contains(&id) && msg.contains("vm_state"),
                "{msg}"
            );
        }
        let (_, now) = c.get(&t, &path).await;
        assert_eq!(now["server"]["status"], status, "after {body}");
    }
    let (_, _, b) = act(json!({"os-stop": null})).await;
    assert!(b.is_null());
    let (_, _, b) = act(json!({"os-stop": null})).await;
    assert_eq!(
        b["conflictingRequest"]["message"],
        format!("Cannot 'stop' instance {id} while it is in vm_state stopped")
    );

    let (s, _) = c.delete(&t, &path).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(!std::path::Path::new(&disk).exists());
    let (s, b) = c.get(&t, &path).await;
    assert_nova_error(s, &b, StatusCode::NOT_FOUND, "itemNotFound");
}
on_both_stores!(server_lifecycle_and_state_machine);

async fn bad_input_and_visibility(c: &TestCloud) {
    let t = project_token(c, "demo").await;
    let admin = project_token(c, "admin").await;
    let server = |fields: Value| json!({"server": fields});
    let base =
        json!({"name": "x", "imageRef": DEMO_IMAGE_ID, "flavorRef": "1", "networks": "none"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        if v.is_null() {
            b.as_object_mut().unwrap().remove(k);
        } else {
            b[k] = v;
        }
        server(b)
    };
    let cases: Vec<(&str, Value)> = vec![
        ("2.47", with("flavorRef", json!("nope"))),
        (
            "2.47",
            with("imageRef", json!("5d5b4a10-0000-4000-8000-000000000000")),
        ),
        ("2.47", with("networks", Value::Null)),
        ("2.47", with("networks", json!([{"uuid": "n1"}]))),
        ("2.47", with("name", json!(""))),
        ("2.47", with("name", json!(" padded "))),
        ("2.47", with("colour", json!("red"))),
        ("2.1", with("description", json!("only from 2.19"))),
        ("2.47", with("metadata", json!({"k": 1}))),
        ("2.47", with("key_name", json!("k"))),
        ("2.47", with("availability_zone", json!("elsewhere"))),
        ("2.47", json!({"server": "x"})),
        ("2.47", json!({"servers": {}})),
    ];
    for (mv, body) in cases {
        let (s, b) = c
            .mv(mv)
            .post(&t, "/compute/v2.1/servers", body.clone())
            .await;
        assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    }
    let (_, l) = c.get(&t, "/compute/v2.1/servers").await;
    assert_eq!(l["servers"], json!([]), "bad input created nothing");

    let mine = create_server(c, &admin, "admins").await;
    let id = mine["id"].as_str().unwrap();
    for path in [
        format!("/compute/v2.1/servers/{id}"),
        "/compute/v2.1/servers/not-a-uuid".to_string(),
    ] {
        let (s, b) = c.get(&t, &path).await;
        assert_nova_error(s, &b, StatusCode::NOT_FOUND, "itemNotFound");
        let (s, b) = c
            .post(&t, &format!("{path}/action"), json!({"os-stop": null}))
            .await;
        assert_nova_error(s, &b, StatusCode::NOT_FOUND, "itemNotFound");
    }
    let (s, b) = c.get(&t, "/compute/v2.1/someoneelse/servers").await;
    assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    let act = format!("/compute/v2.1/servers/{id}/action");
    for body in [
        json!({"reboot": {}}),
        json!({"fly": null}),
        json!({"os-stop": null, "os-start": null}),
        json!([]),
    ] {
        let (s, b) = c.post(&admin, &act, body.clone()).await;
        assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    }
}
on_both_stores!(bad_input_and_visibility);

async fn server_actions_need_their_action(c: &TestCloud) {
    let admin = c.admin_token().await;
    let uid = c.create_user(&admin, "viewer", "pw").await;
    let gid = c.group_with(&admin, "viewers", &uid).await;
    let demo = c.project_id(&admin, "demo").await;
    let role = c.role_id(&admin, "system_all_ecs_readonly").await;
    c.grant_project(&admin, &demo, &gid, &role).await;
    let owner = project_token(c, "demo").await;
    let id = create_server(c, &owner, "guarded").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(c, &owner, &id, "ACTIVE").await;
    let t = c.token_for("viewer", "pw", Some("demo")).await;
    let (s, _) = c.get(&t, &format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = c
        .post(
            &t,
            &format!("/compute/v2.1/servers/{id}/action"),
            json!({"os-stop": null}),
        )
        .await;
    assert_nova_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
    assert!(
        b["forbidden"]["message"]
            .as_str()
            .unwrap()
            .contains("ecs:servers:stop"),
        "{b}"
    );
    let (_, now) = c.get(&t, &format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(now["server"]["status"], "ACTIVE");
}
on_both_stores!(server_actions_need_their_action);

async fn boot_from_volumes(c: &TestCloud) {
    let t = project_token(c, "demo").await;
    let post = |path: &'static str, body: Value| {
        let t = t.clone();
        async move {
            c.call_mv(Method::POST, path, Some(&t), "2.47", Some(body))
                .await
        }
    };
    let (s, _, b) = post(
        "/volume/v3/volumes",
        json!({"volume": {"size": 1, "imageRef": DEMO_IMAGE_ID, "name": "boot1"}}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let boot1 = b["volume"]["id"].as_str().unwrap().to_string();
    let (_, _, b) = post(
        "/volume/v3/volumes",
        json!({"volume": {"size": 1, "name": "blank"}}),
    )
    .await;
    let blank = b["volume"]["id"].as_str().unwrap().to_string();

    // A volume that is not bootable cannot be the root; nothing is left behind.
    let bdm = |uuid: &str, source: &str| {
        json!({"server": {"name": "s", "flavorRef": "1", "networks": "none",
        "block_device_mapping_v2": [{"uuid": uuid, "source_type": source, "destination_type": "volume",
                                     "boot_index": 0, "volume_size": 1, "delete_on_termination": source != "volume"}]}})
    };
    let (s, _, b) = post("/compute/v2.1/servers", bdm(&blank, "volume")).await;
    assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    let (s, _, b) = post(
        "/compute/v2.1/servers",
        bdm("5d5b4a10-0000-4000-8000-000000000000", "volume"),
    )
    .await;
    assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");

    let (s, _, b) = post("/compute/v2.1/servers", bdm(&boot1, "volume")).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let s2 = b["server"]["id"].as_str().unwrap().to_string();
    let shown = wait_status(c, &t, &s2, "ACTIVE").await;
    assert_eq!(shown["image"], "");
    assert_eq!(
        shown["os-extended-volumes:volumes_attached"],
        json!([{"id": boot1, "delete_on_termination": false}])
    );
    let (_, old) = c
        .mv("2.1")
        .get(&t, &format!("/compute/v2.1/servers/{s2}"))
        .await;
    assert_eq!(
        old["server"]["os-extended-volumes:volumes_attached"],
        json!([{"id": boot1}])
    );
    let (_, v) = c.get(&t, &format!("/volume/v3/volumes/{boot1}")).await;
    assert_eq!(v["volume"]["status"], "in-use");
    assert_eq!(v["volume"]["attachments"][0]["server_id"], s2.as_str());
    // The same volume cannot boot a second server.
    let (s, _, b) = post("/compute/v2.1/servers", bdm(&boot1, "volume")).await;
    assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");

    // An attached volume cannot be deleted; a snapshot of it needs force.
    let (s, b) = c.delete(&t, &format!("/volume/v3/volumes/{boot1}")).await;
    assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    let (s, _, b) = post(
        "/volume/v3/snapshots",
        json!({"snapshot": {"volume_id": boot1}}),
    )
    .await;
    assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    let (s, _, b) = post(
        "/volume/v3/snapshots",
        json!({"snapshot": {"volume_id": boot1, "force": true}}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let snap = b["snapshot"]["id"].as_str().unwrap().to_string();

    // The operator command names the volume's disk.
    let mut cmd = Command::new(BIN);
    cmd.args(["server", "disks", &s2, "--data-dir"])
        .arg(&c.config.data_dir);
    if let Some(url) = &c.config.database_url {
        cmd.args(["--database-url", url]);
    }
    let out = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
    assert!(out.trim().contains(&format!("volumes/{boot1}/")), "{out}");

    // From a snapshot and from an image: new volumes, deleted with the server.
    let (s, _, b) = post("/compute/v2.1/servers", bdm(&snap, "snapshot")).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let s3 = b["server"]["id"].as_str().unwrap().to_string();
    let (s, _, b) = post("/compute/v2.1/servers", bdm(DEMO_IMAGE_ID, "image")).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let s4 = b["server"]["id"].as_str().unwrap().to_string();
    for id in [&s3, &s4] {
        let shown = wait_status(c, &t, id, "ACTIVE").await;
        assert_eq!(
            shown["os-extended-volumes:volumes_attached"][0]["delete_on_termination"],
            true
        );
    }
    let (_, l) = c.get(&t, "/volume/v3/volumes").await;
    assert_eq!(l["volumes"].as_array().unwrap().len(), 4);
    for id in [&s2, &s3, &s4] {
        let (s, _) = c.delete(&t, &format!("/compute/v2.1/servers/{id}")).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    let (_, l) = c.get(&t, "/volume/v3/volumes/detail").await;
    let left: Vec<(&str, &str)> = l["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["id"].as_str().unwrap(), v["status"].as_str().unwrap()))
        .collect();
    let mut want = vec![(boot1.as_str(), "available"), (blank.as_str(), "available")];
    want.sort();
    let mut left = left;
    left.sort();
    assert_eq!(left, want);
}
on_both_stores!(boot_from_volumes);

async fn the_image_proxy(c: &TestCloud) {
    let t = project_token(c, "demo").await;
    let (s, b) = c.mv("2.35").get(&t, "/compute/v2.1/images/detail").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let demo = b["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == DEMO_IMAGE_ID)
        .unwrap()
        .clone();
    assert_eq!(
        (demo["status"].as_str(), demo["progress"].as_i64()),
        (Some("ACTIVE"), Some(100))
    );
    assert_eq!(demo["metadata"]["__os_type"], "Other");
    assert!(demo["OS-EXT-IMG-SIZE:size"].as_i64().unwrap() > 0);
    // A queued image shows as SAVING at 25 %.
    let (_, q) = c
        .post(
            &t,
            "/image/v2/images",
            json!({"name": "q", "min_disk": 5, "image_type": "snapshot", "instance_uuid": "abc"}),
        )
        .await;
    let qid = q["id"].as_str().unwrap().to_string();
    let (_, b) = c.get(&t, &format!("/compute/v2.1/images/{qid}")).await;
    assert_eq!(
        (
            b["image"]["status"].as_str(),
            b["image"]["progress"].as_i64()
        ),
        (Some("SAVING"), Some(25))
    );
    assert_eq!(b["image"]["server"]["id"], "abc");
    for (q, want) in [
        ("status=SAVING", vec!["q"]),
        ("status=ACTIVE", vec!["stratus-demo"]),
        ("minDisk=5", vec!["q"]),
        ("name=stratus-demo", vec!["stratus-demo"]),
        ("server=abc", vec!["q"]),
        // A server's self or bookmark link stands for its id (upstream takes the last segment).
        ("server=http://h/compute/v2.1/p/servers/abc", vec!["q"]),
        ("server=http://h/compute/p/servers/abc", vec!["q"]),
        ("server=http://h/compute/p/servers/abd", vec![]),
        ("type=snapshot", vec!["q"]),
        ("changes-since=2000-01-01T00:00:00Z&minDisk=1", vec!["q"]),
    ] {
        let (s, b) = c.get(&t, &format!("/compute/v2.1/images?{q}")).await;
        assert_eq!(s, StatusCode::OK, "{q}: {b}");
        let names: Vec<&str> = b["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, want, "{q}");
    }
    // Metadata, up to 2.38.
    let meta = format!("/compute/v2.1/images/{qid}/metadata");
    let (s, b) = c
        .mv("2.38")
        .post(&t, &meta, json!({"metadata": {"k": "v"}}))
        .await;
    assert_eq!(
        (s, b["metadata"]["k"].as_str()),
        (StatusCode::OK, Some("v"))
    );
    let (s, b) = c
        .put(&t, &format!("{meta}/k"), json!({"meta": {"k": "w"}}))
        .await;
    assert_eq!((s, b["meta"]["k"].as_str()), (StatusCode::OK, Some("w")));
    let (s, b) = c
        .put(&t, &format!("{meta}/k"), json!({"meta": {"j": "w"}}))
        .await;
    assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    let (_, b) = c.get(&t, &format!("{meta}/k")).await;
    assert_eq!(b["meta"]["k"], "w");
    let (s, _) = c.delete(&t, &format!("{meta}/k")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = c.get(&t, &format!("{meta}/k")).await;
    assert_nova_error(s, &b, StatusCode::NOT_FOUND, "itemNotFound");
    // PUT replaces every item.
    let (s, b) = c
        .post(&t, &meta, json!({"metadata": {"a": "1", "b": "2"}}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = c
        .mv("2.38")
        .put(&t, &meta, json!({"metadata": {"b": "3", "c": "4"}}))
        .await;
    assert_eq!(
        (s, &b),
        (StatusCode::OK, &json!({"metadata": {"b": "3", "c": "4"}}))
    );
    let (_, b) = c.get(&t, &meta).await;
    let props = b["metadata"].as_object().unwrap();
    assert!(
        props.get("a").is_none() && props["b"] == "3" && props["c"] == "4",
        "{b}"
    );
    let too_many: serde_json::Map<String, Value> =
        (0..129).map(|n| (format!("k{n}"), json!("v"))).collect();
    let (s, b) = c.put(&t, &meta, json!({"metadata": too_many})).await;
    assert_nova_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, b) = c.put(&t, &meta, json!({"meta": {}})).await;
    assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    let (s, b) = c.mv("2.39").get(&t, &meta).await;
    assert_nova_error(s, &b, StatusCode::NOT_FOUND, "itemNotFound");
    let (s, b) = c.mv("2.39").put(&t, &meta, json!({"metadata": {}})).await;
    assert_nova_error(s, &b, StatusCode::NOT_FOUND, "itemNotFound");
    let (s, b) = c.mv("2.36").get(&t, "/compute/v2.1/images").await;
    assert_nova_error(s, &b, StatusCode::NOT_FOUND, "itemNotFound");
    // Delete through the proxy; another project's image stays invisible.
    let (s, _) = c.delete(&t, &format!("/compute/v2.1/images/{qid}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = c.get(&t, &format!("/compute/v2.1/images/{qid}")).await;
    assert_nova_error(s, &b, StatusCode::NOT_FOUND, "itemNotFound");
}
on_both_stores!(the_image_proxy);

async fn a_failed_build_records_a_fault(c: &TestCloud) {
    let t = project_token(c, "demo").await;
    // An image whose stored data vanished: the build cannot make the root disk.
    let (_, img) = c
        .post(
            &t,
            "/image/v2/images",
            json!({"name": "broken", "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let iid = img["id"].as_str().unwrap().to_string();
    let r = c
        .http
        .put(format!("{}/image/v2/images/{iid}/file", c.url))
        .header("X-Auth-Token", &t)
        .header("Content-Type", "application/octet-stream")
        .body(vec![0u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    std::fs::remove_file(c.config.data_dir.join("images").join(&iid)).unwrap();
    let (s, b) = c.mv("2.47").post(&t, "/compute/v2.1/servers", json!({"server": {"name": "doomed", "imageRef": iid, "flavorRef": "1", "networks": "none"}})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    let failed = wait_status(c, &t, &id, "ERROR").await;
    assert_eq!(failed["fault"]["code"], 500);
    assert!(
        failed["fault"]["message"]
            .as_str()
            .unwrap()
            .contains("failed"),
        "{failed}"
    );
    assert!(failed["fault"]["created"].is_string());
    let (s, _) = c.delete(&t, &format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}
on_both_stores!(a_failed_build_records_a_fault);

/// `POST .../servers/{id}/action` with `body` at microversion `mv`.
async fn act(
    c: &TestCloud,
    t: &str,
    id: &str,
    mv: &str,
    body: Value,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    c.call_mv(
        Method::POST,
        &format!("/compute/v2.1/servers/{id}/action"),
        Some(t),
        mv,
        Some(body),
    )
    .await
}

async fn show_server(c: &TestCloud, t: &str, id: &str, mv: &str) -> Value {
    let (s, b) = c
        .mv(mv)
        .get(t, &format!("/compute/v2.1/servers/{id}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["server"].clone()
}

/// A user of project `demo` granted the given system policies there (not an administrator).
async fn member_token(c: &TestCloud, name: &str, policies: &[&str]) -> String {
    let admin = c.admin_token().await;
    let uid = c.create_user(&admin, name, "pw").await;
    let gid = c.group_with(&admin, &format!("{name}-g"), &uid).await;
    let demo = c.project_id(&admin, "demo").await;
    for p in policies {
        let role = c.role_id(&admin, p).await;
        c.grant_project(&admin, &demo, &gid, &role).await;
    }
    c.token_for(name, "pw", Some("demo")).await
}

async fn attributes_are_kept_as_given(c: &TestCloud) {
    let t = project_token(c, "demo").await;
    let server = |extra: Value| {
        let mut b = json!({"server": {"name": "attrs", "imageRef": DEMO_IMAGE_ID, "flavorRef": "1", "networks": "none"}});
        for (k, v) in extra.as_object().unwrap() {
            b["server"][k] = v.clone();
        }
        b
    };
    let post = |body: Value| {
        let t = t.clone();
        async move {
            c.call_mv(
                Method::POST,
                "/compute/v2.1/servers",
                Some(&t),
                "2.47",
                Some(body),
            )
            .await
        }
    };
    let (s, _, b) = post(server(
        json!({"accessIPv4": "10.0.0.5", "accessIPv6": "fe80::1",
                                       "OS-DCF:diskConfig": "AUTO"}),
    ))
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["server"]["OS-DCF:diskConfig"], "AUTO");
    assert_eq!(b["server"]["security_groups"], json!([{"name": "default"}]));
    let id = b["server"]["id"].as_str().unwrap().to_string();
    let shown = wait_status(c, &t, &id, "ACTIVE").await;
    assert_eq!(
        (
            &shown["accessIPv4"],
            &shown["accessIPv6"],
            &shown["OS-DCF:diskConfig"]
        ),
        (&json!("10.0.0.5"), &json!("fe80::1"), &json!("AUTO"))
    );
    // No network service: no ports, so no security groups are shown (upstream leaves the key out).
    assert!(shown.get("security_groups").is_none(), "{shown}");
    let (_, l) = c.mv("2.47").get(&t, "/compute/v2.1/servers/detail").await;
    assert!(l["servers"][0].get("security_groups").is_none());
    let (s, _, b) = post(server(json!({}))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["server"]["OS-DCF:diskConfig"], "MANUAL");
    let other = b["server"]["id"].as_str().unwrap().to_string();
    assert_eq!(wait_status(c, &t, &other, "ACTIVE").await["accessIPv4"], "");

    for bad in [
        json!({"accessIPv4": ""}),
        json!({"accessIPv4": "1.2.3"}),
        json!({"accessIPv4": "fe80::1"}),
        json!({"accessIPv6": "10.0.0.1"}),
        json!({"accessIPv6": 6}),
        json!({"OS-DCF:diskConfig": "auto"}),
        json!({"security_groups": [{"name": "web"}]}),
    ] {
        let (s, _, b) = post(server(bad.clone())).await;
        assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    }
    // An image that turns automatic disk config off refuses AUTO.
    let admin = c.admin_token().await;
    let patch = |op: Value| {
        let admin = admin.clone();
        async move {
            c.http
                .patch(format!("{}/image/v2/images/{DEMO_IMAGE_ID}", c.url))
                .header("X-Auth-Token", admin)
                .header(
                    "Content-Type",
                    "application/openstack-images-v2.1-json-patch",
                )
                .body(json!([op]).to_string())
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        patch(json!({"op": "add", "path": "/auto_disk_config", "value": "Disabled"})).await,
        StatusCode::OK
    );
    let (s, _, b) = post(server(json!({"OS-DCF:diskConfig": "AUTO"}))).await;
    assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    assert!(b["badRequest"]["message"]
        .as_str()
        .unwrap()
        .contains("automatic disk resize disabled"));
    assert_eq!(
        patch(json!({"op": "remove", "path": "/auto_disk_config"})).await,
        StatusCode::OK
    );

    // Security groups cannot be added or removed: none exists without a network service.
    for key in ["addSecurityGroup", "removeSecurityGroup"] {
        let (s, _, b) = act(c, &t, &id, "2.47", json!({key: {"name": "default"}})).await;
        assert_nova_error(s, &b, StatusCode::NOT_FOUND, "itemNotFound");
        assert!(b["itemNotFound"]["message"]
            .as_str()
            .unwrap()
            .contains("Security group default is not found"));
        let (s, _, b) = act(c, &t, &id, "2.47", json!({key: {}})).await;
        assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    }
}
on_both_stores!(attributes_are_kept_as_given);

async fn a_locked_server_refuses_other_callers(c: &TestCloud) {
    let owner = project_token(c, "demo").await;
    let member = member_token(
        c,
        "operator",
        &["system_all_ecs_full", "system_all_ims_full"],
    )
    .await;
    let id = create_server(c, &member, "locked").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(c, &member, &id, "ACTIVE").await;
    assert_eq!(show_server(c, &member, &id, "2.9").await["locked"], false);
    let (s, _, b) = act(c, &member, &id, "2.47", json!({"lock": null})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(show_server(c, &member, &id, "2.9").await["locked"], true);
    assert!(show_server(c, &member, &id, "2.8")
        .await
        .get("locked")
        .is_none());
    // Locking again is a no-op.
    let (s, _, _) = act(c, &member, &id, "2.47", json!({"lock": null})).await;
    assert_eq!(s, StatusCode::ACCEPTED);

    // Even the one who locked it is refused the actions a lock guards...
    for body in [
        json!({"os-stop": null}),
        json!({"reboot": {"type": "HARD"}}),
        json!({"pause": null}),
        json!({"rebuild": {"imageRef": DEMO_IMAGE_ID}}),
    ] {
        let (s, _, b) = act(c, &member, &id, "2.47", body).await;
        assert_nova_error(s, &b, StatusCode::CONFLICT, "conflictingRequest");
        assert_eq!(
            b["conflictingRequest"]["message"],
            format!("Instance {id} is locked")
        );
    }
    let (s, b) = c
        .delete(&member, &format!("/compute/v2.1/servers/{id}"))
        .await;
    assert_nova_error(s, &b, StatusCode::CONFLICT, "conflictingRequest");
    assert_eq!(
        show_server(c, &member, &id, "2.47").await["status"],
        "ACTIVE"
    );
    // ... but not createImage (upstream does not guard snapshots and backups).
    let (s, _, b) = act(
        c,
        &member,
        &id,
        "2.47",
        json!({"createImage": {"name": "of-locked"}}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let image = b["image_id"].as_str().unwrap().to_string();
    for _ in 0..500 {
        if show_server(c, &member, &id, "2.47").await["OS-EXT-STS:task_state"].is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The project's administrator passes the lock.
    let (s, _, b) = act(c, &owner, &id, "2.47", json!({"os-stop": null})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(
        show_server(c, &member, &id, "2.47").await["status"],
        "SHUTOFF"
    );
    // Unlocked, the member acts again.
    let (s, _, _) = act(c, &member, &id, "2.47", json!({"unlock": null})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(show_server(c, &member, &id, "2.9").await["locked"], false);
    let (s, _, b) = act(c, &member, &id, "2.47", json!({"os-start": null})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let (s, _) = c
        .delete(&member, &format!("/image/v2/images/{image}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // A user without the lock action cannot lock.
    let viewer = member_token(c, "lockless", &["system_all_ecs_readonly"]).await;
    let (s, _, b) = act(c, &viewer, &id, "2.47", json!({"lock": null})).await;
    assert_nova_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
    assert!(b["forbidden"]["message"]
        .as_str()
        .unwrap()
        .contains("ecs:servers:lock"));
}
on_both_stores!(a_locked_server_refuses_other_callers);

/// The disk file of a server, from the operator command.
fn root_disk(c: &TestCloud, id: &str) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["server", "disks", id, "--data-dir"])
        .arg(&c.config.data_dir);
    if let Some(url) = &c.config.database_url {
        cmd.args(["--database-url", url]);
    }
    let out = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
    out.lines().next().unwrap_or_default().to_string()
}

fn qemu_io(disk: &str, cmd: &str) -> String {
    let out = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", cmd, disk])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

async fn rebuild_gives_a_new_root_disk(c: &TestCloud) {
    let t = project_token(c, "demo").await;
    let id = create_server(c, &t, "rb").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(c, &t, &id, "ACTIVE").await;
    let before = root_disk(c, &id);
    qemu_io(&before, "write -P 0x5a 8M 64k");
    let (s, h, b) = act(
        c,
        &t,
        &id,
        "2.47",
        json!({"rebuild": {"imageRef": DEMO_IMAGE_ID, "name": "rb2", "metadata": {"role": "web"},
                           "accessIPv4": "10.1.1.1", "adminPass": "s3cret-pass"}}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert!(h["location"]
        .to_str()
        .unwrap()
        .ends_with(&format!("/servers/{id}")));
    let v = &b["server"];
    assert_eq!(
        (v["id"].as_str(), v["name"].as_str(), v["status"].as_str()),
        (Some(id.as_str()), Some("rb2"), Some("REBUILD"))
    );
    assert_eq!(v["adminPass"], "s3cret-pass");
    assert_eq!(v["metadata"], json!({"role": "web"}));
    assert_eq!(v["image"]["id"], DEMO_IMAGE_ID);
    assert_eq!(v["accessIPv4"], "10.1.1.1");
    // The rebuild view of upstream: no extended attributes, no security groups.
    assert!(
        v.get("OS-EXT-STS:vm_state").is_none() && v.get("security_groups").is_none(),
        "{v}"
    );
    assert_eq!(v["locked"], false);
    let done = wait_status(c, &t, &id, "ACTIVE").await;
    assert_eq!(done["OS-EXT-STS:task_state"], Value::Null);
    let after = root_disk(c, &id);
    assert_ne!(after, before);
    assert!(
        !std::path::Path::new(&before).exists(),
        "the old root disk is collected"
    );
    assert!(qemu_io(&after, "read -P 0 8M 64k").contains("read 65536/65536"));

    // A stopped server is rebuilt and stopped again.
    let (s, _, _) = act(c, &t, &id, "2.47", json!({"os-stop": null})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _, b) = act(
        c,
        &t,
        &id,
        "2.47",
        json!({"rebuild": {"imageRef": DEMO_IMAGE_ID}}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert!(b["server"]["adminPass"]
        .as_str()
        .is_some_and(|p| p.len() >= 8));
    assert_eq!(b["server"]["name"], "rb2", "kept when not given");
    let done = wait_status(c, &t, &id, "SHUTOFF").await;
    assert_eq!(done["OS-EXT-STS:task_state"], Value::Null);

    // Wrong state, unknown image, unknown field.
    let (s, _, _) = act(c, &t, &id, "2.47", json!({"os-start": null})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _, _) = act(c, &t, &id, "2.47", json!({"pause": null})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _, b) = act(
        c,
        &t,
        &id,
        "2.47",
        json!({"rebuild": {"imageRef": DEMO_IMAGE_ID}}),
    )
    .await;
    assert_nova_error(s, &b, StatusCode::CONFLICT, "conflictingRequest");
    assert!(b["conflictingRequest"]["message"]
        .as_str()
        .unwrap()
        .contains("Cannot 'rebuild' instance"));
    let (s, _, _) = act(c, &t, &id, "2.47", json!({"unpause": null})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _, b) = act(
        c,
        &t,
        &id,
        "2.47",
        json!({"rebuild": {"imageRef": "5d5b4a10-0000-4000-8000-000000000000"}}),
    )
    .await;
    assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    assert_eq!(b["badRequest"]["message"], "Cannot find image for rebuild");
    for bad in [
        json!({}),
        json!({"imageRef": DEMO_IMAGE_ID, "key_name": "k"}),
        json!({"imageRef": DEMO_IMAGE_ID, "accessIPv4": ""}),
        json!({"imageRef": DEMO_IMAGE_ID, "personality": [{"path": "/etc/x", "contents": "eA=="}]}),
    ] {
        let (s, _, b) = act(c, &t, &id, "2.47", json!({"rebuild": bad})).await;
        assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    }
    let (s, _, b) = act(
        c,
        &t,
        &id,
        "2.18",
        json!({"rebuild": {"imageRef": DEMO_IMAGE_ID, "description": "d"}}),
    )
    .await;
    assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    assert_eq!(show_server(c, &t, &id, "2.47").await["status"], "ACTIVE");

    // Volume-backed: only the image it was made from.
    let (s, b) = c
        .post(
            &t,
            "/volume/v3/volumes",
            json!({"volume": {"size": 1, "imageRef": DEMO_IMAGE_ID}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let vol = b["volume"]["id"].as_str().unwrap().to_string();
    let (s, b) = c.mv("2.47").post(&t, "/compute/v2.1/servers", json!({"server": {"name": "vb", "flavorRef": "1", "networks": "none",
            "block_device_mapping_v2": [{"uuid": vol, "source_type": "volume", "destination_type": "volume", "boot_index": 0}]}})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let vb = b["server"]["id"].as_str().unwrap().to_string();
    wait_status(c, &t, &vb, "ACTIVE").await;
    let (s, _, b) = act(
        c,
        &t,
        &vb,
        "2.47",
        json!({"rebuild": {"imageRef": DEMO_IMAGE_ID, "name": "vb2"}}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["server"]["image"], "");
    let done = wait_status(c, &t, &vb, "ACTIVE").await;
    assert_eq!(
        (
            done["name"].as_str(),
            &done["os-extended-volumes:volumes_attached"]
        ),
        (
            Some("vb2"),
            &json!([{"id": vol, "delete_on_termination": false}])
        )
    );
    let other = upload_image(c, &t, "other").await;
    let (s, _, b) = act(c, &t, &vb, "2.47", json!({"rebuild": {"imageRef": other}})).await;
    assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    assert!(b["badRequest"]["message"]
        .as_str()
        .unwrap()
        .contains("Unable to rebuild with a different image for a volume-backed server"));
}
on_both_stores!(rebuild_gives_a_new_root_disk);

/// Uploads a small qcow2 image; returns its id.
async fn upload_image(c: &TestCloud, t: &str, name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.qcow2");
    let out = Command::new("qemu-img")
        .args(["create", "-f", "qcow2"])
        .arg(&path)
        .arg("32M")
        .output()
        .unwrap();
    assert!(out.status.success());
    let (s, b) = c
        .post(
            t,
            "/image/v2/images",
            json!({"name": name, "disk_format": "qcow2", "container_format": "bare"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    let r = c
        .http
        .put(format!("{}/image/v2/images/{id}/file", c.url))
        .header("X-Auth-Token", t)
        .header("Content-Type", "application/octet-stream")
        .body(std::fs::read(&path).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    id
}

/// A failure during a rebuild leaves the server in error with a fault, and no new disk behind.
async fn a_failed_rebuild_records_a_fault(c: &TestCloud) {
    let t = project_token(c, "demo").await;
    let id = create_server(c, &t, "rbf").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(c, &t, &id, "ACTIVE").await;
    let before = root_disk(c, &id);
    let (s, _, b) = act(
        c,
        &t,
        &id,
        "2.47",
        json!({"rebuild": {"imageRef": DEMO_IMAGE_ID}}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let failed = wait_status(c, &t, &id, "ERROR").await;
    assert!(
        failed["fault"]["message"]
            .as_str()
            .unwrap()
            .contains("injected failure of step spawn"),
        "{failed}"
    );
    assert_eq!(root_disk(c, &id), before);
    let dir = std::path::Path::new(&before)
        .parent()
        .unwrap()
        .to_path_buf();
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1, "only the old root disk: {files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rebuild_records_a_fault_sqlite() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| {
        cfg.saga_faults = "fail:rebuild.spawn".into()
    })
    .await
    .unwrap();
    a_failed_rebuild_records_a_fault(&c).await;
    c.stop().await;
}

async fn backups_rotate(c: &TestCloud) {
    let t = project_token(c, "demo").await;
    let id = create_server(c, &t, "bk").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(c, &t, &id, "ACTIVE").await;
    let backup = |kind: &str, rotation: Value, mv: &'static str| {
        let (t, id) = (t.clone(), id.clone());
        let body = json!({"createBackup": {"name": format!("{kind}-bk"), "backup_type": kind, "rotation": rotation}});
        async move {
            let r = act(c, &t, &id, mv, body).await;
            for _ in 0..1000 {
                if show_server(c, &t, &id, "2.47").await["OS-EXT-STS:task_state"].is_null() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            r
        }
    };
    let backups = |kind: &'static str| {
        let t = t.clone();
        async move {
            let (_, l) = c
                .get(
                    &t,
                    &format!("/image/v2/images?backup_type={kind}&sort=created_at:asc"),
                )
                .await;
            l["images"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let mut made = vec![];
    for _ in 0..3 {
        let (s, h, b) = backup("daily", json!(2), "2.45").await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        assert!(!h.contains_key("location"));
        made.push(b["image_id"].as_str().unwrap().to_string());
    }
    assert_eq!(
        backups("daily").await,
        made[1..].to_vec(),
        "the newest two are kept"
    );
    let (_, i) = c.get(&t, &format!("/image/v2/images/{}", made[2])).await;
    assert_eq!(
        (
            i["image_type"].as_str(),
            i["backup_type"].as_str(),
            i["instance_uuid"].as_str(),
            i["status"].as_str()
        ),
        (
            Some("backup"),
            Some("daily"),
            Some(id.as_str()),
            Some("active")
        )
    );
    // Another type rotates on its own; a string rotation is fine; below 2.45 the image is in
    // Location, but only when it is kept.
    let (s, h, b) = backup("weekly", json!("1"), "2.44").await;
    assert_eq!((s, &b), (StatusCode::ACCEPTED, &Value::Null));
    let weekly = backups("weekly").await;
    assert_eq!(weekly.len(), 1);
    assert!(h["location"]
        .to_str()
        .unwrap()
        .ends_with(&format!("/images/{}", weekly[0])));
    assert_eq!(backups("daily").await.len(), 2);
    let (s, h, _) = backup("daily", json!(0), "2.44").await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(!h.contains_key("location"));
    assert_eq!(
        backups("daily").await,
        Vec::<String>::new(),
        "rotation 0 keeps none"
    );

    for bad in [
        json!({"name": "x", "backup_type": "d"}),
        json!({"name": "x", "rotation": 1}),
        json!({"name": "x", "backup_type": "d", "rotation": -1}),
        json!({"name": "x", "backup_type": "d", "rotation": "1x"}),
        json!({"name": " x", "backup_type": "d", "rotation": 1}),
        json!({"name": "x", "backup_type": "d", "rotation": 1, "extra": 1}),
    ] {
        let (s, _, b) = act(c, &t, &id, "2.47", json!({"createBackup": bad})).await;
        assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    }
    // Volume-backed servers have no backups (upstream's 400).
    let (s, b) = c.mv("2.47").post(&t, "/compute/v2.1/servers", json!({"server": {"name": "vb", "flavorRef": "1", "networks": "none",
            "block_device_mapping_v2": [{"uuid": DEMO_IMAGE_ID, "source_type": "image", "destination_type": "volume",
                                         "boot_index": 0, "volume_size": 1, "delete_on_termination": true}]}})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let vb = b["server"]["id"].as_str().unwrap().to_string();
    wait_status(c, &t, &vb, "ACTIVE").await;
    let (s, _, b) = act(
        c,
        &t,
        &vb,
        "2.47",
        json!({"createBackup": {"name": "x", "backup_type": "d", "rotation": 1}}),
    )
    .await;
    assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    assert_eq!(
        b["badRequest"]["message"],
        "Backup is not supported for volume-backed instances."
    );
}
on_both_stores!(backups_rotate);

/// Nova's quotas: servers are counted (with their cores and RAM) in the transaction that records
/// them, so 15 creations at once at a quota of 10 make 10; the others get upstream's 403.
/// `os-quota-sets` shows limits (the legacy network ones up to 2.35), usage and defaults, and
/// an administrator sets them (not below what is used, unless forced).
async fn compute_quotas(c: &TestCloud) {
    let t = project_token(c, "demo").await;
    let calls = (0..15).map(|n| {
        let t = t.clone();
        async move {
            c.call_mv( Method::POST, "/compute/v2.1/servers", Some(&t), "2.47",
                Some(json!({"server": {"name": format!("q{n}"), "imageRef": DEMO_IMAGE_ID, "flavorRef": "1", "networks": "none"}}))).await
        }
    });
    let results = futures::future::join_all(calls).await;
    let ok = results
        .iter()
        .filter(|r| r.0 == StatusCode::ACCEPTED)
        .count();
    assert_eq!(ok, 10);
    for (s, _, b) in results.iter().filter(|r| r.0 != StatusCode::ACCEPTED) {
        assert_nova_error(*s, b, StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(
            b["forbidden"]["message"],
            "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"
        );
    }
    let demo = c.project_id(&c.admin_token().await, "demo").await;
    let path = format!("/compute/v2.1/os-quota-sets/{demo}");
    let (s, b) = c.mv("2.35").get(&t, &path).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (
            b["quota_set"]["instances"].as_i64(),
            b["quota_set"]["fixed_ips"].as_i64(),
            b["quota_set"]["id"].as_str()
        ),
        (Some(10), Some(-1), Some(demo.as_str()))
    );
    let (_, b) = c.mv("2.36").get(&t, &path).await;
    assert!(b["quota_set"].get("fixed_ips").is_none(), "{b}");
    let (_, b) = c.mv("2.47").get(&t, &format!("{path}/detail")).await;
    assert_eq!(
        b["quota_set"]["instances"],
        json!({"in_use": 10, "limit": 10, "reserved": 0})
    );
    assert_eq!(b["quota_set"]["cores"]["in_use"], 10);
    let (_, b) = c.get(&t, &format!("{path}/defaults")).await;
    assert_eq!(b["quota_set"]["cores"], 20);
    // Not below what is used, unless forced; unknown keys are refused.
    let (s, b) = c
        .put(&t, &path, json!({"quota_set": {"instances": 5}}))
        .await;
    assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    let (s, b) = c
        .mv("2.47")
        .put(&t, &path, json!({"quota_set": {"fixed_ips": 5}}))
        .await;
    assert_nova_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    let (s, b) = c
        .put(
            &t,
            &path,
            json!({"quota_set": {"instances": 5, "force": "True"}}),
        )
        .await;
    assert_eq!(
        (s, &b["quota_set"]["instances"]),
        (StatusCode::OK, &json!(5)),
        "{b}"
    );
    assert!(b["quota_set"].get("id").is_none());
    let (s, _) = c
        .put(&t, &path, json!({"quota_set": {"instances": 12}}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = c.mv("2.47").post(&t, "/compute/v2.1/servers", json!({"server": {"name": "eleventh", "imageRef": DEMO_IMAGE_ID, "flavorRef": "1", "networks": "none"}})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    // A member may read the quotas but not set them.
    let member = member_token(c, "quota-reader", &["system_all_ecs_full"]).await;
    let (s, _) = c.get(&member, &path).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = c
        .put(&member, &path, json!({"quota_set": {"instances": 99}}))
        .await;
    assert_nova_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, _) = c.delete(&t, &path).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (_, b) = c.get(&t, &path).await;
    assert_eq!(b["quota_set"]["instances"], 10);
}
on_both_stores!(compute_quotas);
