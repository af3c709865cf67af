//! The OpenAPI 3.1 description of every route, served at `GET /openapi.json`.
//!
//! Built from two pieces of data: the action catalogue (which routes exist, and what each one
//! needs: its action and dependencies, shown as `x-stratus-authorization`) and
//! `data/openapi.json` (each operation's request body, query parameters and success responses).
//! A test holds the two to the same set of routes; the catalogue is held to the router by
//! another, so the description covers exactly what is served. Every operation's `default`
//! response is its API's error body.

use crate::error::ApiKind;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use stratus_iam::{Catalogue, Entry};

const OPERATIONS: &str = include_str!("../data/openapi.json");

/// The operations of the data file, by `METHOD path` (catalogue paths).
pub fn operations() -> Map<String, Value> {
    serde_json::from_str::<Value>(OPERATIONS)
        .ok()
        .and_then(|v| v.get("operations").and_then(Value::as_object).cloned())
        .unwrap_or_default()
}

/// The path clients use for a catalogue path: the compute and volume APIs take the project from
/// the token when the URL leaves it out, so the description does (a project in the URL must be
/// the token's anyway).
pub fn public_path(path: &str) -> String {
    path.replacen("/compute/v2.1/{project_id}", "/compute/v2.1", 1)
        .replacen("/volume/v3/{project_id}", "/volume/v3", 1)
}

/// The name of the error body schema of the API serving `path`.
fn error_schema_of(path: &str) -> &'static str {
    match crate::api_of(path) {
        ApiKind::Image => "GlanceError",
        ApiKind::Compute | ApiKind::Volume => "NovaFault",
        ApiKind::Identity => "KeystoneError",
        ApiKind::Ims | ApiKind::Ecs => "HuaweiError",
    }
}

fn error_schemas() -> Value {
    let text = json!({"type": "string"});
    json!({
        "KeystoneError": {"type": "object", "required": ["error"], "properties": {
            "error": {"type": "object", "required": ["code", "title", "message"], "properties": {
                "code": {"type": "integer"}, "title": text, "message": text}}}},
        "GlanceError": {"type": "object", "required": ["code", "title", "message"], "properties": {
            "code": text, "title": text, "message": text}},
        "NovaFault": {"type": "object", "minProperties": 1, "maxProperties": 1,
            "additionalProperties": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "integer"}, "message": text}}},
        "HuaweiError": {"type": "object", "required": ["error"], "properties": {
            "error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": text, "message": text}}}},
    })
}

/// A success response of the data file: `null` (no body), `{"key": k, "array": bool}` (an object
/// holding `k`), `{"schema": s}` or `{"media": type}` (a download).
fn response(spec: &Value) -> Value {
    let json_body = |schema: Value| json!({"description": "", "content": {"application/json": {"schema": schema}}});
    match spec {
        Value::Null => json!({"description": "no body"}),
        s if s.get("media").is_some() => {
            let media = s["media"].as_str().unwrap_or("application/octet-stream");
            json!({"description": "", "content": {media: {"schema": {"type": "string"}}}})
        }
        s if s.get("schema").is_some() => json_body(s["schema"].clone()),
        s => {
            let key = s["key"].as_str().unwrap_or("");
            let inner = if s["array"].as_bool() == Some(true) {
                json!({"type": "array"})
            } else {
                json!({"type": "object"})
            };
            json_body(json!({"type": "object", "required": [key], "properties": {key: inner}}))
        }
    }
}

fn parameters(path: &str, op: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            json!({"name": name, "in": "path", "required": true,
                   "schema": {"type": "string", "minLength": 1}})
        })
        .collect();
    if let Some(q) = op.get("query").and_then(Value::as_object) {
        for (name, schema) in q {
            out.push(json!({"name": name, "in": "query", "required": false, "schema": schema}));
        }
    }
    if path.starts_with("/compute/") {
        out.push(
            json!({"name": "OpenStack-API-Version", "in": "header", "required": false,
            "description": "The compute microversion, `compute 2.1` to `compute 2.47`.",
            "schema": {"type": "string"}}),
        );
    }
    out
}

fn request_body(key: &str, op: &Value, entries: &[&Entry]) -> Option<Value> {
    if key == "PATCH /image/v2/images/{image_id}" {
        let patch = json!({"type": "array", "maxItems": 1000, "items": {"type": "object",
            "required": ["op", "path"], "properties": {
                "op": {"enum": ["add", "replace", "remove"]}, "path": {"type": "string"},
                "value": {}}}});
        return Some(json!({"required": true, "content": {
            "application/openstack-images-v2.1-json-patch": {"schema": patch}}}));
    }
    if key.ends_with("/file") && key.starts_with("PUT") || key.ends_with("/stage") {
        return Some(json!({"required": true, "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}));
    }
    if let Some(actions) = op.get("actions").and_then(Value::as_object) {
        let one_of: Vec<Value> = entries
            .iter()
            .filter_map(|e| e.body_key.as_deref())
            .map(|k| {
                let inner = actions.get(k).cloned().unwrap_or(json!({}));
                json!({"type": "object", "required": [k], "additionalProperties": false,
                       "properties": {k: inner}})
            })
            .collect();
        return Some(json!({"required": true, "content": {
            "application/json": {"schema": {"oneOf": one_of}}}}));
    }
    op.get("body").map(
        |schema| json!({"required": true, "content": {"application/json": {"schema": schema}}}),
    )
}

/// The whole description, with `server` as its one server URL.
pub fn document(catalogue: &Catalogue, server: &str) -> Value {
    let ops = operations();
    let mut grouped: BTreeMap<(String, String), Vec<&Entry>> = BTreeMap::new();
    for e in catalogue.entries() {
        grouped
            .entry((e.path.clone(), e.method.clone()))
            .or_default()
            .push(e);
    }
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for ((path, method), entries) in &grouped {
        let key = format!("{method} {path}");
        let op = ops.get(&key).cloned().unwrap_or(Value::Null);
        let public = public_path(path);
        let mut responses: Map<String, Value> = op
            .get("responses")
            .and_then(Value::as_object)
            .map(|r| r.iter().map(|(c, s)| (c.clone(), response(s))).collect())
            .unwrap_or_default();
        responses.insert(
            "default".into(),
            json!({"description": "an error, in this API's format", "content": {
                "application/json": {"schema": {"$ref":
                    format!("#/components/schemas/{}", error_schema_of(path))}}}}),
        );
        let authorization: Vec<Value> = entries
            .iter()
            .map(|e| {
                json!({"body_key": e.body_key, "action": e.action,
                       "dependencies": e.dependencies, "public": e.public})
            })
            .collect();
        let mut operation = json!({
            "operationId": key,
            "summary": key,
            "parameters": parameters(&public, &op),
            "responses": responses,
            "x-stratus-authorization": authorization,
        });
        if entries.iter().all(|e| e.public) {
            operation["security"] = json!([]);
        }
        if let Some(body) = request_body(&key, &op, entries) {
            operation["requestBody"] = body;
        }
        paths
            .entry(public)
            .or_default()
            .insert(method.to_ascii_lowercase(), operation);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "stratus", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Identity, IAM, compute, block storage and images, in the OpenStack wire formats."},
        "servers": [{"url": server}],
        "security": [{"token": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}},
            "schemas": error_schemas(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data describes exactly the catalogue's routes (and through it, the router's): no
    /// route without a description, no description of a route that is not served.
    #[test]
    fn every_catalogue_route_is_described_and_nothing_else() {
        let cat = Catalogue::shipped().unwrap();
        let ops = operations();
        let mut routes: Vec<String> = cat
            .entries()
            .iter()
            .map(|e| format!("{} {}", e.method, e.path))
            .collect();
        routes.sort();
        routes.dedup();
        let mut described: Vec<String> = ops.keys().cloned().collect();
        described.sort();
        assert_eq!(routes, described);
        for e in cat.entries() {
            let op = &ops[&format!("{} {}", e.method, e.path)];
            assert!(
                op.get("responses").is_some(),
                "{} has no responses",
                e.key()
            );
            if let Some(k) = &e.body_key {
                assert!(
                    op["actions"].get(k).is_some(),
                    "{} has no body schema",
                    e.key()
                );
            }
        }
    }

    #[test]
    fn the_document_is_openapi_3_1() {
        let cat = Catalogue::shipped().unwrap();
        let doc = document(&cat, "http://127.0.0.1:8080");
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        let n: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(n, operations().len());
        assert!(paths.contains_key("/compute/v2.1/servers/{server_id}/action"));
        let action = &paths["/compute/v2.1/servers/{server_id}/action"]["post"];
        let variants = action["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
            .as_array()
            .unwrap();
        assert!(variants.iter().any(|v| v["required"][0] == "createImage"));
    }
}
