package httpapi

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/sqlite"
)

func openLedger(tb testing.TB) *sqlite.Store {
	tb.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "ledger.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// TestCommitterGroupsAndLosesNothing: 500 concurrent commits all land once,
// in fewer transactions than commits.
func TestCommitterGroupsAndLosesNothing(t *testing.T) {
	store := openLedger(t)
	counting := &countingLedger{Ledger: store}
	c := newCommitter(counting, func(string, ...any) {})
	var wg sync.WaitGroup
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 500; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev := &tollgate.UsageEvent{RequestID: fmt.Sprintf("req_%d", i), OrgID: "o", Model: "m", Unit: tollgate.UnitRequests, Quantity: 1, Credits: 2, Time: now}
			if err := c.commit(ev, &tollgate.HistoryItem{ID: fmt.Sprintf("h_%d", i), OrgID: "o", RequestID: ev.RequestID, CreatedAt: now}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	c.close()
	totals, err := store.UsageTotals(context.Background(), time.Time{})
	if err != nil || len(totals) != 1 || totals[0].Credits != 1000 || totals[0].Units != 500 {
		t.Fatalf("totals %+v, %v", totals, err)
	}
	if n := counting.commits.Load(); n >= 500 {
		t.Errorf("%d transactions for 500 commits: nothing was grouped", n)
	}
	t.Logf("500 commits in %d transactions", counting.commits.Load())
}

type countingLedger struct {
	tollgate.Ledger
	commits atomic.Int64
}

func (c *countingLedger) Commit(ctx context.Context, ev []tollgate.UsageEvent, it []tollgate.HistoryItem) error {
	c.commits.Add(1)
	return c.Ledger.Commit(ctx, ev, it)
}

// BenchmarkGroupCommit measures ledger throughput through the group commit
// on SQLite (WAL, synchronous=FULL): many requests, each waiting for its
// event and history item to be durable. It reports events/s and the wait
// each request pays (p50, p99). history=false commits the events alone,
// as a request the history does not record would.
func BenchmarkGroupCommit(b *testing.B) {
	for _, bc := range []struct {
		clients int
		history bool
	}{{64, true}, {512, true}, {64, false}, {512, false}} {
		clients := bc.clients
		b.Run(fmt.Sprintf("clients=%d/history=%v", clients, bc.history), func(b *testing.B) {
			store := openLedger(b)
			c := newCommitter(store, func(string, ...any) {})
			defer c.close()
			now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
			waits := make([][]time.Duration, clients)
			var wg sync.WaitGroup
			per := b.N/clients + 1
			b.ResetTimer()
			start := time.Now()
			for w := 0; w < clients; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < per; i++ {
						id := newRequestID()
						t0 := time.Now()
						var item *tollgate.HistoryItem
						if bc.history {
							item = &tollgate.HistoryItem{ID: sortableID("hist_"), OrgID: "o", RequestID: id, Model: "m", Status: 200, CreatedAt: now}
						}
						err := c.commit(&tollgate.UsageEvent{RequestID: id, OrgID: "o", KeyID: "k", Model: "m", Unit: tollgate.UnitRequests, Quantity: 1, Credits: 1, Time: now}, item)
						if err != nil {
							b.Error(err)
							return
						}
						waits[w] = append(waits[w], time.Since(t0))
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			var all []time.Duration
			for _, w := range waits {
				all = append(all, w...)
			}
			sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
			b.ReportMetric(float64(len(all))/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-wait-µs")
			b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-wait-µs")
		})
	}
}
