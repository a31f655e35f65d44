-- Idempotency-Key records: one row per (caller, key). Applied with search_path
-- set to the service's schema, so names stay unqualified.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    principal    text NOT NULL,
    key          text NOT NULL,
    method       text,
    path         text,
    request_hash bytea NOT NULL,
    status       integer,
    headers      jsonb,
    body         bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (principal, key)
);

-- Purging expired keys scans by age.
CREATE INDEX IF NOT EXISTS idempotency_keys_created_at ON idempotency_keys (created_at);
