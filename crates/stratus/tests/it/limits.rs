//! Limits on what a request may carry: each is a 4xx in the called API's own format, changes
//! nothing, and is listed in SECURITY.md.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use stratus_services::limits;

/// The error message of a body in any of the four formats, if it is one.
fn message(b: &Value) -> Option<&str> {
    b["message"]
        .as_str()
        .or(b["error"]["message"].as_str())
        .or(b["badRequest"]["message"].as_str())
        .or(b["overLimit"]["message"].as_str())
        .or(b["forbidden"]["message"].as_str())
}

fn assert_refused(s: StatusCode, b: &Value, want: StatusCode, what: &str) {
    assert_eq!(s, want, "{what}: {b}");
    assert!(message(b).is_some_and(|m| !m.is_empty()), "{what}: {b}");
}

async fn counts(c: &TestCloud, t: &str) -> Vec<usize> {
    let identity = [
        ("/identity/v3/projects", "projects"),
        ("/identity/v3/users", "users"),
        ("/identity/v3/groups", "groups"),
    ];
    c.list_lengths(t, &[&HOLDINGS[..], &identity[..]].concat())
        .await
}

/// Listing images: sort keys once each and at most ten, bounded filters and query strings —
/// the request that made memory grow with the square of its sort keys is a 400 now.
async fn listings_are_bounded(c: &TestCloud) {
    let t = c.project_token("demo").await;
    let (s, first) = c.get(&t, "/image/v2/images?limit=1").await;
    assert_eq!(s, StatusCode::OK);
    let marker = first["images"][0]["id"].as_str().unwrap().to_string();
    let many_ids = vec!["id"; 2_000].join(",");
    let too_many_tags: String = (0..=limits::IMAGE_FILTERS)
        .map(|n| format!("&tag=t{n}"))
        .collect();
    let too_many_params: String = (0..=limits::QUERY_PARAMS)
        .map(|n| format!("&p{n}=x"))
        .collect();
    let in_list = (0..=limits::FILTER_VALUES)
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let cases = [
        format!("/image/v2/images?sort={many_ids}&marker={marker}"),
        "/image/v2/images?sort=id,id".to_string(),
        "/image/v2/images?sort_key=name&sort_key=name".to_string(),
        format!("/image/v2/images?limit=5{too_many_tags}"),
        format!("/image/v2/images?limit=5{too_many_params}"),
        format!("/image/v2/images?id=in:{in_list}"),
        format!("/image/v2/images?name={}", "n".repeat(limits::QUERY_BYTES)),
        format!("/compute/v2.1/servers/detail?limit=5{too_many_params}"),
        format!("/volume/v3/volumes/detail?limit=5{too_many_params}"),
        format!("/identity/v3/users?limit=5{too_many_params}"),
    ];
    for path in &cases {
        let (s, b) = c.get(&t, path).await;
        assert_refused(s, &b, StatusCode::BAD_REQUEST, &path[..path.len().min(80)]);
    }
    // Ten distinct keys are fine.
    let (s, b) = c
        .get(
            &t,
            &format!("/image/v2/images?sort=name,status,size,id&marker={marker}"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}
on_both_stores!(listings_are_bounded);

/// JSON bodies: depth, string, array and object sizes, in each API's format.
async fn json_bodies_are_bounded(c: &TestCloud) {
    let t = c.project_token("demo").await;
    let before = counts(c, &t).await;
    let mut deep = json!("x");
    for _ in 0..40 {
        deep = json!({ "a": deep });
    }
    let long = "x".repeat(limits::JSON_STRING_BYTES + 1);
    let wide: Vec<Value> = (0..=limits::JSON_ARRAY_ITEMS).map(|n| json!(n)).collect();
    let members: serde_json::Map<String, Value> = (0..=limits::JSON_OBJECT_MEMBERS)
        .map(|n| (format!("k{n}"), json!("v")))
        .collect();
    let image = stratus_services::demo::DEMO_IMAGE_ID;
    let bodies = [
        (
            "/compute/v2.1/servers",
            json!({"server": {"name": "x", "flavorRef": "1", "imageRef": image, "metadata": deep.clone()}}),
            "nests deeper than 32",
        ),
        (
            "/compute/v2.1/servers",
            json!({"server": {"name": "x", "flavorRef": "1", "imageRef": image, "adminPass": long}}),
            "bytes; at most 65536",
        ),
        (
            "/volume/v3/volumes",
            json!({"volume": {"size": 1, "metadata": {"k": wide}}}),
            "1001 items; at most 1000",
        ),
        (
            "/volume/v3/volumes",
            json!({"volume": {"size": 1, "metadata": members}}),
            "1001 members; at most 1000",
        ),
        (
            "/image/v2/images",
            json!({"name": "x", "tags": (0..=limits::JSON_ARRAY_ITEMS).map(|n| n.to_string()).collect::<Vec<_>>()}),
            "1001 items; at most 1000",
        ),
        (
            "/identity/v3/projects",
            json!({"project": {"name": "x", "description": deep}}),
            "nests deeper than 32",
        ),
    ];
    for (path, body, why) in bodies {
        let (s, b) = c.post(&t, path, body).await;
        assert_refused(s, &b, StatusCode::BAD_REQUEST, path);
        assert!(message(&b).is_some_and(|m| m.contains(why)), "{path}: {b}");
    }
    assert_eq!(counts(c, &t).await, before);
}
on_both_stores!(json_bodies_are_bounded);

/// Names, descriptions, metadata, tags and properties: each over its limit is refused, nothing
/// is made.
async fn fields_are_bounded(c: &TestCloud) {
    let t = c.project_token("demo").await;
    let admin = c.admin_token().await;
    let before = counts(c, &t).await;
    let d = "d".repeat(limits::DESCRIPTION_CHARS + 1);
    let n = "n".repeat(limits::NAME_CHARS + 1);
    let metadata: serde_json::Map<String, Value> = (0..=limits::METADATA_ITEMS)
        .map(|i| (format!("k{i}"), json!("v")))
        .collect();
    let (_, v) = c
        .post(&t, "/volume/v3/volumes", json!({"volume": {"size": 1}}))
        .await;
    let volume = v["volume"]["id"].as_str().unwrap().to_string();
    let before = {
        let mut b = before;
        b[1] += 1;
        b
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/compute/v2.1/servers",
            json!({"server": {"name": "x", "flavorRef": "1",
            "imageRef": stratus_services::demo::DEMO_IMAGE_ID, "description": d}}),
            "server description",
        ),
        (
            "/compute/v2.1/servers",
            json!({"server": {"name": n, "flavorRef": "1",
            "imageRef": stratus_services::demo::DEMO_IMAGE_ID}}),
            "server name",
        ),
        (
            "/compute/v2.1/servers",
            json!({"server": {"name": "x", "flavorRef": "1",
            "imageRef": stratus_services::demo::DEMO_IMAGE_ID, "metadata": metadata}}),
            "server metadata",
        ),
        (
            "/volume/v3/volumes",
            json!({"volume": {"size": 1, "name": n}}),
            "volume name",
        ),
        (
            "/volume/v3/volumes",
            json!({"volume": {"size": 1, "description": d}}),
            "volume description",
        ),
        (
            "/volume/v3/snapshots",
            json!({"snapshot": {"volume_id": volume, "description": d}}),
            "snapshot description",
        ),
        (
            "/volume/v3/snapshots",
            json!({"snapshot": {"volume_id": volume, "name": n}}),
            "snapshot name",
        ),
        ("/image/v2/images", json!({"name": n}), "image name"),
        (
            "/image/v2/images",
            json!({"name": "x", "tags": ["t".repeat(limits::TAG_CHARS + 1)]}),
            "image tag",
        ),
    ];
    let names_limit =
        |b: &Value| message(b).is_some_and(|m| m.contains("255") || m.contains("at most"));
    for (path, body, what) in cases {
        let (s, b) = c.mv("2.19").post(&t, path, body).await;
        assert_refused(s, &b, StatusCode::BAD_REQUEST, what);
        assert!(names_limit(&b), "{what}: {b}");
    }
    for (path, body, what) in [
        (
            "/identity/v3/projects",
            json!({"project": {"name": "p1", "description": d}}),
            "project",
        ),
        (
            "/identity/v3/users",
            json!({"user": {"name": "u1", "description": d}}),
            "user",
        ),
        (
            "/identity/v3/groups",
            json!({"group": {"name": "g1", "description": d}}),
            "group",
        ),
        (
            "/identity/v3/users",
            json!({"user": {"name": "u2", "email": n}}),
            "email",
        ),
    ] {
        let (s, b) = c.post(&admin, path, body).await;
        assert_refused(s, &b, StatusCode::BAD_REQUEST, what);
        assert!(names_limit(&b), "{what}: {b}");
    }
    // Glance's quotas on tags and properties are 413s.
    let tags: Vec<String> = (0..=limits::IMAGE_TAGS).map(|i| format!("t{i}")).collect();
    let (s, b) = c
        .post(&t, "/image/v2/images", json!({"name": "x", "tags": tags}))
        .await;
    assert_refused(s, &b, StatusCode::PAYLOAD_TOO_LARGE, "tags");
    let mut props = serde_json::Map::new();
    props.insert("name".into(), json!("x"));
    for i in 0..=limits::IMAGE_PROPERTIES {
        props.insert(format!("p{i}"), json!("v"));
    }
    let (s, b) = c.post(&t, "/image/v2/images", Value::Object(props)).await;
    assert_refused(s, &b, StatusCode::PAYLOAD_TOO_LARGE, "properties");
    assert_eq!(counts(c, &t).await, before);
}
on_both_stores!(fields_are_bounded);

/// SECURITY.md lists every limit with its value.
#[test]
fn every_limit_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../SECURITY.md"))
        .expect("SECURITY.md");
    for (name, value, _) in limits::TABLE {
        let shown = value
            .to_string()
            .as_bytes()
            .rchunks(3)
            .rev()
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(",");
        let row = doc
            .lines()
            .find(|l| l.contains(&format!("`{name}`")))
            .unwrap_or_else(|| panic!("SECURITY.md does not list {name}"));
        assert!(
            row.contains(&shown),
            "SECURITY.md shows {name} without {shown}: {row}"
        );
    }
}
