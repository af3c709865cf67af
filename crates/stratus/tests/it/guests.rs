//! Servers as real guests (the `qemu` driver, TCG): the demo image boots and its greeting shows in
//! `os-getConsoleOutput`; stop, start, pause and reboot reach the guest; images and volume
//! snapshots of running guests; the guests keep running
//! across a restart of the server and are found again; a guest that dies makes its server
//! SHUTOFF; a deleted server leaves no process and no file of its guest.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use stratus::config::DriverKind;
use stratus_driver::accel::Accel;
use stratus_driver::DEMO_MARKER;
use stratus_services::demo::DEMO_IMAGE_ID;

use crate::common::{filled_qcow2, Backend, TestCloud};

async fn qemu_cloud() -> TestCloud {
    TestCloud::start_with(Backend::Sqlite, |c| {
        c.driver = DriverKind::Qemu;
        c.accel = Some(Accel::Tcg);
        c.shutdown_timeout = Duration::from_millis(500);
        c.guest_sync_interval = Duration::from_millis(200);
    })
    .await
    .expect("sqlite")
}

async fn act(c: &TestCloud, t: &str, id: &str, body: Value) -> (StatusCode, Value) {
    c.mv("2.47")
        .post(t, &format!("/compute/v2.1/servers/{id}/action"), body)
        .await
}

async fn console(c: &TestCloud, t: &str, id: &str, length: Value) -> String {
    let (s, b) = act(c, t, id, json!({"os-getConsoleOutput": {"length": length}})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["output"].as_str().expect("output").to_string()
}

/// Waits until the console shows the demo greeting `times` times.
async fn wait_greeting(c: &TestCloud, t: &str, id: &str, times: usize) {
    wait_console(c, t, id, DEMO_MARKER, times).await;
}

/// Waits until the console shows `marker` `times` times; returns the console.
async fn wait_console(c: &TestCloud, t: &str, id: &str, marker: &str, times: usize) -> String {
    let start = Instant::now();
    loop {
        let out = console(c, t, id, Value::Null).await;
        if out.matches(marker).count() >= times {
            return out;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{id} never showed {marker:?} {times} times: {out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn guest_dir(c: &TestCloud, id: &str) -> PathBuf {
    c.config.data_dir.join("guests").join(id)
}

/// The pid of the guest's QEMU while it runs.
fn qemu_pid(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(dir.join("qemu.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    (!cmdline.is_empty()).then_some(pid)
}

async fn wait_no_process(dir: &Path) {
    let start = Instant::now();
    while qemu_pid(dir).is_some() {
        assert!(start.elapsed() < Duration::from_secs(30), "QEMU still runs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn servers_run_as_guests_through_their_whole_life() {
    let mut c = qemu_cloud().await;
    let t = c.admin_token().await;
    let (s, b) = c
        .mv("2.47")
        .post(
            &t,
            "/compute/v2.1/servers",
            json!({"server": {"name": "g1", "imageRef": DEMO_IMAGE_ID, "flavorRef": "1",
                              "networks": "none"}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    c.wait_server(&t, &id, "ACTIVE").await;
    wait_greeting(&c, &t, &id, 1).await;
    let dir = guest_dir(&c, &id);
    let pid = qemu_pid(&dir).expect("a QEMU process runs the server");
    // `length` counts lines from the end; bad lengths are Nova's 400.
    let last = console(&c, &t, &id, json!(1)).await;
    assert_eq!(last.lines().count(), 1, "{last:?}");
    assert!(console(&c, &t, &id, json!("2")).await.lines().count() <= 2);
    for bad in [json!(-2), json!("x"), json!(1.5), json!([])] {
        let (s, _) = act(&c, &t, &id, json!({"os-getConsoleOutput": {"length": bad}})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
    }

    // Pause and unpause reach the guest; the process stays.
    let (s, _) = act(&c, &t, &id, json!({"pause": null})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    c.wait_server(&t, &id, "PAUSED").await;
    let (s, _) = act(&c, &t, &id, json!({"unpause": null})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    c.wait_server(&t, &id, "ACTIVE").await;
    assert_eq!(qemu_pid(&dir), Some(pid));

    // A hard reboot boots it again (a new process, a second greeting).
    let (s, _) = act(&c, &t, &id, json!({"reboot": {"type": "HARD"}})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    wait_greeting(&c, &t, &id, 2).await;
    let pid = qemu_pid(&dir).expect("running again");

    // Stop: the demo disk cannot answer ACPI, and its image says so (`os_shutdown_timeout`
    // 0): the guest is stopped hard at once. The server is SHUTOFF once no guest runs.
    let (s, _) = act(&c, &t, &id, json!({"os-stop": null})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    c.wait_server(&t, &id, "SHUTOFF").await;
    assert_eq!(qemu_pid(&dir), None, "SHUTOFF while the guest runs");
    let (s, _) = act(&c, &t, &id, json!({"os-start": null})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    c.wait_server(&t, &id, "ACTIVE").await;
    wait_greeting(&c, &t, &id, 3).await;
    let pid2 = qemu_pid(&dir).expect("started");
    assert_ne!(pid, pid2);

    // The server restarts; the guest does not, and is found again.
    c.restart().await;
    let t = c.admin_token().await;
    let v = c.wait_server(&t, &id, "ACTIVE").await;
    assert_eq!(v["OS-EXT-STS:power_state"], 1);
    assert_eq!(qemu_pid(&dir), Some(pid2));
    let (s, _) = act(&c, &t, &id, json!({"pause": null})).await;
    assert_eq!(
        s,
        StatusCode::ACCEPTED,
        "the new server reaches the old guest"
    );
    let (s, _) = act(&c, &t, &id, json!({"unpause": null})).await;
    assert_eq!(s, StatusCode::ACCEPTED);

    // A guest that dies by itself: its server becomes SHUTOFF.
    // SAFETY: the pid is the guest's QEMU, started by this test's server.
    unsafe { libc::kill(pid2, libc::SIGKILL) };
    let v = c.wait_server(&t, &id, "SHUTOFF").await;
    assert_eq!(v["OS-EXT-STS:power_state"], 4);

    // Deleted: no process, no file of its guest.
    let (s, _) = act(&c, &t, &id, json!({"os-start": null})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    c.wait_server(&t, &id, "ACTIVE").await;
    assert!(qemu_pid(&dir).is_some());
    let (s, _) = c.delete(&t, &format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    c.wait_gone(&t, &format!("/compute/v2.1/servers/{id}"))
        .await;
    wait_no_process(&dir).await;
    assert!(!dir.exists(), "the guest's files are gone");
    let (s, _, _) = c
        .call(Method::GET, "/compute/v2.1/servers", Some(&t), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    c.stop().await;
}

async fn create_server(c: &TestCloud, t: &str, server: Value) -> String {
    let (s, b) = c
        .mv("2.47")
        .post(t, "/compute/v2.1/servers", json!({ "server": server }))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    c.wait_server(t, &id, "ACTIVE").await;
    id
}

async fn wait_image_active(c: &TestCloud, t: &str, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let (_, b) = c.get(t, &format!("/image/v2/images/{id}")).await;
        if b["status"] == "active" {
            return b;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "image {id}: {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_image_of_a_running_guest_boots_and_the_guest_keeps_running() {
    let c = qemu_cloud().await;
    let t = c.admin_token().await;
    let id = create_server(
        &c,
        &t,
        json!({"name": "src", "imageRef": DEMO_IMAGE_ID, "flavorRef": "1", "networks": "none"}),
    )
    .await;
    wait_greeting(&c, &t, &id, 1).await;
    let dir = guest_dir(&c, &id);
    let pid = qemu_pid(&dir).expect("running");

    let (s, b) = act(&c, &t, &id, json!({"createImage": {"name": "live"}})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let image = b["image_id"].as_str().expect("image id").to_string();
    let i = wait_image_active(&c, &t, &image).await;
    assert_eq!(i["disk_format"], "qcow2");
    // The guest ran on: the same process, running (not left paused), the server ACTIVE.
    let v = c.wait_no_task(&t, &id).await;
    assert_eq!(v["status"], "ACTIVE", "{v}");
    assert_eq!(qemu_pid(&dir), Some(pid));
    let view = stratus_driver::qemu::QemuDriver::new(
        c.config.data_dir.join("guests"),
        None,
        Some(Accel::Tcg),
    )
    .await
    .unwrap();
    use stratus_driver::ComputeDriver;
    assert_eq!(
        view.state(&id).await.unwrap(),
        Some(stratus_driver::GuestState::Running)
    );
    // A server booted from the image boots the same disk.
    let copy = create_server(
        &c,
        &t,
        json!({"name": "copy", "imageRef": image, "flavorRef": "1", "networks": "none"}),
    )
    .await;
    wait_greeting(&c, &t, &copy, 1).await;

    // Volumes under a running guest: QEMU moves the guest onto each volume's new layer, with the
    // guest paused across all of them for createImage; the guest runs on.
    let vb = create_server(
        &c,
        &t,
        json!({"name": "vb", "flavorRef": "1", "networks": "none",
               "block_device_mapping_v2": [{"uuid": DEMO_IMAGE_ID, "source_type": "image",
                   "destination_type": "volume", "boot_index": 0, "volume_size": 1,
                   "delete_on_termination": true}]}),
    )
    .await;
    wait_greeting(&c, &t, &vb, 1).await;
    let vb_pid = qemu_pid(&guest_dir(&c, &vb)).expect("running");
    let (s, b) = act(&c, &t, &vb, json!({"createImage": {"name": "vb-live"}})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let vb_image = b["image_id"].as_str().unwrap().to_string();
    wait_image_active(&c, &t, &vb_image).await;
    c.wait_no_task(&t, &vb).await;
    let (_, b) = c
        .mv("2.47")
        .get(&t, &format!("/compute/v2.1/servers/{vb}"))
        .await;
    let vol = b["server"]["os-extended-volumes:volumes_attached"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, b) = c
        .post(
            &t,
            "/volume/v3/snapshots",
            json!({"snapshot": {"volume_id": vol, "force": true, "name": "sn-live"}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(qemu_pid(&guest_dir(&c, &vb)), Some(vb_pid));
    // The guest writes the volume's new top layer, which the store names as the volume's disk.
    let top = view.top_of(&vb, &format!("vol-{vol}")).await.unwrap();
    assert_eq!(top, Some(c.volume_disk(&vol).await));
    assert_eq!(
        view.state(&vb).await.unwrap(),
        Some(stratus_driver::GuestState::Running)
    );
    // The guest boots again from its volume's new layers, and a server boots from the image.
    let (s, _) = act(&c, &t, &vb, json!({"reboot": {"type": "HARD"}})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    wait_greeting(&c, &t, &vb, 2).await;
    let from_image = create_server(
        &c,
        &t,
        json!({"name": "from-vb", "imageRef": vb_image, "flavorRef": "1", "networks": "none"}),
    )
    .await;
    wait_greeting(&c, &t, &from_image, 1).await;
    c.stop().await;
}

#[tokio::test]
async fn a_server_the_node_cannot_take_is_error_with_no_valid_host() {
    // Room for one m1.tiny (512 MB) and no more.
    let c = TestCloud::start_with(Backend::Sqlite, |c| {
        c.driver = DriverKind::Qemu;
        c.accel = Some(Accel::Tcg);
        c.host_memory_mb = Some(700);
        c.host_vcpus = Some(4);
    })
    .await
    .expect("sqlite");
    let t = c.admin_token().await;
    let server = |name: &str, flavor: &str| json!({"name": name, "imageRef": DEMO_IMAGE_ID, "flavorRef": flavor, "networks": "none"});
    let first = create_server(&c, &t, server("fits", "1")).await;
    let (s, b) = c
        .mv("2.47")
        .post(
            &t,
            "/compute/v2.1/servers",
            json!({"server": server("no-room", "1")}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "accepted, as upstream: {b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    let v = c.wait_server(&t, &id, "ERROR").await;
    assert_eq!(
        v["fault"]["message"],
        "No valid host was found. There are not enough hosts available."
    );
    assert!(!guest_dir(&c, &id).exists(), "nothing was started for it");
    // A server in ERROR takes nothing: with the first one gone there is room again.
    let (s, _) = c
        .delete(&t, &format!("/compute/v2.1/servers/{first}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    c.wait_gone(&t, &format!("/compute/v2.1/servers/{first}"))
        .await;
    create_server(&c, &t, server("fits-again", "1")).await;
    c.stop().await;
}

/// With `resume_guests_state_on_host_boot`, a server whose guest is gone when the node starts
/// (the machine went down with it) has its guest booted again; a guest that dies while the node
/// runs still makes its server SHUTOFF.
#[tokio::test]
async fn guests_gone_while_the_node_was_down_boot_again_if_so_set() {
    let mut c = qemu_cloud().await;
    let t = c.admin_token().await;
    let id = create_server(
        &c,
        &t,
        json!({"name": "r", "imageRef": DEMO_IMAGE_ID, "flavorRef": "1", "networks": "none"}),
    )
    .await;
    wait_greeting(&c, &t, &id, 1).await;
    let dir = guest_dir(&c, &id);
    let pid = qemu_pid(&dir).expect("a QEMU process runs the server");
    c.restart_with(|cfg| {
        // SAFETY: the pid is the guest's QEMU, started by this test's server.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let start = Instant::now();
        while qemu_pid(&dir).is_some() {
            assert!(start.elapsed() < Duration::from_secs(30), "QEMU still runs");
            std::thread::sleep(Duration::from_millis(20));
        }
        cfg.resume_guests_state_on_host_boot = true;
    })
    .await;
    let t = c.admin_token().await;
    wait_greeting(&c, &t, &id, 2).await;
    let pid2 = qemu_pid(&dir).expect("booted again");
    assert_ne!(pid, pid2);
    assert_eq!(
        c.wait_server(&t, &id, "ACTIVE").await["OS-EXT-STS:power_state"],
        1
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid2, libc::SIGKILL) };
    c.wait_server(&t, &id, "SHUTOFF").await;
    assert_eq!(qemu_pid(&dir), None);
}

/// The Linux guest `scripts/guest-image` builds from Debian's packages (built once, kept under
/// target/), uploaded as Glance does a kernel-booted image: kernel (`aki`), ramdisk (`ari`), and
/// the root disk naming both, with the command line that starts its record writer.
async fn upload_linux_guest(c: &TestCloud, t: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = root.join("target/guest-image");
    let built = std::process::Command::new(root.join("scripts/guest-image"))
        .arg(&out)
        .status()
        .expect("scripts/guest-image");
    assert!(built.success(), "scripts/guest-image failed");
    let read = |f: &str| std::fs::read(out.join(f)).expect("guest image file");
    let kernel = c
        .upload_image(
            t,
            json!({"name": "linux-kernel", "disk_format": "aki", "container_format": "aki"}),
            read("vmlinuz"),
        )
        .await;
    let ramdisk = c
        .upload_image(
            t,
            json!({"name": "linux-initrd", "disk_format": "ari", "container_format": "ari"}),
            read("initrd.img"),
        )
        .await;
    c.upload_image(
        t,
        json!({"name": "linux", "disk_format": "qcow2", "container_format": "bare",
               "kernel_id": kernel, "ramdisk_id": ramdisk,
               "os_command_line": "console=ttyS0 root=/dev/vda rw stratus.writer=1"}),
        read("root.qcow2"),
    )
    .await
}

/// The file system of image `id` is clean once its journal is replayed (as the kernel mounting
/// it does): `e2fsck` on a raw copy of the image's data.
async fn assert_fsck_clean(c: &TestCloud, t: &str, id: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let data = c
        .http
        .get(format!("{}/image/v2/images/{id}/file", c.url))
        .header("X-Auth-Token", t)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (qcow2, raw) = (tmp.path().join("i.qcow2"), tmp.path().join("i.raw"));
    std::fs::write(&qcow2, &data).unwrap();
    let run = |cmd: &str, args: &[&std::ffi::OsStr]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .expect(cmd)
    };
    let o = run(
        "qemu-img",
        &[
            "convert".as_ref(),
            "-O".as_ref(),
            "raw".as_ref(),
            qcow2.as_os_str(),
            raw.as_os_str(),
        ],
    );
    assert!(o.status.success(), "{o:?}");
    // Replaying the journal may change the copy (exit 1); it must find nothing else to fix.
    let o = run(
        "e2fsck",
        &[
            "-E".as_ref(),
            "journal_only".as_ref(),
            "-y".as_ref(),
            raw.as_os_str(),
        ],
    );
    assert!(o.status.code().is_some_and(|c| c <= 1), "{o:?}");
    let o = run("e2fsck", &["-f".as_ref(), "-n".as_ref(), raw.as_os_str()]);
    assert!(
        o.status.success(),
        "e2fsck found errors in image {id}: {o:?}"
    );
}

/// A Linux guest booted through `kernel_id`/`ramdisk_id`/`os_command_line` writes a numbered,
/// checksummed record stream without pause; five images are made of it while it writes, each
/// boots a new server whose guest finds a valid prefix of the stream (every record whole, longer
/// each time) and whose file system is clean. Stop (ACPI, a clean shutdown), start and reboot
/// show in its console; deleting it takes its boot files.
#[tokio::test]
async fn a_linux_guest_is_imaged_consistently_while_it_writes() {
    let c = TestCloud::start_with(Backend::Sqlite, |c| {
        c.driver = DriverKind::Qemu;
        c.accel = Some(Accel::Tcg);
        c.shutdown_timeout = Duration::from_secs(60);
        c.guest_sync_interval = Duration::from_millis(200);
    })
    .await
    .expect("sqlite");
    let t = c.admin_token().await;
    let linux = upload_linux_guest(&c, &t).await;
    let id = create_server(
        &c,
        &t,
        json!({"name": "writer", "imageRef": linux, "flavorRef": "1", "networks": "none"}),
    )
    .await;
    wait_console(&c, &t, &id, "stratus-guest: ready", 1).await;
    wait_console(&c, &t, &id, "stratus-guest: wrote 100 records", 1).await;
    let root = c.config.storage().join(format!("disks/servers/{id}"));
    assert!(root.join("disk.kernel").is_file() && root.join("disk.initrd").is_file());

    let kernel = c.get(&t, &format!("/image/v2/images/{linux}")).await.1["kernel_id"].clone();
    image_five_times(&c, &t, &id, &kernel, true).await;
    // The writer ran on through all of it.
    assert_eq!(
        c.wait_server(&t, &id, "ACTIVE").await["OS-EXT-STS:power_state"],
        1
    );

    // A stop is the guest's own clean shutdown (ACPI); start and a soft reboot boot it again.
    let (s, _) = act(&c, &t, &id, json!({"os-stop": null})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    c.wait_server(&t, &id, "SHUTOFF").await;
    wait_console(&c, &t, &id, "stratus-guest: shutting down", 1).await;
    let (s, _) = act(&c, &t, &id, json!({"os-start": null})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    wait_console(&c, &t, &id, "stratus-guest: ready", 2).await;
    let (s, _) = act(&c, &t, &id, json!({"reboot": {"type": "SOFT"}})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let out = wait_console(&c, &t, &id, "stratus-guest: ready", 3).await;
    assert_eq!(
        out.matches("stratus-guest: shutting down").count(),
        2,
        "{out}"
    );
    assert!(!out.contains("records bad"), "{out}");

    let (s, _) = c.delete(&t, &format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    c.wait_gone(&t, &format!("/compute/v2.1/servers/{id}"))
        .await;
    wait_no_process(&guest_dir(&c, &id)).await;
    assert!(
        !root.exists(),
        "the server's disk directory is left: {root:?}"
    );
}

/// Makes five images of the writing guest of server `id`, one after the other; each boots a new
/// server whose guest must find a valid prefix of the record stream, longer each time. Images of
/// image-backed servers keep `kernel` and, with `fsck`, have a clean file system.
async fn image_five_times(c: &TestCloud, t: &str, id: &str, kernel: &Value, fsck: bool) {
    let mut last = 0u64;
    for round in 0..5 {
        let (s, b) = act(
            c,
            t,
            id,
            json!({"createImage": {"name": format!("w{round}")}}),
        )
        .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        let image = b["image_id"].as_str().unwrap().to_string();
        let i = wait_image_active(c, t, &image).await;
        c.wait_no_task(t, id).await;
        if fsck {
            assert_eq!(&i["kernel_id"], kernel, "{i}");
            assert_fsck_clean(c, t, &image).await;
        }
        let copy = create_server(
            c,
            t,
            json!({"name": format!("copy{round}"), "imageRef": image, "flavorRef": "1",
                   "networks": "none"}),
        )
        .await;
        let out = wait_console(c, t, &copy, "stratus-guest: records ", 1).await;
        let verdict = out
            .lines()
            .find(|l| l.contains("stratus-guest: records "))
            .unwrap()
            .trim()
            .to_string();
        let n: u64 = verdict
            .strip_prefix("stratus-guest: records ok ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("image {round}: {verdict}"));
        assert!(
            n >= 100 && n > last,
            "image {round}: {n} records after {last}"
        );
        last = n;
        let (s, _) = c.delete(t, &format!("/compute/v2.1/servers/{copy}")).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        c.wait_gone(t, &format!("/compute/v2.1/servers/{copy}"))
            .await;
    }
}

/// The same guest booted from a volume made from its image (the volume keeps the image's boot
/// properties): five images of it while it writes, each a snapshot of its volume taken at one
/// point, each booting a server (from volumes made from the snapshots) that finds a valid prefix.
#[tokio::test]
async fn a_volume_backed_linux_guest_is_imaged_consistently_while_it_writes() {
    let c = TestCloud::start_with(Backend::Sqlite, |c| {
        c.driver = DriverKind::Qemu;
        c.accel = Some(Accel::Tcg);
        c.shutdown_timeout = Duration::from_secs(60);
        c.guest_sync_interval = Duration::from_millis(200);
    })
    .await
    .expect("sqlite");
    let t = c.admin_token().await;
    let linux = upload_linux_guest(&c, &t).await;
    let id = create_server(
        &c,
        &t,
        json!({"name": "vwriter", "flavorRef": "1", "networks": "none",
               "block_device_mapping_v2": [{"uuid": linux, "source_type": "image",
                   "destination_type": "volume", "boot_index": 0, "volume_size": 1,
                   "delete_on_termination": true}]}),
    )
    .await;
    wait_console(&c, &t, &id, "stratus-guest: ready", 1).await;
    wait_console(&c, &t, &id, "stratus-guest: wrote 100 records", 1).await;
    let boot = c.config.storage().join(format!("disks/servers/{id}"));
    assert!(boot.join("disk.kernel").is_file() && boot.join("disk.cmdline").is_file());
    image_five_times(&c, &t, &id, &Value::Null, false).await;
    let (s, _) = c.delete(&t, &format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    c.wait_gone(&t, &format!("/compute/v2.1/servers/{id}"))
        .await;
    wait_no_process(&guest_dir(&c, &id)).await;
    assert!(!boot.exists(), "the server's boot files are left: {boot:?}");
}

/// An image whose `kernel_id` names no image the caller may use is refused (400) and builds
/// nothing; a command line with a control character too.
#[tokio::test]
async fn a_kernel_boot_image_must_name_usable_boot_files() {
    let c = TestCloud::start(Backend::Sqlite).await.expect("sqlite");
    let t = c.admin_token().await;
    let (kernel, _) = c.upload_filled_image(&t, "k", 1).await;
    for (props, why) in [
        (
            json!({"kernel_id": "00000000-0000-0000-0000-00000000dead"}),
            "could not be found",
        ),
        (
            json!({"kernel_id": kernel, "os_command_line": "root=/dev/vda\u{7}"}),
            "control",
        ),
    ] {
        let mut body = json!({"name": "bad", "disk_format": "qcow2", "container_format": "bare"});
        body.as_object_mut()
            .unwrap()
            .extend(props.as_object().unwrap().clone());
        let image = c.upload_image(&t, body, filled_qcow2(2)).await;
        let (s, b) = c
            .mv("2.47")
            .post(
                &t,
                "/compute/v2.1/servers",
                json!({"server": {"name": "k", "imageRef": image, "flavorRef": "1",
                                  "networks": "none"}}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert!(
            b["badRequest"]["message"].as_str().unwrap().contains(why),
            "{b}"
        );
    }
    let (_, b) = c.get(&t, "/compute/v2.1/servers").await;
    assert_eq!(b["servers"].as_array().unwrap().len(), 0, "{b}");
}
