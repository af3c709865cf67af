//! Block-storage rules tested on the services alone, without HTTP: a real SQLite store and real
//! qcow2 layers made by `qemu-img`. A volume is recorded once however often its saga step runs,
//! and counted against the quota once; a snapshot can be taken again after an interruption at
//! any point and undone from any point, leaving the volume's data where it was.

use serde_json::Map;
use std::path::Path;
use std::sync::Arc;
use stratus_blob::format::DiskFormat;
use stratus_services::disks::Disks;
use stratus_services::guests::Guests;
use stratus_services::images::Images;
use stratus_services::model::{SnapshotStatus, VolumeRec, VolumeStatus};
use stratus_services::quotas::{QuotaService, Quotas};
use stratus_services::saga::{Faults, LeaseTimes, Sagas};
use stratus_services::volume_create::VolumePlan;
use stratus_services::volumes::{SnapshotPlan, Volumes};
use stratus_store::Store;

struct Block {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    disks: Arc<Disks>,
    quotas: Arc<Quotas>,
    volumes: Volumes,
}

async fn block() -> Block {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let store = Arc::new(Store::open(&url).await.unwrap());
    let images = Arc::new(Images::new(store.clone(), dir.path().join("images"), 1 << 30).unwrap());
    let disks = Arc::new(Disks::new(dir.path().join("disks"), "node-a"));
    let quotas = Arc::new(Quotas::new(store.clone()));
    let sagas = Arc::new(Sagas::new(
        store.clone(),
        "node-a".into(),
        LeaseTimes {
            lease: std::time::Duration::from_secs(30),
        },
        Faults::default(),
        dir.path().to_path_buf(),
    ));
    let guests = Arc::new(Guests::new(
        store.clone(),
        disks.clone(),
        Arc::new(stratus_driver::NoGuests),
        std::time::Duration::from_secs(1),
        None,
    ));
    let volumes = Volumes::new(
        store.clone(),
        images,
        disks.clone(),
        quotas.clone(),
        sagas,
        guests,
    );
    Block {
        _dir: dir,
        store,
        disks,
        quotas,
        volumes,
    }
}

fn blank_plan(id: &str, size_gb: i64) -> VolumePlan {
    VolumePlan {
        volume: VolumeRec {
            id: id.into(),
            project_id: "p1".into(),
            user_id: "u1".into(),
            enterprise_project_id: "0".into(),
            name: Some(id.into()),
            description: None,
            size_gb,
            status: VolumeStatus::Creating,
            bootable: false,
            image_id: None,
            snapshot_id: None,
            image_metadata: None,
            disk: format!("volumes/{id}/first.qcow2"),
            server_id: None,
            device: None,
            delete_on_termination: false,
            metadata: Map::new(),
            created_at: 1,
            updated_at: 1,
        },
        backing: None,
        format: DiskFormat::Qcow2,
        fill: None,
    }
}

/// The virtual size in bytes `qemu-img info` reports for a qcow2 layer.
fn virtual_size(path: &Path) -> u64 {
    let out = std::process::Command::new("qemu-img")
        .args(["info", "-f", "qcow2", "--output=json"])
        .arg(path)
        .output()
        .expect("qemu-img runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["virtual-size"].as_u64().unwrap()
}

/// Runs one `qemu-io` command on a qcow2 layer; a failed one (a read that finds other data)
/// fails the test.
fn qemu_io(path: &Path, cmd: &str) {
    let out = std::process::Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", cmd])
        .arg(path)
        .output()
        .expect("qemu-io runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("Pattern verification failed"),
        "{cmd}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn in_use(b: &Block, what: &str) -> i64 {
    let u = b
        .quotas
        .usage("p1", QuotaService::Volume, false)
        .await
        .unwrap();
    u[what].in_use
}

#[tokio::test]
async fn a_volume_is_recorded_and_counted_once_however_often_its_steps_run() {
    let b = block().await;
    let maker = b.volumes.maker();
    let plan = blank_plan("v1", 2);
    for _ in 0..3 {
        maker.record(&plan).await.unwrap();
    }
    assert_eq!(in_use(&b, "volumes").await, 1);
    assert_eq!(in_use(&b, "gigabytes").await, 2);
    for _ in 0..2 {
        maker.make(&plan).await.unwrap();
    }
    assert_eq!(virtual_size(&b.disks.path(&plan.volume.disk)), 2 << 30);
    maker.settle("v1", true).await.unwrap();
    // Settling again changes nothing: only a `creating` volume moves.
    maker.settle("v1", false).await.unwrap();
    let v = stratus_store::volume_get(b.store.pool(), "v1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.status, VolumeStatus::Available);

    // Removing it removes its layer and frees the quota.
    maker.remove(&["v1".to_string()]).await.unwrap();
    assert!(!b.disks.exists(&plan.volume.disk).await);
    assert_eq!(in_use(&b, "volumes").await, 0);
}

#[tokio::test]
async fn a_snapshot_can_be_taken_again_and_undone_from_any_point() {
    let b = block().await;
    let maker = b.volumes.maker();
    let plan = blank_plan("v2", 1);
    maker.record(&plan).await.unwrap();
    maker.make(&plan).await.unwrap();
    maker.settle("v2", true).await.unwrap();
    let first = plan.volume.disk.clone();

    // Taken twice (a retry after the step finished): one snapshot, counted once.
    let snap = SnapshotPlan::new("v2", Some("s".into()), None, Map::new());
    let a = b.volumes.snapshot_apply(&snap).await.unwrap();
    let again = b.volumes.snapshot_apply(&snap).await.unwrap();
    assert_eq!(a, again);
    assert_eq!(a.status, SnapshotStatus::Available);
    assert_eq!(in_use(&b, "snapshots").await, 1);
    let v = stratus_store::volume_get(b.store.pool(), "v2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.disk, snap.active);
    assert!(b.disks.exists(&snap.frozen()).await);
    assert!(
        !b.disks.exists(&first).await,
        "the old layer became the snapshot's"
    );

    // Undone (twice, as after a crash during the undo): the snapshot is gone and counted no
    // more; the volume keeps what it wrote since on the layer it now writes (the frozen one stays
    // while the volume stands on it).
    qemu_io(&b.disks.path(&snap.active), "write -P 0xab 0 64k");
    b.volumes.snapshot_revert(&snap).await.unwrap();
    b.volumes.snapshot_revert(&snap).await.unwrap();
    assert!(stratus_store::snapshot_get(b.store.pool(), &snap.id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(in_use(&b, "snapshots").await, 0);
    assert!(b.disks.exists(&snap.active).await);
    assert!(b.disks.exists(&snap.frozen()).await);
    qemu_io(&b.disks.path(&snap.active), "read -P 0xab 0 64k");

    // Interrupted after the rename, before anything was recorded: undoing it puts the volume's
    // layer back where the volume's record says it is.
    let v = stratus_store::volume_get(b.store.pool(), "v2")
        .await
        .unwrap()
        .unwrap();
    let cut = SnapshotPlan::new("v2", None, None, Map::new());
    b.disks.rename(&v.disk, &cut.frozen()).await.unwrap();
    b.volumes.snapshot_revert(&cut).await.unwrap();
    assert!(b.disks.exists(&v.disk).await);
    assert!(!b.disks.exists(&cut.frozen()).await);
    assert!(!b.disks.exists(&cut.active).await);
}
