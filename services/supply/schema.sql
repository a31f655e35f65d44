-- Supply's own tables (the event store's are applied before this file).
-- Unqualified names: applied with search_path set to the service's schema; idempotent.

-- Views of supply's own streams, written in the same transaction as their events.

CREATE TABLE IF NOT EXISTS contracts (
    contract_id  text    PRIMARY KEY,
    product_code text    NOT NULL,
    state        jsonb   NOT NULL,   -- domain.Contract
    version      integer NOT NULL
);

CREATE TABLE IF NOT EXISTS allocation_runs (
    run_id       text        PRIMARY KEY,
    status       text        NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    state        jsonb       NOT NULL,   -- domain.AllocationRun
    version      integer     NOT NULL
);
CREATE INDEX IF NOT EXISTS allocation_runs_requested ON allocation_runs (requested_at)
    WHERE status = 'requested';

CREATE TABLE IF NOT EXISTS replenishment_alerts (
    site_id        text    NOT NULL,
    product_code   text    NOT NULL,
    alert          boolean NOT NULL,
    days_of_supply double precision,
    version        integer NOT NULL,
    PRIMARY KEY (site_id, product_code)
);

-- What supply learns from other contexts' events (never from their tables).

-- booking: sites, day overrides, open appointments (removed once attended, missed or
-- cancelled).
CREATE TABLE IF NOT EXISTS sites (
    site_id           text  PRIMARY KEY,
    municipality_code text  NOT NULL,
    district_code     text  NOT NULL,
    daily_capacity    jsonb NOT NULL
);

CREATE TABLE IF NOT EXISTS site_days (
    site_id  text    NOT NULL,
    day      date    NOT NULL,
    capacity jsonb   NOT NULL,
    closed   boolean NOT NULL,
    PRIMARY KEY (site_id, day)
);

CREATE TABLE IF NOT EXISTS appointments (
    appointment_id text PRIMARY KEY,
    citizen_id     text NOT NULL,
    site_id        text NOT NULL,
    day            date NOT NULL,
    product_code   text NOT NULL
);
CREATE INDEX IF NOT EXISTS appointments_site_day ON appointments (site_id, day);
CREATE INDEX IF NOT EXISTS appointments_citizen ON appointments (citizen_id);

-- registration and administration: who may still be waiting, where, for what.
CREATE TABLE IF NOT EXISTS citizens (
    citizen_id        text    PRIMARY KEY,
    municipality_code text,          -- the preferred municipality, else home
    first_preference  text,          -- a product code, or 'any'
    registered        boolean NOT NULL DEFAULT false,
    complete          boolean NOT NULL DEFAULT false   -- series complete
);

-- inventory: lots, sealed vials per location and lot, usable doses per location and
-- product (StockLevelChanged, newest version wins), shipments not yet received.
CREATE TABLE IF NOT EXISTS lots (
    lot_number text PRIMARY KEY,
    storage    text NOT NULL,
    status     text NOT NULL   -- active | recalled | expired
);

CREATE TABLE IF NOT EXISTS stock (
    location_id     text    NOT NULL,
    lot_number      text    NOT NULL,
    product_code    text    NOT NULL,
    expiry_date     date    NOT NULL,
    doses_per_vial  integer NOT NULL,
    sealed_vials    integer NOT NULL,
    usable          boolean NOT NULL DEFAULT true,   -- false once recalled or expired
    PRIMARY KEY (location_id, lot_number)
);

CREATE TABLE IF NOT EXISTS levels (
    location_id     text    NOT NULL,
    product_code    text    NOT NULL,
    doses_available integer NOT NULL,
    version         integer NOT NULL,
    PRIMARY KEY (location_id, product_code)
);

CREATE TABLE IF NOT EXISTS shipments (
    shipment_id   text    PRIMARY KEY,
    lot_number    text    NOT NULL,
    product_code  text    NOT NULL,
    from_location text    NOT NULL,
    to_location   text    NOT NULL,
    vials         integer NOT NULL,
    status        text    NOT NULL   -- created | dispatched | received
);
CREATE INDEX IF NOT EXISTS shipments_open ON shipments (to_location) WHERE status <> 'received';
-- Vials promised to planned shipments are not the planner's to give again.
CREATE INDEX IF NOT EXISTS shipments_planned ON shipments (from_location, lot_number)
    WHERE status = 'created';
