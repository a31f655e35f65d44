-- One read model: a schema of its own (projections_m<timestamp>), applied with the
-- search_path set to it, next to the event-store tables (consumer_positions and
-- processed_events hold where this model's consumer group stands, in the same
-- transactions as the rows below). Written only by services/projections/projector.py.
-- No column holds a wall-clock time of writing, so a replay can equal the live model.

-- Base rows: each follows one stream, folded in stream order (domain.evolve_*).

CREATE TABLE IF NOT EXISTS doses (
    dose_id                   text PRIMARY KEY,
    citizen_id                text    NOT NULL,
    site_id                   text    NOT NULL,
    site_municipality_code    text    NOT NULL,
    citizen_municipality_code text    NOT NULL,
    product_code              text    NOT NULL,
    dose_number               integer NOT NULL,
    series_complete           boolean NOT NULL,
    booster                   boolean NOT NULL,
    administered_at           timestamptz,          -- NULL: voided before it was seen
    day                       date,                 -- in Europe/Belgrade
    age_at_vaccination        integer,
    sex                       text,
    voided                    boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS doses_citizen ON doses (citizen_id);

CREATE TABLE IF NOT EXISTS appointments (
    appointment_id    text PRIMARY KEY,
    citizen_id        text NOT NULL,
    site_id           text NOT NULL,
    municipality_code text NOT NULL,
    day               date NOT NULL,
    product_code      text NOT NULL,
    status            text NOT NULL CHECK (status IN ('booked', 'attended', 'missed', 'cancelled'))
);
CREATE INDEX IF NOT EXISTS appointments_pending ON appointments (citizen_id)
    WHERE status = 'booked';

-- One row per citizen seen in any event: registration as published (reg_*), and
-- the facts derived from it, their doses and appointments (domain.citizen_facts).
-- Coverage on day D is a count of rows with <kind>_date <= D.
CREATE TABLE IF NOT EXISTS citizens (
    citizen_id            text PRIMARY KEY,
    reg_registered        boolean NOT NULL DEFAULT false,
    reg_withdrawn         boolean NOT NULL DEFAULT false,
    reg_erased            boolean NOT NULL DEFAULT false,
    reg_birth_date        date,
    reg_sex               text,
    reg_municipality_code text,
    municipality_code     text,
    district_code         text,
    sex                   text,
    age_band              text,
    dose1_date            date,
    dose1_product         text,
    complete_date         date,
    complete_product      text,
    booster_date          date,
    booster_product       text,
    waiting               boolean NOT NULL DEFAULT false
);

-- Last values.

CREATE TABLE IF NOT EXISTS sites (
    site_id           text PRIMARY KEY,
    name              text    NOT NULL,
    municipality_code text    NOT NULL,
    daily_capacity    jsonb   NOT NULL,   -- product code -> doses a day (the default)
    capacity_total    integer NOT NULL
);

CREATE TABLE IF NOT EXISTS site_day_capacity (
    site_id        text    NOT NULL,
    day            date    NOT NULL,
    capacity       jsonb   NOT NULL,      -- the day's override ({} when closed)
    capacity_total integer NOT NULL,
    closed         boolean NOT NULL,
    PRIMARY KEY (site_id, day)
);

CREATE TABLE IF NOT EXISTS stock_levels (
    location_id     text        NOT NULL,
    product_code    text        NOT NULL,
    doses_available integer     NOT NULL,
    earliest_expiry date,
    version         integer     NOT NULL,
    as_of           timestamptz NOT NULL,  -- recorded_at of the StockLevelChanged
    PRIMARY KEY (location_id, product_code)
);

CREATE TABLE IF NOT EXISTS adverse_events (
    report_id    text PRIMARY KEY,
    dose_id      text    NOT NULL,
    product_code text    NOT NULL,
    serious      boolean NOT NULL,
    onset_day    date    NOT NULL
);

CREATE TABLE IF NOT EXISTS certificates (
    uvci         text PRIMARY KEY,
    product_code text,
    dose_number  integer,
    issued_day   date,
    revoked      boolean NOT NULL DEFAULT false
);

-- Counters: sums of +/- deltas; a cell that falls to zero is deleted.

CREATE TABLE IF NOT EXISTS daily_doses (
    day          date    NOT NULL,
    product_code text    NOT NULL,
    age_band     text    NOT NULL,   -- census band of the age at that dose
    kind         text    NOT NULL,   -- first | series | booster
    doses        integer NOT NULL,
    PRIMARY KEY (day, product_code, age_band, kind)
);

CREATE TABLE IF NOT EXISTS site_daily_doses (
    site_id      text    NOT NULL,
    product_code text    NOT NULL,
    day          date    NOT NULL,
    doses        integer NOT NULL,
    PRIMARY KEY (site_id, product_code, day)
);

-- booked: slots taken (SlotsReserved - SlotsReleased); attended / missed: appointments.
CREATE TABLE IF NOT EXISTS booking_days (
    site_id      text    NOT NULL,
    day          date    NOT NULL,
    product_code text    NOT NULL,
    booked       integer NOT NULL,
    attended     integer NOT NULL,
    missed       integer NOT NULL,
    PRIMARY KEY (site_id, day, product_code)
);

-- waiting: registered citizens with no dose and no appointment (by residence);
-- booked: appointments still booked (by the appointment's municipality).
CREATE TABLE IF NOT EXISTS municipality_queue (
    municipality_code text PRIMARY KEY,
    waiting           integer NOT NULL,
    booked            integer NOT NULL
);

-- DosesWasted and OpenedVialExpired, by the day they happened.
CREATE TABLE IF NOT EXISTS waste_daily (
    site_id      text    NOT NULL,
    product_code text    NOT NULL,
    day          date    NOT NULL,
    doses        integer NOT NULL,
    PRIMARY KEY (site_id, product_code, day)
);

-- How fresh the model is: the newest recorded_at applied, and how many events.
CREATE TABLE IF NOT EXISTS model_state (
    id                 boolean PRIMARY KEY DEFAULT true CHECK (id),
    newest_recorded_at timestamptz,
    events_applied     bigint NOT NULL DEFAULT 0
);
INSERT INTO model_state (id) VALUES (true) ON CONFLICT DO NOTHING;

-- Supply against demand: shipments dispatched (on the road until received), supply
-- contracts and the deliveries received against them (due = total - delivered).
CREATE TABLE IF NOT EXISTS shipments (
    shipment_id  text PRIMARY KEY,
    to_location  text    NOT NULL,
    product_code text    NOT NULL,
    vials        integer NOT NULL,
    received     boolean NOT NULL
);

CREATE TABLE IF NOT EXISTS contracts (
    contract_id  text PRIMARY KEY,
    product_code text    NOT NULL,
    total_doses  bigint  NOT NULL
);

CREATE TABLE IF NOT EXISTS contract_deliveries (
    delivery_id  text PRIMARY KEY,
    contract_id  text    NOT NULL,
    product_code text    NOT NULL,
    doses        bigint  NOT NULL
);

-- Coverage, pre-aggregated (domain.coverage_cells): per kind ('1', 'complete',
-- 'booster') and day, how many citizens had that kind on that day, per cell of the
-- dimensions the coverage query filters or groups by (NULL stored as 'unknown'); each
-- citizen counts in their municipality's cell and in their district's ('*').
-- A citizen whose facts change leaves the old cell (-1) and joins the new (+1), in
-- the same transaction as their `citizens` row.
CREATE TABLE IF NOT EXISTS coverage_daily (
    kind              text    NOT NULL,
    day               date    NOT NULL,
    municipality_code text    NOT NULL,   -- '*': the district's own cell
    district_code     text    NOT NULL,
    age_band          text    NOT NULL,
    sex               text    NOT NULL,
    product_code      text    NOT NULL,
    people            integer NOT NULL,
    PRIMARY KEY (kind, day, municipality_code, district_code, age_band, sex, product_code)
);

-- Running sums: for the Monday of every week that has coverage_daily rows of a kind
-- (coverage_weeks), each cell's people of that kind on the days before it. Coverage on
-- day D = the sum at the latest such week <= D + coverage_daily from that week to D.
-- Both follow from coverage_daily alone, so a replay ends with the same rows.
CREATE TABLE IF NOT EXISTS coverage_weeks (
    kind text NOT NULL,
    week date NOT NULL,
    PRIMARY KEY (kind, week)
);

CREATE TABLE IF NOT EXISTS coverage_before (
    kind              text    NOT NULL,
    week              date    NOT NULL,
    municipality_code text    NOT NULL,
    district_code     text    NOT NULL,
    age_band          text    NOT NULL,
    sex               text    NOT NULL,
    product_code      text    NOT NULL,
    people            integer NOT NULL,
    PRIMARY KEY (kind, week, municipality_code, district_code, age_band, sex, product_code)
);

-- The running sums afresh from coverage_daily: after a rebuild's replay (which keeps
-- coverage_daily only) and in the fill below. Rows go in key order, as the projector
-- writes a new week's, so an answer reads few pages.
CREATE OR REPLACE FUNCTION fill_coverage_running_sums() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(current_schema() || ':coverage', 0));
    DELETE FROM coverage_before;
    DELETE FROM coverage_weeks;
    INSERT INTO coverage_weeks
    SELECT DISTINCT kind, date_trunc('week', day)::date FROM coverage_daily;
    ANALYZE coverage_daily, coverage_weeks;  -- for the plan below
    -- Each cell's sum before each week: a running sum over the weeks of its kind.
    INSERT INTO coverage_before
    SELECT * FROM (
        SELECT w.kind, w.week, c.municipality_code, c.district_code, c.age_band, c.sex,
               c.product_code,
               sum(coalesce(s.people, 0)) OVER (
                   PARTITION BY w.kind, c.municipality_code, c.district_code, c.age_band,
                                c.sex, c.product_code
                   ORDER BY w.week ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
               ) AS people
        FROM coverage_weeks w
        JOIN (SELECT DISTINCT kind, municipality_code, district_code, age_band, sex,
                     product_code FROM coverage_daily) AS c ON c.kind = w.kind
        LEFT JOIN (SELECT kind, date_trunc('week', day)::date AS week, municipality_code,
                          district_code, age_band, sex, product_code, sum(people) AS people
                   FROM coverage_daily GROUP BY 1, 2, 3, 4, 5, 6, 7) AS s
               ON s.kind = w.kind AND s.week = w.week
              AND s.municipality_code = c.municipality_code
              AND s.district_code = c.district_code AND s.age_band = c.age_band
              AND s.sex = c.sex AND s.product_code = c.product_code
    ) AS sums
    WHERE people <> 0
    ORDER BY 1, 2, 3, 4, 5, 6, 7;
END
$$;

-- A model built before these tables existed fills them once from its citizens (the
-- projector keeps them from then on; it takes the same lock).
DO $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(current_schema() || ':coverage', 0));
    IF NOT EXISTS (SELECT 1 FROM coverage_daily)
       AND EXISTS (SELECT 1 FROM citizens WHERE dose1_date IS NOT NULL) THEN
        INSERT INTO coverage_daily
        SELECT c.kind, c.day, m.municipality, coalesce(district_code, 'unknown'),
               coalesce(age_band, 'unknown'), coalesce(sex, 'unknown'), c.product, count(*)
        FROM citizens,
             LATERAL (VALUES ('1', dose1_date, dose1_product),
                             ('complete', complete_date, complete_product),
                             ('booster', booster_date, booster_product)) AS c(kind, day, product),
             LATERAL (VALUES (coalesce(municipality_code, 'unknown')), ('*')) AS m(municipality)
        WHERE c.day IS NOT NULL
        GROUP BY 1, 2, 3, 4, 5, 6, 7
        ORDER BY 1, 2, 3, 4, 5, 6, 7;
        PERFORM fill_coverage_running_sums();
    END IF;
END
$$;
