package sqlite_test

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/storetest"
	"github.com/tollgate/tollgate/sqlite"
)

func open(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path)
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
		return open(t, filepath.Join(t.TempDir(), "tollgate.db"))
	})
}

func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "tollgate.db")
	s, err := sqlite.Open(ctx, path)
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

	// Migrations run again on an up-to-date file: a no-op.
	s = open(t, path)
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

func TestOpenRefusesMemory(t *testing.T) {
	for _, path := range []string{"", ":memory:", "file:x?mode=memory"} {
		if s, err := sqlite.Open(t.Context(), path); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded, want an error", path)
		}
	}
}

// TestConcurrentReadWrite mixes writers and readers on one store: none may
// see SQLITE_BUSY.
func TestConcurrentReadWrite(t *testing.T) {
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "tollgate.db"))
	if err := s.PutPlan(ctx, &tollgate.Plan{ID: "free", RPM: 10}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateOrg(ctx, &tollgate.Org{ID: "acme", PlanID: "free"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for w := range 8 {
		wg.Go(func() {
			for i := range 20 {
				h := sha256.Sum256(fmt.Appendf(nil, "%d/%d", w, i))
				k := &tollgate.Key{OrgID: "acme", Name: fmt.Sprintf("k-%d-%d", w, i), Hash: h[:]}
				if err := s.CreateKey(ctx, k); err != nil {
					errs <- err
					continue
				}
				if err := s.SetConcurrency(ctx, "acme", fmt.Sprint(w), i); err != nil {
					errs <- err
				}
				if _, err := s.Access(ctx, h[:]); err != nil {
					errs <- err
				}
				if err := s.RevokeKey(ctx, k.ID, time.Now()); err != nil {
					errs <- err
				}
				if _, err := s.Keys(ctx, "acme"); err != nil {
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
}

func BenchmarkAccess(b *testing.B) {
	ctx := b.Context()
	s := open(b, filepath.Join(b.TempDir(), "tollgate.db"))
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
