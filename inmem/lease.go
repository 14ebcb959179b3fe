package inmem

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
)

// leaseGroup is the leases held for one key. It is guarded by its shard's
// lock and usually small (the key's concurrency limit at most).
type leaseGroup struct {
	slots []slot
}

// slot is one lease: its ID and its expiry in Unix nanoseconds.
type slot struct {
	id      uint64
	expires int64
}

// pruneLocked drops the leases that have expired at now: a lease is live
// strictly before its expiry.
func (g *leaseGroup) pruneLocked(now int64) {
	live := g.slots[:0]
	for _, s := range g.slots {
		if s.expires > now {
			live = append(live, s)
		}
	}
	clear(g.slots[len(live):])
	g.slots = live
}

// indexLocked returns the index of lease id, or -1.
func (g *leaseGroup) indexLocked(id uint64) int {
	for i, s := range g.slots {
		if s.id == id {
			return i
		}
	}
	return -1
}

// removeLocked drops the lease at index i.
func (g *leaseGroup) removeLocked(i int) {
	last := len(g.slots) - 1
	g.slots[i] = g.slots[last]
	g.slots = g.slots[:last]
}

// Acquire takes one of limit in-flight slots for key; see tollgate.Limiter.
// Leases that have expired at now do not count. A limit of 0 admits
// nothing; a negative limit is an internal error (the caller does not call
// Acquire at all for an unlimited key).
func (l *Limiter) Acquire(_ context.Context, key string, limit int, now time.Time) (tollgate.Lease, error) {
	if limit < 0 {
		return tollgate.Lease{}, fmt.Errorf("inmem: invalid concurrency limit %d", limit)
	}
	ttl := l.ttl()
	t := now.UnixNano()

	s := l.shard(key)
	s.mu.Lock()
	g := s.leases[key]
	if g != nil {
		g.pruneLocked(t)
	}
	if limit == 0 || (g != nil && len(g.slots) >= limit) {
		s.tickLocked(t)
		s.mu.Unlock()
		return tollgate.Lease{}, &tollgate.Error{
			Code:       tollgate.CodeConcurrencyLimitExceeded,
			RetryAfter: time.Second,
		}
	}
	if g == nil {
		if s.leases == nil {
			s.leases = make(map[string]*leaseGroup)
		}
		g = &leaseGroup{}
		s.leases[strings.Clone(key)] = g
	}
	id := l.lastID.Add(1)
	g.slots = append(g.slots, slot{id: id, expires: t + int64(ttl)})
	s.tickLocked(t)
	s.mu.Unlock()

	return tollgate.Lease{Key: key, ID: strconv.FormatUint(id, 36), ExpiresAt: now.Add(ttl)}, nil
}

// Release frees lease. Releasing an unknown, expired or already released
// lease does nothing.
func (l *Limiter) Release(_ context.Context, lease tollgate.Lease) error {
	id, err := strconv.ParseUint(lease.ID, 36, 64)
	if err != nil {
		return nil // not one of ours, so not held
	}
	s := l.shard(lease.Key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.leases[lease.Key]; g != nil {
		if i := g.indexLocked(id); i >= 0 {
			g.removeLocked(i)
		}
	}
	return nil
}

// Heartbeat extends lease to now plus the TTL. It returns a not_found
// error when the lease has expired at now or was released.
func (l *Limiter) Heartbeat(_ context.Context, lease tollgate.Lease, now time.Time) (tollgate.Lease, error) {
	id, err := strconv.ParseUint(lease.ID, 36, 64)
	if err != nil {
		return tollgate.Lease{}, tollgate.NewError(tollgate.CodeNotFound)
	}
	ttl := l.ttl()
	t := now.UnixNano()

	s := l.shard(lease.Key)
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.leases[lease.Key]
	if g == nil {
		return tollgate.Lease{}, tollgate.NewError(tollgate.CodeNotFound)
	}
	i := g.indexLocked(id)
	if i < 0 {
		return tollgate.Lease{}, tollgate.NewError(tollgate.CodeNotFound)
	}
	if g.slots[i].expires <= t {
		g.removeLocked(i)
		return tollgate.Lease{}, tollgate.NewError(tollgate.CodeNotFound)
	}
	g.slots[i].expires = max(g.slots[i].expires, t+int64(ttl))
	lease.ExpiresAt = now.Add(time.Duration(g.slots[i].expires - t))
	return lease, nil
}

// InFlight reports the leases held for key at now.
func (l *Limiter) InFlight(_ context.Context, key string, now time.Time) (int, error) {
	t := now.UnixNano()
	s := l.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	if g := s.leases[key]; g != nil {
		for _, sl := range g.slots {
			if sl.expires > t {
				n++
			}
		}
	}
	return n, nil
}
