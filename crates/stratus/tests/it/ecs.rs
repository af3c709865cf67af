//! Huawei ECS's own API over real HTTP: one server's details and pages of them
//! (`/v1/{project_id}/cloudservers`), in ECS's shapes and error format.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use stratus_services::demo::DEMO_IMAGE_ID;

async fn server(c: &TestCloud, t: &str, name: &str) -> String {
    let (s, b) = c
        .post(
            t,
            "/compute/v2.1/servers",
            json!({"server": {"name": name, "imageRef": DEMO_IMAGE_ID, "flavorRef": "1"}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    c.wait_server(t, &id, "ACTIVE").await;
    id
}

fn ids(b: &Value) -> Vec<&str> {
    b["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["id"].as_str())
        .collect()
}

async fn ecs_reads_servers(c: &TestCloud) {
    let admin = c.admin_token().await;
    let demo = c.project_id(&admin, "demo").await;
    let pw = c.admin_password.clone();
    let t = c.token_for("admin", &pw, Some("demo")).await;
    let older = server(c, &t, "ecs-older").await;
    let newer = server(c, &t, "ecs-newer").await;
    let base = format!("/compute/v1/{demo}/cloudservers");

    let (s, b) = c.get(&t, &format!("{base}/{older}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let v = &b["server"];
    assert_eq!(
        (
            &v["id"],
            &v["name"],
            &v["status"],
            &v["OS-EXT-STS:vm_state"]
        ),
        (
            &json!(older),
            &json!("ecs-older"),
            &json!("ACTIVE"),
            &json!("active")
        ),
        "{v}"
    );
    assert_eq!(v["flavor"]["id"], "1");
    assert!(
        v["flavor"]["vcpus"]
            .as_str()
            .is_some_and(|n| n.parse::<u32>().is_ok()),
        "{v}"
    );
    assert_eq!(v["image"], json!({"id": DEMO_IMAGE_ID}));
    assert_eq!(v["enterprise_project_id"], "0");
    assert_eq!(
        v["sys_tags"],
        json!([{"key": "_sys_enterprise_project_id", "value": "0"}])
    );
    assert_eq!(v["tenant_id"], demo.as_str());

    // Pages: newest first, `offset` is the page number.
    let (s, b) = c.get(&t, &format!("{base}/detail")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["count"].as_u64(), ids(&b)),
        (Some(2), vec![newer.as_str(), older.as_str()])
    );
    let (_, b) = c.get(&t, &format!("{base}/detail?limit=1&offset=2")).await;
    assert_eq!(
        (b["count"].as_u64(), ids(&b)),
        (Some(2), vec![older.as_str()])
    );
    let (_, b) = c
        .get(&t, &format!("{base}/detail?marker={newer}&offset=5"))
        .await;
    assert_eq!(
        (b["count"].as_u64(), ids(&b)),
        (Some(2), vec![older.as_str()]),
        "after the marker"
    );
    for (q, want) in [
        ("name=newer", vec![newer.as_str()]),
        ("status=SHUTOFF", vec![]),
        ("flavor=1", vec![newer.as_str(), older.as_str()]),
        (
            "enterprise_project_id=0",
            vec![newer.as_str(), older.as_str()],
        ),
        (
            "enterprise_project_id=all_granted_eps",
            vec![newer.as_str(), older.as_str()],
        ),
        (&format!("server_id={older}"), vec![older.as_str()]),
        ("tags=a", vec![]),
        ("ip=10.0.0.1", vec![]),
        ("not-tags=a", vec![newer.as_str(), older.as_str()]),
    ] {
        let (s, b) = c.get(&t, &format!("{base}/detail?{q}")).await;
        assert_eq!(s, StatusCode::OK, "{q}: {b}");
        assert_eq!(ids(&b), want, "{q}");
        assert_eq!(b["count"].as_u64(), Some(want.len() as u64), "{q}");
    }

    // ECS's error format: bad queries, unknown servers, another project in the URL.
    let (_, b) = c.get(&t, &format!("{base}/detail?offset=0&limit=1")).await;
    assert_eq!(ids(&b), [newer.as_str()], "page 0 is page 1");
    let (_, b) = c
        .get(&t, &format!("{base}/detail?server_id={older},{newer}"))
        .await;
    assert_eq!(ids(&b), [newer.as_str(), older.as_str()]);
    for q in [
        "limit=0",
        "limit=1001",
        "offset=-1",
        "status=NOPE",
        "sort=x",
        "marker=nope",
    ] {
        let (s, b) = c.get(&t, &format!("{base}/detail?{q}")).await;
        assert_eq!(
            (s, &b["error"]["code"]),
            (StatusCode::BAD_REQUEST, &json!("Ecs.0005")),
            "{q}: {b}"
        );
    }
    let (s, b) = c.get(&t, &format!("{base}/nope")).await;
    assert_eq!(
        (s, &b["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("Ecs.0114")),
        "{b}"
    );
    let (s, _) = c.get(&admin, &format!("{base}/{older}")).await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "the admin project's token, demo's URL"
    );
    // A server booted from a volume: the volume is boot index "0".
    let (s, b) = c
        .post(
            &t,
            "/volume/v3/volumes",
            json!({"volume": {"size": 1, "imageRef": DEMO_IMAGE_ID}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let root = b["volume"]["id"].as_str().unwrap().to_string();
    c.wait_volume(&t, &root, "available").await;
    let (s, b) = c.mv("2.47").post(&t, "/compute/v2.1/servers", json!({"server": {
        "name": "ecs-bfv", "flavorRef": "1", "networks": "none", "block_device_mapping_v2": [
            {"uuid": root, "source_type": "volume", "destination_type": "volume", "boot_index": 0}]}})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let bfv = b["server"]["id"].as_str().unwrap().to_string();
    c.wait_server(&t, &bfv, "ACTIVE").await;
    let (_, b) = c.get(&t, &format!("{base}/{bfv}")).await;
    assert_eq!(
        b["server"]["os-extended-volumes:volumes_attached"],
        json!([{"id": root, "delete_on_termination": "false", "bootIndex": "0", "device": "/dev/vda"}]),
        "{b}"
    );

    // Decided as ecs:cloudServers:get / list.
    let ro = c
        .demo_member("ecs-none", &["IMS ReadOnlyAccess"], &[])
        .await;
    let (s, b) = c.get(&ro, &format!("{base}/{older}")).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(
        b["error"]["message"],
        "Policy doesn't allow ecs:cloudServers:get to be performed."
    );
    let (s, b) = c.get(&ro, &format!("{base}/detail")).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
}
on_both_stores!(ecs_reads_servers);
