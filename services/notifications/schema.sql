-- Notifications' own tables (the event store's are applied before this file).
-- Unqualified names: applied with search_path set to the service's schema; idempotent.

-- People as registration told us: the language they want and their personal data still
-- sealed with their data key; that key comes wrapped to a key pair made for the citizen
-- alone (`holder_keys`, libs/immunreg/holderkeys.sql). Contacts are unsealed only while a
-- message is being sent, never stored in clear. Erasure deletes the data and the key
-- pair and keeps the fact.
CREATE TABLE IF NOT EXISTS citizens (
    citizen_id   text        PRIMARY KEY,
    language     text,
    personal     jsonb,
    erased       boolean     NOT NULL DEFAULT false,
    opted_out    boolean     NOT NULL DEFAULT false,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- Keys wrapped for one long-lived RSA key, from before holder keys: with that RSA key
-- they would open an erased citizen's data from Kafka's copy of each grant.
ALTER TABLE citizens DROP COLUMN IF EXISTS wrapped_key;

-- Sites, appointments and doses, as far as messages speak of them.
CREATE TABLE IF NOT EXISTS sites (
    site_id       text PRIMARY KEY,
    name          text NOT NULL,
    address       text NOT NULL,
    opening_hours text NOT NULL
);

CREATE TABLE IF NOT EXISTS appointments (
    appointment_id text PRIMARY KEY,
    citizen_id     text NOT NULL,
    site_id        text NOT NULL,
    day            date NOT NULL,
    status         text NOT NULL,
    CONSTRAINT appointments_status_check
        CHECK (status IN ('booked', 'cancelled', 'missed', 'done'))
);
-- A table made before 'missed' keeps its old CHECK (CREATE ... IF NOT EXISTS leaves an
-- existing table alone): widen it, once; an up-to-date one is left untouched.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_constraint
        WHERE conrelid = 'appointments'::regclass AND conname = 'appointments_status_check'
          AND pg_get_constraintdef(oid) LIKE '%''missed''%'
    ) THEN
        ALTER TABLE appointments
            DROP CONSTRAINT IF EXISTS appointments_status_check,
            ADD CONSTRAINT appointments_status_check
                CHECK (status IN ('booked', 'cancelled', 'missed', 'done'));
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS doses (
    dose_id      text PRIMARY KEY,
    citizen_id   text NOT NULL,
    lot_number   text NOT NULL,
    product_code text NOT NULL
);
CREATE INDEX IF NOT EXISTS doses_lot ON doses (lot_number);

CREATE TABLE IF NOT EXISTS recalled_lots (
    lot_number text PRIMARY KEY
);

-- Every message an event asked for, from the consumer's transaction on: its id (the
-- e-mail's Message-ID and the SMS gateway's Idempotency-Key) is derived from the event,
-- so a redelivered event adds no second row. The facts name no contact and no name.
CREATE TABLE IF NOT EXISTS messages (
    message_id     text        PRIMARY KEY,
    citizen_id     text        NOT NULL,
    kind           text        NOT NULL,
    facts          jsonb       NOT NULL,
    appointment_id text,
    status         text        NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'sending', 'sent', 'dropped', 'dead_lettered')),
    due_at         timestamptz NOT NULL,
    attempts       integer     NOT NULL DEFAULT 0,
    channel        text,
    last_error     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (due_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS messages_citizen ON messages (citizen_id);
CREATE INDEX IF NOT EXISTS messages_appointment ON messages (appointment_id)
    WHERE appointment_id IS NOT NULL;
