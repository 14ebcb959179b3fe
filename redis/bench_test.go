package redis

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// benchLimit admits every request in the benchmarks: a billion a minute,
// with a minute's burst.
var benchLimit = tollgate.PerMinute(1_000_000_000)

// goroutines is how many goroutines the parallel benchmarks run.
const goroutines = 64

// parallel runs body on goroutines goroutines, each with its own index.
func parallel(b *testing.B, body func(i int, pb *testing.PB)) {
	b.SetParallelism((goroutines + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	var worker atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		body(int(worker.Add(1))*7919, pb)
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func benchKeys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = prefix + strconv.Itoa(i)
	}
	return keys
}

// BenchmarkAllowRate measures rate checks on the Redis clock, as in
// production: one round trip each, but for a denial known to the cache.
func BenchmarkAllowRate(b *testing.B) {
	ctx := context.Background()
	l := newTestLimiter(b, Options{Clock: ClockRedis, Timeout: time.Second})
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if _, err := l.AllowRate(ctx, "key", benchLimit, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
	b.Run("parallel=64/keys=10000", func(b *testing.B) {
		keys := benchKeys("key", 10_000)
		parallel(b, func(i int, pb *testing.PB) {
			for pb.Next() {
				i++
				if _, err := l.AllowRate(ctx, keys[i%len(keys)], benchLimit, time.Now()); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("parallel=64/denied-cached", func(b *testing.B) {
		l.AllowRate(ctx, "spent", tollgate.PerMinute(1), time.Now())
		if _, err := l.AllowRate(ctx, "spent", tollgate.PerMinute(1), time.Now()); err == nil {
			b.Fatal("second request on 1/min admitted")
		}
		parallel(b, func(_ int, pb *testing.PB) {
			for pb.Next() {
				if _, err := l.AllowRate(ctx, "spent", tollgate.PerMinute(1), time.Now()); err == nil {
					b.Error("admitted")
					return
				}
			}
		})
	})
}

// BenchmarkAdmit measures a request's limiter work on the Redis clock:
// Admit (rate token, reservation and lease in one round trip) and Finish
// (settle and release in another), on 64 goroutines over 10,000 keys and
// 1,000 orgs with every limit set.
func BenchmarkAdmit(b *testing.B) {
	ctx := context.Background()
	l := newTestLimiter(b, Options{Clock: ClockRedis, Timeout: time.Second})
	keys := benchKeys("key", 10_000)
	budgets := make([]tollgate.Budget, 1000)
	for i := range budgets {
		budgets[i] = tollgate.Budget{OrgID: "org" + strconv.Itoa(i), Model: "stt", Unit: tollgate.UnitAudioSeconds,
			UsesFreeCredits: true, FreeCredits: 1e15, CreditLimit: 1e15, UnitLimit: 1e15}
	}
	admission := func(i int) tollgate.Admission {
		return tollgate.Admission{
			RateKey: keys[i%len(keys)], Rate: benchLimit,
			Budget: &budgets[i%len(budgets)], Credits: 0.5, Units: 5,
			LeaseKey: keys[i%len(keys)], Concurrency: 1000,
		}
	}
	b.Run("parallel=64/admit+finish", func(b *testing.B) {
		parallel(b, func(i int, pb *testing.PB) {
			for pb.Next() {
				i++
				got, err := l.Admit(ctx, admission(i), time.Now())
				if err != nil {
					b.Error(err)
					return
				}
				if err := l.Finish(ctx, got.Reservation, 0.25, 2.5, got.Lease); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("parallel=64/admit", func(b *testing.B) {
		// Rate and reservation only: leases left held would pile up.
		parallel(b, func(i int, pb *testing.PB) {
			for pb.Next() {
				i++
				a := admission(i)
				a.LeaseKey = ""
				if _, err := l.Admit(ctx, a, time.Now()); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
