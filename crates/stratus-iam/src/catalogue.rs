//! The action catalogue: one entry per API route, naming the action it requires, the dependency
//! actions, and which authorization scopes count for it. Shipped as data
//! (`data/action-catalogue.json`); a deployment may override an entry's dependencies.

use crate::action::ActionPattern;
use serde::Deserialize;
use std::collections::HashMap;

/// Which grants count for a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceScope {
    /// A regional service: grants on the IAM project (or on all projects) count, and, where the
    /// route supports them, grants on the resource's enterprise project.
    Project,
    /// A global service (IAM): domain-wide grants (and grants on all projects) count.
    Global,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub method: String,
    /// Path template, as routed: `/compute/v2.1/{project_id}/servers/{server_id}/action`.
    pub path: String,
    /// For `POST .../action` routes: the key of the body that selects the action.
    #[serde(default)]
    pub body_key: Option<String>,
    /// `None`: no policy decision (public, or any authenticated caller).
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// No token needed at all (discovery, issuing tokens).
    #[serde(default)]
    pub public: bool,
    pub scope: ServiceScope,
    /// Grants on enterprise projects count for this route.
    #[serde(default)]
    pub enterprise_project: bool,
    /// The caller acting on themselves needs no decision (own user, own password).
    #[serde(default, rename = "self")]
    pub self_service: bool,
    /// The kinds of resource the request body may name (an image to boot from, a volume to
    /// attach, ...): each is looked up as the caller and needs its [`Catalogue::use_action`].
    #[serde(default)]
    pub body_resources: Vec<ResourceKind>,
}

/// A kind of resource a request may name in its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Image,
    Volume,
    Snapshot,
    Flavor,
    Server,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 5] = [
        ResourceKind::Image,
        ResourceKind::Volume,
        ResourceKind::Snapshot,
        ResourceKind::Flavor,
        ResourceKind::Server,
    ];
}

impl Entry {
    /// `METHOD path[ body_key]`, the key overrides and the golden tables use.
    pub fn key(&self) -> String {
        match &self.body_key {
            Some(k) => format!("{} {} {}", self.method, self.path, k),
            None => format!("{} {}", self.method, self.path),
        }
    }

    /// The action followed by its dependencies.
    pub fn required(&self) -> Vec<&str> {
        self.action
            .iter()
            .map(String::as_str)
            .chain(self.dependencies.iter().map(String::as_str))
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    /// Actions that exist but are not the main action of any route here (dependencies of routes
    /// in some regions, actions of services stratus does not serve yet).
    #[serde(default)]
    extra_actions: Vec<String>,
    /// What the file leaves out and why (read by people, kept with the data).
    #[serde(default)]
    #[allow(dead_code)]
    notes: Vec<String>,
    /// The action that using a resource named in a request body needs: the one reading it
    /// directly needs.
    resource_use: HashMap<ResourceKind, String>,
    entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("the action catalogue is invalid: {0}")]
    Invalid(String),
    #[error("no catalogue entry {0:?} to override")]
    UnknownEntry(String),
}

pub struct Catalogue {
    entries: Vec<Entry>,
    by_key: HashMap<String, usize>,
    /// Every known action, by id.
    actions: Vec<String>,
    action_ids: HashMap<String, u16>,
    resource_use: HashMap<ResourceKind, String>,
}

/// The catalogue shipped with stratus.
pub const SHIPPED: &str = include_str!("../data/action-catalogue.json");

impl Catalogue {
    pub fn shipped() -> Result<Catalogue, CatalogueError> {
        Catalogue::parse(SHIPPED)
    }

    pub fn parse(text: &str) -> Result<Catalogue, CatalogueError> {
        let f: CatalogueFile =
            serde_json::from_str(text).map_err(|e| CatalogueError::Invalid(e.to_string()))?;
        let mut c = Catalogue {
            entries: Vec::new(),
            by_key: HashMap::new(),
            actions: Vec::new(),
            action_ids: HashMap::new(),
            resource_use: HashMap::new(),
        };
        for a in &f.extra_actions {
            c.add_action(a)?;
        }
        for kind in ResourceKind::ALL {
            let a = f.resource_use.get(&kind).ok_or_else(|| {
                CatalogueError::Invalid(format!("resource_use has no action for {kind:?}"))
            })?;
            c.add_action(a)?;
        }
        c.resource_use = f.resource_use;
        for e in f.entries {
            for a in e.required() {
                c.add_action(a)?;
            }
            let key = e.key();
            if c.by_key.insert(key.clone(), c.entries.len()).is_some() {
                return Err(CatalogueError::Invalid(format!("two entries for {key}")));
            }
            c.entries.push(e);
        }
        Ok(c)
    }

    fn add_action(&mut self, a: &str) -> Result<(), CatalogueError> {
        ActionPattern::parse(a)
            .map_err(|e| CatalogueError::Invalid(format!("action {a:?}: {e}")))?;
        if a.contains('*') {
            return Err(CatalogueError::Invalid(format!(
                "catalogue action {a:?} must not contain '*'"
            )));
        }
        if !self.action_ids.contains_key(a) {
            let id = u16::try_from(self.actions.len())
                .map_err(|_| CatalogueError::Invalid("too many actions".into()))?;
            self.action_ids.insert(a.to_string(), id);
            self.actions.push(a.to_string());
        }
        Ok(())
    }

    /// Replaces the dependencies of the entry `key` (`METHOD path[ body_key]`).
    pub fn override_dependencies(
        &mut self,
        key: &str,
        dependencies: Vec<String>,
    ) -> Result<(), CatalogueError> {
        let i = *self
            .by_key
            .get(key)
            .ok_or_else(|| CatalogueError::UnknownEntry(key.to_string()))?;
        for a in &dependencies {
            self.add_action(a)?;
        }
        self.entries[i].dependencies = dependencies;
        Ok(())
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn entry(&self, method: &str, path: &str, body_key: Option<&str>) -> Option<&Entry> {
        let key = match body_key {
            Some(k) => format!("{method} {path} {k}"),
            None => format!("{method} {path}"),
        };
        self.by_key.get(&key).map(|&i| &self.entries[i])
    }

    /// The position of an entry in [`Catalogue::entries`].
    pub fn entry_index(&self, method: &str, path: &str, body_key: Option<&str>) -> Option<usize> {
        let key = match body_key {
            Some(k) => format!("{method} {path} {k}"),
            None => format!("{method} {path}"),
        };
        self.by_key.get(&key).copied()
    }

    pub fn by_key(&self, key: &str) -> Option<&Entry> {
        self.by_key.get(key).map(|&i| &self.entries[i])
    }

    /// The action using a resource of `kind` named in a request body needs.
    pub fn use_action(&self, kind: ResourceKind) -> &str {
        self.resource_use.get(&kind).map_or("", String::as_str)
    }

    pub fn actions(&self) -> &[String] {
        &self.actions
    }

    pub fn action_id(&self, action: &str) -> Option<u16> {
        self.action_ids.get(action).copied()
    }

    /// True if the pattern matches at least one known action.
    pub fn knows(&self, p: &ActionPattern) -> bool {
        self.actions.iter().any(|a| p.matches(a))
    }
}

/// The seed row of Huawei Cloud's ECS permission table: `createImage` and its dependency actions,
/// the actions the `createImage` entry must require (a test holds the shipped catalogue to it).
pub const SEED_ROW: [&str; 8] = [
    "ecs:servers:createImage",
    "evs:volumes:get",
    "evs:snapshots:create",
    "ims:images:create",
    "ims:images:get",
    "ims:images:list",
    "ims:images:update",
    "ims:images:delete",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_row_is_the_create_image_entry() {
        let c = Catalogue::shipped().unwrap();
        let e = c
            .entry(
                "POST",
                "/compute/v2.1/{project_id}/servers/{server_id}/action",
                Some("createImage"),
            )
            .expect("createImage entry");
        assert_eq!(e.required(), SEED_ROW);
        assert_eq!(e.scope, ServiceScope::Project);
        assert!(!e.enterprise_project);
    }

    #[test]
    fn overrides_replace_dependencies() {
        let mut c = Catalogue::shipped().unwrap();
        let key = "POST /compute/v2.1/{project_id}/servers/{server_id}/action createImage";
        let mut deps: Vec<String> = c.by_key(key).unwrap().dependencies.clone();
        deps.extend(["ecs:servers:list".to_string(), "ims:quotas:get".to_string()]);
        c.override_dependencies(key, deps).unwrap();
        let e = c.by_key(key).unwrap();
        assert!(
            e.required().contains(&"ims:quotas:get") && e.required().contains(&"ecs:servers:list")
        );
        assert!(c.action_id("ims:quotas:get").is_some());
        assert!(c.override_dependencies("GET /nope", vec![]).is_err());
    }
}
