package sqlite_test

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// BenchmarkCommit measures the ledger's group commit: events/s for batches
// of n events, alone and with a history item each (what a gateway writes per
// request). Each Commit is durable: one WAL fsync.
func BenchmarkCommit(b *testing.B) {
	summary := strings.Repeat("x", 200)
	for _, history := range []bool{false, true} {
		for _, n := range []int{1, 64, 256, 1024} {
			name := fmt.Sprintf("batch=%d", n)
			if history {
				name += "/history"
			}
			b.Run(name, func(b *testing.B) {
				ctx := b.Context()
				s := open(b, filepath.Join(b.TempDir(), "tollgate.db"))
				now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
				events := make([]tollgate.UsageEvent, n)
				var items []tollgate.HistoryItem
				if history {
					items = make([]tollgate.HistoryItem, n)
				}
				total := 0
				for b.Loop() {
					for i := range events {
						id := "req_" + rand.Text()
						now = now.Add(time.Millisecond)
						events[i] = tollgate.UsageEvent{
							RequestID: id, OrgID: fmt.Sprintf("org-%d", i%50), KeyID: "key_1",
							Model: "stt-fast", Unit: tollgate.UnitAudioSeconds,
							Quantity: 12.5, Credits: 0.25, Time: now,
						}
						if history {
							items[i] = tollgate.HistoryItem{
								ID: "hist_" + rand.Text(), OrgID: events[i].OrgID, KeyID: "key_1",
								RequestID: id, Model: "stt-fast", Feature: "stt", Status: 200,
								Unit: tollgate.UnitAudioSeconds, Quantity: 12.5, Credits: 0.25,
								Input: summary, Output: summary, CreatedAt: now,
							}
						}
					}
					if err := s.Commit(ctx, events, items); err != nil {
						b.Fatal(err)
					}
					total += n
				}
				b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}
