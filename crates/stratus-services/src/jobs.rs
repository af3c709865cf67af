//! Asynchronous jobs as Huawei Cloud's APIs show them (`GET /v1/{project_id}/jobs/{job_id}`):
//! a job is a saga seen from outside. Its id is the saga's, its status follows the saga's state,
//! and it lasts as the saga record does, so a job survives a restart as its saga does.

use crate::identity::TokenInfo;
use crate::model::{SagaRec, SagaState};
use crate::{Result, ServiceError};
use serde_json::Value;
use std::sync::Arc;
use stratus_store::{self as store, Store};

/// A job's status, in Huawei's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Accepted; no step has finished yet.
    Init,
    /// Running its steps, or undoing them after a failure (not yet final).
    Running,
    Success,
    /// Undone after a failure, or stopped in its undo for an operator.
    Fail,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Init => "INIT",
            JobStatus::Running => "RUNNING",
            JobStatus::Success => "SUCCESS",
            JobStatus::Fail => "FAIL",
        }
    }

    fn of(s: &SagaRec) -> JobStatus {
        match s.state {
            SagaState::Running if s.step == 0 => JobStatus::Init,
            SagaState::Running | SagaState::Undoing => JobStatus::Running,
            SagaState::Done => JobStatus::Success,
            SagaState::Undone | SagaState::Stuck => JobStatus::Fail,
        }
    }
}

/// The service whose job API shows a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobService {
    Ims,
}

/// The saga kinds each service shows as jobs, with Huawei's job type for each (its name for the
/// same operation where it documents one). Sagas of other kinds are no job of any service.
pub const JOB_TYPES: &[(&str, JobService, &str)] = &[
    ("create-image", JobService::Ims, "imsCreateImageByInstance"),
    (
        "create-image-volumes",
        JobService::Ims,
        "imsCreateImageByInstance",
    ),
    ("create-backup", JobService::Ims, "imsCreateImageByInstance"),
    ("image-import", JobService::Ims, "imsCreateImageByFile"),
];

/// The resources a job acts on, as its saga's state names them: each entity's name and its
/// path in the state.
const ENTITIES: &[(&str, &str)] = &[
    ("image_id", "/image_id"),
    ("image_name", "/image/name"),
    ("server_id", "/server_id"),
];

/// One job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub job_type: &'static str,
    pub status: JobStatus,
    /// Microseconds since the epoch.
    pub begin: i64,
    /// When it succeeded or failed.
    pub end: Option<i64>,
    /// The resources it acts on ([`ENTITIES`]' names).
    pub entities: Vec<(&'static str, String)>,
    pub fail_reason: Option<String>,
    /// The enterprise project of what it makes (its image's), `"0"` when it names none.
    pub enterprise_project_id: String,
}

/// Longest job id looked up (saga ids are UUIDs).
const MAX_ID: usize = 64;

pub struct Jobs {
    store: Arc<Store>,
}

impl Jobs {
    pub fn new(store: Arc<Store>) -> Jobs {
        Jobs { store }
    }

    /// The job `id` of `service` in the caller's project (404 for any other, and for an id of
    /// no job).
    pub async fn show(&self, caller: &TokenInfo, service: JobService, id: &str) -> Result<Job> {
        let missing = || ServiceError::not_found("job", id);
        let project = crate::caller_project(caller, "The job service")?;
        if id.len() > MAX_ID {
            return Err(missing());
        }
        let saga = store::saga_get(self.store.pool(), id)
            .await?
            .ok_or_else(missing)?;
        let job_type = JOB_TYPES
            .iter()
            .find(|(k, s, _)| *k == saga.kind && *s == service)
            .map(|(_, _, t)| *t)
            .ok_or_else(missing)?;
        let data: Value = serde_json::from_str(&saga.data).unwrap_or(Value::Null);
        if project_of(&data) != Some(project) {
            return Err(missing());
        }
        let status = JobStatus::of(&saga);
        let entities = ENTITIES
            .iter()
            .filter_map(|(k, at)| {
                data.pointer(at)
                    .and_then(Value::as_str)
                    .filter(|v| !v.is_empty())
                    .map(|v| (*k, v.to_string()))
            })
            .collect();
        Ok(Job {
            id: saga.id,
            job_type,
            status,
            begin: saga.created_at,
            end: matches!(status, JobStatus::Success | JobStatus::Fail).then_some(saga.updated_at),
            entities,
            enterprise_project_id: data
                .pointer("/image/enterprise_project_id")
                .and_then(Value::as_str)
                .unwrap_or(crate::iam::DEFAULT_ENTERPRISE_PROJECT)
                .to_string(),
            // The saga's own error names node-local details (paths, processes) that are the
            // operator's (`stratus saga show`), not the tenant's.
            fail_reason: (status == JobStatus::Fail).then(|| {
                match saga.state {
                    SagaState::Stuck => "The job failed and its undo awaits an operator.",
                    _ => "The job failed and what it had done was undone.",
                }
                .to_string()
            }),
        })
    }
}

/// The project a saga works for: its state's `project_id`, else its caller's project.
fn project_of(data: &Value) -> Option<&str> {
    data["project_id"]
        .as_str()
        .filter(|p| !p.is_empty())
        .or_else(|| data["caller"]["project_id"].as_str())
}
