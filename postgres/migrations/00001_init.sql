-- Orgs, plans, model grants, concurrency overrides, API keys, the usage
-- ledger and history: the sqlite store's schema (both its migrations) in
-- PostgreSQL's types.
--
-- Times are UTC unix nanoseconds (BIGINT), as in sqlite: timestamptz keeps
-- only microseconds, and the store round-trips nanoseconds. NULL is Go's
-- zero time. Lists are text[], maps jsonb.
--
-- Identifiers, names, models and units are COLLATE "C": they sort and
-- compare byte by byte, like sqlite and Go, whatever the database's locale.

-- +goose Up
CREATE TABLE plans (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    rpm                BIGINT           NOT NULL DEFAULT 0,
    concurrency        BIGINT           NOT NULL DEFAULT 0,
    model_concurrency  JSONB            NOT NULL DEFAULT '{}', -- {"model": limit}
    features           TEXT[]           NOT NULL DEFAULT '{}', -- {tts, stt}
    billing_required   BOOLEAN          NOT NULL DEFAULT false,
    free_credits       DOUBLE PRECISION NOT NULL DEFAULT 0,
    monthly_credit_cap DOUBLE PRECISION NOT NULL DEFAULT 0,
    monthly_limits     JSONB            NOT NULL DEFAULT '{}'  -- {"model": units}
);

CREATE TABLE orgs (
    id                   TEXT COLLATE "C" PRIMARY KEY,
    name                 TEXT             NOT NULL DEFAULT '',
    plan_id              TEXT COLLATE "C" NOT NULL REFERENCES plans (id),
    created_at           BIGINT           NOT NULL,
    billing_active       BOOLEAN          NOT NULL DEFAULT false,
    monthly_credit_limit DOUBLE PRECISION NOT NULL DEFAULT 0,
    monthly_limits       JSONB            NOT NULL DEFAULT '{}' -- {"model": units}
);

CREATE INDEX orgs_plan_id ON orgs (plan_id);

CREATE TABLE grants (
    org_id TEXT COLLATE "C" NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    model  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (org_id, model)
);

CREATE TABLE concurrency_overrides (
    org_id       TEXT COLLATE "C" NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    model        TEXT COLLATE "C" NOT NULL,
    max_inflight BIGINT           NOT NULL CHECK (max_inflight >= 0),
    PRIMARY KEY (org_id, model)
);

CREATE TABLE keys (
    id          TEXT COLLATE "C" PRIMARY KEY,
    -- Insertion order, which breaks ties in created_at (sqlite's rowid).
    seq         BIGINT           GENERATED ALWAYS AS IDENTITY,
    org_id      TEXT COLLATE "C" NOT NULL REFERENCES orgs (id),
    name        TEXT COLLATE "C" NOT NULL,
    prefix      TEXT             NOT NULL DEFAULT '',
    hash        BYTEA            NOT NULL,
    models      TEXT[]           NOT NULL DEFAULT '{}',
    rpm         BIGINT           NOT NULL DEFAULT 0,
    scopes      TEXT[]           NOT NULL DEFAULT '{}',
    expires_at  BIGINT,
    revoked_at  BIGINT,
    created_at  BIGINT           NOT NULL,
    -- The key that replaced this one on rotation. Deferred so a rotation can
    -- point the old key at its successor before inserting it.
    replaced_by TEXT COLLATE "C" REFERENCES keys (id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT keys_hash UNIQUE (hash)
);

-- An active name is unique per org; revoked and rotated-out keys free it.
-- The store tells this conflict from the others by the index's name.
CREATE UNIQUE INDEX keys_org_active_name ON keys (org_id, name)
    WHERE revoked_at IS NULL AND replaced_by IS NULL;

CREATE INDEX keys_org_created ON keys (org_id, created_at, seq);

-- The append-only ledger: one row per charged request. The primary key is
-- what keeps a request from being billed twice. Neither ledger table
-- references orgs: a group commit carries hundreds of requests' events, and
-- one that names an unknown org must not fail the others (the ledger
-- records what was charged, whatever happened since).
CREATE TABLE usage_events (
    request_id   TEXT COLLATE "C" PRIMARY KEY,
    org_id       TEXT COLLATE "C" NOT NULL,
    key_id       TEXT COLLATE "C" NOT NULL DEFAULT '',
    model        TEXT COLLATE "C" NOT NULL,
    unit         TEXT COLLATE "C" NOT NULL,
    quantity     DOUBLE PRECISION NOT NULL,
    credits      DOUBLE PRECISION NOT NULL,
    free_credits DOUBLE PRECISION NOT NULL DEFAULT 0, -- the part of credits drawn from the free grant
    time         BIGINT           NOT NULL,
    period       TEXT COLLATE "C" NOT NULL            -- the UTC calendar month of time, "2006-01"
);

CREATE INDEX usage_events_org_time ON usage_events (org_id, time);

-- Every generation, successful or not, with bounded input/output summaries.
-- The summaries are BYTEA: they carry client text, which may hold NUL or
-- invalid UTF-8 that a TEXT column refuses, and one such item must not fail
-- the group commit it is part of. They round-trip byte for byte.
CREATE TABLE history (
    id         TEXT COLLATE "C" PRIMARY KEY,
    org_id     TEXT COLLATE "C" NOT NULL,
    key_id     TEXT COLLATE "C" NOT NULL DEFAULT '',
    request_id TEXT COLLATE "C" NOT NULL DEFAULT '',
    model      TEXT COLLATE "C" NOT NULL DEFAULT '',
    feature    TEXT COLLATE "C" NOT NULL DEFAULT '',
    status     BIGINT           NOT NULL DEFAULT 0,
    code       TEXT COLLATE "C" NOT NULL DEFAULT '',
    unit       TEXT COLLATE "C" NOT NULL DEFAULT '',
    quantity   DOUBLE PRECISION NOT NULL DEFAULT 0,
    credits    DOUBLE PRECISION NOT NULL DEFAULT 0,
    input      BYTEA            NOT NULL DEFAULT '',
    output     BYTEA            NOT NULL DEFAULT '',
    created_at BIGINT           NOT NULL
);

-- Both follow the listing's order (created_at DESC, id DESC) to the end, so
-- a page is read straight off the index without a sort.
CREATE INDEX history_org_created ON history (org_id, created_at DESC, id DESC);
CREATE INDEX history_org_feature_created ON history (org_id, feature, created_at DESC, id DESC);
-- Retention deletes by age across orgs.
CREATE INDEX history_created ON history (created_at);

-- +goose Down
DROP TABLE history;
DROP TABLE usage_events;
DROP TABLE keys;
DROP TABLE concurrency_overrides;
DROP TABLE grants;
DROP TABLE orgs;
DROP TABLE plans;
