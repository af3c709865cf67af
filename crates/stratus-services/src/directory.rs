//! Identity administration: domains, regions, projects, users, groups and memberships, as
//! Keystone's administrators see them. Authentication and tokens are [`crate::identity`]'s.

use crate::authz::Authorized;
use crate::caller::TokenInfo;
use crate::identity::{duplicate, scopable, validate_name};
use crate::{limits, new_id, password, Result, ServiceError};
use std::sync::Arc;
use stratus_store::{
    self as store, now_micros, DomainRec, GroupRec, ProjectFilter, ProjectRec, ScopeKind, Store,
    UserFilter, UserRec,
};

#[derive(Debug, Clone, Default)]
pub struct ProjectCreate {
    pub name: String,
    pub domain_id: Option<String>,
    pub description: String,
    pub enabled: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ProjectPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct UserCreate {
    pub name: String,
    pub domain_id: Option<String>,
    pub password: Option<String>,
    pub description: String,
    pub email: Option<String>,
    pub enabled: bool,
    pub default_project_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub email: Option<Option<String>>,
    pub enabled: Option<bool>,
    pub password: Option<String>,
    pub default_project_id: Option<Option<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct GroupCreate {
    pub name: String,
    pub domain_id: Option<String>,
    pub description: String,
}

#[derive(Debug, Clone, Default)]
pub struct GroupPatch {
    pub name: Option<String>,
    pub description: Option<String>,
}

pub struct Directory {
    store: Arc<Store>,
}

impl Directory {
    pub fn new(store: Arc<Store>) -> Directory {
        Directory { store }
    }

    /// The domain an administrator acts on: the one asked for, which must be their own.
    fn target_domain(&self, caller: &TokenInfo, asked: Option<&str>) -> Result<String> {
        let own = caller.acting_domain_id();
        match asked {
            None => Ok(own.to_string()),
            Some(d) if d == own => Ok(own.to_string()),
            Some(d) => Err(ServiceError::Forbidden(format!(
                "You are not authorized to manage domain {d}."
            ))),
        }
    }

    // -----------------------------------------------------------------------------------------
    // domains and regions

    pub async fn get_domain(&self, caller: &TokenInfo, id: &str) -> Result<DomainRec> {
        if id != caller.acting_domain_id() && id != caller.user.domain_id {
            return Err(ServiceError::not_found("domain", id));
        }
        store::domain_get(self.store.pool(), id)
            .await?
            .ok_or_else(|| ServiceError::not_found("domain", id))
    }

    pub async fn list_domains(
        &self,
        caller: &Authorized,
        name: Option<&str>,
    ) -> Result<Vec<DomainRec>> {
        let own = caller.acting_domain_id();
        Ok(store::domain_list(self.store.pool(), name)
            .await?
            .into_iter()
            .filter(|d| d.id == own)
            .collect())
    }

    pub async fn list_regions(&self) -> Result<Vec<(String, String)>> {
        Ok(store::region_list(self.store.pool()).await?)
    }

    // -----------------------------------------------------------------------------------------
    // projects

    pub async fn create_project(
        &self,
        caller: &Authorized,
        req: ProjectCreate,
    ) -> Result<ProjectRec> {
        validate_name("project", &req.name)?;
        limits::check_chars(
            "project.description",
            &req.description,
            limits::DESCRIPTION_CHARS,
        )?;
        let domain_id = self.target_domain(caller, req.domain_id.as_deref())?;
        let p = ProjectRec {
            tokens_valid_after: 0,
            id: new_id(),
            domain_id,
            name: req.name,
            description: req.description,
            enabled: req.enabled,
        };
        let mut w = self.store.write_identity().await?;
        store::project_insert(w.conn(), &p)
            .await
            .map_err(|e| duplicate(e, "project", &p.name))?;
        self.store.commit(w).await?;
        Ok(p)
    }

    async fn visible_project(&self, caller: &TokenInfo, id: &str) -> Result<ProjectRec> {
        store::project_get(self.store.pool(), id)
            .await?
            .filter(|p| p.domain_id == caller.acting_domain_id())
            .ok_or_else(|| ServiceError::not_found("project", id))
    }

    pub async fn get_project(&self, caller: &TokenInfo, id: &str) -> Result<ProjectRec> {
        self.visible_project(caller, id).await
    }

    pub async fn list_projects(
        &self,
        caller: &Authorized,
        f: ProjectFilter<'_>,
    ) -> Result<Vec<ProjectRec>> {
        let domain = self.target_domain(caller, f.domain_id)?;
        let f = ProjectFilter {
            domain_id: Some(&domain),
            ..f
        };
        Ok(store::project_list(self.store.pool(), &f).await?)
    }

    /// Projects the caller may scope a token to (`GET /v3/auth/projects`).
    /// The enabled projects the caller may scope a token to.
    pub async fn my_projects(&self, caller: &Authorized) -> Result<Vec<ProjectRec>> {
        self.projects_of(&caller.user).await
    }

    /// The enabled projects user `id` may scope a token to (`GET /v3/users/{id}/projects`).
    pub async fn user_projects(&self, caller: &Authorized, id: &str) -> Result<Vec<ProjectRec>> {
        let u = self.visible_user(caller, id).await?;
        self.projects_of(&u).await
    }

    async fn projects_of(&self, user: &UserRec) -> Result<Vec<ProjectRec>> {
        let f = ProjectFilter {
            domain_id: Some(&user.domain_id),
            enabled: Some(true),
            ..Default::default()
        };
        let grants = store::grants_reaching_user(self.store.pool(), &user.id).await?;
        Ok(store::project_list(self.store.pool(), &f)
            .await?
            .into_iter()
            .filter(|p| scopable(&grants, p))
            .collect())
    }

    pub async fn update_project(
        &self,
        caller: &Authorized,
        id: &str,
        patch: ProjectPatch,
    ) -> Result<ProjectRec> {
        let mut p = self.visible_project(caller, id).await?;
        if let Some(n) = patch.name {
            validate_name("project", &n)?;
            p.name = n;
        }
        if let Some(d) = patch.description {
            limits::check_chars("description", &d, limits::DESCRIPTION_CHARS)?;
            p.description = d;
        }
        if let Some(e) = patch.enabled {
            if p.enabled && !e {
                // Disabling revokes the project's tokens for good.
                p.tokens_valid_after = now_micros();
            }
            p.enabled = e;
        }
        let mut w = self.store.write_identity().await?;
        store::project_update(w.conn(), &p)
            .await
            .map_err(|e| duplicate(e, "project", &p.name))?;
        self.store.commit(w).await?;
        Ok(p)
    }

    pub async fn delete_project(&self, caller: &Authorized, id: &str) -> Result<()> {
        let p = self.visible_project(caller, id).await?;
        if caller.project().map(|x| x.id.as_str()) == Some(id) {
            return Err(ServiceError::BadRequest(
                "A project cannot be deleted with a token scoped to it.".into(),
            ));
        }
        let mut w = self.store.write_identity().await?;
        store::grants_delete_scope(w.conn(), ScopeKind::Project, &p.id).await?;
        store::project_delete(w.conn(), &p.id).await?;
        self.store.commit(w).await?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // users

    pub async fn create_user(&self, caller: &Authorized, req: UserCreate) -> Result<UserRec> {
        validate_name("user", &req.name)?;
        limits::check_chars(
            "user.description",
            &req.description,
            limits::DESCRIPTION_CHARS,
        )?;
        if let Some(e) = &req.email {
            limits::check_chars("user.email", e, limits::NAME_CHARS)?;
        }
        let domain_id = self.target_domain(caller, req.domain_id.as_deref())?;
        if let Some(pid) = &req.default_project_id {
            self.visible_project(caller, pid).await?;
        }
        let password_hash = match req.password {
            Some(pw) => Some(password::hash(pw).await?),
            None => None,
        };
        let u = UserRec {
            id: new_id(),
            domain_id,
            name: req.name,
            description: req.description,
            email: req.email,
            enabled: req.enabled,
            password_hash,
            default_project_id: req.default_project_id,
            tokens_valid_after: 0,
        };
        let mut w = self.store.write_identity().await?;
        store::user_insert(w.conn(), &u)
            .await
            .map_err(|e| duplicate(e, "user", &u.name))?;
        self.store.commit(w).await?;
        Ok(u)
    }

    async fn visible_user(&self, caller: &TokenInfo, id: &str) -> Result<UserRec> {
        visible_user(&self.store, caller, id).await
    }

    pub async fn get_user(&self, caller: &TokenInfo, id: &str) -> Result<UserRec> {
        self.visible_user(caller, id).await
    }

    pub async fn list_users(&self, caller: &Authorized, f: UserFilter<'_>) -> Result<Vec<UserRec>> {
        let domain = self.target_domain(caller, f.domain_id)?;
        let f = UserFilter {
            domain_id: Some(&domain),
            ..f
        };
        Ok(store::user_list(self.store.pool(), &f).await?)
    }

    pub async fn update_user(
        &self,
        caller: &Authorized,
        id: &str,
        patch: UserPatch,
    ) -> Result<UserRec> {
        let mut u = self.visible_user(caller, id).await?;
        if let Some(n) = patch.name {
            validate_name("user", &n)?;
            u.name = n;
        }
        if let Some(d) = patch.description {
            limits::check_chars("description", &d, limits::DESCRIPTION_CHARS)?;
            u.description = d;
        }
        if let Some(e) = patch.email {
            if let Some(e) = &e {
                limits::check_chars("user.email", e, limits::NAME_CHARS)?;
            }
            u.email = e;
        }
        if let Some(pid) = patch.default_project_id {
            if let Some(pid) = &pid {
                self.visible_project(caller, pid).await?;
            }
            u.default_project_id = pid;
        }
        let mut revoke = false;
        if let Some(e) = patch.enabled {
            revoke |= u.enabled && !e;
            u.enabled = e;
        }
        if let Some(pw) = patch.password {
            u.password_hash = Some(password::hash(pw).await?);
            revoke = true;
        }
        if revoke {
            u.tokens_valid_after = now_micros();
        }
        let mut w = self.store.write_identity().await?;
        store::user_update(w.conn(), &u)
            .await
            .map_err(|e| duplicate(e, "user", &u.name))?;
        self.store.commit(w).await?;
        Ok(u)
    }

    /// Self-service password change (`POST /v3/users/{id}/password`); every token of the user,
    /// the caller's included, stops working.
    pub async fn change_password(
        &self,
        caller: &Authorized,
        id: &str,
        original: String,
        new: String,
    ) -> Result<()> {
        if id != caller.user.id {
            return Err(ServiceError::Forbidden(
                "You are not authorized to perform the requested action: identity:change_password."
                    .into(),
            ));
        }
        let mut u = self.visible_user(caller, id).await?;
        let ok = match u.password_hash.clone() {
            Some(h) => password::verify(original, h).await,
            None => false,
        };
        if !ok {
            return Err(ServiceError::Unauthorized(
                crate::identity::AUTH_REQUIRED.to_string(),
            ));
        }
        u.password_hash = Some(password::hash(new).await?);
        u.tokens_valid_after = now_micros();
        let mut w = self.store.write_identity().await?;
        store::user_update(w.conn(), &u).await?;
        self.store.commit(w).await?;
        Ok(())
    }

    pub async fn delete_user(&self, caller: &Authorized, id: &str) -> Result<()> {
        let u = self.visible_user(caller, id).await?;
        let mut w = self.store.write_identity().await?;
        store::grants_delete_actor(w.conn(), store::ActorKind::User, &u.id).await?;
        store::app_creds_delete_of_user(w.conn(), &u.id).await?;
        store::access_keys_delete_of_user(w.conn(), &u.id).await?;
        store::user_delete(w.conn(), &u.id).await?;
        self.store.commit(w).await?;
        Ok(())
    }

    pub async fn user_groups(&self, caller: &Authorized, id: &str) -> Result<Vec<GroupRec>> {
        let u = self.visible_user(caller, id).await?;
        Ok(store::user_groups(self.store.pool(), &u.id).await?)
    }

    // -----------------------------------------------------------------------------------------
    // groups

    pub async fn create_group(&self, caller: &Authorized, req: GroupCreate) -> Result<GroupRec> {
        validate_name("group", &req.name)?;
        limits::check_chars(
            "group.description",
            &req.description,
            limits::DESCRIPTION_CHARS,
        )?;
        let domain_id = self.target_domain(caller, req.domain_id.as_deref())?;
        let g = GroupRec {
            id: new_id(),
            domain_id,
            name: req.name,
            description: req.description,
        };
        let mut w = self.store.write_identity().await?;
        store::group_insert(w.conn(), &g)
            .await
            .map_err(|e| duplicate(e, "group", &g.name))?;
        self.store.commit(w).await?;
        Ok(g)
    }

    async fn visible_group(&self, caller: &TokenInfo, id: &str) -> Result<GroupRec> {
        store::group_get(self.store.pool(), id)
            .await?
            .filter(|g| g.domain_id == caller.acting_domain_id())
            .ok_or_else(|| ServiceError::not_found("group", id))
    }

    pub async fn get_group(&self, caller: &TokenInfo, id: &str) -> Result<GroupRec> {
        self.visible_group(caller, id).await
    }

    pub async fn list_groups(
        &self,
        caller: &Authorized,
        domain_id: Option<&str>,
        name: Option<&str>,
    ) -> Result<Vec<GroupRec>> {
        let domain = self.target_domain(caller, domain_id)?;
        Ok(store::group_list(self.store.pool(), Some(&domain), name).await?)
    }

    pub async fn update_group(
        &self,
        caller: &Authorized,
        id: &str,
        patch: GroupPatch,
    ) -> Result<GroupRec> {
        let mut g = self.visible_group(caller, id).await?;
        if let Some(n) = patch.name {
            validate_name("group", &n)?;
            g.name = n;
        }
        if let Some(d) = patch.description {
            limits::check_chars("description", &d, limits::DESCRIPTION_CHARS)?;
            g.description = d;
        }
        let mut w = self.store.write_identity().await?;
        store::group_update(w.conn(), &g)
            .await
            .map_err(|e| duplicate(e, "group", &g.name))?;
        self.store.commit(w).await?;
        Ok(g)
    }

    pub async fn delete_group(&self, caller: &Authorized, id: &str) -> Result<()> {
        let g = self.visible_group(caller, id).await?;
        let mut w = self.store.write_identity().await?;
        store::grants_delete_actor(w.conn(), store::ActorKind::Group, &g.id).await?;
        store::group_delete(w.conn(), &g.id).await?;
        self.store.commit(w).await?;
        Ok(())
    }

    pub async fn group_members(&self, caller: &Authorized, id: &str) -> Result<Vec<UserRec>> {
        let g = self.visible_group(caller, id).await?;
        Ok(store::group_members(self.store.pool(), &g.id).await?)
    }

    pub async fn add_member(
        &self,
        caller: &Authorized,
        group_id: &str,
        user_id: &str,
    ) -> Result<()> {
        let g = self.visible_group(caller, group_id).await?;
        let u = self.visible_user(caller, user_id).await?;
        let mut w = self.store.write_identity().await?;
        store::member_add(w.conn(), &g.id, &u.id).await?;
        self.store.commit(w).await?;
        Ok(())
    }

    pub async fn check_member(
        &self,
        caller: &TokenInfo,
        group_id: &str,
        user_id: &str,
    ) -> Result<()> {
        let g = self.visible_group(caller, group_id).await?;
        let u = self.visible_user(caller, user_id).await?;
        if store::member_check(self.store.pool(), &g.id, &u.id).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound {
                kind: "membership",
                id: format!("user {} in group {}", u.id, g.id),
            })
        }
    }

    pub async fn remove_member(
        &self,
        caller: &Authorized,
        group_id: &str,
        user_id: &str,
    ) -> Result<()> {
        let g = self.visible_group(caller, group_id).await?;
        let u = self.visible_user(caller, user_id).await?;
        let mut w = self.store.write_identity().await?;
        let removed = store::member_remove(w.conn(), &g.id, &u.id).await?;
        self.store.commit(w).await?;
        if removed {
            Ok(())
        } else {
            Err(ServiceError::NotFound {
                kind: "membership",
                id: format!("user {} in group {}", u.id, g.id),
            })
        }
    }
}

/// A user the caller may see: one of the domain it acts on, or itself (404 otherwise).
pub(crate) async fn visible_user(store: &Store, caller: &TokenInfo, id: &str) -> Result<UserRec> {
    store::user_get(store.pool(), id)
        .await?
        .filter(|u| u.domain_id == caller.acting_domain_id() || u.id == caller.user.id)
        .ok_or_else(|| ServiceError::not_found("user", id))
}
