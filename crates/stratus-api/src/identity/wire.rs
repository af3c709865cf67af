//! Keystone v3 wire types: request bodies in, response bodies out.

use crate::timefmt::micros_z;
use crate::AppState;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stratus_services::identity::{
    AuthMethod, AuthRequest, DomainRef, ProjectRef, Scope, ScopeRequest, TokenInfo, UserRef,
};
use stratus_services::model::{DomainRec, GroupRec, ProjectRec, UserRec};

// ---------------------------------------------------------------------------------------------
// requests

#[derive(Deserialize)]
pub struct AuthBody {
    pub auth: AuthReq,
}

#[derive(Deserialize)]
pub struct AuthReq {
    pub identity: IdentityReq,
    #[serde(default)]
    pub scope: Option<ScopeField>,
}

#[derive(Deserialize)]
pub struct IdentityReq {
    pub methods: Vec<String>,
    #[serde(default)]
    pub password: Option<PasswordReq>,
    #[serde(default)]
    pub token: Option<TokenReq>,
    #[serde(default)]
    pub application_credential: Option<AppCredReq>,
}

#[derive(Deserialize)]
pub struct AppCredReq {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub user: Option<AppCredUser>,
    pub secret: String,
}

#[derive(Deserialize)]
pub struct AppCredUser {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub domain: Option<DomainIdent>,
}

#[derive(Deserialize)]
pub struct PasswordReq {
    pub user: UserIdent,
}

#[derive(Deserialize)]
pub struct UserIdent {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub domain: Option<DomainIdent>,
    pub password: String,
}

#[derive(Deserialize)]
pub struct DomainIdent {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Deserialize)]
pub struct TokenReq {
    pub id: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum ScopeField {
    /// The string `"unscoped"`.
    Word(String),
    Scoped(ScopeReq),
}

#[derive(Deserialize)]
pub struct ScopeReq {
    #[serde(default)]
    pub project: Option<ProjectIdent>,
    #[serde(default)]
    pub domain: Option<DomainIdent>,
    #[serde(default)]
    pub system: Option<Value>,
}

#[derive(Deserialize)]
pub struct ProjectIdent {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub domain: Option<DomainIdent>,
}

fn domain_ref(d: Option<DomainIdent>, what: &str) -> Result<DomainRef, String> {
    match d {
        Some(DomainIdent { id: Some(id), .. }) => Ok(DomainRef::Id(id)),
        Some(DomainIdent { name: Some(n), .. }) => Ok(DomainRef::Name(n)),
        _ => Err(format!(
            "{what} must be identified by id, or by name and domain (id or name)."
        )),
    }
}

impl AuthBody {
    /// Converts to the domain request; the error is a 400 message.
    pub fn into_request(self) -> Result<AuthRequest, String> {
        let AuthReq { identity, scope } = self.auth;
        let method = match identity.methods.as_slice() {
            [m] if m == "password" => {
                let p = identity.password.ok_or("The password method needs a 'password' object.")?;
                let u = p.user;
                let user = match (u.id, u.name) {
                    (Some(id), _) => UserRef::Id(id),
                    (None, Some(name)) => UserRef::Name {
                        name,
                        domain: domain_ref(u.domain, "A user given by name")?,
                    },
                    _ => return Err("The user must be identified by id, or by name and domain.".into()),
                };
                AuthMethod::Password {
                    user,
                    password: u.password,
                }
            }
            [m] if m == "token" => {
                AuthMethod::Token(identity.token.ok_or("The token method needs a 'token' object.")?.id)
            }
            [m] if m == "application_credential" => {
                let a = identity
                    .application_credential
                    .ok_or("The application_credential method needs an 'application_credential' object.")?;
                let user = match a.user {
                    None => None,
                    Some(AppCredUser { id: Some(id), .. }) => Some(UserRef::Id(id)),
                    Some(AppCredUser { name: Some(name), domain, .. }) => Some(UserRef::Name {
                        name,
                        domain: domain_ref(domain, "A user given by name")?,
                    }),
                    Some(_) => return Err("The credential's user must be identified by id, or by name and domain.".into()),
                };
                if a.id.is_none() && (a.name.is_none() || user.is_none()) {
                    return Err("An application credential is identified by id, or by name and user.".into());
                }
                AuthMethod::AppCred {
                    id: a.id,
                    name: a.name,
                    user,
                    secret: a.secret,
                }
            }
            [] => return Err("At least one authentication method is required.".into()),
            other => {
                return Err(format!(
                    "Unsupported authentication methods {other:?}: stratus supports \"password\", \"token\" and \"application_credential\"."
                ))
            }
        };
        let scope =
            match scope {
                None => ScopeRequest::Default,
                Some(ScopeField::Word(w)) if w == "unscoped" => ScopeRequest::Default,
                Some(ScopeField::Word(w)) => return Err(format!("Unknown scope {w:?}.")),
                Some(ScopeField::Scoped(s)) => match (s.project, s.domain, s.system) {
                    (Some(p), None, None) => ScopeRequest::Project(match (p.id, p.name) {
                        (Some(id), _) => ProjectRef::Id(id),
                        (None, Some(name)) => ProjectRef::Name {
                            name,
                            domain: domain_ref(p.domain, "A project given by name")?,
                        },
                        _ => return Err(
                            "The scope project must be identified by id, or by name and domain."
                                .into(),
                        ),
                    }),
                    (None, Some(d), None) => {
                        ScopeRequest::Domain(domain_ref(Some(d), "The scope domain")?)
                    }
                    (None, None, Some(_)) => {
                        return Err(
                            "System scope is not supported; scope to a project or a domain.".into(),
                        )
                    }
                    (None, None, None) => {
                        return Err("The scope names no project and no domain.".into())
                    }
                    _ => {
                        return Err(
                            "Specify only one of project, domain or system in the scope.".into(),
                        )
                    }
                },
            };
        Ok(AuthRequest { method, scope })
    }
}

#[derive(Deserialize)]
pub struct ProjectCreateBody {
    pub project: ProjectCreateReq,
}

#[derive(Deserialize)]
pub struct ProjectCreateReq {
    pub name: String,
    #[serde(default)]
    pub domain_id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub is_domain: Option<bool>,
}

#[derive(Deserialize)]
pub struct ProjectPatchBody {
    pub project: ProjectPatchReq,
}

#[derive(Deserialize)]
pub struct ProjectPatchReq {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Deserialize)]
pub struct UserCreateBody {
    pub user: UserCreateReq,
}

#[derive(Deserialize)]
pub struct UserCreateReq {
    pub name: String,
    #[serde(default)]
    pub domain_id: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub default_project_id: Option<String>,
}

/// Distinguishes an absent field from an explicit `null`.
fn some_value<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

#[derive(Deserialize)]
pub struct UserPatchBody {
    pub user: UserPatchReq,
}

#[derive(Deserialize)]
pub struct UserPatchReq {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "some_value")]
    pub email: Option<Option<String>>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "some_value")]
    pub default_project_id: Option<Option<String>>,
}

#[derive(Deserialize)]
pub struct PasswordChangeBody {
    pub user: PasswordChangeReq,
}

#[derive(Deserialize)]
pub struct PasswordChangeReq {
    pub password: String,
    pub original_password: String,
}

#[derive(Deserialize)]
pub struct GroupCreateBody {
    pub group: GroupCreateReq,
}

#[derive(Deserialize)]
pub struct GroupCreateReq {
    pub name: String,
    #[serde(default)]
    pub domain_id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Deserialize)]
pub struct GroupPatchBody {
    pub group: GroupPatchReq,
}

#[derive(Deserialize)]
pub struct GroupPatchReq {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// Query of list calls; `enabled` accepts the spellings Keystone accepts.
#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub domain_id: Option<String>,
    #[serde(default)]
    pub enabled: Option<String>,
}

impl ListQuery {
    pub fn enabled(&self) -> Result<Option<bool>, String> {
        match self
            .enabled
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None => Ok(None),
            Some("true" | "1" | "yes" | "") => Ok(Some(true)),
            Some("false" | "0" | "no") => Ok(Some(false)),
            Some(other) => Err(format!(
                "Invalid value for the 'enabled' filter: {other:?}."
            )),
        }
    }
}

#[derive(Deserialize, Default)]
pub struct CatalogQuery {
    #[serde(default)]
    pub nocatalog: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// responses

pub fn domain_json(s: &AppState, d: &DomainRec) -> Value {
    json!({
        "id": d.id, "name": d.name, "description": d.description, "enabled": d.enabled,
        "tags": [], "options": {},
        "links": {"self": s.url(&format!("/identity/v3/domains/{}", d.id))},
    })
}

pub fn project_json(s: &AppState, p: &ProjectRec) -> Value {
    json!({
        "id": p.id, "name": p.name, "domain_id": p.domain_id, "description": p.description,
        "enabled": p.enabled, "parent_id": p.domain_id, "is_domain": false, "tags": [], "options": {},
        "links": {"self": s.url(&format!("/identity/v3/projects/{}", p.id))},
    })
}

pub fn user_json(s: &AppState, u: &UserRec) -> Value {
    let mut v = json!({
        "id": u.id, "name": u.name, "domain_id": u.domain_id, "enabled": u.enabled,
        "password_expires_at": null, "options": {},
        "links": {"self": s.url(&format!("/identity/v3/users/{}", u.id))},
    });
    if !u.description.is_empty() {
        v["description"] = json!(u.description);
    }
    if let Some(e) = &u.email {
        v["email"] = json!(e);
    }
    if let Some(p) = &u.default_project_id {
        v["default_project_id"] = json!(p);
    }
    v
}

pub fn group_json(s: &AppState, g: &GroupRec) -> Value {
    json!({
        "id": g.id, "name": g.name, "domain_id": g.domain_id, "description": g.description,
        "links": {"self": s.url(&format!("/identity/v3/groups/{}", g.id))},
    })
}

/// `{"<key>": [...], "links": {...}}` as Keystone lists.
pub fn list_json(s: &AppState, key: &str, path: &str, items: Vec<Value>) -> Value {
    json!({
        key: items,
        "links": {"self": s.url(path), "previous": null, "next": null},
    })
}

/// The catalogue as a token carries it: one entry per service, its endpoints with full URLs.
#[derive(Serialize)]
pub struct CatalogService<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    service_type: &'a str,
    name: &'a str,
    endpoints: Vec<CatalogEndpoint<'a>>,
}

#[derive(Serialize)]
pub struct CatalogEndpoint<'a> {
    id: &'a str,
    interface: &'a str,
    region: &'a str,
    region_id: &'a str,
    url: String,
}

pub fn catalog<'a>(s: &'a AppState, project_id: Option<&str>) -> Vec<CatalogService<'a>> {
    let mut services: Vec<CatalogService<'a>> = Vec::new();
    for c in s.identity.catalog() {
        let url = match project_id {
            Some(p) if c.path.contains("$(project_id)s") => {
                s.url(&c.path.replace("$(project_id)s", p))
            }
            _ => s.url(&c.path),
        };
        let endpoint = CatalogEndpoint {
            id: &c.id,
            interface: &c.interface,
            region: &c.region_id,
            region_id: &c.region_id,
            url,
        };
        match services.iter_mut().find(|svc| svc.id == c.service_id) {
            Some(svc) => svc.endpoints.push(endpoint),
            None => services.push(CatalogService {
                id: &c.service_id,
                service_type: &c.service_type,
                name: &c.service_name,
                endpoints: vec![endpoint],
            }),
        }
    }
    services
}

#[derive(Serialize)]
pub struct TokenBody<'a> {
    token: TokenWire<'a>,
}

#[derive(Serialize)]
struct IdName<'a> {
    id: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct TokenUser<'a> {
    id: &'a str,
    name: &'a str,
    password_expires_at: Option<()>,
    domain: IdName<'a>,
}

#[derive(Serialize)]
struct TokenProject<'a> {
    id: &'a str,
    name: &'a str,
    domain: IdName<'a>,
}

#[derive(Serialize)]
struct TokenWire<'a> {
    methods: &'a [String],
    user: TokenUser<'a>,
    audit_ids: [&'a str; 1],
    issued_at: String,
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    project: Option<TokenProject<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_domain: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<IdName<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    roles: Option<Vec<IdName<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    catalog: Option<Vec<CatalogService<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    application_credential: Option<Value>,
}

/// The token body of `POST`/`GET /v3/auth/tokens`. Unscoped tokens carry no roles or catalogue.
pub fn token_body<'a>(s: &'a AppState, t: &'a TokenInfo, with_catalog: bool) -> TokenBody<'a> {
    let (project, domain) = match &t.scope {
        Scope::Project { project, domain } => (
            Some(TokenProject {
                id: &project.id,
                name: &project.name,
                domain: IdName {
                    id: &domain.id,
                    name: &domain.name,
                },
            }),
            None,
        ),
        Scope::Domain(d) => (
            None,
            Some(IdName {
                id: &d.id,
                name: &d.name,
            }),
        ),
        Scope::Unscoped => (None, None),
    };
    let scoped = project.is_some() || domain.is_some();
    TokenBody {
        token: TokenWire {
            methods: &t.methods,
            user: TokenUser {
                id: &t.user.id,
                name: &t.user.name,
                password_expires_at: None,
                domain: IdName {
                    id: &t.user_domain.id,
                    name: &t.user_domain.name,
                },
            },
            audit_ids: [&t.audit_id],
            issued_at: micros_z(t.issued_at),
            expires_at: micros_z(t.expires_at),
            is_domain: project.as_ref().map(|_| false),
            project,
            domain,
            roles: scoped.then(|| {
                t.roles
                    .iter()
                    .map(|r| IdName {
                        id: &r.id,
                        name: &r.name,
                    })
                    .collect()
            }),
            catalog: (scoped && with_catalog)
                .then(|| catalog(s, t.project().map(|p| p.id.as_str()))),
            application_credential: t.app_cred.as_ref().map(|a| {
                let mut v = json!({"id": a.id, "name": a.name, "restricted": !a.unrestricted});
                if !a.access_rules.is_empty() {
                    v["access_rules"] =
                        json!(a.access_rules.iter().map(|r| json!({
                        "id": r.id, "service": r.service, "path": r.path, "method": r.method,
                    })).collect::<Vec<_>>());
                }
                v
            }),
        },
    }
}
