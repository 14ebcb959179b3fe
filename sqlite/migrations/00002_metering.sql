-- Metering: plan and org billing settings, the usage ledger and history.
--
-- Neither ledger table references orgs: a group commit carries hundreds of
-- requests' events, and one that names an unknown org must not fail the
-- others (the ledger records what was charged, whatever happened since).

-- +goose Up
ALTER TABLE plans ADD COLUMN billing_required   INTEGER NOT NULL DEFAULT 0 CHECK (billing_required IN (0, 1));
ALTER TABLE plans ADD COLUMN free_credits       REAL    NOT NULL DEFAULT 0;
ALTER TABLE plans ADD COLUMN monthly_credit_cap REAL    NOT NULL DEFAULT 0;
ALTER TABLE plans ADD COLUMN monthly_limits     TEXT    NOT NULL DEFAULT '{}'; -- {"model": units}

ALTER TABLE orgs ADD COLUMN billing_active       INTEGER NOT NULL DEFAULT 0 CHECK (billing_active IN (0, 1));
ALTER TABLE orgs ADD COLUMN monthly_credit_limit REAL    NOT NULL DEFAULT 0;
ALTER TABLE orgs ADD COLUMN monthly_limits       TEXT    NOT NULL DEFAULT '{}'; -- {"model": units}

-- The append-only ledger: one row per charged request. The primary key is
-- what keeps a request from being billed twice.
CREATE TABLE usage_events (
    request_id   TEXT    PRIMARY KEY,
    org_id       TEXT    NOT NULL,
    key_id       TEXT    NOT NULL DEFAULT '',
    model        TEXT    NOT NULL,
    unit         TEXT    NOT NULL,
    quantity     REAL    NOT NULL,
    credits      REAL    NOT NULL,
    free_credits REAL    NOT NULL DEFAULT 0, -- the part of credits drawn from the free grant
    time         INTEGER NOT NULL,
    period       TEXT    NOT NULL            -- the UTC calendar month of time, "2006-01"
) STRICT;

CREATE INDEX usage_events_org_time ON usage_events (org_id, time);

-- Every generation, successful or not, with bounded input/output summaries.
CREATE TABLE history (
    id         TEXT    PRIMARY KEY,
    org_id     TEXT    NOT NULL,
    key_id     TEXT    NOT NULL DEFAULT '',
    request_id TEXT    NOT NULL DEFAULT '',
    model      TEXT    NOT NULL DEFAULT '',
    feature    TEXT    NOT NULL DEFAULT '',
    status     INTEGER NOT NULL DEFAULT 0,
    code       TEXT    NOT NULL DEFAULT '',
    unit       TEXT    NOT NULL DEFAULT '',
    quantity   REAL    NOT NULL DEFAULT 0,
    credits    REAL    NOT NULL DEFAULT 0,
    input      TEXT    NOT NULL DEFAULT '',
    output     TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
) STRICT;

-- Both follow the listing's order (created_at DESC, id DESC) to the end, so
-- a page is read straight off the index without a sort.
CREATE INDEX history_org_created ON history (org_id, created_at DESC, id DESC);
CREATE INDEX history_org_feature_created ON history (org_id, feature, created_at DESC, id DESC);
-- Retention deletes by age across orgs.
CREATE INDEX history_created ON history (created_at);

-- +goose Down
DROP TABLE history;
DROP TABLE usage_events;
ALTER TABLE orgs DROP COLUMN monthly_limits;
ALTER TABLE orgs DROP COLUMN monthly_credit_limit;
ALTER TABLE orgs DROP COLUMN billing_active;
ALTER TABLE plans DROP COLUMN monthly_limits;
ALTER TABLE plans DROP COLUMN monthly_credit_cap;
ALTER TABLE plans DROP COLUMN free_credits;
ALTER TABLE plans DROP COLUMN billing_required;
