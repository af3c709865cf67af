-- Server attributes kept as given (Nova's access addresses and disk config) and the lock.
ALTER TABLE servers ADD COLUMN access_ipv4 TEXT NOT NULL DEFAULT '';
ALTER TABLE servers ADD COLUMN access_ipv6 TEXT NOT NULL DEFAULT '';
ALTER TABLE servers ADD COLUMN auto_disk_config BIGINT NOT NULL DEFAULT 0;
-- 'owner' or 'admin' while the server is locked (Nova's locked_by), NULL otherwise.
ALTER TABLE servers ADD COLUMN locked_by TEXT;

-- A layer a saga made before anything reaches it (the saga's id): collection keeps it.
ALTER TABLE disk_layers ADD COLUMN pinned_by TEXT;

-- Keystone application credentials: a secret (stored only as an argon2id hash) that authenticates
-- as its user on one project, with at most the given roles, optionally only for the API calls
-- its access rules name.
CREATE TABLE application_credentials (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    secret_hash TEXT NOT NULL,
    expires_at BIGINT,
    unrestricted BIGINT NOT NULL,
    -- JSON list of role ids.
    roles TEXT NOT NULL,
    -- JSON list of {"id", "service", "method", "path"}.
    access_rules TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (user_id, name)
);
CREATE INDEX application_credentials_user ON application_credentials (user_id);

-- Tokens scoped to a project and issued before this instant are invalid: disabling a project
-- revokes its tokens for good (enabling it again does not revive them).
ALTER TABLE projects ADD COLUMN tokens_valid_after BIGINT NOT NULL DEFAULT 0;

-- Failed logins per user, for the optional lockout (login protection).
CREATE TABLE login_failures (
    user_id TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    since BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);

-- Ids of deleted images: never given to another image (its data must never be taken for the
-- deleted one's, and the other way round).
CREATE TABLE deleted_images (
    id TEXT PRIMARY KEY,
    deleted_at BIGINT NOT NULL
);

-- Per-project quotas set by an administrator (defaults are shipped data).
CREATE TABLE quota_limits (
    project_id TEXT NOT NULL,
    service TEXT NOT NULL,
    resource TEXT NOT NULL,
    hard_limit BIGINT NOT NULL,
    PRIMARY KEY (project_id, service, resource)
);

-- The snapshot being taken of a volume (its plan's id): one at a time per volume.
ALTER TABLE volumes ADD COLUMN snapshot_lock TEXT;
