-- Sagas: multi-step operations whose every step is recorded before and after it runs, so that
-- any node can resume or undo one whose owner stopped.

CREATE TABLE sagas (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    -- running | undoing | done | undone | stuck
    state TEXT NOT NULL,
    -- Index of the step being run (or undone).
    step BIGINT NOT NULL,
    -- JSON object: the saga's parameters and what its steps recorded.
    data TEXT NOT NULL,
    -- Why the saga is being undone, or why its undo failed.
    error TEXT,
    -- 1 when the saga stops without it being a failure (nothing to report to the user).
    quiet BIGINT NOT NULL,
    -- The node holding the lease, and until when (micros); another node may claim it after.
    owner TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX sagas_by_state ON sagas (state, lease_until);

CREATE TABLE saga_steps (
    saga_id TEXT NOT NULL,
    idx BIGINT NOT NULL,
    name TEXT NOT NULL,
    -- started | done | undone | undo_failed
    status TEXT NOT NULL,
    -- JSON: what the undo acts on, recorded before the step runs.
    undo TEXT NOT NULL,
    error TEXT,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (saga_id, idx)
);
