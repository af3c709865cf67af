use stratus_store::StoreError;

/// What a service call can fail with. The HTTP layer maps each variant to a status and to the
/// error body of the API that was called, in one place.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed or violates a rule (400).
    #[error("{0}")]
    BadRequest(String),
    /// Missing, invalid, expired or revoked credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist or is not visible to the caller (404).
    #[error("Could not find {kind}: {id}.")]
    NotFound { kind: &'static str, id: String },
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The request carries more data than allowed (413).
    #[error("{0}")]
    TooLarge(String),
    /// A failure of ours, not the caller's (500); the message is logged, not shown.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

impl ServiceError {
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        ServiceError::NotFound {
            kind,
            id: id.into(),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => {
                ServiceError::Conflict(format!("Conflict occurred attempting to store: {m}"))
            }
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

/// Turns "not found" into the error a request naming the resource gets (often a 400), keeping
/// every other error as it is: a 403 for a resource the caller may not use stays a 403.
pub trait IfMissing<T> {
    fn if_missing(self, f: impl FnOnce() -> ServiceError) -> Result<T>;
}

impl<T> IfMissing<T> for Result<T> {
    fn if_missing(self, f: impl FnOnce() -> ServiceError) -> Result<T> {
        match self {
            Err(ServiceError::NotFound { .. }) => Err(f()),
            other => other,
        }
    }
}
