package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/tollgate/tollgate"
)

// Admit takes a's rate token, reservation and lease in one script: one
// round trip, atomic on the server; see tollgate.Admitter. Each step
// decides as AllowRate, Reserve and Acquire do and refuses with their
// errors; nothing is written until the reservation and the lease both
// fit, but the rate token, which a later refusal leaves taken.
//
// A rate key known to be over its limit is refused without a round trip.
// Invalid input (a rate limit, a cost, a negative concurrency) is an
// internal error before anything is taken. While Redis is unreachable an
// Admission with only a rate step follows Options.RateFailure; one with a
// reservation or a lease is refused with overloaded (after the rate step,
// so a FailOpen rate refusal still wins).
func (l *Limiter) Admit(ctx context.Context, a tollgate.Admission, now time.Time) (tollgate.Admitted, error) {
	var (
		got                 tollgate.Admitted
		interval, tolerance int64
		err                 error
	)
	if a.RateKey != "" {
		if interval, tolerance, err = gcra(a.Rate); err != nil {
			return got, err
		}
	}
	if a.Budget != nil && (!validCost(a.Credits) || !validCost(a.Units)) {
		return got, fmt.Errorf("redis: invalid cost: %v credits, %v units", a.Credits, a.Units)
	}
	if a.LeaseKey != "" && a.Concurrency < 0 {
		return got, fmt.Errorf("redis: invalid concurrency limit %d", a.Concurrency)
	}
	if a.RateKey == "" && a.Budget == nil && a.LeaseKey == "" {
		return got, nil
	}
	if a.RateKey != "" {
		if d, ok := l.denied.get(a.RateKey, a.Rate, now); ok {
			got.Rate = d
			return got, tollgate.RateLimitExceeded(a.Rate, d.RetryAfter)
		}
	}

	// The arguments of admitScript: "" marks a step that is skipped.
	keys := make([]string, 0, 4)
	args := make([]any, 17)
	for i := range args {
		args[i] = ""
	}
	args[0], args[1] = l.clock(now)
	if a.RateKey != "" {
		keys = append(keys, l.rateKey(a.RateKey))
		args[2], args[3] = strconv.FormatInt(interval, 10), strconv.FormatInt(tolerance, 10)
	}
	var period string
	if a.Budget != nil {
		keys = append(keys, l.orgKey(a.Budget.OrgID), l.marker)
		var q []any
		q, period = quotaArgs(*a.Budget, a.Credits, a.Units, now)
		copy(args[4:14], q)
	}
	var id string
	if a.LeaseKey != "" {
		keys = append(keys, l.leaseKey(a.LeaseKey))
		id = l.leaseID()
		args[14], args[15], args[16] = strconv.Itoa(a.Concurrency), id, strconv.FormatInt(int64(l.ttl), 10)
	}

	v, err := l.run(ctx, admitScript, keys, args...)
	if err != nil {
		if a.RateKey != "" && errors.Is(err, ErrUnavailable) && l.failOpen {
			d, rerr := l.fallback.allow(a.RateKey, a.Rate, l.replicas, now)
			got.Rate = d
			if rerr != nil || (a.Budget == nil && a.LeaseKey == "") {
				return got, rerr
			}
		}
		return got, err
	}
	r, err := asReply(v)
	if err != nil {
		return got, err
	}
	status := r.str(0)
	if a.RateKey != "" {
		d, rerr := l.rateDecision(a.RateKey, a.Rate, interval, tolerance, now, r.int(1) == 1, r.int(2), r.int(3))
		got.Rate = d
		if status == "rate" {
			return got, rerr
		}
	}
	switch {
	case status == "ok":
	case status == "concurrency":
		return got, concurrencyError()
	case a.Budget != nil:
		if err := l.quotaRefusal(status, *a.Budget, r.str(4), r.float(5), r.float(6), now); err != nil {
			return got, err
		}
	default:
		return got, fmt.Errorf("redis: unexpected admission status %q", status)
	}
	if a.Budget != nil {
		res := reservation(*a.Budget, period, a.Credits, a.Units)
		got.Reservation = &res
	}
	if a.LeaseKey != "" {
		got.Lease = &tollgate.Lease{Key: a.LeaseKey, ID: id, ExpiresAt: now.Add(l.ttl)}
	}
	return got, nil
}

// Finish settles r (when not nil) at credits and units and releases lease
// (when not nil) in one script; see tollgate.Admitter, Settle and
// Release. An invalid settlement is an internal error and settles
// nothing, but the lease is still released; with the counters lost the
// lease is released and ErrCountersLost returned. While Redis is
// unreachable nothing is done and Finish returns overloaded: the lease
// expires with its TTL, the reservation stays held until the next Load.
func (l *Limiter) Finish(ctx context.Context, r *tollgate.Reservation, credits, units float64, lease *tollgate.Lease) error {
	var invalid error
	if r != nil {
		switch {
		case !validCost(credits) || !validCost(units):
			invalid = fmt.Errorf("redis: settle: invalid cost: %v credits, %v units", credits, units)
			r = nil
		case r.Period == "":
			invalid = fmt.Errorf("redis: settle: reservation for org %q has no period", r.OrgID)
			r = nil
		}
	}
	if lease != nil && lease.ID == "" {
		lease = nil // not one of ours, so not held
	}
	if r == nil && lease == nil {
		return invalid
	}

	// The arguments of finishScript: "" marks a step that is skipped.
	keys := make([]string, 0, 3)
	args := make([]any, 10)
	for i := range args {
		args[i] = ""
	}
	if r != nil {
		keys = append(keys, l.orgKey(r.OrgID), l.marker)
		copy(args, []any{r.Period, r.Model, ff(credits - r.Credits), ff(units - r.Units), ff(credits), ff(units),
			flag(r.Free), tuple(r.Model, r.Credits, r.Units, r.Free), strconv.FormatInt(l.grace.Milliseconds(), 10)})
	}
	if lease != nil {
		keys = append(keys, l.leaseKey(lease.Key))
		args[9] = lease.ID
	}
	v, err := l.run(ctx, finishScript, keys, args...)
	if err != nil {
		return err
	}
	if v == "lost" {
		return l.countersLost()
	}
	return invalid
}
