-- Administration's read models. Idempotent DDL; unqualified names (search_path is the
-- service's schema).

-- From registration events: what a dose record needs of a citizen. No names (registration
-- seals them); on CitizenErased everything but the id and the status goes.
CREATE TABLE IF NOT EXISTS citizens (
    citizen_id        text        PRIMARY KEY,
    status            text        NOT NULL CHECK (status IN ('active', 'withdrawn', 'erased')),
    version           integer     NOT NULL,  -- of the registration stream; guards reordering
    birth_date        date,
    sex               text,
    municipality_code text,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- From inventory's lot lifecycle: product, expiry, recall. A recall may be known before
-- the lot itself (columns are filled by whichever event comes first).
CREATE TABLE IF NOT EXISTS lots (
    lot_number    text        PRIMARY KEY,
    product_code  text,
    expiry_date   date,
    recalled_at   timestamptz,
    recall_reason text,
    expired       boolean     NOT NULL DEFAULT false,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Which lots inventory has delivered where (LotReceived location, ShipmentReceived
-- destination). Never removed: a lot once at a site stays known there.
CREATE TABLE IF NOT EXISTS site_lots (
    site_id      text        NOT NULL,
    lot_number   text        NOT NULL,
    product_code text        NOT NULL,
    first_seen   timestamptz NOT NULL,
    PRIMARY KEY (site_id, lot_number)
);

-- From booking's SiteDefined: the municipality of a site.
CREATE TABLE IF NOT EXISTS sites (
    site_id           text        PRIMARY KEY,
    name              text        NOT NULL,
    municipality_code text        NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- One data key per citizen, sealing the health details of their dose and adverse-event
-- events (keys.py): made in the transaction of the first event that needs it, deleted
-- on CitizenErased (crypto-shredding: the copies on Kafka and in `events` then open
-- with nothing).
CREATE TABLE IF NOT EXISTS citizen_keys (
    citizen_id  text        PRIMARY KEY,
    key_id      text        NOT NULL UNIQUE,
    key         bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Every recorded dose, voided ones included: written in the same transaction as the
-- dose's events (sequence and interval checks, GET, FHIR). The reasons are opened from
-- the events' sealed details; CitizenErased sets them NULL.
CREATE TABLE IF NOT EXISTS doses (
    dose_id                text        PRIMARY KEY,
    citizen_id             text        NOT NULL,
    status                 text        NOT NULL CHECK (status IN ('completed', 'entered-in-error')),
    version                integer     NOT NULL,
    site_id                text        NOT NULL,
    site_municipality_code text        NOT NULL,
    product_code           text        NOT NULL,
    lot_number             text        NOT NULL,
    dose_number            integer     NOT NULL,
    series_length          integer     NOT NULL,
    series_complete        boolean     NOT NULL,
    booster                boolean     NOT NULL,
    administered_at        timestamptz NOT NULL,
    age_at_vaccination     integer     NOT NULL,
    vaccinator_id          text        NOT NULL,
    appointment_id         text,
    injection_site         text,
    override_reason        text,
    overridden_rules       text[]      NOT NULL DEFAULT '{}',
    corrections            integer     NOT NULL DEFAULT 0,
    last_correction_reason text,
    void_reason            text,
    recorded_at            timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS doses_by_citizen ON doses (citizen_id, administered_at);

-- Adverse events following immunization, by dose. Symptoms, outcome and description are
-- opened from the event's sealed details; CitizenErased empties them (onset and
-- seriousness stay, as statistics count them).
CREATE TABLE IF NOT EXISTS adverse_events (
    report_id     text        PRIMARY KEY,
    dose_id       text        NOT NULL,
    citizen_id    text        NOT NULL,
    symptoms      text[]      NOT NULL,
    onset_at      timestamptz NOT NULL,
    serious       boolean     NOT NULL,
    outcome       text        NOT NULL,
    reporter_role text        NOT NULL,
    description   text,
    reported_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS adverse_events_by_citizen ON adverse_events (citizen_id);
-- Emptied by an erasure (added NOT NULL before erasure shredded it).
ALTER TABLE adverse_events ALTER COLUMN outcome DROP NOT NULL;
