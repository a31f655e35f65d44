-- A holder's per-citizen key (immunreg.holderkeys): the X25519 key pair this service made
-- for one citizen, and registration's grant (the citizen's data key wrapped to it).
-- Deleted on the citizen's erasure: the grant on Kafka and in registration's event store
-- then opens nothing. Applied by the services that hold personal data (certificates,
-- notifications); unqualified names, idempotent.
CREATE TABLE IF NOT EXISTS holder_keys (
    citizen_id   text        PRIMARY KEY,
    data_key_id  text        NOT NULL,  -- the key_id of the sealed data it is for
    private_key  bytea       NOT NULL,  -- raw X25519
    public_key   bytea       NOT NULL,
    wrapped_key  text,                  -- registration's grant; NULL until it arrives
    created_at   timestamptz NOT NULL DEFAULT now(),
    granted_at   timestamptz
);

-- Key pairs made for no citizen yet (the pool), their public halves offered in batches
-- (`HolderKeysPooled`). A first registration wraps the citizen's data key to one and
-- carries the grant in `CitizenRegistered`; the holder then moves the pair into
-- holder_keys for that citizen (deleted here in the same statement), so a pair is bound
-- at most once. A pair never bound (registration lost it in a crash, or nobody
-- registered before it expired) wraps nothing: it is deleted some time after expires_at.
CREATE TABLE IF NOT EXISTS holder_key_pool (
    public_key  bytea       PRIMARY KEY,
    private_key bytea       NOT NULL,  -- raw X25519
    expires_at  timestamptz NOT NULL,  -- registration uses it only before
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS holder_key_pool_expires ON holder_key_pool (expires_at);
