-- The event store, outbox and consumer positions of one service.
-- Applied with search_path set to the service's own schema; idempotent.

CREATE TABLE IF NOT EXISTS events (
    stream_id      text        NOT NULL,
    version        integer     NOT NULL CHECK (version > 0),
    stream_type    text        NOT NULL,
    event_id       uuid        NOT NULL UNIQUE,
    type           text        NOT NULL,
    schema_version integer     NOT NULL,
    data           jsonb       NOT NULL,
    occurred_at    timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL,
    correlation_id uuid,
    causation_id   uuid,
    -- Optimistic concurrency: two writers cannot both append version n.
    PRIMARY KEY (stream_id, version)
);
CREATE INDEX IF NOT EXISTS events_type_recorded ON events (type, recorded_at);

CREATE TABLE IF NOT EXISTS snapshots (
    stream_id  text        PRIMARY KEY,
    version    integer     NOT NULL,
    state      bytea       NOT NULL,
    taken_at   timestamptz NOT NULL DEFAULT now()
);

-- Rows wait here until the relay has published them, then are deleted.
-- tx_id orders rows by the transaction that wrote them: the relay only reads
-- rows whose transaction is older than every transaction still running, so a
-- row that commits late can never be overtaken (see relay.py).
CREATE TABLE IF NOT EXISTS outbox (
    id          bigserial   PRIMARY KEY,
    tx_id       xid8        NOT NULL DEFAULT pg_current_xact_id(),
    topic       text        NOT NULL,
    key         text        NOT NULL,
    payload     bytea       NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '[]',
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS outbox_position ON outbox (tx_id, id);
-- A packed row holds `packed` messages of one bulk write (a msgpack array of [key,
-- payload] pairs in `payload`, see packing.py); NULL: the row is one message. A packed
-- row has no key of its own (NULL), which a relay of an earlier release fails on
-- before it publishes anything (relay.py, "Packed rows"). Its payload, hundreds of KB
-- of JSON, is stored out of line uncompressed: the row lives seconds, not worth pglz's
-- pass over every byte. Checked first, so a start with the column in place takes no
-- lock on the outbox.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_attribute
        WHERE attrelid = 'outbox'::regclass AND attname = 'packed' AND NOT attisdropped
    ) THEN
        ALTER TABLE outbox ADD COLUMN packed integer CHECK (packed > 0),
            ALTER COLUMN key DROP NOT NULL,
            ADD CONSTRAINT outbox_key_or_packed CHECK ((key IS NULL) = (packed IS NOT NULL)),
            ALTER COLUMN payload SET STORAGE EXTERNAL;
    END IF;
END
$$;

-- Where each consumer group stands on each partition; written in the same
-- transaction as the effect, so a redelivery changes nothing.
CREATE TABLE IF NOT EXISTS consumer_positions (
    group_id    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- Event ids a group has applied: guards against the same event arriving at
-- another offset (a topic replayed or republished).
CREATE TABLE IF NOT EXISTS processed_events (
    group_id     text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, event_id)
);
