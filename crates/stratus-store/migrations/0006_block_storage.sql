-- Block storage: volumes, snapshots, and the disk layers (qcow2 files and their backing files)
-- that servers, volumes and snapshots stand on.

-- One row per disk file under the disks directory; `parent` is its backing file. A layer no
-- server, volume or snapshot reaches through `parent` links is garbage.
CREATE TABLE disk_layers (
    path TEXT PRIMARY KEY,
    parent TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE volumes (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    enterprise_project_id TEXT NOT NULL,
    name TEXT,
    description TEXT,
    size_gb BIGINT NOT NULL,
    status TEXT NOT NULL,
    bootable BIGINT NOT NULL,
    image_id TEXT,
    snapshot_id TEXT,
    -- JSON of the source image's metadata (volume_image_metadata), or NULL.
    image_metadata TEXT,
    -- The volume's active (writable) layer.
    disk TEXT NOT NULL,
    server_id TEXT,
    device TEXT,
    delete_on_termination BIGINT NOT NULL,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX volumes_project_created ON volumes (project_id, created_at, id);
CREATE INDEX volumes_server ON volumes (server_id);

CREATE TABLE snapshots (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    volume_id TEXT NOT NULL,
    name TEXT,
    description TEXT,
    size_gb BIGINT NOT NULL,
    status TEXT NOT NULL,
    -- The frozen layer holding the volume's data as of the snapshot.
    disk TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX snapshots_project_created ON snapshots (project_id, created_at, id);
CREATE INDEX snapshots_volume ON snapshots (volume_id);
