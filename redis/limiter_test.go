package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/limitertest"
)

// testURL returns the Redis the tests run against, skipping the test
// when there is none.
func testURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("TOLLGATE_TEST_REDIS")
	if u == "" {
		t.Skip("TOLLGATE_TEST_REDIS not set: set it to a Redis URL (e.g. redis://127.0.0.1:6379/0) to run the Redis limiter tests")
	}
	return u
}

// testPrefix returns a key prefix no other test or run uses.
func testPrefix(t testing.TB) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "tgtest:" + hex.EncodeToString(b[:]) + ":"
}

// newTestLimiter returns a Limiter on the test Redis under a prefix of its
// own (unless opts has one), deciding by the caller's clock (unless opts
// says otherwise), with its quota counters loaded. Its keys are deleted
// when the test ends. Its timeout is generous: the contract suites run
// a thousand goroutines at once under the race detector.
func newTestLimiter(t testing.TB, opts Options) *Limiter {
	t.Helper()
	url := testURL(t)
	if opts.Prefix == "" {
		opts.Prefix = testPrefix(t)
	}
	if opts.Clock == "" {
		opts.Clock = ClockCaller
	}
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Second
	}
	ctx := context.Background()
	l, err := New(ctx, url, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		deleteKeys(t, l.client, opts.Prefix)
		l.Close()
	})
	if err := l.Load(ctx, nil); err != nil {
		t.Fatalf("Load: %v", err)
	}
	return l
}

// deleteKeys deletes every key under prefix: never FLUSHDB, other tests
// share the server.
func deleteKeys(t testing.TB, c *goredis.Client, prefix string) {
	t.Helper()
	ctx := context.Background()
	iter := c.Scan(ctx, 0, globEscape(prefix)+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Errorf("cleanup: scan %s*: %v", prefix, err)
		return
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		if err := c.Del(ctx, keys[:n]...).Err(); err != nil {
			t.Errorf("cleanup: del: %v", err)
			return
		}
		keys = keys[n:]
	}
}

// keys returns the keys under the limiter's prefix.
func (l *Limiter) keys(t *testing.T) []string {
	t.Helper()
	ks, err := l.client.Keys(context.Background(), globEscape(l.prefix)+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestLimiter(t *testing.T) {
	l := newTestLimiter(t, Options{})
	limitertest.Run(t, limitertest.Options{
		New:      func(*testing.T) tollgate.Limiter { return l },
		LeaseTTL: DefaultLeaseTTL,
	})
	t.Run("ShortTTLNoDenyCache", func(t *testing.T) {
		l := newTestLimiter(t, Options{LeaseTTL: 3 * time.Second, DenyCacheSize: -1})
		limitertest.Run(t, limitertest.Options{
			New:      func(*testing.T) tollgate.Limiter { return l },
			LeaseTTL: 3 * time.Second,
		})
	})
}

func TestQuota(t *testing.T) {
	l := newTestLimiter(t, Options{})
	limitertest.RunQuota(t, limitertest.QuotaOptions{
		New: func(*testing.T) tollgate.Quota { return l },
	})
}

func TestAdmit(t *testing.T) {
	l := newTestLimiter(t, Options{})
	limitertest.RunAdmit(t, limitertest.AdmitOptions{
		New:      func(*testing.T) tollgate.Admitter { return l },
		LeaseTTL: DefaultLeaseTTL,
	})
}

// TestRedisClock checks that with ClockRedis the server's clock decides,
// whatever now the caller passes.
func TestRedisClock(t *testing.T) {
	ctx := context.Background()
	l := newTestLimiter(t, Options{Clock: ClockRedis})
	now := time.Now()
	limit := tollgate.PerMinute(3)
	for i := range 3 {
		d, err := l.AllowRate(ctx, "k", limit, now)
		if err != nil || d.Remaining != 2-i {
			t.Fatalf("request %d: %+v, %v; want admitted with %d remaining", i+1, d, err, 2-i)
		}
		if reset := d.ResetAt.Sub(now); reset < time.Duration(i+1)*20*time.Second-time.Second || reset > time.Duration(i+1)*20*time.Second {
			t.Errorf("request %d: ResetAt now+%v; want about now+%v", i+1, reset, time.Duration(i+1)*20*time.Second)
		}
	}
	// An hour later by the caller's clock is no later by the server's.
	d, err := l.AllowRate(ctx, "k", limit, now.Add(time.Hour))
	if tollgate.ErrorCode(err) != tollgate.CodeRateLimitExceeded || d.Allowed {
		t.Fatalf("4th request, an hour later by the caller's clock: %+v, %v; want rate_limit_exceeded", d, err)
	}
	if d.RetryAfter <= 15*time.Second || d.RetryAfter > 20*time.Second {
		t.Errorf("RetryAfter %v; want just under 20s", d.RetryAfter)
	}

	// Leases too: alive by the server's clock, whatever the caller says.
	lease, err := l.Acquire(ctx, "k", 1, now)
	if err != nil {
		t.Fatal(err)
	}
	if !lease.ExpiresAt.Equal(now.Add(DefaultLeaseTTL)) {
		t.Errorf("lease ExpiresAt now+%v; want now+%v", lease.ExpiresAt.Sub(now), DefaultLeaseTTL)
	}
	later := now.Add(time.Hour)
	if _, err := l.Acquire(ctx, "k", 1, later); tollgate.ErrorCode(err) != tollgate.CodeConcurrencyLimitExceeded {
		t.Errorf("Acquire an hour later by the caller's clock: %v; want concurrency_limit_exceeded", err)
	}
	if n, err := l.InFlight(ctx, "k", later); n != 1 || err != nil {
		t.Errorf("InFlight an hour later by the caller's clock: %d, %v; want 1", n, err)
	}
	hb, err := l.Heartbeat(ctx, lease, later)
	if err != nil {
		t.Fatalf("Heartbeat an hour later by the caller's clock: %v", err)
	}
	if got := hb.ExpiresAt.Sub(later); got < DefaultLeaseTTL-time.Second || got > DefaultLeaseTTL+time.Second {
		t.Errorf("Heartbeat: ExpiresAt later+%v; want about later+%v", got, DefaultLeaseTTL)
	}
	if err := l.Release(ctx, hb); err != nil {
		t.Fatal(err)
	}
	if n, _ := l.InFlight(ctx, "k", now); n != 0 {
		t.Errorf("InFlight after Release = %d; want 0", n)
	}

	// And Admit, in one script.
	adm := tollgate.Admission{RateKey: "a", Rate: limit,
		Budget: &tollgate.Budget{OrgID: "org", Model: "m"}, Credits: 1, Units: 1,
		LeaseKey: "a", Concurrency: 1}
	got, err := l.Admit(ctx, adm, now)
	if err != nil || !got.Rate.Allowed || got.Reservation == nil || got.Lease == nil {
		t.Fatalf("Admit: %+v, %v", got, err)
	}
	if _, err := l.Admit(ctx, adm, now.Add(time.Hour)); tollgate.ErrorCode(err) != tollgate.CodeConcurrencyLimitExceeded {
		t.Errorf("second Admit: %v; want concurrency_limit_exceeded", err)
	}
	if err := l.Finish(ctx, got.Reservation, 0, 0, got.Lease); err != nil {
		t.Fatal(err)
	}
}

// TestKeys checks the key layout: the prefix, the hash tags, and that a
// key with a hash tag of its own keeps it.
func TestKeys(t *testing.T) {
	l := &Limiter{prefix: "tg:"}
	for _, tt := range []struct{ got, want string }{
		{l.rateKey("key_1"), "tg:r:{key_1}"},
		{l.leaseKey("key_1:stt"), "tg:l:{key_1:stt}"},
		{l.rateKey("rate:{org_1}:key_9"), "tg:r:rate:{org_1}:key_9"},
		{l.rateKey("odd}{"), "tg:r:{odd}{}"},
		{l.rateKey("empty{}"), "tg:r:{empty{}}"},
		{l.orgKey("org_1"), "tg:q:{org_1}"},
	} {
		if tt.got != tt.want {
			t.Errorf("key %q; want %q", tt.got, tt.want)
		}
	}

	ctx := context.Background()
	r := newTestLimiter(t, Options{Clock: ClockRedis})
	now := time.Now()
	if _, err := r.AllowRate(ctx, "k", tollgate.PerMinute(60), now); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Acquire(ctx, "k", 1, now); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reserve(ctx, tollgate.Budget{OrgID: "o", Model: "m"}, 1, 1, now); err != nil {
		t.Fatal(err)
	}
	// Idle keys vanish: the bucket a second after it is full again, the
	// leases a second after the last one expires. Quota counters stay.
	for key, want := range map[string]time.Duration{
		r.rateKey("k"):  2 * time.Second,
		r.leaseKey("k"): DefaultLeaseTTL + time.Second,
		r.orgKey("o"):   -1,
		r.marker:        -1,
	} {
		ttl, err := r.client.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if want < 0 && ttl != -1 || want > 0 && (ttl <= want-200*time.Millisecond || ttl > want+10*time.Millisecond) {
			t.Errorf("key %s: TTL %v; want %v", key, ttl, want)
		}
	}
	if got := len(r.keys(t)); got != 4 {
		t.Errorf("%d keys under the prefix: %q; want 4", got, r.keys(t))
	}
}

func TestNew(t *testing.T) {
	ctx := context.Background()
	_, err := New(ctx, "redis://user:s3cret@[::1", Options{})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("New with a bad URL: %v; want an error without the password", err)
	}
	if _, err := New(ctx, "http://127.0.0.1:6379", Options{}); err == nil {
		t.Error("New with an http URL: no error")
	}
	for _, opts := range []Options{
		{Prefix: "tg:{x}:"},
		{Clock: "wall"},
		{RateFailure: "fail_sideways"},
		{Timeout: -time.Second},
	} {
		if _, err := New(ctx, "redis://127.0.0.1:1/0", opts); err == nil || strings.Contains(err.Error(), "ping") {
			t.Errorf("New(%+v): %v; want an option error", opts, err)
		}
	}
	// Nothing listens on port 1.
	start := time.Now()
	if _, err := New(ctx, "redis://127.0.0.1:1/0", Options{}); err == nil {
		t.Error("New on a closed port: no error")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("New on a closed port took %v", d)
	}

	l := newTestLimiter(t, Options{})
	if err := l.Ready(ctx); err != nil {
		t.Errorf("Ready: %v", err)
	}
}

// TestDenyCache checks that a key over its limit is refused without a
// round trip, with the decision Redis gave, until its RetryAfter.
func TestDenyCache(t *testing.T) {
	ctx := context.Background()
	l := newTestLimiter(t, Options{})
	now := time.Now()
	limit := tollgate.PerMinute(1)
	if _, err := l.AllowRate(ctx, "k", limit, now); err != nil {
		t.Fatal(err)
	}
	want, err := l.AllowRate(ctx, "k", limit, now)
	if tollgate.ErrorCode(err) != tollgate.CodeRateLimitExceeded {
		t.Fatalf("second request: %v; want rate_limit_exceeded", err)
	}
	// Redis forgets the bucket; the cache does not.
	if err := l.client.Del(ctx, l.rateKey("k")).Err(); err != nil {
		t.Fatal(err)
	}
	at := now.Add(20 * time.Second)
	d, err := l.AllowRate(ctx, "k", limit, at)
	ce := tollgate.AsError(err)
	if ce.Code != tollgate.CodeRateLimitExceeded || d.Allowed || !d.ResetAt.Equal(want.ResetAt) ||
		d.RetryAfter != 40*time.Second || ce.RetryAfter != d.RetryAfter || ce.Message != "Rate limit of 1 requests per minute exceeded." {
		t.Errorf("cached denial: %+v, %v; want ResetAt %v, RetryAfter 40s", d, err, want.ResetAt)
	}
	// Admit's rate step too.
	got, err := l.Admit(ctx, tollgate.Admission{RateKey: "k", Rate: limit, LeaseKey: "k", Concurrency: 1}, at)
	if tollgate.ErrorCode(err) != tollgate.CodeRateLimitExceeded || got.Rate != d || got.Lease != nil {
		t.Errorf("Admit on a cached denial: %+v, %v; want %+v", got, err, d)
	}
	if n, _ := l.InFlight(ctx, "k", at); n != 0 {
		t.Errorf("InFlight after a cached denial = %d; want 0", n)
	}
	// Another limit on the same key asks Redis.
	if _, err := l.AllowRate(ctx, "k", tollgate.PerMinute(2), at); err != nil {
		t.Errorf("another limit: %v; want admitted by Redis", err)
	}
	// So does the same limit once RetryAfter has passed.
	if err := l.client.Del(ctx, l.rateKey("k")).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AllowRate(ctx, "k", limit, now.Add(time.Minute)); err != nil {
		t.Errorf("at RetryAfter: %v; want admitted", err)
	}

	// The cache is bounded.
	small := newTestLimiter(t, Options{DenyCacheSize: 3})
	for i := range 10 {
		k := string(rune('a' + i))
		small.AllowRate(ctx, k, limit, now)
		if _, err := small.AllowRate(ctx, k, limit, now); err == nil {
			t.Fatal("second request admitted")
		}
	}
	if n := len(small.denied.m); n > 3 {
		t.Errorf("deny cache holds %d entries; want at most 3", n)
	}
}

// TestCountersLost checks that counters the server lost are never read
// as zero: Reserve, Admit, Balance and Settle refuse until Load.
func TestCountersLost(t *testing.T) {
	ctx := context.Background()
	lost := 0
	l := newTestLimiter(t, Options{OnCountersLost: func() { lost++ }})
	org := "org"
	b := tollgate.Budget{OrgID: org, Model: "m", CreditLimit: 10}
	totals := []tollgate.UsageTotal{{OrgID: org, Model: "m", Period: "2026-11", Credits: 9, Units: 9}}
	if err := l.Load(ctx, totals); err != nil {
		t.Fatal(err)
	}
	nov15 := time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC)
	r, err := l.Reserve(ctx, b, 1, 1, nov15)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := l.Loaded(ctx); !ok || err != nil {
		t.Errorf("Loaded = %v, %v; want true", ok, err)
	}

	// The server loses everything under the prefix.
	deleteKeys(t, l.client, l.prefix)

	wantLost := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrCountersLost) {
			t.Errorf("%s: %v; want ErrCountersLost", what, err)
		}
		if ce := tollgate.AsError(err); ce.Code != tollgate.CodeOverloaded || ce.RetryAfter != time.Second {
			t.Errorf("%s: %v; want overloaded, retry after 1s", what, err)
		}
	}
	if ok, err := l.Loaded(ctx); ok || err != nil {
		t.Errorf("Loaded after the loss = %v, %v; want false", ok, err)
	}
	_, err = l.Reserve(ctx, b, 1, 1, nov15)
	wantLost("Reserve", err)
	_, err = l.Balance(ctx, org, nov15)
	wantLost("Balance", err)
	wantLost("Settle", l.Settle(ctx, r, 1, 1))
	adm := tollgate.Admission{RateKey: "k", Rate: tollgate.PerMinute(10), Budget: &b, Credits: 1, Units: 1,
		LeaseKey: "k", Concurrency: 5}
	got, err := l.Admit(ctx, adm, nov15)
	wantLost("Admit", err)
	if !got.Rate.Allowed || got.Rate.Remaining != 9 || got.Reservation != nil || got.Lease != nil {
		t.Errorf("Admit on lost counters: %+v; want the rate step's decision only", got)
	}
	if n, _ := l.InFlight(ctx, "k", nov15); n != 0 {
		t.Errorf("InFlight after Admit on lost counters = %d; want 0", n)
	}
	// Nothing was written to the org: no half-built counters.
	if n, _ := l.client.Exists(ctx, l.orgKey(org)).Result(); n != 0 {
		t.Errorf("org hash written while the counters were lost")
	}
	if lost != 4 {
		t.Errorf("OnCountersLost called %d times; want 4", lost)
	}

	// Rebuilt from the ledger, the counters hold again.
	if err := l.Load(ctx, totals); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(ctx, b, 1, 1, nov15); err != nil {
		t.Errorf("Reserve after Load: %v", err)
	}
	if _, err := l.Reserve(ctx, b, 1, 1, nov15); tollgate.ErrorCode(err) != tollgate.CodeQuotaExceeded {
		t.Errorf("Reserve past the loaded limit: %v; want quota_exceeded", err)
	}

	// A Limiter on a Redis that never saw Load refuses too.
	fresh := newTestLimiter(t, Options{})
	fresh.client.Del(ctx, fresh.marker)
	_, err = fresh.Reserve(ctx, b, 1, 1, nov15)
	wantLost("Reserve before any Load", err)
}

// TestSettleAcrossLoad checks how reservations made before a Load settle
// after it: the loaded counters never held them, so their actual cost is
// added whole, in orgs the ledger mentions and orgs it does not.
func TestSettleAcrossLoad(t *testing.T) {
	ctx := context.Background()
	nov15 := time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name  string
		grace time.Duration
		// credits after settling at 3 a reservation of 5 made before
		// Load, in an org loaded at 10 and an org absent from the ledger
		loaded, absent float64
	}{
		{"Grace", 0, 13, 3},
		{"NoGrace", -1, 8, 0}, // inmem's arithmetic: 10 + 3 - 5, floored
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newTestLimiter(t, Options{RebuildGrace: tt.grace})
			a := tollgate.Budget{OrgID: "a", Model: "m", UsesFreeCredits: true, FreeCredits: 100}
			b := tollgate.Budget{OrgID: "b", Model: "m"}
			ra, err := l.Reserve(ctx, a, 5, 5, nov15)
			if err != nil {
				t.Fatal(err)
			}
			rb, err := l.Reserve(ctx, b, 5, 5, nov15)
			if err != nil {
				t.Fatal(err)
			}
			// The ledger holds org a's earlier requests, not the held ones.
			err = l.Load(ctx, []tollgate.UsageTotal{{OrgID: "a", Model: "m", Period: "2026-11", Credits: 10, Units: 10, FreeCredits: 10}})
			if err != nil {
				t.Fatal(err)
			}
			// A reservation made after the Load is one the counters hold.
			ra2, err := l.Reserve(ctx, a, 5, 5, nov15)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range []tollgate.Reservation{ra, rb, ra2} {
				if err := l.Settle(ctx, r, 3, 3); err != nil {
					t.Fatal(err)
				}
			}
			bal, err := l.Balance(ctx, "a", nov15)
			if err != nil {
				t.Fatal(err)
			}
			if want := tt.loaded + 3; bal.MonthCredits != want || bal.FreeCreditsUsed != want || bal.MonthUnits["m"] != want {
				t.Errorf("org a: %+v; want %v credits, free credits and units", bal, want)
			}
			bal, err = l.Balance(ctx, "b", nov15)
			if err != nil {
				t.Fatal(err)
			}
			if bal.MonthCredits != tt.absent || bal.MonthUnits["m"] != tt.absent {
				t.Errorf("org b: %+v; want %v credits and units", bal, tt.absent)
			}
		})
	}
}

// TestLoadLock checks that Loads run one at a time.
func TestLoadLock(t *testing.T) {
	ctx := context.Background()
	l := newTestLimiter(t, Options{})
	if err := l.client.Set(ctx, l.loadLock, "another", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := l.Load(short, nil); err == nil {
		t.Error("Load while another holds the lock: no error; want it to wait until its context ends")
	}
	if v, _ := l.client.Get(ctx, l.loadLock).Result(); v != "another" {
		t.Errorf("lock holds %q; want the other load's", v)
	}
	done := make(chan error)
	totals := []tollgate.UsageTotal{{OrgID: "o", Model: "m", Period: "2026-11", Credits: 2, Units: 2}}
	go func() { done <- l.Load(ctx, totals) }()
	time.Sleep(50 * time.Millisecond)
	l.client.Del(ctx, l.loadLock)
	if err := <-done; err != nil {
		t.Fatalf("Load after the lock was freed: %v", err)
	}
	if n, _ := l.client.Exists(ctx, l.loadLock).Result(); n != 0 {
		t.Error("Load left its lock behind")
	}
	// Concurrent Loads of the same ledger agree.
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- l.Load(ctx, totals) }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	bal, err := l.Balance(ctx, "o", time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC))
	if err != nil || bal.MonthCredits != 2 {
		t.Errorf("after concurrent loads: %+v, %v; want 2 credits", bal, err)
	}
}

func TestLoadInvalid(t *testing.T) {
	ctx := context.Background()
	l := newTestLimiter(t, Options{})
	good := tollgate.UsageTotal{OrgID: "o", Model: "m", Period: "2026-11", Units: 1, Credits: 1}
	if err := l.Load(ctx, []tollgate.UsageTotal{good}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []tollgate.UsageTotal{
		{OrgID: "o", Model: "m", Period: "2026-11-01", Credits: 1},
		{OrgID: "o", Model: "m", Period: "2026-11", Credits: -1},
		{OrgID: "o", Model: "m", Period: "2026-11", FreeCredits: -1},
	} {
		if err := l.Load(ctx, []tollgate.UsageTotal{{OrgID: "p", Model: "m", Period: "2026-11", Credits: 5}, bad}); err == nil {
			t.Errorf("Load(%+v): no error", bad)
		}
	}
	nov := time.Date(2026, 11, 15, 0, 0, 0, 0, time.UTC)
	if bal, _ := l.Balance(ctx, "o", nov); bal.MonthCredits != 1 {
		t.Errorf("org o after failed loads: %v credits; want 1", bal.MonthCredits)
	}
	if bal, _ := l.Balance(ctx, "p", nov); bal.MonthCredits != 0 {
		t.Errorf("org p after failed loads: %v credits; want 0", bal.MonthCredits)
	}
}

// TestQuotaDropsOldMonths checks that a new month drops the months before
// the previous one, and keeps the previous one for late settles.
func TestQuotaDropsOldMonths(t *testing.T) {
	ctx := context.Background()
	l := newTestLimiter(t, Options{})
	b := tollgate.Budget{OrgID: "o", Model: "m", UsesFreeCredits: true, FreeCredits: 100}
	var held []tollgate.Reservation
	for _, month := range []time.Month{8, 9, 10, 11} {
		r, err := l.Reserve(ctx, b, 1, 1, time.Date(2026, month, 28, 23, 59, 59, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, r)
	}
	fields, err := l.client.HKeys(ctx, l.orgKey("o")).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fields {
		if strings.Contains(f, "2026-08") || strings.Contains(f, "2026-09") {
			t.Errorf("field %q of a dropped month", f)
		}
	}
	if bal, _ := l.Balance(ctx, "o", time.Date(2026, 11, 15, 0, 0, 0, 0, time.UTC)); bal.FreeCreditsUsed != 4 {
		t.Errorf("free credits used = %v; want 4", bal.FreeCreditsUsed)
	}
	if err := l.Settle(ctx, held[2], 3, 3); err != nil {
		t.Fatal(err)
	}
	if bal, _ := l.Balance(ctx, "o", time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)); bal.MonthCredits != 3 || bal.FreeCreditsUsed != 6 {
		t.Errorf("October after settling: %v credits, %v free; want 3, 6", bal.MonthCredits, bal.FreeCreditsUsed)
	}
}

// TestCountersFromAnotherRun checks that counters a server brought back
// from a snapshot (a marker Load wrote on another run of the server)
// count as lost.
func TestCountersFromAnotherRun(t *testing.T) {
	ctx := context.Background()
	l := newTestLimiter(t, Options{})
	marker, err := l.client.Get(ctx, l.marker).Result()
	if err != nil {
		t.Fatal(err)
	}
	run, err := l.runID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ms, loadedOn, _ := strings.Cut(marker, " "); loadedOn != run || ms == "" {
		t.Fatalf("marker %q; want the load time and run ID %s", marker, run)
	}
	connect := func() *Limiter {
		ro, err := goredis.ParseURL(testURL(t))
		if err != nil {
			t.Fatal(err)
		}
		c, err := newLimiter(ro, Options{Prefix: l.prefix, Clock: ClockCaller})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// A Limiter connecting to the same server run keeps the marker.
	if ok, err := connect().Loaded(ctx); !ok || err != nil {
		t.Fatalf("Loaded on the same run: %v, %v; want true", ok, err)
	}

	// As if the server had restarted from a snapshot taken before.
	if err := l.client.Set(ctx, l.marker, "1000 0123456789abcdef", 0).Err(); err != nil {
		t.Fatal(err)
	}
	restarted := connect()
	if ok, err := restarted.Loaded(ctx); ok || err != nil {
		t.Errorf("Loaded after a restart from a snapshot: %v, %v; want false", ok, err)
	}
	_, err = restarted.Reserve(ctx, tollgate.Budget{OrgID: "o"}, 1, 1, time.Now())
	if !errors.Is(err, ErrCountersLost) {
		t.Errorf("Reserve after a restart from a snapshot: %v; want ErrCountersLost", err)
	}
}
