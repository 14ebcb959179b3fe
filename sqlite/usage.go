package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
)

// chunk is how many rows one INSERT of a Commit carries: fewer, larger
// statements take 10-15% less time per event than one per row
// (BenchmarkCommit). Each statement's journal (up to a page per row) is
// kept in memory (temp_store).
const chunk = 32

// inserter inserts rows into one table, chunk rows per statement and then
// the rest one by one, skipping conflicting rows. Both statements are
// prepared once on the write connection and reused by every Commit.
type inserter struct {
	columns    int
	one, chunk *sql.Stmt
}

func prepareInserter(ctx context.Context, db *sql.DB, table, columns, key string) (*inserter, error) {
	n := strings.Count(columns, ",") + 1
	row := "(" + strings.Repeat("?, ", n-1) + "?)"
	query := func(rows int) string {
		return `INSERT INTO ` + table + ` (` + columns + `) VALUES ` +
			strings.Repeat(row+", ", rows-1) + row + ` ON CONFLICT (` + key + `) DO NOTHING`
	}
	in := &inserter{columns: n}
	var err error
	if in.one, err = db.PrepareContext(ctx, query(1)); err != nil {
		return nil, fmt.Errorf("prepare insert into %s: %w", table, err)
	}
	if in.chunk, err = db.PrepareContext(ctx, query(chunk)); err != nil {
		in.one.Close()
		return nil, fmt.Errorf("prepare insert into %s: %w", table, err)
	}
	return in, nil
}

func (in *inserter) Close() error {
	if in == nil {
		return nil
	}
	return errors.Join(in.one.Close(), in.chunk.Close())
}

// insert inserts n rows in tx; row appends row i's values to args. After
// each statement it calls pause with the statement's time, or, when pause
// is nil, yields to other goroutines.
func (in *inserter) insert(ctx context.Context, tx *sql.Tx, n int, row func(args []any, i int) []any, pause func(worked time.Duration)) error {
	if n == 0 {
		return nil
	}
	one, many := tx.StmtContext(ctx, in.one), tx.StmtContext(ctx, in.chunk)
	// The statements run without ctx's cancellation: the driver would
	// start a goroutine per statement to watch it, a third of the CPU time
	// of a batch. ctx is checked between statements instead, and the
	// transaction still ends with it.
	stmtCtx := context.WithoutCancel(ctx)
	args := make([]any, 0, min(n, chunk)*in.columns)
	for i := 0; i < n; {
		if err := ctx.Err(); err != nil {
			return err
		}
		st, k := one, 1
		if n-i >= chunk {
			st, k = many, chunk
		}
		args = args[:0]
		for j := i; j < i+k; j++ {
			args = row(args, j)
		}
		start := time.Now()
		if _, err := st.ExecContext(stmtCtx, args...); err != nil {
			return err
		}
		i += k
		// The journal's ingestion inserts thousands of rows here on a
		// 2-core machine; yielding between statements lets the requests'
		// goroutines in, instead of at the scheduler's 10 ms preemption
		// (BenchmarkGroupCommit, 64 clients: p99 wait 6.3–8.5 ms against
		// 8.9–10.7 ms). The journal's pause also rests (journal.pause).
		if pause != nil {
			pause(time.Since(start))
		} else {
			runtime.Gosched()
		}
	}
	return nil
}

// Commit appends events and history items in one write transaction: the
// unit of a group commit, durable when Commit returns: appended to the
// ledger journal and synced (journal.go), or, without the journal, one
// write transaction with synchronous=FULL (one WAL fsync). Every read of
// the ledger sees it. An event whose request id is in the ledger already, or
// earlier in the batch, is skipped, as is a history item whose ID exists;
// neither is an error, and the first one stays. An event without a request
// id, org or time, or with a quantity or credits that is not a finite
// number (or such an item, or one without an ID), fails the whole batch
// before anything is written: it is the caller's bug.
func (s *Store) Commit(ctx context.Context, events []tollgate.UsageEvent, items []tollgate.HistoryItem) error {
	if len(events) == 0 && len(items) == 0 {
		return nil
	}
	for i := range events {
		if err := events[i].Validate(); err != nil {
			return fmt.Errorf("sqlite: commit: event %d: %w", i, err)
		}
	}
	for i := range items {
		if err := items[i].Validate(); err != nil {
			return fmt.Errorf("sqlite: commit: history item %d: %w", i, err)
		}
	}
	if s.journal != nil {
		if err := ctx.Err(); err != nil {
			return wrap("commit", err)
		}
		return wrap("commit", s.journal.append(events, items))
	}
	return wrap("commit", s.insertLedger(ctx, events, items, nil))
}

// insertLedger inserts events and items in one write transaction, durable
// when it returns, skipping those already present; pause is the
// inserter's (the journal's ingestion rests with it).
func (s *Store) insertLedger(ctx context.Context, events []tollgate.UsageEvent, items []tollgate.HistoryItem, pause func(worked time.Duration)) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		err := s.insertEvents.insert(ctx, tx, len(events), func(args []any, i int) []any {
			e := &events[i]
			period, _, _ := tollgate.Period(e.Time)
			return append(args, e.RequestID, e.OrgID, e.KeyID, e.Model, string(e.Unit),
				e.Quantity, e.Credits, e.FreeCredits, e.Time.UnixNano(), period)
		}, pause)
		if err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
		err = s.insertItems.insert(ctx, tx, len(items), func(args []any, i int) []any {
			h := &items[i]
			return append(args, h.ID, h.OrgID, h.KeyID, h.RequestID, h.Model, h.Feature,
				h.Status, string(h.Code), string(h.Unit), h.Quantity, h.Credits, h.Input, h.Output,
				h.CreatedAt.UnixNano())
		}, pause)
		if err != nil {
			return fmt.Errorf("insert history: %w", err)
		}
		return nil
	})
}

// flushLedger puts every batch committed so far into the tables, for a
// read of them.
func (s *Store) flushLedger(ctx context.Context, op string) error {
	if s.journal == nil {
		return nil
	}
	return wrap(op, s.journal.flush(ctx))
}

// UsageTotals sums the ledger per org × model × month (UTC) over the events
// at or after since, ordered by org, model and month. The zero since sums
// every event (free credits are a lifetime grant).
func (s *Store) UsageTotals(ctx context.Context, since time.Time) ([]tollgate.UsageTotal, error) {
	if err := s.flushLedger(ctx, "usage totals"); err != nil {
		return nil, err
	}
	rows, err := s.read.QueryContext(ctx, `
		SELECT org_id, model, period, SUM(quantity), SUM(credits), SUM(free_credits)
		FROM usage_events
		WHERE time >= ?
		GROUP BY org_id, model, period
		ORDER BY org_id, model, period`, nanos(since))
	if err != nil {
		return nil, wrap("usage totals", err)
	}
	defer rows.Close()
	var out []tollgate.UsageTotal
	for rows.Next() {
		var u tollgate.UsageTotal
		if err := rows.Scan(&u.OrgID, &u.Model, &u.Period, &u.Units, &u.Credits, &u.FreeCredits); err != nil {
			return nil, wrap("usage totals", err)
		}
		out = append(out, u)
	}
	return out, wrap("usage totals", rows.Err())
}

// dayOf is the UTC date "2006-01-02" of a unix-nanosecond time column:
// floor division, so times before 1970 fall on the right day.
const dayOf = `date(time / 1000000000 - (time % 1000000000 < 0), 'unixepoch')`

// Usage sums the org's events with q.From <= time < q.To (a zero To: no
// upper bound), grouped by
//   - "day": one row per UTC day and unit (quantities of different units
//     are never added up), Model empty, ordered by day then unit;
//   - "model": one row per model and unit (a model whose meter changed
//     has a row per unit), Day empty, ordered by model then unit.
//
// validation_error for another GroupBy or a To before From. An unknown org
// has no usage: no rows, not not_found.
func (s *Store) Usage(ctx context.Context, q tollgate.UsageQuery) ([]tollgate.UsageRow, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	if err := s.flushLedger(ctx, "usage"); err != nil {
		return nil, err
	}
	var query string
	switch q.GroupBy {
	case "day":
		query = `SELECT ` + dayOf + ` AS day, '', unit, COUNT(*), SUM(quantity), SUM(credits)
			FROM usage_events
			WHERE org_id = ? AND time >= ? AND time < ?
			GROUP BY day, unit
			ORDER BY day, unit`
	case "model":
		query = `SELECT '', model, unit, COUNT(*), SUM(quantity), SUM(credits)
			FROM usage_events
			WHERE org_id = ? AND time >= ? AND time < ?
			GROUP BY model, unit
			ORDER BY model, unit`
	}
	to := int64(math.MaxInt64)
	if !q.To.IsZero() {
		to = nanos(q.To)
	}
	rows, err := s.read.QueryContext(ctx, query, q.OrgID, nanos(q.From), to)
	if err != nil {
		return nil, wrap("usage", err)
	}
	defer rows.Close()
	var out []tollgate.UsageRow
	for rows.Next() {
		var r tollgate.UsageRow
		var unit string
		if err := rows.Scan(&r.Day, &r.Model, &unit, &r.Requests, &r.Quantity, &r.Credits); err != nil {
			return nil, wrap("usage", err)
		}
		r.Unit = tollgate.Unit(unit)
		out = append(out, r)
	}
	return out, wrap("usage", rows.Err())
}
