//! Saga records: a saga and its steps as stored.

use crate::*;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SagaRec {
    pub id: String,
    pub kind: String,
    /// `running`, `undoing`, `done`, `undone` or `stuck`.
    pub state: SagaState,
    pub step: i64,
    /// JSON object text.
    pub data: String,
    pub error: Option<String>,
    #[sqlx(try_from = "crate::Flag")]
    pub quiet: bool,
    pub owner: String,
    pub lease_until: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SagaStepRec {
    pub saga_id: String,
    pub idx: i64,
    pub name: String,
    /// `started`, `done`, `undone` or `undo_failed`.
    pub status: StepStatus,
    /// JSON text: what the undo acts on.
    pub undo: String,
    pub error: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}
