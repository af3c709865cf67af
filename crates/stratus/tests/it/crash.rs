//! Crash harness for the sagas: `stratus serve` processes are killed with SIGKILL at every step
//! boundary of every saga kind (paused there by `STRATUS_SAGA_FAULTS=pause:...`) and at random
//! points of createImage's data copy, restarted, and the invariants checked once the saga settled:
//! every image is `active` or gone, no server has a task_state, and no volume snapshot, blob,
//! staging file, temporary file or disk file exists that no live object owns. Also: a failed undo
//! leaves a visible `stuck` saga (no crash loop) that `stratus saga retry` sends back to its undo,
//! and on PostgreSQL a second node finishes or undoes the saga of a killed node once its lease ran
//! out.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use stratus_services::demo::DEMO_IMAGE_ID;
use stratus_store::Store;

const BIN: &str = env!("CARGO_BIN_EXE_stratus");
/// Short leases so that takeovers and scans happen within a second.
const LEASE: &str = "1";

const IMAGE_BACKED: (&str, &[&str]) = (
    "create-image",
    &["reserve", "register", "flatten", "upload", "finish"],
);
const VOLUME_BACKED: (&str, &[&str]) = (
    "create-image-volumes",
    &["reserve", "register", "snapshot", "activate", "finish"],
);

struct Node {
    child: Child,
    url: String,
    data: PathBuf,
}

impl Node {
    fn kill(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One cloud's files and metadata store, across the processes that serve it.
struct Site {
    _dir: tempfile::TempDir,
    root: PathBuf,
    storage: PathBuf,
    db: Option<String>,
    pg: Option<(String, String)>,
    store: Option<Store>,
    /// The compute driver its nodes run (`none`, or `qemu` under TCG).
    driver: &'static str,
}

impl Site {
    async fn new(postgres: bool) -> Option<Site> {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let pg = if postgres {
            let Some(base) = postgres_base() else {
                eprintln!("STRATUS_TEST_DATABASE_URL is not set: skipping the PostgreSQL variant");
                return None;
            };
            let (url, name) = fresh_postgres_db(&base).await;
            Some((base, name, url))
        } else {
            None
        };
        Some(Site {
            storage: root.join("storage"),
            db: pg.as_ref().map(|p| p.2.clone()),
            pg: pg.map(|(b, n, _)| (b, n)),
            root,
            _dir: dir,
            store: None,
            driver: "none",
        })
    }

    fn data(&self, node: &str) -> PathBuf {
        self.root.join(node)
    }

    fn store_args(&self, node: &str) -> Vec<String> {
        let mut a = vec![
            "--data-dir".to_string(),
            self.data(node).display().to_string(),
        ];
        if let Some(db) = &self.db {
            a.extend(["--database-url".to_string(), db.clone()]);
        }
        a
    }

    /// Starts `stratus serve` for node `node` with fault rules `faults`.
    fn spawn(&self, node: &str, faults: &str) -> Node {
        let data = self.data(node);
        let _ = std::fs::remove_file(data.join("saga-paused"));
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .args(self.store_args(node))
            .args(["--listen", "127.0.0.1:0", "--storage-dir"])
            .arg(&self.storage)
            .env("STRATUS_SAGA_FAULTS", faults)
            .env("STRATUS_SAGA_LEASE_SECONDS", LEASE)
            .env("STRATUS_DRIVER", self.driver)
            .env("STRATUS_ACCEL", "tcg")
            .env("STRATUS_SHUTDOWN_TIMEOUT", "1")
            .env("STRATUS_GUEST_SYNC_INTERVAL", "1")
            .env("STRATUS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn stratus");
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        let prefix = format!("stratus {} listening on ", env!("CARGO_PKG_VERSION"));
        let url = loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).expect("read banner");
            assert!(n > 0, "stratus exited before listening");
            if let Some(u) = line.trim().strip_prefix(&prefix) {
                break u.to_string();
            }
        };
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = reader.read_to_string(&mut sink);
        });
        Node { child, url, data }
    }

    async fn store(&mut self) -> &Store {
        if self.store.is_none() {
            let url = match &self.db {
                Some(u) => u.clone(),
                None => format!(
                    "sqlite://{}?mode=rwc",
                    self.data("a").join("stratus.db").display()
                ),
            };
            self.store = Some(Store::open(&url).await.expect("open the store"));
        }
        self.store.as_ref().unwrap()
    }

    fn cli(&self, node: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new(BIN)
            .args(args)
            .args(self.store_args(node))
            .output()
            .expect("run stratus");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    async fn finish(mut self) {
        if let Some(s) = self.store.take() {
            s.close().await;
        }
        if let Some((base, name)) = self.pg.take() {
            drop_postgres_db(&base, &name).await;
        }
    }
}

impl Drop for Site {
    /// Guests outlive their server by design; a test's do not outlive the test, failed or not.
    fn drop(&mut self) {
        kill_guests(&self.data("a").join("guests"));
    }
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    async fn login(node: &Node) -> Api {
        let http = reqwest::Client::new();
        let pw = std::fs::read_to_string(node.data.join("admin-password")).unwrap_or_default();
        let pw = if pw.is_empty() {
            // A second node of a shared store has no password file: read the first node's.
            std::fs::read_to_string(node.data.parent().unwrap().join("a/admin-password")).unwrap()
        } else {
            pw
        };
        let r = http
            .post(format!("{}/identity/v3/auth/tokens", node.url))
            .json(&password_auth("admin", pw.trim(), Some("demo")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let token = r.headers()["x-subject-token"].to_str().unwrap().to_string();
        Api {
            http,
            url: node.url.clone(),
            token,
        }
    }

    fn at(&self, node: &Node) -> Api {
        Api {
            url: node.url.clone(),
            ..self.clone()
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.url, path))
            .header("X-Auth-Token", &self.token)
            .header("OpenStack-API-Version", "compute 2.47");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let s = r.status();
        let text = r.text().await.unwrap();
        (s, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn server(&self, id: &str) -> Value {
        self.call(Method::GET, &format!("/compute/v2.1/servers/{id}"), None)
            .await
            .1["server"]
            .clone()
    }

    /// Creates server `name` on image `image` and waits until it is ACTIVE; returns its id.
    async fn create_server(&self, name: &str, image: &str) -> String {
        let (s, b) = self
            .call(
                Method::POST,
                "/compute/v2.1/servers",
                Some(json!({"server": {
            "name": name, "imageRef": image, "flavorRef": "1", "networks": "none"}})),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        let id = b["server"]["id"].as_str().unwrap().to_string();
        self.wait_active(&id).await;
        id
    }

    async fn wait_active(&self, id: &str) {
        let until = Instant::now() + Duration::from_secs(60);
        while self.server(id).await["status"] != "ACTIVE" {
            assert!(Instant::now() < until, "server {id} never became ACTIVE");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn create_image_request(&self, server: &str, name: &str) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            &format!("/compute/v2.1/servers/{server}/action"),
            Some(json!({"createImage": {"name": name}})),
        )
        .await
    }

    /// The status of the server (`servers`) or volume (`volumes`) named `name`, or `gone`.
    async fn named(&self, what: &str, name: &str) -> String {
        let path = match what {
            "servers" => "/compute/v2.1/servers/detail",
            _ => "/volume/v3/volumes/detail",
        };
        let (s, b) = self.call(Method::GET, path, None).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b[what]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .map_or("gone".to_string(), |v| {
                v["status"].as_str().unwrap().to_string()
            })
    }

    /// Deletes the servers, then the volumes, whose names start with `prefix`.
    async fn remove_named(&self, prefix: &str) {
        for what in ["servers", "volumes"] {
            let (path, one) = match what {
                "servers" => ("/compute/v2.1/servers/detail", "/compute/v2.1/servers"),
                _ => ("/volume/v3/volumes/detail", "/volume/v3/volumes"),
            };
            let (_, b) = self.call(Method::GET, path, None).await;
            for v in b[what].as_array().unwrap() {
                if v["name"].as_str().is_some_and(|n| n.starts_with(prefix)) {
                    let id = v["id"].as_str().unwrap();
                    let (s, b) = self
                        .call(Method::DELETE, &format!("{one}/{id}"), None)
                        .await;
                    assert!(s.is_success(), "deleting {what} {id}: {s} {b}");
                }
            }
        }
    }

    async fn images(&self) -> Vec<Value> {
        let (s, b) = self
            .call(Method::GET, "/image/v2/images?limit=1000", None)
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["images"].as_array().unwrap().clone()
    }
}

/// An image-backed server with `mib` MiB written into its disk, and a server booted from two
/// volumes.
async fn servers(site: &Site, api: &Api, mib: u32) -> (String, String) {
    let s1 = api.create_server("s1", DEMO_IMAGE_ID).await;
    let out = Command::new(BIN)
        .args(["server", "disks", &s1, "--storage-dir"])
        .arg(&site.storage)
        .args(site.store_args("a"))
        .output()
        .unwrap();
    let disk = String::from_utf8(out.stdout).unwrap();
    let disk = disk.lines().next().expect("a root disk").to_string();
    let w = Command::new("qemu-io")
        .args([
            "-f",
            "qcow2",
            "-c",
            &format!("write -P 0x5a 1M {mib}M"),
            &disk,
        ])
        .output()
        .unwrap();
    assert!(w.status.success(), "{w:?}");

    let mut vols = Vec::new();
    for (size, image) in [(1, Some(DEMO_IMAGE_ID)), (1, None)] {
        let mut v = json!({"size": size, "name": format!("v{}", vols.len())});
        if let Some(i) = image {
            v["imageRef"] = json!(i);
        }
        let (s, b) = api
            .call(
                Method::POST,
                "/volume/v3/volumes",
                Some(json!({ "volume": v })),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        vols.push(b["volume"]["id"].as_str().unwrap().to_string());
    }
    let (s, b) = api.call(Method::POST, "/compute/v2.1/servers", Some(json!({"server": {
        "name": "s2", "flavorRef": "1", "networks": "none", "block_device_mapping_v2": [
            {"uuid": vols[0], "source_type": "volume", "destination_type": "volume", "boot_index": 0},
            {"uuid": vols[1], "source_type": "volume", "destination_type": "volume", "boot_index": 1}]}}))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let s2 = b["server"]["id"].as_str().unwrap().to_string();
    api.wait_active(&s2).await;
    (s1, s2)
}

/// Deletes the images the harness made and every snapshot (which stay when their image is
/// deleted), so that quotas do not run out between rounds.
async fn clean_up(api: &Api) {
    for i in api.images().await {
        if i["id"] != DEMO_IMAGE_ID {
            let (s, b) = api
                .call(
                    Method::DELETE,
                    &format!("/image/v2/images/{}", i["id"].as_str().unwrap()),
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
        }
    }
    let (_, snaps) = api.call(Method::GET, "/volume/v3/snapshots", None).await;
    for sn in snaps["snapshots"].as_array().unwrap() {
        let (s, b) = api
            .call(
                Method::DELETE,
                &format!("/volume/v3/snapshots/{}", sn["id"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    }
}

/// Waits until no saga is running or undoing.
async fn settle(site: &mut Site) {
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let live = stratus_store::saga_list(
            site.store().await.pool(),
            stratus_store::SagaState::LIVE,
            100,
        )
        .await
        .unwrap();
        if live.is_empty() {
            return;
        }
        assert!(
            Instant::now() < until,
            "sagas never settled: {:?}",
            live.iter()
                .map(|s| (&s.kind, &s.state, s.step))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                files_under(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

/// The invariants of SPEC §6 "Failure and crash", checked through the API, the store and the
/// files.
async fn check_invariants(site: &mut Site, api: &Api, servers: &[&str], when: &str) {
    // Every image active (or gone); an undone import leaves its image queued, with no data.
    let images = api.images().await;
    for i in &images {
        let undone_import = i["name"].as_str().is_some_and(|n| n.starts_with("import-"))
            && i["status"] == "queued"
            && i["size"].is_null();
        assert!(
            i["status"] == "active" || undone_import,
            "{when}: image {} is {}",
            i["id"],
            i["status"]
        );
    }
    let images: Vec<Value> = images
        .into_iter()
        .filter(|i| i["status"] == "active")
        .collect();
    // No task_state.
    for s in servers {
        let v = api.server(s).await;
        assert!(
            v["OS-EXT-STS:task_state"].is_null(),
            "{when}: server {s} has task_state {}",
            v["OS-EXT-STS:task_state"]
        );
    }
    // Every snapshot owned by an image's block_device_mapping (but those the harness took).
    let mut owned = HashSet::new();
    for i in &images {
        if let Some(t) = i["block_device_mapping"].as_str() {
            let bdm: Value = serde_json::from_str(t).unwrap();
            for m in bdm.as_array().unwrap() {
                owned.insert(m["snapshot_id"].as_str().unwrap().to_string());
            }
        }
    }
    let (_, snaps) = api.call(Method::GET, "/volume/v3/snapshots", None).await;
    for s in snaps["snapshots"].as_array().unwrap() {
        let id = s["id"].as_str().unwrap();
        if s["name"].as_str().is_some_and(|n| n.starts_with("snap-")) {
            // Taken by the harness itself, not by an image saga.
            continue;
        }
        assert!(
            owned.contains(id),
            "{when}: snapshot {id} is owned by no image"
        );
    }
    // Blobs: one per active image, no staging files.
    let ids: HashSet<String> = images
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    let mut blobs = Vec::new();
    files_under(&site.storage.join("images"), &mut blobs);
    for b in &blobs {
        let name = b.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            ids.contains(&name),
            "{when}: blob {name} belongs to no active image"
        );
    }
    // No temporary files.
    let mut tmp = Vec::new();
    files_under(&site.storage.join("disks/tmp"), &mut tmp);
    assert!(tmp.is_empty(), "{when}: temporary files left: {tmp:?}");
    // Every disk file is a layer of the store, and every layer's file exists.
    let rows = sqlx::query_scalar::<_, String>("SELECT path FROM disk_layers")
        .fetch_all(site.store().await.pool())
        .await
        .unwrap();
    let layers: HashSet<String> = rows.into_iter().collect();
    let disks = site.storage.join("disks");
    let mut files = Vec::new();
    files_under(&disks, &mut files);
    let files: HashSet<String> = files
        .iter()
        .map(|f| f.strip_prefix(&disks).unwrap().display().to_string())
        .collect();
    assert_eq!(files, layers, "{when}: disk files and layers differ");
    // No layer is held for a saga that ended.
    let pinned: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM disk_layers WHERE pinned_by IS NOT NULL")
            .fetch_one(site.store().await.pool())
            .await
            .unwrap();
    assert_eq!(pinned, 0, "{when}: layers still pinned");
}

/// Whether the node paused (within a minute) at its fault rule.
async fn paused(node: &mut Node) -> bool {
    let f = node.data.join("saga-paused");
    let until = Instant::now() + Duration::from_secs(60);
    while !f.exists() {
        if !node.alive() || Instant::now() > until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

async fn wait_for_pause(node: &mut Node, what: &str) {
    assert!(
        paused(node).await,
        "{what}: never paused (or the server died)"
    );
}

/// Kills the node at each step boundary of each flow and checks the invariants after a restart.
async fn kill_at_every_boundary(site: &mut Site) {
    let mut node = site.spawn("a", "");
    let api = Api::login(&node).await;
    let (s1, s2) = servers(site, &api, 128).await;
    let mut outcomes = Vec::new();
    for ((kind, steps), server) in [(IMAGE_BACKED, &s1), (VOLUME_BACKED, &s2)] {
        for step in steps {
            for when in ["before", "after"] {
                let what = format!("{kind}.{step}.{when}");
                node.kill();
                node = site.spawn("a", &format!("pause:{what}"));
                let api = api.at(&node);
                let name = format!("img-{what}");
                // The request may never be answered (a pause before the 202): sent on the side.
                let request = {
                    let req = api
                        .http
                        .post(format!("{}/compute/v2.1/servers/{server}/action", api.url))
                        .header("X-Auth-Token", &api.token)
                        .json(&json!({"createImage": {"name": name}}));
                    tokio::spawn(async move { req.send().await.map(|r| r.status()) })
                };
                if !paused(&mut node).await {
                    let answer = request.await.unwrap();
                    let (ok, sagas) = site.cli("a", &["saga", "list"]);
                    panic!(
                        "{what}: never paused; the request got {answer:?}; sagas ({ok}):\n{sagas}"
                    );
                }
                node.kill();
                request.abort();
                node = site.spawn("a", "");
                let api = api.at(&node);
                settle(site).await;
                check_invariants(site, &api, &[&s1, &s2], &what).await;
                let kept = api
                    .images()
                    .await
                    .iter()
                    .any(|i| i["name"] == name.as_str());
                outcomes.push(format!(
                    "{what}: {}",
                    if kept {
                        "resumed, image active"
                    } else {
                        "undone, image gone"
                    }
                ));
                clean_up(&api).await;
            }
        }
    }
    println!("{}", outcomes.join("\n"));
    // Something resumed and something was undone is not required; but every boundary after the
    // image was registered ends with the image active (the saga resumes forward).
    assert!(outcomes
        .iter()
        .filter(|o| !o.contains(".reserve.") && !o.contains(".register.before"))
        .all(|o| o.ends_with("image active")));

    // Random points of the data copy (flattening or uploading 128 MiB).
    let mut api = api.at(&node);
    for (round, target) in [
        "image_snapshot",
        "image_uploading",
        "image_snapshot",
        "image_uploading",
    ]
    .into_iter()
    .enumerate()
    {
        let (s, b) = api
            .create_image_request(&s1, &format!("random-{round}"))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        let until = Instant::now() + Duration::from_secs(60);
        let phase = loop {
            let t = api.server(&s1).await["OS-EXT-STS:task_state"].clone();
            if t == target {
                break t;
            }
            assert!(Instant::now() < until, "the copy never started");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let delay = (uuid::Uuid::new_v4().as_u128() % 100) as u64;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        node.kill();
        println!("random kill {round}: {delay} ms into {phase}");
        node = site.spawn("a", "");
        api = api.at(&node);
        settle(site).await;
        check_invariants(site, &api, &[&s1, &s2], &format!("random kill {round}")).await;
        clean_up(&api).await;
    }

    // A failing undo: the saga is stuck and visible, the server keeps serving, a restart does not
    // retry it, an operator's retry finishes the undo.
    node.kill();
    node = site.spawn(
        "a",
        "fail:create-image.upload,fail-undo:create-image.register",
    );
    let api = api.at(&node);
    let (s, b) = api.create_image_request(&s1, "doomed").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let until = Instant::now() + Duration::from_secs(60);
    let stuck = loop {
        let l = stratus_store::saga_list(
            site.store().await.pool(),
            &[stratus_store::SagaState::Stuck],
            10,
        )
        .await
        .unwrap();
        if let Some(s) = l.into_iter().next() {
            break s;
        }
        assert!(Instant::now() < until, "the saga never got stuck");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(stuck
        .error
        .as_deref()
        .unwrap()
        .contains("undo of register failed"));
    assert!(node.alive());
    let (s, _) = api.call(Method::GET, "/compute/v2.1/flavors", None).await;
    assert_eq!(s, StatusCode::OK);
    let (ok, listed) = site.cli("a", &["saga", "list", "--state", "stuck"]);
    assert!(ok && listed.contains(&stuck.id), "{listed}");
    let (ok, shown) = site.cli("a", &["saga", "show", &stuck.id]);
    assert!(
        ok && shown.contains("undo_failed") && shown.contains("state:       stuck"),
        "{shown}"
    );
    node.kill();
    node = site.spawn("a", "");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = stratus_store::saga_get(site.store().await.pool(), &stuck.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        again.state,
        stratus_store::SagaState::Stuck,
        "a stuck saga is left for the operator"
    );
    let (ok, out) = site.cli("a", &["saga", "retry", &stuck.id]);
    assert!(ok, "{out}");
    settle(site).await;
    let done = stratus_store::saga_get(site.store().await.pool(), &stuck.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.state, stratus_store::SagaState::Undone);
    let api = api.at(&node);
    check_invariants(site, &api, &[&s1, &s2], "after retry").await;
    assert!(!api.images().await.iter().any(|i| i["name"] == "doomed"));
    let v = api.server(&s1).await;
    assert_eq!(v["status"], "ACTIVE");
    node.kill();
}

/// Runs a harness function on a SQLite site and on a PostgreSQL one (when configured).
macro_rules! on_both_sites {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let mut site = super::Site::new(false).await.unwrap();
                super::$name(&mut site).await;
                site.finish().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(mut site) = super::Site::new(true).await {
                    super::$name(&mut site).await;
                    site.finish().await;
                }
            }
        }
    };
}

on_both_sites!(kill_at_every_boundary);

/// The QEMU process of server `id`'s guest, and the disk copies (jobs and nodes) left in it.
async fn guest_of(site: &Site, id: &str) -> (Option<i32>, usize) {
    let dir = site.data("a").join("guests").join(id);
    let pid = std::fs::read_to_string(dir.join("qemu.pid"))
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
    let Ok(mut q) = stratus_driver::qmp::Qmp::connect(&dir.join("qmp.sock")).await else {
        return (pid, 0);
    };
    let mut left = 0;
    for cmd in ["query-jobs", "query-named-block-nodes"] {
        let v = q.execute(cmd, None).await.unwrap();
        left += v
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| {
                let name = j["id"].as_str().or(j["node-name"].as_str()).unwrap_or("");
                name.starts_with("stratus-backup-")
            })
            .count();
    }
    (pid, left)
}

/// createImage of a running guest (its disk copied by QEMU while it runs), killed at every
/// step boundary and at random points of the copy: the guest runs on in the same process, no
/// copy job or target node is left in it, and the invariants hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_a_running_guests_create_image() {
    let mut site = Site::new(false).await.unwrap();
    site.driver = "qemu";
    let mut node = site.spawn("a", "");
    let api = Api::login(&node).await;
    // 128 MiB of data, so that a kill lands in the copy. (Not bootable: the guest runs its
    // firmware, which is all a copy of its disk needs.)
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("d.qcow2");
    for args in [
        vec![
            "qemu-img",
            "create",
            "-f",
            "qcow2",
            disk.to_str().unwrap(),
            "256M",
        ],
        vec![
            "qemu-io",
            "-f",
            "qcow2",
            "-c",
            "write -P 0x5a 0 128M",
            disk.to_str().unwrap(),
        ],
    ] {
        let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(o.status.success(), "{o:?}");
    }
    let (s, b) = api
        .call(
            Method::POST,
            "/image/v2/images",
            Some(json!({"name": "data", "disk_format": "qcow2", "container_format": "bare"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let image = b["id"].as_str().unwrap().to_string();
    let r = api
        .http
        .put(format!("{}/image/v2/images/{image}/file", api.url))
        .header("X-Auth-Token", &api.token)
        .header("Content-Type", "application/octet-stream")
        .body(std::fs::read(&disk).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let g = api.create_server("g", &image).await;
    let until = Instant::now() + Duration::from_secs(60);
    let pid = loop {
        if let (Some(pid), _) = guest_of(&site, &g).await {
            break pid;
        }
        assert!(Instant::now() < until, "the guest never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut outcomes = Vec::new();
    let (kind, steps) = IMAGE_BACKED;
    let mut points: Vec<String> = steps
        .iter()
        .flat_map(|s| ["before", "after"].map(|w| format!("pause:{kind}.{s}.{w}")))
        .collect();
    points.extend((0..6).map(|r| format!("random-{r}")));
    let mut mid_copy = 0;
    for what in points {
        if what.starts_with("random-") && mid_copy >= 2 {
            break;
        }
        node.kill();
        node = site.spawn("a", what.strip_prefix("random-").map_or(&what, |_| ""));
        let api = api.at(&node);
        let name = format!("img-{what}");
        let request = {
            let req = api
                .http
                .post(format!("{}/compute/v2.1/servers/{g}/action", api.url))
                .header("X-Auth-Token", &api.token)
                .json(&json!({"createImage": {"name": name}}));
            tokio::spawn(async move { req.send().await.map(|r| r.status()) })
        };
        if what.starts_with("pause:") {
            wait_for_pause(&mut node, &what).await;
        } else {
            let until = Instant::now() + Duration::from_secs(60);
            while api.server(&g).await["OS-EXT-STS:task_state"] != "image_snapshot" {
                assert!(Instant::now() < until, "{what}: the copy never started");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let delay = (uuid::Uuid::new_v4().as_u128() % 20) as u64;
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        // Still flattening per the record (QMP takes one client at a time: the copy's own
        // connection cannot be watched).
        let copying = api.server(&g).await["OS-EXT-STS:task_state"] == "image_snapshot";
        node.kill();
        if copying {
            mid_copy += 1;
        }
        request.abort();
        node = site.spawn("a", "");
        let api = api.at(&node);
        settle(&mut site).await;
        check_invariants(&mut site, &api, &[&g], &what).await;
        assert_eq!(guest_of(&site, &g).await, (Some(pid), 0), "{what}");
        assert_eq!(api.server(&g).await["status"], "ACTIVE", "{what}");
        let kept = api
            .images()
            .await
            .iter()
            .any(|i| i["name"] == name.as_str());
        outcomes.push(format!(
            "{what}: image {}{}",
            if kept { "active" } else { "gone" },
            if copying { ", killed mid-copy" } else { "" }
        ));
        clean_up(&api).await;
    }
    println!("{}", outcomes.join("\n"));
    assert!(mid_copy >= 1, "no kill landed in a copy: {outcomes:?}");

    // A stop whose process is killed while the guest powers off (it ignores ACPI: the grace
    // time runs) is finished by the node that comes back: SHUTOFF, no guest process.
    let api = api.at(&node);
    let (s, b) = api
        .call(
            Method::POST,
            &format!("/compute/v2.1/servers/{g}/action"),
            Some(json!({"os-stop": null})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(
        api.server(&g).await["OS-EXT-STS:task_state"],
        "powering-off"
    );
    node.kill();
    node = site.spawn("a", "");
    let api = api.at(&node);
    let until = Instant::now() + Duration::from_secs(60);
    while api.server(&g).await["status"] != "SHUTOFF" {
        assert!(Instant::now() < until, "the stop was never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(api.server(&g).await["OS-EXT-STS:task_state"], Value::Null);
    assert_eq!(guest_of(&site, &g).await.0, None);
    node.kill();
    site.finish().await;
}

/// Sends a request to `node`, which was started paused at fault rule `what`; once it paused
/// there, kills it (the request unanswered), starts the node again and waits for its sagas to
/// settle. Returns the new node.
async fn kill_while_paused(
    site: &mut Site,
    mut node: Node,
    api: &Api,
    what: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Node {
    let request = {
        let mut req = api
            .http
            .request(method, format!("{}{path}", api.url))
            .header("X-Auth-Token", &api.token)
            .header("OpenStack-API-Version", "compute 2.47");
        if let Some(b) = body {
            req = req.json(&b);
        }
        tokio::spawn(async move { req.send().await.map(|r| r.status()) })
    };
    if !paused(&mut node).await {
        let answer = request.await.unwrap();
        panic!("{what}: never paused; the request got {answer:?}");
    }
    node.kill();
    request.abort();
    let node = site.spawn("a", "");
    settle(site).await;
    node
}

/// The server and volume sagas: a server on an image, a server booted from a new volume made
/// from an image, a volume made from a snapshot and a server deleted, each killed at every step
/// boundary and restarted. The invariants hold, and each reaches its end whether or not its
/// request was answered: a recorded saga is finished by the node that comes back.
async fn kill_the_server_and_volume_sagas_at_every_boundary(site: &mut Site) {
    let mut node = site.spawn("a", "");
    let api = Api::login(&node).await;
    let (s1, s2) = servers(site, &api, 1).await;
    let (s, b) = api
        .call(
            Method::POST,
            "/volume/v3/volumes",
            Some(json!({"volume": {"size": 1, "name": "source"}})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let source = b["volume"]["id"].as_str().unwrap().to_string();
    let kinds: [(&str, &[&str], &str); 4] = [
        ("server-create", &["reserve", "spawn", "finish"], "ACTIVE"),
        ("server-create-volumes", &["volumes", "attach"], "ACTIVE"),
        ("volume-create", &["reserve", "make", "finish"], "available"),
        ("server-delete", &["detach", "destroy"], "gone"),
    ];
    let mut outcomes = Vec::new();
    for (kind, steps, expected) in kinds {
        for step in steps {
            for when in ["before", "after"] {
                let what = format!("{kind}.{step}.{when}");
                node.kill();
                node = site.spawn("a", &format!("pause:{what}"));
                let api = api.at(&node);
                let name = format!("x-{what}");
                let mut doomed = None;
                let (method, path, body) = match kind {
                    "server-create" => (
                        Method::POST,
                        "/compute/v2.1/servers".to_string(),
                        Some(json!({"server": {"name": name, "imageRef": DEMO_IMAGE_ID,
                                               "flavorRef": "1", "networks": "none"}})),
                    ),
                    "server-create-volumes" => (
                        Method::POST,
                        "/compute/v2.1/servers".to_string(),
                        Some(
                            json!({"server": {"name": name, "flavorRef": "1", "networks": "none",
                            "block_device_mapping_v2": [{"uuid": DEMO_IMAGE_ID,
                                "source_type": "image", "destination_type": "volume",
                                "volume_size": 1, "boot_index": 0,
                                "delete_on_termination": true}]}}),
                        ),
                    ),
                    "volume-create" => {
                        let (s, b) = api
                            .call(
                                Method::POST,
                                "/volume/v3/snapshots",
                                Some(json!({"snapshot": {"volume_id": source,
                                                         "name": format!("snap-{what}")}})),
                            )
                            .await;
                        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
                        let snap = b["snapshot"]["id"].as_str().unwrap();
                        (
                            Method::POST,
                            "/volume/v3/volumes".to_string(),
                            Some(json!({"volume": {"name": name, "snapshot_id": snap}})),
                        )
                    }
                    _ => {
                        let (s, b) = api
                            .call(
                                Method::POST,
                                "/compute/v2.1/servers",
                                Some(json!({"server": {"name": name, "imageRef": DEMO_IMAGE_ID,
                                                       "flavorRef": "1", "networks": "none"}})),
                            )
                            .await;
                        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
                        let id = b["server"]["id"].as_str().unwrap().to_string();
                        api.wait_active(&id).await;
                        let path = format!("/compute/v2.1/servers/{id}");
                        doomed = Some(id);
                        (Method::DELETE, path, None)
                    }
                };
                node = kill_while_paused(site, node, &api, &what, method, &path, body).await;
                let api = api.at(&node);
                check_invariants(site, &api, &[&s1, &s2], &what).await;
                let outcome = match kind {
                    "volume-create" => api.named("volumes", &name).await,
                    _ => match &doomed {
                        Some(id) => {
                            let (s, b) = api
                                .call(Method::GET, &format!("/compute/v2.1/servers/{id}"), None)
                                .await;
                            if s == StatusCode::NOT_FOUND {
                                "gone".to_string()
                            } else {
                                b["server"]["status"].as_str().unwrap().to_string()
                            }
                        }
                        None => api.named("servers", &name).await,
                    },
                };
                outcomes.push((what, outcome, expected));
                api.remove_named("x-").await;
                clean_up(&api).await;
            }
        }
    }
    for (what, outcome, _) in &outcomes {
        println!("{what}: {outcome}");
    }
    for (what, outcome, expected) in &outcomes {
        assert_eq!(outcome, expected, "{what}");
    }
    node.kill();
}

on_both_sites!(kill_the_server_and_volume_sagas_at_every_boundary);

/// The sagas besides createImage: createBackup, rebuild and image import, each killed at every
/// step boundary and restarted; the invariants hold, and what was accepted either finished or
/// was undone as a whole.
async fn kill_the_other_sagas_at_every_boundary(site: &mut Site) {
    let mut node = site.spawn("a", "");
    let api = Api::login(&node).await;
    let (s1, s2) = servers(site, &api, 16).await;
    let data = {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.qcow2");
        assert!(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&p)
            .arg("8M")
            .status()
            .unwrap()
            .success());
        std::fs::read(p).unwrap()
    };
    let kinds: [(&str, &[&str]); 3] = [
        (
            "create-backup",
            &[
                "reserve", "register", "flatten", "upload", "rotate", "finish",
            ],
        ),
        ("rebuild", &["accept", "detach", "spawn", "finish"]),
        ("image-import", &["claim", "load", "clean"]),
    ];
    let mut outcomes = Vec::new();
    for (kind, steps) in kinds {
        for step in steps {
            for when in ["before", "after"] {
                let what = format!("{kind}.{step}.{when}");
                node.kill();
                node = site.spawn("a", &format!("pause:{what}"));
                let api = api.at(&node);
                let name = format!("img-{what}");
                let (path, body) = match kind {
                    "create-backup" => (
                        format!("/compute/v2.1/servers/{s1}/action"),
                        json!({"createBackup": {"name": name, "backup_type": "crash", "rotation": 5}}),
                    ),
                    "rebuild" => (
                        format!("/compute/v2.1/servers/{s1}/action"),
                        json!({"rebuild": {"imageRef": DEMO_IMAGE_ID}}),
                    ),
                    _ => {
                        let (s, b) = api
                            .call(
                                Method::POST,
                                "/image/v2/images",
                                Some(json!({
                                "name": format!("import-{what}"), "disk_format": "qcow2",
                                "container_format": "bare"})),
                            )
                            .await;
                        assert_eq!(s, StatusCode::CREATED, "{b}");
                        let id = b["id"].as_str().unwrap().to_string();
                        let r = api
                            .http
                            .put(format!("{}/image/v2/images/{id}/stage", api.url))
                            .header("X-Auth-Token", &api.token)
                            .header("Content-Type", "application/octet-stream")
                            .body(data.clone())
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), StatusCode::NO_CONTENT);
                        (
                            format!("/image/v2/images/{id}/import"),
                            json!({"method": {"name": "glance-direct"}}),
                        )
                    }
                };
                node = kill_while_paused(site, node, &api, &what, Method::POST, &path, Some(body))
                    .await;
                let api = api.at(&node);
                check_invariants(site, &api, &[&s1, &s2], &what).await;
                let outcome = match kind {
                    "rebuild" => api.server(&s1).await["status"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    _ => api
                        .images()
                        .await
                        .iter()
                        .find(|i| {
                            i["name"] == name.as_str() || i["name"] == format!("import-{what}")
                        })
                        .map_or("gone".to_string(), |i| {
                            i["status"].as_str().unwrap().to_string()
                        }),
                };
                outcomes.push((what, outcome));
                clean_up(&api).await;
            }
        }
    }
    for (what, outcome) in &outcomes {
        println!("{what}: {outcome}");
    }
    // Once accepted (the first step done), each resumes forward to its end.
    for (what, outcome) in &outcomes {
        let first = what.ends_with(".reserve.before")
            || what.ends_with(".accept.before")
            || what.ends_with(".claim.before");
        if !first {
            assert!(
                matches!(outcome.as_str(), "active" | "ACTIVE"),
                "{what} ended {outcome}"
            );
        }
    }
    node.kill();
}

on_both_sites!(kill_the_other_sagas_at_every_boundary);

/// Two nodes on one PostgreSQL store and one storage directory: the node running a saga is
/// killed; the other takes the saga over once the lease has run out, and finishes it, or (when
/// its step fails there) undoes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_takes_over_after_the_lease() {
    let Some(mut site) = Site::new(true).await else {
        return;
    };
    let node_a = site.spawn("a", "");
    let api = Api::login(&node_a).await;
    let (s1, s2) = servers(&site, &api, 16).await;
    node_a.kill();

    // Finishes.
    let mut a = site.spawn("a", "pause:create-image.upload.before");
    let b = site.spawn("b", "");
    let (s, body) = api.at(&a).create_image_request(&s1, "taken-over").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    wait_for_pause(&mut a, "upload.before").await;
    let killed = Instant::now();
    a.kill();
    let on_b = api.at(&b);
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let img = on_b.images().await;
        if img
            .iter()
            .any(|i| i["name"] == "taken-over" && i["status"] == "active")
        {
            break;
        }
        assert!(Instant::now() < until, "node b never finished the saga");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "node b finished the saga {} ms after node a was killed",
        killed.elapsed().as_millis()
    );
    settle(&mut site).await;
    let b_id = std::fs::read_to_string(site.data("b").join("node-id")).unwrap();
    let sagas = stratus_store::saga_list(
        site.store().await.pool(),
        &[stratus_store::SagaState::Done],
        10,
    )
    .await
    .unwrap();
    assert_eq!(
        sagas[0].owner,
        b_id.trim(),
        "node b holds the finished saga"
    );
    check_invariants(&mut site, &on_b, &[&s1, &s2], "taken over").await;
    b.kill();

    // Undoes: node b's upload fails, so it undoes what node a started.
    let mut a = site.spawn("a", "pause:create-image.flatten.after");
    let b = site.spawn("b", "fail:create-image.upload");
    let (s, body) = api.at(&a).create_image_request(&s1, "undone-by-b").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    wait_for_pause(&mut a, "flatten.after").await;
    a.kill();
    let on_b = api.at(&b);
    settle(&mut site).await;
    check_invariants(&mut site, &on_b, &[&s1, &s2], "undone by b").await;
    assert!(!on_b
        .images()
        .await
        .iter()
        .any(|i| i["name"] == "undone-by-b"));
    let server = stratus_store::server_get(site.store().await.pool(), &s1)
        .await
        .unwrap()
        .unwrap();
    assert!(
        server
            .fault
            .as_deref()
            .unwrap_or_default()
            .contains("injected failure of step upload"),
        "{:?}",
        server.fault
    );
    b.kill();
    site.finish().await;
}

/// A failure at any step undoes the saga: no image, no snapshot, no temporary file, the
/// task_state reset, and the server's fault says why.
async fn failures_are_undone(site: &mut Site) {
    let node = site.spawn("a", "");
    let api = Api::login(&node).await;
    let (s1, s2) = servers(site, &api, 8).await;
    let mut node = node;
    for ((kind, steps), server) in [(IMAGE_BACKED, &s1), (VOLUME_BACKED, &s2)] {
        for step in &steps[1..] {
            node.kill();
            node = site.spawn("a", &format!("fail:{kind}.{step}"));
            let api = api.at(&node);
            let name = format!("fails-at-{kind}-{step}");
            let (s, b) = api.create_image_request(server, &name).await;
            // The first two steps run before the answer: their failure is the answer.
            let expected = if *step == "register" {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::ACCEPTED
            };
            assert_eq!(s, expected, "{kind}.{step}: {b}");
            settle(site).await;
            let what = format!("failure at {kind}.{step}");
            check_invariants(site, &api, &[&s1, &s2], &what).await;
            assert!(
                !api.images()
                    .await
                    .iter()
                    .any(|i| i["name"] == name.as_str()),
                "{what}: the image stayed"
            );
            let rec = stratus_store::server_get(site.store().await.pool(), server)
                .await
                .unwrap()
                .unwrap();
            let fault = rec.fault.unwrap_or_default();
            assert!(
                fault.contains(&format!("injected failure of step {step}")),
                "{what}: fault {fault}"
            );
            let (_, snaps) = api.call(Method::GET, "/volume/v3/snapshots", None).await;
            assert_eq!(snaps["snapshots"], json!([]), "{what}");
        }
    }
    node.kill();
}

on_both_sites!(failures_are_undone);
