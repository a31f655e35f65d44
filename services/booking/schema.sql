-- Booking's own tables (the event store's are applied before this file).
-- Unqualified names: applied with search_path set to the service's schema; idempotent.

-- Sites as last defined (the Site streams are the truth; written in the same transaction).
CREATE TABLE IF NOT EXISTS sites (
    site_id           text        PRIMARY KEY,
    name              text        NOT NULL,
    municipality_code text        NOT NULL,
    address           text        NOT NULL,
    latitude          double precision,
    longitude         double precision,
    opening_hours     text        NOT NULL,
    daily_capacity    jsonb       NOT NULL,
    version           integer     NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sites_municipality ON sites (municipality_code);

-- A day's capacity override or closure (from SiteCapacityChanged on the SiteDay stream).
CREATE TABLE IF NOT EXISTS site_days (
    site_id  text    NOT NULL,
    day      date    NOT NULL,
    capacity jsonb   NOT NULL,
    closed   boolean NOT NULL,
    PRIMARY KEY (site_id, day)
);

-- Appointments. The partial unique index is the claim that keeps a citizen to one open
-- appointment: a booking inserts its row with ON CONFLICT DO NOTHING in the same
-- transaction as its events, so two concurrent bookings of one citizen cannot both
-- commit (the second waits for the first, then inserts nothing), with no check-then-insert.
CREATE TABLE IF NOT EXISTS appointments (
    appointment_id    text        PRIMARY KEY,
    citizen_id        text        NOT NULL,
    site_id           text        NOT NULL,
    municipality_code text        NOT NULL,
    day               date        NOT NULL,
    product_code      text        NOT NULL,
    dose_number       integer     NOT NULL,
    booster           boolean     NOT NULL DEFAULT false,
    status            text        NOT NULL
                      CHECK (status IN ('booked', 'cancelled', 'attended', 'missed')),
    reason            text        NOT NULL,
    run_id            text,
    status_reason     text,
    booked_at         timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS appointments_one_open_per_citizen
    ON appointments (citizen_id) WHERE status = 'booked';
CREATE INDEX IF NOT EXISTS appointments_citizen ON appointments (citizen_id, booked_at);
CREATE INDEX IF NOT EXISTS appointments_site_day ON appointments (site_id, day);
CREATE INDEX IF NOT EXISTS appointments_open_by_day
    ON appointments (day, site_id, product_code) WHERE status = 'booked';
-- A booking's stock check counts one site's open appointments of one product
-- (readmodel.stock_left, once per committed batch). Through appointments_open_by_day
-- it walked every open appointment from today on, of every site: 12.5 ms at 172,000
-- open appointments, growing with them, so a national run's commits cost the square of
-- its size. Led by site and product it reads only theirs.
CREATE INDEX IF NOT EXISTS appointments_open_by_site_product
    ON appointments (site_id, product_code, day) WHERE status = 'booked';

-- Citizens as registration describes them (fed by registration events). `registered_at`
-- (the registration event's recorded_at) is the order key of fairness.
CREATE TABLE IF NOT EXISTS citizens (
    citizen_id                  text        PRIMARY KEY,
    status                      text        NOT NULL
                                CHECK (status IN ('active', 'withdrawn', 'erased')),
    version                     integer     NOT NULL,
    birth_date                  date,
    municipality_code           text,
    preferred_municipality_code text,
    priority_group              text,
    conditions                  text[]      NOT NULL DEFAULT '{}',
    vaccine_preferences         text[]      NOT NULL DEFAULT '{}',
    registered_at               timestamptz,
    updated_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS citizens_active ON citizens (status);
-- The products the citizen's declared conditions rule out, as registration publishes
-- them: booking holds no health data. `conditions` is kept only for rows written from
-- events that carried conditions in clear (before registration sealed them); new writes
-- and erasure empty it, and the planner reads both (readmodel.citizen_from_row).
ALTER TABLE citizens ADD COLUMN IF NOT EXISTS ruled_out_products text[] NOT NULL DEFAULT '{}';

-- Doses given (from administration's events); a voided dose stays, flagged.
CREATE TABLE IF NOT EXISTS doses (
    dose_id        text        PRIMARY KEY,
    citizen_id     text        NOT NULL,
    site_id        text        NOT NULL,
    product_code   text        NOT NULL,
    dose_number    integer     NOT NULL,
    booster        boolean     NOT NULL DEFAULT false,
    administered_on date       NOT NULL,
    voided         boolean     NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS doses_citizen ON doses (citizen_id);

-- Usable doses per site and product, as inventory last published (StockLevelChanged).
-- Booking a product at a site locks its row: the stock guard (see handlers.py).
CREATE TABLE IF NOT EXISTS site_stock (
    site_id         text        NOT NULL,
    product_code    text        NOT NULL,
    doses_available integer     NOT NULL,
    earliest_expiry date,
    version         integer     NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, product_code)
);

-- Scheduling runs are background runs: libs/immunreg/runs.sql (`background_runs`).
