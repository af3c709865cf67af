//! The one place that turns errors into each API's own error body.
//!
//! An error is typed by its API (`ApiError<Keystone>`, ...), so `?` on a [`ServiceError`] inside a
//! handler renders in that handler's format, and so do extractor rejections.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::marker::PhantomData;
use stratus_services::ServiceError;

/// Which API a response belongs to; each has its own error format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKind {
    /// Keystone: `{"error": {"code", "title", "message"}}`.
    Identity,
    /// Glance: `{"message", "code": "404 Not Found", "title"}`.
    Image,
    /// Nova: `{"itemNotFound": {"code": 404, "message"}}`, keyed by [`NOVA_FAULTS`].
    Compute,
    /// Cinder: the same shape as Nova's.
    Volume,
}

/// Nova's fault name per status; anything else is a `computeFault`.
pub const NOVA_FAULTS: &[(u16, &str)] = &[
    (400, "badRequest"),
    (401, "unauthorized"),
    (403, "forbidden"),
    (404, "itemNotFound"),
    (405, "badMethod"),
    (409, "conflictingRequest"),
    (413, "overLimit"),
    (415, "badMediaType"),
    (429, "overLimit"),
    (501, "notImplemented"),
    (503, "serviceUnavailable"),
];

/// Marks an API, so errors and rejections render in its format.
pub trait Api: Send + Sync + 'static {
    const KIND: ApiKind;
}

/// The Identity API (Keystone v3).
pub struct Keystone;
impl Api for Keystone {
    const KIND: ApiKind = ApiKind::Identity;
}

/// The Image API (Glance v2 / IMS).
pub struct Glance;
impl Api for Glance {
    const KIND: ApiKind = ApiKind::Image;
}

/// The Compute API (Nova v2.1).
pub struct Nova;
impl Api for Nova {
    const KIND: ApiKind = ApiKind::Compute;
}

/// The Block Storage API (Cinder v3 / EVS).
pub struct Cinder;
impl Api for Cinder {
    const KIND: ApiKind = ApiKind::Volume;
}

pub struct ApiError<A: Api> {
    pub status: StatusCode,
    pub message: String,
    api: PhantomData<A>,
}

impl<A: Api> std::fmt::Debug for ApiError<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {} {}", A::KIND, self.status, self.message)
    }
}

/// A handler result in API `A`'s error format.
pub type ApiResult<T, A> = Result<T, ApiError<A>>;

impl<A: Api> ApiError<A> {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            api: PhantomData,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

/// The status of each service error, as data.
fn status_of(e: &ServiceError) -> StatusCode {
    match e {
        ServiceError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ServiceError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
        ServiceError::NotFound { .. } => StatusCode::NOT_FOUND,
        ServiceError::Conflict(_) => StatusCode::CONFLICT,
        ServiceError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl<A: Api> From<ServiceError> for ApiError<A> {
    fn from(e: ServiceError) -> Self {
        let message = match &e {
            ServiceError::Internal(detail) => {
                // The request id of the enclosing span is logged with it.
                tracing::error!(error = %detail, "internal error");
                "An unexpected error prevented the server from fulfilling your request.".to_string()
            }
            other => other.to_string(),
        };
        ApiError::new(status_of(&e), message)
    }
}

fn title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        413 => "Request Entity Too Large",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

/// Renders an error body for `kind`.
pub fn error_response(kind: ApiKind, status: StatusCode, message: &str) -> Response {
    let body = match kind {
        ApiKind::Identity => json!({
            "error": {"code": status.as_u16(), "title": title(status), "message": message}
        }),
        ApiKind::Image => json!({
            "message": message,
            "code": format!("{} {}", status.as_u16(), title(status)),
            "title": title(status),
        }),
        ApiKind::Compute | ApiKind::Volume => {
            let fault = NOVA_FAULTS
                .iter()
                .find(|(code, _)| *code == status.as_u16())
                .map(|(_, name)| *name)
                .unwrap_or("computeFault");
            json!({ fault: {"code": status.as_u16(), "message": message} })
        }
    };
    let mut resp = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED && kind == ApiKind::Identity {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Keystone"),
        );
    }
    resp
}

impl<A: Api> IntoResponse for ApiError<A> {
    fn into_response(self) -> Response {
        error_response(A::KIND, self.status, &self.message)
    }
}
