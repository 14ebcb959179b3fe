package sqlite_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// TestCommitCanceled: a Commit whose context ends writes nothing.
func TestCommitCanceled(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "tollgate.db"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	events := []tollgate.UsageEvent{{RequestID: "req_1", OrgID: "acme", Model: "m", Time: at}}
	items := []tollgate.HistoryItem{{ID: "hist_1", OrgID: "acme", CreatedAt: at}}
	if err := s.Commit(ctx, events, items); err == nil {
		t.Fatal("Commit with a canceled context succeeded")
	}
	totals, err := s.UsageTotals(t.Context(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(totals) != 0 {
		t.Errorf("UsageTotals after a canceled Commit: %v, want none", totals)
	}
}

// ids makes request and history ids: random, like httpapi's today, or
// time-ordered (the time in milliseconds, then random characters), which
// keeps the unique indexes' inserts at their right edge.
type ids struct {
	ordered bool
	rng     *rand.Rand
}

const idAlphabet = "0123456789abcdefghijklmnopqrstuvwxyz"

func (g ids) next(prefix string, at time.Time) string {
	var b strings.Builder
	b.WriteString(prefix)
	if g.ordered {
		ms := strconv.FormatInt(at.UnixMilli(), 36)
		b.WriteString(strings.Repeat("0", 9-len(ms)) + ms)
	}
	for range 20 - b.Len() + len(prefix) {
		b.WriteByte(idAlphabet[g.rng.IntN(len(idAlphabet))])
	}
	return b.String()
}

// BenchmarkCommit measures the ledger's group commit in events/s, for
// batches of 1 to 1024 events, each Commit durable: one journal append
// and fdatasync, with the journal's background inserts running beside it
// (BenchmarkIngest measures those alone). The
// ledger holds 100,000 events (and items) first, so that the unique
// indexes are past the size where random ids still land on few pages.
//   - ids=random: request ids as httpapi makes them today;
//   - ids=ordered: time-ordered request ids;
//   - history: with one history item per event, as the gateway writes.
func BenchmarkCommit(b *testing.B) {
	const preload = 100_000
	for _, c := range []struct {
		name             string
		ordered, history bool
	}{
		{"ids=random", false, false},
		{"ids=ordered", true, false},
		{"ids=random/history", false, true},
		{"ids=ordered/history", true, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := b.Context()
			s := open(b, filepath.Join(b.TempDir(), "tollgate.db"))
			gen := ids{ordered: c.ordered, rng: rand.New(rand.NewPCG(1, 2))}
			now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
			summary := strings.Repeat("x", 200)
			batch := func(n int) ([]tollgate.UsageEvent, []tollgate.HistoryItem) {
				events := make([]tollgate.UsageEvent, n)
				var items []tollgate.HistoryItem
				if c.history {
					items = make([]tollgate.HistoryItem, n)
				}
				for i := range events {
					now = now.Add(20 * time.Microsecond)
					id := gen.next("req_", now)
					events[i] = tollgate.UsageEvent{
						RequestID: id, OrgID: fmt.Sprintf("org-%d", i%50), KeyID: "key_1",
						Model: "stt-fast", Unit: tollgate.UnitAudioSeconds,
						Quantity: 12.5, Credits: 0.25, Time: now,
					}
					if c.history {
						items[i] = tollgate.HistoryItem{
							ID: gen.next("hist_", now), OrgID: events[i].OrgID, KeyID: "key_1",
							RequestID: id, Model: "stt-fast", Feature: "stt", Status: 200,
							Unit: tollgate.UnitAudioSeconds, Quantity: 12.5, Credits: 0.25,
							Input: summary, Output: summary, CreatedAt: now,
						}
					}
				}
				return events, items
			}
			for range preload / 5000 {
				events, items := batch(5000)
				if err := s.Commit(ctx, events, items); err != nil {
					b.Fatal(err)
				}
			}

			for _, n := range []int{1, 14, 64, 256, 1024} {
				b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
					total := 0
					for b.Loop() {
						b.StopTimer()
						events, items := batch(n)
						b.StartTimer()
						if err := s.Commit(ctx, events, items); err != nil {
							b.Fatal(err)
						}
						total += n
					}
					b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
				})
			}
		})
	}
}
