package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate"
)

// maxTolerance caps a rate limit's tolerance plus one interval, so that
// the script's arithmetic on nanoseconds relative to now stays exact in a
// double: 2^52 ns, 52 days.
const maxTolerance = 1 << 52

// AllowRate takes one request from key's bucket when there is room; see
// tollgate.Limiter. The decision is inmem's GCRA to the nanosecond, made
// in one script by the server's clock (or the caller's, with
// ClockCaller). A request over its limit is remembered in this process
// and refused without a round trip until its RetryAfter has passed.
//
// An invalid limit (Limit or Period not positive, Burst negative, a rate
// finer than one request per nanosecond, or a tolerance over 52 days) is
// an internal error. While Redis is unreachable the decision follows
// Options.RateFailure.
func (l *Limiter) AllowRate(ctx context.Context, key string, limit tollgate.RateLimit, now time.Time) (tollgate.RateDecision, error) {
	interval, tolerance, err := gcra(limit)
	if err != nil {
		return tollgate.RateDecision{}, err
	}
	if d, ok := l.denied.get(key, limit, now); ok {
		return d, tollgate.RateLimitExceeded(limit, d.RetryAfter)
	}
	s, ns := l.clock(now)
	v, err := l.run(ctx, rateScript, []string{l.rateKey(key)},
		s, ns, strconv.FormatInt(interval, 10), strconv.FormatInt(tolerance, 10))
	if err != nil {
		return l.rateFailure(key, limit, now, err)
	}
	r, err := asReply(v)
	if err != nil {
		return tollgate.RateDecision{}, err
	}
	return l.rateDecision(key, limit, interval, tolerance, now, r.int(0) == 1, r.int(1), r.int(2))
}

// rateDecision turns a script's answer into the decision and its error,
// remembering a denial.
func (l *Limiter) rateDecision(key string, limit tollgate.RateLimit, interval, tolerance int64, now time.Time, allowed bool, rel, wait int64) (tollgate.RateDecision, error) {
	if !allowed {
		d := tollgate.RateDecision{
			Limit:      limit.Limit,
			ResetAt:    now.Add(time.Duration(rel)),
			RetryAfter: time.Duration(wait),
		}
		l.denied.put(key, limit, d, now)
		return d, tollgate.RateLimitExceeded(limit, d.RetryAfter)
	}
	return tollgate.RateDecision{
		Allowed:   true,
		Limit:     limit.Limit,
		Remaining: int((tolerance - rel) / interval),
		ResetAt:   now.Add(time.Duration(rel)),
	}, nil
}

// rateFailure decides a rate check Redis could not serve: by the local
// fallback (FailOpen) or not at all.
func (l *Limiter) rateFailure(key string, limit tollgate.RateLimit, now time.Time, err error) (tollgate.RateDecision, error) {
	if !errors.Is(err, ErrUnavailable) || !l.failOpen {
		return tollgate.RateDecision{}, err
	}
	return l.fallback.allow(key, limit, l.replicas, now)
}

// gcra returns limit's emission interval and tolerance in nanoseconds,
// as inmem does, within maxTolerance.
func gcra(limit tollgate.RateLimit) (interval, tolerance int64, err error) {
	if limit.Limit <= 0 || limit.Period <= 0 || limit.Burst < 0 {
		return 0, 0, fmt.Errorf("redis: invalid rate limit: %d per %v, burst %d", limit.Limit, limit.Period, limit.Burst)
	}
	burst := int64(limit.Burst)
	if burst == 0 {
		burst = int64(limit.Limit)
	}
	interval = int64(limit.Period) / int64(limit.Limit)
	if interval == 0 {
		return 0, 0, fmt.Errorf("redis: rate limit %d per %v is finer than one request per nanosecond", limit.Limit, limit.Period)
	}
	if burst >= maxTolerance/interval {
		return 0, 0, fmt.Errorf("redis: rate limit burst %d of %v intervals is over 52 days", burst, time.Duration(interval))
	}
	return interval, burst * interval, nil
}

// denyCache remembers rate keys known to be over their limit. A denied
// key's TAT cannot move before its RetryAfter has passed (only an
// admission moves it, and none fits before then), so until then the
// cached decision is the one Redis would give, to the nanosecond. An
// entry holds for the limit it was made with only.
//
// The cache is bounded by max; when full it drops the entries that have
// expired, then any. An empty cache costs one atomic load.
type denyCache struct {
	max int
	n   atomic.Int32
	mu  sync.Mutex
	m   map[string]denial
}

type denial struct {
	limit   tollgate.RateLimit
	until   int64 // Unix ns on the caller's clock
	resetAt time.Time
}

func (c *denyCache) get(key string, limit tollgate.RateLimit, now time.Time) (tollgate.RateDecision, bool) {
	if c.n.Load() == 0 {
		return tollgate.RateDecision{}, false
	}
	t := now.UnixNano()
	c.mu.Lock()
	e, ok := c.m[key]
	if ok && t >= e.until {
		delete(c.m, key)
		c.n.Store(int32(len(c.m)))
		ok = false
	}
	c.mu.Unlock()
	if !ok || e.limit != limit {
		return tollgate.RateDecision{}, false
	}
	return tollgate.RateDecision{
		Limit:      limit.Limit,
		ResetAt:    e.resetAt,
		RetryAfter: time.Duration(e.until - t),
	}, true
}

func (c *denyCache) put(key string, limit tollgate.RateLimit, d tollgate.RateDecision, now time.Time) {
	if c.max <= 0 {
		return
	}
	t := now.UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]denial)
	}
	if _, ok := c.m[key]; !ok && len(c.m) >= c.max {
		for k, e := range c.m {
			if e.until <= t {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < c.max {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[key] = denial{limit: limit, until: t + int64(d.RetryAfter), resetAt: d.ResetAt}
	c.n.Store(int32(len(c.m)))
}

// fallback is the GCRA a FailOpen limiter decides by while Redis is
// unreachable: inmem's arithmetic on a map in this process, each limit
// divided by the replicas. Full buckets are swept as it is used.
type fallback struct {
	mu   sync.Mutex
	tats map[string]int64 // Unix ns
	ops  int
}

// allow decides one request on key at limit divided by replicas.
func (f *fallback) allow(key string, limit tollgate.RateLimit, replicas int, now time.Time) (tollgate.RateDecision, error) {
	local := limit
	local.Limit = max(limit.Limit/replicas, 1)
	if limit.Burst > 0 {
		local.Burst = max(limit.Burst/replicas, 1)
	}
	interval, tolerance, err := gcra(local)
	if err != nil {
		return tollgate.RateDecision{}, err
	}
	t := now.UnixNano()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tats == nil {
		f.tats = make(map[string]int64)
	}
	if f.ops++; f.ops >= 1024 && f.ops >= len(f.tats) {
		f.ops = 0
		for k, tat := range f.tats {
			if tat <= t {
				delete(f.tats, k)
			}
		}
	}
	tat := max(f.tats[key], t)
	next := tat + interval
	if wait := next - tolerance - t; wait > 0 {
		d := tollgate.RateDecision{Limit: local.Limit, ResetAt: now.Add(time.Duration(tat - t)), RetryAfter: time.Duration(wait)}
		return d, tollgate.RateLimitExceeded(local, d.RetryAfter)
	}
	f.tats[key] = next
	return tollgate.RateDecision{
		Allowed:   true,
		Limit:     local.Limit,
		Remaining: int((tolerance - (next - t)) / interval),
		ResetAt:   now.Add(time.Duration(next - t)),
	}, nil
}
