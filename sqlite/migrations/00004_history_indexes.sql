-- +goose Up
-- Every request writes a history item inside the ledger's group commit,
-- so each history index is paid on the request path: these two cost a
-- third of the commit's throughput (BenchmarkGroupCommit). Listing by
-- feature walks history_org_created and filters; pruning walks it per org.
DROP INDEX history_org_feature_created;
DROP INDEX history_created;

-- +goose Down
CREATE INDEX history_org_feature_created ON history (org_id, feature, created_at DESC, id DESC);
CREATE INDEX history_created ON history (created_at);
