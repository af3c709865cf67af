//! Extractors whose rejections render in their API's error format: JSON bodies (size-capped,
//! media type checked, errors naming the offending field), query strings and the caller's token.

use crate::error::{Api, ApiError};
use crate::AppState;
use axum::extract::{ConnectInfo, MatchedPath};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use stratus_iam::Entry;
use stratus_services::authz::{Authorized, Facts};
use stratus_services::identity::TokenInfo;
use stratus_services::signing;

/// Largest JSON request body accepted (413 above).
pub const MAX_JSON_BODY: usize = stratus_services::limits::JSON_BODY_BYTES;

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

/// A body up to this size is read to its end even when it is too large, so that the client
/// (still sending) gets the 413 rather than a reset connection; past it the connection is dropped.
const DRAIN_LIMIT: usize = 8 * MAX_JSON_BODY;

/// Reads a body of at most [`MAX_JSON_BODY`] bytes: 413 if larger.
pub async fn read_body<A: Api>(req: Request) -> Result<bytes::Bytes, ApiError<A>> {
    use http_body_util::BodyExt;
    let mut body = req.into_body();
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("Could not read the request body: {e}.")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= MAX_JSON_BODY {
                buf.extend_from_slice(&data);
            } else if seen > DRAIN_LIMIT {
                break;
            }
        }
    }
    if seen > MAX_JSON_BODY {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body is larger than the limit of {MAX_JSON_BODY} bytes."),
        ));
    }
    Ok(buf.freeze())
}

/// Parses JSON, naming the path of the offending field on error.
pub fn parse_json<T: DeserializeOwned, A: Api>(bytes: &[u8]) -> Result<T, ApiError<A>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "The request body is empty; a JSON document is required.",
        ));
    }
    // Parsed once as a document, so that its shape is checked against the limits before any
    // field is read.
    let doc: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("Malformed JSON in request body: {e}.")))?;
    stratus_services::limits::check_json(&doc)?;
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
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
        let signed = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .filter(|v| signing::is_signed(v));
        let info = match signed {
            Some(authorization) => signed_caller(parts, state, authorization).await?,
            None => {
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
                state.identity.validate(token).await?
            }
        };
        let path = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map(|u| u.path().to_string())
            .unwrap_or_else(|| parts.uri.path().to_string());
        if !check_access_rules(&info, &parts.method, &path) {
            tracing::info!(user = %info.user.id, %path, "request outside the application credential's access rules");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                stratus_services::identity::AUTH_REQUIRED,
            ));
        }
        Ok(Caller(info, PhantomData))
    }
}

/// The request's URI as it came over the wire, before any layer rewrote its path (what a
/// signature is over).
#[derive(Clone, Debug)]
pub struct WireUri(pub axum::http::Uri);

/// `hex(sha256(body))` of a signed request, when its body was small enough to read first.
#[derive(Clone, Debug)]
pub struct PayloadSha256(pub String);

/// The caller of an AK/SK-signed request (`Authorization: SDK-HMAC-SHA256 ...`): the signature
/// checked over the request as it came over the wire, then the key's user on the scope of
/// `X-Project-Id` (or `X-Domain-Id`). Every failure is a 401.
async fn signed_caller<A: Api>(
    parts: &Parts,
    state: &AppState,
    authorization: &str,
) -> Result<TokenInfo, ApiError<A>> {
    let uri = parts
        .extensions
        .get::<WireUri>()
        .map(|w| &w.0)
        .unwrap_or(&parts.uri);
    // Header values as UTF-8, as the SDK signs them.
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let checked = signing::check(
        authorization,
        &signing::WireRequest {
            method: parts.method.as_str(),
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            header: &header,
            payload_sha256: parts
                .extensions
                .get::<PayloadSha256>()
                .map(|h| h.0.as_str()),
        },
        now,
    )
    .map_err(|e| {
        tracing::info!(reason = %e, "signed request refused");
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            stratus_services::identity::AUTH_REQUIRED,
        )
    })?;
    let project = header("x-project-id").map(str::to_string);
    let domain = header("x-domain-id").map(str::to_string);
    let security_token = header("x-security-token").map(str::to_string);
    Ok(state
        .identity
        .authenticate_signed(
            &checked,
            project.as_deref(),
            domain.as_deref(),
            security_token.as_deref(),
        )
        .await?)
}

/// The caller and the catalogue entry of the route, before the decision. Handlers first resolve
/// what they act on (404 for what the caller cannot see), then call [`Authz::require`], which
/// decides over the whole required set and yields the [`Authorized`] caller every mutating
/// service call needs.
pub struct Authz<A> {
    caller: TokenInfo,
    state: Arc<AppState>,
    /// The route's entry; `None` for a route whose entries are told apart by the body's key
    /// (server actions) until [`Authz::for_body_key`] picks one.
    entry: Option<usize>,
    method: axum::http::Method,
    path: String,
    source_ip: Option<IpAddr>,
    api: PhantomData<A>,
}

impl<A: Api> Authz<A> {
    /// The caller, for resolving visibility before the decision.
    pub fn caller(&self) -> &TokenInfo {
        &self.caller
    }

    pub fn entry(&self) -> Option<&Entry> {
        self.entry
            .map(|e| &self.state.authz.catalogue().entries()[e])
    }

    /// Picks the entry of a route whose body's single key names the operation (`POST
    /// .../action` with `{"os-stop": null}`); `None` if the catalogue has no such operation.
    pub fn for_body_key(mut self, key: &str) -> Option<Self> {
        self.entry = entry_index(&self.state, &self.method, &self.path, Some(key));
        self.entry.map(|_| self)
    }

    /// Decides the route for the caller with `facts` (the source address is filled in).
    pub async fn require(self, facts: Facts<'_>) -> Result<Authorized, ApiError<A>> {
        let facts = Facts {
            source_ip: self.source_ip,
            ..facts
        };
        let Some(entry) = self.entry else {
            tracing::error!(method = %self.method, path = %self.path, "route decided without a catalogue entry");
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "An unexpected error prevented the server from fulfilling your request.",
            ));
        };
        let entry = &self.state.authz.catalogue().entries()[entry];
        Ok(self
            .state
            .authz
            .authorize(self.caller, entry, &facts)
            .await?)
    }

    /// Decides a route that acts on nothing in particular (lists, creations).
    pub async fn allow(self) -> Result<Authorized, ApiError<A>> {
        self.require(Facts::default()).await
    }

    /// Decides a self-service route: no decision when the caller acts on themselves.
    pub async fn allow_self(self, is_self: bool) -> Result<Authorized, ApiError<A>> {
        self.require(Facts {
            is_self,
            ..Facts::default()
        })
        .await
    }
}

/// The catalogue entry of a routed request; HEAD falls back to the GET entry.
pub fn entry_index(
    state: &AppState,
    method: &axum::http::Method,
    path: &str,
    body_key: Option<&str>,
) -> Option<usize> {
    let cat = state.authz.catalogue();
    cat.entry_index(method.as_str(), path, body_key)
        .or_else(|| {
            (method == axum::http::Method::HEAD)
                .then(|| cat.entry_index("GET", path, body_key))
                .flatten()
        })
}

impl<A: Api> FromRequestParts<Arc<AppState>> for Authz<A> {
    type Rejection = ApiError<A>;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let path = parts
            .extensions
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_string())
            .unwrap_or_default();
        let entry = entry_index(state, &parts.method, &path, None);
        let keyed = || {
            state.authz.catalogue().entries().iter().any(|e| {
                e.method == parts.method.as_str() && e.path == path && e.body_key.is_some()
            })
        };
        if entry.is_none() && !keyed() {
            tracing::error!(method = %parts.method, %path, "route has no action catalogue entry");
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "An unexpected error prevented the server from fulfilling your request.",
            ));
        }
        let Caller(caller, _) = Caller::<A>::from_request_parts(parts, state).await?;
        let source_ip = client_ip(parts, &state.http.trusted_proxies);
        Ok(Authz {
            caller,
            state: state.clone(),
            entry,
            method: parts.method.clone(),
            path,
            source_ip,
            api: PhantomData,
        })
    }
}

/// Reads the body of an action route (`{"<action>": <argument>}`) and picks the route's catalogue
/// entry for that action; 400 for a body that is not one key, or names no action of the route.
pub async fn action_body<A: Api>(
    authz: Authz<A>,
    req: Request,
) -> Result<(Authz<A>, String, serde_json::Value), ApiError<A>> {
    let body: serde_json::Value = parse_json(&read_body::<A>(req).await?)?;
    let one = match body {
        serde_json::Value::Object(o) if o.len() == 1 => o.into_iter().next(),
        _ => None,
    };
    let Some((key, arg)) = one else {
        return Err(ApiError::bad_request(
            "The action body must be an object with exactly one key naming the action.",
        ));
    };
    match authz.for_body_key(&key) {
        Some(authz) => Ok((authz, key, arg)),
        None => Err(ApiError::bad_request(format!(
            "There is no such action: {key}"
        ))),
    }
}

/// The client's address: the connection's peer, or, when the peer is a trusted proxy, the last
/// address of `X-Forwarded-For` that is not one (the ones before it could be forged by the
/// client).
pub fn client_ip(parts: &Parts, trusted: &[crate::Cidr]) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|t| t.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let hops: Vec<IpAddr> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse::<IpAddr>().ok())
        .collect();
    Some(
        hops.iter()
            .rev()
            .copied()
            .find(|ip| !is_trusted(*ip))
            .or(hops.first().copied())
            .unwrap_or(peer),
    )
}

/// The service types a path belongs to (as the catalogue names them; block storage under its
/// older names too) and the path without the service's prefix.
fn service_of(path: &str) -> Option<(&'static [&'static str], &str)> {
    const SERVICES: &[(&str, &[&str])] = &[
        ("/identity", &["identity"]),
        ("/compute", &["compute"]),
        ("/image", &["image"]),
        ("/volume", &["block-storage", "volumev3", "volume"]),
    ];
    SERVICES.iter().find_map(|(prefix, types)| {
        let rest = path.strip_prefix(prefix)?;
        (rest.is_empty() || rest.starts_with('/')).then_some((*types, rest))
    })
}

/// A token of an application credential with access rules may make only the calls they name
/// (401 otherwise, as upstream's middleware answers); reading its own token is always allowed.
fn check_access_rules(caller: &TokenInfo, method: &axum::http::Method, path: &str) -> bool {
    let Some(a) = &caller.app_cred else {
        return true;
    };
    if a.access_rules.is_empty() {
        return true;
    }
    if method == axum::http::Method::GET
        && (path == "/identity/v3/auth/tokens" || path == "/identity/v3/auth/tokens/")
    {
        return true;
    }
    match service_of(path) {
        Some((types, rest)) => a.allows(types, method.as_str(), &[rest, path]),
        None => false,
    }
}
