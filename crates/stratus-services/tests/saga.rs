//! The saga engine on its own, with a saga kind made for the test, on a real SQLite store:
//! order of steps and undos, steps that refuse, failed undos (stuck, then retried by an
//! operator), and a second node taking over after the first one died with its lease.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stratus_services::saga::{self, Faults, LeaseTimes, Sagas, StepError, StepResult, Why};
use stratus_services::ServiceError;
use stratus_store::Store;

/// What the toy saga's steps use: a log of every run and undo, and a switch that makes the undo
/// of `b` fail.
#[derive(Default)]
struct Toy {
    log: Mutex<Vec<String>>,
    fail_undo_b: AtomicBool,
}

impl Toy {
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    async fn run(&self, name: &str, s: &mut ToyState, retry: bool) -> StepResult {
        self.log
            .lock()
            .unwrap()
            .push(format!("run {name}{}", if retry { " (retry)" } else { "" }));
        if name == "b" && s.hang_b && !retry {
            std::future::pending::<()>().await;
        }
        if s.fail.as_deref() == Some(name) {
            return Err(StepError::Failed(ServiceError::Internal(format!(
                "{name} broke"
            ))));
        }
        if s.refuse.as_deref() == Some(name) {
            return Err(StepError::Refused(ServiceError::Conflict("busy".into())));
        }
        s.done.push(name.to_string());
        Ok(())
    }

    async fn undo(&self, name: &str, s: &ToyState, why: &Why) -> stratus_services::Result<()> {
        if name == "b" && self.fail_undo_b.load(Ordering::SeqCst) {
            return Err(ServiceError::Internal("undo of b broke".into()));
        }
        self.log.lock().unwrap().push(format!(
            "undo {name} after {:?} ({})",
            s.done,
            why.error.clone().unwrap_or_default()
        ));
        Ok(())
    }
}

/// The toy saga's state: `fail` names a step that fails, `refuse` one that refuses; `hang_b`
/// makes the first attempt at `b` wait forever; `done` lists the steps that ran.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct ToyState {
    fail: Option<String>,
    refuse: Option<String>,
    hang_b: bool,
    done: Vec<String>,
}

stratus_services::declare_saga! {
    /// Three steps `a`, `b`, `c`: the whole declaration of a saga kind.
    ToySaga = "toy" (Toy, ToyState) {
        "a" => run_a, undo_a;
        "b" => run_b, undo_b;
        "c" => run_c, undo_c;
    }
}

async fn run_a(t: &Toy, s: &mut ToyState, retry: bool) -> StepResult {
    t.run("a", s, retry).await
}
async fn run_b(t: &Toy, s: &mut ToyState, retry: bool) -> StepResult {
    t.run("b", s, retry).await
}
async fn run_c(t: &Toy, s: &mut ToyState, retry: bool) -> StepResult {
    t.run("c", s, retry).await
}
async fn undo_a(t: &Toy, s: &ToyState, why: &Why) -> stratus_services::Result<()> {
    t.undo("a", s, why).await
}
async fn undo_b(t: &Toy, s: &ToyState, why: &Why) -> stratus_services::Result<()> {
    t.undo("b", s, why).await
}
async fn undo_c(t: &Toy, s: &ToyState, why: &Why) -> stratus_services::Result<()> {
    t.undo("c", s, why).await
}

async fn store(dir: &tempfile::TempDir) -> Arc<Store> {
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    Arc::new(Store::open(&url).await.unwrap())
}

fn engine(store: &Arc<Store>, node: &str, toy: &Arc<Toy>, lease_ms: u64) -> Arc<Sagas> {
    let s = Arc::new(Sagas::new(
        store.clone(),
        node.into(),
        LeaseTimes {
            lease: Duration::from_millis(lease_ms),
        },
        Faults::default(),
        std::env::temp_dir(),
    ));
    s.register::<ToySaga>(toy.clone());
    s
}

async fn wait_state(store: &Store, id: &str, state: &str) -> stratus_store::SagaRec {
    for _ in 0..500 {
        if let Some(s) = stratus_store::saga_get(store.pool(), id).await.unwrap() {
            if s.state.as_str() == state {
                return s;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("saga {id} never became {state}");
}

fn state(fail: Option<&str>, refuse: Option<&str>, hang_b: bool) -> ToyState {
    ToyState {
        fail: fail.map(String::from),
        refuse: refuse.map(String::from),
        hang_b,
        done: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_run_in_order_and_record_before_and_after() {
    let dir = tempfile::tempdir().unwrap();
    let st = store(&dir).await;
    let toy = Arc::new(Toy::default());
    let sagas = engine(&st, "n1", &toy, 30_000);
    // The first step runs in the caller's task, the rest in the background.
    let d = sagas
        .begin::<ToySaga>("s1".into(), &state(None, None, false), 1)
        .await
        .unwrap();
    assert_eq!(d.done, ["a"]);
    let done = wait_state(&st, "s1", "done").await;
    assert_eq!(done.step, 3);
    assert_eq!(toy.log(), ["run a", "run b", "run c"]);
    let view = saga::show(&st, "s1").await.unwrap().unwrap();
    // Each step's undo record is the state it started from.
    let rows: Vec<(String, String, Vec<String>)> = view
        .steps
        .iter()
        .map(|s| {
            let undo: ToyState = serde_json::from_str(&s.undo).unwrap();
            (s.name.clone(), s.status.to_string(), undo.done)
        })
        .collect();
    let done = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        rows,
        [
            ("a".into(), "done".into(), done(&[])),
            ("b".into(), "done".into(), done(&["a"])),
            ("c".into(), "done".into(), done(&["a", "b"])),
        ]
    );
    let last: ToyState = serde_json::from_str(&view.saga.data).unwrap();
    assert_eq!(last.done, ["a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_undoes_every_started_step_last_first() {
    let dir = tempfile::tempdir().unwrap();
    let st = store(&dir).await;
    let toy = Arc::new(Toy::default());
    let sagas = engine(&st, "n1", &toy, 30_000);
    sagas
        .begin::<ToySaga>("s2".into(), &state(Some("c"), None, false), 1)
        .await
        .unwrap();
    let undone = wait_state(&st, "s2", "undone").await;
    assert_eq!(undone.error.as_deref(), Some("c: internal error: c broke"));
    let why = "c: internal error: c broke";
    assert_eq!(
        toy.log(),
        [
            "run a".to_string(),
            "run b".into(),
            "run c".into(),
            format!("undo c after [\"a\", \"b\"] ({why})"),
            format!("undo b after [\"a\"] ({why})"),
            format!("undo a after [] ({why})"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_step_that_refuses_leaves_no_saga() {
    let dir = tempfile::tempdir().unwrap();
    let st = store(&dir).await;
    let toy = Arc::new(Toy::default());
    let sagas = engine(&st, "n1", &toy, 30_000);
    let e = sagas
        .begin::<ToySaga>("s3".into(), &state(None, Some("a"), false), 2)
        .await
        .unwrap_err();
    assert!(matches!(e, ServiceError::Conflict(_)), "{e:?}");
    assert!(stratus_store::saga_get(st.pool(), "s3")
        .await
        .unwrap()
        .is_none());
    // A refusal later on undoes the steps before it, not itself.
    let e = sagas
        .begin::<ToySaga>("s4".into(), &state(None, Some("b"), false), 2)
        .await
        .unwrap_err();
    assert!(matches!(e, ServiceError::Conflict(_)), "{e:?}");
    assert_eq!(
        toy.log(),
        ["run a", "run a", "run b", "undo a after [] (b: busy)"]
    );
    assert_eq!(wait_state(&st, "s4", "undone").await.step, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_undo_is_stuck_until_an_operator_retries() {
    let dir = tempfile::tempdir().unwrap();
    let st = store(&dir).await;
    let toy = Arc::new(Toy::default());
    toy.fail_undo_b.store(true, Ordering::SeqCst);
    let sagas = engine(&st, "n1", &toy, 200);
    sagas
        .begin::<ToySaga>("s5".into(), &state(Some("c"), None, false), 0)
        .await
        .unwrap();
    let stuck = wait_state(&st, "s5", "stuck").await;
    assert!(stuck.error.unwrap().starts_with("undo of b failed"));
    // Scans do not pick a stuck saga up.
    let scanner = sagas.spawn_scanner();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(wait_state(&st, "s5", "stuck").await.step, 1);
    assert!(!toy.log().iter().any(|l| l.starts_with("undo a")));
    // The operator fixed the cause and retries: the undo goes on from b.
    toy.fail_undo_b.store(false, Ordering::SeqCst);
    assert!(saga::retry(&st, "s5").await.unwrap());
    wait_state(&st, "s5", "undone").await;
    scanner.abort();
    let log = toy.log();
    assert_eq!(
        &log[log.len() - 2..],
        [
            "undo b after [\"a\"] (c: internal error: c broke)",
            "undo a after [] (c: internal error: c broke)"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_resumes_a_saga_once_the_lease_ran_out() {
    let dir = tempfile::tempdir().unwrap();
    let st = store(&dir).await;
    let toy = Arc::new(Toy::default());
    // Node 1 runs on a runtime of its own, which is shut down while step b hangs: the node dies
    // with the lease.
    let rt1 = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (st1, toy1) = (st.clone(), toy.clone());
    let began = rt1
        .spawn(async move {
            let node1 = engine(&st1, "n1", &toy1, 1000);
            node1
                .begin::<ToySaga>("s6".into(), &state(None, None, true), 1)
                .await
        })
        .await
        .unwrap();
    assert!(began.is_ok());
    tokio::time::sleep(Duration::from_millis(100)).await;
    rt1.shutdown_background();
    let held = stratus_store::saga_get(st.pool(), "s6")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (held.owner.as_str(), held.state.as_str()),
        ("n1", "running")
    );

    // Node 2 looks while the lease (renewed at least every third of a second, for a second)
    // still runs: nothing to take. After it ran out, node 2 takes the saga and runs the
    // interrupted step again, told it is a retry.
    let node2 = engine(&st, "n2", &toy, 300);
    assert_eq!(node2.scan().await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(node2.scan().await.unwrap(), 1);
    let done = wait_state(&st, "s6", "done").await;
    assert_eq!(done.owner, "n2");
    assert_eq!(toy.log(), ["run a", "run b", "run b (retry)", "run c"]);
}

/// A node's scanner never takes a saga that `begin` is running on the same node: each step of
/// each saga runs once, however often the scanner looks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_does_not_take_a_saga_being_begun() {
    let dir = tempfile::tempdir().unwrap();
    let st = store(&dir).await;
    let toy = Arc::new(Toy::default());
    // Lease 200 ms: the scanner looks every 50 ms.
    let sagas = engine(&st, "n1", &toy, 200);
    let scanner = sagas.spawn_scanner();
    let mut tasks = Vec::new();
    for n in 0..40 {
        let sagas = sagas.clone();
        tasks.push(tokio::spawn(async move {
            sagas
                .begin::<ToySaga>(format!("r{n}"), &state(None, None, false), 3)
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().done, ["a", "b", "c"]);
    }
    scanner.abort();
    let log = toy.log();
    assert_eq!(log.len(), 40 * 3, "a step ran twice: {log:?}");
    assert!(!log.iter().any(|l| l.contains("retry")), "{log:?}");
}
