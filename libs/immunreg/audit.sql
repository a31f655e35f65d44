-- The audit of reads (immunreg.audit), in every service's schema. Idempotent.
-- One row per read of a citizen's personal or health data: who, when, what, why.
-- Rows are hash-chained (each carries the hash of the one before it, `seq` has no
-- gaps), so an edited or deleted row is found by `immunreg audit verify`; the
-- trigger refuses UPDATE, DELETE and TRUNCATE to everyone the trigger binds.
CREATE TABLE IF NOT EXISTS audit_log (
    seq           bigint      PRIMARY KEY,
    at            timestamptz NOT NULL,
    subject       text        NOT NULL,
    role          text        NOT NULL,
    site_id       text,
    route         text        NOT NULL,
    citizen_id    text        NOT NULL,
    resource_id   text,
    reason        text,
    previous_hash text        NOT NULL,
    hash          text        NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_citizen ON audit_log (citizen_id, seq);

CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE OR REPLACE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE OR REPLACE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
