//! First-start bootstrap and per-start refresh of shipped data.
//!
//! First start: domain `Default`, the region, projects `admin` and `demo`, the system policies,
//! group `admin` holding Tenant Administrator and Security Administrator on all projects and on the
//! domain, user `admin` (random password, returned once) in that group, a token key, the service
//! catalogue and the flavors. Every start: system policies, catalogue entries and flavors shipped
//! with this binary are brought up to date (existing rows are kept).

use crate::token::TokenCodec;
use crate::{data, new_id, password, Result, ServiceError};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::Deserialize;
use stratus_iam::{Catalogue, Limits};
use stratus_store::{
    self as store, CatalogRec, DomainRec, EnterpriseProjectRec, FlavorRec, GrantRec, ProjectRec,
    RoleRec, Store, UserRec, DEFAULT_ENTERPRISE_PROJECT,
};

pub const DEFAULT_DOMAIN_ID: &str = "default";
pub const DEFAULT_DOMAIN_NAME: &str = "Default";
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PROJECT: &str = "admin";
pub const DEMO_PROJECT: &str = "demo";
pub const ADMIN_GROUP: &str = "admin";
/// Roles the bootstrap `admin` group holds on all projects and on the domain.
pub const ADMIN_GROUP_ROLES: &[&str] = &["te_admin", "secu_admin"];
const INTERFACES: &[&str] = &["public", "internal", "admin"];

#[derive(Debug)]
pub struct Bootstrapped {
    /// True on the very first start of this store.
    pub first_start: bool,
    /// The generated admin password; only on the first start.
    pub admin_password: Option<String>,
}

#[derive(Deserialize)]
struct FlavorData {
    id: String,
    name: String,
    vcpus: i64,
    ram_mb: i64,
    disk_gb: i64,
    ephemeral_gb: i64,
    swap_mb: i64,
    description: String,
}

#[derive(Deserialize)]
struct CatalogData {
    #[serde(rename = "type")]
    service_type: String,
    name: String,
    path: String,
}

#[derive(Deserialize)]
struct SystemPolicyData {
    name: String,
    display_name: String,
    description: String,
    policy: serde_json::Value,
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|e| ServiceError::Internal(format!("shipped {what} data is invalid: {e}")))
}

pub async fn bootstrap(store: &Store, region: &str, catalogue: &Catalogue) -> Result<Bootstrapped> {
    let mut w = store.write_identity().await?;
    store::advisory_lock(&mut w, 727002).await?;
    let first_start = store::meta_get(w.conn(), "bootstrapped").await?.is_none();
    let mut admin_password = None;

    for p in parse::<Vec<SystemPolicyData>>("system policy", data::SYSTEM_POLICIES)? {
        // Shipped policies must name only catalogue actions, like custom ones.
        stratus_iam::policy::parse_policy_value(&p.policy, &Limits::SYSTEM, &|a| {
            catalogue.knows(a)
        })
        .map_err(|e| {
            ServiceError::Internal(format!("shipped system policy {} is invalid: {e}", p.name))
        })?;
        let existing = store::role_by_name(w.conn(), &p.name).await?;
        store::role_upsert(
            w.conn(),
            &RoleRec {
                id: existing.map(|r| r.id).unwrap_or_else(new_id),
                name: p.name,
                display_name: p.display_name,
                description: p.description,
                kind: "system".into(),
                domain_id: None,
                policy: p.policy.to_string(),
            },
        )
        .await?;
    }

    if first_start {
        store::region_insert(w.conn(), region, "").await?;
        store::domain_insert(
            w.conn(),
            &DomainRec {
                id: DEFAULT_DOMAIN_ID.into(),
                name: DEFAULT_DOMAIN_NAME.into(),
                description: "The default domain".into(),
                enabled: true,
            },
        )
        .await?;
        let mut admin_project_id = String::new();
        for (name, desc) in [
            (ADMIN_PROJECT, "Bootstrap project for the administrator"),
            (DEMO_PROJECT, "Demo project"),
        ] {
            let p = ProjectRec {
                tokens_valid_after: 0,
                id: new_id(),
                domain_id: DEFAULT_DOMAIN_ID.into(),
                name: name.into(),
                description: desc.into(),
                enabled: true,
            };
            store::project_insert(w.conn(), &p).await?;
            if name == ADMIN_PROJECT {
                admin_project_id = p.id;
            }
        }
        let group_id = new_id();
        store::group_insert(
            w.conn(),
            &stratus_store::GroupRec {
                id: group_id.clone(),
                domain_id: DEFAULT_DOMAIN_ID.into(),
                name: ADMIN_GROUP.into(),
                description: "Administrators of the default domain".into(),
            },
        )
        .await?;
        for role_name in ADMIN_GROUP_ROLES {
            let role = store::role_by_name(w.conn(), role_name)
                .await?
                .ok_or_else(|| {
                    ServiceError::Internal(format!("system policy {role_name} is not shipped"))
                })?;
            for scope_kind in [store::ScopeKind::AllProjects, store::ScopeKind::Domain] {
                store::grant_put(
                    w.conn(),
                    &GrantRec {
                        role_id: role.id.clone(),
                        actor_kind: store::ActorKind::Group,
                        actor_id: group_id.clone(),
                        scope_kind,
                        scope_id: DEFAULT_DOMAIN_ID.into(),
                    },
                )
                .await?;
            }
        }
        let pw: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        let user = UserRec {
            id: new_id(),
            domain_id: DEFAULT_DOMAIN_ID.into(),
            name: ADMIN_USER.into(),
            description: "Cloud administrator".into(),
            email: None,
            enabled: true,
            password_hash: Some(password::hash(pw.clone()).await?),
            default_project_id: Some(admin_project_id),
            tokens_valid_after: 0,
        };
        store::user_insert(w.conn(), &user).await?;
        store::member_add(w.conn(), &group_id, &user.id).await?;
        store::token_key_insert(w.conn(), 1, &TokenCodec::generate_secret()).await?;
        store::meta_set(w.conn(), "region", region).await?;
        admin_password = Some(pw);
    }

    let region = store::meta_get(w.conn(), "region")
        .await?
        .unwrap_or_else(|| region.to_string());
    let existing = store::catalog_list(w.conn()).await?;
    for c in parse::<Vec<CatalogData>>("catalog", data::CATALOG)? {
        let service_id = existing
            .iter()
            .find(|e| e.service_type == c.service_type)
            .map(|e| e.service_id.clone())
            .unwrap_or_else(new_id);
        for interface in INTERFACES {
            store::catalog_insert(
                w.conn(),
                &CatalogRec {
                    id: new_id(),
                    service_id: service_id.clone(),
                    service_type: c.service_type.clone(),
                    service_name: c.name.clone(),
                    interface: interface.to_string(),
                    region_id: region.clone(),
                    path: c.path.clone(),
                },
            )
            .await?;
        }
    }
    for f in parse::<Vec<FlavorData>>("flavor", data::FLAVORS)? {
        store::flavor_upsert(
            w.conn(),
            &FlavorRec {
                id: f.id,
                name: f.name,
                vcpus: f.vcpus,
                ram_mb: f.ram_mb,
                disk_gb: f.disk_gb,
                ephemeral_gb: f.ephemeral_gb,
                swap_mb: f.swap_mb,
                is_public: true,
                description: f.description,
                extra_specs: Default::default(),
            },
        )
        .await?;
    }
    if store::ep_get(w.conn(), DEFAULT_ENTERPRISE_PROJECT)
        .await?
        .is_none()
    {
        let now = store::now_micros();
        store::ep_insert(
            w.conn(),
            &EnterpriseProjectRec {
                id: DEFAULT_ENTERPRISE_PROJECT.into(),
                domain_id: DEFAULT_DOMAIN_ID.into(),
                name: "default".into(),
                description: "The default enterprise project".into(),
                enabled: true,
                created_at: now,
                updated_at: now,
            },
        )
        .await?;
    }
    store::meta_set(w.conn(), "bootstrapped", "1").await?;
    store.commit(w).await?;
    Ok(Bootstrapped {
        first_start,
        admin_password,
    })
}

#[cfg(test)]
mod tests {
    use stratus_iam::engine::{decide, ActionRef, CompiledPolicy, Context, GrantScope, Request};
    use stratus_iam::{parse_for, Catalogue, Limits, PrincipalPolicies};

    /// Which catalogue actions a system policy allows, on a project.
    fn allowed_by(name: &str) -> Vec<String> {
        let cat = Catalogue::shipped().unwrap();
        let all: Vec<serde_json::Value> =
            serde_json::from_str(crate::data::SYSTEM_POLICIES).unwrap();
        let p = all.iter().find(|p| p["name"] == name).unwrap();
        let doc = parse_for(&cat, &p["policy"].to_string(), &Limits::SYSTEM).unwrap();
        let mut pp = PrincipalPolicies::default();
        pp.project.push((
            GrantScope::Project,
            std::sync::Arc::new(CompiledPolicy::compile(name, name, doc, &cat)),
        ));
        cat.actions()
            .iter()
            .filter(|a| {
                let ctx = Context::default();
                let req = Request {
                    actions: vec![ActionRef {
                        name: a,
                        id: cat.action_id(a),
                    }],
                    global: false,
                    enterprise_project: None,
                    resource: None,
                    context: &ctx,
                    explain: false,
                };
                decide(&pp, &req).denied().is_empty()
            })
            .cloned()
            .collect()
    }

    /// Making images public is for administrators: IMS and ECS FullAccess allow every other
    /// image action (so a new one cannot be forgotten), Tenant Administrator allows it too.
    #[test]
    fn only_administrators_publicize_images() {
        let cat = Catalogue::shipped().unwrap();
        let ims: Vec<&String> = cat
            .actions()
            .iter()
            .filter(|a| a.starts_with("ims:images:"))
            .collect();
        for policy in ["system_all_ims_full", "system_all_ecs_full"] {
            let allowed = allowed_by(policy);
            for a in &ims {
                assert_eq!(
                    allowed.contains(a),
                    a.as_str() != crate::images::PUBLICIZE,
                    "{policy}: {a}"
                );
            }
        }
        assert!(allowed_by("te_admin").contains(&crate::images::PUBLICIZE.to_string()));
    }
}
