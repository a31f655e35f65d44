-- The projections service's own schema (settings.db_schema, `projections`): which
-- read model answers. Each model is a schema of its own (model.sql); exactly one
-- is active. A rebuild adds a `building` one and swaps it in (models.py).

CREATE TABLE IF NOT EXISTS read_models (
    schema_name  text        PRIMARY KEY,
    status       text        NOT NULL
                             CHECK (status IN ('building', 'active', 'retired', 'dropped', 'failed')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz,
    retired_at   timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS read_models_one_active ON read_models ((true))
    WHERE status = 'active';
