-- Compute: servers and their state machine (Nova's vm_state / task_state / power_state).

CREATE TABLE servers (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    enterprise_project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    flavor_id TEXT NOT NULL,
    -- The flavor as it was at creation (JSON), as Nova embeds it from 2.47.
    flavor TEXT NOT NULL,
    -- Empty for a server booted from a volume.
    image_id TEXT NOT NULL,
    vm_state TEXT NOT NULL,
    task_state TEXT,
    power_state BIGINT NOT NULL,
    -- JSON object of metadata.
    metadata TEXT NOT NULL,
    availability_zone TEXT NOT NULL,
    -- JSON {"code", "message", "created"} once the server failed.
    fault TEXT,
    -- Path of the root disk relative to the disks directory; empty until it exists.
    root_disk TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    launched_at BIGINT
);
CREATE INDEX servers_project_created ON servers (project_id, created_at, id);
