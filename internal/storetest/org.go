package storetest

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tollgate/tollgate"
)

func testPlans(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	_, err := s.Plan(ctx, "pro")
	wantCode(t, "Plan(unknown)", err, tollgate.CodeNotFound)
	plans, err := s.Plans(ctx)
	must(t, err)
	diff(t, "Plans (empty store)", plans, []*tollgate.Plan(nil))

	pro := &tollgate.Plan{
		ID: "pro", RPM: 1_000_000, Concurrency: 10,
		ModelConcurrency: map[string]int{"tts-large": 2, "stt-fast": 0},
		Features:         []string{"tts", "stt", "*"},
		MonthlyCreditCap: 25_000.5,
		MonthlyLimits:    map[string]float64{"stt-fast": 360_000, "tts-large": 0.125, "dubbing": 0},
	}
	free := &tollgate.Plan{ID: "free", RPM: 1000, BillingRequired: true, FreeCredits: 500.25}
	must(t, s.PutPlan(ctx, pro))
	must(t, s.PutPlan(ctx, free))
	for _, want := range []*tollgate.Plan{pro, free} {
		got, err := s.Plan(ctx, want.ID)
		must(t, err)
		diff(t, "Plan("+want.ID+")", got, want)
	}

	// PutPlan replaces every field, including dropping the maps.
	pro2 := &tollgate.Plan{ID: "pro", RPM: 5000, Concurrency: 0, Features: []string{"stt"}}
	must(t, s.PutPlan(ctx, pro2))
	got, err := s.Plan(ctx, "pro")
	must(t, err)
	diff(t, "Plan(pro) after replace", got, pro2)

	plans, err = s.Plans(ctx)
	must(t, err)
	diff(t, "Plans", plans, []*tollgate.Plan{free, pro2})
}

func testOrgs(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	orgs, err := s.Orgs(ctx)
	must(t, err)
	diff(t, "Orgs (empty store)", orgs, []*tollgate.Org(nil))

	err = s.CreateOrg(ctx, &tollgate.Org{ID: "acme", PlanID: "free", CreatedAt: t0})
	wantCode(t, "CreateOrg(unknown plan)", err, tollgate.CodeNotFound)

	must(t, s.PutPlan(ctx, &tollgate.Plan{ID: "free", RPM: 1000}))
	b := &tollgate.Org{ID: "b-org", Name: "B", PlanID: "free", CreatedAt: t0, Billing: tollgate.Billing{
		Active: true, MonthlyCreditLimit: 99.5, MonthlyLimits: map[string]float64{"tts-large": 1e6, "stt-fast": 0},
	}}
	a := &tollgate.Org{ID: "a-org", Name: "A", PlanID: "free", CreatedAt: t0.Add(1)}
	must(t, s.CreateOrg(ctx, b))
	must(t, s.CreateOrg(ctx, a))
	got, err := s.Org(ctx, "a-org")
	must(t, err)
	diff(t, "Org(a-org)", got, a)

	err = s.CreateOrg(ctx, &tollgate.Org{ID: "a-org", Name: "other", PlanID: "free", CreatedAt: t0})
	wantCode(t, "CreateOrg(duplicate)", err, tollgate.CodeConflict)
	got, err = s.Org(ctx, "a-org")
	must(t, err)
	diff(t, "Org(a-org) after duplicate", got, a)

	_, err = s.Org(ctx, "nope")
	wantCode(t, "Org(unknown)", err, tollgate.CodeNotFound)

	// A zero CreatedAt is filled in, on the value passed and in the store.
	c := &tollgate.Org{ID: "c-org", PlanID: "free"}
	must(t, s.CreateOrg(ctx, c))
	if c.CreatedAt.IsZero() {
		t.Error("CreateOrg left CreatedAt zero")
	}
	got, err = s.Org(ctx, "c-org")
	must(t, err)
	diff(t, "Org(c-org)", got, c)

	orgs, err = s.Orgs(ctx)
	must(t, err)
	diff(t, "Orgs", orgs, []*tollgate.Org{a, b, c})
}

func testOrgBilling(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	org := func(id string) *tollgate.Org {
		t.Helper()
		o, err := s.Org(ctx, id)
		must(t, err)
		return o
	}
	diff(t, "Billing (none)", org("acme").Billing, tollgate.Billing{})

	steps := []tollgate.Billing{
		{Active: true},
		{Active: true, MonthlyCreditLimit: 1234.5, MonthlyLimits: map[string]float64{"stt-fast": 7200, "tts-large": 0}},
		{MonthlyLimits: map[string]float64{"tts-large": 0.001}}, // replaces: Active and the credit limit go
		{},
	}
	for i, b := range steps {
		must(t, s.SetOrgBilling(ctx, "acme", b))
		diff(t, fmt.Sprintf("Billing after step %d", i), org("acme").Billing, b)
	}
	must(t, s.SetOrgBilling(ctx, "acme", steps[1]))
	orgs, err := s.Orgs(ctx)
	must(t, err)
	if len(orgs) != 2 {
		t.Fatalf("Orgs: %d orgs, want 2", len(orgs))
	}
	diff(t, "Orgs()[acme].Billing", orgs[0].Billing, steps[1])
	diff(t, "Orgs()[globex].Billing", orgs[1].Billing, tollgate.Billing{})

	// SetOrgPlan leaves billing alone, and billing the plan.
	must(t, s.SetOrgPlan(ctx, "acme", "pro"))
	diff(t, "Billing after SetOrgPlan", org("acme").Billing, steps[1])
	if o := org("acme"); o.PlanID != "pro" || o.Name != "Acme" || !o.CreatedAt.Equal(t0) {
		t.Errorf("SetOrgBilling changed the org: %+v", o)
	}

	wantCode(t, "SetOrgBilling(unknown org)", s.SetOrgBilling(ctx, "nope", tollgate.Billing{Active: true}), tollgate.CodeNotFound)
}

func testSetOrgPlan(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	must(t, s.SetOrgPlan(ctx, "acme", "pro"))
	org, err := s.Org(ctx, "acme")
	must(t, err)
	if org.PlanID != "pro" {
		t.Errorf("after SetOrgPlan: PlanID %q, want pro", org.PlanID)
	}

	wantCode(t, "SetOrgPlan(unknown plan)", s.SetOrgPlan(ctx, "acme", "nope"), tollgate.CodeNotFound)
	wantCode(t, "SetOrgPlan(unknown org)", s.SetOrgPlan(ctx, "nope", "free"), tollgate.CodeNotFound)
	org, err = s.Org(ctx, "acme")
	must(t, err)
	if org.PlanID != "pro" {
		t.Errorf("after failed SetOrgPlan: PlanID %q, want pro", org.PlanID)
	}
}

func testGrants(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	sorted := cmpopts.SortSlices(func(a, b string) bool { return a < b })
	grants := func(org string) []string {
		t.Helper()
		g, err := s.Grants(ctx, org)
		must(t, err)
		return g
	}
	diff(t, "Grants (none)", grants("acme"), []string(nil))

	must(t, s.GrantModel(ctx, "acme", "tts-large"))
	must(t, s.GrantModel(ctx, "acme", "tts-large")) // idempotent
	must(t, s.GrantModel(ctx, "acme", "stt-fast"))
	must(t, s.GrantModel(ctx, "globex", "dubbing"))
	diff(t, "Grants(acme)", grants("acme"), []string{"stt-fast", "tts-large"}, sorted)
	diff(t, "Grants(globex)", grants("globex"), []string{"dubbing"})

	must(t, s.RevokeModel(ctx, "acme", "tts-large"))
	diff(t, "Grants(acme) after revoke", grants("acme"), []string{"stt-fast"})
	wantCode(t, "RevokeModel(again)", s.RevokeModel(ctx, "acme", "tts-large"), tollgate.CodeNotFound)
	wantCode(t, "RevokeModel(never granted)", s.RevokeModel(ctx, "acme", "dubbing"), tollgate.CodeNotFound)
	wantCode(t, "RevokeModel(unknown org)", s.RevokeModel(ctx, "nope", "stt-fast"), tollgate.CodeNotFound)

	wantCode(t, "GrantModel(unknown org)", s.GrantModel(ctx, "nope", "stt-fast"), tollgate.CodeNotFound)
	_, err := s.Grants(ctx, "nope")
	wantCode(t, "Grants(unknown org)", err, tollgate.CodeNotFound)
}

func testConcurrency(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	overrides := func(org string) map[string]int {
		t.Helper()
		m, err := s.ConcurrencyOverrides(ctx, org)
		must(t, err)
		return m
	}
	diff(t, "overrides (none)", overrides("acme"), map[string]int(nil))

	steps := []struct {
		model string
		limit int
		want  map[string]int
	}{
		{"tts-large", 5, map[string]int{"tts-large": 5}},
		{"tts-large", 7, map[string]int{"tts-large": 7}},               // replace
		{"stt-fast", 0, map[string]int{"tts-large": 7, "stt-fast": 0}}, // 0 is a limit
		{"tts-large", -1, map[string]int{"stt-fast": 0}},               // remove
		{"tts-large", -1, map[string]int{"stt-fast": 0}},               // remove absent: no error
		{"dubbing", 3, map[string]int{"stt-fast": 0, "dubbing": 3}},    // another model
		{"stt-fast", -5, map[string]int{"dubbing": 3}},                 // any negative removes
		{"stt-fast", 1_000_000, map[string]int{"dubbing": 3, "stt-fast": 1_000_000}},
	}
	for _, st := range steps {
		must(t, s.SetConcurrency(ctx, "acme", st.model, st.limit))
		// A missing key differs from a stored 0 (EquateEmpty only
		// equates maps that are both empty).
		diff(t, fmt.Sprintf("overrides after SetConcurrency(%s, %d)", st.model, st.limit), overrides("acme"), st.want)
	}
	diff(t, "overrides(globex)", overrides("globex"), map[string]int(nil))

	wantCode(t, "SetConcurrency(unknown org)", s.SetConcurrency(ctx, "nope", "stt-fast", 1), tollgate.CodeNotFound)
	wantCode(t, "SetConcurrency(unknown org, remove)", s.SetConcurrency(ctx, "nope", "stt-fast", -1), tollgate.CodeNotFound)
	_, err := s.ConcurrencyOverrides(ctx, "nope")
	wantCode(t, "ConcurrencyOverrides(unknown org)", err, tollgate.CodeNotFound)
}
