package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/tollgate/tollgate"
)

// epsilon is the slack of every quota check, as in inmem.
const epsilon = 1e-9

// Reserve holds credits and units for b at now; see tollgate.Quota. The
// checks and their order, the float slack, the errors and their details
// are inmem's (inmem.Limiter.Reserve), made in one script on the org's
// hash: concurrent reservations on every replica can never overshoot.
//
// The counters must have been loaded (Load): when the marker Load sets is
// missing, Reserve holds nothing and returns ErrCountersLost (inside an
// overloaded *tollgate.Error) rather than count from zero. While Redis
// is unreachable Reserve refuses with overloaded. A negative, infinite or
// NaN cost is an internal error.
func (l *Limiter) Reserve(ctx context.Context, b tollgate.Budget, credits, units float64, now time.Time) (tollgate.Reservation, error) {
	if !validCost(credits) || !validCost(units) {
		return tollgate.Reservation{}, fmt.Errorf("redis: invalid cost: %v credits, %v units", credits, units)
	}
	args, period := quotaArgs(b, credits, units, now)
	v, err := l.run(ctx, reserveScript, []string{l.orgKey(b.OrgID), l.marker}, args...)
	if err != nil {
		return tollgate.Reservation{}, err
	}
	r, err := asReply(v)
	if err != nil {
		return tollgate.Reservation{}, err
	}
	if err := l.quotaRefusal(r.str(0), b, r.str(1), r.float(2), r.float(3), now); err != nil {
		return tollgate.Reservation{}, err
	}
	return reservation(b, period, credits, units), nil
}

func reservation(b tollgate.Budget, period string, credits, units float64) tollgate.Reservation {
	return tollgate.Reservation{
		OrgID:   b.OrgID,
		Model:   b.Model,
		Period:  period,
		Credits: credits,
		Units:   units,
		Free:    b.UsesFreeCredits,
	}
}

// quotaArgs returns a reservation's script arguments (quota_args in
// script.go) and its period.
func quotaArgs(b tollgate.Budget, credits, units float64, now time.Time) ([]any, string) {
	period, start, _ := tollgate.Period(now)
	prev, _, _ := tollgate.Period(start.AddDate(0, -1, 0))
	return []any{period, prev, b.Model, ff(credits), ff(units), flag(b.UsesFreeCredits),
		ff(b.FreeCredits), ff(b.CreditLimit), ff(b.UnitLimit),
		tuple(b.Model, credits, units, b.UsesFreeCredits)}, period
}

// tuple names a reservation by its fields after its period, which is how
// Settle recognises one that Reserve made (see Settle).
func tuple(model string, credits, units float64, free bool) string {
	return ff(credits) + "|" + ff(units) + "|" + flag(free) + "|" + model
}

// ff formats x so that the script reads back exactly x.
func ff(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// validCost reports whether x is a cost Reserve and Settle accept.
func validCost(x float64) bool {
	return x >= 0 && !math.IsInf(x, 0) // NaN fails x >= 0
}

// quotaRefusal returns the error of a reservation step's status: nil for
// "ok", ErrCountersLost for "lost", else the refusal (as inmem words it).
func (l *Limiter) quotaRefusal(status string, b tollgate.Budget, unit string, used, limit float64, now time.Time) error {
	switch status {
	case "ok":
		return nil
	case "lost":
		return l.countersLost()
	case "billing_required":
		return tollgate.BillingRequired(limit, used)
	case "quota_exceeded":
		u := tollgate.UnitCredits
		if unit != "credits" {
			u = tollgate.Meter{Unit: b.Unit}.UnitOrDefault()
		}
		_, _, end := tollgate.Period(now)
		return tollgate.QuotaExceeded(u, used, limit, end, now)
	}
	return fmt.Errorf("redis: unexpected reservation status %q", status)
}

// Settle replaces reservation r with the actual cost; see tollgate.Quota.
// It corrects r.Period's counters (and the free credits when r.Free) by
// the difference, whatever month it is now; no counter goes below zero.
// Settle(r, 0, 0) releases r.
//
// A reservation made before the last Load is not in the loaded counters
// (the ledger does not hold an unsettled request), so correcting it would
// take its estimate off counters that never held it. Reserve therefore
// counts each org's held reservations by their fields, and Settle of one
// the org does not hold, within Options.RebuildGrace of a Load and in an
// org whose counters that Load wrote (or dropped), adds the actual cost
// whole. Otherwise (a reservation the caller built, say, to undo a
// charge) it corrects by the difference, as inmem does. What is left
// counts less by at most one estimate per reservation: a pre-Load
// reservation settled after the grace, or in an org whose counters a
// Reserve created after the Load, still takes its estimate off.
//
// With the counters lost Settle changes nothing and returns
// ErrCountersLost: the Load that rebuilds them reads the request from the
// ledger. While Redis is unreachable it returns overloaded and the
// reservation stays held (counting more, never less) until the next Load.
func (l *Limiter) Settle(ctx context.Context, r tollgate.Reservation, credits, units float64) error {
	return l.Finish(ctx, &r, credits, units, nil)
}

// Balance reports orgID's counters for the month of now; see
// tollgate.Quota. Held reservations count. MonthUnits holds the models
// with units in the month, and is never nil. With the counters lost it
// returns ErrCountersLost.
func (l *Limiter) Balance(ctx context.Context, orgID string, now time.Time) (tollgate.Balance, error) {
	name, _, end := tollgate.Period(now)
	v, err := l.run(ctx, balanceScript, []string{l.orgKey(orgID), l.marker}, name)
	if err != nil {
		return tollgate.Balance{}, err
	}
	r, err := asReply(v)
	if err != nil {
		return tollgate.Balance{}, err
	}
	if r.str(0) == "lost" {
		return tollgate.Balance{}, l.countersLost()
	}
	bal := tollgate.Balance{
		Period:          name,
		ResetsAt:        end,
		FreeCreditsUsed: r.float(1),
		MonthCredits:    r.float(2),
		MonthUnits:      map[string]float64{},
	}
	for i := 3; i+1 < len(r); i += 2 {
		if u := r.float(i + 1); u > 0 {
			bal.MonthUnits[r.str(i)] = u
		}
	}
	return bal, nil
}

// Load tuning: orgs written per transaction, keys per SCAN page, and the
// Load lock's lifetime (renewed with each batch).
const (
	loadBatch   = 200
	scanCount   = 1000
	loadLockTTL = time.Minute
)

// Load replaces every quota counter with the ledger's sums, as inmem
// does: an org's free credits are the sum of its FreeCredits over all
// periods, each month's credits and units the sums for that period; orgs
// absent from totals start from zero. Rate buckets and leases are
// untouched. An invalid total loads nothing.
//
// Loads run one at a time across replicas (a lock in Redis; a second
// waits for the first). Load drops the orgs totals does not mention,
// writes the others, each org in one step, and then sets the marker that
// Reserve, Balance and Settle require (see ErrCountersLost). Load is for
// start-up and rebuilds: run while requests flow, a reservation held
// across it is not in the new counters (see Settle for how its
// settlement is counted).
func (l *Limiter) Load(ctx context.Context, totals []tollgate.UsageTotal) error {
	orgs := make(map[string]map[string]float64)
	for _, u := range totals {
		if _, err := time.Parse("2006-01", u.Period); err != nil {
			return fmt.Errorf("redis: load: org %q: invalid period %q", u.OrgID, u.Period)
		}
		if !validCost(u.Credits) || !validCost(u.Units) || !validCost(u.FreeCredits) {
			return fmt.Errorf("redis: load: org %q, %s: invalid totals %v credits (%v free), %v units",
				u.OrgID, u.Period, u.Credits, u.FreeCredits, u.Units)
		}
		a := orgs[u.OrgID]
		if a == nil {
			a = make(map[string]float64)
			orgs[u.OrgID] = a
		}
		a["f"] += u.FreeCredits
		a["c:"+u.Period] += u.Credits
		k := "u:" + u.Period + ":" + u.Model
		a[k] = floor0(a[k] + u.Units)
	}

	unlock, err := l.lockLoad(ctx)
	if err != nil {
		return err
	}
	defer unlock()

	keep := make(map[string]bool, len(orgs))
	for org := range orgs {
		keep[l.orgKey(org)] = true
	}
	if err := l.dropOrgs(ctx, keep); err != nil {
		return err
	}

	batch := make([]string, 0, loadBatch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := l.do(ctx, func(ctx context.Context) error {
			_, err := l.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
				for _, org := range batch {
					key := l.orgKey(org)
					p.Del(ctx, key)
					fields := make([]any, 0, 2*len(orgs[org]))
					for f, v := range orgs[org] {
						fields = append(fields, f, ff(v))
					}
					p.HSet(ctx, key, fields...)
				}
				p.PExpire(ctx, l.loadLock, loadLockTTL)
				return nil
			})
			return err
		})
		batch = batch[:0]
		if err != nil {
			return fmt.Errorf("redis: load: %w", err)
		}
		return nil
	}
	for org := range orgs {
		if batch = append(batch, org); len(batch) == loadBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	run, err := l.runID(ctx)
	if err != nil {
		return fmt.Errorf("redis: load: %w", err)
	}
	if _, err := l.run(ctx, markScript, []string{l.marker}, run); err != nil {
		return fmt.Errorf("redis: load: set marker: %w", err)
	}
	return nil
}

// floor0 keeps a counter at zero or above, as inmem's floor does.
func floor0(v float64) float64 {
	if v < epsilon {
		return 0
	}
	return v
}

// dropOrgs deletes the org hashes under the prefix that keep does not
// hold.
func (l *Limiter) dropOrgs(ctx context.Context, keep map[string]bool) error {
	pattern := globEscape(l.prefix) + "q:{*"
	var cursor uint64
	for {
		var keys []string
		err := l.do(ctx, func(ctx context.Context) error {
			var err error
			keys, cursor, err = l.client.Scan(ctx, cursor, pattern, scanCount).Result()
			return err
		})
		if err != nil {
			return fmt.Errorf("redis: load: scan: %w", err)
		}
		drop := keys[:0]
		for _, k := range keys {
			if !keep[k] {
				drop = append(drop, k)
			}
		}
		if len(drop) > 0 {
			err := l.do(ctx, func(ctx context.Context) error {
				_, err := l.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
					for _, k := range drop {
						p.Del(ctx, k)
					}
					p.PExpire(ctx, l.loadLock, loadLockTTL)
					return nil
				})
				return err
			})
			if err != nil {
				return fmt.Errorf("redis: load: drop orgs: %w", err)
			}
		}
		if cursor == 0 {
			return nil
		}
	}
}

// globEscape escapes s for a SCAN MATCH pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// lockLoad takes the Load lock, waiting for another Load to finish, and
// returns the function that releases it.
func (l *Limiter) lockLoad(ctx context.Context) (func(), error) {
	var b [16]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	for {
		var ok bool
		err := l.do(ctx, func(ctx context.Context) error {
			var err error
			ok, err = l.client.SetNX(ctx, l.loadLock, token, loadLockTTL).Result()
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("redis: load: lock: %w", err)
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("redis: load: waiting for another load: %w", ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
	return func() {
		l.run(context.WithoutCancel(ctx), deleteIfScript, []string{l.loadLock}, token)
	}, nil
}

// runID returns the server's run ID, which is new each time it starts.
func (l *Limiter) runID(ctx context.Context) (string, error) {
	var info string
	err := l.do(ctx, func(ctx context.Context) error {
		var err error
		info, err = l.client.Info(ctx, "server").Result()
		return err
	})
	if err != nil {
		return "", err
	}
	return parseRunID(info)
}

func parseRunID(info string) (string, error) {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok && v != "" {
			return v, nil
		}
	}
	return "", errors.New("no run_id in INFO server")
}

// onConnect checks each new connection's server against the marker. A
// server restarted from its snapshot or append-only file comes back with
// the counters (and the marker) as they were when it saved them, missing
// what was charged since; so may a replica promoted by a failover. The
// marker names the server run that Load wrote it on: on any other run the
// marker is dropped, so that the counters count as lost and are rebuilt
// from the ledger. A restart or failover drops every connection, so the
// first call after it checks. Errors are ignored: the call that made the
// connection reports its own.
func (l *Limiter) onConnect(ctx context.Context, cn *goredis.Conn) error {
	marker, err := cn.Get(ctx, l.marker).Result()
	if err != nil {
		return nil // no marker, or no answer
	}
	info, err := cn.Info(ctx, "server").Result()
	if err != nil {
		return nil
	}
	run, err := parseRunID(info)
	if _, loadedOn, _ := strings.Cut(marker, " "); err != nil || loadedOn == run {
		return nil
	}
	deleteIfScript.Run(ctx, cn, []string{l.marker}, marker)
	return nil
}
