//! Application credentials (Keystone): a secret that authenticates as its user on one project,
//! with at most the roles its user held there when it was made (and still holds), and, if it
//! has access rules, only for the API calls they name.

use crate::authz::Authorized;
pub use crate::caller::{path_matches, AccessRule, AppCred};
use crate::identity::{Identity, TokenInfo};
use crate::{password, Result, ServiceError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use std::sync::Arc;
use stratus_store::{self as store, now_micros, AppCredRec};

/// Most application credentials a user may hold.
pub const MAX_PER_USER: usize = 100;
/// Most access rules one credential may carry.
pub const MAX_ACCESS_RULES: usize = 100;
/// Longest access-rule path (upstream's schema).
pub const MAX_RULE_PATH: usize = 225;
pub const RULE_METHODS: &[&str] = &["DELETE", "GET", "HEAD", "PATCH", "POST", "PUT"];

/// An access rule as a request gives it: a new rule, or the id of one the user has already.
#[derive(Debug, Clone)]
pub enum RuleRef {
    New {
        service: String,
        method: String,
        path: String,
    },
    Id(String),
}

/// A role of a request, by id or by name.
#[derive(Debug, Clone)]
pub enum RoleSel {
    Id(String),
    Name(String),
}

#[derive(Debug, Clone, Default)]
pub struct AppCredCreate {
    pub name: String,
    pub description: Option<String>,
    pub secret: Option<String>,
    /// Microseconds since the epoch.
    pub expires_at: Option<i64>,
    pub roles: Vec<RoleSel>,
    pub unrestricted: bool,
    pub access_rules: Vec<RuleRef>,
}

fn bad(msg: impl Into<String>) -> ServiceError {
    ServiceError::BadRequest(msg.into())
}

fn generate_secret() -> String {
    let mut b = [0u8; 64];
    rand::thread_rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

impl Identity {
    pub(crate) async fn app_cred_of(&self, rec: &AppCredRec) -> Result<AppCred> {
        let ids: Vec<String> = serde_json::from_str(&rec.roles).unwrap_or_default();
        let mut roles = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(r) = store::role_get(self.store().pool(), id).await? {
                roles.push(r);
            }
        }
        Ok(AppCred {
            id: rec.id.clone(),
            user_id: rec.user_id.clone(),
            project_id: rec.project_id.clone(),
            name: rec.name.clone(),
            description: rec.description.clone(),
            expires_at: rec.expires_at,
            unrestricted: rec.unrestricted,
            roles,
            access_rules: serde_json::from_str(&rec.access_rules).unwrap_or_default(),
        })
    }

    /// Refuses a caller that authenticated with a restricted application credential (upstream:
    /// such a credential cannot manage credentials) or with a temporary access key (whose
    /// credential would outlive it).
    fn not_from_restricted(caller: &TokenInfo) -> Result<()> {
        if caller
            .methods
            .iter()
            .any(|m| m == crate::access_keys::TEMPORARY_METHOD)
        {
            return Err(ServiceError::Forbidden(
                "A temporary access key cannot manage application credentials.".into(),
            ));
        }
        if caller.app_cred.as_ref().is_some_and(|a| !a.unrestricted) {
            return Err(ServiceError::Forbidden(
                "Using method 'application_credential' is not allowed for managing additional application credentials.".into(),
            ));
        }
        Ok(())
    }

    /// Creates an application credential of `user_id`, who must be the caller, on the caller's
    /// project, with roles the caller holds there. Returns it with its secret (never shown
    /// again).
    pub async fn create_app_cred(
        &self,
        caller: &Authorized,
        user_id: &str,
        req: AppCredCreate,
    ) -> Result<(AppCred, String)> {
        let user = crate::directory::visible_user(self.store(), caller, user_id).await?;
        Self::not_from_restricted(caller)?;
        if caller.user.id != user.id {
            return Err(ServiceError::Forbidden(
                "Cannot create an application credential for another user.".into(),
            ));
        }
        let project = caller
            .project()
            .ok_or_else(|| bad("Application credentials are made with a project-scoped token."))?
            .id
            .clone();
        crate::identity::validate_name("application_credential", &req.name)?;
        if req
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 255)
        {
            return Err(bad("The description is longer than 255 characters."));
        }
        let now = now_micros();
        if req.expires_at.is_some_and(|e| e <= now) {
            return Err(bad("The expiration time is in the past."));
        }
        let held = caller.roles.clone();
        let roles: Vec<String> = if req.roles.is_empty() {
            held.iter().map(|r| r.id.clone()).collect()
        } else {
            let mut out = Vec::new();
            for r in &req.roles {
                let found = held.iter().find(|h| match r {
                    RoleSel::Id(id) => &h.id == id,
                    RoleSel::Name(n) => &h.name == n,
                });
                match found {
                    Some(h) if !out.contains(&h.id) => out.push(h.id.clone()),
                    Some(_) => {}
                    None => {
                        return Err(bad(
                            "Invalid application credential: Cannot create an application credential with unassigned role",
                        ))
                    }
                }
            }
            out
        };
        if roles.is_empty() {
            return Err(bad(
                "Invalid application credential: the user holds no role on the project.",
            ));
        }
        let existing = store::app_creds_of_user(self.store().pool(), &user.id, None).await?;
        if existing.len() >= MAX_PER_USER {
            return Err(ServiceError::Forbidden(format!(
                "Unable to create additional application credentials, maximum of {MAX_PER_USER} already exceeded for user."
            )));
        }
        if req.access_rules.len() > MAX_ACCESS_RULES {
            return Err(bad(format!(
                "At most {MAX_ACCESS_RULES} access rules per application credential."
            )));
        }
        let known: Vec<AccessRule> = existing
            .iter()
            .flat_map(|a| {
                serde_json::from_str::<Vec<AccessRule>>(&a.access_rules).unwrap_or_default()
            })
            .collect();
        let mut rules = Vec::new();
        for r in req.access_rules {
            let rule = match r {
                RuleRef::Id(id) => known
                    .iter()
                    .find(|k| k.id == id)
                    .cloned()
                    .ok_or_else(|| bad(format!("Access rule {id} could not be found.")))?,
                RuleRef::New {
                    service,
                    method,
                    path,
                } => {
                    if !RULE_METHODS.contains(&method.as_str()) {
                        return Err(bad(format!(
                            "Invalid access rule method {method:?}: one of {}.",
                            RULE_METHODS.join(", ")
                        )));
                    }
                    if !path.starts_with('/') || path.len() > MAX_RULE_PATH {
                        return Err(bad(format!(
                            "Invalid access rule path {path:?}: it starts with '/' and has at most {MAX_RULE_PATH} characters."
                        )));
                    }
                    if service.is_empty() || service.len() > 255 {
                        return Err(bad("Invalid access rule service."));
                    }
                    // The same rule the user has already keeps its id, as upstream.
                    match known
                        .iter()
                        .find(|k| k.service == service && k.method == method && k.path == path)
                    {
                        Some(k) => k.clone(),
                        None => AccessRule {
                            id: crate::new_id(),
                            service,
                            method,
                            path,
                        },
                    }
                }
            };
            rules.push(rule);
        }
        let secret = req
            .secret
            .filter(|s| !s.is_empty())
            .unwrap_or_else(generate_secret);
        if secret.len() > 1024 {
            return Err(bad("The secret is longer than 1024 characters."));
        }
        let rec = AppCredRec {
            id: crate::new_id(),
            user_id: user.id.clone(),
            project_id: project,
            name: req.name,
            description: req.description,
            secret_hash: password::hash(secret.clone()).await?,
            expires_at: req.expires_at,
            unrestricted: req.unrestricted,
            roles: serde_json::to_string(&roles).unwrap_or_else(|_| "[]".into()),
            access_rules: serde_json::to_string(&rules).unwrap_or_else(|_| "[]".into()),
            created_at: now,
        };
        let mut w = self.store().write_identity().await?;
        store::app_cred_insert(w.conn(), &rec)
            .await
            .map_err(|e| match e {
                store::StoreError::Conflict(_) => ServiceError::Conflict(format!(
                    "An application credential named {:?} exists already.",
                    rec.name
                )),
                other => other.into(),
            })?;
        self.store().commit(w).await?;
        Ok((self.app_cred_of(&rec).await?, secret))
    }

    /// A user's application credentials (`name` narrows to one).
    pub async fn list_app_creds(
        &self,
        caller: &Authorized,
        user_id: &str,
        name: Option<&str>,
    ) -> Result<Vec<AppCred>> {
        let user = crate::directory::visible_user(self.store(), caller, user_id).await?;
        let mut out = Vec::new();
        for rec in store::app_creds_of_user(self.store().pool(), &user.id, name).await? {
            out.push(self.app_cred_of(&rec).await?);
        }
        Ok(out)
    }

    /// The credential `id` of `user_id`, if the caller may see the user (404 otherwise).
    pub async fn get_app_cred(
        &self,
        caller: &TokenInfo,
        user_id: &str,
        id: &str,
    ) -> Result<AppCred> {
        let user = crate::directory::visible_user(self.store(), caller, user_id).await?;
        let rec = store::app_cred_get(self.store().pool(), id)
            .await?
            .filter(|a| a.user_id == user.id)
            .ok_or_else(|| ServiceError::not_found("application credential", id))?;
        self.app_cred_of(&rec).await
    }

    /// Deletes a credential; tokens made with it stop working at once.
    pub async fn delete_app_cred(
        &self,
        caller: &Authorized,
        user_id: &str,
        id: &str,
    ) -> Result<()> {
        Self::not_from_restricted(caller)?;
        let a = self.get_app_cred(caller, user_id, id).await?;
        let mut w = self.store().write_identity().await?;
        store::app_cred_delete(w.conn(), &a.id).await?;
        self.store().commit(w).await?;
        Ok(())
    }

    /// The credential a token names, if it still exists.
    pub(crate) async fn cached_app_cred(&self, g: i64, id: &str) -> Result<Option<Arc<AppCred>>> {
        if let Some(v) = self.app_creds.get(id) {
            return Ok(v);
        }
        let v = match store::app_cred_get(self.store().pool(), id).await? {
            Some(rec) => Some(Arc::new(self.app_cred_of(&rec).await?)),
            None => None,
        };
        self.generation
            .put(&self.app_creds, g, id.to_string(), v.clone());
        Ok(v)
    }
}
