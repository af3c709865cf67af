//! `stratus policy simulate`: asks a running cloud why a call would be allowed or denied.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// How to reach and authenticate to the cloud.
pub struct Connection {
    pub auth_url: String,
    pub username: String,
    pub password: String,
    pub project: String,
    pub user_domain: String,
}

pub struct Simulate {
    pub user: String,
    pub project: Option<String>,
    pub enterprise_project: Option<String>,
    pub actions: Vec<String>,
    /// `METHOD PATH [BODY_KEY]`
    pub route: Option<String>,
    pub context: Vec<(String, String)>,
    pub json: bool,
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn login(c: &Connection) -> Result<Client> {
        let http = reqwest::Client::new();
        let base = c
            .auth_url
            .trim_end_matches('/')
            .trim_end_matches("/v3")
            .to_string();
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": c.username, "domain": {"name": c.user_domain}, "password": c.password}}},
            "scope": {"project": {"name": c.project, "domain": {"name": c.user_domain}}}}});
        let r = http
            .post(format!("{base}/v3/auth/tokens?nocatalog"))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"))?;
        if !r.status().is_success() {
            bail!(
                "authentication as {} failed: {}",
                c.username,
                r.text().await.unwrap_or_default()
            );
        }
        let token = r
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .context("no X-Subject-Token in the response")?
            .to_string();
        Ok(Client { http, base, token })
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("X-Auth-Token", &self.token)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "GET {path}: {}",
                v["error"]["message"].as_str().unwrap_or(status.as_str())
            );
        }
        Ok(v)
    }

    /// An id, or the id of the one item whose name it is.
    async fn resolve(&self, collection: &str, key: &str, name_or_id: &str) -> Result<String> {
        if let Ok(v) = self.get(&format!("/v3/{collection}/{name_or_id}")).await {
            if let Some(id) = v[key]["id"].as_str() {
                return Ok(id.to_string());
            }
        }
        let v = self
            .get(&format!("/v3/{collection}?name={name_or_id}"))
            .await?;
        match v[collection].as_array().map(Vec::as_slice) {
            Some([one]) => Ok(one["id"].as_str().unwrap_or_default().to_string()),
            _ => bail!("no {key} named {name_or_id:?}"),
        }
    }
}

pub async fn simulate(conn: Connection, s: Simulate) -> Result<bool> {
    let client = Client::login(&conn).await?;
    let user_id = client.resolve("users", "user", &s.user).await?;
    let mut body = json!({"user_id": user_id});
    if let Some(p) = &s.project {
        body["project_id"] = json!(client.resolve("projects", "project", p).await?);
    }
    if let Some(ep) = &s.enterprise_project {
        body["enterprise_project_id"] = json!(ep);
    }
    match (&s.route, s.actions.is_empty()) {
        (Some(route), true) => {
            let parts: Vec<&str> = route.split_whitespace().collect();
            let (method, path, key) = match parts.as_slice() {
                [m, p] => (m, p, None),
                [m, p, k] => (m, p, Some(*k)),
                _ => bail!("--route takes \"METHOD PATH [BODY_KEY]\""),
            };
            body["route"] = json!({"method": method, "path": path, "body_key": key});
        }
        (None, false) => body["actions"] = json!(s.actions),
        _ => bail!("give either --action (one or more) or --route"),
    }
    if !s.context.is_empty() {
        body["context"] = s
            .context
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
    }
    let r = client
        .http
        .post(format!("{}/v3/stratus/policy-simulate", client.base))
        .header("X-Auth-Token", &client.token)
        .json(&json!({ "simulate": body }))
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "simulation refused ({status}): {}",
            v["error"]["message"].as_str().unwrap_or_default()
        );
    }
    if s.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("decision: {}", v["decision"].as_str().unwrap_or_default());
        for r in v["results"].as_array().into_iter().flatten() {
            let matched: Vec<String> = r["matched"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    format!(
                        "{} ({}) statement {}",
                        m["policy_name"].as_str().unwrap_or(""),
                        m["policy_id"].as_str().unwrap_or(""),
                        m["statement"]
                    )
                })
                .collect();
            println!(
                "  {:<28} {:<13} {:<18} {}",
                r["action"].as_str().unwrap_or(""),
                r["decision"].as_str().unwrap_or(""),
                r["scope"].as_str().unwrap_or(""),
                matched.join("; ")
            );
        }
    }
    Ok(v["decision"] == "allowed")
}
