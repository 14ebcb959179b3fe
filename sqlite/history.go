package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/tollgate/tollgate"
)

// pruneBatch is how many history items PruneHistory deletes per
// transaction, so that group commits are never held up for long behind it.
const pruneBatch = 1000

func errHistoryNotFound(id string) error {
	return tollgate.Errorf(tollgate.CodeNotFound, "History item %q not found.", id)
}

const historyColumns = `id, org_id, key_id, request_id, model, feature, status, code, unit,
	quantity, credits, input, output, created_at`

func scanHistoryItem(row interface{ Scan(...any) error }) (*tollgate.HistoryItem, error) {
	var h tollgate.HistoryItem
	var code, unit string
	var created sql.NullInt64
	if err := row.Scan(&h.ID, &h.OrgID, &h.KeyID, &h.RequestID, &h.Model, &h.Feature, &h.Status,
		&code, &unit, &h.Quantity, &h.Credits, &h.Input, &h.Output, &created); err != nil {
		return nil, err
	}
	h.Code, h.Unit = tollgate.Code(code), tollgate.Unit(unit)
	h.CreatedAt = decodeTime(created)
	return &h, nil
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
	if err := s.flushLedger(ctx, "list history"); err != nil {
		return nil, err
	}
	query := `SELECT ` + historyColumns + ` FROM history WHERE org_id = ?`
	args := []any{f.OrgID}
	if f.Feature != "" {
		query += ` AND feature = ?`
		args = append(args, f.Feature)
	}
	query += ` ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`
	args = append(args, limit, f.Offset)

	rows, err := s.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, wrap("list history", err)
	}
	defer rows.Close()
	var out []tollgate.HistoryItem
	for rows.Next() {
		h, err := scanHistoryItem(rows)
		if err != nil {
			return nil, wrap("list history", err)
		}
		out = append(out, *h)
	}
	return out, wrap("list history", rows.Err())
}

// HistoryItem returns the org's item id; not_found when there is none or
// it is another org's (the same answer: nothing about it is revealed).
func (s *Store) HistoryItem(ctx context.Context, orgID, id string) (*tollgate.HistoryItem, error) {
	if err := s.flushLedger(ctx, "find history item"); err != nil {
		return nil, err
	}
	h, err := scanHistoryItem(s.read.QueryRowContext(ctx,
		`SELECT `+historyColumns+` FROM history WHERE id = ? AND org_id = ?`, id, orgID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errHistoryNotFound(id)
	}
	if err != nil {
		return nil, wrap("find history item", err)
	}
	return h, nil
}

// DeleteHistory removes the org's item id; not_found as in HistoryItem
// (another org's item is left alone).
func (s *Store) DeleteHistory(ctx context.Context, orgID, id string) error {
	if err := s.flushLedger(ctx, "delete history item"); err != nil {
		return err
	}
	res, err := s.write.ExecContext(ctx, `DELETE FROM history WHERE id = ? AND org_id = ?`, id, orgID)
	if err != nil {
		return wrap("delete history item", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return wrap("delete history item", err)
	} else if n == 0 {
		return errHistoryNotFound(id)
	}
	return nil
}

// PruneHistory deletes every org's items created before before, pruneBatch
// per transaction, and returns how many it deleted (also when it fails
// part way).
func (s *Store) PruneHistory(ctx context.Context, before time.Time) (int, error) {
	if err := s.flushLedger(ctx, "prune history"); err != nil {
		return 0, err
	}
	// Each org's items older than before, through history_org_created
	// (there is no index on created_at alone: it would be paid by every
	// request's commit). The orgs are found by a loose scan of the same
	// index: one seek per org.
	rows, err := s.read.QueryContext(ctx, `
		WITH RECURSIVE o(id) AS (
			SELECT MIN(org_id) FROM history
			UNION ALL
			SELECT (SELECT MIN(org_id) FROM history WHERE org_id > o.id) FROM o WHERE o.id IS NOT NULL)
		SELECT id FROM o WHERE id IS NOT NULL`)
	if err != nil {
		return 0, wrap("prune history", err)
	}
	var orgs []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, wrap("prune history", err)
		}
		orgs = append(orgs, id)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, wrap("prune history", err)
	}
	b := nanos(before)
	total := 0
	for _, org := range orgs {
		for {
			res, err := s.write.ExecContext(ctx, `
				DELETE FROM history WHERE rowid IN (
					SELECT rowid FROM history WHERE org_id = ? AND created_at < ? LIMIT ?)`, org, b, pruneBatch)
			if err != nil {
				return total, wrap("prune history", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return total, wrap("prune history", err)
			}
			total += int(n)
			if n < pruneBatch {
				break
			}
		}
	}
	return total, nil
}
