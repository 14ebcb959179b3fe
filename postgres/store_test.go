package postgres_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/pgtest"
	"github.com/tollgate/tollgate/internal/storetest"
	"github.com/tollgate/tollgate/postgres"
)

func open(t testing.TB, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) tollgate.Store {
		return open(t, pgtest.DSN(t))
	})
}

func TestReopen(t *testing.T) {
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	s, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	plan := &tollgate.Plan{ID: "pro", RPM: 100, ModelConcurrency: map[string]int{"tts": 0}, Features: []string{"tts"},
		BillingRequired: true, FreeCredits: 500, MonthlyCreditCap: 1000, MonthlyLimits: map[string]float64{"tts": 3600}}
	org := &tollgate.Org{ID: "acme", Name: "Acme", PlanID: "pro", CreatedAt: time.Unix(1700000000, 123456789),
		Billing: tollgate.Billing{Active: true, MonthlyCreditLimit: 250, MonthlyLimits: map[string]float64{"tts": 60}}}
	at := time.Date(2025, 6, 30, 23, 59, 59, 999_999_999, time.UTC)
	events := []tollgate.UsageEvent{{RequestID: "req_1", OrgID: "acme", KeyID: "key_1", Model: "tts",
		Unit: tollgate.UnitCharacters, Quantity: 120, Credits: 1.5, FreeCredits: 1.5, Time: at}}
	item := tollgate.HistoryItem{ID: "hist_1", OrgID: "acme", KeyID: "key_1", RequestID: "req_1", Model: "tts",
		Feature: "tts", Status: 200, Unit: tollgate.UnitCharacters, Quantity: 120, Credits: 1.5,
		Input: "hello", Output: "audio/mpeg", CreatedAt: at}
	key := &tollgate.Key{ID: "key_1", OrgID: "acme", Name: "ci", Hash: []byte("hash"), Models: []string{"tts"},
		CreatedAt: org.CreatedAt, ExpiresAt: org.CreatedAt.Add(time.Hour)}
	for _, err := range []error{
		s.PutPlan(ctx, plan),
		s.CreateOrg(ctx, org),
		s.GrantModel(ctx, "acme", "tts"),
		s.SetConcurrency(ctx, "acme", "tts", 3),
		s.CreateKey(ctx, key),
		s.Commit(ctx, events, []tollgate.HistoryItem{item}),
		s.Close(),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}

	// Migrations run again on an up-to-date schema: a no-op.
	s = open(t, dsn)
	got, err := s.Access(ctx, []byte("hash"))
	if err != nil {
		t.Fatal(err)
	}
	want := &tollgate.Access{Key: key, Org: org, Plan: plan,
		Grants: map[string]bool{"tts": true}, Concurrency: map[string]int{"tts": 3}}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("Access after reopen (-got +want):\n%s", d)
	}
	totals, err := s.UsageTotals(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	wantTotals := []tollgate.UsageTotal{{OrgID: "acme", Model: "tts", Period: "2025-06", Units: 120, Credits: 1.5, FreeCredits: 1.5}}
	if d := cmp.Diff(totals, wantTotals); d != "" {
		t.Errorf("UsageTotals after reopen (-got +want):\n%s", d)
	}
	gotItem, err := s.HistoryItem(ctx, "acme", "hist_1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(gotItem, &item); d != "" {
		t.Errorf("HistoryItem after reopen (-got +want):\n%s", d)
	}
}

// TestOpenReplicas opens one empty schema from many replicas at once: the
// migrations run once, under the schema's lock, and every replica works.
func TestOpenReplicas(t *testing.T) {
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	const n = 8
	stores := make([]*postgres.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = postgres.Open(ctx, dsn)
		})
	}
	close(start)
	wg.Wait()
	for _, s := range stores {
		if s != nil {
			t.Cleanup(func() { s.Close() })
		}
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	if err := stores[0].PutPlan(ctx, &tollgate.Plan{ID: "free"}); err != nil {
		t.Fatal(err)
	}
	for i, s := range stores {
		if _, err := s.Plan(ctx, "free"); err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var applied int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM goose_db_version WHERE version_id > 0`).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations: %v %v", files, err)
	}
	if applied != len(files) {
		t.Errorf("goose_db_version holds %d applied migrations, want %d (each once)", applied, len(files))
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := postgres.Open(t.Context(), ""); err == nil {
		t.Error("Open(\"\") succeeded, want an error")
	}
	dsn := pgtest.DSN(t)
	missing, err := pgtest.WithSearchPath(dsn, "no_such_schema")
	if err != nil {
		t.Fatal(err)
	}
	if s, err := postgres.Open(t.Context(), missing); err == nil {
		s.Close()
		t.Error("Open with a search_path of no existing schema succeeded, want an error")
	}
}

// TestCommitCanceled: a Commit whose context ends writes nothing.
func TestCommitCanceled(t *testing.T) {
	s := open(t, pgtest.DSN(t))
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

// TestHistoryBytes: summaries are client text. NUL and invalid UTF-8,
// which a PostgreSQL text column refuses, round-trip byte for byte and do
// not fail the batch they are in.
func TestHistoryBytes(t *testing.T) {
	ctx := t.Context()
	s := open(t, pgtest.DSN(t))
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	items := []tollgate.HistoryItem{
		{ID: "hist_nul", OrgID: "acme", Input: "a\x00b", Output: "\x00", CreatedAt: at},
		{ID: "hist_bad_utf8", OrgID: "acme", Input: "\xff\xfe text \xc3", Output: "ok", CreatedAt: at},
		{ID: "hist_plain", OrgID: "acme", Input: "Grüße", CreatedAt: at},
	}
	events := []tollgate.UsageEvent{{RequestID: "req_1", OrgID: "acme", Model: "m", Unit: tollgate.UnitRequests,
		Quantity: 1, Credits: 1, Time: at}}
	if err := s.Commit(ctx, events, items); err != nil {
		t.Fatal(err)
	}
	for _, want := range items {
		got, err := s.HistoryItem(ctx, "acme", want.ID)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(got, &want); d != "" {
			t.Errorf("HistoryItem(%s) (-got +want):\n%s", want.ID, d)
		}
	}
}

// TestCommitNoDeadlock: concurrent Commits of the same ids, each batch in
// another order (replicas retrying each other's batches), neither
// deadlock nor store anything twice.
func TestCommitNoDeadlock(t *testing.T) {
	ctx := t.Context()
	s := open(t, pgtest.DSN(t))
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	const ids, workers, rounds = 200, 8, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for r := range rounds {
				events := make([]tollgate.UsageEvent, ids)
				items := make([]tollgate.HistoryItem, ids)
				for i, k := range rng.Perm(ids) {
					id := fmt.Sprintf("%d_%03d", r, k)
					events[i] = tollgate.UsageEvent{RequestID: "req_" + id, OrgID: "acme", Model: "m",
						Unit: tollgate.UnitRequests, Quantity: 1, Credits: 1, Time: at}
					items[i] = tollgate.HistoryItem{ID: "hist_" + id, OrgID: "acme", RequestID: "req_" + id, CreatedAt: at}
				}
				if err := s.Commit(ctx, events, items); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	totals, err := s.UsageTotals(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := []tollgate.UsageTotal{{OrgID: "acme", Model: "m", Period: "2025-06", Units: ids * rounds, Credits: ids * rounds}}
	if d := cmp.Diff(totals, want); d != "" {
		t.Errorf("UsageTotals (-got +want):\n%s", d)
	}
}

// TestConcurrentRotate: of concurrent rotations of one key (on several
// replicas), one wins and the others are conflicts; the old key has one
// successor.
func TestConcurrentRotate(t *testing.T) {
	ctx := t.Context()
	s := open(t, pgtest.DSN(t))
	if err := s.PutPlan(ctx, &tollgate.Plan{ID: "free"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateOrg(ctx, &tollgate.Org{ID: "acme", PlanID: "free"}); err != nil {
		t.Fatal(err)
	}
	old := &tollgate.Key{OrgID: "acme", Name: "ci", Hash: []byte("old")}
	if err := s.CreateKey(ctx, old); err != nil {
		t.Fatal(err)
	}
	const n = 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			// Distinct names: only the old key's row decides.
			next := &tollgate.Key{OrgID: "acme", Name: fmt.Sprint("ci-", i), Hash: fmt.Append(nil, "next", i)}
			errs[i] = s.RotateKey(ctx, old.ID, next, time.Now().Add(time.Hour))
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch tollgate.ErrorCode(err) {
		case "":
			ok++
		case tollgate.CodeConflict:
		default:
			t.Errorf("rotation %d: %v", i, err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d concurrent rotations succeeded, want 1", ok, n)
	}
	keys, err := s.Keys(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Errorf("Keys(acme): %d keys, want the old one and its successor", len(keys))
	}
}

func BenchmarkAccess(b *testing.B) {
	ctx := b.Context()
	s := open(b, pgtest.DSN(b))
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	must(s.PutPlan(ctx, &tollgate.Plan{ID: "pro", RPM: 1000, ModelConcurrency: map[string]int{"tts": 2}, Features: []string{"tts", "stt"}}))
	must(s.CreateOrg(ctx, &tollgate.Org{ID: "acme", PlanID: "pro"}))
	for _, m := range []string{"tts", "stt", "dub"} {
		must(s.GrantModel(ctx, "acme", m))
	}
	must(s.SetConcurrency(ctx, "acme", "tts", 4))
	const n = 1000
	hashes := make([][]byte, n)
	for i := range hashes {
		h := sha256.Sum256(fmt.Append(nil, i))
		hashes[i] = h[:]
		must(s.CreateKey(ctx, &tollgate.Key{OrgID: "acme", Name: fmt.Sprint(i), Hash: h[:], Models: []string{"tts"}}))
	}

	b.Run("serial", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := s.Access(ctx, hashes[i%n]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := s.Access(ctx, hashes[i%n]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
}
