//! Who is calling: a validated token (`TokenInfo`) with its scope and roles, and the
//! application credential it was made with (`AppCred`) with the access rules that bound what it
//! may call. Authentication makes these; authorization and every service read them.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use stratus_store::{DomainRec, ProjectRec, RoleRec, UserRec};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub enum Scope {
    Unscoped,
    Project {
        project: Arc<ProjectRec>,
        domain: Arc<DomainRec>,
    },
    Domain(Arc<DomainRec>),
}

/// A validated token: who, on what scope, with which roles.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub user: Arc<UserRec>,
    pub user_domain: Arc<DomainRec>,
    pub scope: Scope,
    pub roles: Arc<Vec<RoleRef>>,
    pub methods: Vec<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub audit_id: String,
    /// The application credential the token was made with: its roles bound `roles`, its
    /// access rules bound what the token may call.
    pub app_cred: Option<Arc<AppCred>>,
}

impl TokenInfo {
    pub fn project(&self) -> Option<&ProjectRec> {
        match &self.scope {
            Scope::Project { project, .. } => Some(project),
            _ => None,
        }
    }

    /// The domain the token acts in: the scope's domain, else the user's.
    pub fn acting_domain_id(&self) -> &str {
        match &self.scope {
            Scope::Project { project, .. } => &project.domain_id,
            Scope::Domain(d) => &d.id,
            Scope::Unscoped => &self.user.domain_id,
        }
    }
}

/// One API call an application credential may make: the service's type in the catalogue, the
/// HTTP method, and a path where `*` stands for one segment and `**` for any number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRule {
    pub id: String,
    pub service: String,
    pub method: String,
    pub path: String,
}

/// An application credential as the API shows it.
#[derive(Debug, Clone)]
pub struct AppCred {
    pub id: String,
    pub user_id: String,
    pub project_id: String,
    pub name: String,
    pub description: Option<String>,
    pub expires_at: Option<i64>,
    pub unrestricted: bool,
    pub roles: Vec<RoleRec>,
    pub access_rules: Vec<AccessRule>,
}

impl AppCred {
    /// Role ids.
    pub fn role_ids(&self) -> Vec<String> {
        self.roles.iter().map(|r| r.id.clone()).collect()
    }

    pub fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }

    /// Whether the credential's access rules (if any) allow `method` on `path` of the service of
    /// type `service` (`path` as the client sent it, and without the service's prefix).
    pub fn allows(&self, services: &[&str], method: &str, paths: &[&str]) -> bool {
        self.access_rules.is_empty()
            || self.access_rules.iter().any(|r| {
                services.contains(&r.service.as_str())
                    && r.method.eq_ignore_ascii_case(method)
                    && paths.iter().any(|p| path_matches(&r.path, p))
            })
    }
}

/// Upstream's glob of access rules: `*` (or `{name}`) is one path segment, `**` any number.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    fn go(pat: &[&str], path: &[&str]) -> bool {
        match pat.split_first() {
            None => path.is_empty(),
            Some((&"**", rest)) => (0..=path.len()).any(|n| go(rest, &path[n..])),
            Some((p, rest)) => match path.split_first() {
                Some((seg, more)) => {
                    let one = *p == "*" || (p.starts_with('{') && p.ends_with('}'));
                    (one && !seg.is_empty() || p == seg) && go(rest, more)
                }
                None => false,
            },
        }
    }
    let pat: Vec<&str> = pattern.trim_end_matches('/').split('/').collect();
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    go(&pat, &segs)
}

#[cfg(test)]
mod tests {
    use super::path_matches;

    #[test]
    fn access_rule_paths_glob_like_upstream() {
        assert!(path_matches("/v2.1/servers", "/v2.1/servers"));
        assert!(path_matches("/v2.1/servers/*", "/v2.1/servers/abc"));
        assert!(!path_matches("/v2.1/servers/*", "/v2.1/servers/abc/action"));
        assert!(path_matches("/v2.1/servers/**", "/v2.1/servers/abc/action"));
        assert!(path_matches(
            "/v2.1/servers/{server_id}",
            "/v2.1/servers/abc"
        ));
        assert!(path_matches("/v2/images/**", "/v2/images"));
        assert!(!path_matches("/v2.1/servers", "/v2.1/servers/abc"));
        assert!(!path_matches("/v2.1/servers/*", "/v2.1/servers/"));
        assert!(!path_matches("/v2/images", "/v2/imagesX"));
    }
}
