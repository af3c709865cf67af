//! The `quota_set` bodies that Nova's and Cinder's `os-quota-sets` share: limits, usage and
//! the request's `quota_set` object.

use crate::error::{Api, ApiError};
use axum::Json;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use stratus_services::quotas::Usage;

/// `{"quota_set": {name: limit, ..., "id": project}}` (no `id` where `id` is `None`).
pub fn limits(id: Option<&str>, limits: BTreeMap<String, i64>) -> Json<Value> {
    body(id, limits.into_iter().map(|(k, v)| (k, json!(v))))
}

/// `{"quota_set": {name: {"in_use", "limit", "reserved": 0}, ..., "id": project}}`.
pub fn usage(id: &str, usage: BTreeMap<String, Usage>) -> Json<Value> {
    body(
        Some(id),
        usage.into_iter().map(|(k, u)| {
            let v = json!({"in_use": u.in_use, "limit": u.limit, "reserved": 0});
            (k, v)
        }),
    )
}

fn body(id: Option<&str>, items: impl Iterator<Item = (String, Value)>) -> Json<Value> {
    let mut set: Map<String, Value> = items.collect();
    if let Some(id) = id {
        set.insert("id".into(), json!(id));
    }
    Json(json!({ "quota_set": set }))
}

/// The request body's `quota_set` object.
pub fn requested<A: Api>(body: &Value) -> Result<Map<String, Value>, ApiError<A>> {
    body.get("quota_set")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| ApiError::bad_request("'quota_set' is a required property"))
}
