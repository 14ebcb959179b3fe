package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/tollgate/tollgate"
)

// Acquire takes one of limit in-flight slots for key; see
// tollgate.Limiter. Leases that have expired at now do not count. A limit
// of 0 admits nothing; a negative limit is an internal error. While Redis
// is unreachable Acquire refuses with overloaded.
func (l *Limiter) Acquire(ctx context.Context, key string, limit int, now time.Time) (tollgate.Lease, error) {
	if limit < 0 {
		return tollgate.Lease{}, fmt.Errorf("redis: invalid concurrency limit %d", limit)
	}
	id := l.leaseID()
	s, ns := l.clock(now)
	v, err := l.run(ctx, acquireScript, []string{l.leaseKey(key)},
		s, ns, strconv.FormatInt(int64(l.ttl), 10), strconv.Itoa(limit), id)
	if err != nil {
		return tollgate.Lease{}, err
	}
	if n, _ := v.(int64); n != 1 {
		return tollgate.Lease{}, concurrencyError()
	}
	return tollgate.Lease{Key: key, ID: id, ExpiresAt: now.Add(l.ttl)}, nil
}

// leaseID returns an ID no other lease of any Limiter has (with
// overwhelming probability: this Limiter's 48 random bits, then a
// counter).
func (l *Limiter) leaseID() string {
	return l.idPrefix + strconv.FormatUint(l.lastID.Add(1), 36)
}

func concurrencyError() error {
	return &tollgate.Error{Code: tollgate.CodeConcurrencyLimitExceeded, RetryAfter: time.Second}
}

// Release frees lease. Releasing an unknown, expired or already released
// lease does nothing.
func (l *Limiter) Release(ctx context.Context, lease tollgate.Lease) error {
	if lease.ID == "" {
		return nil
	}
	return l.do(ctx, func(ctx context.Context) error {
		return l.client.ZRem(ctx, l.leaseKey(lease.Key), lease.ID).Err()
	})
}

// Heartbeat extends lease to now plus the TTL (never shortening it). It
// returns a not_found error when the lease has expired at now or was
// released.
func (l *Limiter) Heartbeat(ctx context.Context, lease tollgate.Lease, now time.Time) (tollgate.Lease, error) {
	s, ns := l.clock(now)
	v, err := l.run(ctx, heartbeatScript, []string{l.leaseKey(lease.Key)},
		s, ns, strconv.FormatInt(int64(l.ttl), 10), lease.ID)
	if err != nil {
		return tollgate.Lease{}, err
	}
	r, err := asReply(v)
	if err != nil {
		return tollgate.Lease{}, err
	}
	if r.int(0) != 1 {
		return tollgate.Lease{}, tollgate.NewError(tollgate.CodeNotFound)
	}
	// The expiry is now + TTL unless the lease already held a later one.
	lease.ExpiresAt = now.Add(l.ttl + time.Duration(r.int(1)-r.int(2))*time.Millisecond)
	return lease, nil
}

// InFlight reports the leases held for key at now.
func (l *Limiter) InFlight(ctx context.Context, key string, now time.Time) (int, error) {
	s, ns := l.clock(now)
	v, err := l.run(ctx, inFlightScript, []string{l.leaseKey(key)}, s, ns)
	if err != nil {
		return 0, err
	}
	n, _ := v.(int64)
	return int(n), nil
}
