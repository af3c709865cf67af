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
    /// Huawei Cloud IMS's own API: `{"error": {"code": "IMG.xxxx", "message"}}`, the code per
    /// status from [`HUAWEI_CODES`].
    Ims,
    /// Huawei Cloud ECS's own API: the same shape, `Ecs.xxxx` codes.
    Ecs,
}

/// Huawei Cloud's error code per API and status: its documented code for the cause where there
/// is one (IMS: `IMG.0001` a malformed request, `IMG.0010` a server busy with a task; ECS:
/// `Ecs.0005` invalid parameters, `Ecs.0003` no permission, `Ecs.0114` no such server; the API
/// gateway's `APIGW.0301` for credentials that do not hold), else one of this table's own; any
/// other status takes the API's entry for 500.
pub const HUAWEI_CODES: &[(ApiKind, u16, &str)] = &[
    (ApiKind::Ims, 400, "IMG.0001"),
    (ApiKind::Ims, 401, "APIGW.0301"),
    (ApiKind::Ims, 403, "IMG.0003"),
    (ApiKind::Ims, 404, "IMG.0004"),
    (ApiKind::Ims, 409, "IMG.0010"),
    (ApiKind::Ims, 413, "IMG.0006"),
    (ApiKind::Ims, 500, "IMG.0000"),
    (ApiKind::Ecs, 400, "Ecs.0005"),
    (ApiKind::Ecs, 401, "APIGW.0301"),
    (ApiKind::Ecs, 403, "Ecs.0003"),
    (ApiKind::Ecs, 404, "Ecs.0114"),
    (ApiKind::Ecs, 409, "Ecs.0020"),
    (ApiKind::Ecs, 413, "Ecs.0005"),
    (ApiKind::Ecs, 500, "Ecs.0000"),
];

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

/// Huawei Cloud IMS's own API (`/v2/cloudimages`, jobs).
pub struct Ims;
impl Api for Ims {
    const KIND: ApiKind = ApiKind::Ims;
}

/// Huawei Cloud ECS's own API (`/v1/{project_id}/cloudservers`).
pub struct Ecs;
impl Api for Ecs {
    const KIND: ApiKind = ApiKind::Ecs;
}

pub struct ApiError<A: Api> {
    pub status: StatusCode,
    pub message: String,
    /// The error code of APIs that have codes per cause (Huawei's), when the cause has its own.
    code: Option<&'static str>,
    api: PhantomData<A>,
}

/// Causes to which an API gives a status and code of their own: a missing resource of a kind
/// named in a request body. Huawei IMS answers an unknown `instance_id` with 400 `IMG.0005`.
pub const NOT_FOUND_CAUSES: &[(ApiKind, &str, u16, &str)] =
    &[(ApiKind::Ims, "instance", 400, "IMG.0005")];

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
            code: None,
            api: PhantomData,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The same error in another API's format (a helper shared by two APIs).
    pub fn recast<B: Api>(self) -> ApiError<B> {
        ApiError::new(self.status, self.message)
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
        if let ServiceError::NotFound { kind, .. } = &e {
            if let Some((_, _, status, code)) = NOT_FOUND_CAUSES
                .iter()
                .find(|(api, k, _, _)| *api == A::KIND && k == kind)
            {
                return ApiError {
                    status: StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
                    message,
                    code: Some(code),
                    api: PhantomData,
                };
            }
        }
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
    coded_response(kind, status, None, message)
}

/// [`error_response`] with the cause's own code, for APIs with codes per cause.
fn coded_response(
    kind: ApiKind,
    status: StatusCode,
    code: Option<&str>,
    message: &str,
) -> Response {
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
        ApiKind::Ims | ApiKind::Ecs => {
            let by_status = |s: u16| {
                HUAWEI_CODES
                    .iter()
                    .find(|(k, c, _)| *k == kind && *c == s)
                    .map(|(_, _, code)| *code)
            };
            let code = code
                .or_else(|| by_status(status.as_u16()))
                .or_else(|| by_status(500))
                .unwrap_or("");
            json!({"error": {"code": code, "message": message}})
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
        coded_response(A::KIND, self.status, self.code, &self.message)
    }
}
