//! Huawei Cloud's endpoints. Huawei's SDKs keep only the scheme and host of an endpoint, so each
//! Huawei service is served on a listener of its own with its paths at the root: the listener
//! puts its service's prefix in front of every path (`/v3.0/OS-CREDENTIAL/credentials` on the IAM
//! listener is `/identity/v3.0/OS-CREDENTIAL/credentials`), and the same application, store and
//! engine serve it. The request's URI as sent is kept (`WireUri`): signatures are over it.

use crate::extract::WireUri;
use axum::extract::{OriginalUri, Request};
use axum::Router;

/// A Huawei service with an endpoint of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Iam,
    Ecs,
    Ims,
    Evs,
}

impl Endpoint {
    pub const ALL: [Endpoint; 4] = [Endpoint::Iam, Endpoint::Ecs, Endpoint::Ims, Endpoint::Evs];

    /// The service's name in Huawei's SDKs and configuration (`iam`, `ecs`, `ims`, `evs`).
    pub const fn name(self) -> &'static str {
        match self {
            Endpoint::Iam => "iam",
            Endpoint::Ecs => "ecs",
            Endpoint::Ims => "ims",
            Endpoint::Evs => "evs",
        }
    }

    /// Where stratus serves this service's paths.
    pub const fn prefix(self) -> &'static str {
        match self {
            Endpoint::Iam => "/identity",
            Endpoint::Ecs => "/compute",
            Endpoint::Ims => "/image",
            Endpoint::Evs => "/volume",
        }
    }

    /// The path a request to this endpoint is served at.
    pub fn map(self, path: &str) -> String {
        format!("{}{}", self.prefix(), if path == "/" { "" } else { path })
    }
}

/// Refuses a request to a Huawei project-level path (`/v1/{project_id}/...`) whose project is
/// not the request's own (400), or that has no project (403), in API `A`'s format.
pub(crate) fn own_project<A: crate::error::Api>(
    caller: &stratus_services::identity::TokenInfo,
    pid: &str,
    service: &str,
) -> crate::error::ApiResult<(), A> {
    use crate::error::ApiError;
    match caller.project() {
        None => Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            format!("{service} needs a project-scoped token or X-Project-Id."),
        )),
        Some(p) if p.id != pid => Err(ApiError::bad_request(format!(
            "The project in the URL, {pid:?}, is not the request's ({:?}).",
            p.id
        ))),
        Some(_) => Ok(()),
    }
}

/// The application as served on a Huawei service's own listener.
pub fn router(app: Router, endpoint: Endpoint) -> Router {
    let mapped = tower::ServiceBuilder::new()
        .map_request(move |mut req: Request| {
            let wire = req.uri().clone();
            let mut to = endpoint.map(wire.path());
            if let Some(q) = wire.query() {
                to.push('?');
                to.push_str(q);
            }
            if let Ok(uri) = to.parse::<axum::http::Uri>() {
                req.extensions_mut().insert(OriginalUri(uri.clone()));
                *req.uri_mut() = uri;
            }
            req.extensions_mut().insert(WireUri(wire));
            req
        })
        .map_response(|mut resp: axum::response::Response| {
            // Huawei's SDKs read the request id from X-Request-Id.
            if let Some(id) = resp
                .headers()
                .get(crate::middleware::REQUEST_ID_HEADER)
                .cloned()
            {
                resp.headers_mut().insert("x-request-id", id);
            }
            resp
        })
        .service(app);
    Router::new().fallback_service(mapped)
}

#[cfg(test)]
mod tests {
    use super::Endpoint;

    #[test]
    fn paths_map_under_their_service() {
        assert_eq!(
            Endpoint::Iam.map("/v3.0/OS-CREDENTIAL/credentials"),
            "/identity/v3.0/OS-CREDENTIAL/credentials"
        );
        assert_eq!(
            Endpoint::Ecs.map("/v2.1/p/servers"),
            "/compute/v2.1/p/servers"
        );
        assert_eq!(Endpoint::Ims.map("/v2/images"), "/image/v2/images");
        assert_eq!(Endpoint::Evs.map("/"), "/volume");
    }
}
