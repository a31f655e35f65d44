-- Certificates' own tables (the event store's are applied before this file).
-- Unqualified names: applied with search_path set to the service's schema; idempotent.

-- Citizens as registration told us: the birth date, and the personal data still
-- sealed with the citizen's key (names are unsealed only to sign a certificate).
-- Erasure keeps only the id and the fact (so a late dose does not wait for names).
CREATE TABLE IF NOT EXISTS citizens (
    citizen_id  text        PRIMARY KEY,
    birth_date  date,
    personal    jsonb,
    erased      boolean     NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Each citizen's data key comes wrapped to a key pair made for that citizen alone
-- (`holder_keys`, libs/immunreg/holderkeys.sql). The table of keys wrapped for one
-- long-lived RSA key that came before it goes: with that RSA key, they would open an
-- erased citizen's data from Kafka's copy of each grant.
DROP TABLE IF EXISTS citizen_keys;

-- The current record of every dose administration told us about, and its lot.
CREATE TABLE IF NOT EXISTS doses (
    dose_id          text        PRIMARY KEY,
    citizen_id       text        NOT NULL,
    product_code     text        NOT NULL,
    lot_number       text        NOT NULL,
    dose_number      integer     NOT NULL,
    series_length    integer     NOT NULL,
    administered_at  timestamptz NOT NULL,
    voided           boolean     NOT NULL DEFAULT false,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS doses_citizen ON doses (citizen_id);
CREATE INDEX IF NOT EXISTS doses_lot ON doses (lot_number);

-- Lots inventory recalled (a recall may arrive before or after the doses from it).
CREATE TABLE IF NOT EXISTS recalled_lots (
    lot_number   text        PRIMARY KEY,
    reason       text        NOT NULL,
    recalled_at  timestamptz NOT NULL
);

-- Every certificate issued: the signed HC1 string (so fetching is a read), its
-- status, and the SHA-256 of its UVCI (the revocation list's key). `hc1` is
-- NULL once the citizen is erased (it carries names).
CREATE TABLE IF NOT EXISTS certificates (
    uvci               text        PRIMARY KEY,
    seq                bigint      GENERATED ALWAYS AS IDENTITY,  -- order of issue
    uvci_sha256        bytea       NOT NULL UNIQUE,
    dose_id            text        NOT NULL,
    citizen_id         text        NOT NULL,
    product_code       text        NOT NULL,
    dose_number        integer     NOT NULL,
    total_doses        integer     NOT NULL,
    vaccination_date   date        NOT NULL,
    issued_at          timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    key_id             text        NOT NULL,
    supersedes         text,
    status             text        NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'revoked')),
    revocation_reason  text,
    superseded_by      text,
    revoked_at         timestamptz,
    hc1                text
);
CREATE INDEX IF NOT EXISTS certificates_citizen ON certificates (citizen_id, seq);
CREATE INDEX IF NOT EXISTS certificates_dose ON certificates (dose_id);
CREATE INDEX IF NOT EXISTS certificates_revoked
    ON certificates (revoked_at, uvci_sha256) WHERE status = 'revoked';

-- The QR code of each certificate, rendered as it is issued (handlers.py; images.py for
-- rows from before) so a download is a read.
-- NULL until rendered, and NULL again once the citizen is erased (the QR carries names).
ALTER TABLE certificates ADD COLUMN IF NOT EXISTS qr_png bytea;
ALTER TABLE certificates ADD COLUMN IF NOT EXISTS qr_svg bytea;
-- What the background renderer has left to do, in order of issue.
CREATE INDEX IF NOT EXISTS certificates_unrendered
    ON certificates (seq) WHERE hc1 IS NOT NULL AND qr_png IS NULL;

-- Every document signer (DSC) this service has signed with: the public half of the
-- trust list. Rows are never deleted, so a rotated-out key still verifies what it signed.
CREATE TABLE IF NOT EXISTS signing_keys (
    kid            bytea       PRIMARY KEY,
    certificate    bytea       NOT NULL,
    not_before     timestamptz NOT NULL,
    not_after      timestamptz NOT NULL,
    first_used_at  timestamptz NOT NULL DEFAULT now()
);

-- Revoked document signers (ours or foreign), as the SigningKey streams record them:
-- a revoked DSC stays on the trust list, marked, and verifies nothing.
CREATE TABLE IF NOT EXISTS signer_revocations (
    kid         bytea       PRIMARY KEY,
    reason      text        NOT NULL,
    revoked_at  timestamptz NOT NULL
);
