//! The QEMU driver against real `qemu-system-x86_64` guests booting the demo boot sector (it
//! prints its greeting on the serial console and halts): boot, pause, a new driver finding a
//! running guest again (as after a restart of `stratus serve`), a stop that falls back to a hard
//! stop when the guest ignores ACPI, a guest that dies by itself, destroy leaving nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use stratus_driver::accel::Accel;
use stratus_driver::qemu::QemuDriver;
use stratus_driver::{
    demo_boot_sector, ComputeDriver, GuestDisk, GuestSpec, GuestState, DEMO_MARKER,
};

/// Kills, when dropped, the QEMU processes of the guests under its directory: a failing test
/// leaves no guest running.
struct KillGuests(PathBuf);

impl Drop for KillGuests {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return;
        };
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let pid = std::fs::read_to_string(e.path().join("qemu.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok());
            if let Some(pid) = pid.filter(|p| *p > 0) {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&id) {
                    // SAFETY: the pid is this test's guest's QEMU.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }
}

/// A scratch directory and its guests directory, whose guests die with the returned guard.
fn lab() -> (tempfile::TempDir, PathBuf, KillGuests) {
    let tmp = tempfile::tempdir().unwrap();
    let guests = tmp.path().join("guests");
    (tmp, guests.clone(), KillGuests(guests))
}

/// A driver running guests under TCG in `guests`.
async fn tcg(guests: &Path) -> QemuDriver {
    QemuDriver::new(guests.to_path_buf(), None, Some(Accel::Tcg))
        .await
        .unwrap()
}

/// Runs `qemu-img` with `args`; it must succeed.
fn qemu_img(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let o = std::process::Command::new("qemu-img")
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    o
}

fn demo_disk(dir: &Path) -> PathBuf {
    let mut disk = demo_boot_sector().to_vec();
    disk.resize(1 << 20, 0);
    let p = dir.join("demo.raw");
    std::fs::write(&p, disk).unwrap();
    p
}

fn spec(id: &str, disk: &Path) -> GuestSpec {
    GuestSpec {
        id: id.into(),
        vcpus: 1,
        ram_mb: 64,
        disks: vec![GuestDisk {
            drive: "root".into(),
            path: disk.to_path_buf(),
            format: "raw".into(),
        }],
        kernel: None,
    }
}

async fn wait_console(d: &QemuDriver, id: &str, times: usize) -> String {
    let start = Instant::now();
    loop {
        let text = d.console(id, None).await.unwrap();
        if text.matches(DEMO_MARKER).count() >= times {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "console: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pid_of(dir: &Path, id: &str) -> i32 {
    std::fs::read_to_string(dir.join(id).join("qemu.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Whether `pid` is a live process (a zombie waiting to be reaped is not).
fn alive(pid: i32) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    // SAFETY: signal 0 only checks that the process exists.
    !cmdline.is_empty() && unsafe { libc::kill(pid, 0) == 0 }
}

#[tokio::test]
async fn a_guest_boots_pauses_survives_its_driver_and_stops() {
    let (tmp, guests, _cleanup) = lab();
    let disk = demo_disk(tmp.path());
    let d = QemuDriver::new(guests.clone(), None, None).await.unwrap();
    assert!(matches!(d.accel(), Accel::Kvm | Accel::Tcg));
    eprintln!("accelerator: {}", d.accel().as_str());
    // The probe's answer is kept with the QEMU version it holds for, and reused.
    let kept = std::fs::read_to_string(guests.join("accel")).unwrap();
    assert!(
        kept.starts_with(&format!("{} QEMU emulator version ", d.accel().as_str())),
        "{kept}"
    );
    let t = Instant::now();
    let again = QemuDriver::new(guests.clone(), None, None).await.unwrap();
    assert_eq!(again.accel(), d.accel());
    eprintln!("second start without a probe: {:?}", t.elapsed());
    assert_eq!(d.guests().await.unwrap(), Vec::<String>::new());
    assert_eq!(d.describe(), format!("qemu ({})", d.accel().as_str()));
    let id = "11111111-2222-3333-4444-555555555555";
    let s = spec(id, &disk);

    assert_eq!(d.state(id).await.unwrap(), Some(GuestState::Off));
    d.start(&s).await.unwrap();
    let text = wait_console(&d, id, 1).await;
    assert!(text.contains("Booting from Hard Disk"), "{text}");
    assert_eq!(d.state(id).await.unwrap(), Some(GuestState::Running));
    assert_eq!(d.guests().await.unwrap(), vec![id.to_string()]);
    let pid = pid_of(&guests, id);
    // Starting a running guest leaves it as it is.
    d.start(&s).await.unwrap();
    assert_eq!(pid_of(&guests, id), pid);

    d.set_paused(id, true).await.unwrap();
    assert_eq!(d.state(id).await.unwrap(), Some(GuestState::Paused));
    // A new driver over the same directory (a restarted `stratus serve`) finds the guest.
    let again = QemuDriver::new(guests.clone(), None, Some(d.accel()))
        .await
        .unwrap();
    assert_eq!(again.state(id).await.unwrap(), Some(GuestState::Paused));
    again.set_paused(id, false).await.unwrap();
    assert_eq!(d.state(id).await.unwrap(), Some(GuestState::Running));

    // The demo disk ignores ACPI: after the grace time the guest is stopped hard.
    d.stop(id, Duration::from_millis(300)).await.unwrap();
    assert_eq!(d.state(id).await.unwrap(), Some(GuestState::Off));
    assert!(!alive(pid));
    d.stop(id, Duration::from_millis(300)).await.unwrap();

    // Booted again: the console keeps both boots.
    d.start(&s).await.unwrap();
    wait_console(&d, id, 2).await;
    let last = d.console(id, Some(1)).await.unwrap();
    assert!(
        !last.contains('\n') || last.trim_end().lines().count() == 1,
        "{last:?}"
    );

    d.destroy(id).await.unwrap();
    assert_eq!(d.state(id).await.unwrap(), Some(GuestState::Off));
    assert!(!guests.join(id).exists());
    d.destroy(id).await.unwrap();
}

#[tokio::test]
async fn a_guest_that_dies_is_off_and_bad_input_names_no_path() {
    let (tmp, guests, _cleanup) = lab();
    let disk = demo_disk(tmp.path());
    let d = tcg(&guests).await;
    let id = "66666666-7777-8888-9999-000000000000";
    d.start(&spec(id, &disk)).await.unwrap();
    wait_console(&d, id, 1).await;
    let pid = pid_of(&guests, id);
    // SAFETY: the pid is the guest's QEMU, started by this test.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let start = Instant::now();
    while alive(pid) && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(d.state(id).await.unwrap(), Some(GuestState::Off));
    d.destroy(id).await.unwrap();

    // Ids that could name another path, and disks of formats QEMU would probe, are refused.
    for bad in ["", "../x", "a/b", "x y"] {
        assert!(d.state(bad).await.is_err(), "{bad:?}");
    }
    let mut s = spec("abc", &disk);
    s.disks[0].format = "vmdk".into();
    assert!(d.start(&s).await.is_err());
    // A disk QEMU cannot open: the start fails with QEMU's reason and leaves no process.
    let s = spec("def", &tmp.path().join("missing.qcow2"));
    let err = d.start(&s).await.unwrap_err().to_string();
    assert!(err.contains("QEMU refused"), "{err}");
    assert_eq!(d.state("def").await.unwrap(), Some(GuestState::Off));
}

#[tokio::test]
async fn a_running_guest_switches_to_a_new_top_layer() {
    let (tmp, guests, _cleanup) = lab();
    // Layers are qcow2, as volumes' are (`change-backing-file` names the backing's format
    // after the image's own).
    let raw = demo_disk(tmp.path());
    let disk = tmp.path().join("demo.qcow2");
    qemu_img(&[
        "convert".as_ref(),
        "-f".as_ref(),
        "raw".as_ref(),
        "-O".as_ref(),
        "qcow2".as_ref(),
        raw.as_os_str(),
        disk.as_os_str(),
    ]);
    let d = tcg(&guests).await;
    let id = "77777777-8888-9999-aaaa-bbbbbbbbbbbb";
    let mut s = spec(id, &disk);
    s.disks[0].format = "qcow2".into();
    d.start(&s).await.unwrap();
    wait_console(&d, id, 1).await;
    assert_eq!(d.top_of(id, "root").await.unwrap(), Some(disk.clone()));

    // The old top is linked at its new name, the guest switched, the old name dropped.
    let frozen = tmp.path().join("frozen.qcow2");
    std::fs::hard_link(&disk, &frozen).unwrap();
    let top = tmp.path().join("top.qcow2");
    d.switch_top(id, "root", &top, &frozen).await.unwrap();
    std::fs::remove_file(&disk).unwrap();
    assert_eq!(d.top_of(id, "root").await.unwrap(), Some(top.clone()));
    // Again (a retry): nothing switches twice; the backing name is written again.
    d.switch_top(id, "root", &top, &frozen).await.unwrap();
    assert_eq!(d.top_of(id, "root").await.unwrap(), Some(top.clone()));
    let info = qemu_img(&[
        "info".as_ref(),
        "-U".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        "--output=json".as_ref(),
        top.as_os_str(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["backing-filename"], frozen.to_str().unwrap(), "{v}");
    assert_eq!(v["backing-filename-format"], "qcow2", "{v}");
    assert!(d.switch_top(id, "nope", &top, &frozen).await.is_err());

    // Booted again from its new top, the guest reads the old data through it.
    d.stop(id, Duration::ZERO).await.unwrap();
    let mut s = spec(id, &top);
    s.disks[0].format = "qcow2".into();
    d.start(&s).await.unwrap();
    wait_console(&d, id, 2).await;
    d.destroy(id).await.unwrap();
}

/// The accelerator probe's boot sector gets into 64-bit long mode and prints its marker under
/// TCG (which always works): a KVM that fails it fails the guest, not the sector.
#[tokio::test]
async fn the_probe_sector_reaches_long_mode() {
    let (tmp, guests, _cleanup) = lab();
    let mut disk = stratus_driver::accel::probe_sector().to_vec();
    disk.resize(1 << 20, 0);
    let path = tmp.path().join("probe.raw");
    std::fs::write(&path, disk).unwrap();
    let d = tcg(&guests).await;
    let id = "99999999-8888-7777-6666-555555555555";
    d.start(&spec(id, &path)).await.unwrap();
    let start = Instant::now();
    loop {
        let text = d.console(id, None).await.unwrap();
        if text.contains(stratus_driver::accel::PROBE_MARKER) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.destroy(id).await.unwrap();
}

/// A running guest's disk is copied while it runs: the copy is the whole disk (no backing file)
/// with the disk's content, the guest never stops, and no job or node is left in QEMU; a copy
/// left unfinished (as by a process killed mid-copy) is ended by `end_backups`.
#[tokio::test]
async fn a_running_guest_is_copied_without_stopping_it() {
    let (tmp, guests, _cleanup) = lab();
    let raw = demo_disk(tmp.path());
    let base = tmp.path().join("base.qcow2");
    let disk = tmp.path().join("disk.qcow2");
    qemu_img(&[
        "convert".as_ref(),
        "-O".as_ref(),
        "qcow2".as_ref(),
        raw.as_os_str(),
        base.as_os_str(),
    ]);
    qemu_img(&[
        "create".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        "-F".as_ref(),
        "qcow2".as_ref(),
        "-b".as_ref(),
        base.as_os_str(),
        disk.as_os_str(),
        "4M".as_ref(),
    ]);
    let d = tcg(&guests).await;
    let id = "12121212-3434-5656-7878-909090909090";
    let mut s = spec(id, &disk);
    s.disks[0].format = "qcow2".into();
    d.start(&s).await.unwrap();
    wait_console(&d, id, 1).await;

    let copy = tmp.path().join("copy.qcow2");
    assert!(d.backup(id, "root", &copy).await.unwrap());
    assert_eq!(d.state(id).await.unwrap(), Some(GuestState::Running));
    let info = qemu_img(&["info".as_ref(), "--output=json".as_ref(), copy.as_os_str()]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["virtual-size"], 4 << 20, "{v}");
    assert!(v.get("backing-filename").is_none(), "{v}");
    qemu_img(&[
        "compare".as_ref(),
        "-U".as_ref(),
        disk.as_os_str(),
        copy.as_os_str(),
    ]);
    let sock = guests.join(id).join("qmp.sock");
    let leftovers = |q: serde_json::Value| {
        q.as_array()
            .unwrap()
            .iter()
            .filter(|j| {
                let name = j["id"].as_str().or(j["node-name"].as_str()).unwrap_or("");
                name.starts_with("stratus-backup-")
            })
            .count()
    };
    {
        let mut q = stratus_driver::qmp::Qmp::connect(&sock).await.unwrap();
        assert_eq!(leftovers(q.execute("query-jobs", None).await.unwrap()), 0);
        let nodes = q.execute("query-named-block-nodes", None).await.unwrap();
        assert_eq!(leftovers(nodes), 0);

        // A copy left running (throttled to a crawl), as a killed process leaves it.
        let stale = tmp.path().join("stale.qcow2");
        qemu_img(&[
            "create".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            stale.as_os_str(),
            "4M".as_ref(),
        ]);
        let add = serde_json::json!({"node-name": "stratus-backup-root", "driver": "qcow2",
            "file": {"driver": "file", "filename": stale.to_string_lossy()}});
        q.execute("blockdev-add", Some(add)).await.unwrap();
        let job = serde_json::json!({"job-id": "stratus-backup-root", "device": "root",
            "target": "stratus-backup-root", "sync": "full", "speed": 1, "auto-dismiss": false});
        q.execute("blockdev-backup", Some(job)).await.unwrap();
        assert_eq!(leftovers(q.execute("query-jobs", None).await.unwrap()), 1);
    }
    d.end_backups(id).await.unwrap();
    let mut q = stratus_driver::qmp::Qmp::connect(&sock).await.unwrap();
    assert_eq!(leftovers(q.execute("query-jobs", None).await.unwrap()), 0);
    let nodes = q.execute("query-named-block-nodes", None).await.unwrap();
    assert_eq!(leftovers(nodes), 0);
    drop(q);
    // A new copy after one was left: the same name, made again.
    assert!(d.backup(id, "root", &copy).await.unwrap());
    assert_eq!(d.state(id).await.unwrap(), Some(GuestState::Running));
    d.destroy(id).await.unwrap();
}
