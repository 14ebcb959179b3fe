package redis

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/tcpproxy"
)

// quiet drops go-redis's log lines (a failed dial each time the breaker
// tests mean one to fail).
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	goredis.SetLogger(quiet{})
	os.Exit(m.Run())
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// offline returns a Limiter on addr, built without the ping New makes.
func offline(t *testing.T, addr string, opts Options) *Limiter {
	t.Helper()
	l, err := newLimiter(&goredis.Options{Addr: addr}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// wantUnavailable checks that err is overloaded because Redis is
// unreachable, with a Retry-After of at least a second.
func wantUnavailable(t *testing.T, what string, err error) *tollgate.Error {
	t.Helper()
	ce := tollgate.AsError(err)
	if ce.Code != tollgate.CodeOverloaded || !errors.Is(err, ErrUnavailable) || ce.RetryAfter < time.Second {
		t.Errorf("%s: %v (retry after %v); want overloaded, ErrUnavailable, retry after 1s or more", what, err, ce.RetryAfter)
	}
	return ce
}

// TestBreakerClosedPort points limiters at a port nothing listens on:
// the breaker opens, rate checks follow RateFailure, everything else
// fails closed, and an open breaker answers at once.
func TestBreakerClosedPort(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	limit := tollgate.PerMinute(10)

	t.Run("FailClosed", func(t *testing.T) {
		l := offline(t, closedAddr(t), Options{RateFailure: FailClosed, BreakerThreshold: 3, BreakerCooldown: time.Minute})
		for i := range 3 {
			if l.br.open() {
				t.Fatalf("breaker open after %d failures; want 3", i)
			}
			d, err := l.AllowRate(ctx, "k", limit, now)
			wantUnavailable(t, "AllowRate", err)
			if d != (tollgate.RateDecision{}) {
				t.Errorf("AllowRate failed closed with decision %+v; want the zero value", d)
			}
		}
		if !l.br.open() {
			t.Fatal("breaker closed after 3 failures")
		}
		// Open, calls fail without trying: the Retry-After is the rest of
		// the cooldown.
		start := time.Now()
		for range 1000 {
			_, err := l.AllowRate(ctx, "k", limit, now)
			if ce := wantUnavailable(t, "AllowRate", err); ce.RetryAfter < 59*time.Second {
				t.Fatalf("RetryAfter %v with the breaker open for a minute; want about a minute", ce.RetryAfter)
			}
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("1000 calls on an open breaker took %v; want them at once", d)
		}
		testFailsClosed(t, l, now)
		if err := l.Ready(ctx); err == nil {
			t.Error("Ready with the breaker open: nil")
		}
	})

	t.Run("FailOpen", func(t *testing.T) {
		l := offline(t, closedAddr(t), Options{Replicas: 4, BreakerThreshold: 3, BreakerCooldown: time.Minute})
		// Whether Redis failed or the breaker is open, the local limit is
		// 10/4 = 2 a minute: the two first are admitted, the third waits
		// its 30 s.
		for i := range 2 {
			d, err := l.AllowRate(ctx, "k", limit, now)
			if err != nil || !d.Allowed || d.Limit != 2 || d.Remaining != 1-i {
				t.Fatalf("request %d on a dead Redis: %+v, %v; want admitted locally at limit 2", i+1, d, err)
			}
		}
		d, err := l.AllowRate(ctx, "k", limit, now)
		ce := tollgate.AsError(err)
		if ce.Code != tollgate.CodeRateLimitExceeded || d.Allowed || d.RetryAfter != 30*time.Second || ce.RetryAfter != 30*time.Second {
			t.Errorf("third request: %+v, %v; want rate_limit_exceeded, retry after 30s", d, err)
		}
		// Admit's rate step shares the local bucket.
		got, err := l.Admit(ctx, tollgate.Admission{RateKey: "k", Rate: limit}, now)
		if tollgate.ErrorCode(err) != tollgate.CodeRateLimitExceeded || got.Rate.Allowed {
			t.Errorf("Admit on a spent local bucket: %+v, %v; want rate_limit_exceeded", got, err)
		}
		got, err = l.Admit(ctx, tollgate.Admission{RateKey: "j", Rate: limit}, now)
		if err != nil || !got.Rate.Allowed {
			t.Errorf("Admit, rate step only: %+v, %v; want admitted locally", got, err)
		}
		if !l.br.open() {
			t.Fatal("breaker closed after 5 failures")
		}
		// A limit under the replicas is 1, never 0.
		d, err = l.AllowRate(ctx, "small", tollgate.PerMinute(3), now)
		if err != nil || d.Limit != 1 {
			t.Errorf("3/min over 4 replicas: %+v, %v; want admitted at limit 1", d, err)
		}
		// Anything but the rate fails closed, after a rate step that admits.
		got, err = l.Admit(ctx, tollgate.Admission{RateKey: "i", Rate: limit, LeaseKey: "i", Concurrency: 1}, now)
		wantUnavailable(t, "Admit with a lease", err)
		if !got.Rate.Allowed || got.Lease != nil {
			t.Errorf("Admit with a lease on a dead Redis: %+v; want the rate decision and no lease", got)
		}
		testFailsClosed(t, l, now)
	})
}

// testFailsClosed checks that every call but a rate check refuses with
// overloaded while Redis is unreachable.
func testFailsClosed(t *testing.T, l *Limiter, now time.Time) {
	ctx := context.Background()
	b := tollgate.Budget{OrgID: "o", Model: "m"}
	r := tollgate.Reservation{OrgID: "o", Model: "m", Period: "2026-11", Credits: 1}
	lease := tollgate.Lease{Key: "k", ID: "x"}
	_, err := l.Reserve(ctx, b, 1, 1, now)
	wantUnavailable(t, "Reserve", err)
	wantUnavailable(t, "Settle", l.Settle(ctx, r, 1, 1))
	wantUnavailable(t, "Finish", l.Finish(ctx, &r, 1, 1, &lease))
	wantUnavailable(t, "Load", l.Load(ctx, nil))
	_, err = l.Balance(ctx, "o", now)
	wantUnavailable(t, "Balance", err)
	_, err = l.Acquire(ctx, "k", 1, now)
	wantUnavailable(t, "Acquire", err)
	wantUnavailable(t, "Release", l.Release(ctx, lease))
	_, err = l.Heartbeat(ctx, lease, now)
	wantUnavailable(t, "Heartbeat", err)
	_, err = l.InFlight(ctx, "k", now)
	wantUnavailable(t, "InFlight", err)
	got, err := l.Admit(ctx, tollgate.Admission{Budget: &b, Credits: 1}, now)
	wantUnavailable(t, "Admit", err)
	if got.Reservation != nil {
		t.Errorf("Admit on a dead Redis: reservation %+v", got.Reservation)
	}
	_, err = l.Loaded(ctx)
	wantUnavailable(t, "Loaded", err)
}

// TestBreakerTimeout points a limiter at a server that accepts and never
// answers: each call waits no longer than the timeout, and once the
// breaker is open no call waits at all.
func TestBreakerTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(io.Discard, c)
			}()
		}
	}()

	ctx := context.Background()
	l := offline(t, ln.Addr().String(), Options{RateFailure: FailClosed, BreakerThreshold: 3, BreakerCooldown: time.Minute})
	for range 3 {
		start := time.Now()
		_, err := l.AllowRate(ctx, "k", tollgate.PerMinute(10), time.Now())
		d := time.Since(start)
		wantUnavailable(t, "AllowRate on a silent server", err)
		if d < DefaultTimeout-10*time.Millisecond || d > 3*DefaultTimeout {
			t.Errorf("call on a silent server took %v; want about the %v timeout", d, DefaultTimeout)
		}
	}
	if !l.br.open() {
		t.Fatal("breaker closed after 3 timeouts")
	}
	var slowest time.Duration
	for range 100 {
		start := time.Now()
		_, err := l.Reserve(ctx, tollgate.Budget{OrgID: "o"}, 1, 1, time.Now())
		slowest = max(slowest, time.Since(start))
		wantUnavailable(t, "Reserve with the breaker open", err)
	}
	if slowest > DefaultTimeout/10 {
		t.Errorf("slowest call with the breaker open took %v; want well under the %v timeout", slowest, DefaultTimeout)
	}
}

// TestBreakerRecovery cuts Redis away from a limiter and restores it: the
// breaker opens, and the limiter serves again within 5 s of Redis coming
// back, with the counters it had.
func TestBreakerRecovery(t *testing.T) {
	url := testURL(t)
	ctx := context.Background()
	ro, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tcpproxy.Start(ro.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	direct := goredis.NewClient(ro)
	ro, _ = goredis.ParseURL(url)
	prefix := testPrefix(t)
	t.Cleanup(func() {
		deleteKeys(t, direct, prefix)
		direct.Close()
	})
	ro.Addr = p.Addr()
	l, err := newLimiter(ro, Options{Prefix: prefix, Clock: ClockCaller, RateFailure: FailClosed,
		BreakerThreshold: 3, BreakerCooldown: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	now := time.Now()
	b := tollgate.Budget{OrgID: "o", Model: "m", CreditLimit: 10}
	if err := l.Load(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(ctx, b, 4, 4, now); err != nil {
		t.Fatal(err)
	}

	p.Cut()
	for i := 0; !l.br.open(); i++ {
		if i == 10 {
			t.Fatal("breaker still closed after 10 failed calls")
		}
		_, err := l.AllowRate(ctx, "k", tollgate.PerMinute(10), now)
		wantUnavailable(t, "AllowRate with Redis cut off", err)
	}
	if err := l.Ready(ctx); err == nil {
		t.Error("Ready with Redis cut off: nil")
	}

	p.Restore()
	back := time.Now()
	for l.Ready(ctx) != nil {
		if time.Since(back) > 5*time.Second {
			t.Fatal("not ready 5 s after Redis came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("ready %v after Redis came back", time.Since(back).Round(time.Millisecond))
	if _, err := l.AllowRate(ctx, "k", tollgate.PerMinute(10), now); err != nil {
		t.Errorf("AllowRate after recovery: %v", err)
	}
	if _, err := l.Reserve(ctx, b, 4, 4, now); err != nil {
		t.Errorf("Reserve after recovery: %v", err)
	}
	if bal, err := l.Balance(ctx, "o", now); err != nil || bal.MonthCredits != 8 {
		t.Errorf("Balance after recovery: %+v, %v; want the 8 credits held", bal, err)
	}
}

// TestPoolTimeoutIsNotAnOutage: with every connection busy, a call fails
// with overloaded after PoolTimeout, is not decided by fail_open's local
// share, and does not open the breaker: the process is saturated, Redis
// is not down.
func TestPoolTimeoutIsNotAnOutage(t *testing.T) {
	l := newTestLimiter(t, Options{PoolSize: 1, PoolTimeout: 50 * time.Millisecond, Timeout: 3 * time.Second, RateFailure: FailOpen})
	ctx := context.Background()
	busy := make(chan struct{})
	go func() {
		defer close(busy)
		// Holds the only connection for a second.
		l.client.Do(ctx, "BLPOP", l.prefix+"never", 1)
	}()
	time.Sleep(100 * time.Millisecond)
	now := time.Now()
	for i := 0; i < 10; i++ {
		_, err := l.AllowRate(ctx, "k", tollgate.PerMinute(100), now)
		if tollgate.ErrorCode(err) != tollgate.CodeOverloaded || errors.Is(err, ErrUnavailable) {
			t.Fatalf("call %d with the pool exhausted: %v, want overloaded without ErrUnavailable", i, err)
		}
	}
	if l.br.open() {
		t.Error("pool timeouts opened the breaker")
	}
	<-busy
	if _, err := l.AllowRate(ctx, "k", tollgate.PerMinute(100), now); err != nil {
		t.Errorf("after the pool freed: %v", err)
	}
}
