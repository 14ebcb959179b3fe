package httpapi

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
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
	m := newLedgerMetrics(prometheus.NewRegistry(), counting)
	c := newCommitter(counting, func(string, ...any) {}, m)
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

	// The metrics agree: 500 waits, one batch and one attempt per
	// transaction, the batches adding up to the 500 requests.
	commits := uint64(counting.commits.Load())
	if n, _ := histogram(t, m.wait); n != 500 {
		t.Errorf("wait observed %d times, want 500", n)
	}
	if n, sum := histogram(t, m.batch); n != commits || sum != 500 {
		t.Errorf("batch: %d observations summing to %v, want %d summing to 500", n, sum, commits)
	}
	if n, sum := histogram(t, m.commit); n != commits || sum <= 0 {
		t.Errorf("commit: %d observations (%v s), want %d", n, sum, commits)
	}
	if f := testutil.ToFloat64(m.failures); f != 0 {
		t.Errorf("failures %v, want 0", f)
	}
}

// TestCommitterCountsFailures: every failed attempt is counted and timed;
// a commit that succeeds on its third attempt answers its request with no
// error, one that fails all four answers with the last error.
func TestCommitterCountsFailures(t *testing.T) {
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	ev := func(id string) *tollgate.UsageEvent {
		return &tollgate.UsageEvent{RequestID: id, OrgID: "o", Model: "m", Unit: tollgate.UnitRequests, Quantity: 1, Time: now}
	}
	flaky := &failingLedger{Ledger: openLedger(t), failures: 2}
	m := newLedgerMetrics(prometheus.NewRegistry(), flaky)
	c := newCommitter(flaky, func(string, ...any) {}, m)
	if err := c.commit(ev("req_a"), nil); err != nil {
		t.Fatalf("commit after two failed attempts: %v", err)
	}
	if f := testutil.ToFloat64(m.failures); f != 2 {
		t.Errorf("failures %v, want 2", f)
	}
	if n, _ := histogram(t, m.commit); n != 3 {
		t.Errorf("commit attempts observed %d, want 3", n)
	}

	flaky.failures = 10
	start := time.Now()
	if err := c.commit(ev("req_b"), nil); !errors.Is(err, errInjected) {
		t.Fatalf("commit failing every attempt: %v, want the injected error", err)
	}
	// The attempts are 10, 40 and 160 ms apart and the request gets its
	// error after the last one, not after another wait.
	if d := time.Since(start); d < 210*time.Millisecond || d > 600*time.Millisecond {
		t.Errorf("four failed attempts took %v, want 210 ms and a little more", d)
	}
	if f := testutil.ToFloat64(m.failures); f != 6 {
		t.Errorf("failures %v, want 2 + 4", f)
	}
	if n, _ := histogram(t, m.wait); n != 2 {
		t.Errorf("wait observed %d times, want 2", n)
	}
	c.close()
}

var errInjected = errors.New("injected commit failure")

// failingLedger fails its next failures commits, then passes them on.
type failingLedger struct {
	tollgate.Ledger
	failures int // read and written by the committer's goroutine only, between commits
}

func (f *failingLedger) Commit(ctx context.Context, ev []tollgate.UsageEvent, it []tollgate.HistoryItem) error {
	if f.failures > 0 {
		f.failures--
		return errInjected
	}
	return f.Ledger.Commit(ctx, ev, it)
}

// histogram returns h's observation count and sum.
func histogram(t *testing.T, h prometheus.Histogram) (uint64, float64) {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
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
			c := newCommitter(store, func(string, ...any) {}, newLedgerMetrics(prometheus.NewRegistry(), store))
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
