-- Identity: domains, projects, users, groups, roles (system and custom policies), grants,
-- token keys and revocations, the service catalogue and flavors.
-- Portable SQL: the same text runs on SQLite and PostgreSQL. Times are microseconds since the
-- Unix epoch (BIGINT); flags are BIGINT 0/1.

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row: bumped in every transaction that changes identity or authorization data, so that
-- caches on every node know when to reload.
CREATE TABLE revision (
    id BIGINT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO revision (id, value) VALUES (1, 1);

CREATE TABLE regions (
    id TEXT PRIMARY KEY,
    description TEXT NOT NULL
);

CREATE TABLE domains (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    domain_id TEXT NOT NULL REFERENCES domains (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (domain_id, name)
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    domain_id TEXT NOT NULL REFERENCES domains (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    email TEXT,
    enabled BIGINT NOT NULL,
    password_hash TEXT,
    default_project_id TEXT,
    -- Tokens issued before this instant are invalid (password change, disable).
    tokens_valid_after BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (domain_id, name)
);

CREATE TABLE user_groups (
    id TEXT PRIMARY KEY,
    domain_id TEXT NOT NULL REFERENCES domains (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (domain_id, name)
);

CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES user_groups (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

-- Roles are policies: system ones (domain_id NULL) and custom ones per domain.
CREATE TABLE roles (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    description TEXT NOT NULL,
    kind TEXT NOT NULL,
    domain_id TEXT,
    policy TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX roles_name ON roles (name);

-- A grant of a role to a user or a group on a scope:
-- scope_kind 'project' (scope_id = project id), 'all_projects' and 'domain' (scope_id = domain id),
-- 'enterprise_project' (scope_id = enterprise project id).
CREATE TABLE grants (
    role_id TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    actor_kind TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    scope_kind TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (actor_kind, actor_id, scope_kind, scope_id, role_id)
);
CREATE INDEX grants_scope ON grants (scope_kind, scope_id);

CREATE TABLE token_keys (
    id BIGINT PRIMARY KEY,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE revoked_tokens (
    audit_id TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

CREATE TABLE catalog (
    id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    service_type TEXT NOT NULL,
    service_name TEXT NOT NULL,
    interface TEXT NOT NULL,
    region_id TEXT NOT NULL REFERENCES regions (id),
    path TEXT NOT NULL,
    UNIQUE (service_type, interface, region_id)
);

CREATE TABLE flavors (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    vcpus BIGINT NOT NULL,
    ram_mb BIGINT NOT NULL,
    disk_gb BIGINT NOT NULL,
    ephemeral_gb BIGINT NOT NULL,
    swap_mb BIGINT NOT NULL,
    is_public BIGINT NOT NULL,
    description TEXT NOT NULL,
    extra_specs TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
