package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// TestCheckpointInBackground: commits never run a checkpoint themselves
// (wal_autocheckpoint is 0 on the write connection), and the checkpointer
// copies the WAL back into the database file on its own.
func TestCheckpointInBackground(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "tollgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	var auto int
	if err := s.write.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&auto); err != nil {
		t.Fatal(err)
	}
	if auto != 0 {
		t.Errorf("write connection wal_autocheckpoint = %d; want 0 (checkpoints off the commit path)", auto)
	}

	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for b := range 20 {
		events := make([]tollgate.UsageEvent, 50)
		for i := range events {
			events[i] = tollgate.UsageEvent{RequestID: fmt.Sprintf("req_%02d_%02d", b, i), OrgID: "o", Model: "m",
				Unit: tollgate.UnitRequests, Quantity: 1, Credits: 1, Time: now}
		}
		if err := s.Commit(ctx, events, nil); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got := s.ckpt.backfilled.Load(); got != nil && got[0] > 0 && got[1] == got[0] {
			t.Logf("checkpointer: %d of %d WAL frames in the database file", got[1], got[0])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("WAL not checkpointed 5 s after the commits: %v", s.ckpt.backfilled.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	totals, err := s.UsageTotals(ctx, time.Time{})
	if err != nil || len(totals) != 1 || totals[0].Units != 1000 {
		t.Errorf("UsageTotals after the checkpoint: %+v, %v; want 1000 units", totals, err)
	}
}
