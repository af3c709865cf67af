//! Authentication and tokens: password, token and application-credential authentication, token
//! validation and revocation, token keys. Administration of what tokens refer to (domains,
//! projects, users, groups) is [`crate::directory`]'s.

use crate::authz::Authorized;
use crate::cache::{Clear, Generation, Memo};
use crate::caller::AppCred;
pub use crate::caller::{RoleRef, Scope, TokenInfo};
use crate::secrets::{CredentialKey, KeySecret};
use crate::token::{new_audit_id, TokenCodec, TokenPayload};
use crate::{password, Result, ServiceError};
use std::future::Future;
use std::sync::Arc;
use stratus_store::{
    self as store, now_micros, CatalogRec, DomainRec, ProjectRec, ScopeKind, Store, StoreError,
    UserRec,
};

/// The message Keystone gives for every authentication failure; details go to the log only.
pub const AUTH_REQUIRED: &str = "The request you have made requires authentication.";

pub struct IssuedToken {
    pub token: String,
    pub info: TokenInfo,
}

#[derive(Debug, Clone)]
pub enum DomainRef {
    Id(String),
    Name(String),
}

#[derive(Debug, Clone)]
pub enum UserRef {
    Id(String),
    Name { name: String, domain: DomainRef },
}

#[derive(Debug, Clone)]
pub enum ProjectRef {
    Id(String),
    Name { name: String, domain: DomainRef },
}

#[derive(Debug, Clone)]
pub enum ScopeRequest {
    /// No scope asked: the user's default project if it is usable, else unscoped.
    Default,
    Project(ProjectRef),
    Domain(DomainRef),
}

#[derive(Debug, Clone)]
pub enum AuthMethod {
    Password {
        user: UserRef,
        password: String,
    },
    Token(String),
    /// By the credential's id, or by its name and its user.
    AppCred {
        id: Option<String>,
        name: Option<String>,
        user: Option<UserRef>,
        secret: String,
    },
}

#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub method: AuthMethod,
    pub scope: ScopeRequest,
}

/// Login protection: after `max_failures` wrong passwords within `window`, the user cannot log
/// in for `lockout` (Huawei IAM's account lockout). Off when `max_failures` is 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoginProtection {
    pub max_failures: i64,
    pub window_micros: i64,
    pub lockout_micros: i64,
}

pub struct Identity {
    store: Arc<Store>,
    login_protection: LoginProtection,
    /// The token keys as last loaded, and when (microseconds).
    codec: std::sync::RwLock<(Arc<TokenCodec>, i64)>,
    token_ttl_micros: i64,
    catalog: Vec<CatalogRec>,
    pub(crate) generation: Generation,
    users: Memo<String, Option<Arc<UserRec>>>,
    projects: Memo<String, Option<Arc<ProjectRec>>>,
    domains: Memo<String, Option<Arc<DomainRec>>>,
    revoked: Memo<String, bool>,
    /// Keyed by `"<user id> <scope key>"`.
    roles: Memo<String, Arc<Vec<RoleRef>>>,
    pub(crate) app_creds: Memo<String, Option<Arc<AppCred>>>,
    pub(crate) access_keys: Memo<String, Arc<KeySecret>>,
    /// Whether a user may act on a project (`"<user id> <project id>"`).
    scopable: Memo<String, bool>,
    credential_key: CredentialKey,
}

/// How long token keys are used before they are read again even without a revision change: an
/// embedded store's revision is tracked in memory, so a rotation by the operator command shows
/// only this way.
const KEY_RELOAD_MICROS: i64 = 30_000_000;

async fn load_codec(store: &Store) -> Result<TokenCodec> {
    let mut keys = Vec::new();
    for (id, secret) in store::token_keys(store.pool()).await? {
        let k = TokenCodec::decode_secret(&secret)
            .ok_or_else(|| ServiceError::Internal(format!("token key {id} is corrupt")))?;
        keys.push((id as u32, k));
    }
    if keys.is_empty() {
        return Err(ServiceError::Internal(
            "no token keys: the store is not bootstrapped".into(),
        ));
    }
    Ok(TokenCodec::new(&keys))
}

/// Whether grants make a project usable as a token's scope: one on it, on all projects of its
/// domain, or on an enterprise project (whose resources span projects).
pub(crate) fn scopable(
    grants: &[(ScopeKind, String, stratus_store::RoleRec)],
    project: &ProjectRec,
) -> bool {
    grants.iter().any(|(kind, scope, _)| match kind {
        ScopeKind::Project => scope == &project.id,
        ScopeKind::AllProjects => scope == &project.domain_id,
        ScopeKind::EnterpriseProject => true,
        ScopeKind::Domain => false,
    })
}

/// What a token key rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The new key every node issues tokens with from now on.
    pub primary: i64,
    /// Older keys kept: tokens made with them may still be unexpired.
    pub kept: Vec<i64>,
    /// Older keys removed: every token made with them has expired.
    pub pruned: Vec<i64>,
}

/// Makes a new primary token key and removes the keys no unexpired token can have been made
/// with: a key retired (another made after it) more than the longest token lifetime ago, plus
/// the time a node may go on using a key before it reads the keys again.
pub async fn rotate_token_keys(store: &Store, token_ttl_secs: i64) -> Result<Rotation> {
    let now = now_micros();
    let mut w = store.write_identity().await?;
    let keys = store::token_keys_dated(w.conn()).await?;
    let primary = keys.iter().map(|k| k.0).max().unwrap_or(0) + 1;
    store::token_key_insert(w.conn(), primary, &TokenCodec::generate_secret()).await?;
    let lifetime = token_ttl_secs.saturating_mul(1_000_000) + 2 * KEY_RELOAD_MICROS;
    let (mut kept, mut pruned) = (Vec::new(), Vec::new());
    for (n, (id, _, _)) in keys.iter().enumerate() {
        // Retired when the next key was made (the new one, for the newest old key).
        let retired_at = keys.get(n + 1).map_or(now, |k| k.2);
        if now - retired_at > lifetime {
            store::token_key_delete(w.conn(), *id).await?;
            pruned.push(*id);
        } else {
            kept.push(*id);
        }
    }
    store.commit(w).await?;
    Ok(Rotation {
        primary,
        kept,
        pruned,
    })
}

pub(crate) fn unauthorized(why: impl std::fmt::Display) -> ServiceError {
    tracing::info!(reason = %why, "authentication failed");
    ServiceError::Unauthorized(AUTH_REQUIRED.to_string())
}

/// Names of users, groups and projects: 1 to 255 characters, no control characters, not blank.
pub fn validate_name(kind: &str, name: &str) -> Result<()> {
    let n = name.chars().count();
    if n == 0 || n > 255 || name.trim().is_empty() || name.chars().any(char::is_control) {
        return Err(ServiceError::BadRequest(format!(
            "Invalid input for field '{kind}.name': the name must be 1 to 255 printable characters and not blank."
        )));
    }
    Ok(())
}

impl Identity {
    /// Loads token keys and the service catalogue; the store must have been bootstrapped.
    pub async fn new(store: Arc<Store>, token_ttl_secs: i64) -> Result<Identity> {
        let codec = load_codec(&store).await?;
        let catalog = store::catalog_list(store.pool()).await?;
        Ok(Identity {
            store,
            login_protection: LoginProtection::default(),
            codec: std::sync::RwLock::new((Arc::new(codec), now_micros())),
            token_ttl_micros: token_ttl_secs.saturating_mul(1_000_000),
            catalog,
            generation: Generation::new(),
            users: Memo::new(),
            projects: Memo::new(),
            domains: Memo::new(),
            revoked: Memo::new(),
            roles: Memo::new(),
            app_creds: Memo::new(),
            access_keys: Memo::new(),
            scopable: Memo::new(),
            // Until the node's own is set: access keys made with this one die with the process.
            credential_key: CredentialKey::from_bytes(&CredentialKey::generate()),
        })
    }

    /// Sets the key that encrypts the secrets of access keys (the node's credential key).
    pub fn with_credential_key(mut self, key: CredentialKey) -> Identity {
        self.credential_key = key;
        self
    }

    pub(crate) fn credential_key(&self) -> &CredentialKey {
        &self.credential_key
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Turns the account lockout on (it is off by default).
    pub fn with_login_protection(mut self, p: LoginProtection) -> Identity {
        self.login_protection = p;
        self
    }

    /// Whether the user may hold a token scoped to `project`: a grant on it, on all projects of
    /// its domain, or on an enterprise project (whose resources span projects).
    async fn may_scope(&self, user_id: &str, project: &ProjectRec) -> Result<bool> {
        let grants = store::grants_reaching_user(self.store.pool(), user_id).await?;
        Ok(scopable(&grants, project))
    }

    /// Records a wrong password (and locks the account when login protection says so).
    async fn login_failed(&self, user_id: &str, now: i64) -> Result<()> {
        let p = self.login_protection;
        if p.max_failures <= 0 {
            return Ok(());
        }
        let mut w = self.store.write().await?;
        let mut f = store::login_failures_get(w.conn(), user_id)
            .await?
            .unwrap_or_default();
        if now - f.since > p.window_micros {
            f.failures = 0;
            f.since = now;
        }
        f.failures += 1;
        if f.failures >= p.max_failures {
            f.locked_until = now + p.lockout_micros;
            f.failures = 0;
            f.since = now;
            tracing::warn!(user = %user_id, "account locked after repeated wrong passwords");
        }
        store::login_failures_put(w.conn(), user_id, &f).await?;
        Ok(self.store.commit(w).await?)
    }

    /// Every catalogue entry; URLs are made by the HTTP layer from the public base URL.
    pub fn catalog(&self) -> &[CatalogRec] {
        &self.catalog
    }

    // -----------------------------------------------------------------------------------------
    // cache

    async fn sync(&self) -> Result<i64> {
        let rev = self.store.current_revision().await?;
        let memos: [&dyn Clear; 8] = [
            &self.users,
            &self.projects,
            &self.domains,
            &self.revoked,
            &self.roles,
            &self.app_creds,
            &self.access_keys,
            &self.scopable,
        ];
        let before = self.generation.current();
        let g = self.generation.sync(rev, &memos);
        let stale = self
            .codec
            .read()
            .map(|c| now_micros() - c.1 > KEY_RELOAD_MICROS)
            .unwrap_or(true);
        if g != before || stale {
            self.reload_keys().await?;
        }
        Ok(g)
    }

    /// Reads the token keys again (a rotation on any node, or by `stratus token rotate`).
    async fn reload_keys(&self) -> Result<()> {
        let codec = Arc::new(load_codec(&self.store).await?);
        if let Ok(mut c) = self.codec.write() {
            *c = (codec, now_micros());
        }
        Ok(())
    }

    fn codec(&self) -> Arc<TokenCodec> {
        match self.codec.read() {
            Ok(c) => c.0.clone(),
            Err(poisoned) => poisoned.into_inner().0.clone(),
        }
    }

    /// The cache generation of the store's current revision (the caches dropped if it moved).
    pub(crate) async fn sync_generation(&self) -> Result<i64> {
        self.sync().await
    }

    /// Caches `v` as loaded at generation `g` (dropped if the revision has moved since).
    pub(crate) fn put_cached<V: Clone>(&self, memo: &Memo<String, V>, g: i64, k: &str, v: V) {
        self.generation.put(memo, g, k.to_string(), v);
    }

    async fn memo<V, F, Fut>(&self, g: i64, memo: &Memo<String, V>, k: &str, load: F) -> Result<V>
    where
        V: Clone,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, StoreError>>,
    {
        if let Some(v) = memo.get(k) {
            return Ok(v);
        }
        let v = load().await?;
        self.generation.put(memo, g, k.to_string(), v.clone());
        Ok(v)
    }

    async fn cached_user(&self, g: i64, id: &str) -> Result<Option<Arc<UserRec>>> {
        self.memo(g, &self.users, id, || async {
            Ok(store::user_get(self.store.pool(), id).await?.map(Arc::new))
        })
        .await
    }

    async fn cached_project(&self, g: i64, id: &str) -> Result<Option<Arc<ProjectRec>>> {
        self.memo(g, &self.projects, id, || async {
            Ok(store::project_get(self.store.pool(), id)
                .await?
                .map(Arc::new))
        })
        .await
    }

    async fn cached_domain(&self, g: i64, id: &str) -> Result<Option<Arc<DomainRec>>> {
        self.memo(g, &self.domains, id, || async {
            Ok(store::domain_get(self.store.pool(), id)
                .await?
                .map(Arc::new))
        })
        .await
    }

    async fn cached_roles(
        &self,
        g: i64,
        user_id: &str,
        scope: &Scope,
    ) -> Result<Arc<Vec<RoleRef>>> {
        let (key, scopes): (String, Vec<(ScopeKind, &str)>) = match scope {
            Scope::Unscoped => return Ok(Arc::new(Vec::new())),
            Scope::Project { project, .. } => (
                format!("p:{}", project.id),
                vec![
                    (ScopeKind::Project, project.id.as_str()),
                    (ScopeKind::AllProjects, project.domain_id.as_str()),
                ],
            ),
            Scope::Domain(d) => (
                format!("d:{}", d.id),
                vec![(ScopeKind::Domain, d.id.as_str())],
            ),
        };
        self.memo(g, &self.roles, &format!("{user_id} {key}"), || async {
            let roles = store::roles_of_user_on(self.store.pool(), user_id, &scopes).await?;
            Ok(Arc::new(
                roles
                    .into_iter()
                    .map(|r| RoleRef {
                        id: r.id,
                        name: r.name,
                    })
                    .collect(),
            ))
        })
        .await
    }

    // -----------------------------------------------------------------------------------------
    // tokens

    /// Validates a token: authentic, unexpired, not revoked, its user enabled and its scope usable.
    /// Every failure is the same 401; the reason is logged.
    pub async fn validate(&self, token: &str) -> Result<TokenInfo> {
        let g = self.sync().await?;
        let p = match self.codec().decode(token) {
            // A key made since the last load (a rotation elsewhere): load the keys again.
            Err(crate::token::TokenError::UnknownKey) => {
                self.reload_keys().await?;
                self.codec().decode(token)
            }
            other => other,
        }
        .map_err(unauthorized)?;
        if p.temporary_key.is_some() {
            return Err(unauthorized("a security token was sent as a token"));
        }
        self.check_payload(g, p).await
    }

    /// Decodes a token or security token with the token keys (loading them again for a key made
    /// since the last load).
    pub(crate) async fn decode_sealed(&self, sealed: &str) -> Result<TokenPayload> {
        match self.codec().decode(sealed) {
            Err(crate::token::TokenError::UnknownKey) => {
                self.reload_keys().await?;
                self.codec().decode(sealed)
            }
            other => other,
        }
        .map_err(unauthorized)
    }

    /// Seals a payload with the newest token key.
    pub(crate) fn seal(&self, p: &TokenPayload) -> Result<String> {
        self.codec()
            .encode(p)
            .ok_or_else(|| ServiceError::Internal("token encryption failed".into()))
    }

    /// The longest a token (or a security token) lives, in microseconds.
    pub(crate) fn token_ttl_micros(&self) -> i64 {
        self.token_ttl_micros
    }

    /// What a token payload stands for, if it still holds: unexpired, not revoked, its user
    /// enabled and its scope usable. The one check of tokens and of signed requests.
    pub(crate) async fn check_payload(&self, g: i64, p: TokenPayload) -> Result<TokenInfo> {
        let now = now_micros();
        if p.expires_at <= now {
            return Err(unauthorized("token expired"));
        }
        let revoked = self
            .memo(g, &self.revoked, &p.audit_id, || {
                store::token_is_revoked(self.store.pool(), &p.audit_id)
            })
            .await?;
        if revoked {
            return Err(unauthorized("token revoked"));
        }
        let user = self
            .cached_user(g, &p.user_id)
            .await?
            .ok_or_else(|| unauthorized("token user no longer exists"))?;
        if !user.enabled || p.issued_at < user.tokens_valid_after {
            return Err(unauthorized("token user disabled or credentials changed"));
        }
        let user_domain = self.enabled_domain(g, &user.domain_id).await?;
        let scope = if let Some(pid) = &p.project_id {
            let project = self
                .cached_project(g, pid)
                .await?
                .filter(|x| x.enabled && p.issued_at >= x.tokens_valid_after)
                .ok_or_else(|| {
                    unauthorized("token project missing, disabled, or disabled since")
                })?;
            let domain = self.enabled_domain(g, &project.domain_id).await?;
            Scope::Project { project, domain }
        } else if let Some(did) = &p.domain_id {
            Scope::Domain(self.enabled_domain(g, did).await?)
        } else {
            Scope::Unscoped
        };
        let mut roles = self.cached_roles(g, &user.id, &scope).await?;
        let app_cred = match &p.app_cred {
            None => None,
            Some(id) => {
                let a = self
                    .cached_app_cred(g, id)
                    .await?
                    .filter(|a| !a.expired(now) && a.user_id == user.id)
                    .ok_or_else(|| unauthorized("application credential gone or expired"))?;
                // At most the credential's roles, and only those the user still holds.
                let kept: Vec<RoleRef> = roles
                    .iter()
                    .filter(|r| a.roles.iter().any(|ar| ar.id == r.id))
                    .cloned()
                    .collect();
                if kept.is_empty() {
                    return Err(unauthorized(format!(
                        "user {} has no access to the application credential's project",
                        user.id
                    )));
                }
                roles = Arc::new(kept);
                Some(a)
            }
        };
        Ok(TokenInfo {
            user,
            user_domain,
            scope,
            roles,
            methods: p.methods,
            issued_at: p.issued_at,
            expires_at: p.expires_at,
            audit_id: p.audit_id,
            app_cred,
        })
    }

    /// The scope of a signed request, by the rules of a token's: a project of the user's domain
    /// that the user may act on, or the user's domain; neither named, unscoped.
    pub(crate) async fn signed_scope(
        &self,
        g: i64,
        user_id: &str,
        project_id: Option<&str>,
        domain_id: Option<&str>,
    ) -> Result<(Option<String>, Option<String>)> {
        let user = self
            .cached_user(g, user_id)
            .await?
            .ok_or_else(|| unauthorized("the access key's user is gone"))?;
        match (project_id, domain_id) {
            (Some(pid), _) => {
                let project = self
                    .cached_project(g, pid)
                    .await?
                    .filter(|p| p.enabled && p.domain_id == user.domain_id)
                    .ok_or_else(|| {
                        unauthorized("X-Project-Id: no such enabled project in the user's domain")
                    })?;
                let key = format!("{} {}", user.id, project.id);
                let may = match self.scopable.get(&key) {
                    Some(v) => v,
                    None => {
                        let v = self.may_scope(&user.id, &project).await?;
                        self.put_cached(&self.scopable, g, &key, v);
                        v
                    }
                };
                if !may {
                    return Err(unauthorized(format!(
                        "user {} has no access to project {}",
                        user.id, project.id
                    )));
                }
                Ok((Some(project.id.clone()), None))
            }
            (None, Some(did)) if did == user.domain_id => Ok((None, Some(did.to_string()))),
            (None, Some(_)) => Err(unauthorized("X-Domain-Id is not the user's domain")),
            (None, None) => Ok((None, None)),
        }
    }

    async fn enabled_domain(&self, g: i64, id: &str) -> Result<Arc<DomainRec>> {
        self.cached_domain(g, id)
            .await?
            .filter(|d| d.enabled)
            .ok_or_else(|| unauthorized("domain missing or disabled"))
    }

    async fn resolve_domain(&self, d: &DomainRef) -> Result<Option<DomainRec>> {
        Ok(match d {
            DomainRef::Id(id) => store::domain_get(self.store.pool(), id).await?,
            DomainRef::Name(n) => store::domain_by_name(self.store.pool(), n).await?,
        })
    }

    /// Finds a user by reference.
    async fn find_user(&self, user: &UserRef) -> Result<Option<UserRec>> {
        Ok(match user {
            UserRef::Id(id) => store::user_get(self.store.pool(), id).await?,
            UserRef::Name { name, domain } => match self.resolve_domain(domain).await? {
                Some(d) => store::user_by_name(self.store.pool(), &d.id, name).await?,
                None => None,
            },
        })
    }

    /// The application credential an authentication names, if its secret matches and it has
    /// not expired.
    async fn app_cred_auth(
        &self,
        id: Option<&str>,
        name: Option<&str>,
        user: Option<&UserRef>,
        secret: String,
        now: i64,
    ) -> Result<store::AppCredRec> {
        let rec = match (id, name, user) {
            (Some(id), _, _) => store::app_cred_get(self.store.pool(), id).await?,
            (None, Some(name), Some(u)) => match self.find_user(u).await? {
                Some(u) => store::app_creds_of_user(self.store.pool(), &u.id, Some(name))
                    .await?
                    .into_iter()
                    .next(),
                None => None,
            },
            _ => None,
        }
        .ok_or_else(|| unauthorized("unknown application credential"))?;
        if !password::verify(secret, rec.secret_hash.clone()).await {
            return Err(unauthorized(format!(
                "wrong secret for application credential {}",
                rec.id
            )));
        }
        if rec.expires_at.is_some_and(|e| e <= now) {
            return Err(unauthorized(format!(
                "application credential {} expired",
                rec.id
            )));
        }
        Ok(rec)
    }

    /// Issues a token (`POST /v3/auth/tokens`).
    pub async fn authenticate(&self, req: AuthRequest) -> Result<IssuedToken> {
        let now = now_micros();
        let mut app_cred = None;
        let (user, methods, expires_at) = match req.method {
            AuthMethod::Password { user, password } => {
                // An unknown user, or one without a password, costs a password check too, so
                // that the time of the answer does not tell which names exist.
                let Some(user) = self.find_user(&user).await?.map(Arc::new) else {
                    password::verify_nothing(password).await;
                    return Err(unauthorized("unknown user"));
                };
                let Some(hash) = user.password_hash.clone() else {
                    password::verify_nothing(password).await;
                    return Err(unauthorized("user has no password"));
                };
                let locked = store::login_failures_get(self.store.pool(), &user.id)
                    .await?
                    .is_some_and(|f| f.locked_until > now);
                if !password::verify(password, hash).await {
                    self.login_failed(&user.id, now).await?;
                    return Err(unauthorized(format!("wrong password for user {}", user.id)));
                }
                if locked {
                    return Err(unauthorized(format!("user {} is locked out", user.id)));
                }
                if self.login_protection.max_failures > 0 {
                    let mut w = self.store.write().await?;
                    store::login_failures_clear(w.conn(), &user.id).await?;
                    self.store.commit(w).await?;
                }
                if !user.enabled {
                    return Err(unauthorized(format!("user {} is disabled", user.id)));
                }
                (
                    user,
                    vec!["password".to_string()],
                    now + self.token_ttl_micros,
                )
            }
            AuthMethod::Token(t) => {
                // Re-scoping keeps the original expiry, as Keystone does.
                let info = self.validate(&t).await?;
                if info.app_cred.is_some() {
                    return Err(unauthorized(
                        "a token of an application credential cannot be re-scoped",
                    ));
                }
                (info.user, vec!["token".to_string()], info.expires_at)
            }
            AuthMethod::AppCred {
                id,
                name,
                user,
                secret,
            } => {
                if !matches!(req.scope, ScopeRequest::Default) {
                    return Err(unauthorized(
                        "Application credentials cannot request a scope",
                    ));
                }
                let rec = self
                    .app_cred_auth(id.as_deref(), name.as_deref(), user.as_ref(), secret, now)
                    .await?;
                let user = store::user_get(self.store.pool(), &rec.user_id)
                    .await?
                    .map(Arc::new)
                    .ok_or_else(|| unauthorized("the credential's user is gone"))?;
                if !user.enabled {
                    return Err(unauthorized(format!("user {} is disabled", user.id)));
                }
                let expires = (now + self.token_ttl_micros).min(rec.expires_at.unwrap_or(i64::MAX));
                app_cred = Some(rec);
                (user, vec!["application_credential".to_string()], expires)
            }
        };
        store::domain_get(self.store.pool(), &user.domain_id)
            .await?
            .filter(|d| d.enabled)
            .ok_or_else(|| unauthorized("user's domain disabled"))?;
        let (project_id, domain_id) = match &req.scope {
            ScopeRequest::Default if app_cred.is_some() => {
                (app_cred.as_ref().map(|a| a.project_id.clone()), None)
            }
            ScopeRequest::Default => match &user.default_project_id {
                // The default project, if the user may use it; else an unscoped token.
                Some(pid) => match store::project_get(self.store.pool(), pid).await? {
                    Some(p)
                        if p.enabled
                            && p.domain_id == user.domain_id
                            && self.may_scope(&user.id, &p).await? =>
                    {
                        (Some(p.id), None)
                    }
                    _ => (None, None),
                },
                None => (None, None),
            },
            ScopeRequest::Project(pref) => {
                let project = match pref {
                    ProjectRef::Id(id) => store::project_get(self.store.pool(), id).await?,
                    ProjectRef::Name { name, domain } => match self.resolve_domain(domain).await? {
                        Some(d) => store::project_by_name(self.store.pool(), &d.id, name).await?,
                        None => None,
                    },
                }
                .ok_or_else(|| unauthorized("scope project not found"))?;
                if !project.enabled || project.domain_id != user.domain_id {
                    return Err(unauthorized("scope project disabled or in another domain"));
                }
                if !self.may_scope(&user.id, &project).await? {
                    return Err(unauthorized(format!(
                        "user {} has no access to project {}",
                        user.id, project.id
                    )));
                }
                (Some(project.id), None)
            }
            ScopeRequest::Domain(dref) => {
                let d = self
                    .resolve_domain(dref)
                    .await?
                    .ok_or_else(|| unauthorized("scope domain not found"))?;
                if d.id != user.domain_id {
                    return Err(unauthorized("scope domain is not the user's"));
                }
                (None, Some(d.id))
            }
        };
        let payload = TokenPayload {
            user_id: user.id.clone(),
            project_id,
            domain_id,
            methods,
            issued_at: now,
            expires_at,
            audit_id: new_audit_id(),
            app_cred: app_cred.map(|a| a.id),
            temporary_key: None,
        };
        self.sync().await?;
        let token = self
            .codec()
            .encode(&payload)
            .ok_or_else(|| ServiceError::Internal("token encryption failed".into()))?;
        let info = self.validate(&token).await?;
        Ok(IssuedToken { token, info })
    }

    /// Validates the subject token of `GET`/`DELETE /v3/auth/tokens`; an invalid one is 404.
    /// Only tokens of the caller's domain are visible.
    pub async fn check_subject(&self, caller: &TokenInfo, subject: &str) -> Result<TokenInfo> {
        self.validate(subject)
            .await
            .ok()
            .filter(|info| info.user.domain_id == caller.user.domain_id)
            .ok_or_else(|| ServiceError::not_found("token", "the subject token"))
    }

    /// Revokes `subject` (`DELETE /v3/auth/tokens`).
    pub async fn revoke(&self, _by: &Authorized, subject: &TokenInfo) -> Result<()> {
        let mut w = self.store.write_identity().await?;
        store::token_revoke(w.conn(), &subject.audit_id, subject.expires_at).await?;
        store::token_revocations_purge(w.conn(), now_micros()).await?;
        self.store.commit(w).await?;
        Ok(())
    }
}

/// Turns a unique-constraint failure into Keystone's duplicate message.
pub(crate) fn duplicate(e: StoreError, kind: &str, name: &str) -> ServiceError {
    match e {
        StoreError::Conflict(_) => ServiceError::Conflict(format!(
            "Conflict occurred attempting to store {kind} - Duplicate entry found with name {name}."
        )),
        other => other.into(),
    }
}
