package limitertest

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// acquire takes a lease that must be granted, and checks it.
func (e *env) acquire(t *testing.T, key string, limit int, now time.Time) tollgate.Lease {
	t.Helper()
	lease, err := e.l.Acquire(e.ctx, key, limit, now)
	if err != nil {
		t.Fatalf("Acquire(limit %d) at %v: %v", limit, now.Sub(e.base), err)
	}
	if lease.Key != key || lease.ID == "" || !lease.ExpiresAt.Equal(now.Add(e.ttl)) {
		t.Errorf("Acquire at %v: lease %+v; want key %q, an ID, ExpiresAt +%v", now.Sub(e.base), lease, key, e.ttl)
	}
	return lease
}

// refuse tries to take a lease that must be refused with
// concurrency_limit_exceeded and a RetryAfter of 1 s.
func (e *env) refuse(t *testing.T, key string, limit int, now time.Time) {
	t.Helper()
	lease, err := e.l.Acquire(e.ctx, key, limit, now)
	if err == nil {
		t.Fatalf("Acquire(limit %d) at %v: granted %+v; want concurrency_limit_exceeded", limit, now.Sub(e.base), lease)
	}
	ce := catalogError(t, err, tollgate.CodeConcurrencyLimitExceeded)
	if ce.RetryAfter != time.Second || tollgate.RetryAfterSeconds(ce.RetryAfter) != 1 {
		t.Errorf("Acquire refused with RetryAfter %v; want 1s", ce.RetryAfter)
	}
}

func (e *env) release(t *testing.T, lease tollgate.Lease) {
	t.Helper()
	if err := e.l.Release(e.ctx, lease); err != nil {
		t.Errorf("Release(%+v): %v", lease, err)
	}
}

// wantInFlight checks the leases held for key at now.
func (e *env) wantInFlight(t *testing.T, key string, now time.Time, want int) {
	t.Helper()
	got, err := e.l.InFlight(e.ctx, key, now)
	if err != nil {
		t.Fatalf("InFlight: %v", err)
	}
	if got != want {
		t.Errorf("InFlight at %v = %d; want %d", now.Sub(e.base), got, want)
	}
}

func testLeaseAcquireUpToLimit(t *testing.T, e *env) {
	k := key(t, "a")
	e.wantInFlight(t, k, e.base, 0)
	ids := map[string]bool{}
	for i := range 3 {
		lease := e.acquire(t, k, 3, e.base)
		if ids[lease.ID] {
			t.Errorf("lease %d: ID %q reused", i, lease.ID)
		}
		ids[lease.ID] = true
		e.wantInFlight(t, k, e.base, i+1)
	}
	e.refuse(t, k, 3, e.base)
	e.refuse(t, k, 3, e.at(time.Second))
	e.wantInFlight(t, k, e.base, 3)
	// A higher limit admits more on the same key.
	e.acquire(t, k, 4, e.base)
	e.wantInFlight(t, k, e.base, 4)
}

func testLeaseZeroLimit(t *testing.T, e *env) {
	k := key(t, "a")
	e.refuse(t, k, 0, e.base)
	e.wantInFlight(t, k, e.base, 0)
}

func testLeaseRelease(t *testing.T, e *env) {
	k := key(t, "a")
	a := e.acquire(t, k, 2, e.base)
	e.acquire(t, k, 2, e.base)
	e.refuse(t, k, 2, e.base)
	e.release(t, a)
	e.wantInFlight(t, k, e.base, 1)
	e.acquire(t, k, 2, e.base)
	e.refuse(t, k, 2, e.base)
	e.wantInFlight(t, k, e.base, 2)
}

func testLeaseDoubleRelease(t *testing.T, e *env) {
	k := key(t, "a")
	a := e.acquire(t, k, 2, e.base)
	e.acquire(t, k, 2, e.base)
	e.release(t, a)
	e.release(t, a)
	e.wantInFlight(t, k, e.base, 1)
	// The second release freed nothing: one slot came back, not two.
	e.acquire(t, k, 2, e.base)
	e.refuse(t, k, 2, e.base)
	e.release(t, a)
	e.wantInFlight(t, k, e.base, 2)
}

func testLeaseReleaseUnknown(t *testing.T, e *env) {
	k := key(t, "a")
	held := e.acquire(t, k, 1, e.base)
	e.release(t, tollgate.Lease{Key: k, ID: "not-a-lease"})
	e.release(t, tollgate.Lease{Key: k})
	e.release(t, tollgate.Lease{Key: key(t, "b"), ID: held.ID})
	e.release(t, tollgate.Lease{})
	e.wantInFlight(t, k, e.base, 1)
}

func testLeaseExpiry(t *testing.T, e *env) {
	k := key(t, "a")
	a := e.acquire(t, k, 2, e.base)
	e.acquire(t, k, 2, e.base)
	before := e.at(e.ttl - time.Nanosecond)
	e.refuse(t, k, 2, before)
	e.wantInFlight(t, k, before, 2)

	// A holder that never releases loses its slot at ExpiresAt.
	expiry := e.at(e.ttl)
	e.wantInFlight(t, k, expiry, 0)
	c := e.acquire(t, k, 2, expiry)
	e.acquire(t, k, 2, expiry)
	e.refuse(t, k, 2, expiry)
	// Releasing the expired lease frees none of the new ones.
	e.release(t, a)
	e.wantInFlight(t, k, expiry, 2)
	e.release(t, c)
	e.wantInFlight(t, k, expiry, 1)
}

func testLeaseHeartbeat(t *testing.T, e *env) {
	k := key(t, "a")
	a := e.acquire(t, k, 1, e.base)
	half := e.at(e.ttl / 2)
	b, err := e.l.Heartbeat(e.ctx, a, half)
	if err != nil {
		t.Fatalf("Heartbeat at TTL/2: %v", err)
	}
	if b.Key != a.Key || b.ID != a.ID || !b.ExpiresAt.Equal(half.Add(e.ttl)) {
		t.Errorf("Heartbeat at TTL/2: %+v; want %+v expiring at +%v", b, a, e.ttl/2+e.ttl)
	}
	// Alive past the original TTL.
	e.wantInFlight(t, k, e.at(e.ttl), 1)
	e.refuse(t, k, 1, e.at(e.ttl))
	e.refuse(t, k, 1, b.ExpiresAt.Add(-time.Nanosecond))

	// A second heartbeat, from the returned lease, extends it again.
	c, err := e.l.Heartbeat(e.ctx, b, e.at(e.ttl))
	if err != nil {
		t.Fatalf("second Heartbeat at TTL: %v", err)
	}
	if !c.ExpiresAt.Equal(e.at(2 * e.ttl)) {
		t.Errorf("second Heartbeat: ExpiresAt +%v; want +%v", c.ExpiresAt.Sub(e.base), 2*e.ttl)
	}
	e.refuse(t, k, 1, b.ExpiresAt)
	e.wantInFlight(t, k, c.ExpiresAt, 0)
	e.acquire(t, k, 1, c.ExpiresAt)
}

func testLeaseHeartbeatReleased(t *testing.T, e *env) {
	k := key(t, "a")
	a := e.acquire(t, k, 1, e.base)
	e.release(t, a)
	_, err := e.l.Heartbeat(e.ctx, a, e.at(time.Second))
	catalogError(t, err, tollgate.CodeNotFound)
	e.wantInFlight(t, k, e.at(time.Second), 0)

	_, err = e.l.Heartbeat(e.ctx, tollgate.Lease{Key: k, ID: "not-a-lease"}, e.base)
	catalogError(t, err, tollgate.CodeNotFound)
}

func testLeaseHeartbeatExpired(t *testing.T, e *env) {
	k := key(t, "a")
	a := e.acquire(t, k, 1, e.base)
	_, err := e.l.Heartbeat(e.ctx, a, e.at(e.ttl))
	catalogError(t, err, tollgate.CodeNotFound)
	e.wantInFlight(t, k, e.at(e.ttl), 0)
	e.acquire(t, k, 1, e.at(e.ttl))
}

func testLeaseKeysIndependent(t *testing.T, e *env) {
	a, b := key(t, "a"), key(t, "b")
	e.acquire(t, a, 1, e.base)
	e.refuse(t, a, 1, e.base)
	e.acquire(t, b, 1, e.base)
	e.wantInFlight(t, a, e.base, 1)
	e.wantInFlight(t, b, e.base, 1)
}

func testLeaseConcurrent(t *testing.T, e *env) {
	k := key(t, "a")
	var (
		start   = make(chan struct{})
		wg      sync.WaitGroup
		mu      sync.Mutex
		granted []tollgate.Lease
		refused atomic.Int64
	)
	for range 200 {
		wg.Go(func() {
			<-start
			lease, err := e.l.Acquire(e.ctx, k, 20, e.base)
			switch tollgate.ErrorCode(err) {
			case "":
				mu.Lock()
				granted = append(granted, lease)
				mu.Unlock()
			case tollgate.CodeConcurrencyLimitExceeded:
				refused.Add(1)
			default:
				t.Errorf("Acquire: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if len(granted) != 20 || refused.Load() != 180 {
		t.Fatalf("200 goroutines on limit 20: %d granted, %d refused; want 20, 180", len(granted), refused.Load())
	}
	ids := map[string]bool{}
	for _, lease := range granted {
		if ids[lease.ID] {
			t.Errorf("lease ID %q granted twice", lease.ID)
		}
		ids[lease.ID] = true
	}
	e.wantInFlight(t, k, e.base, 20)

	for _, lease := range granted {
		wg.Go(func() {
			if err := e.l.Release(e.ctx, lease); err != nil {
				t.Errorf("Release: %v", err)
			}
		})
	}
	wg.Wait()
	e.wantInFlight(t, k, e.base, 0)
}

// testRateAndLeaseSeparate checks that a key's rate bucket and its leases
// do not share state.
func testRateAndLeaseSeparate(t *testing.T, e *env) {
	k := key(t, "a")
	if !e.allow(t, k, tollgate.PerMinute(1), e.base).Allowed {
		t.Fatal("first request on 1/min denied")
	}
	e.acquire(t, k, 1, e.base)
	if e.allow(t, k, tollgate.PerMinute(1), e.base).Allowed {
		t.Error("second request on 1/min allowed")
	}
	e.refuse(t, k, 1, e.base)
}
