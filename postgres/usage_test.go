package postgres_test

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/pgtest"
)

// orderedID returns an id as httpapi makes them: prefix, the time in
// milliseconds (9 base-36 digits), then 13 random ones.
func orderedID(rng *rand.Rand, prefix string, at time.Time) string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	ms := strconv.FormatInt(at.UnixMilli(), 36)
	var b strings.Builder
	b.WriteString(prefix + strings.Repeat("0", 9-len(ms)) + ms)
	for range 13 {
		b.WriteByte(alphabet[rng.IntN(len(alphabet))])
	}
	return b.String()
}

// BenchmarkCommit measures the ledger's group commit in events/s (each
// with its history item, as the gateway writes) for batches of 1 to 1024,
// each Commit one durable statement. The ledger holds 100,000 events and
// items first, so that the indexes are past a trivial size.
func BenchmarkCommit(b *testing.B) {
	const preload = 100_000
	ctx := b.Context()
	s := open(b, pgtest.DSN(b))
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	summary := strings.Repeat("x", 200)
	batch := func(n int) ([]tollgate.UsageEvent, []tollgate.HistoryItem) {
		events := make([]tollgate.UsageEvent, n)
		items := make([]tollgate.HistoryItem, n)
		for i := range events {
			now = now.Add(20 * time.Microsecond)
			id := orderedID(rng, "req_", now)
			events[i] = tollgate.UsageEvent{
				RequestID: id, OrgID: fmt.Sprintf("org-%d", i%50), KeyID: "key_1",
				Model: "stt-fast", Unit: tollgate.UnitAudioSeconds,
				Quantity: 12.5, Credits: 0.25, Time: now,
			}
			items[i] = tollgate.HistoryItem{
				ID: orderedID(rng, "hist_", now), OrgID: events[i].OrgID, KeyID: "key_1",
				RequestID: id, Model: "stt-fast", Feature: "stt", Status: 200,
				Unit: tollgate.UnitAudioSeconds, Quantity: 12.5, Credits: 0.25,
				Input: summary, Output: summary, CreatedAt: now,
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

	for _, n := range []int{1, 64, 1024} {
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
}
