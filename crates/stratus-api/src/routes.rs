//! A route table that records every (method, path) it serves, so that a test can hold it against
//! the action catalogue: each served route has exactly one entry, each entry a route.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;

pub struct RouteTable<S> {
    paths: Vec<(String, MethodRouter<S>)>,
    served: Vec<(Method, String)>,
}

impl<S: Clone + Send + Sync + 'static> Default for RouteTable<S> {
    fn default() -> Self {
        RouteTable {
            paths: Vec::new(),
            served: Vec::new(),
        }
    }
}

impl<S: Clone + Send + Sync + 'static> RouteTable<S> {
    /// Serves `handler` for `method` on `path` (a full path template, as the catalogue has it).
    pub fn at<H, T>(mut self, method: Method, path: &str, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
        let mr = on(filter, handler);
        match self.paths.iter_mut().find(|(p, _)| p == path) {
            Some((_, existing)) => {
                let old = std::mem::replace(existing, MethodRouter::new());
                *existing = old.merge(mr);
            }
            None => self.paths.push((path.to_string(), mr)),
        }
        self.served.push((method, path.to_string()));
        self
    }

    pub fn merge(mut self, other: RouteTable<S>) -> Self {
        for (path, mr) in other.paths {
            match self.paths.iter_mut().find(|(p, _)| *p == path) {
                Some((_, existing)) => {
                    let old = std::mem::replace(existing, MethodRouter::new());
                    *existing = old.merge(mr);
                }
                None => self.paths.push((path, mr)),
            }
        }
        self.served.extend(other.served);
        self
    }

    /// Every (method, path) served.
    pub fn served(&self) -> &[(Method, String)] {
        &self.served
    }

    pub fn into_router(self) -> Router<S> {
        self.paths
            .into_iter()
            .fold(Router::new(), |r, (path, mr)| r.route(&path, mr))
    }
}

/// The canonical form of a path of an API with optional project ids: under any of the `accepted`
/// version prefixes, a path whose first segment is one of `collections` gets `_` (the token's
/// project) inserted; the prefix becomes `canonical`. `None` for paths outside those prefixes.
pub fn canonical_path(
    path: &str,
    accepted: &[&str],
    canonical: &str,
    collections: &[&str],
) -> Option<String> {
    let rest = accepted.iter().find_map(|p| path.strip_prefix(p))?;
    if rest.is_empty() {
        return Some(canonical.to_string());
    }
    let first = rest.split('/').next().unwrap_or("");
    if collections.contains(&first) {
        Some(format!("{canonical}_/{rest}"))
    } else {
        Some(format!("{canonical}{rest}"))
    }
}

/// Replaces a request's path, keeping its query.
pub fn set_path(req: &mut axum::extract::Request, path: &str) {
    let pq = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = pq.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}
