-- Background runs (immunreg.runs): work a request accepted with 202 and a task does.
-- Applied to every service's schema by the app factory; names stay unqualified.
CREATE TABLE IF NOT EXISTS background_runs (
    run_id       text        PRIMARY KEY,
    kind         text        NOT NULL,
    status       text        NOT NULL
                 CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    params       jsonb       NOT NULL,
    progress     jsonb       NOT NULL DEFAULT '{}',
    result       jsonb,
    error        text,
    requested_by text,
    requested_at timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz
);
CREATE INDEX IF NOT EXISTS background_runs_open
    ON background_runs (kind, requested_at) WHERE status IN ('queued', 'running');
