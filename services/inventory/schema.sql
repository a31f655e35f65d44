-- Inventory read models. Written in the same transaction as the events they
-- reflect (services/inventory/handlers.py), so the API reads its own writes.
-- Rows of `lots` and `stock_levels` double as the locks that order commands on
-- a lot (recall, expiry, shipment receipt) and on one lot's stock at one place.

CREATE TABLE IF NOT EXISTS lots (
    lot_number        text        PRIMARY KEY,
    product_code      text        NOT NULL,
    manufacturer_code text        NOT NULL,
    expiry_date       date        NOT NULL,
    doses_per_vial    integer     NOT NULL,
    storage           text        NOT NULL,
    location_id       text        NOT NULL,
    vials             integer     NOT NULL,
    status            text        NOT NULL,
    recall_reason     text,
    version           integer     NOT NULL,
    received_at       timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS lots_active_expiry ON lots (expiry_date) WHERE status = 'active';

-- One lot at one location (the Stock aggregate's state).
CREATE TABLE IF NOT EXISTS stock_levels (
    location_id      text        NOT NULL,
    lot_number       text        NOT NULL,
    product_code     text        NOT NULL,
    expiry_date      date,
    doses_per_vial   integer     NOT NULL,
    sealed_vials     integer     NOT NULL CHECK (sealed_vials >= 0),
    open_vials       integer     NOT NULL CHECK (open_vials >= 0),
    open_doses       integer     NOT NULL CHECK (open_doses >= 0),
    doses_available  integer     NOT NULL CHECK (doses_available >= 0),
    status           text        NOT NULL,
    doses_consumed   integer     NOT NULL DEFAULT 0,
    doses_wasted     integer     NOT NULL DEFAULT 0,
    discrepancies    integer     NOT NULL DEFAULT 0,
    next_vial_expiry timestamptz,
    version          integer     NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (location_id, lot_number)
);
CREATE INDEX IF NOT EXISTS stock_levels_lot ON stock_levels (lot_number);
CREATE INDEX IF NOT EXISTS stock_levels_vial_expiry ON stock_levels (next_vial_expiry)
    WHERE next_vial_expiry IS NOT NULL;

-- Usable doses of a product at a location: the last StockLevelChanged published.
CREATE TABLE IF NOT EXISTS product_levels (
    location_id     text        NOT NULL,
    product_code    text        NOT NULL,
    doses_available integer     NOT NULL,
    earliest_expiry date,
    version         integer     NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (location_id, product_code)
);

CREATE TABLE IF NOT EXISTS shipments (
    shipment_id   text        PRIMARY KEY,
    lot_number    text        NOT NULL,
    product_code  text        NOT NULL,
    from_location text        NOT NULL,
    to_location   text        NOT NULL,
    vials         integer     NOT NULL,
    status        text        NOT NULL,
    vials_received integer    NOT NULL DEFAULT 0,
    vials_lost    integer     NOT NULL DEFAULT 0,
    loss_reason   text,
    version       integer     NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    dispatched_at timestamptz,
    received_at   timestamptz
);
CREATE INDEX IF NOT EXISTS shipments_lot ON shipments (lot_number);

-- Every event that touches a lot (its own stream, its shipments, its stock
-- everywhere), in the order it was recorded.
CREATE TABLE IF NOT EXISTS lot_history (
    id          bigserial   PRIMARY KEY,
    lot_number  text        NOT NULL,
    stream_id   text        NOT NULL,
    version     integer     NOT NULL,
    event_id    uuid        NOT NULL UNIQUE,
    type        text        NOT NULL,
    data        jsonb       NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS lot_history_lot ON lot_history (lot_number, id);
