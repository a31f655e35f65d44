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
