package limitertest

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tollgate/tollgate"
)

// allow makes one rate check at now and returns the decision, checking
// that an admission comes without an error and a denial with a
// rate_limit_exceeded error whose RetryAfter matches the decision.
func (e *env) allow(t *testing.T, key string, limit tollgate.RateLimit, now time.Time) tollgate.RateDecision {
	t.Helper()
	d, err := e.l.AllowRate(e.ctx, key, limit, now)
	if d.Allowed {
		if err != nil {
			t.Fatalf("AllowRate: allowed with error %v", err)
		}
		if d.RetryAfter != 0 {
			t.Errorf("AllowRate: allowed with RetryAfter %v; want 0", d.RetryAfter)
		}
		return d
	}
	ce := catalogError(t, err, tollgate.CodeRateLimitExceeded)
	if ce.RetryAfter <= 0 || ce.RetryAfter != d.RetryAfter {
		t.Errorf("AllowRate: denied with error RetryAfter %v, decision RetryAfter %v; want equal and positive", ce.RetryAfter, d.RetryAfter)
	}
	if d.Remaining != 0 {
		t.Errorf("AllowRate: denied with Remaining %d; want 0", d.Remaining)
	}
	return d
}

// count makes n rate checks at now and returns how many were admitted.
func (e *env) count(t *testing.T, key string, limit tollgate.RateLimit, now time.Time, n int) int {
	t.Helper()
	admitted := 0
	for range n {
		if e.allow(t, key, limit, now).Allowed {
			admitted++
		}
	}
	return admitted
}

// wantDecision checks a decision against want.
func wantDecision(t *testing.T, what string, got, want tollgate.RateDecision) {
	t.Helper()
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("%s: decision mismatch (-got +want):\n%s", what, diff)
	}
}

func testRateBurst(t *testing.T, e *env) {
	if got := e.count(t, key(t, "a"), tollgate.PerMinute(100), e.base, 101); got != 100 {
		t.Errorf("100/min, 101 requests at one instant: %d admitted; want 100", got)
	}
	// Burst 0 means Limit.
	limit := tollgate.RateLimit{Limit: 10, Period: time.Minute}
	if got := e.count(t, key(t, "b"), limit, e.base, 20); got != 10 {
		t.Errorf("10/min burst 0, 20 requests at one instant: %d admitted; want 10", got)
	}
}

func testRateRemaining(t *testing.T, e *env) {
	k := key(t, "a")
	for want := 99; want >= 0; want-- {
		d := e.allow(t, k, tollgate.PerMinute(100), e.base)
		if !d.Allowed || d.Limit != 100 || d.Remaining != want {
			t.Fatalf("request %d: Allowed %v, Limit %d, Remaining %d; want true, 100, %d", 100-want, d.Allowed, d.Limit, d.Remaining, want)
		}
	}
	if d := e.allow(t, k, tollgate.PerMinute(100), e.base); d.Allowed || d.Limit != 100 || d.Remaining != 0 {
		t.Errorf("request 101: Allowed %v, Limit %d, Remaining %d; want false, 100, 0", d.Allowed, d.Limit, d.Remaining)
	}
}

// testRateDecision checks every field the X-RateLimit-* and Retry-After
// headers are made from, at known instants, on 60/min (one per second).
func testRateDecision(t *testing.T, e *env) {
	k := key(t, "a")
	limit := tollgate.PerMinute(60)
	wantDecision(t, "first at 0s", e.allow(t, k, limit, e.base),
		tollgate.RateDecision{Allowed: true, Limit: 60, Remaining: 59, ResetAt: e.at(time.Second)})
	if got := e.count(t, k, limit, e.base, 58); got != 58 {
		t.Fatalf("58 more at 0s: %d admitted", got)
	}
	wantDecision(t, "60th at 0s", e.allow(t, k, limit, e.base),
		tollgate.RateDecision{Allowed: true, Limit: 60, Remaining: 0, ResetAt: e.at(time.Minute)})
	wantDecision(t, "61st at 0s", e.allow(t, k, limit, e.base),
		tollgate.RateDecision{Limit: 60, ResetAt: e.at(time.Minute), RetryAfter: time.Second})

	_, err := e.l.AllowRate(e.ctx, k, limit, e.at(250*time.Millisecond))
	ce := catalogError(t, err, tollgate.CodeRateLimitExceeded)
	if ce.RetryAfter != 750*time.Millisecond || tollgate.RetryAfterSeconds(ce.RetryAfter) != 1 {
		t.Errorf("at 0.25s: error RetryAfter %v (%d s); want 750ms (1 s)", ce.RetryAfter, tollgate.RetryAfterSeconds(ce.RetryAfter))
	}
	wantDecision(t, "at 0.5s", e.allow(t, k, limit, e.at(500*time.Millisecond)),
		tollgate.RateDecision{Limit: 60, ResetAt: e.at(time.Minute), RetryAfter: 500 * time.Millisecond})

	wantDecision(t, "at 1s", e.allow(t, k, limit, e.at(time.Second)),
		tollgate.RateDecision{Allowed: true, Limit: 60, Remaining: 0, ResetAt: e.at(61 * time.Second)})
	wantDecision(t, "again at 1s", e.allow(t, k, limit, e.at(time.Second)),
		tollgate.RateDecision{Limit: 60, ResetAt: e.at(61 * time.Second), RetryAfter: time.Second})

	// Full again at ResetAt.
	wantDecision(t, "at 61s", e.allow(t, k, limit, e.at(61*time.Second)),
		tollgate.RateDecision{Allowed: true, Limit: 60, Remaining: 59, ResetAt: e.at(62 * time.Second)})
}

// testRateRetryAfterSeconds checks RetryAfter and the whole seconds it is
// rendered as, on 10/min (one per 6 s).
func testRateRetryAfterSeconds(t *testing.T, e *env) {
	k := key(t, "a")
	limit := tollgate.RateLimit{Limit: 10, Period: time.Minute}
	if got := e.count(t, k, limit, e.base, 10); got != 10 {
		t.Fatalf("10 at 0s: %d admitted", got)
	}
	for _, tt := range []struct {
		at          time.Duration
		wantRetry   time.Duration
		wantSeconds int
	}{
		{0, 6 * time.Second, 6},
		{1500 * time.Millisecond, 4500 * time.Millisecond, 5},
		{5 * time.Second, time.Second, 1},
		{5999 * time.Millisecond, time.Millisecond, 1},
	} {
		d, err := e.l.AllowRate(e.ctx, k, limit, e.at(tt.at))
		if d.Allowed {
			t.Fatalf("at %v: allowed", tt.at)
		}
		ce := catalogError(t, err, tollgate.CodeRateLimitExceeded)
		if d.RetryAfter != tt.wantRetry || ce.RetryAfter != tt.wantRetry {
			t.Errorf("at %v: RetryAfter %v (error %v); want %v", tt.at, d.RetryAfter, ce.RetryAfter, tt.wantRetry)
		}
		if got := tollgate.RetryAfterSeconds(ce.RetryAfter); got != tt.wantSeconds {
			t.Errorf("at %v: Retry-After %d s; want %d", tt.at, got, tt.wantSeconds)
		}
		if !d.ResetAt.Equal(e.at(time.Minute)) {
			t.Errorf("at %v: ResetAt %v; want %v", tt.at, d.ResetAt, e.at(time.Minute))
		}
	}
	if !e.allow(t, k, limit, e.at(6*time.Second)).Allowed {
		t.Errorf("at 6s: denied; want allowed")
	}
}

func testRateDenialConsumesNothing(t *testing.T, e *env) {
	k := key(t, "a")
	limit := tollgate.PerMinute(100) // one per 600 ms
	if got := e.count(t, k, limit, e.base, 100); got != 100 {
		t.Fatalf("100 at 0s: %d admitted", got)
	}
	for i := range 50 {
		now := e.at(time.Duration(i) * 10 * time.Millisecond)
		if d := e.allow(t, k, limit, now); d.Allowed {
			t.Fatalf("denial %d at %v: allowed", i, now.Sub(e.base))
		}
	}
	if got := e.count(t, k, limit, e.at(600*time.Millisecond), 5); got != 1 {
		t.Errorf("after 50 denials, 5 requests at 0.6s: %d admitted; want 1", got)
	}
}

func testRateRecovery(t *testing.T, e *env) {
	k := key(t, "a")
	limit := tollgate.PerMinute(100) // one per 600 ms
	if got := e.count(t, k, limit, e.base, 100); got != 100 {
		t.Fatalf("100 at 0s: %d admitted", got)
	}
	if got := e.count(t, k, limit, e.at(30*time.Second), 100); got != 50 {
		t.Errorf("half a period later: %d admitted; want 50", got)
	}
	if got := e.count(t, k, limit, e.at(36*time.Second), 100); got != 10 {
		t.Errorf("6 s later: %d admitted; want 10", got)
	}
	// The bucket was last at its limit at 36 s: full a period later.
	wantDecision(t, "at 96s", e.allow(t, k, limit, e.at(96*time.Second)),
		tollgate.RateDecision{Allowed: true, Limit: 100, Remaining: 99, ResetAt: e.at(96*time.Second + 600*time.Millisecond)})
	if got := e.count(t, k, limit, e.at(96*time.Second), 150); got != 99 {
		t.Errorf("rest at 96s: %d admitted; want 99", got)
	}
}

func testRateBurstBelowLimit(t *testing.T, e *env) {
	k := key(t, "a")
	limit := tollgate.RateLimit{Limit: 60, Period: time.Minute, Burst: 5}
	wantDecision(t, "first at 0s", e.allow(t, k, limit, e.base),
		tollgate.RateDecision{Allowed: true, Limit: 60, Remaining: 4, ResetAt: e.at(time.Second)})
	if got := e.count(t, k, limit, e.base, 10); got != 4 {
		t.Errorf("burst 5 at 0s: %d more admitted; want 4", got)
	}
	wantDecision(t, "denied at 0s", e.allow(t, k, limit, e.base),
		tollgate.RateDecision{Limit: 60, ResetAt: e.at(5 * time.Second), RetryAfter: time.Second})
	if got := e.count(t, k, limit, e.at(time.Second), 10); got != 1 {
		t.Errorf("at 1s: %d admitted; want 1", got)
	}
	if got := e.count(t, k, limit, e.at(time.Minute), 10); got != 5 {
		t.Errorf("at 60s: %d admitted; want the burst, 5", got)
	}
}

func testRateKeysIndependent(t *testing.T, e *env) {
	a, b := key(t, "a"), key(t, "b")
	limit := tollgate.PerMinute(10)
	if got := e.count(t, a, limit, e.base, 11); got != 10 {
		t.Fatalf("key a: %d admitted; want 10", got)
	}
	if d := e.allow(t, b, limit, e.base); !d.Allowed || d.Remaining != 9 {
		t.Errorf("key b after a is exhausted: Allowed %v, Remaining %d; want true, 9", d.Allowed, d.Remaining)
	}
	if got := e.count(t, b, limit, e.base, 20); got != 9 {
		t.Errorf("key b: %d more admitted; want 9", got)
	}
	if e.allow(t, a, limit, e.base).Allowed {
		t.Errorf("key a allowed after b's requests; want denied")
	}
}

// concurrently makes n rate checks at once at now and returns the
// decisions that admitted a request.
func (e *env) concurrently(t *testing.T, key string, limit tollgate.RateLimit, now time.Time, n int) []tollgate.RateDecision {
	t.Helper()
	var (
		start    = make(chan struct{})
		wg       sync.WaitGroup
		mu       sync.Mutex
		admitted []tollgate.RateDecision
		denied   atomic.Int64
	)
	for range n {
		wg.Go(func() {
			<-start
			d, err := e.l.AllowRate(e.ctx, key, limit, now)
			switch {
			case d.Allowed && err == nil:
				mu.Lock()
				admitted = append(admitted, d)
				mu.Unlock()
			case !d.Allowed && tollgate.ErrorCode(err) == tollgate.CodeRateLimitExceeded:
				denied.Add(1)
			default:
				t.Errorf("AllowRate: Allowed %v, error %v", d.Allowed, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if got := len(admitted) + int(denied.Load()); got != n && !t.Failed() {
		t.Errorf("%d of %d goroutines decided", got, n)
	}
	return admitted
}

func testRateConcurrent(t *testing.T, e *env) {
	k := key(t, "a")
	limit := tollgate.PerMinute(100)
	admitted := e.concurrently(t, k, limit, e.base, 1000)
	if len(admitted) != 100 {
		t.Fatalf("1,000 goroutines on 100/min: %d admitted; want 100", len(admitted))
	}
	// Each admission saw its own Remaining: 99 down to 0, once each.
	seen := make([]bool, 100)
	for _, d := range admitted {
		if d.Remaining < 0 || d.Remaining >= 100 || seen[d.Remaining] {
			t.Errorf("Remaining %d out of range or seen twice", d.Remaining)
			continue
		}
		seen[d.Remaining] = true
	}
	if got := len(e.concurrently(t, k, limit, e.at(600*time.Millisecond), 1000)); got != 1 {
		t.Errorf("1,000 goroutines 0.6s later: %d admitted; want 1", got)
	}
}

func testRateMillionPerMinute(t *testing.T, e *env) {
	// One per 60 µs.
	k := key(t, "a")
	limit := tollgate.PerMinute(1_000_000)
	if got := e.count(t, k, limit, e.base, 999); got != 999 {
		t.Fatalf("999 at 0s: %d admitted", got)
	}
	wantDecision(t, "1,000th at 0s", e.allow(t, k, limit, e.base),
		tollgate.RateDecision{Allowed: true, Limit: 1_000_000, Remaining: 999_000, ResetAt: e.at(60 * time.Millisecond)})

	// The same rate with a burst small enough to exhaust.
	k = key(t, "burst")
	limit = tollgate.RateLimit{Limit: 1_000_000, Period: time.Minute, Burst: 1000}
	if got := len(e.concurrently(t, k, limit, e.base, 1100)); got != 1000 {
		t.Fatalf("1,100 goroutines on burst 1,000: %d admitted; want 1000", got)
	}
	wantDecision(t, "denied at 0s", e.allow(t, k, limit, e.base),
		tollgate.RateDecision{Limit: 1_000_000, ResetAt: e.at(60 * time.Millisecond), RetryAfter: 60 * time.Microsecond})
	if got := e.count(t, k, limit, e.at(60*time.Microsecond), 10); got != 1 {
		t.Errorf("at 60µs: %d admitted; want 1", got)
	}
	// By 1 ms, 16 intervals have passed: 15 more than at 60 µs.
	if got := e.count(t, k, limit, e.at(time.Millisecond), 100); got != 15 {
		t.Errorf("at 1ms: %d admitted; want 15", got)
	}
}

func testRateInvalidLimit(t *testing.T, e *env) {
	for _, limit := range []tollgate.RateLimit{
		{Limit: 0, Period: time.Minute},
		{Limit: -1, Period: time.Minute},
		{Limit: 10, Period: 0},
		{Limit: 10, Period: -time.Second},
		{Limit: 10, Period: time.Minute, Burst: -1},
	} {
		d, err := e.l.AllowRate(e.ctx, key(t, "a"), limit, e.base)
		if got := tollgate.ErrorCode(err); got != tollgate.CodeInternal {
			t.Errorf("%+v: error code %q (%v); want %q", limit, got, err, tollgate.CodeInternal)
		}
		if d.Allowed {
			t.Errorf("%+v: allowed", limit)
		}
	}
}
