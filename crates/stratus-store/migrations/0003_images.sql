-- Images (Glance v2 / IMS). Data lives in the blob store under the image id; this is metadata.

CREATE TABLE images (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    enterprise_project_id TEXT NOT NULL,
    name TEXT,
    status TEXT NOT NULL,
    visibility TEXT NOT NULL,
    protected BIGINT NOT NULL,
    disk_format TEXT,
    container_format TEXT,
    min_disk BIGINT NOT NULL,
    min_ram BIGINT NOT NULL,
    size BIGINT,
    virtual_size BIGINT,
    checksum TEXT,
    os_hash_algo TEXT,
    os_hash_value TEXT,
    -- JSON object of free-form properties.
    properties TEXT NOT NULL,
    -- JSON list of tags.
    tags TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- Keyset pagination in the default order (created_at DESC, id DESC), per owner and overall.
CREATE INDEX images_owner_created ON images (owner, created_at, id);
CREATE INDEX images_visibility_created ON images (visibility, created_at, id);
