//! The HTTP layer: routes, OpenStack wire formats and error bodies, request ids.
//!
//! Wire types live here and only here; handlers translate between them and the domain types of
//! `stratus-services`, and every error goes through [`error`] to reach its API's format.

mod compute;
pub mod error;
pub mod extract;
pub mod huawei;
mod iam;
mod identity;
mod image;
pub mod middleware;
pub mod openapi;
mod quota_sets;
pub mod routes;
mod timefmt;
mod volume;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Json, Router};
use std::sync::Arc;
use stratus_services::authz::Authorizer;
use stratus_services::iam::Iam;
use stratus_services::identity::Identity;
use stratus_services::images::Images;

pub use error::{Api, ApiError, ApiKind, Keystone};

/// How the HTTP layer treats clients.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// A request body that sends nothing for this long fails the request.
    pub body_idle_timeout: std::time::Duration,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<Cidr>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            body_idle_timeout: std::time::Duration::from_secs(30),
            trusted_proxies: Vec::new(),
        }
    }
}

/// An address or a network (`10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = ();
    fn from_str(s: &str) -> Result<Cidr, ()> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = a.trim().parse().map_err(|_| ())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or(())?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let bits = |ip: std::net::IpAddr| -> (u128, u8) {
            match ip {
                std::net::IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
                std::net::IpAddr::V6(v) => match v.to_ipv4_mapped() {
                    Some(v4) => (u128::from(u32::from(v4)), 32),
                    None => (u128::from(v), 128),
                },
            }
        };
        let ((net, width), (addr, w)) = (bits(self.addr), bits(ip));
        if width != w {
            return false;
        }
        let shift = u32::from(width - self.prefix.min(width));
        let mask = if shift >= 128 { 0 } else { u128::MAX << shift };
        (net & mask) == (addr & mask)
    }
}

/// What every handler can reach.
pub struct AppState {
    pub identity: Arc<Identity>,
    pub directory: Arc<stratus_services::directory::Directory>,
    pub authz: Arc<Authorizer>,
    pub iam: Arc<Iam>,
    pub images: Arc<Images>,
    pub compute: Arc<stratus_services::compute::Compute>,
    pub volumes: Arc<stratus_services::volumes::Volumes>,
    pub imports: Arc<stratus_services::images::import::Imports>,
    pub jobs: Arc<stratus_services::jobs::Jobs>,
    pub http: HttpSettings,
    /// Base URL clients reach this server at, without a trailing slash (e.g.
    /// `http://127.0.0.1:8080`); catalogue URLs and links are made from it.
    pub public_url: String,
    /// The OpenAPI description, serialised at its first request (it depends only on the
    /// catalogue and the public URL, both fixed for the process).
    pub openapi: std::sync::OnceLock<bytes::Bytes>,
}

impl AppState {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.public_url, path)
    }
}

/// Every route served, recorded with its method and full path template.
pub fn routes() -> routes::RouteTable<Arc<AppState>> {
    routes::RouteTable::default()
        .at(axum::http::Method::GET, "/", root)
        .at(axum::http::Method::GET, "/openapi.json", openapi_json)
        .merge(identity::routes())
        .merge(iam::routes())
        .merge(image::routes())
        .merge(compute::routes())
        .merge(volume::routes())
}

/// The whole HTTP application.
pub fn router(state: Arc<AppState>) -> Router {
    let http = state.http.clone();
    let inner = routes()
        .into_router()
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn(middleware::bounded_query));
    // The compute layer rewrites paths, so it runs before routing, around the router.
    let compute = tower::Layer::layer(&axum::middleware::from_fn(compute::compute_layer), inner);
    let volume = tower::Layer::layer(&axum::middleware::from_fn(volume::volume_layer), compute);
    let image = tower::Layer::layer(&axum::middleware::from_fn(image::image_layer), volume);
    Router::new()
        .fallback_service(image)
        .layer(axum::middleware::from_fn(middleware::signed_request))
        .layer(axum::middleware::from_fn_with_state(
            http,
            middleware::request_id,
        ))
}

/// The OpenAPI description of every route.
async fn openapi_json(
    axum::extract::State(s): axum::extract::State<Arc<AppState>>,
) -> impl IntoResponse {
    let body = s.openapi.get_or_init(|| {
        let doc = openapi::document(s.authz.catalogue(), &s.url(""));
        bytes::Bytes::from(doc.to_string())
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.clone(),
    )
}

/// Where each API lives, for people and scripts poking at the root.
async fn root(axum::extract::State(s): axum::extract::State<Arc<AppState>>) -> impl IntoResponse {
    Json(serde_json::json!({
        "stratus": {
            "version": env!("CARGO_PKG_VERSION"),
            "services": {"identity": s.url("/identity"), "image": s.url("/image"),
                         "compute": s.url("/compute"), "volume": s.url("/volume")},
        }
    }))
}

/// The API a path belongs to, by its prefix (identity's format for anything else).
pub(crate) fn api_of(path: &str) -> ApiKind {
    if path.starts_with("/image/v2/cloudimages") || path.starts_with("/image/v1/") {
        ApiKind::Ims
    } else if path.starts_with("/compute/v1/") || path.starts_with("/compute/v1.1/") {
        ApiKind::Ecs
    } else if path == "/image" || path.starts_with("/image/") {
        ApiKind::Image
    } else if path == "/compute" || path.starts_with("/compute/") {
        ApiKind::Compute
    } else if path == "/volume" || path.starts_with("/volume/") {
        ApiKind::Volume
    } else {
        ApiKind::Identity
    }
}

/// Unrouted paths get the error format of the API whose prefix they fall under.
async fn not_found(uri: axum::http::Uri) -> impl IntoResponse {
    error::error_response(
        api_of(uri.path()),
        StatusCode::NOT_FOUND,
        &format!("The resource could not be found: {}.", uri.path()),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> impl IntoResponse {
    error::error_response(
        api_of(uri.path()),
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("The method {method} is not allowed for {}.", uri.path()),
    )
}
