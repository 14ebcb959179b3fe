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
