// Package inmem implements tollgate's limiter and quota in the memory of
// one process.
package inmem

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"

	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate"
)

// DefaultLeaseTTL is the lease TTL of a Limiter whose LeaseTTL is zero.
const DefaultLeaseTTL = 15 * time.Second

const (
	// numShards spreads keys over independent locks; a power of two.
	numShards = 64
	// sweepEvery is the fewest operations on a shard between two sweeps of
	// its idle entries. A shard also waits for as many operations as it
	// holds entries, so sweeping costs O(1) per operation.
	sweepEvery = 1024
)

// Limiter is a tollgate.Limiter for a single node: GCRA rate limits and
// concurrency leases held in a sharded map. Decisions are exact and atomic
// per key; there is no global lock and no background goroutine. Idle
// entries (a full bucket, a key with no live lease) are dropped by a lazy
// sweep as the limiter is used.
//
// Limiter is also a tollgate.Quota (quota.go): per-org credit and unit
// counters in shards of their own, exact and atomic per org.
//
// The zero value is ready to use, with a lease TTL of DefaultLeaseTTL.
// A Limiter is safe for concurrent use and must not be copied after first
// use.
type Limiter struct {
	// LeaseTTL is how long a lease lives without a heartbeat. Zero means
	// DefaultLeaseTTL. Set it before first use.
	LeaseTTL time.Duration

	lastID atomic.Uint64
	shards [numShards]shard
	quotas [numShards]quotaShard
}

var _ tollgate.Limiter = (*Limiter)(nil)

// NewLimiter returns a limiter whose leases live for leaseTTL (zero:
// DefaultLeaseTTL).
func NewLimiter(leaseTTL time.Duration) *Limiter {
	return &Limiter{LeaseTTL: leaseTTL}
}

// shard is one lock and the keys that hash to it.
type shard struct {
	mu sync.Mutex
	// rates holds each key's GCRA state, its theoretical arrival time (TAT)
	// in Unix nanoseconds; a TAT at or before now is a full bucket. Values
	// are inline so that a decision on a known key touches one map slot
	// and allocates nothing.
	rates  map[string]int64
	leases map[string]*leaseGroup
	ops    int // operations since the last sweep
	// Keep neighbouring shards' locks off this cache line pair.
	_ [128 - 32]byte
}

var seed = maphash.MakeSeed()

func (l *Limiter) shard(key string) *shard {
	return &l.shards[maphash.String(seed, key)&(numShards-1)]
}

func (l *Limiter) ttl() time.Duration {
	if l.LeaseTTL <= 0 {
		return DefaultLeaseTTL
	}
	return l.LeaseTTL
}

// AllowRate takes one request from key's bucket when there is room; see
// tollgate.Limiter. The emission interval is Period/Limit rounded down to
// a nanosecond and the tolerance is Burst (0: Limit) intervals. An invalid
// limit (Limit or Period not positive, Burst negative, or a rate finer than
// one request per nanosecond) is an internal error.
func (l *Limiter) AllowRate(_ context.Context, key string, limit tollgate.RateLimit, now time.Time) (tollgate.RateDecision, error) {
	interval, tolerance, err := gcra(limit)
	if err != nil {
		return tollgate.RateDecision{}, err
	}
	t := now.UnixNano()

	s := l.shard(key)
	s.mu.Lock()
	tat := t
	if stored, ok := s.rates[key]; ok && stored > t {
		tat = stored
	}
	next := tat + interval
	if wait := next - tolerance - t; wait > 0 {
		s.tickLocked(t)
		s.mu.Unlock()
		retry := time.Duration(wait)
		d := tollgate.RateDecision{
			Limit:      limit.Limit,
			ResetAt:    now.Add(time.Duration(tat - t)),
			RetryAfter: retry,
		}
		return d, tollgate.RateLimitExceeded(limit, retry)
	}
	if s.rates == nil {
		s.rates = make(map[string]int64)
	}
	// The map keeps the caller's key string (no copy): keys are short and
	// built per request, not slices of a larger buffer.
	s.rates[key] = next
	s.tickLocked(t)
	s.mu.Unlock()

	return tollgate.RateDecision{
		Allowed:   true,
		Limit:     limit.Limit,
		Remaining: int((tolerance - (next - t)) / interval),
		ResetAt:   now.Add(time.Duration(next - t)),
	}, nil
}

// gcra returns limit's emission interval and tolerance in nanoseconds.
func gcra(limit tollgate.RateLimit) (interval, tolerance int64, err error) {
	if limit.Limit <= 0 || limit.Period <= 0 || limit.Burst < 0 {
		return 0, 0, fmt.Errorf("inmem: invalid rate limit: %d per %v, burst %d", limit.Limit, limit.Period, limit.Burst)
	}
	burst := int64(limit.Burst)
	if burst == 0 {
		burst = int64(limit.Limit)
	}
	interval = int64(limit.Period) / int64(limit.Limit)
	if interval == 0 {
		return 0, 0, fmt.Errorf("inmem: rate limit %d per %v is finer than one request per nanosecond", limit.Limit, limit.Period)
	}
	// Keep tolerance and now+tolerance far from overflow.
	if burst > math.MaxInt64/4/interval {
		return 0, 0, fmt.Errorf("inmem: rate limit burst %d of %v intervals is too long", burst, time.Duration(interval))
	}
	return interval, burst * interval, nil
}

// tickLocked counts one operation and sweeps the shard's idle entries when
// enough operations have passed.
func (s *shard) tickLocked(now int64) {
	s.ops++
	if s.ops >= sweepEvery && s.ops >= len(s.rates)+len(s.leases) {
		s.sweepLocked(now)
	}
}

// sweepLocked drops full buckets and keys without live leases at now.
func (s *shard) sweepLocked(now int64) {
	s.ops = 0
	for k, tat := range s.rates {
		if tat <= now {
			delete(s.rates, k)
		}
	}
	for k, g := range s.leases {
		g.pruneLocked(now)
		if len(g.slots) == 0 {
			delete(s.leases, k)
		}
	}
}
