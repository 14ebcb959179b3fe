package inmem

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/limitertest"
)

func TestLimiter(t *testing.T) {
	const ttl = 15 * time.Second
	t.Run("Fresh", func(t *testing.T) {
		limitertest.Run(t, limitertest.Options{
			New:      func(*testing.T) tollgate.Limiter { return NewLimiter(ttl) },
			LeaseTTL: ttl,
		})
	})
	t.Run("Shared", func(t *testing.T) {
		shared := &Limiter{LeaseTTL: 3 * time.Second}
		limitertest.Run(t, limitertest.Options{
			New:      func(*testing.T) tollgate.Limiter { return shared },
			LeaseTTL: 3 * time.Second,
		})
	})
	t.Run("ZeroValue", func(t *testing.T) {
		limitertest.Run(t, limitertest.Options{
			New:      func(*testing.T) tollgate.Limiter { return new(Limiter) },
			LeaseTTL: DefaultLeaseTTL,
		})
	})
}

func TestNewLimiterZeroTTL(t *testing.T) {
	now := time.Now()
	lease, err := NewLimiter(0).Acquire(context.Background(), "k", 1, now)
	if err != nil {
		t.Fatal(err)
	}
	if got := lease.ExpiresAt.Sub(now); got != 15*time.Second {
		t.Errorf("lease TTL = %v; want 15s", got)
	}
}

func TestInvalidLimits(t *testing.T) {
	ctx := context.Background()
	l := new(Limiter)
	now := time.Now()
	for _, limit := range []tollgate.RateLimit{
		{Limit: 2_000_000_000, Period: time.Second},            // finer than 1 ns
		{Limit: 1, Period: time.Hour, Burst: 1 << 40},          // tolerance overflows
		{Limit: 1, Period: 1<<62 + 1, Burst: 2},                // tolerance overflows
		{Limit: 1_000_000, Period: time.Minute, Burst: -1_000}, // negative burst
	} {
		if _, err := l.AllowRate(ctx, "k", limit, now); tollgate.ErrorCode(err) != tollgate.CodeInternal {
			t.Errorf("AllowRate(%+v): %v; want an internal error", limit, err)
		}
	}
	if _, err := l.Acquire(ctx, "k", -1, now); tollgate.ErrorCode(err) != tollgate.CodeInternal {
		t.Errorf("Acquire(limit -1): %v; want an internal error", err)
	}
}

func TestRateLimitMessage(t *testing.T) {
	ctx := context.Background()
	l := new(Limiter)
	now := time.Now()
	if _, err := l.AllowRate(ctx, "k", tollgate.PerMinute(1), now); err != nil {
		t.Fatal(err)
	}
	_, err := l.AllowRate(ctx, "k", tollgate.PerMinute(1), now)
	if got, want := tollgate.ErrorMessage(err), "Rate limit of 1 requests per minute exceeded."; got != want {
		t.Errorf("message %q; want %q", got, want)
	}
}

// entries counts the limiter's rate buckets and lease groups.
func (l *Limiter) entries() (rates, leases int) {
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		rates += len(s.rates)
		leases += len(s.leases)
		s.mu.Unlock()
	}
	return rates, leases
}

func TestSweep(t *testing.T) {
	ctx := context.Background()
	l := NewLimiter(time.Second)
	t0 := time.Now()
	const idle = 100_000
	for i := range idle {
		k := "idle" + strconv.Itoa(i)
		if _, err := l.AllowRate(ctx, k, tollgate.PerMinute(1000), t0); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Acquire(ctx, k, 1, t0); err != nil {
			t.Fatal(err)
		}
	}
	if r, g := l.entries(); r != idle || g != idle {
		t.Fatalf("entries after filling = %d buckets, %d lease groups; want %d each", r, g, idle)
	}

	// A minute later every bucket is full and every lease has expired.
	// Traffic on a few live keys sweeps the idle ones away.
	t1 := t0.Add(time.Minute)
	const live = 1000
	for i := range 4 * idle {
		k := "live" + strconv.Itoa(i%live)
		if _, err := l.AllowRate(ctx, k, tollgate.PerMinute(1_000_000), t1); err != nil {
			t.Fatal(err)
		}
	}
	if r, g := l.entries(); r > live || g != 0 {
		t.Errorf("entries after sweeping = %d buckets, %d lease groups; want at most %d, 0", r, g, live)
	}
}

func TestShardSize(t *testing.T) {
	if got := unsafe.Sizeof(shard{}); got != 128 {
		t.Errorf("shard is %d bytes; want 128, two cache lines", got)
	}
}

func TestAllocs(t *testing.T) {
	ctx := context.Background()
	l := new(Limiter)
	now := time.Now()
	limit := tollgate.RateLimit{Limit: 1_000_000_000, Period: time.Second}
	l.AllowRate(ctx, "k", limit, now)
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Microsecond)
		if d, _ := l.AllowRate(ctx, "k", limit, now); !d.Allowed {
			t.Fatal("denied")
		}
	}); n != 0 {
		t.Errorf("AllowRate on an existing key: %v allocs; want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		lease, err := l.Acquire(ctx, "k", 1, now)
		if err != nil {
			t.Fatal(err)
		}
		l.Release(ctx, lease)
	}); n > 1 {
		t.Errorf("Acquire and Release on an existing key: %v allocs; want at most 1 (the lease ID)", n)
	}
}

// benchLimit admits every request in the benchmarks: one per nanosecond
// with a second's burst, a billion requests at one instant. The clock
// stands still so that no bucket goes idle and is swept away: the
// benchmarks measure decisions on existing keys.
var benchLimit = tollgate.RateLimit{Limit: 1_000_000_000, Period: time.Second}

func BenchmarkAllowRate(b *testing.B) {
	ctx := context.Background()
	now := time.Now()
	b.Run("keys=1", func(b *testing.B) {
		l := new(Limiter)
		b.ReportAllocs()
		for b.Loop() {
			if d, _ := l.AllowRate(ctx, "key", benchLimit, now); !d.Allowed {
				b.Fatal("denied")
			}
		}
	})
	b.Run("keys=1/denied", func(b *testing.B) {
		l := new(Limiter)
		l.AllowRate(ctx, "key", tollgate.PerMinute(1), now)
		b.ReportAllocs()
		for b.Loop() {
			if d, _ := l.AllowRate(ctx, "key", tollgate.PerMinute(1), now); d.Allowed {
				b.Fatal("allowed")
			}
		}
	})
	for _, n := range []int{1, 10_000, 100_000} {
		b.Run("parallel/keys="+strconv.Itoa(n), func(b *testing.B) {
			l := new(Limiter)
			keys := make([]string, n)
			for i := range keys {
				keys[i] = "key" + strconv.Itoa(i)
				l.AllowRate(ctx, keys[i], benchLimit, now)
			}
			var denied, worker atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(worker.Add(1)) * 7919
				for pb.Next() {
					i++
					if d, _ := l.AllowRate(ctx, keys[i%n], benchLimit, now); !d.Allowed {
						denied.Add(1)
					}
				}
			})
			if n := denied.Load(); n > 0 {
				b.Errorf("%d requests denied", n)
			}
		})
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	ctx := context.Background()
	b.Run("keys=1", func(b *testing.B) {
		l := new(Limiter)
		now := time.Now()
		b.ReportAllocs()
		for b.Loop() {
			lease, err := l.Acquire(ctx, "key", 10, now)
			if err != nil {
				b.Fatal(err)
			}
			l.Release(ctx, lease)
		}
	})
	b.Run("parallel/keys=10000", func(b *testing.B) {
		l := new(Limiter)
		keys := make([]string, 10_000)
		for i := range keys {
			keys[i] = "key" + strconv.Itoa(i)
		}
		now := time.Now()
		var worker atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(worker.Add(1)) * 7919
			for pb.Next() {
				i++
				lease, err := l.Acquire(ctx, keys[i%len(keys)], 1000, now)
				if err != nil {
					b.Error(err)
					return
				}
				l.Release(ctx, lease)
			}
		})
	})
}
