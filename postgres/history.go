package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate"
)

// pruneBatch is how many history items PruneHistory deletes per
// statement (and transaction), so that no transaction runs long.
const pruneBatch = 1000

func errHistoryNotFound(id string) error {
	return tollgate.Errorf(tollgate.CodeNotFound, "History item %q not found.", id)
}

const historyColumns = `id, org_id, key_id, request_id, model, feature, status, code, unit,
	quantity, credits, input, output, created_at`

func scanHistoryItem(row pgx.Row) (tollgate.HistoryItem, error) {
	var h tollgate.HistoryItem
	var code, unit string
	var input, output []byte
	var created *int64
	if err := row.Scan(&h.ID, &h.OrgID, &h.KeyID, &h.RequestID, &h.Model, &h.Feature, &h.Status,
		&code, &unit, &h.Quantity, &h.Credits, &input, &output, &created); err != nil {
		return h, err
	}
	h.Code, h.Unit = tollgate.Code(code), tollgate.Unit(unit)
	h.Input, h.Output = string(input), string(output)
	h.CreatedAt = decodeTime(created)
	return h, nil
}

// History lists the org's items newest first (created_at, then id,
// descending), only f.Feature's when set. A zero Limit means 50, and more
// than 1000 means 1000; a negative Limit or Offset is a validation_error.
// An unknown org has no history: no items, not not_found.
func (s *Store) History(ctx context.Context, f tollgate.HistoryFilter) ([]tollgate.HistoryItem, error) {
	limit, err := f.PageSize()
	if err != nil {
		return nil, err
	}
	query := `SELECT ` + historyColumns + ` FROM history WHERE org_id = $1`
	args := []any{f.OrgID}
	if f.Feature != "" {
		query += ` AND feature = $4`
		args = append(args, limit, f.Offset, f.Feature)
	} else {
		args = append(args, limit, f.Offset)
	}
	query += ` ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3`

	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, wrap("list history", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (tollgate.HistoryItem, error) {
		return scanHistoryItem(row)
	})
	return emptyNil(out), wrap("list history", err)
}

// HistoryItem returns the org's item id; not_found when there is none or
// it is another org's (the same answer: nothing about it is revealed).
func (s *Store) HistoryItem(ctx context.Context, orgID, id string) (*tollgate.HistoryItem, error) {
	h, err := scanHistoryItem(s.pool.QueryRow(ctx,
		`SELECT `+historyColumns+` FROM history WHERE id = $1 AND org_id = $2`, id, orgID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errHistoryNotFound(id)
	}
	if err != nil {
		return nil, wrap("find history item", err)
	}
	return &h, nil
}

// DeleteHistory removes the org's item id; not_found as in HistoryItem
// (another org's item is left alone).
func (s *Store) DeleteHistory(ctx context.Context, orgID, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM history WHERE id = $1 AND org_id = $2`, id, orgID)
	if err != nil {
		return wrap("delete history item", err)
	}
	if tag.RowsAffected() == 0 {
		return errHistoryNotFound(id)
	}
	return nil
}

// PruneHistory deletes every org's items created before before, pruneBatch
// per statement, and returns how many it deleted (also when it fails part
// way). Rows another transaction holds (a replica pruning at the same
// time) are skipped rather than waited for: that one deletes them.
func (s *Store) PruneHistory(ctx context.Context, before time.Time) (int, error) {
	b := nanos(before)
	total := 0
	for {
		tag, err := s.pool.Exec(ctx, `
			DELETE FROM history WHERE id IN (
				SELECT id FROM history WHERE created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`, b, pruneBatch)
		if err != nil {
			return total, wrap("prune history", err)
		}
		n := int(tag.RowsAffected())
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}
