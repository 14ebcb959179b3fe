package inmem

import (
	"context"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/limitertest"
)

func TestQuota(t *testing.T) {
	t.Run("Fresh", func(t *testing.T) {
		limitertest.RunQuota(t, limitertest.QuotaOptions{
			New: func(*testing.T) tollgate.Quota { return NewLimiter(0) },
		})
	})
	t.Run("Shared", func(t *testing.T) {
		// One value serves as Limiter and Quota, as in cmd/tollgate.
		shared := NewLimiter(DefaultLeaseTTL)
		limitertest.RunQuota(t, limitertest.QuotaOptions{
			New: func(*testing.T) tollgate.Quota { return shared },
		})
		limitertest.Run(t, limitertest.Options{
			New:      func(*testing.T) tollgate.Limiter { return shared },
			LeaseTTL: DefaultLeaseTTL,
		})
	})
	t.Run("ZeroValue", func(t *testing.T) {
		limitertest.RunQuota(t, limitertest.QuotaOptions{
			New: func(*testing.T) tollgate.Quota { return new(Limiter) },
		})
	})
}

var nov15 = time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC)

// TestQuotaLoadKeepsLimits checks that Load replaces quota counters only:
// rate buckets and leases on the same Limiter are untouched.
func TestQuotaLoadKeepsLimits(t *testing.T) {
	ctx := context.Background()
	l := new(Limiter)
	if _, err := l.AllowRate(ctx, "k", tollgate.PerMinute(1), nov15); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(ctx, "k", 1, nov15); err != nil {
		t.Fatal(err)
	}
	if err := l.Load(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AllowRate(ctx, "k", tollgate.PerMinute(1), nov15); tollgate.ErrorCode(err) != tollgate.CodeRateLimitExceeded {
		t.Errorf("AllowRate after Load: %v; want rate_limit_exceeded", err)
	}
	if n, _ := l.InFlight(ctx, "k", nov15); n != 1 {
		t.Errorf("InFlight after Load = %d; want 1", n)
	}
}

func TestQuotaLoadInvalid(t *testing.T) {
	ctx := context.Background()
	l := new(Limiter)
	good := tollgate.UsageTotal{OrgID: "o", Model: "m", Period: "2026-11", Units: 1, Credits: 1}
	if err := l.Load(ctx, []tollgate.UsageTotal{good}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []tollgate.UsageTotal{
		{OrgID: "o", Model: "m", Period: "2026-11-01", Credits: 1},
		{OrgID: "o", Model: "m", Period: "", Credits: 1},
		{OrgID: "o", Model: "m", Period: "2026-11", Credits: -1},
		{OrgID: "o", Model: "m", Period: "2026-11", FreeCredits: -1},
	} {
		if err := l.Load(ctx, []tollgate.UsageTotal{{OrgID: "p", Model: "m", Period: "2026-11", Credits: 5}, bad}); err == nil {
			t.Errorf("Load(%+v): no error", bad)
		}
	}
	// Nothing of the failed loads was applied.
	if bal, _ := l.Balance(ctx, "o", nov15); bal.MonthCredits != 1 {
		t.Errorf("org o after failed loads: %v credits; want 1", bal.MonthCredits)
	}
	if bal, _ := l.Balance(ctx, "p", nov15); bal.MonthCredits != 0 {
		t.Errorf("org p after failed loads: %v credits; want 0", bal.MonthCredits)
	}
}

func TestQuotaSettleWithoutPeriod(t *testing.T) {
	err := new(Limiter).Settle(context.Background(), tollgate.Reservation{OrgID: "o", Credits: 1}, 0, 0)
	if tollgate.ErrorCode(err) != tollgate.CodeInternal {
		t.Errorf("Settle of a reservation without a period: %v; want an internal error", err)
	}
}

// months returns the periods held for org, sorted.
func (l *Limiter) months(org string) []string {
	s := l.quotaShard(org)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	if a := s.orgs[org]; a != nil {
		for k := range a.months {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// TestQuotaDropsOldMonths checks that a new month drops the months before
// the previous one, and keeps the previous one for late settles.
func TestQuotaDropsOldMonths(t *testing.T) {
	ctx := context.Background()
	l := new(Limiter)
	b := tollgate.Budget{OrgID: "o", Model: "m", UsesFreeCredits: true, FreeCredits: 100}
	var held []tollgate.Reservation
	for _, month := range []time.Month{8, 9, 10, 11} {
		r, err := l.Reserve(ctx, b, 1, 1, time.Date(2026, month, 28, 23, 59, 59, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, r)
	}
	if got, want := l.months("o"), []string{"2026-10", "2026-11"}; !slices.Equal(got, want) {
		t.Errorf("months held = %q; want %q", got, want)
	}
	// Free credits are lifetime, whatever was dropped.
	if bal, _ := l.Balance(ctx, "o", nov15); bal.FreeCreditsUsed != 4 {
		t.Errorf("free credits used = %v; want 4", bal.FreeCreditsUsed)
	}
	// A reservation from October settles into October.
	if err := l.Settle(ctx, held[2], 3, 3); err != nil {
		t.Fatal(err)
	}
	if bal, _ := l.Balance(ctx, "o", time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)); bal.MonthCredits != 3 || bal.FreeCreditsUsed != 6 {
		t.Errorf("October after settling: %v credits, %v free; want 3, 6", bal.MonthCredits, bal.FreeCreditsUsed)
	}
}

func TestQuotaShardSize(t *testing.T) {
	if got := unsafe.Sizeof(quotaShard{}); got != 128 {
		t.Errorf("quotaShard is %d bytes; want 128, two cache lines", got)
	}
}

func TestQuotaAllocs(t *testing.T) {
	ctx := context.Background()
	l := new(Limiter)
	b := tollgate.Budget{OrgID: "o", Model: "m", Unit: tollgate.UnitAudioSeconds,
		UsesFreeCredits: true, FreeCredits: 1e12, CreditLimit: 1e12, UnitLimit: 1e12}
	r, _ := l.Reserve(ctx, b, 1, 1, nov15)
	l.Settle(ctx, r, 1, 1)
	if n := testing.AllocsPerRun(1000, func() {
		r, err := l.Reserve(ctx, b, 1, 10, nov15)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Settle(ctx, r, 2, 20); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Reserve and Settle on a known org and model: %v allocs; want 0", n)
	}
}

// BenchmarkReserveSettle reserves and settles one request at a time per
// goroutine, spread over orgs, each org under every limit.
func BenchmarkReserveSettle(b *testing.B) {
	ctx := context.Background()
	budget := func(org string) tollgate.Budget {
		return tollgate.Budget{OrgID: org, Model: "stt", Unit: tollgate.UnitAudioSeconds,
			UsesFreeCredits: true, FreeCredits: 1e15, CreditLimit: 1e15, UnitLimit: 1e15}
	}
	for _, n := range []int{1, 1000, 100_000} {
		b.Run("parallel/orgs="+strconv.Itoa(n), func(b *testing.B) {
			l := new(Limiter)
			budgets := make([]tollgate.Budget, n)
			for i := range budgets {
				budgets[i] = budget("org" + strconv.Itoa(i))
				r, _ := l.Reserve(ctx, budgets[i], 1, 1, nov15)
				l.Settle(ctx, r, 0, 0)
			}
			var worker atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(worker.Add(1)) * 7919
				for pb.Next() {
					i++
					r, err := l.Reserve(ctx, budgets[i%n], 0.5, 5, nov15)
					if err != nil {
						b.Error(err)
						return
					}
					if err := l.Settle(ctx, r, 0.25, 2.5); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
	b.Run("refused", func(b *testing.B) {
		l := new(Limiter)
		bud := budget("org")
		bud.CreditLimit = 1
		l.Reserve(ctx, bud, 1, 1, nov15)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := l.Reserve(ctx, bud, 1, 1, nov15); err == nil {
				b.Fatal("granted")
			}
		}
	})
}
