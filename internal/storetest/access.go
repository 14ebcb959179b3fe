package storetest

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

func testAccess(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	must(t, s.GrantModel(ctx, "globex", "tts-large"))
	must(t, s.GrantModel(ctx, "globex", "stt-fast"))
	must(t, s.GrantModel(ctx, "acme", "dubbing")) // another org's grant
	must(t, s.SetConcurrency(ctx, "globex", "tts-large", 1))
	must(t, s.SetConcurrency(ctx, "globex", "stt-fast", 0))
	must(t, s.SetConcurrency(ctx, "acme", "dubbing", 9))
	k := newKey("globex", "ci")
	k.ExpiresAt = t0.Add(time.Hour)
	createKey(t, s, k)
	must(t, s.SetOrgBilling(ctx, "globex", tollgate.Billing{
		Active: true, MonthlyCreditLimit: 2500, MonthlyLimits: map[string]float64{"tts-large": 1e6},
	}))

	org, err := s.Org(ctx, "globex")
	must(t, err)
	plan, err := s.Plan(ctx, "pro")
	must(t, err)
	want := &tollgate.Access{
		Key:         k,
		Org:         org,
		Plan:        plan,
		Grants:      map[string]bool{"tts-large": true, "stt-fast": true},
		Concurrency: map[string]int{"tts-large": 1, "stt-fast": 0},
	}
	got, err := s.Access(ctx, k.Hash)
	must(t, err)
	diff(t, "Access", got, want)
	// The billing settings and plan limits come through (not only agree
	// with Org and Plan).
	diff(t, "Access: Org.Billing", got.Org.Billing, tollgate.Billing{
		Active: true, MonthlyCreditLimit: 2500, MonthlyLimits: map[string]float64{"tts-large": 1e6},
	})
	if p := got.Plan; p.BillingRequired || p.FreeCredits != 0 || p.MonthlyCreditCap != 10_000 ||
		len(p.MonthlyLimits) != 1 || p.MonthlyLimits["stt-fast"] != 360_000 {
		t.Errorf("Access: Plan %+v: want the pro plan's monthly limits", p)
	}
	if got.Grants == nil || got.Concurrency == nil {
		t.Errorf("Access: Grants %v, Concurrency %v: want non-nil maps", got.Grants, got.Concurrency)
	}
	if n := got.ConcurrencyLimit("stt-fast"); n != 0 {
		t.Errorf("ConcurrencyLimit(stt-fast) = %d, want the override 0", n)
	}

	// Changes show at once: the store does not cache.
	must(t, s.RevokeModel(ctx, "globex", "stt-fast"))
	must(t, s.SetConcurrency(ctx, "globex", "stt-fast", -1))
	must(t, s.SetOrgPlan(ctx, "globex", "free"))
	must(t, s.RevokeKey(ctx, k.ID, t0))
	must(t, s.SetOrgBilling(ctx, "globex", tollgate.Billing{MonthlyCreditLimit: 10}))
	free, err := s.Plan(ctx, "free")
	must(t, err)
	revoked := clone(k)
	revoked.RevokedAt = t0
	org.PlanID = "free"
	org.Billing = tollgate.Billing{MonthlyCreditLimit: 10}
	want = &tollgate.Access{
		Key:         revoked, // returned although revoked: the caller checks Active
		Org:         org,
		Plan:        free,
		Grants:      map[string]bool{"tts-large": true},
		Concurrency: map[string]int{"tts-large": 1},
	}
	got, err = s.Access(ctx, k.Hash)
	must(t, err)
	diff(t, "Access after changes", got, want)
	if p := got.Plan; !p.BillingRequired || p.FreeCredits != 500 || p.MonthlyCreditCap != 0 || len(p.MonthlyLimits) != 0 {
		t.Errorf("Access after changes: Plan %+v: want the free plan's credits", p)
	}

	// An org with no grants and no overrides.
	bare := createKey(t, s, newKey("acme", "bare"))
	must(t, s.RevokeModel(ctx, "acme", "dubbing"))
	must(t, s.SetConcurrency(ctx, "acme", "dubbing", -1))
	got, err = s.Access(ctx, bare.Hash)
	must(t, err)
	if len(got.Grants) != 0 || len(got.Concurrency) != 0 {
		t.Errorf("Access(bare): Grants %v, Concurrency %v; want none", got.Grants, got.Concurrency)
	}
	if got.Grants["anything"] {
		t.Error("Access(bare) grants a model")
	}

	_, err = s.Access(ctx, randomHash())
	wantCode(t, "Access(unknown hash)", err, tollgate.CodeInvalidCredential)
	_, err = s.Access(ctx, nil)
	wantCode(t, "Access(nil hash)", err, tollgate.CodeInvalidCredential)
}

func testTimes(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	must(t, s.PutPlan(ctx, &tollgate.Plan{ID: "free"}))
	tokyo := time.FixedZone("JST", 9*60*60)
	times := []time.Time{
		t0,
		time.Date(2025, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(2025, 1, 1, 0, 0, 0, 999_999_999, tokyo),
		time.Date(1969, 7, 20, 20, 17, 40, 123, time.UTC), // before the epoch
		time.Date(2200, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Unix(0, 1).UTC(),
		time.Now(), // with a monotonic reading
	}
	for i, tm := range times {
		org := &tollgate.Org{ID: "org-" + string(rune('a'+i)), PlanID: "free", CreatedAt: tm}
		must(t, s.CreateOrg(ctx, org))
		gotOrg, err := s.Org(ctx, org.ID)
		must(t, err)
		if !gotOrg.CreatedAt.Equal(tm) {
			t.Errorf("org CreatedAt %v, want %v", gotOrg.CreatedAt, tm)
		}

		k := newKey(org.ID, "k")
		k.CreatedAt, k.ExpiresAt = tm, tm.Add(1)
		createKey(t, s, k)
		must(t, s.RevokeKey(ctx, k.ID, tm.Add(2)))
		got := getKey(t, s, k.ID)
		for _, c := range []struct {
			name      string
			got, want time.Time
		}{
			{"CreatedAt", got.CreatedAt, tm},
			{"ExpiresAt", got.ExpiresAt, tm.Add(1)},
			{"RevokedAt", got.RevokedAt, tm.Add(2)},
		} {
			if !c.got.Equal(c.want) || c.got.UnixNano() != c.want.UnixNano() {
				t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
			}
		}
	}

	// The zero time stays zero (never expires, not revoked).
	k := newKey("org-a", "zero")
	createKey(t, s, k)
	got := getKey(t, s, k.ID)
	if !got.ExpiresAt.IsZero() || !got.RevokedAt.IsZero() {
		t.Errorf("zero times came back as ExpiresAt %v, RevokedAt %v", got.ExpiresAt, got.RevokedAt)
	}
	if !got.Active(time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Error("a key without expiry or revocation is not active")
	}
}
