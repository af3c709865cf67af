//! The saga engine: multi-step operations that survive the death of the process running them.
//!
//! A saga kind is one declaration ([`Saga`]): a name, a typed state (its parameters, the caller
//! included, and what its steps add) and its steps, each a run and an undo ([`declare_saga!`](crate::declare_saga)).
//!
//! A saga is a row (`sagas`) holding its kind, its state, the index of its current step and its
//! data (the state as JSON); each step is a row (table `saga_steps`). Before a step runs, the row is
//! written as `started` together with the step's *undo record* (the state the step starts from,
//! which is all its undo needs), so a step that partly succeeds can be undone; after it runs, the
//! row becomes `done` and the saga moves on, both in one transaction. Steps are idempotent: a step
//! found `started` after a crash is run again (told that it is a retry).
//!
//! A step that fails makes the saga `undoing`: the undo of every step that started is run, last
//! first, each recorded `undone`. An undo that fails leaves the saga `stuck` with the error, for an
//! operator (`stratus saga list|show|retry`); stuck sagas are never picked up by themselves.
//!
//! Whoever runs a saga holds its lease (`owner`, `lease_until`), renewed while it runs; every
//! write checks that the writer still holds it. Each node scans for live sagas it may take: its
//! own (a restart of the same node) at once, any other when the lease has run out.

use crate::{Result, ServiceError};
use futures::future::BoxFuture;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use stratus_store::{
    self as store, now_micros, SagaRec, SagaState, SagaStepRec, StepStatus, Store,
};

/// How a step ended when it did not succeed.
#[derive(Debug)]
pub enum StepError {
    /// It changed nothing and refuses to go on (a precondition did not hold): the saga is undone
    /// without undoing this step.
    Refused(ServiceError),
    /// It failed, possibly halfway: the saga is undone, this step included.
    Failed(ServiceError),
    /// The operation should stop without it being a failure (what it was making was deleted by
    /// its user): the saga is undone, and the undos are told not to report an error.
    Quiet(String),
}

impl From<ServiceError> for StepError {
    fn from(e: ServiceError) -> Self {
        StepError::Failed(e)
    }
}

impl From<stratus_store::StoreError> for StepError {
    fn from(e: stratus_store::StoreError) -> Self {
        StepError::Failed(e.into())
    }
}

/// Why a saga is being undone, as its undos see it.
#[derive(Debug, Clone)]
pub struct Why {
    /// The failure to report, or `None` for a quiet stop.
    pub error: Option<String>,
}

/// Who started a saga, as its steps may need to know: the caller of the request, kept in the
/// saga's state so that a node resuming it acts for the same caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Caller {
    pub user_id: String,
    pub user_name: String,
    pub project_id: Option<String>,
    pub project_name: Option<String>,
}

impl Caller {
    pub fn of(caller: &crate::authz::Authorized) -> Caller {
        Caller {
            user_id: caller.user.id.clone(),
            user_name: caller.user.name.clone(),
            project_id: caller.project().map(|p| p.id.clone()),
            project_name: caller.project().map(|p| p.name.clone()),
        }
    }
}

/// What a step returns.
pub type StepResult = std::result::Result<(), StepError>;

/// Runs a step on the saga's state, which it may add to. It must be idempotent: `retry` is set
/// when an earlier attempt started it and may have done any part of it.
pub type RunFn<C, S> = for<'a> fn(&'a C, &'a mut S, bool) -> BoxFuture<'a, StepResult>;

/// Undoes a step from the state as it was when the step started; idempotent too.
pub type UndoFn<C, S> = for<'a> fn(&'a C, &'a S, &'a Why) -> BoxFuture<'a, Result<()>>;

/// One step of a saga kind: its name (in records, logs and fault rules), what it does and what
/// undoes it.
pub struct Step<C, S> {
    pub name: &'static str,
    pub run: RunFn<C, S>,
    pub undo: UndoFn<C, S>,
}

/// A kind of saga, declared once: its name, its steps in order, the services its steps use
/// (`Ctx`) and its state. The state is the saga's parameters (the caller included) and whatever
/// its steps add; it is saved with every step, and the state a step started from is the undo
/// record of that step, so an undo needs nothing else.
///
/// Declared with [`declare_saga!`](crate::declare_saga).
pub trait Saga: 'static {
    const NAME: &'static str;
    type Ctx: Send + Sync + 'static;
    type State: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static;
    const STEPS: &'static [Step<Self::Ctx, Self::State>];
}

/// Declares a saga kind in one item: its type, name, context, state and steps, each step
/// `"name" => run_fn, undo_fn;` where the functions are
/// `async fn(&Ctx, &mut State, bool) -> StepResult` and `async fn(&Ctx, &State, &Why) -> Result<()>`
/// ([`nothing`] for a step with nothing to undo).
///
/// ```ignore
/// declare_saga! {
///     /// createBackup: createImage, then old backups rotated out.
///     pub Backup = "create-backup" (ImageSagas, ImageSagaState) {
///         "reserve" => reserve, unreserve;
///         "register" => register, discard;
///     }
/// }
/// ```
#[macro_export]
macro_rules! declare_saga {
    ($(#[$m:meta])* $vis:vis $kind:ident = $name:literal ($ctx:ty, $state:ty) {
        $($step:literal => $run:path, $undo:path;)*
    }) => {
        $(#[$m])*
        $vis enum $kind {}

        impl $crate::saga::Saga for $kind {
            const NAME: &'static str = $name;
            type Ctx = $ctx;
            type State = $state;
            const STEPS: &'static [$crate::saga::Step<$ctx, $state>] = &[$($crate::saga::Step {
                name: $step,
                run: |c, s, retry| Box::pin($run(c, s, retry)),
                undo: |c, s, why| Box::pin($undo(c, s, why)),
            },)*];
        }
    };
}

/// The undo of a step that leaves nothing to undo.
pub async fn nothing<C, S>(_: &C, _: &S, _: &Why) -> Result<()> {
    Ok(())
}

/// A saga kind as the engine drives it: steps by index over the state as JSON.
trait Kind: Send + Sync {
    fn name(&self) -> &'static str;
    fn step_names(&self) -> Vec<&'static str>;
    fn run<'a>(&'a self, idx: usize, data: &'a mut Value, retry: bool)
        -> BoxFuture<'a, StepResult>;
    fn undo<'a>(&'a self, idx: usize, record: &'a Value, why: &'a Why)
        -> BoxFuture<'a, Result<()>>;
}

/// A declared saga with the services its steps use.
struct Declared<S: Saga> {
    ctx: Arc<S::Ctx>,
}

fn state_of<S: Saga>(v: &Value) -> Result<S::State> {
    serde_json::from_value(v.clone())
        .map_err(|e| ServiceError::Internal(format!("{} saga state: {e}", S::NAME)))
}

impl<S: Saga> Kind for Declared<S> {
    fn name(&self) -> &'static str {
        S::NAME
    }

    fn step_names(&self) -> Vec<&'static str> {
        S::STEPS.iter().map(|s| s.name).collect()
    }

    fn run<'a>(
        &'a self,
        idx: usize,
        data: &'a mut Value,
        retry: bool,
    ) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let step = S::STEPS
                .get(idx)
                .ok_or_else(|| ServiceError::Internal(format!("{} has no step {idx}", S::NAME)))?;
            let mut state = state_of::<S>(data)?;
            let ran = (step.run)(&self.ctx, &mut state, retry).await;
            *data = serde_json::to_value(&state)
                .map_err(|e| ServiceError::Internal(format!("{} saga state: {e}", S::NAME)))?;
            ran
        })
    }

    fn undo<'a>(
        &'a self,
        idx: usize,
        record: &'a Value,
        why: &'a Why,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let step = S::STEPS
                .get(idx)
                .ok_or_else(|| ServiceError::Internal(format!("{} has no step {idx}", S::NAME)))?;
            let state = state_of::<S>(record)?;
            (step.undo)(&self.ctx, &state, why).await
        })
    }
}

/// Fault injection for the crash tests, from a comma-separated list of rules:
/// `pause:<kind>.<step>.<before|after>` (write `saga-paused` in the signal directory and wait to
/// be killed), `fail:<kind>.<step>` (the step fails), `fail-undo:<kind>.<step>` (its undo fails).
#[derive(Debug, Default, Clone)]
pub struct Faults {
    rules: HashSet<String>,
}

impl Faults {
    pub fn parse(spec: &str) -> Faults {
        Faults {
            rules: spec
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        }
    }

    fn has(&self, rule: &str) -> bool {
        self.rules.contains(rule)
    }
}

/// How long a lease lasts and how often nodes look for sagas to take.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTimes {
    pub lease: Duration,
}

impl LeaseTimes {
    fn renew_every(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(50))
    }
    fn scan_every(&self) -> Duration {
        (self.lease / 4).max(Duration::from_millis(50))
    }
}

pub struct Sagas {
    store: Arc<Store>,
    node: String,
    times: LeaseTimes,
    kinds: RwLock<HashMap<&'static str, Arc<dyn Kind>>>,
    /// Sagas this process is driving now.
    driving: Mutex<HashSet<String>>,
    faults: Faults,
    signal_dir: PathBuf,
}

/// Where a run of steps ended.
enum Ended {
    /// Reached the step asked for (or the end), the saga goes on.
    Paused,
    Done,
    /// Undone because of the outcome of step `.1`.
    Undone(StepOutcome, usize),
    Stuck,
    /// Another node holds the lease now; this one stops touching the saga.
    LostLease,
}

/// The error that started an undo.
enum StepOutcome {
    Refused(ServiceError),
    Failed(ServiceError),
    Quiet(String),
}

/// One saga for display (`stratus saga show`).
#[derive(Debug, Clone)]
pub struct SagaView {
    pub saga: SagaRec,
    pub steps: Vec<SagaStepRec>,
}

impl Sagas {
    pub fn new(
        store: Arc<Store>,
        node: String,
        times: LeaseTimes,
        faults: Faults,
        signal_dir: PathBuf,
    ) -> Sagas {
        Sagas {
            store,
            node,
            times,
            kinds: RwLock::new(HashMap::new()),
            driving: Mutex::new(HashSet::new()),
            faults,
            signal_dir,
        }
    }

    /// Makes saga kind `S` runnable on this node, its steps using `ctx`.
    pub fn register<S: Saga>(&self, ctx: Arc<S::Ctx>) {
        if let Ok(mut k) = self.kinds.write() {
            k.insert(S::NAME, Arc::new(Declared::<S> { ctx }));
        }
    }

    fn kind(&self, name: &str) -> Result<Arc<dyn Kind>> {
        self.kinds
            .read()
            .ok()
            .and_then(|k| k.get(name).cloned())
            .ok_or_else(|| ServiceError::Internal(format!("no saga kind {name:?}")))
    }

    fn lease_end(&self) -> i64 {
        now_micros() + self.times.lease.as_micros() as i64
    }

    /// Starts a saga of kind `S` from `state` and runs its first `sync_steps` steps in the
    /// calling task; the rest runs in the background. Returns the state after those steps. If one
    /// of them fails, the saga is undone here and the step's error returned (a saga refused at
    /// its first step leaves no record).
    pub async fn begin<S: Saga>(
        self: &Arc<Self>,
        id: String,
        state: &S::State,
        sync_steps: usize,
    ) -> Result<S::State> {
        let k = self.kind(S::NAME)?;
        let now = now_micros();
        let data = serde_json::to_string(state)
            .map_err(|e| ServiceError::Internal(format!("{} saga state: {e}", S::NAME)))?;
        let mut rec = SagaRec {
            id: id.clone(),
            kind: S::NAME.to_string(),
            state: SagaState::Running,
            step: 0,
            data,
            error: None,
            quiet: false,
            owner: self.node.clone(),
            lease_until: self.lease_end(),
            created_at: now,
            updated_at: now,
        };
        // Marked as driven here before the row exists, so that a scan cannot take the saga
        // between the insert and the first step.
        self.mark_driving(&id, true);
        let inserted = async {
            let mut w = self.store.write().await?;
            store::saga_insert(w.conn(), &rec).await?;
            self.store.commit(w).await
        }
        .await;
        if let Err(e) = inserted {
            self.mark_driving(&id, false);
            return Err(e.into());
        }
        let ended = self.advance(&*k, &mut rec, Some(sync_steps)).await;
        let state = serde_json::from_str::<Value>(&rec.data)
            .map_err(|e| ServiceError::Internal(format!("saga {id} data: {e}")))
            .and_then(|v| state_of::<S>(&v));
        match ended {
            Ok(Ended::Paused) => {
                let me = self.clone();
                tokio::spawn(async move { me.drive_claimed(id).await });
                state
            }
            Ok(Ended::Done) => {
                self.mark_driving(&id, false);
                state
            }
            Ok(Ended::Undone(outcome, failed_at)) => {
                self.mark_driving(&id, false);
                let first_refused = matches!(outcome, StepOutcome::Refused(_)) && failed_at == 0;
                if first_refused {
                    let mut w = self.store.write().await?;
                    store::saga_delete(w.conn(), &id).await?;
                    self.store.commit(w).await?;
                }
                Err(match outcome {
                    StepOutcome::Refused(e) | StepOutcome::Failed(e) => e,
                    StepOutcome::Quiet(m) => ServiceError::Conflict(m),
                })
            }
            Ok(Ended::Stuck) | Ok(Ended::LostLease) => {
                self.mark_driving(&id, false);
                Err(ServiceError::Internal(format!(
                    "saga {id} could not be completed or undone"
                )))
            }
            Err(e) => {
                self.mark_driving(&id, false);
                Err(e)
            }
        }
    }

    fn mark_driving(&self, id: &str, on: bool) -> bool {
        let Ok(mut d) = self.driving.lock() else {
            return false;
        };
        if on {
            d.insert(id.to_string())
        } else {
            d.remove(id)
        }
    }

    /// Runs a saga this node holds the lease of to its end, renewing the lease meanwhile.
    async fn drive_claimed(self: Arc<Self>, id: String) {
        let renew = {
            let me = self.clone();
            let id = id.clone();
            async move {
                loop {
                    tokio::time::sleep(me.times.renew_every()).await;
                    let held = async {
                        let mut w = me.store.write().await?;
                        let ok = store::saga_claim(
                            w.conn(),
                            &id,
                            &me.node,
                            now_micros(),
                            me.lease_end(),
                        )
                        .await?;
                        me.store.commit(w).await?;
                        Ok::<bool, stratus_store::StoreError>(ok)
                    }
                    .await;
                    match held {
                        Ok(true) => {}
                        Ok(false) => return,
                        // A failed renewal is retried; the lease may still be ours.
                        Err(e) => tracing::warn!(saga = %id, "lease renewal failed: {e}"),
                    }
                }
            }
        };
        let run = async {
            let mut rec = match store::saga_get(self.store.pool(), &id).await {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(saga = %id, "cannot load saga: {e}");
                    return;
                }
            };
            let k = match self.kind(&rec.kind) {
                Ok(k) => k,
                Err(e) => {
                    tracing::error!(saga = %id, "{e}");
                    return;
                }
            };
            match self.advance(&*k, &mut rec, None).await {
                Ok(Ended::Done) => tracing::info!(saga = %id, kind = %rec.kind, "saga done"),
                Ok(Ended::Undone(..)) => {
                    tracing::info!(saga = %id, kind = %rec.kind, "saga undone")
                }
                Ok(Ended::Stuck) => {
                    tracing::error!(saga = %id, kind = %rec.kind, error = ?rec.error, "saga stuck")
                }
                Ok(Ended::LostLease) => {
                    tracing::warn!(saga = %id, "another node took the saga over")
                }
                Ok(Ended::Paused) => {}
                Err(e) => tracing::error!(saga = %id, "saga interrupted: {e}"),
            }
        };
        tokio::select! {
            _ = run => {},
            _ = renew => tracing::warn!(saga = %id, "lease lost; stopped running the saga"),
        }
        self.mark_driving(&id, false);
    }

    /// Takes the saga if this node may (its own, or the lease ran out) and runs it.
    async fn try_take(self: &Arc<Self>, id: String) -> Result<()> {
        if !self.mark_driving(&id, true) {
            return Ok(());
        }
        let taken = async {
            let mut w = self.store.write().await?;
            let ok = store::saga_claim(w.conn(), &id, &self.node, now_micros(), self.lease_end())
                .await?;
            self.store.commit(w).await?;
            Ok::<bool, ServiceError>(ok)
        }
        .await;
        match taken {
            Ok(true) => {
                tracing::info!(saga = %id, node = %self.node, "taking over saga");
                let me = self.clone();
                tokio::spawn(async move { me.drive_claimed(id).await });
                Ok(())
            }
            Ok(false) => {
                self.mark_driving(&id, false);
                Ok(())
            }
            Err(e) => {
                self.mark_driving(&id, false);
                Err(e)
            }
        }
    }

    /// Looks once for sagas this node may take and starts them; returns how many it found.
    pub async fn scan(self: &Arc<Self>) -> Result<usize> {
        let ids = store::saga_claimable(self.store.pool(), &self.node, now_micros()).await?;
        let n = ids.len();
        for id in ids {
            self.try_take(id).await?;
        }
        Ok(n)
    }

    /// Scans for sagas to take now and then, until the returned handle is aborted.
    pub fn spawn_scanner(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = me.scan().await {
                    tracing::warn!("saga scan failed: {e}");
                }
                tokio::time::sleep(me.times.scan_every()).await;
            }
        })
    }

    async fn pause_if(&self, kind: &str, step: &str, when: &str, saga: &str) {
        let rule = format!("pause:{kind}.{step}.{when}");
        if self.faults.has(&rule) {
            let _ = std::fs::write(
                self.signal_dir.join("saga-paused"),
                format!("{saga} {kind}.{step}.{when}\n"),
            );
            tracing::warn!(saga, "{rule}: waiting to be killed");
            std::future::pending::<()>().await;
        }
    }

    /// Saves the saga (and step rows) in one transaction, if this node still holds the lease.
    async fn persist(&self, rec: &mut SagaRec, steps: &[&SagaStepRec]) -> Result<bool> {
        rec.updated_at = now_micros();
        rec.lease_until = self.lease_end();
        let mut w = self.store.write().await?;
        if !store::saga_save(w.conn(), rec, &self.node).await? {
            return Ok(false);
        }
        for s in steps {
            store::saga_step_put(w.conn(), s).await?;
        }
        self.store.commit(w).await?;
        Ok(true)
    }

    /// Runs the saga forward from its current step (up to step `until`, if given), or on with its
    /// undo if it is undoing.
    async fn advance(
        &self,
        k: &dyn Kind,
        rec: &mut SagaRec,
        until: Option<usize>,
    ) -> Result<Ended> {
        let steps = k.step_names();
        if rec.state == SagaState::Undoing {
            return self.undo_all(k, rec, None).await;
        }
        let mut data: Value = serde_json::from_str(&rec.data)
            .map_err(|e| ServiceError::Internal(format!("saga {} data: {e}", rec.id)))?;
        let existing = store::saga_steps(self.store.pool(), &rec.id).await?;
        // A finished step's `done` row is written with the next step's `started` row (one
        // transaction instead of two).
        let mut finished: Option<SagaStepRec> = None;
        loop {
            let idx = rec.step as usize;
            if idx >= steps.len() {
                rec.state = SagaState::Done;
                if !self
                    .persist(rec, &finished.iter().collect::<Vec<_>>())
                    .await?
                {
                    return Ok(Ended::LostLease);
                }
                return Ok(Ended::Done);
            }
            if until.is_some_and(|u| idx >= u) {
                if !self
                    .persist(rec, &finished.iter().collect::<Vec<_>>())
                    .await?
                {
                    return Ok(Ended::LostLease);
                }
                return Ok(Ended::Paused);
            }
            let name = steps[idx];
            let retry = existing
                .iter()
                .any(|s| s.idx == idx as i64 && s.status == StepStatus::Started);
            let mut row = SagaStepRec {
                saga_id: rec.id.clone(),
                idx: idx as i64,
                name: name.to_string(),
                status: StepStatus::Started,
                // The state the step starts from is what its undo works from.
                undo: data.to_string(),
                error: None,
                started_at: now_micros(),
                finished_at: None,
            };
            let mut rows: Vec<&SagaStepRec> = finished.iter().collect();
            rows.push(&row);
            if !self.persist(rec, &rows).await? {
                return Ok(Ended::LostLease);
            }
            self.pause_if(k.name(), name, "before", &rec.id).await;
            let result = if self.faults.has(&format!("fail:{}.{name}", k.name())) {
                Err(StepError::Failed(ServiceError::Internal(format!(
                    "injected failure of step {name}"
                ))))
            } else {
                k.run(idx, &mut data, retry).await
            };
            match result {
                Ok(()) => {
                    self.pause_if(k.name(), name, "after", &rec.id).await;
                    row.status = StepStatus::Done;
                    row.finished_at = Some(now_micros());
                    rec.step = idx as i64 + 1;
                    rec.data = data.to_string();
                    finished = Some(row);
                }
                Err(e) => {
                    let (outcome, quiet, refused) = match e {
                        StepError::Refused(e) => (StepOutcome::Refused(e), false, true),
                        StepError::Failed(e) => (StepOutcome::Failed(e), false, false),
                        StepError::Quiet(m) => (StepOutcome::Quiet(m), true, false),
                    };
                    let message = match &outcome {
                        StepOutcome::Refused(e) | StepOutcome::Failed(e) => e.to_string(),
                        StepOutcome::Quiet(m) => m.clone(),
                    };
                    if quiet {
                        tracing::info!(saga = %rec.id, step = name, "stopping: {message}");
                    } else {
                        tracing::warn!(saga = %rec.id, step = name, "step failed: {message}");
                    }
                    row.error = Some(message.clone());
                    row.finished_at = Some(now_micros());
                    if refused {
                        // Nothing of it happened: nothing of it to undo.
                        row.status = StepStatus::Undone;
                    }
                    rec.state = SagaState::Undoing;
                    rec.error = Some(format!("{name}: {message}"));
                    rec.quiet = quiet;
                    if !self.persist(rec, &[&row]).await? {
                        return Ok(Ended::LostLease);
                    }
                    return self.undo_all(k, rec, Some((outcome, idx))).await;
                }
            }
        }
    }

    /// Undoes every step that started and is not undone yet, last first.
    async fn undo_all(
        &self,
        k: &dyn Kind,
        rec: &mut SagaRec,
        outcome: Option<(StepOutcome, usize)>,
    ) -> Result<Ended> {
        let mut rows = store::saga_steps(self.store.pool(), &rec.id).await?;
        // The cause is the error of the step that failed going forward (a stuck saga's error
        // names its failed undo instead).
        let cause = rows
            .iter()
            .filter(|r| r.status != StepStatus::UndoFailed)
            .filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.name)))
            .next_back()
            .or_else(|| rec.error.clone());
        let why = Why {
            error: (!rec.quiet).then(|| cause.unwrap_or_default()),
        };
        rows.sort_by_key(|r| std::cmp::Reverse(r.idx));
        for mut row in rows {
            if !matches!(
                row.status,
                StepStatus::Started | StepStatus::Done | StepStatus::UndoFailed
            ) {
                continue;
            }
            let record: Value = serde_json::from_str(&row.undo).unwrap_or(Value::Null);
            let idx = row.idx as usize;
            let injected = self
                .faults
                .has(&format!("fail-undo:{}.{}", k.name(), row.name));
            let undone = if injected {
                Err(ServiceError::Internal(format!(
                    "injected failure of the undo of {}",
                    row.name
                )))
            } else {
                k.undo(idx, &record, &why).await
            };
            row.finished_at = Some(now_micros());
            rec.step = row.idx;
            match undone {
                Ok(()) => {
                    if row.status == StepStatus::UndoFailed {
                        // The error was its undo's, which has now succeeded.
                        row.error = None;
                    }
                    row.status = StepStatus::Undone;
                    if !self.persist(rec, &[&row]).await? {
                        return Ok(Ended::LostLease);
                    }
                }
                Err(e) => {
                    row.status = StepStatus::UndoFailed;
                    row.error = Some(e.to_string());
                    rec.state = SagaState::Stuck;
                    rec.error = Some(format!(
                        "undo of {} failed: {e} (undoing because {})",
                        row.name,
                        rec.error.clone().unwrap_or_default()
                    ));
                    if !self.persist(rec, &[&row]).await? {
                        return Ok(Ended::LostLease);
                    }
                    return Ok(Ended::Stuck);
                }
            }
        }
        rec.state = SagaState::Undone;
        if !self.persist(rec, &[]).await? {
            return Ok(Ended::LostLease);
        }
        let (outcome, failed_at) = outcome.unwrap_or_else(|| {
            let e = rec.error.clone().unwrap_or_else(|| "undone".into());
            (StepOutcome::Failed(ServiceError::Internal(e)), 0)
        });
        Ok(Ended::Undone(outcome, failed_at))
    }
}

/// A saga and its steps, or `None` (operator tooling; needs no running engine).
pub async fn show(st: &Store, id: &str) -> Result<Option<SagaView>> {
    let Some(saga) = store::saga_get(st.pool(), id).await? else {
        return Ok(None);
    };
    let steps = store::saga_steps(st.pool(), id).await?;
    Ok(Some(SagaView { saga, steps }))
}

/// Sends a stuck saga back to its undo, which any node then retries (operator tooling).
pub async fn retry(st: &Store, id: &str) -> Result<bool> {
    let mut w = st.write().await?;
    let ok = store::saga_retry(w.conn(), id, now_micros()).await?;
    st.commit(w).await?;
    Ok(ok)
}
