//! Test harness: a real stratus server on a random loopback port, on a fresh SQLite data dir or
//! a fresh PostgreSQL database, driven over real HTTP.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;
use stratus::config::Config;

/// Which metadata store a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The base URL of the PostgreSQL server tests create databases on, if configured.
pub fn postgres_base() -> Option<String> {
    std::env::var("STRATUS_TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Creates a fresh, uniquely named database and returns its URL.
pub async fn fresh_postgres_db(base: &str) -> (String, String) {
    sqlx::any::install_default_drivers();
    let name = format!("stratus_t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::AnyConnection::connect(base)
        .await
        .expect("connect to STRATUS_TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    conn.close().await.ok();
    let (prefix, _) = base.rsplit_once('/').expect("database URL has a path");
    (format!("{prefix}/{name}"), name)
}

pub async fn drop_postgres_db(base: &str, name: &str) {
    if let Ok(mut conn) = sqlx::AnyConnection::connect(base).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
        conn.close().await.ok();
    }
}

pub struct TestCloud {
    pub url: String,
    pub admin_password: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    running: Option<stratus::Running>,
    pg: Option<(String, String)>,
    pub config: Config,
}

impl TestCloud {
    /// Starts a server, or returns `None` for PostgreSQL when no test database is configured.
    pub async fn start(backend: Backend) -> Option<TestCloud> {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
    ) -> Option<TestCloud> {
        // The server's log, when STRATUS_LOG asks for it (a failing test shows it).
        if let Ok(filter) = std::env::var("STRATUS_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::with_data_dir(dir.path().join("data"));
        config.listen = "127.0.0.1:0".into();
        // Guests only where a test asks for them (`guests.rs`).
        config.driver = stratus::config::DriverKind::None;
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let Some(base) = postgres_base() else {
                    eprintln!(
                        "STRATUS_TEST_DATABASE_URL is not set: skipping the PostgreSQL variant"
                    );
                    return None;
                };
                let (url, name) = fresh_postgres_db(&base).await;
                config.database_url = Some(url);
                Some((base, name))
            }
        };
        tweak(&mut config);
        let running = stratus::start(&config, std::future::pending())
            .await
            .expect("server starts");
        let admin_password = running
            .admin_password
            .clone()
            .expect("first start makes an admin password");
        Some(TestCloud {
            url: running.public_url.clone(),
            admin_password,
            http: reqwest::Client::new(),
            dir,
            running: Some(running),
            pg,
            config,
        })
    }

    /// Stops the server and starts it again on the same data dir and store (its guests keep
    /// running in between).
    pub async fn restart(&mut self) {
        self.restart_with(|_| {}).await;
    }

    /// Stops the server, runs `between` (which may change its configuration), starts it again.
    pub async fn restart_with(&mut self, between: impl FnOnce(&mut stratus::config::Config)) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.expect("clean shutdown");
        }
        between(&mut self.config);
        let running = stratus::start(&self.config, std::future::pending())
            .await
            .expect("server starts again");
        self.url = running.public_url.clone();
        self.running = Some(running);
    }

    /// Starts another node on the same PostgreSQL database (stateless scale-out); `None` on SQLite.
    pub async fn second_node(&self) -> Option<stratus::Running> {
        self.pg.as_ref()?;
        let mut cfg = self.config.clone();
        cfg.data_dir = self.dir.path().join("node2");
        // Nodes of one store share the storage dir (image data, disks, the credential key).
        cfg.storage_dir = Some(self.config.storage());
        Some(
            stratus::start(&cfg, std::future::pending())
                .await
                .expect("second node starts"),
        )
    }

    /// The URL of Huawei's endpoint `name` (`iam`, `ecs`, `ims`, `evs`).
    pub fn huawei_url(&self, name: &str) -> String {
        let r = self.running.as_ref().expect("running");
        r.huawei
            .iter()
            .find(|(e, _)| e.name() == name)
            .map(|(_, url)| url.clone())
            .unwrap_or_else(|| panic!("no Huawei endpoint {name}"))
    }

    /// The router the server serves, for requests handed to it without a socket.
    pub fn router(&self) -> axum::Router {
        self.running.as_ref().expect("running").app.clone()
    }

    pub fn store(&self) -> &stratus_store::Store {
        &self.running.as_ref().expect("running").store
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.expect("clean shutdown");
        }
        if let Some((base, name)) = self.pg.take() {
            drop_postgres_db(&base, &name).await;
        }
    }

    /// Issues a password token; returns (status, token header, body).
    pub async fn auth(&self, body: Value) -> (StatusCode, Option<String>, Value) {
        let r = self
            .http
            .post(format!("{}/identity/v3/auth/tokens", self.url))
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status();
        let token = r
            .headers()
            .get("x-subject-token")
            .map(|v| v.to_str().expect("ascii").to_string());
        let body = r.json().await.unwrap_or(Value::Null);
        (status, token, body)
    }

    pub async fn token_for(&self, user: &str, password: &str, project: Option<&str>) -> String {
        let (status, token, body) = self.auth(password_auth(user, password, project)).await;
        assert_eq!(status, StatusCode::CREATED, "auth as {user}: {body}");
        token.expect("X-Subject-Token")
    }

    pub async fn admin_token(&self) -> String {
        let pw = self.admin_password.clone();
        self.token_for("admin", &pw, Some("admin")).await
    }

    /// Sends a request with an optional token and JSON body; returns status, headers and body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.call_mv(method, path, token, "", body).await
    }

    /// [`TestCloud::call`] at compute microversion `mv` ("" sends no version header). A body
    /// that is not JSON comes back as a string, an empty one as `null`.
    pub async fn call_mv(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        mv: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.request(method, format!("{}{}", self.url, path));
        if let Some(t) = token {
            req = req.header("X-Auth-Token", t);
        }
        if !mv.is_empty() {
            req = req.header("OpenStack-API-Version", format!("compute {mv}"));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, headers, body)
    }

    /// Requests at compute microversion `mv` through the short forms of [`Api`].
    pub fn mv<'a>(&'a self, mv: &'a str) -> Api<'a> {
        Api { cloud: self, mv }
    }

    /// `GET path` with token `t`: status and body.
    pub async fn get(&self, t: &str, path: &str) -> (StatusCode, Value) {
        self.mv("").get(t, path).await
    }

    /// `HEAD path` with token `t`.
    pub async fn head(&self, t: &str, path: &str) -> (StatusCode, Value) {
        self.mv("").send(Method::HEAD, t, path, None).await
    }

    /// `DELETE path` with token `t`.
    pub async fn delete(&self, t: &str, path: &str) -> (StatusCode, Value) {
        self.mv("").delete(t, path).await
    }

    /// `POST path` with token `t` and a JSON body.
    pub async fn post(&self, t: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.mv("").post(t, path, body).await
    }

    /// `PUT path` with token `t` and a JSON body.
    pub async fn put(&self, t: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.mv("").put(t, path, body).await
    }

    /// Creates a user (as admin) and returns its id.
    pub async fn create_user(&self, admin: &str, name: &str, password: &str) -> String {
        let (s, b) = self
            .post(
                admin,
                "/identity/v3/users",
                json!({"user": {"name": name, "password": password}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["user"]["id"].as_str().expect("id").to_string()
    }
}

pub fn password_auth(user: &str, password: &str, project: Option<&str>) -> Value {
    let mut auth = json!({
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": "Default"}, "password": password}}}
    });
    if let Some(p) = project {
        auth["scope"] = json!({"project": {"name": p, "domain": {"id": "default"}}});
    }
    json!({ "auth": auth })
}

/// Asserts a Keystone error body with the given status.
pub fn assert_keystone_error(status: StatusCode, body: &Value, expected: StatusCode) {
    assert_eq!(status, expected, "body: {body}");
    assert_eq!(
        body["error"]["code"],
        json!(expected.as_u16()),
        "body: {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "body: {body}"
    );
    assert!(body["error"]["title"].as_str().is_some(), "body: {body}");
}

/// Runs `async fn $name(c: &TestCloud)` as two tests: on SQLite and, when configured, on
/// PostgreSQL.
macro_rules! on_both_stores {
    ($name:ident) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(c) = TestCloud::start(Backend::Sqlite).await {
                    super::$name(&c).await;
                    c.stop().await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(c) = TestCloud::start(Backend::Postgres).await {
                    super::$name(&c).await;
                    c.stop().await;
                }
            }
        }
    };
}

impl TestCloud {
    /// The id of a policy (role) by its display name or name.
    pub async fn role_id(&self, admin: &str, name: &str) -> String {
        let (s, b) = self.get(admin, "/identity/v3/roles").await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["roles"]
            .as_array()
            .expect("roles")
            .iter()
            .find(|r| r["display_name"] == name || r["name"] == name)
            .unwrap_or_else(|| panic!("no policy {name}"))["id"]
            .as_str()
            .expect("id")
            .to_string()
    }

    pub async fn project_id(&self, admin: &str, name: &str) -> String {
        let (_, b) = self
            .get(admin, &format!("/identity/v3/projects?name={name}"))
            .await;
        b["projects"][0]["id"]
            .as_str()
            .expect("project")
            .to_string()
    }

    /// Creates a group holding `user_id` and returns its id.
    pub async fn group_with(&self, admin: &str, name: &str, user_id: &str) -> String {
        let (s, b) = self
            .post(
                admin,
                "/identity/v3/groups",
                json!({"group": {"name": name}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let gid = b["group"]["id"].as_str().expect("id").to_string();
        let (s, _, b) = self
            .call(
                Method::PUT,
                &format!("/identity/v3/groups/{gid}/users/{user_id}"),
                Some(admin),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
        gid
    }

    /// Grants `role` to group `gid` on project `project`.
    pub async fn grant_project(&self, admin: &str, project: &str, gid: &str, role: &str) {
        let path = format!("/identity/v3/projects/{project}/groups/{gid}/roles/{role}");
        self.grant(admin, &path).await
    }

    /// Grants a policy to a group at `path_prefix/{role_id}[suffix]`.
    pub async fn grant(&self, admin: &str, path: &str) {
        let (s, _, b) = self.call(Method::PUT, path, Some(admin), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "PUT {path}: {b}");
    }

    /// Creates a custom policy and returns its id.
    pub async fn custom_policy(&self, admin: &str, name: &str, policy: Value) -> String {
        let (s, b) = self
            .post(
                admin,
                "/identity/v3.0/OS-ROLE/roles",
                json!({"role": {"display_name": name, "type": "XA", "policy": policy}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["role"]["id"].as_str().expect("id").to_string()
    }
}

impl TestCloud {
    /// Lets user `uid` hold tokens of `project` without allowing it anything: a grant of a
    /// policy that only denies an action no test uses (a token needs a grant on its project).
    pub async fn project_member(&self, admin: &str, uid: &str, project: &str) {
        let policy = match self.get(admin, "/identity/v3.0/OS-ROLE/roles").await.1["roles"]
            .as_array()
            .and_then(|r| {
                r.iter()
                    .find(|r| r["display_name"] == "member only")
                    .cloned()
            }) {
            Some(r) => r["id"].as_str().expect("id").to_string(),
            None => {
                self.custom_policy(
                    admin,
                    "member only",
                    json!({"Version": "1.1", "Statement": [
                        {"Effect": "Deny", "Action": ["ims:quotas:get"]}]}),
                )
                .await
            }
        };
        let gid = self
            .group_with(admin, &format!("member-{uid}-{project}"), uid)
            .await;
        self.grant_project(admin, project, &gid, &policy).await;
    }
}

impl TestCloud {
    /// A token of the administrator scoped to `project` (by name).
    pub async fn project_token(&self, project: &str) -> String {
        let pw = self.admin_password.clone();
        self.token_for("admin", &pw, Some(project)).await
    }

    /// Creates a qcow2 image of 32 MiB whose first 64 KiB are `fill`, uploads it and returns its
    /// id and SHA-512.
    pub async fn upload_filled_image(&self, t: &str, name: &str, fill: u8) -> (String, String) {
        let body = json!({"name": name, "disk_format": "qcow2", "container_format": "bare"});
        let id = self.upload_image(t, body, filled_qcow2(fill)).await;
        let (_, b) = self.get(t, &format!("/image/v2/images/{id}")).await;
        let digest = b["os_hash_value"].as_str().expect("digest").to_string();
        (id, digest)
    }

    /// Creates the image `body` describes and uploads `data` as its data; returns its id.
    pub async fn upload_image(&self, t: &str, body: Value, data: Vec<u8>) -> String {
        let (s, b) = self.post(t, "/image/v2/images", body).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let id = b["id"].as_str().expect("id").to_string();
        let r = self
            .http
            .put(format!("{}/image/v2/images/{id}/file", self.url))
            .header("X-Auth-Token", t)
            .header("Content-Type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        id
    }

    /// Waits until server `id` has status `want` (panics on ERROR or after a minute).
    pub async fn wait_server(&self, t: &str, id: &str, want: &str) -> Value {
        for _ in 0..600 {
            let (_, b) = self.get(t, &format!("/compute/v2.1/servers/{id}")).await;
            if b["server"]["status"] == want {
                return b["server"].clone();
            }
            assert_ne!(b["server"]["status"], "ERROR", "{b}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("server {id} never became {want}");
    }

    /// Waits until the volume's status is `want`.
    pub async fn wait_volume(&self, t: &str, id: &str, want: &str) -> Value {
        for _ in 0..600 {
            let (_, b) = self.get(t, &format!("/volume/v3/volumes/{id}")).await;
            if b["volume"]["status"] == want {
                return b["volume"].clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("volume {id} never became {want}");
    }

    /// Waits until the server has no task in progress (a task ends after the work it stands
    /// for: createImage's image is active before the server's `image_uploading` clears).
    pub async fn wait_no_task(&self, t: &str, id: &str) -> Value {
        for _ in 0..600 {
            let (_, b) = self.get(t, &format!("/compute/v2.1/servers/{id}")).await;
            if b["server"]["OS-EXT-STS:task_state"].is_null() {
                return b["server"].clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("server {id} never finished its task");
    }

    /// Waits until `GET path` answers 404.
    pub async fn wait_gone(&self, t: &str, path: &str) {
        for _ in 0..600 {
            if self.get(t, path).await.0 == StatusCode::NOT_FOUND {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{path} is still there");
    }

    /// The names of the files in the disks' image cache.
    pub fn cached_images(&self) -> Vec<String> {
        match std::fs::read_dir(self.config.storage().join("disks/cache")) {
            Ok(d) => d
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl TestCloud {
    /// The writable layer of a volume, from the store.
    pub async fn volume_disk(&self, id: &str) -> std::path::PathBuf {
        let v = stratus_store::volume_get(self.store().pool(), id)
            .await
            .expect("store")
            .expect("volume");
        self.config.storage().join("disks").join(v.disk)
    }
}

impl TestCloud {
    /// A new user of the demo project holding the named system policies and the given custom
    /// policy documents there; returns a token of it scoped to demo.
    pub async fn demo_member(&self, name: &str, system: &[&str], custom: &[Value]) -> String {
        let admin = self.admin_token().await;
        let uid = self.create_user(&admin, name, "pw").await;
        let gid = self.group_with(&admin, &format!("{name}-g"), &uid).await;
        let demo = self.project_id(&admin, "demo").await;
        let mut roles = Vec::new();
        for p in system {
            roles.push(self.role_id(&admin, p).await);
        }
        for (n, doc) in custom.iter().enumerate() {
            roles.push(
                self.custom_policy(&admin, &format!("{name}-{n}"), doc.clone())
                    .await,
            );
        }
        for role in roles {
            self.grant_project(&admin, &demo, &gid, &role).await;
        }
        self.token_for(name, "pw", Some("demo")).await
    }
}

/// The lists that show what a project holds: (path, key of the list in the body).
pub const HOLDINGS: [(&str, &str); 4] = [
    ("/compute/v2.1/servers", "servers"),
    ("/volume/v3/volumes", "volumes"),
    ("/volume/v3/snapshots", "snapshots"),
    ("/image/v2/images", "images"),
];

impl TestCloud {
    /// The length of each list, as the token's caller sees it (each must answer 200).
    pub async fn list_lengths(&self, t: &str, lists: &[(&str, &str)]) -> Vec<usize> {
        let mut n = Vec::new();
        for (path, key) in lists {
            let (s, b) = self.get(t, path).await;
            assert_eq!(s, StatusCode::OK, "{path}: {b}");
            n.push(b[*key].as_array().map_or(0, Vec::len));
        }
        n
    }
}

/// Short requests with a token at one compute microversion ("" sends none).
pub struct Api<'a> {
    cloud: &'a TestCloud,
    mv: &'a str,
}

impl Api<'_> {
    async fn send(
        &self,
        m: Method,
        t: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (s, _, b) = self.cloud.call_mv(m, path, Some(t), self.mv, body).await;
        (s, b)
    }

    pub async fn get(&self, t: &str, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, t, path, None).await
    }

    pub async fn delete(&self, t: &str, path: &str) -> (StatusCode, Value) {
        self.send(Method::DELETE, t, path, None).await
    }

    pub async fn post(&self, t: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, t, path, Some(body)).await
    }

    pub async fn put(&self, t: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::PUT, t, path, Some(body)).await
    }
}

impl Drop for TestCloud {
    /// Guests outlive their server by design; a test's do not outlive the test, failed or not.
    fn drop(&mut self) {
        kill_guests(&self.config.data_dir.join("guests"));
    }
}

/// A 32 MiB qcow2 whose first 64 KiB are `fill` bytes.
pub fn filled_qcow2(fill: u8) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("d.qcow2");
    let ok = |o: std::process::Output| assert!(o.status.success(), "{o:?}");
    ok(std::process::Command::new("qemu-img")
        .args(["create", "-f", "qcow2"])
        .arg(&path)
        .arg("32M")
        .output()
        .expect("qemu-img"));
    ok(std::process::Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", &format!("write -P {fill} 0 64k")])
        .arg(&path)
        .output()
        .expect("qemu-io"));
    std::fs::read(&path).expect("image")
}

/// Kills the QEMU processes of the guests kept under `dir` (`<id>/qemu.pid`).
pub fn kill_guests(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let pid = std::fs::read_to_string(e.path().join("qemu.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        let Some(pid) = pid.filter(|p| *p > 0) else {
            continue;
        };
        // Only while the pid is still that guest's QEMU (not a reused pid).
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let id = e.file_name().to_string_lossy().into_owned();
        if String::from_utf8_lossy(&cmdline).contains(&id) {
            // SAFETY: the pid is the guest's QEMU, started by this test's server.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}
