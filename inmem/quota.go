package inmem

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate"
)

// epsilon is the slack every quota check allows for float sums: ten
// charges of 0.1 credits add up to 0.9999999999999999 or 1.0000000000000002
// depending on the order, and both fit a limit of 1.
const epsilon = 1e-9

var _ tollgate.Quota = (*Limiter)(nil)

// quotaShard is one lock and the orgs that hash to it. Quota counters are
// kept apart from the rate and lease shards so that metering and rate
// limiting never wait on each other.
type quotaShard struct {
	mu   sync.Mutex
	orgs map[string]*account
	// Keep neighbouring shards' locks off this cache line pair.
	_ [128 - 16]byte
}

// account is one org's quota counters. Reservations count as used while
// they are held: Reserve adds them and Settle corrects them.
//
// An account is never dropped, as free is lifetime; its months are
// dropped lazily, when Reserve first sees a new month, keeping that month
// and the one before (a reservation made in the last instant of a month
// settles into it after midnight).
type account struct {
	// free is the lifetime credits drawn from the free grant.
	free   float64
	months map[string]*month // by period, "2006-01"
	// cur is the month of the last Reserve, so that a decision inside it
	// needs no calendar arithmetic (and no allocation).
	cur *month
}

// month is an org's counters for one calendar month (UTC).
type month struct {
	name string
	// start and end are the month's bounds in Unix nanoseconds, set by
	// Reserve; zero in a month only Settle or Load has touched.
	start, end int64
	credits    float64            // credits charged, free or not
	units      map[string]float64 // units by model
}

func (l *Limiter) quotaShard(orgID string) *quotaShard {
	return &l.quotas[maphash.String(seed, orgID)&(numShards-1)]
}

// accountLocked returns org's account, creating it.
func (s *quotaShard) accountLocked(orgID string) *account {
	if s.orgs == nil {
		s.orgs = make(map[string]*account)
	}
	return accountIn(s.orgs, orgID)
}

// accountIn returns org's account in orgs, creating it.
func accountIn(orgs map[string]*account, orgID string) *account {
	a := orgs[orgID]
	if a == nil {
		a = &account{months: make(map[string]*month)}
		orgs[strings.Clone(orgID)] = a
	}
	return a
}

// monthLocked returns the month now falls in, creating it and dropping
// the months before the previous one when it is new.
func (a *account) monthLocked(now time.Time) *month {
	t := now.UnixNano()
	if m := a.cur; m != nil && m.start <= t && t < m.end {
		return m
	}
	name, start, end := tollgate.Period(now)
	m := a.months[name]
	if m == nil {
		prev, _, _ := tollgate.Period(start.AddDate(0, -1, 0))
		for k := range a.months {
			if k < prev { // "2006-01" sorts by time
				delete(a.months, k)
			}
		}
		m = &month{name: name}
		a.months[name] = m
	}
	m.start, m.end = start.UnixNano(), end.UnixNano()
	a.cur = m
	return m
}

// periodLocked returns the month named period, creating it.
func (a *account) periodLocked(period string) *month {
	m := a.months[period]
	if m == nil {
		m = &month{name: strings.Clone(period)}
		a.months[m.name] = m
	}
	return m
}

// addUnitsLocked adds d to model's units, keeping them at zero or above.
func (m *month) addUnitsLocked(model string, d float64) {
	if m.units == nil {
		m.units = make(map[string]float64)
	}
	old, ok := m.units[model]
	if !ok {
		model = strings.Clone(model)
	}
	m.units[model] = floor(old + d)
}

// floor keeps a counter at zero or above, and rounds the crumbs float
// arithmetic leaves after a release (0.1+0.2-0.1-0.2) down to zero.
func floor(v float64) float64 {
	if v < epsilon {
		return 0
	}
	return v
}

// over reports whether taking x on top of used passes limit. A zero x
// passes unless the limit is already reached: a reached limit refuses
// everything it covers, estimates of zero included (a model that trusts
// its upstream's usage report may reserve nothing and be charged after).
func over(used, x, limit float64) bool {
	if x == 0 {
		return used >= limit-epsilon
	}
	return used+x > limit+epsilon
}

// validCost reports whether x is a cost Reserve and Settle accept.
func validCost(x float64) bool {
	return x >= 0 && !math.IsInf(x, 0) // NaN fails x >= 0
}

// refusal is what a refused reservation reports, gathered under the lock
// and turned into an error after it.
type refusal struct {
	code        tollgate.Code
	unit        tollgate.Unit
	used, limit float64
	end         int64
}

// Reserve holds credits and units for b at now; see tollgate.Quota. The
// checks, in order, all under the org's lock, so that concurrent
// reservations can never overshoot:
//
//  1. When b.UsesFreeCredits, the lifetime free credits plus credits must
//     fit b.FreeCredits, else billing_required.
//  2. When b.CreditLimit > 0, the month's credits (every model, free or
//     not) plus credits must fit it, else quota_exceeded.
//  3. When b.UnitLimit > 0, the month's units of b.Model plus units must
//     fit it, else quota_exceeded.
//
// Every check allows epsilon of float slack. A zero amount passes a check
// unless its limit is already reached. quota_exceeded carries details
// {unit, used, limit, resets_at} and a RetryAfter until the next month
// starts; billing_required carries {free_credits, used} and no RetryAfter,
// as only setting up billing helps. A refused reservation holds nothing.
//
// The reservation is held in the month of now, and Settle corrects that
// month even after it has ended. A negative, infinite or NaN cost is an
// internal error.
func (l *Limiter) Reserve(_ context.Context, b tollgate.Budget, credits, units float64, now time.Time) (tollgate.Reservation, error) {
	if !validCost(credits) || !validCost(units) {
		return tollgate.Reservation{}, fmt.Errorf("inmem: invalid cost: %v credits, %v units", credits, units)
	}
	s := l.quotaShard(b.OrgID)
	s.mu.Lock()
	a := s.accountLocked(b.OrgID)
	m := a.monthLocked(now)
	used := m.units[b.Model]
	var no refusal
	switch {
	case b.UsesFreeCredits && over(a.free, credits, b.FreeCredits):
		no = refusal{code: tollgate.CodeBillingRequired, used: a.free, limit: b.FreeCredits}
	case b.CreditLimit > 0 && over(m.credits, credits, b.CreditLimit):
		no = refusal{code: tollgate.CodeQuotaExceeded, unit: tollgate.UnitCredits, used: m.credits, limit: b.CreditLimit, end: m.end}
	case b.UnitLimit > 0 && over(used, units, b.UnitLimit):
		unit := tollgate.Meter{Unit: b.Unit}.UnitOrDefault()
		no = refusal{code: tollgate.CodeQuotaExceeded, unit: unit, used: used, limit: b.UnitLimit, end: m.end}
	default:
		if b.UsesFreeCredits {
			a.free += credits
		}
		m.credits += credits
		if units != 0 {
			m.addUnitsLocked(b.Model, units)
		}
		period := m.name
		s.mu.Unlock()
		return tollgate.Reservation{
			OrgID:   b.OrgID,
			Model:   b.Model,
			Period:  period,
			Credits: credits,
			Units:   units,
			Free:    b.UsesFreeCredits,
		}, nil
	}
	s.mu.Unlock()
	return tollgate.Reservation{}, no.err(now)
}

func (no refusal) err(now time.Time) error {
	if no.code == tollgate.CodeBillingRequired {
		return tollgate.BillingRequired(no.limit, no.used)
	}
	return tollgate.QuotaExceeded(no.unit, no.used, no.limit, time.Unix(0, no.end), now)
}

// Settle replaces reservation r with the actual cost; see tollgate.Quota.
// It corrects r.Period's counters (and the free credits when r.Free) by
// the difference, whatever month it is now; no counter goes below zero.
// Settle(r, 0, 0) releases r. Settle knows nothing of r but its fields, so
// a caller may settle a Reservation it built itself (to undo a charge).
func (l *Limiter) Settle(_ context.Context, r tollgate.Reservation, credits, units float64) error {
	if !validCost(credits) || !validCost(units) {
		return fmt.Errorf("inmem: settle: invalid cost: %v credits, %v units", credits, units)
	}
	if r.Period == "" {
		return fmt.Errorf("inmem: settle: reservation for org %q has no period", r.OrgID)
	}
	dc, du := credits-r.Credits, units-r.Units
	s := l.quotaShard(r.OrgID)
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accountLocked(r.OrgID)
	m := a.periodLocked(r.Period)
	m.credits = floor(m.credits + dc)
	if r.Free {
		a.free = floor(a.free + dc)
	}
	if du != 0 {
		m.addUnitsLocked(r.Model, du)
	}
	return nil
}

// Load replaces every quota counter with the ledger's sums: an org's free
// credits are the sum of its FreeCredits over all periods, each month's
// credits and units the sums for that period. Orgs and months absent from
// totals start from zero. Rate buckets and leases are untouched.
//
// Load is meant for start-up or a rebuild: each org switches to the new
// counters atomically, but reservations held across Load settle against
// the loaded counters, which do not include them. An invalid total (a bad
// period, a negative or non-finite sum) loads nothing.
func (l *Limiter) Load(_ context.Context, totals []tollgate.UsageTotal) error {
	var next [numShards]map[string]*account
	for _, u := range totals {
		if _, err := time.Parse("2006-01", u.Period); err != nil {
			return fmt.Errorf("inmem: load: org %q: invalid period %q", u.OrgID, u.Period)
		}
		if !validCost(u.Credits) || !validCost(u.Units) || !validCost(u.FreeCredits) {
			return fmt.Errorf("inmem: load: org %q, %s: invalid totals %v credits (%v free), %v units",
				u.OrgID, u.Period, u.Credits, u.FreeCredits, u.Units)
		}
		i := maphash.String(seed, u.OrgID) & (numShards - 1)
		if next[i] == nil {
			next[i] = make(map[string]*account)
		}
		a := accountIn(next[i], u.OrgID)
		a.free += u.FreeCredits
		m := a.periodLocked(u.Period)
		m.credits += u.Credits
		m.addUnitsLocked(u.Model, u.Units)
	}
	for i := range l.quotas {
		s := &l.quotas[i]
		s.mu.Lock()
		s.orgs = next[i]
		s.mu.Unlock()
	}
	return nil
}

// Balance reports orgID's counters for the month of now; see
// tollgate.Quota. Held reservations count. MonthUnits holds the models
// with units in the month, and is never nil.
func (l *Limiter) Balance(_ context.Context, orgID string, now time.Time) (tollgate.Balance, error) {
	name, _, end := tollgate.Period(now)
	bal := tollgate.Balance{Period: name, ResetsAt: end, MonthUnits: map[string]float64{}}
	s := l.quotaShard(orgID)
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.orgs[orgID]
	if a == nil {
		return bal, nil
	}
	bal.FreeCreditsUsed = a.free
	if m := a.months[name]; m != nil {
		bal.MonthCredits = m.credits
		for model, u := range m.units {
			if u > 0 {
				bal.MonthUnits[model] = u
			}
		}
	}
	return bal, nil
}
