-- Registration's own tables (the event store's are applied before this file).
-- Unqualified names: applied with search_path set to the service's schema; idempotent.

-- The read model GET serves, written in the same transaction as the events
-- (so a client reads its own writes), and rebuildable from `events` alone.
-- Personal data is kept only sealed (`personal`, a Sealed JSON): erasing the
-- citizen's key makes it unreadable here too, and erasure also clears it.
CREATE TABLE IF NOT EXISTS citizens (
    citizen_id                  text        PRIMARY KEY,
    status                      text        NOT NULL
                                CHECK (status IN ('active', 'withdrawn', 'erased')),
    version                     integer     NOT NULL,
    birth_date                  date,
    sex                         text,
    municipality_code           text,
    priority_group              text,
    conditions                  text[],
    vaccine_preferences         text[],
    preferred_municipality_code text,
    consent                     jsonb,
    channel                     text,
    personal                    jsonb,
    registered_at               timestamptz,
    updated_at                  timestamptz NOT NULL,
    withdrawn_at                timestamptz,
    erased_at                   timestamptz
);
CREATE INDEX IF NOT EXISTS citizens_status_group ON citizens (status, priority_group);
-- What messages to the citizen are written in (and the portal shows as chosen); added
-- after the table: rows written before it hold NULL until a rebuild or a preference change.
ALTER TABLE citizens ADD COLUMN IF NOT EXISTS language text;
-- The declared conditions, sealed with the citizen's key (HealthData, a Sealed JSON), as
-- the events carry them; `conditions` holds only what events written before them
-- carried in clear. Erasure clears both.
ALTER TABLE citizens ADD COLUMN IF NOT EXISTS health jsonb;

-- One data key per citizen, wrapped by the key-encryption key (KEK, outside the
-- database). Erasure deletes the row: crypto-shredding.
CREATE TABLE IF NOT EXISTS citizen_keys (
    citizen_id  text        PRIMARY KEY,
    key_id      text        NOT NULL UNIQUE,
    wrapped     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The national-id index: a keyed hash of the national id (HMAC under a key derived from
-- the id key) -> the citizen id, which is random. Written in the registration's
-- transaction; the unique key makes a concurrent second registration of one national
-- id wait and then find the first (409). Erasure deletes the row: afterwards nothing
-- here, nor the id key, links the national id to the erased citizen's id.
CREATE TABLE IF NOT EXISTS citizen_national_ids (
    national_id_hash text PRIMARY KEY,
    citizen_id       text NOT NULL UNIQUE
);

-- Fingerprints of keys the stored data depends on (the id key: the indexes' hashes).
CREATE TABLE IF NOT EXISTS registration_keys_in_use (
    name        text        PRIMARY KEY,
    fingerprint text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- Which sites a citizen is linked to (an appointment booked or moved there, a dose
-- given or corrected there), learnt from booking's and administration's events: what
-- site staff's linked reach asks before they read the citizen (docs/security.md).
-- Site ids only; a link, once made, stays (the site did meet the citizen).
CREATE TABLE IF NOT EXISTS citizen_sites (
    citizen_id  text        NOT NULL,
    site_id     text        NOT NULL,
    linked_at   timestamptz NOT NULL,
    PRIMARY KEY (citizen_id, site_id)
);

-- Sign-in (contacts.py): each phone and e-mail of an active registration, as a keyed
-- hash (HMAC-SHA256), to the citizen it signs in. No contact is stored here, and the
-- rows go with a withdrawal or an erasure.
CREATE TABLE IF NOT EXISTS sign_in_contacts (
    contact_hash text PRIMARY KEY,
    citizen_id   text NOT NULL
);
CREATE INDEX IF NOT EXISTS sign_in_contacts_citizen ON sign_in_contacts (citizen_id);

-- One-time codes sent and not yet used: a keyed hash of the code, never the code.
CREATE TABLE IF NOT EXISTS sign_in_codes (
    contact_hash  text        PRIMARY KEY,
    citizen_id    text        NOT NULL,
    code_hash     text        NOT NULL,
    expires_at    timestamptz NOT NULL,
    attempts_left integer     NOT NULL CHECK (attempts_left > 0),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sign_in_codes_citizen ON sign_in_codes (citizen_id);

-- Holders' pooled keys (HolderKeysPooled, immunreg.holderkeys): public halves of key
-- pairs a holder made for no citizen yet, each to be wrapped a first registration's
-- data key once. Taken in batches (DELETE ... RETURNING, then held in memory by one
-- process: handlers.PooledKeys), so no key is handed out twice; a key held by a
-- process that crashes is never used. A batch is recorded by its stream, so an offer
-- consumed again (a replay) never brings its taken keys back.
CREATE TABLE IF NOT EXISTS holder_key_batches (
    stream_id   text        PRIMARY KEY,
    holder      text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS offered_holder_keys (
    holder      text        NOT NULL,
    public_key  text        NOT NULL,  -- raw X25519, standard base64
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (holder, public_key)
);
CREATE INDEX IF NOT EXISTS offered_holder_keys_next ON offered_holder_keys (holder, expires_at);
