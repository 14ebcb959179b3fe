-- Orgs, plans, model grants, concurrency overrides and API keys.
--
-- Times are UTC unix nanoseconds (INTEGER); NULL is Go's zero time.
-- Lists and maps are JSON text.

-- +goose Up
CREATE TABLE plans (
    id                TEXT    PRIMARY KEY,
    rpm               INTEGER NOT NULL DEFAULT 0,
    concurrency       INTEGER NOT NULL DEFAULT 0,
    model_concurrency TEXT    NOT NULL DEFAULT '{}', -- {"model": limit}
    features          TEXT    NOT NULL DEFAULT '[]'  -- ["tts", "stt"]
) STRICT;

CREATE TABLE orgs (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL DEFAULT '',
    plan_id    TEXT    NOT NULL REFERENCES plans (id),
    created_at INTEGER NOT NULL
) STRICT;

CREATE INDEX orgs_plan_id ON orgs (plan_id);

CREATE TABLE grants (
    org_id TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    model  TEXT NOT NULL,
    PRIMARY KEY (org_id, model)
) STRICT, WITHOUT ROWID;

CREATE TABLE concurrency_overrides (
    org_id       TEXT    NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    model        TEXT    NOT NULL,
    max_inflight INTEGER NOT NULL CHECK (max_inflight >= 0),
    PRIMARY KEY (org_id, model)
) STRICT, WITHOUT ROWID;

CREATE TABLE keys (
    id          TEXT    PRIMARY KEY,
    org_id      TEXT    NOT NULL REFERENCES orgs (id),
    name        TEXT    NOT NULL,
    prefix      TEXT    NOT NULL DEFAULT '',
    hash        BLOB    NOT NULL UNIQUE,
    models      TEXT    NOT NULL DEFAULT '[]',
    rpm         INTEGER NOT NULL DEFAULT 0,
    scopes      TEXT    NOT NULL DEFAULT '[]',
    expires_at  INTEGER,
    revoked_at  INTEGER,
    created_at  INTEGER NOT NULL,
    -- The key that replaced this one on rotation. Deferred so a rotation can
    -- point the old key at its successor before inserting it.
    replaced_by TEXT    REFERENCES keys (id) DEFERRABLE INITIALLY DEFERRED
) STRICT;

-- An active name is unique per org; revoked and rotated-out keys free it.
CREATE UNIQUE INDEX keys_org_active_name ON keys (org_id, name)
    WHERE revoked_at IS NULL AND replaced_by IS NULL;

CREATE INDEX keys_org_created ON keys (org_id, created_at);

-- +goose Down
DROP TABLE keys;
DROP TABLE concurrency_overrides;
DROP TABLE grants;
DROP TABLE orgs;
DROP TABLE plans;
