-- Enterprise projects: logical groups of resources within a domain. "0" is each deployment's
-- default enterprise project and cannot be deleted.

CREATE TABLE enterprise_projects (
    id TEXT PRIMARY KEY,
    domain_id TEXT NOT NULL REFERENCES domains (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (domain_id, name)
);

CREATE INDEX grants_actor ON grants (actor_kind, actor_id);
CREATE INDEX roles_domain ON roles (domain_id);
