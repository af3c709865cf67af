//! Request ids and request logging, shared by every API.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tracing::Instrument;

pub const REQUEST_ID_HEADER: &str = "x-openstack-request-id";

/// The id of the request being served, in `req-<uuid>` form.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Gives every request an id, runs it inside a span carrying that id (so every log line of the
/// request names it), returns the id in `x-openstack-request-id`, and logs the outcome: 5xx at
/// error level, everything else at debug.
pub async fn request_id(
    axum::extract::State(http): axum::extract::State<crate::HttpSettings>,
    mut req: Request,
    next: Next,
) -> Response {
    let id = format!("req-{}", uuid::Uuid::new_v4());
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!("request", request_id = %id, %method, %path);
    let start = Instant::now();
    let (req, read_to_end) = watch_body(req, http.body_idle_timeout);
    // The request runs on a task of its own, to its end even if the client goes away: services
    // are written for requests that complete, not for futures dropped halfway (a transaction
    // begun, a file half made).
    let task = tokio::spawn(next.run(req).instrument(span.clone()));
    let mut resp = match task.await {
        Ok(resp) => resp,
        Err(e) => {
            span.in_scope(|| tracing::error!("request handler failed: {e}"));
            crate::error::error_response(
                crate::api_of(&path),
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "An unexpected error prevented the server from fulfilling your request.",
            )
        }
    };
    if !read_to_end.load(Ordering::Acquire) {
        // The answer came before the request's body was read (a refused upload): the rest of
        // the body is still on the connection, so it cannot carry another request. Saying so
        // keeps clients from sending their next request into a connection being closed.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = resp.status();
    let elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), elapsed_ms, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), elapsed_ms, "request served");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}

/// Refuses a query string over its limits, in the error format of the API called (inside the
/// APIs' own layers, so the answer carries their headers too).
pub async fn bounded_query(req: Request, next: Next) -> Response {
    match stratus_services::limits::check_query(req.uri().query().unwrap_or("")) {
        Ok(()) => next.run(req).await,
        Err(e) => crate::error::error_response(
            crate::api_of(req.uri().path()),
            axum::http::StatusCode::BAD_REQUEST,
            &e.to_string(),
        ),
    }
}

/// A request body that records when it has been read to its end, and fails when it stalls
/// (nothing received for `idle`) so that a client cannot hold an upload open forever.
struct Watched {
    inner: Body,
    done: Arc<AtomicBool>,
    idle: std::time::Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// The last poll found nothing: the client is being waited for (time the server spends on a
    /// chunk it got does not count).
    waiting: bool,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if !this.waiting {
            let next = tokio::time::Instant::now() + this.idle;
            this.deadline.as_mut().reset(next);
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.done.store(true, Ordering::Release);
        }
        match polled {
            Poll::Pending => {
                this.waiting = true;
                if this.deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(axum::Error::new(format!(
                        "the request body sent nothing for {} s",
                        this.idle.as_secs_f64()
                    )))));
                }
                Poll::Pending
            }
            ready => {
                this.waiting = false;
                ready
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps the request's body; the flag is set once it has been read to its end (at once for a
/// request without a body).
fn watch_body(req: Request, idle: std::time::Duration) -> (Request, Arc<AtomicBool>) {
    let (parts, body) = req.into_parts();
    let done = Arc::new(AtomicBool::new(http_body::Body::is_end_stream(&body)));
    let body = Body::new(Watched {
        inner: body,
        done: done.clone(),
        idle,
        deadline: Box::pin(tokio::time::sleep(idle)),
        waiting: false,
    });
    (Request::from_parts(parts, body), done)
}

/// For an AK/SK-signed request (others pass untouched): keeps the request's URI as it came over
/// the wire (unless a listener's path mapping already did) and hashes its body first (up to the JSON body limit;
/// a larger body is passed on unread and unhashed, so its signature must leave it out with
/// `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`).
pub async fn signed_request(mut req: Request, next: Next) -> Response {
    use crate::extract::{PayloadSha256, WireUri, MAX_JSON_BODY};
    use futures::StreamExt;
    use http_body_util::BodyExt;
    use stratus_services::signing;
    let signed = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(signing::is_signed);
    if !signed {
        return next.run(req).await;
    }
    if req.extensions().get::<WireUri>().is_none() {
        let uri = req.uri().clone();
        req.extensions_mut().insert(WireUri(uri));
    }
    let headers = req.headers();
    let unsigned_payload = headers
        .get(signing::CONTENT_SHA256_HEADER)
        .is_some_and(|v| v.as_bytes() == signing::UNSIGNED_PAYLOAD.as_bytes());
    let declared_large = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_JSON_BODY as u64);
    let empty = match headers.get(header::CONTENT_LENGTH) {
        Some(v) => v.as_bytes() == b"0",
        None => headers.get(header::TRANSFER_ENCODING).is_none(),
    };
    if empty {
        req.extensions_mut()
            .insert(PayloadSha256(signing::EMPTY_SHA256.to_string()));
    }
    if empty || unsigned_payload || declared_large {
        return next.run(req).await;
    }
    let (mut parts, mut body) = req.into_parts();
    let mut buf = bytes::BytesMut::new();
    let mut rest = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    buf.extend_from_slice(&data);
                    if buf.len() > MAX_JSON_BODY {
                        rest = Some(body);
                        break;
                    }
                }
            }
            Err(e) => {
                return crate::error::error_response(
                    crate::api_of(parts.uri.path()),
                    axum::http::StatusCode::BAD_REQUEST,
                    &format!("Could not read the request body: {e}."),
                )
            }
        }
    }
    let read = buf.freeze();
    let body = match rest {
        // Too large to hash: handed on whole, what was read first and the rest after it.
        Some(rest) => Body::from_stream(
            futures::stream::once(async move { Ok::<_, axum::Error>(read) })
                .chain(rest.into_data_stream()),
        ),
        None => {
            parts
                .extensions
                .insert(PayloadSha256(signing::sha256_hex(&read)));
            Body::from(read)
        }
    };
    next.run(Request::from_parts(parts, body)).await
}
