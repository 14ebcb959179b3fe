package tollgate

import (
	"context"
	"time"
)

// RateLimit is a GCRA limit: Limit requests per Period with a burst of
// Burst (0 means Limit).
type RateLimit struct {
	Limit  int
	Period time.Duration
	Burst  int
}

// PerMinute returns a limit of n requests per minute, burst n.
func PerMinute(n int) RateLimit { return RateLimit{Limit: n, Period: time.Minute, Burst: n} }

// RateDecision is the outcome of one rate-limit check; it is filled whether
// the request was admitted or not, so every limited answer can carry the
// X-RateLimit-* headers.
type RateDecision struct {
	Allowed   bool
	Limit     int
	Remaining int
	// ResetAt is when the bucket is full again.
	ResetAt time.Time
	// RetryAfter is how long until one request would be admitted (0 when
	// Allowed).
	RetryAfter time.Duration
}

// Lease is a held concurrency slot.
type Lease struct {
	Key       string
	ID        string
	ExpiresAt time.Time
}

// Limiter makes atomic check-and-take decisions. Implementations: inmem
// (one node) and redis (a cluster); both pass internal/limitertest. Time is
// a parameter so tests never sleep; a cluster backend may use its own clock.
type Limiter interface {
	// AllowRate takes one request from key's bucket when there is room.
	// Over the limit it takes nothing and returns the decision with a
	// rate_limit_exceeded *Error carrying RetryAfter.
	AllowRate(ctx context.Context, key string, limit RateLimit, now time.Time) (RateDecision, error)
	// Acquire takes one of limit in-flight slots for key, or returns a
	// concurrency_limit_exceeded *Error (RetryAfter 1 s) at once. The lease
	// expires after the limiter's TTL unless heartbeated.
	Acquire(ctx context.Context, key string, limit int, now time.Time) (Lease, error)
	// Release frees a lease; releasing twice or after expiry is a no-op.
	Release(ctx context.Context, lease Lease) error
	// Heartbeat extends a held lease by the TTL; not_found when it has
	// expired or been released.
	Heartbeat(ctx context.Context, lease Lease, now time.Time) (Lease, error)
	// InFlight reports the leases held for key at now.
	InFlight(ctx context.Context, key string, now time.Time) (int, error)
}

// Admission is everything one request takes before its upstream call: a
// rate token, a cost reservation and a concurrency slot. Each step is
// optional.
type Admission struct {
	// RateKey and Rate: the rate step (skipped when RateKey is "").
	RateKey string
	Rate    RateLimit
	// Budget, Credits and Units: the reservation (skipped when Budget is
	// nil).
	Budget         *Budget
	Credits, Units float64
	// LeaseKey and Concurrency: the lease step (skipped when LeaseKey is
	// ""); Concurrency is the in-flight limit for LeaseKey.
	LeaseKey    string
	Concurrency int
}

// Admitted is what Admit took.
type Admitted struct {
	// Rate is the rate decision, filled whenever the rate step ran,
	// admitted or not, so a refusal still carries X-RateLimit-*.
	Rate RateDecision
	// Reservation and Lease are set when their step ran and succeeded.
	Reservation *Reservation
	Lease       *Lease
}

// Admitter is a Limiter that also takes a whole Admission in one atomic
// step: one round trip for a cluster backend. Steps run in the order rate,
// reservation, lease; the first refusal ends the admission with that
// step's catalog error (exactly the error AllowRate, Reserve or Acquire
// would return). On any error no reservation or lease is held; a rate
// token taken before a later refusal stays taken, as with separate calls.
//
// Finish ends an admitted request in one step: it settles the reservation
// (if not nil) at credits and units (0, 0 releases it) and releases the
// lease (if not nil).
type Admitter interface {
	Limiter
	Quota
	Admit(ctx context.Context, a Admission, now time.Time) (Admitted, error)
	Finish(ctx context.Context, r *Reservation, credits, units float64, lease *Lease) error
}

// AdmitSteps admits a with one call per step on l and q: for a limiter
// whose steps are each atomic but that has no single-call admission. When
// the lease is refused the reservation is given back before it returns;
// in between, a concurrent reservation on the same budget may be refused
// for a hold that is then released, but a budget is never exceeded. q may
// be nil when a has no Budget.
func AdmitSteps(ctx context.Context, l Limiter, q Quota, a Admission, now time.Time) (Admitted, error) {
	var got Admitted
	if a.RateKey != "" {
		d, err := l.AllowRate(ctx, a.RateKey, a.Rate, now)
		got.Rate = d
		if err != nil {
			return got, err
		}
	}
	if a.Budget != nil {
		if q == nil {
			return got, &Error{Code: CodeInternal, Message: "An admission with a budget needs a quota."}
		}
		r, err := q.Reserve(ctx, *a.Budget, a.Credits, a.Units, now)
		if err != nil {
			return got, err
		}
		got.Reservation = &r
	}
	if a.LeaseKey != "" {
		lease, err := l.Acquire(ctx, a.LeaseKey, a.Concurrency, now)
		if err != nil {
			if got.Reservation != nil {
				q.Settle(context.WithoutCancel(ctx), *got.Reservation, 0, 0)
				got.Reservation = nil
			}
			return got, err
		}
		got.Lease = &lease
	}
	return got, nil
}

// FinishSteps settles r (when not nil) on q at credits and units and
// releases lease (when not nil) on l, one call each. The lease is released
// even when settling fails; the first error is returned.
func FinishSteps(ctx context.Context, l Limiter, q Quota, r *Reservation, credits, units float64, lease *Lease) error {
	var err error
	if r != nil {
		err = q.Settle(ctx, *r, credits, units)
	}
	if lease != nil {
		if rerr := l.Release(ctx, *lease); err == nil {
			err = rerr
		}
	}
	return err
}
