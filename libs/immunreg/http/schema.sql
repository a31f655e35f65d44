-- Idempotency-Key records: one row per (caller, method, path, key). Applied with
-- search_path set to the service's schema, so names stay unqualified.
--
-- principal: who stored the answer (role, site, citizen and subject of the token,
-- see idempotency.principal_scope), so no other caller can find it.
-- authorisation: the own-record and own-site checks the first run passed; they run
-- again before the answer is replayed.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    principal     text NOT NULL,
    key           text NOT NULL,
    method        text NOT NULL,
    path          text NOT NULL,
    request_hash  bytea NOT NULL,
    status        integer,
    headers       jsonb,
    body          bytea,
    authorisation jsonb NOT NULL DEFAULT '[]',
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    CONSTRAINT idempotency_keys_scope PRIMARY KEY (principal, method, path, key)
);

-- Tables created before keys were scoped by route had PRIMARY KEY (principal, key),
-- nullable method and path, and no authorisation. Their rows (principal = the bare
-- token subject) match no scoped lookup and go with the daily purge.
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS authorisation jsonb NOT NULL DEFAULT '[]';
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_constraint
        WHERE conrelid = 'idempotency_keys'::regclass AND conname = 'idempotency_keys_scope'
    ) THEN
        UPDATE idempotency_keys SET method = coalesce(method, ''), path = coalesce(path, '')
        WHERE method IS NULL OR path IS NULL;
        ALTER TABLE idempotency_keys
            ALTER COLUMN method SET NOT NULL,
            ALTER COLUMN path SET NOT NULL,
            DROP CONSTRAINT IF EXISTS idempotency_keys_pkey,
            ADD CONSTRAINT idempotency_keys_scope PRIMARY KEY (principal, method, path, key);
    END IF;
END
$$;

-- Purging expired keys scans by age.
CREATE INDEX IF NOT EXISTS idempotency_keys_created_at ON idempotency_keys (created_at);
