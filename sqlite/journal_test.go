package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// needJournal skips where the store has no journal (no file locks).
func needJournal(t *testing.T) {
	if !journalLocks {
		t.Skip("no ledger journal on this platform: the store writes the tables directly")
	}
}

// slowIngest makes the journal ingest only when asked (a read, Close),
// so that a test decides what is still in the journal.
func slowIngest(t *testing.T) {
	needJournal(t)
	old := ingestEvery
	ingestEvery = time.Hour
	t.Cleanup(func() { ingestEvery = old })
}

func openStore(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// crash leaves s as a killed process would: the journal's files as they
// are, nothing moved into the tables.
func crash(t *testing.T, s *Store) {
	t.Helper()
	j := s.journal
	if j == nil {
		t.Fatal("the store has no journal")
	}
	close(j.stop)
	<-j.done
	if j.syncDone != nil {
		<-j.syncDone
	}
	if err := j.closeFiles(); err != nil {
		t.Fatal(err)
	}
	s.journal = nil
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func batch(n int, prefix string, at time.Time) ([]tollgate.UsageEvent, []tollgate.HistoryItem) {
	events := make([]tollgate.UsageEvent, n)
	items := make([]tollgate.HistoryItem, n)
	for i := range events {
		id := fmt.Sprintf("%s%03d", prefix, i)
		events[i] = tollgate.UsageEvent{RequestID: "req_" + id, OrgID: "acme", KeyID: "key_1", Model: "stt",
			Unit: tollgate.UnitAudioSeconds, Quantity: 1.5, Credits: 0.25, FreeCredits: 0.125, Time: at}
		items[i] = tollgate.HistoryItem{ID: "hist_" + id, OrgID: "acme", KeyID: "key_1", RequestID: "req_" + id,
			Model: "stt", Feature: "stt", Status: 200, Unit: tollgate.UnitAudioSeconds, Quantity: 1.5, Credits: 0.25,
			Input: "audio/wav 1.5 s", Output: "200 application/json", CreatedAt: at}
	}
	return events, items
}

// tableRows counts the rows in the tables themselves (no flush).
func tableRows(t *testing.T, s *Store) (events, items int) {
	t.Helper()
	if err := s.read.QueryRow(`SELECT (SELECT COUNT(*) FROM usage_events), (SELECT COUNT(*) FROM history)`).Scan(&events, &items); err != nil {
		t.Fatal(err)
	}
	return events, items
}

func journalRecords(t *testing.T, path string) (n int) {
	t.Helper()
	for i := range 2 {
		data, err := os.ReadFile(fmt.Sprintf("%s-ledger%d", path, i))
		if err != nil {
			t.Fatal(err)
		}
		recs, err := decodeJournal(data)
		if err != nil {
			t.Fatal(err)
		}
		n += len(recs)
	}
	return n
}

// TestJournalReplay: batches committed (appended and synced) but not yet
// in the tables when the process dies are there after the next Open,
// each once, with every field, and the journal is empty again.
func TestJournalReplay(t *testing.T) {
	slowIngest(t)
	path := filepath.Join(t.TempDir(), "t.db")
	at := time.Date(2025, 6, 30, 23, 59, 59, 999_999_000, time.UTC)
	s := openStore(t, path)
	events, items := batch(3, "a", at)
	for i := range events {
		if err := s.Commit(t.Context(), events[i:i+1], items[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	// A retried batch (the committer's retry after an unknown outcome).
	if err := s.Commit(t.Context(), events[:1], items[:1]); err != nil {
		t.Fatal(err)
	}
	if e, h := tableRows(t, s); e != 0 || h != 0 {
		t.Fatalf("the tables hold %d events and %d items before any ingestion; want them in the journal only", e, h)
	}
	crash(t, s)
	if n := journalRecords(t, path); n != 4 {
		t.Fatalf("the journal holds %d records after the crash, want 4", n)
	}

	s = openStore(t, path)
	if e, h := tableRows(t, s); e != 3 || h != 3 {
		t.Fatalf("after the replay the tables hold %d events and %d items, want 3 and 3", e, h)
	}
	if n := journalRecords(t, path); n != 0 {
		t.Errorf("the journal holds %d records after the replay, want 0", n)
	}
	got, err := s.History(t.Context(), tollgate.HistoryFilter{OrgID: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	want := []tollgate.HistoryItem{items[2], items[1], items[0]}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("history after the replay:\n got %+v\nwant %+v", got, want)
	}
	totals, err := s.UsageTotals(t.Context(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(totals) != 1 || totals[0].Period != "2025-06" || totals[0].Units != 4.5 || totals[0].Credits != 0.75 || totals[0].FreeCredits != 0.375 {
		t.Errorf("usage totals after the replay: %+v, want one June group of 4.5 units, 0.75 credits, 0.375 free", totals)
	}
}

// TestJournalReadsSeeCommits: every read of the ledger sees the commits
// that returned before it, though they are in the journal only.
func TestJournalReadsSeeCommits(t *testing.T) {
	slowIngest(t)
	s := openStore(t, filepath.Join(t.TempDir(), "t.db"))
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	reads := map[string]func(ctx context.Context) (bool, error){
		"History": func(ctx context.Context) (bool, error) {
			h, err := s.History(ctx, tollgate.HistoryFilter{OrgID: "acme"})
			return len(h) == 1, err
		},
		"HistoryItem": func(ctx context.Context) (bool, error) {
			_, err := s.HistoryItem(ctx, "acme", "hist_HistoryItem000")
			return err == nil, nil
		},
		"DeleteHistory": func(ctx context.Context) (bool, error) {
			return s.DeleteHistory(ctx, "acme", "hist_DeleteHistory000") == nil, nil
		},
		"UsageTotals": func(ctx context.Context) (bool, error) {
			u, err := s.UsageTotals(ctx, time.Time{})
			return len(u) == 1 && u[0].Units == 1.5, err
		},
		"Usage": func(ctx context.Context) (bool, error) {
			u, err := s.Usage(ctx, tollgate.UsageQuery{OrgID: "acme", GroupBy: "model"})
			return len(u) == 1 && u[0].Requests == 1, err
		},
		"PruneHistory": func(ctx context.Context) (bool, error) {
			n, err := s.PruneHistory(ctx, at.Add(time.Second))
			return n == 1, err
		},
	}
	for name, read := range reads {
		// Empty the tables, then commit one event and item.
		if _, err := s.write.Exec(`DELETE FROM usage_events; DELETE FROM history`); err != nil {
			t.Fatal(err)
		}
		events, items := batch(1, name, at)
		if err := s.Commit(t.Context(), events, items); err != nil {
			t.Fatal(err)
		}
		if e, _ := tableRows(t, s); e != 0 {
			t.Fatalf("%s: the commit is in the tables before the read; the test needs it in the journal", name)
		}
		ok, err := read(t.Context())
		if err != nil || !ok {
			t.Errorf("%s right after a commit: saw it %v, err %v", name, ok, err)
		}
	}
}

// TestJournalTornAppend: an append cut short by a crash (never
// acknowledged) ends the journal; the records before it are replayed.
func TestJournalTornAppend(t *testing.T) {
	slowIngest(t)
	path := filepath.Join(t.TempDir(), "t.db")
	s := openStore(t, path)
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	events, items := batch(2, "t", at)
	if err := s.Commit(t.Context(), events, items); err != nil {
		t.Fatal(err)
	}
	jf := s.journal.files[s.journal.active]
	torn := appendRecord(nil, jf.epoch, s.journal.nextSeq, events, items)
	if _, err := jf.f.WriteAt(torn[:len(torn)-3], jf.off); err != nil {
		t.Fatal(err)
	}
	crash(t, s)
	s = openStore(t, path)
	if e, h := tableRows(t, s); e != 2 || h != 2 {
		t.Errorf("after a torn append the tables hold %d events and %d items, want the 2 and 2 before it", e, h)
	}
}

// TestJournalNoResurrection: a history item deleted after it was moved
// into the tables does not come back from the journal on the next Open.
func TestJournalNoResurrection(t *testing.T) {
	slowIngest(t)
	path := filepath.Join(t.TempDir(), "t.db")
	s := openStore(t, path)
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	events, items := batch(2, "r", at)
	if err := s.Commit(t.Context(), events[:1], items[:1]); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteHistory(t.Context(), "acme", items[0].ID); err != nil { // ingests, then deletes
		t.Fatal(err)
	}
	if err := s.Commit(t.Context(), events[1:], items[1:]); err != nil {
		t.Fatal(err)
	}
	crash(t, s)
	s = openStore(t, path)
	h, err := s.History(t.Context(), tollgate.HistoryFilter{OrgID: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 1 || h[0].ID != items[1].ID {
		t.Errorf("history after the restart: %+v, want only %s", h, items[1].ID)
	}
}

// TestJournalCorruptRecord: a record whose checksum is good but whose
// batch does not decode was acknowledged by a gateway: Open refuses to go
// on without it rather than drop it.
func TestJournalCorruptRecord(t *testing.T) {
	slowIngest(t)
	path := filepath.Join(t.TempDir(), "t.db")
	s := openStore(t, path)
	jf := s.journal.files[s.journal.active]
	bad := append(make([]byte, journalHeader), 0x05) // 5 events, none there
	sealRecord(bad, jf.epoch, 0)
	if _, err := jf.f.WriteAt(bad, 0); err != nil {
		t.Fatal(err)
	}
	crash(t, s)
	if s, err := Open(t.Context(), path); err == nil {
		s.Close()
		t.Fatal("Open succeeded over a journal record that does not decode")
	} else if want := path + "-ledger"; !strings.Contains(err.Error(), want) {
		t.Errorf("Open's error %q does not name the journal file %s…", err, want)
	}
}

// TestJournalSecondOpener: a second Open of a database whose journal is
// held writes to the tables directly, and both see each other's commits.
func TestJournalSecondOpener(t *testing.T) {
	needJournal(t)
	path := filepath.Join(t.TempDir(), "t.db")
	a := openStore(t, path)
	b := openStore(t, path)
	if a.journal == nil || b.journal != nil {
		t.Fatalf("journals: first opener %v, second %v; want only the first", a.journal != nil, b.journal != nil)
	}
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	ea, ia := batch(1, "a", at)
	eb, ib := batch(1, "b", at)
	if err := a.Commit(t.Context(), ea, ia); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(t.Context(), eb, ib); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*Store{"first": a, "second": b} {
		h, err := s.History(t.Context(), tollgate.HistoryFilter{OrgID: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		if name == "second" && len(h) < 1 {
			t.Errorf("the second opener sees %d items, want at least its own", len(h))
		}
		if name == "first" && len(h) != 2 {
			t.Errorf("the first opener sees %d items, want 2", len(h))
		}
	}
}

// TestJournalIngestRetried: a failed ingestion loses nothing: the reads
// that waited for it get its error, appends go on, and the next round
// moves every batch, in order.
func TestJournalIngestRetried(t *testing.T) {
	slowIngest(t)
	var mu sync.Mutex
	var got []string
	fail := true
	ingest := func(_ context.Context, events []tollgate.UsageEvent, _ []tollgate.HistoryItem, _ func(time.Duration)) error {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return errors.New("disk full")
		}
		for _, e := range events {
			got = append(got, e.RequestID)
		}
		return nil
	}
	base := filepath.Join(t.TempDir(), "t.db")
	j, ok, err := openJournal(t.Context(), base, ingest, journalOptions{})
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	e1, i1 := batch(2, "x", at)
	if err := j.append(e1, i1); err != nil {
		t.Fatal(err)
	}
	if err := j.flush(t.Context()); err == nil || !strings.Contains(err.Error(), "ledger journal: ingest: disk full") {
		t.Fatalf("flush over a failing ingestion: %v", err)
	}
	e2, i2 := batch(1, "y", at)
	if err := j.append(e2, i2); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	if err := j.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if want := []string{"req_x000", "req_x001", "req_y000"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ingested %v, want %v", got, want)
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
}

// TestJournalBroken: after a write fails, every append fails with the
// same error and the store's Ping reports it (so /readyz does).
func TestJournalBroken(t *testing.T) {
	slowIngest(t)
	s := openStore(t, filepath.Join(t.TempDir(), "t.db"))
	s.journal.files[s.journal.active].f.Close() // the disk goes away
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	events, items := batch(1, "b", at)
	for range 2 {
		if err := s.Commit(t.Context(), events, items); err == nil || !errors.Is(err, errJournalBroken) {
			t.Fatalf("Commit on a broken journal: %v", err)
		}
	}
	if err := s.Ping(t.Context()); err == nil || !errors.Is(err, errJournalBroken) {
		t.Errorf("Ping on a broken journal: %v", err)
	}
}

// TestJournalBackgroundSync: with background sync an append returns
// without syncing, the background syncs what was appended within a few
// ticks, and what was committed is in the tables after a reopen; without
// it every append syncs.
func TestJournalBackgroundSync(t *testing.T) {
	slowIngest(t)
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "t.db")
	s, err := Open(t.Context(), path, WithBackgroundSync())
	if err != nil {
		t.Fatal(err)
	}
	j := s.journal
	for i := range 50 {
		events, items := batch(1, fmt.Sprintf("bg%02d_", i), at)
		if err := s.Commit(t.Context(), events, items); err != nil {
			t.Fatal(err)
		}
	}
	if n := j.appendSyncs.Load(); n != 0 {
		t.Errorf("%d appends synced with background sync on", n)
	}
	before := j.backgroundSyncs.Load()
	deadline := time.Now().Add(5 * time.Second)
	for {
		j.mu.Lock()
		dirty := j.files[j.active].dirty
		j.mu.Unlock()
		if !dirty && j.backgroundSyncs.Load() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the journal was not synced in the background (syncs %d, then %d)", before, j.backgroundSyncs.Load())
		}
		time.Sleep(BackgroundSyncEvery)
	}
	crash(t, s)
	s = openStore(t, path)
	totals, err := s.UsageTotals(t.Context(), time.Time{})
	if err != nil || len(totals) != 1 || totals[0].Units != 75 { // 50 events of 1.5 s
		t.Fatalf("after the reopen: %+v, %v; want the 50 events", totals, err)
	}

	synced := openStore(t, filepath.Join(t.TempDir(), "u.db"))
	for i := range 5 {
		events, items := batch(1, fmt.Sprintf("fg%02d_", i), at)
		if err := synced.Commit(t.Context(), events, items); err != nil {
			t.Fatal(err)
		}
	}
	if n, bg := synced.journal.appendSyncs.Load(), synced.journal.backgroundSyncs.Load(); n != 5 || bg != 0 {
		t.Errorf("default: %d append syncs and %d background ones, want 5 and 0", n, bg)
	}
}

// TestJournalBackgroundSyncFails: a failed background sync breaks the
// journal as a failed append does: commits and Ping fail from then on.
func TestJournalBackgroundSyncFails(t *testing.T) {
	slowIngest(t)
	failing := func(*os.File) error { return errors.New("I/O error") }
	j, ok, err := openJournal(t.Context(), filepath.Join(t.TempDir(), "t.db"),
		func(context.Context, []tollgate.UsageEvent, []tollgate.HistoryItem, func(time.Duration)) error {
			return nil
		},
		journalOptions{syncEvery: time.Millisecond, sync: failing})
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	defer j.close()
	e, i := batch(1, "s", time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
	if err := j.append(e, i); err != nil {
		t.Fatalf("the append itself does not sync: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for j.err() == nil {
		if time.Now().After(deadline) {
			t.Fatal("a failing background sync did not break the journal")
		}
		time.Sleep(time.Millisecond)
	}
	if err := j.append(e, i); !errors.Is(err, errJournalBroken) || !strings.Contains(err.Error(), "I/O error") {
		t.Errorf("append after a failed background sync: %v", err)
	}
}

// BenchmarkIngest measures the journal's ingestion: one transaction of
// n events and n history items into tables that hold 100,000 of each
// (time-ordered ids, as the gateway makes them), in rows/s (an event and
// its item count as one).
func BenchmarkIngest(b *testing.B) {
	s, err := Open(b.Context(), filepath.Join(b.TempDir(), "t.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	seq := 0
	next := func(n int) ([]tollgate.UsageEvent, []tollgate.HistoryItem) {
		seq++
		at = at.Add(time.Millisecond)
		return batch(n, fmt.Sprintf("%012d_", seq), at)
	}
	for range 100 {
		e, i := next(1000)
		if err := s.insertLedger(b.Context(), e, i, nil); err != nil {
			b.Fatal(err)
		}
	}
	for _, n := range []int{200, 1000, 4000} {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			total := 0
			for b.Loop() {
				b.StopTimer()
				e, i := next(n)
				b.StartTimer()
				if err := s.insertLedger(b.Context(), e, i, nil); err != nil {
					b.Fatal(err)
				}
				total += n
			}
			b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// TestJournalCloseWithIngestFailing: a Close whose last ingestion fails
// keeps the batches in the files for the next open, and the journal then
// refuses appends and flushes at once instead of waiting for rounds that
// will not come.
func TestJournalCloseWithIngestFailing(t *testing.T) {
	slowIngest(t)
	base := filepath.Join(t.TempDir(), "t.db")
	j, ok, err := openJournal(t.Context(), base, func(context.Context, []tollgate.UsageEvent, []tollgate.HistoryItem, func(time.Duration)) error {
		return errors.New("disk full")
	}, journalOptions{})
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	e, i := batch(2, "c", time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
	if err := j.append(e, i); err != nil {
		t.Fatal(err)
	}
	if err := j.close(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("close over a failing ingestion: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if err := j.flush(ctx); !errors.Is(err, errJournalClosed) {
		t.Errorf("flush after close: %v, want %v", err, errJournalClosed)
	}
	if err := j.append(e, i); !errors.Is(err, errJournalClosed) {
		t.Errorf("append after close: %v, want %v", err, errJournalClosed)
	}
	if n := journalRecords(t, base); n != 1 {
		t.Errorf("the journal holds %d records after the failed close, want the 1 appended", n)
	}
}

// TestJournalBackpressure: while ingestion is slow, appends wait once the
// rows waiting for it reach the high-water mark, and go on when a round
// has taken them.
func TestJournalBackpressure(t *testing.T) {
	slowIngest(t)
	old := journalHighWater
	journalHighWater = 4
	t.Cleanup(func() { journalHighWater = old })
	release := make(chan struct{})
	ingested := make(chan int, 16)
	j, ok, err := openJournal(t.Context(), filepath.Join(t.TempDir(), "t.db"), func(_ context.Context, e []tollgate.UsageEvent, _ []tollgate.HistoryItem, _ func(time.Duration)) error {
		<-release
		ingested <- len(e)
		return nil
	}, journalOptions{})
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	e, i := batch(1, "p", at) // 2 rows a batch
	for range 2 {
		if err := j.append(e, i); err != nil {
			t.Fatal(err)
		}
	}
	third := make(chan error, 1)
	go func() { third <- j.append(e, i) }()
	select {
	case err := <-third:
		t.Fatalf("an append over the high-water mark returned at once (%v) while ingestion was stalled", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-third; err != nil {
		t.Fatal(err)
	}
	if n := <-ingested; n != 2 {
		t.Errorf("the round that freed the append took %d events, want the 2 before it", n)
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
}

// TestJournalIngestionRests: a round rests after each insert statement
// as long as the statement took, unless a read waits for it, the next
// round is already due behind it or the journal is closing.
func TestJournalIngestionRests(t *testing.T) {
	needJournal(t)
	old := ingestEvery
	ingestEvery = 5 * time.Millisecond
	t.Cleanup(func() { ingestEvery = old })

	// Each round's ingestion reports how long one pause(worked) took.
	// worked and hold are the next round's: hold, when set, keeps the
	// round from pausing until it is closed.
	var mu sync.Mutex
	worked := time.Duration(0)
	var hold chan struct{}
	entered := make(chan struct{}, 16)
	paused := make(chan time.Duration, 16)
	ingest := func(_ context.Context, _ []tollgate.UsageEvent, _ []tollgate.HistoryItem, pause func(time.Duration)) error {
		mu.Lock()
		w, h := worked, hold
		hold = nil
		mu.Unlock()
		entered <- struct{}{}
		if h != nil {
			<-h
		}
		start := time.Now()
		pause(w)
		paused <- time.Since(start)
		return nil
	}
	j, ok, err := openJournal(t.Context(), filepath.Join(t.TempDir(), "t.db"), ingest, journalOptions{})
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	closing := false // the test's last step closes j
	defer func() {
		if !closing {
			j.close()
		}
	}()
	// next sets the next round's worked and holds it; unheld lets the
	// rounds after it run freely.
	next := func(w time.Duration) chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		worked, hold = w, make(chan struct{})
		return hold
	}
	unheld := func() {
		mu.Lock()
		defer mu.Unlock()
		worked, hold = 0, nil
	}
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	appendBatch := func(n int, prefix string) {
		t.Helper()
		if err := j.append(batch(n, prefix, at)); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(what string, c chan struct{}) {
		t.Helper()
		select {
		case <-c:
		case <-time.After(10 * time.Second):
			t.Fatalf("no ingestion round %s", what)
		}
	}
	// pauseTook releases the held round and returns how long its pause
	// took. A round that must not rest is given 5s of work: resting fails
	// the test in seconds.
	pauseTook := func(what string, h chan struct{}) time.Duration {
		t.Helper()
		close(h)
		select {
		case d := <-paused:
			return d
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the round rested", what)
			return 0
		}
	}
	drain := func() {
		for {
			select {
			case <-entered:
			case <-paused:
			default:
				return
			}
		}
	}

	// Nothing waits: the round rests as long as the statement worked.
	h := next(30 * time.Millisecond)
	appendBatch(2, "a")
	wait("after an append", entered)
	if d := pauseTook("idle", h); d < 30*time.Millisecond {
		t.Errorf("an idle round rested %v after a statement that took 30ms, want at least as long", d)
	}

	// A read waits for the round: no rest.
	h = next(5 * time.Second)
	appendBatch(2, "b")
	wait("after an append", entered)
	flushed := make(chan error, 1)
	go func() { flushed <- j.flush(t.Context()) }()
	for {
		j.mu.Lock()
		waiting := j.flushing > 0
		j.mu.Unlock()
		if waiting {
			break
		}
		time.Sleep(time.Millisecond)
	}
	unheld()
	if d := pauseTook("with a read waiting", h); d > time.Second {
		t.Errorf("a round a read waited for rested %v", d)
	}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	drain()

	// The next round is due behind this one: no rest.
	h = next(5 * time.Second)
	appendBatch(2, "c")
	wait("after an append", entered)
	appendBatch(journalRows/2, "d") // events + items: journalRows rows
	unheld()
	if d := pauseTook("with the next round due", h); d > time.Second {
		t.Errorf("a round with the next one due rested %v", d)
	}
	if err := j.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	drain()

	// Closing: no rest.
	h = next(5 * time.Second)
	appendBatch(2, "e")
	wait("after an append", entered)
	closed := make(chan error, 1)
	closing = true
	go func() { closed <- j.close() }()
	for {
		select {
		case <-j.stop:
		default:
			time.Sleep(time.Millisecond)
			continue
		}
		break
	}
	if d := pauseTook("while closing", h); d > time.Second {
		t.Errorf("a round while closing rested %v", d)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// TestInsertLedgerPauses: the ingestion's inserts call pause after each
// statement (chunk rows, then one row at a time) with the time it took.
func TestInsertLedgerPauses(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "t.db"))
	defer s.Close()
	n := 2*chunk + 3
	e, i := batch(n, "p", time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
	var worked []time.Duration
	if err := s.insertLedger(t.Context(), e, i, func(d time.Duration) { worked = append(worked, d) }); err != nil {
		t.Fatal(err)
	}
	if want := 2 * (2 + 3); len(worked) != want {
		t.Fatalf("pause called %d times for %d events and %d items, want %d (once per statement)", len(worked), n, n, want)
	}
	for k, d := range worked {
		if d <= 0 {
			t.Errorf("statement %d: pause got %v, want the statement's time", k, d)
		}
	}
	// And they are all in the tables.
	if err := s.flushLedger(t.Context(), "test"); err != nil {
		t.Fatal(err)
	}
	var events, items int
	if err := s.read.QueryRowContext(t.Context(), `SELECT (SELECT COUNT(*) FROM usage_events), (SELECT COUNT(*) FROM history)`).Scan(&events, &items); err != nil {
		t.Fatal(err)
	}
	if events != n || items != n {
		t.Errorf("tables hold %d events and %d items, want %d each", events, items, n)
	}
}

// TestLedgerIngestionCounts: the backlog is what was committed and not
// ingested; the counters are what the rounds moved and how long they took.
func TestLedgerIngestionCounts(t *testing.T) {
	slowIngest(t)
	s := openStore(t, filepath.Join(t.TempDir(), "t.db"))
	defer s.Close()
	if s.journal == nil {
		t.Skip("the journal is held by another process")
	}
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	for k := range 3 {
		e, i := batch(5, fmt.Sprintf("b%d_", k), at)
		if err := s.Commit(t.Context(), e, i); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.LedgerBacklog(); got != 30 {
		t.Errorf("backlog %d after 3 commits of 5 events and 5 items, want 30", got)
	}
	if rounds, rows, _ := s.LedgerIngestion(); rounds != 0 || rows != 0 {
		t.Errorf("before any round: %d rounds, %d rows", rounds, rows)
	}
	if err := s.flushLedger(t.Context(), "test"); err != nil {
		t.Fatal(err)
	}
	if got := s.LedgerBacklog(); got != 0 {
		t.Errorf("backlog %d after a flush, want 0", got)
	}
	rounds, rows, seconds := s.LedgerIngestion()
	if rounds != 1 || rows != 30 || seconds <= 0 {
		t.Errorf("after a flush: %d rounds, %d rows, %vs; want 1 round of 30 rows that took some time", rounds, rows, seconds)
	}
}
