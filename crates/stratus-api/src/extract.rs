//! Extractors whose rejections render in their API's error format: JSON bodies (size-capped,
//! media type checked, errors naming the offending field), query strings and the caller's token.

use crate::error::{Api, ApiError};
use crate::AppState;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::sync::Arc;
use stratus_services::identity::TokenInfo;

/// Largest JSON request body accepted (413 above).
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// A JSON request body of type `T`, for API `A`.
pub struct ApiJson<T, A>(pub T, pub PhantomData<A>);

fn is_json(ct: &str) -> bool {
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads a body of at most [`MAX_JSON_BODY`] bytes: 413 if larger.
pub async fn read_body<A: Api>(req: Request) -> Result<bytes::Bytes, ApiError<A>> {
    let body = req.into_body();
    axum::body::to_bytes(body, MAX_JSON_BODY)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body is larger than the limit of {MAX_JSON_BODY} bytes."),
            )
        })
}

/// Parses JSON, naming the path of the offending field on error.
pub fn parse_json<T: DeserializeOwned, A: Api>(bytes: &[u8]) -> Result<T, ApiError<A>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "The request body is empty; a JSON document is required.",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("Malformed JSON in request body: {inner}."))
        } else if path == "." || path.is_empty() {
            ApiError::bad_request(format!("Invalid input for the request body: {inner}."))
        } else {
            ApiError::bad_request(format!("Invalid input for field '{path}': {inner}."))
        }
    })
}

impl<S: Send + Sync, T: DeserializeOwned, A: Api> FromRequest<S> for ApiJson<T, A> {
    type Rejection = ApiError<A>;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("");
            if !is_json(ct) {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("Unsupported Content-Type {ct:?}: expected application/json."),
                ));
            }
        }
        let bytes = read_body::<A>(req).await?;
        Ok(ApiJson(parse_json(&bytes)?, PhantomData))
    }
}

/// A query string parsed into `T`, for API `A`.
pub struct ApiQuery<T, A>(pub T, pub PhantomData<A>);

impl<S: Send + Sync, T: DeserializeOwned, A: Api> FromRequestParts<S> for ApiQuery<T, A> {
    type Rejection = ApiError<A>;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(|v| ApiQuery(v, PhantomData))
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "Invalid query parameter {}: {}.",
                    e.path(),
                    e.inner()
                ))
            })
    }
}

/// The validated token of the caller (`X-Auth-Token`); 401 in API `A`'s format otherwise.
pub struct Caller<A>(pub TokenInfo, pub PhantomData<A>);

pub const AUTH_TOKEN_HEADER: &str = "x-auth-token";

impl<A: Api> FromRequestParts<Arc<AppState>> for Caller<A> {
    type Rejection = ApiError<A>;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(AUTH_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if token.is_empty() {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                stratus_services::identity::AUTH_REQUIRED,
            ));
        }
        let info = state.identity.validate(token).await?;
        Ok(Caller(info, PhantomData))
    }
}
