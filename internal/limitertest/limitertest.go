// Package limitertest is the contract every tollgate.Limiter and
// tollgate.Quota passes: inmem on one node, redis on a cluster. A
// backend's test calls Run for its limiter and RunQuota for its quota.
//
// Each suite uses only its interface. Time is a parameter: every call
// passes an instant the test chooses, so nothing sleeps, and the backend
// must decide by the time it is given. Each subtest uses keys (and orgs)
// of its own, so a backend shared between subtests (and between runs,
// like a Redis server) is fine.
package limitertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// Options describes the limiter under test.
type Options struct {
	// New returns the limiter for one subtest. It may return the same
	// limiter, or one on the same backend, every time. Required.
	New func(t *testing.T) tollgate.Limiter
	// LeaseTTL is the lease TTL the limiter was built with. Required.
	LeaseTTL time.Duration
}

// Run runs the contract suite against the limiters opts.New returns.
func Run(t *testing.T, opts Options) {
	if opts.New == nil {
		t.Fatal("limitertest: Options.New is nil")
	}
	if opts.LeaseTTL <= 0 {
		t.Fatalf("limitertest: Options.LeaseTTL is %v; want the limiter's positive lease TTL", opts.LeaseTTL)
	}
	for _, tt := range []struct {
		name string
		test func(*testing.T, *env)
	}{
		{"RateBurst", testRateBurst},
		{"RateRemaining", testRateRemaining},
		{"RateDecision", testRateDecision},
		{"RateRetryAfterSeconds", testRateRetryAfterSeconds},
		{"RateDenialConsumesNothing", testRateDenialConsumesNothing},
		{"RateRecovery", testRateRecovery},
		{"RateBurstBelowLimit", testRateBurstBelowLimit},
		{"RateKeysIndependent", testRateKeysIndependent},
		{"RateConcurrent", testRateConcurrent},
		{"RateMillionPerMinute", testRateMillionPerMinute},
		{"RateInvalidLimit", testRateInvalidLimit},
		{"LeaseAcquireUpToLimit", testLeaseAcquireUpToLimit},
		{"LeaseZeroLimit", testLeaseZeroLimit},
		{"LeaseRelease", testLeaseRelease},
		{"LeaseDoubleRelease", testLeaseDoubleRelease},
		{"LeaseReleaseUnknown", testLeaseReleaseUnknown},
		{"LeaseExpiry", testLeaseExpiry},
		{"LeaseHeartbeat", testLeaseHeartbeat},
		{"LeaseHeartbeatReleased", testLeaseHeartbeatReleased},
		{"LeaseHeartbeatExpired", testLeaseHeartbeatExpired},
		{"LeaseKeysIndependent", testLeaseKeysIndependent},
		{"LeaseConcurrent", testLeaseConcurrent},
		{"RateAndLeaseSeparate", testRateAndLeaseSeparate},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.test(t, &env{
				ctx:  t.Context(),
				l:    opts.New(t),
				ttl:  opts.LeaseTTL,
				base: time.Now().UTC().Truncate(time.Second),
			})
		})
	}
}

// env is one subtest's limiter, lease TTL and base instant.
type env struct {
	ctx  context.Context
	l    tollgate.Limiter
	ttl  time.Duration
	base time.Time
}

// at returns the instant d after the base.
func (e *env) at(d time.Duration) time.Time { return e.base.Add(d) }

// key returns a key no other subtest or run uses.
func key(t *testing.T, name string) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "limitertest:" + t.Name() + ":" + name + ":" + hex.EncodeToString(b[:])
}

// catalogError returns err as a *tollgate.Error with code, failing the
// test when it is not one.
func catalogError(t *testing.T, err error, code tollgate.Code) *tollgate.Error {
	t.Helper()
	if got := tollgate.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (%v); want %q", got, err, code)
	}
	var e *tollgate.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *tollgate.Error", err, err)
	}
	return e
}
