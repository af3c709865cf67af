//! The Block Storage API over real HTTP: volumes (blank, from an image, from a snapshot),
//! snapshots as qcow2 layers, limits, and bad input.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::process::Command;
use stratus_services::demo::DEMO_IMAGE_ID;

fn assert_cinder_error(s: StatusCode, b: &Value, expected: StatusCode, fault: &str) {
    assert_eq!(s, expected, "{b}");
    assert_eq!(b[fault]["code"], expected.as_u16(), "{b}");
}

async fn project_token(c: &TestCloud, project: &str) -> String {
    let pw = c.admin_password.clone();
    c.token_for("admin", &pw, Some(project)).await
}

fn qemu_io(disk: &std::path::Path, cmd: &str) -> std::process::Output {
    Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", cmd])
        .arg(disk)
        .output()
        .unwrap()
}

fn backing_of(disk: &std::path::Path) -> Option<String> {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json", "-f", "qcow2"])
        .arg(disk)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["backing-filename"].as_str().map(str::to_string)
}

async fn volumes_and_snapshots(c: &TestCloud) {
    let t = project_token(c, "demo").await;
    let (s, h, b) = c.call(Method::GET, "/volume/", None, None).await;
    assert_eq!(s, StatusCode::MULTIPLE_CHOICES);
    assert_eq!(b["versions"][0]["id"], "v3.0");
    assert_eq!(h["openstack-api-version"], "volume 3.0");

    let (s, v1) = c
        .post(
            &t,
            "/volume/v3/volumes",
            json!({"volume": {"size": 1, "name": "v1"}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v1}");
    let v1 = v1["volume"].clone();
    assert_eq!(
        (v1["status"].as_str(), v1["bootable"].as_str()),
        (Some("available"), Some("false"))
    );
    let id = v1["id"].as_str().unwrap().to_string();
    let disk = c.volume_disk(&id).await;
    assert!(qemu_io(&disk, "write -P 0x5a 0 1M").status.success());

    // A snapshot freezes the written layer; the volume continues on a new layer over it.
    let (s, sn) = c
        .post(
            &t,
            "/volume/v3/snapshots",
            json!({"snapshot": {"volume_id": id, "name": "sn1"}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{sn}");
    let sn = sn["snapshot"].clone();
    assert_eq!(sn["status"], "available");
    let sid = sn["id"].as_str().unwrap().to_string();
    let frozen = c
        .config
        .data_dir
        .join(format!("disks/snapshots/{sid}.qcow2"));
    let now = c.volume_disk(&id).await;
    assert_ne!(now, disk);
    assert_eq!(backing_of(&now).as_deref(), frozen.to_str());
    assert!(qemu_io(&now, "write -P 0x11 0 4k").status.success());
    // A volume from the snapshot sees the data as of the snapshot, without copying it.
    let (s, v2) = c
        .post(
            &t,
            "/volume/v3/volumes",
            json!({"volume": {"snapshot_id": sid, "name": "v2"}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v2}");
    let v2id = v2["volume"]["id"].as_str().unwrap().to_string();
    assert_eq!(v2["volume"]["size"], 1);
    assert_eq!(v2["volume"]["snapshot_id"], sid.as_str());
    let v2disk = c.volume_disk(&v2id).await;
    assert!(
        std::fs::metadata(&v2disk).unwrap().len() < 1 << 20,
        "not copied"
    );
    assert!(qemu_io(&v2disk, "read -P 0x5a 0 1M").status.success());

    let (s, l) = c.get(&t, "/volume/v3/snapshots/detail").await;
    assert_eq!(
        (s, l["snapshots"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
    let (_, l) = c.get(&t, "/volume/v3/volumes/detail").await;
    assert_eq!(l["volumes"].as_array().unwrap().len(), 2);
    let (_, lim) = c.get(&t, "/volume/v3/limits").await;
    let abs = &lim["limits"]["absolute"];
    assert_eq!(
        (
            abs["totalVolumesUsed"].as_i64(),
            abs["totalSnapshotsUsed"].as_i64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(abs["maxTotalSnapshots"], 10);

    // A volume with snapshots cannot go; without, it can, and unreachable layers go with it.
    let (s, b) = c.delete(&t, &format!("/volume/v3/volumes/{id}")).await;
    assert_cinder_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    let (s, _) = c.delete(&t, &format!("/volume/v3/snapshots/{sid}")).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(frozen.exists(), "still under v1 and v2");
    for v in [&id, &v2id] {
        let (s, _) = c.delete(&t, &format!("/volume/v3/volumes/{v}")).await;
        assert_eq!(s, StatusCode::ACCEPTED);
    }
    assert!(!frozen.exists() && !now.exists() && !v2disk.exists());

    // From the demo image: bootable, with the image's metadata.
    let (s, b) = c
        .post(
            &t,
            "/volume/v3/volumes",
            json!({"volume": {"size": 1, "imageRef": DEMO_IMAGE_ID}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["volume"]["bootable"], "true");
    let bid = b["volume"]["id"].as_str().unwrap();
    // The image's metadata is shown (not on the create, as upstream).
    let (_, shown) = c.get(&t, &format!("/volume/v3/volumes/{bid}")).await;
    assert_eq!(
        shown["volume"]["volume_image_metadata"]["image_id"],
        DEMO_IMAGE_ID
    );
    let (s, _) = c
        .post(
            &t,
            &format!("/volume/v3/volumes/{bid}/action"),
            json!({"os-set_bootable": {"bootable": false}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, b) = c.get(&t, &format!("/volume/v3/volumes/{bid}")).await;
    assert_eq!(b["volume"]["bootable"], "false");
}
on_both_stores!(volumes_and_snapshots);

async fn bad_volume_input(c: &TestCloud) {
    let t = project_token(c, "demo").await;
    let admin = project_token(c, "admin").await;
    for body in [
        json!({"volume": {"size": 0}}),
        json!({"volume": {"size": "x"}}),
        json!({"volume": {}}),
        json!({"volume": {"size": 1, "colour": "red"}}),
        json!({"volume": {"size": 1, "imageRef": "5d5b4a10-0000-4000-8000-000000000000"}}),
        json!({"volume": {"snapshot_id": "nope"}}),
        json!({"volume": {"size": 1, "volume_type": "gold"}}),
        json!({"volume": {"size": 1, "source_volid": "x"}}),
        json!({"volumes": {"size": 1}}),
    ] {
        let (s, b) = c.post(&t, "/volume/v3/volumes", body.clone()).await;
        assert_cinder_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    }
    let (_, l) = c.get(&t, "/volume/v3/volumes").await;
    assert_eq!(l["volumes"], json!([]), "bad input created nothing");
    let (_, other) = c
        .post(&admin, "/volume/v3/volumes", json!({"volume": {"size": 1}}))
        .await;
    let oid = other["volume"]["id"].as_str().unwrap();
    for path in [
        format!("/volume/v3/volumes/{oid}"),
        "/volume/v3/volumes/not-a-uuid".into(),
    ] {
        let (s, b) = c.get(&t, &path).await;
        assert_cinder_error(s, &b, StatusCode::NOT_FOUND, "itemNotFound");
    }
    let (s, b) = c
        .post(
            &t,
            "/volume/v3/snapshots",
            json!({"snapshot": {"volume_id": oid}}),
        )
        .await;
    assert_cinder_error(s, &b, StatusCode::NOT_FOUND, "itemNotFound");
    // The snapshot quota.
    let (_, v) = c
        .post(&t, "/volume/v3/volumes", json!({"volume": {"size": 1}}))
        .await;
    let vid = v["volume"]["id"].as_str().unwrap();
    for n in 0..10 {
        let (s, b) = c
            .post(
                &t,
                "/volume/v3/snapshots",
                json!({"snapshot": {"volume_id": vid, "name": format!("s{n}")}}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    }
    let (s, b) = c
        .post(
            &t,
            "/volume/v3/snapshots",
            json!({"snapshot": {"volume_id": vid}}),
        )
        .await;
    assert_cinder_error(s, &b, StatusCode::PAYLOAD_TOO_LARGE, "overLimit");
}
on_both_stores!(bad_volume_input);

/// Every volume and snapshot response has exactly the keys of upstream's published samples at
/// 3.0, for a project member and for an administrator.
async fn responses_in_upstreams_shape(c: &TestCloud) {
    let golden: Value =
        serde_json::from_str(include_str!("../golden/cinder-3.0-keys.json")).unwrap();
    let keys_of = |name: &str| -> Vec<String> {
        golden[name]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    };
    let admin_only = keys_of("admin_only");
    let want = |name: &str, admin: bool, extra: &[&str]| -> Vec<String> {
        let mut k: Vec<String> = keys_of(name)
            .into_iter()
            .filter(|k| admin || !admin_only.contains(k))
            .collect();
        k.extend(extra.iter().map(|e| e.to_string()));
        k.sort();
        k
    };
    let got = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    // A member of demo (EVS FullAccess), and the administrator.
    let admin = c.admin_token().await;
    let uid = c.create_user(&admin, "member", "pw").await;
    let gid = c.group_with(&admin, "members", &uid).await;
    let demo = c.project_id(&admin, "demo").await;
    let role = c.role_id(&admin, "system_all_evs_full").await;
    c.grant_project(&admin, &demo, &gid, &role).await;
    let member = c.token_for("member", "pw", Some("demo")).await;
    let owner = project_token(c, "demo").await;
    for (t, is_admin) in [(&member, false), (&owner, true)] {
        let (s, b) = c
            .post(t, "/volume/v3/volumes", json!({"volume": {"size": 1}}))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        // Extensions never extend a create; no migration status either (it is shown by the view
        // of an administrator only, and upstream's create has no status to report yet).
        assert_eq!(
            got(&b["volume"]),
            want("volume_create", false, &[]),
            "create"
        );
        assert_eq!(b["volume"]["updated_at"], Value::Null);
        let id = b["volume"]["id"].as_str().unwrap().to_string();
        let (_, b) = c.get(t, &format!("/volume/v3/volumes/{id}")).await;
        assert_eq!(
            got(&b["volume"]),
            want("volume_show", is_admin, &[]),
            "show"
        );
        let (_, b) = c
            .post(
                t,
                "/volume/v3/volumes",
                json!({"volume": {"size": 1, "imageRef": DEMO_IMAGE_ID}}),
            )
            .await;
        assert_eq!(
            got(&b["volume"]),
            want("volume_create", false, &[]),
            "create from an image"
        );
        let from_image = b["volume"]["id"].as_str().unwrap().to_string();
        let (_, b) = c.get(t, &format!("/volume/v3/volumes/{from_image}")).await;
        assert_eq!(
            got(&b["volume"]),
            want("volume_show", is_admin, &["volume_image_metadata"])
        );
        assert_eq!(
            b["volume"]["volume_image_metadata"]["image_id"],
            DEMO_IMAGE_ID
        );
        let (_, b) = c.get(t, "/volume/v3/volumes").await;
        for v in b["volumes"].as_array().unwrap() {
            assert_eq!(got(v), want("volume_list", false, &[]));
        }
        let (_, b) = c.get(t, "/volume/v3/volumes/detail").await;
        for v in b["volumes"].as_array().unwrap() {
            let extra: &[&str] = if v["id"] == from_image.as_str() {
                &["volume_image_metadata"]
            } else {
                &[]
            };
            assert_eq!(got(v), want("volume_show", is_admin, extra), "detail");
        }
        let (s, b) = c
            .post(
                t,
                "/volume/v3/snapshots",
                json!({"snapshot": {"volume_id": id, "name": "sn"}}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        assert_eq!(got(&b["snapshot"]), want("snapshot_create", is_admin, &[]));
        let sid = b["snapshot"]["id"].as_str().unwrap().to_string();
        let (_, b) = c.get(t, &format!("/volume/v3/snapshots/{sid}")).await;
        assert_eq!(got(&b["snapshot"]), want("snapshot_show", is_admin, &[]));
        let (_, b) = c.get(t, "/volume/v3/snapshots").await;
        assert_eq!(
            got(&b["snapshots"][0]),
            want("snapshot_list", is_admin, &[])
        );
        let (_, b) = c.get(t, "/volume/v3/snapshots/detail").await;
        assert_eq!(
            got(&b["snapshots"][0]),
            want("snapshot_detail", is_admin, &[])
        );
        for path in [
            format!("/volume/v3/snapshots/{sid}"),
            format!("/volume/v3/volumes/{id}"),
            format!("/volume/v3/volumes/{from_image}"),
        ] {
            let (s, b) = c.delete(t, &path).await;
            assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        }
    }
}
on_both_stores!(responses_in_upstreams_shape);

/// Quotas hold under concurrency: the count and the new row are written in one transaction that
/// holds the project's quota lock. 30 volumes at once at a quota of 10 make 10; 30 snapshots at
/// a quota of 10 make 10; 8 snapshots of one volume at once: one is taken, the others are told
/// another is being taken. Quotas are shown, with usage, and set by an administrator.
async fn quotas_hold_under_concurrency(c: &TestCloud) {
    let t = project_token(c, "demo").await;
    let calls = (0..30).map(|n| {
        let t = t.clone();
        async move {
            c.post(
                &t,
                "/volume/v3/volumes",
                json!({"volume": {"size": 1, "name": format!("q{n}")}}),
            )
            .await
        }
    });
    let results = futures::future::join_all(calls).await;
    let made: Vec<String> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .map(|(_, b)| b["volume"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        made.len(),
        10,
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    for (s, b) in results.iter().filter(|(s, _)| *s != StatusCode::ACCEPTED) {
        assert_cinder_error(*s, b, StatusCode::PAYLOAD_TOO_LARGE, "overLimit");
        assert_eq!(
            b["overLimit"]["message"],
            "VolumeLimitExceeded: Maximum number of volumes allowed (10) exceeded for quota 'volumes'."
        );
    }
    let (_, l) = c.get(&t, "/volume/v3/volumes").await;
    assert_eq!(l["volumes"].as_array().unwrap().len(), 10);

    // Eight snapshots of one volume at once.
    let calls = (0..8).map(|_| {
        let (t, v) = (t.clone(), made[0].clone());
        async move {
            c.post(
                &t,
                "/volume/v3/snapshots",
                json!({"snapshot": {"volume_id": v}}),
            )
            .await
        }
    });
    let results = futures::future::join_all(calls).await;
    let statuses: Vec<StatusCode> = results.iter().map(|r| r.0).collect();
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::ACCEPTED || *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );
    assert!(statuses.contains(&StatusCode::ACCEPTED), "{statuses:?}");
    let (_, l) = c.get(&t, "/volume/v3/snapshots").await;
    let taken = l["snapshots"].as_array().unwrap().len();
    assert_eq!(
        taken,
        statuses
            .iter()
            .filter(|s| **s == StatusCode::ACCEPTED)
            .count()
    );

    // 30 snapshots of the ten volumes at a quota of 10 in all.
    let calls = (0..30).map(|n| {
        let (t, v) = (t.clone(), made[n % 10].clone());
        async move {
            c.post(
                &t,
                "/volume/v3/snapshots",
                json!({"snapshot": {"volume_id": v}}),
            )
            .await
        }
    });
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(|(s, _)| matches!(
        *s,
        StatusCode::ACCEPTED | StatusCode::CONFLICT | StatusCode::PAYLOAD_TOO_LARGE
    )));
    let (_, l) = c.get(&t, "/volume/v3/snapshots").await;
    assert_eq!(l["snapshots"].as_array().unwrap().len(), 10);

    // The quotas, with usage; set higher by the administrator.
    let demo = c.project_id(&c.admin_token().await, "demo").await;
    let (s, b) = c
        .get(&t, &format!("/volume/v3/os-quota-sets/{demo}?usage=True"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["quota_set"]["volumes"],
        json!({"in_use": 10, "limit": 10, "reserved": 0})
    );
    assert_eq!(b["quota_set"]["snapshots"]["in_use"], 10);
    assert_eq!(b["quota_set"]["id"], demo.as_str());
    let (s, b) = c.get(&t, "/volume/v3/limits").await;
    assert_eq!(
        (s, &b["limits"]["absolute"]["totalVolumesUsed"]),
        (StatusCode::OK, &json!(10))
    );
    let (s, b) = c
        .put(
            &t,
            &format!("/volume/v3/os-quota-sets/{demo}"),
            json!({"quota_set": {"volumes": 5}}),
        )
        .await;
    assert_cinder_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    let (s, b) = c
        .put(
            &t,
            &format!("/volume/v3/os-quota-sets/{demo}"),
            json!({"quota_set": {"volumes": 12, "bogus": 1}}),
        )
        .await;
    assert_cinder_error(s, &b, StatusCode::BAD_REQUEST, "badRequest");
    let (s, b) = c
        .put(
            &t,
            &format!("/volume/v3/os-quota-sets/{demo}"),
            json!({"quota_set": {"volumes": 12}}),
        )
        .await;
    assert_eq!(
        (s, &b["quota_set"]["volumes"]),
        (StatusCode::OK, &json!(12)),
        "{b}"
    );
    assert!(b["quota_set"].get("id").is_none());
    let (s, _) = c
        .post(&t, "/volume/v3/volumes", json!({"volume": {"size": 1}}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _) = c
        .delete(&t, &format!("/volume/v3/os-quota-sets/{demo}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, b) = c
        .get(&t, &format!("/volume/v3/os-quota-sets/{demo}/defaults"))
        .await;
    assert_eq!(b["quota_set"]["volumes"], 10);
}
on_both_stores!(quotas_hold_under_concurrency);
