//! Domains, projects, users, groups, roles, grants, the catalogue, flavors, enterprise projects
//! application credentials and access keys.

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DomainRec {
    pub id: String,
    pub name: String,
    pub description: String,
    #[sqlx(try_from = "crate::Flag")]
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ProjectRec {
    pub id: String,
    pub domain_id: String,
    pub name: String,
    pub description: String,
    #[sqlx(try_from = "crate::Flag")]
    pub enabled: bool,
    /// Tokens of the project issued before this instant are invalid (it was disabled).
    pub tokens_valid_after: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRec {
    pub id: String,
    pub domain_id: String,
    pub name: String,
    pub description: String,
    pub email: Option<String>,
    #[sqlx(try_from = "crate::Flag")]
    pub enabled: bool,
    pub password_hash: Option<String>,
    pub default_project_id: Option<String>,
    pub tokens_valid_after: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GroupRec {
    pub id: String,
    pub domain_id: String,
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RoleRec {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub description: String,
    /// `system` or `custom`.
    pub kind: String,
    pub domain_id: Option<String>,
    /// The policy document (JSON text).
    pub policy: String,
}

/// Who a grant is made to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    User,
    Group,
}

/// Where a grant applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeKind {
    Project,
    AllProjects,
    Domain,
    EnterpriseProject,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRec {
    pub role_id: String,
    pub actor_kind: ActorKind,
    pub actor_id: String,
    pub scope_kind: ScopeKind,
    pub scope_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogRec {
    pub id: String,
    pub service_id: String,
    pub service_type: String,
    pub service_name: String,
    pub interface: String,
    pub region_id: String,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct FlavorRec {
    pub id: String,
    pub name: String,
    pub vcpus: i64,
    pub ram_mb: i64,
    pub disk_gb: i64,
    pub ephemeral_gb: i64,
    pub swap_mb: i64,
    #[sqlx(try_from = "crate::Flag")]
    pub is_public: bool,
    pub description: String,
    #[sqlx(try_from = "crate::JsonText")]
    pub extra_specs: serde_json::Map<String, serde_json::Value>,
}

/// Filters of a project listing; `None` means "any".
#[derive(Debug, Default, Clone)]
pub struct ProjectFilter<'a> {
    pub domain_id: Option<&'a str>,
    pub name: Option<&'a str>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Clone)]
pub struct UserFilter<'a> {
    pub domain_id: Option<&'a str>,
    pub name: Option<&'a str>,
    pub enabled: Option<bool>,
}

/// A permanent access key (AK/SK) of a user; the secret only as the store keeps it (encrypted).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccessKeyRec {
    pub access: String,
    pub user_id: String,
    pub secret_enc: String,
    pub status: crate::AccessKeyStatus,
    pub description: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AppCredRec {
    pub id: String,
    pub user_id: String,
    pub project_id: String,
    pub name: String,
    pub description: Option<String>,
    pub secret_hash: String,
    pub expires_at: Option<i64>,
    #[sqlx(try_from = "crate::Flag")]
    pub unrestricted: bool,
    /// JSON list of role ids.
    pub roles: String,
    /// JSON list of access rules.
    pub access_rules: String,
    pub created_at: i64,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Group => "group",
        }
    }

    pub fn parse(s: &str) -> Option<ActorKind> {
        match s {
            "user" => Some(ActorKind::User),
            "group" => Some(ActorKind::Group),
            _ => None,
        }
    }
}

impl ScopeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Project => "project",
            ScopeKind::AllProjects => "all_projects",
            ScopeKind::Domain => "domain",
            ScopeKind::EnterpriseProject => "enterprise_project",
        }
    }

    pub fn parse(s: &str) -> Option<ScopeKind> {
        Some(match s {
            "project" => ScopeKind::Project,
            "all_projects" => ScopeKind::AllProjects,
            "domain" => ScopeKind::Domain,
            "enterprise_project" => ScopeKind::EnterpriseProject,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EnterpriseProjectRec {
    pub id: String,
    pub domain_id: String,
    pub name: String,
    pub description: String,
    #[sqlx(try_from = "crate::Flag")]
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}
