//! JSON schemas of image and member documents (`/v2/schemas/...`), kept as data.

use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;
use std::sync::OnceLock;

const SCHEMAS: &str = include_str!("../../data/image-schemas.json");

fn schema(name: &str) -> Result<Json<Value>, StatusCode> {
    static PARSED: OnceLock<Value> = OnceLock::new();
    let all = PARSED.get_or_init(|| serde_json::from_str(SCHEMAS).unwrap_or(Value::Null));
    all.get(name)
        .cloned()
        .map(Json)
        .ok_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub(super) async fn image() -> Result<Json<Value>, StatusCode> {
    schema("image")
}

pub(super) async fn images() -> Result<Json<Value>, StatusCode> {
    schema("images")
}

pub(super) async fn member() -> Result<Json<Value>, StatusCode> {
    schema("member")
}

pub(super) async fn members() -> Result<Json<Value>, StatusCode> {
    schema("members")
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_schema_parses() {
        let v: serde_json::Value = serde_json::from_str(super::SCHEMAS).unwrap();
        for name in ["image", "images", "member", "members"] {
            assert_eq!(v[name]["name"], name);
        }
    }
}
