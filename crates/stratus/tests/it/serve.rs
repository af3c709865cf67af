//! `stratus serve` as a process: first start, restart, data-dir lock, newer schema, bad data dir,
//! configuration sources, graceful shutdown.

use crate::common::password_auth;
use serde_json::Value;
use sqlx::Connection;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_stratus");

struct Server {
    child: Child,
    url: String,
    stdout: Vec<String>,
}

fn serve(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // No guests unless a test asks for them.
    cmd.env("STRATUS_DRIVER", "none");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.env("STRATUS_LOG", "warn");
    cmd
}

/// Starts a server and reads its banner up to the clouds.yaml lines.
fn start(args: &[&str], envs: &[(&str, &str)]) -> Server {
    start_cmd(serve(args, envs))
}

fn start_cmd(mut cmd: Command) -> Server {
    let mut child = cmd.spawn().expect("spawn stratus");
    let out = child.stdout.take().expect("stdout");
    let mut lines = Vec::new();
    let mut reader = BufReader::new(out);
    let mut url = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read banner");
        assert!(n > 0, "server exited early; banner so far: {lines:?}");
        if let Some(rest) = line.trim().strip_prefix(&format!(
            "stratus {} listening on ",
            env!("CARGO_PKG_VERSION")
        )) {
            url = rest.to_string();
        }
        lines.push(line.trim_end().to_string());
        if line.trim_start().starts_with("try:") {
            break;
        }
    }
    // The rest of the banner is at most a few lines; read what is there without blocking on EOF.
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = reader.read_to_string(&mut sink);
    });
    std::thread::sleep(Duration::from_millis(50));
    Server {
        child,
        url,
        stdout: lines,
    }
}

fn sigterm(child: &Child) {
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
}

fn stop(mut s: Server) -> std::process::ExitStatus {
    sigterm(&s.child);
    s.child.wait().expect("wait")
}

/// Runs a server that must fail; returns (exit code, stderr).
fn must_fail(args: &[&str]) -> (i32, String) {
    let out = serve(args, &[]).output().expect("run stratus");
    assert!(
        !out.status.success(),
        "expected failure, stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

async fn token_with(url: &str, password: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("{url}/identity/v3/auth/tokens"))
        .json(&password_auth("admin", password, Some("admin")))
        .send()
        .await
        .expect("request")
        .status()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("exists").permissions().mode() & 0o777
}

#[tokio::test]
async fn first_start_then_restart_reuses_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let d = dir.to_str().unwrap();
    let s = start(&["--data-dir", d, "--listen", "127.0.0.1:0"], &[]);
    let banner = s.stdout.join("\n");
    let pw_line = s
        .stdout
        .iter()
        .find(|l| l.contains("with password"))
        .expect("password printed on first start");
    let pw = pw_line.rsplit(' ').next().unwrap().to_string();
    assert_eq!(mode(&dir.join("clouds.yaml")), 0o600);
    assert_eq!(mode(&dir.join("admin-password")), 0o600);
    let clouds = std::fs::read_to_string(dir.join("clouds.yaml")).unwrap();
    assert!(
        clouds.contains("stratus-admin:")
            && clouds.contains(&format!("auth_url: {}/identity", s.url)),
        "{clouds}"
    );
    assert!(clouds.contains(&pw));
    assert_eq!(
        token_with(&s.url, &pw).await,
        reqwest::StatusCode::CREATED,
        "{banner}"
    );
    assert!(stop(s).success());

    // Second start: no new password, the old one still works, clouds.yaml follows the new address.
    let s = start(
        &[
            "--data-dir",
            d,
            "--listen",
            "127.0.0.1:0",
            "--public-url",
            "http://localhost:1/",
        ],
        &[],
    );
    assert!(
        !s.stdout.iter().any(|l| l.contains("with password")),
        "{:?}",
        s.stdout
    );
    assert_eq!(s.url, "http://localhost:1");
    let clouds = std::fs::read_to_string(dir.join("clouds.yaml")).unwrap();
    assert!(
        clouds.contains("auth_url: http://localhost:1/identity"),
        "{clouds}"
    );
    assert!(stop(s).success());
}

#[tokio::test]
async fn a_locked_data_dir_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let d = d.to_str().unwrap();
    let s = start(&["--data-dir", d, "--listen", "127.0.0.1:0"], &[]);
    let before = std::fs::read(tmp.path().join("d/clouds.yaml")).unwrap();
    let (_, err) = must_fail(&["--data-dir", d, "--listen", "127.0.0.1:0"]);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("in use by another stratus server"), "{err}");
    assert_eq!(
        std::fs::read(tmp.path().join("d/clouds.yaml")).unwrap(),
        before
    );
    // The first server is unaffected.
    let pw = std::fs::read_to_string(tmp.path().join("d/admin-password")).unwrap();
    assert_eq!(
        token_with(&s.url, pw.trim()).await,
        reqwest::StatusCode::CREATED
    );
    assert!(stop(s).success());
}

async fn revision(conn: &mut sqlx::AnyConnection) -> i64 {
    let v: (i64,) = sqlx::query_as("SELECT value FROM revision WHERE id = 1")
        .fetch_one(conn)
        .await
        .unwrap();
    v.0
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_nothing_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let ds = d.to_str().unwrap();
    assert!(stop(start(&["--data-dir", ds, "--listen", "127.0.0.1:0"], &[])).success());
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", d.join("stratus.db").display());
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO stratus_schema (version, name, applied_at) VALUES (9999, 'future', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let rev_before = revision(&mut conn).await;
    conn.close().await.unwrap();
    let (_, err) = must_fail(&["--data-dir", ds, "--listen", "127.0.0.1:0"]);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("schema is version 9999, newer than this binary supports"),
        "{err}"
    );
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    assert_eq!(revision(&mut conn).await, rev_before);
}

#[tokio::test]
async fn unusable_data_dirs_give_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let (_, err) = must_fail(&[
        "--data-dir",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is not a directory"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");

    // A database file that is not a database.
    let d = tmp.path().join("garbage");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("stratus.db"), vec![0x42u8; 8192]).unwrap();
    let (_, err) = must_fail(&["--data-dir", d.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot open the metadata store"), "{err}");
    assert_eq!(
        std::fs::read(d.join("stratus.db")).unwrap(),
        vec![0x42u8; 8192]
    );

    // Unreadable (only meaningful when not running as root, which ignores permissions).
    if unsafe { libc::geteuid() } != 0 {
        let d = tmp.path().join("locked-out");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o000)).unwrap();
        let (_, err) = must_fail(&["--data-dir", d.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
        assert!(err.contains("not readable"), "{err}");
    }
}

#[tokio::test]
async fn config_file_and_environment_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("from-file");
    let cfg = tmp.path().join("stratus.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:0\"\ntoken_expiration = 3600\n",
            d.to_str().unwrap()
        ),
    )
    .unwrap();
    let s = start(&[], &[("STRATUS_CONFIG", cfg.to_str().unwrap())]);
    assert!(d.join("clouds.yaml").exists());
    let pw = std::fs::read_to_string(d.join("admin-password")).unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/identity/v3/auth/tokens", s.url))
        .json(&password_auth("admin", pw.trim(), Some("admin")))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    let issued = body["token"]["issued_at"].as_str().unwrap().to_string();
    let expires = body["token"]["expires_at"].as_str().unwrap().to_string();
    // One hour apart: same minutes and seconds, hour + 1 (mod 24).
    assert_eq!(issued[13..], expires[13..]);
    assert!(stop(s).success());

    // Command line beats the file.
    let d2 = tmp.path().join("from-cli");
    let s = start(
        &["--data-dir", d2.to_str().unwrap()],
        &[("STRATUS_CONFIG", cfg.to_str().unwrap())],
    );
    assert!(d2.join("clouds.yaml").exists());
    assert!(stop(s).success());

    // A typo in the file is an error, not silently ignored.
    std::fs::write(&cfg, "lisen = \"127.0.0.1:0\"\n").unwrap();
    let out = serve(&[], &[("STRATUS_CONFIG", cfg.to_str().unwrap())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"));
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let s = start(
        &["--data-dir", d.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        &[],
    );
    let pw = std::fs::read_to_string(d.join("admin-password")).unwrap();
    let body = serde_json::to_vec(&password_auth("admin", pw.trim(), Some("admin"))).unwrap();
    let addr = s.url.trim_start_matches("http://").to_string();
    // Send the headers and half the body, then signal, then the rest: the request was in flight.
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        conn,
        "POST /identity/v3/auth/tokens HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    conn.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    sigterm(&s.child);
    std::thread::sleep(Duration::from_millis(200));
    conn.write_all(&body[10..]).unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    let mut child = s.child;
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // New connections are refused once it has stopped.
    assert!(std::net::TcpStream::connect(&addr).is_err());
}

#[tokio::test]
async fn policy_simulate_cli_explains_decisions() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let s = start(
        &["--data-dir", d.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        &[],
    );
    let pw = std::fs::read_to_string(d.join("admin-password")).unwrap();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/identity/v3/auth/tokens", s.url))
        .json(&password_auth("admin", pw.trim(), Some("admin")))
        .send()
        .await
        .unwrap();
    let admin = r.headers()["x-subject-token"].to_str().unwrap().to_string();
    let call = |m: reqwest::Method, path: String, body: Option<Value>| {
        let mut req = http
            .request(m, format!("{}{path}", s.url))
            .header("X-Auth-Token", &admin);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            req.send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap_or(Value::Null)
        }
    };
    let u = call(
        reqwest::Method::POST,
        "/identity/v3/users".into(),
        Some(serde_json::json!({"user": {"name": "ro", "password": "pw"}})),
    )
    .await;
    let uid = u["user"]["id"].as_str().unwrap().to_string();
    let g = call(
        reqwest::Method::POST,
        "/identity/v3/groups".into(),
        Some(serde_json::json!({"group": {"name": "ro"}})),
    )
    .await;
    let gid = g["group"]["id"].as_str().unwrap().to_string();
    call(
        reqwest::Method::PUT,
        format!("/identity/v3/groups/{gid}/users/{uid}"),
        None,
    )
    .await;
    let roles = call(
        reqwest::Method::GET,
        "/identity/v3/roles?name=ECS ReadOnlyAccess".into(),
        None,
    )
    .await;
    let rid = roles["roles"][0]["id"].as_str().unwrap().to_string();
    let p = call(
        reqwest::Method::GET,
        "/identity/v3/projects?name=demo".into(),
        None,
    )
    .await;
    let pid = p["projects"][0]["id"].as_str().unwrap().to_string();
    call(
        reqwest::Method::PUT,
        format!("/identity/v3/projects/{pid}/groups/{gid}/roles/{rid}"),
        None,
    )
    .await;

    let run = |extra: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(["policy", "simulate", "--user", "ro", "--project", "demo"])
            .args([
                "--os-auth-url",
                &format!("{}/identity", s.url),
                "--data-dir",
                d.to_str().unwrap(),
            ])
            .args(extra)
            .env_remove("OS_PASSWORD");
        cmd.output().unwrap()
    };
    let out = run(&[
        "--route",
        "POST /compute/v2.1/{project_id}/servers/{server_id}/action createImage",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("decision: implicitDeny"), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("ecs:servers:createImage"))
        .unwrap();
    assert!(
        line.contains("implicitDeny") && line.contains("none"),
        "{line}"
    );
    let line = text.lines().find(|l| l.contains("ims:images:get")).unwrap();
    assert!(
        line.contains("allowed") && line.contains("ECS ReadOnlyAccess"),
        "{line}"
    );

    let out = run(&["--action", "ims:images:get", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "allowed");

    let out = run(&["--action", "ims:images:get", "--route", "GET /"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("either --action"));
    assert!(stop(s).success());
}

/// A data dir on a small file system of its own (a tmpfs in a private mount namespace): an upload
/// larger than the free space fails with 413, and leaves the image queued with nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_upload_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir(&d).unwrap();
    let d = d.to_str().unwrap();
    let script = format!(
        "mount -t tmpfs -o size=24m stratus-full {d} && exec {BIN} serve --data-dir {d} --listen 127.0.0.1:0"
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("STRATUS_DRIVER", "none")
        .env("STRATUS_LOG", "warn");
    let s = start_cmd(cmd);
    let pw = s
        .stdout
        .iter()
        .find(|l| l.contains("with password"))
        .and_then(|l| l.split_whitespace().last())
        .expect("password in banner")
        .to_string();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/identity/v3/auth/tokens", s.url))
        .json(&password_auth("admin", &pw, Some("admin")))
        .send()
        .await
        .unwrap();
    let t = r.headers()["x-subject-token"].to_str().unwrap().to_string();
    let img: Value = http
        .post(format!("{}/image/v2/images", s.url))
        .header("X-Auth-Token", &t)
        .json(&serde_json::json!({"name": "big", "disk_format": "raw", "container_format": "bare"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = img["id"].as_str().unwrap();
    let put = |len: usize| {
        http.put(format!("{}/image/v2/images/{id}/file", s.url))
            .header("X-Auth-Token", &t)
            .header("Content-Type", "application/octet-stream")
            .body(vec![9u8; len])
            .send()
    };
    let r = put(40 << 20).await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("storage media is full"),
        "{body}"
    );
    let img: Value = http
        .get(format!("{}/image/v2/images/{id}", s.url))
        .header("X-Auth-Token", &t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(img["status"], "queued");
    assert!(img["size"].is_null());
    // Inside the server's mount namespace: only the demo image's data is stored.
    let out = Command::new("nsenter")
        .args([
            "-t",
            &s.child.id().to_string(),
            "-m",
            "find",
            &format!("{d}/images"),
            "-type",
            "f",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let files: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.rsplit('/').next().unwrap_or("").to_string())
        .collect();
    assert_eq!(files, [stratus_services::demo::DEMO_IMAGE_ID]);
    // With room again, the same image takes data.
    let r = put(1 << 20).await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT);
    assert!(stop(s).success());
}

/// Everything the server writes is its owner's only: the storage dir 0700 (also one made
/// readable by an older version), image data, disks and the database 0600.
#[tokio::test]
async fn stored_data_is_readable_by_its_owner_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, storage) = (tmp.path().join("d"), tmp.path().join("s"));
    std::fs::create_dir(&storage).unwrap();
    std::fs::set_permissions(&storage, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = start(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--storage-dir",
            storage.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_eq!(mode(&storage), 0o700);
    let demo = storage
        .join("images")
        .join(stratus_services::demo::DEMO_IMAGE_ID);
    for f in [&demo, &data.join("stratus.db")] {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    assert_eq!(mode(&storage.join("images")), 0o700);
    assert!(stop(s).success());
}

/// Clients that hold connections without finishing a request: 300 connections that sent half a
/// request line do not keep others from logging in, and are closed after the header timeout;
/// connections beyond the limit are closed at once; an upload that stalls fails after the body
/// idle timeout, its image back to `queued` with nothing kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off() {
    use crate::common::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| {
        cfg.header_read_timeout = Duration::from_secs(2);
        cfg.body_idle_timeout = Duration::from_secs(1);
        cfg.max_connections = 400;
    })
    .await
    .unwrap();
    let addr = c.url.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..300 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /identity/v3 HT").await.unwrap();
        idle.push(s);
    }
    let started = std::time::Instant::now();
    let t = c.admin_token().await;
    assert!(!t.is_empty());
    println!(
        "login with 300 idle connections open: {:?}",
        started.elapsed()
    );
    // Beyond the limit (400, 300 held, one pooled by the client): closed at once.
    let mut extra = Vec::new();
    for _ in 0..120 {
        extra.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let mut closed_at_once = 0;
    for s in &mut extra {
        let mut b = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(200), s.read(&mut b)).await {
            closed_at_once += 1;
        }
    }
    assert!(
        closed_at_once >= 20,
        "only {closed_at_once} of 120 were refused"
    );
    drop(extra);
    // The half-sent requests are cut off by the header timeout.
    for s in &mut idle {
        let mut b = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await;
        assert!(
            matches!(r, Ok(Ok(_)) | Ok(Err(_))),
            "a connection was left open: {r:?}"
        );
    }
    assert!(started.elapsed() >= Duration::from_secs(1));

    // A stalled upload.
    let (s, _, i) = c
        .call(reqwest::Method::POST, "/image/v2/images", Some(&t),
            Some(serde_json::json!({"name": "stall", "disk_format": "raw", "container_format": "bare"})))
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED);
    let id = i["id"].as_str().unwrap().to_string();
    let mut up = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PUT /image/v2/images/{id}/file HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {t}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 1048576\r\n\r\n"
    );
    up.write_all(head.as_bytes()).await.unwrap();
    up.write_all(&[7u8; 4096]).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), up.read(&mut answer))
        .await
        .expect("the server answered the stalled upload")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    let (_, _, i) = c
        .call(
            reqwest::Method::GET,
            &format!("/image/v2/images/{id}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(
        (i["status"].as_str(), &i["size"]),
        (Some("queued"), &serde_json::Value::Null)
    );
    let blobs = c.config.data_dir.join("images");
    assert!(!std::fs::read_dir(&blobs).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(&id)));
    c.stop().await;
}
