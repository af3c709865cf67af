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
