package postgres

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate"
)

// commitQuery inserts a Commit's events and history items, each table's
// rows from one array per column, in one statement (the events' INSERT is
// a data-modifying WITH): one round trip and one transaction whatever the
// batch size. Rows whose key is stored already are skipped.
const commitQuery = `
	WITH events AS (
		INSERT INTO usage_events (request_id, org_id, key_id, model, unit,
			quantity, credits, free_credits, time, period)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
			$6::float8[], $7::float8[], $8::float8[], $9::int8[], $10::text[])
		ON CONFLICT (request_id) DO NOTHING
	)
	INSERT INTO history (id, org_id, key_id, request_id, model, feature, status, code, unit,
		quantity, credits, input, output, created_at)
	SELECT * FROM unnest($11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[],
		$17::int8[], $18::text[], $19::text[], $20::float8[], $21::float8[],
		$22::bytea[], $23::bytea[], $24::int8[])
	ON CONFLICT (id) DO NOTHING`

// Commit appends events and history items in one statement: the unit of a
// group commit, durable when Commit returns (as far as the server's
// synchronous_commit goes: by default, flushed to its WAL). An event whose
// request id is in the ledger already, or earlier in the batch, is skipped,
// as is a history item whose ID exists; neither is an error, and the first
// one stays. An event without a request id, org or time, or with a
// quantity or credits that is not a finite number (or such an item, or one
// without an ID), fails the whole batch before anything is written: it is
// the caller's bug.
//
// Rows go in sorted by key, so that concurrent Commits (of several
// replicas, say) sharing ids take their row locks in the same order and
// never deadlock.
func (s *Store) Commit(ctx context.Context, events []tollgate.UsageEvent, items []tollgate.HistoryItem) error {
	if len(events) == 0 && len(items) == 0 {
		return nil
	}
	for i := range events {
		if err := events[i].Validate(); err != nil {
			return fmt.Errorf("postgres: commit: event %d: %w", i, err)
		}
	}
	for i := range items {
		if err := items[i].Validate(); err != nil {
			return fmt.Errorf("postgres: commit: history item %d: %w", i, err)
		}
	}
	var ev eventColumns
	for _, e := range firstByKey(events, func(e *tollgate.UsageEvent) string { return e.RequestID }) {
		ev.add(e)
	}
	var hc itemColumns
	for _, h := range firstByKey(items, func(h *tollgate.HistoryItem) string { return h.ID }) {
		hc.add(h)
	}
	_, err := s.pool.Exec(ctx, commitQuery, append(ev.args(), hc.args()...)...)
	return wrap("commit", err)
}

// eventColumns are events as commitQuery's arrays, $1 to $10.
type eventColumns struct {
	requestID, orgID, keyID, model, unit []string
	quantity, credits, freeCredits       []float64
	time                                 []int64
	period                               []string
}

func (c *eventColumns) add(e *tollgate.UsageEvent) {
	period, _, _ := tollgate.Period(e.Time)
	c.requestID = append(c.requestID, e.RequestID)
	c.orgID = append(c.orgID, e.OrgID)
	c.keyID = append(c.keyID, e.KeyID)
	c.model = append(c.model, e.Model)
	c.unit = append(c.unit, string(e.Unit))
	c.quantity = append(c.quantity, e.Quantity)
	c.credits = append(c.credits, e.Credits)
	c.freeCredits = append(c.freeCredits, e.FreeCredits)
	c.time = append(c.time, e.Time.UnixNano())
	c.period = append(c.period, period)
}

// args returns the arrays. With no events they are nil, NULL in SQL, which
// unnest turns into no rows.
func (c *eventColumns) args() []any {
	return []any{c.requestID, c.orgID, c.keyID, c.model, c.unit,
		c.quantity, c.credits, c.freeCredits, c.time, c.period}
}

// itemColumns are history items as commitQuery's arrays, $11 to $24.
type itemColumns struct {
	id, orgID, keyID, requestID, model, feature []string
	status                                      []int64
	code, unit                                  []string
	quantity, credits                           []float64
	input, output                               [][]byte
	createdAt                                   []int64
}

func (c *itemColumns) add(h *tollgate.HistoryItem) {
	c.id = append(c.id, h.ID)
	c.orgID = append(c.orgID, h.OrgID)
	c.keyID = append(c.keyID, h.KeyID)
	c.requestID = append(c.requestID, h.RequestID)
	c.model = append(c.model, h.Model)
	c.feature = append(c.feature, h.Feature)
	c.status = append(c.status, int64(h.Status))
	c.code = append(c.code, string(h.Code))
	c.unit = append(c.unit, string(h.Unit))
	c.quantity = append(c.quantity, h.Quantity)
	c.credits = append(c.credits, h.Credits)
	c.input = append(c.input, []byte(h.Input))
	c.output = append(c.output, []byte(h.Output))
	c.createdAt = append(c.createdAt, h.CreatedAt.UnixNano())
}

// args returns the arrays (nil, NULL, with no items).
func (c *itemColumns) args() []any {
	return []any{c.id, c.orgID, c.keyID, c.requestID, c.model, c.feature,
		c.status, c.code, c.unit, c.quantity, c.credits, c.input, c.output, c.createdAt}
}

// firstByKey returns pointers to the first element of vs for each key,
// sorted by key.
func firstByKey[T any](vs []T, key func(*T) string) []*T {
	out := make([]*T, 0, len(vs))
	for i := range vs {
		out = append(out, &vs[i])
	}
	// Stable: of equal keys, the first stays first, and Compact keeps it.
	slices.SortStableFunc(out, func(a, b *T) int { return cmp.Compare(key(a), key(b)) })
	return slices.CompactFunc(out, func(a, b *T) bool { return key(a) == key(b) })
}

// UsageTotals sums the ledger per org × model × month (UTC) over the events
// at or after since, ordered by org, model and month. The zero since sums
// every event (free credits are a lifetime grant).
func (s *Store) UsageTotals(ctx context.Context, since time.Time) ([]tollgate.UsageTotal, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT org_id, model, period, SUM(quantity), SUM(credits), SUM(free_credits)
		FROM usage_events
		WHERE time >= $1
		GROUP BY org_id, model, period
		ORDER BY org_id, model, period`, nanos(since))
	if err != nil {
		return nil, wrap("usage totals", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (tollgate.UsageTotal, error) {
		var u tollgate.UsageTotal
		err := row.Scan(&u.OrgID, &u.Model, &u.Period, &u.Units, &u.Credits, &u.FreeCredits)
		return u, err
	})
	return emptyNil(out), wrap("usage totals", err)
}

// dayNumber is the UTC day of a unix-nanosecond time column, counted from
// 1970-01-01: floor division, so times before 1970 fall on the right day.
const dayNumber = `(time / 86400000000000 - (time % 86400000000000 < 0)::int)::int`

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
	var query string
	switch q.GroupBy {
	case "day":
		query = `SELECT to_char(DATE '1970-01-01' + ` + dayNumber + `, 'YYYY-MM-DD'), '', unit,
				COUNT(*), SUM(quantity), SUM(credits)
			FROM usage_events
			WHERE org_id = $1 AND time >= $2 AND time < $3
			GROUP BY ` + dayNumber + `, unit
			ORDER BY ` + dayNumber + `, unit`
	case "model":
		query = `SELECT '', model, unit, COUNT(*), SUM(quantity), SUM(credits)
			FROM usage_events
			WHERE org_id = $1 AND time >= $2 AND time < $3
			GROUP BY model, unit
			ORDER BY model, unit`
	}
	to := int64(math.MaxInt64)
	if !q.To.IsZero() {
		to = nanos(q.To)
	}
	rows, err := s.pool.Query(ctx, query, q.OrgID, nanos(q.From), to)
	if err != nil {
		return nil, wrap("usage", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (tollgate.UsageRow, error) {
		var r tollgate.UsageRow
		var unit string
		err := row.Scan(&r.Day, &r.Model, &unit, &r.Requests, &r.Quantity, &r.Credits)
		r.Unit = tollgate.Unit(unit)
		return r, err
	})
	return emptyNil(out), wrap("usage", err)
}
