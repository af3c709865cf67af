-- Server attributes kept as given (Nova's access addresses and disk config) and the lock.
ALTER TABLE servers ADD COLUMN access_ipv4 TEXT NOT NULL DEFAULT '';
ALTER TABLE servers ADD COLUMN access_ipv6 TEXT NOT NULL DEFAULT '';
ALTER TABLE servers ADD COLUMN auto_disk_config BIGINT NOT NULL DEFAULT 0;
-- 'owner' or 'admin' while the server is locked (Nova's locked_by), NULL otherwise.
ALTER TABLE servers ADD COLUMN locked_by TEXT;

-- A layer a saga made before anything reaches it (the saga's id): collection keeps it.
ALTER TABLE disk_layers ADD COLUMN pinned_by TEXT;
