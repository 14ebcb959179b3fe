package tollgate_test

import (
	"testing"

	"github.com/tollgate/tollgate"
)

// TestRPM: a key's own rate applies when it is tighter than its plan's;
// after a move to a plan with a lower rate, the plan's.
func TestRPM(t *testing.T) {
	for _, c := range []struct{ key, plan, want int }{{0, 60, 60}, {10, 60, 10}, {100, 60, 60}, {60, 60, 60}} {
		a := &tollgate.Access{Key: &tollgate.Key{RPM: c.key}, Plan: &tollgate.Plan{RPM: c.plan}}
		if got := a.RPM(); got != c.want {
			t.Errorf("key %d, plan %d: RPM %d, want %d", c.key, c.plan, got, c.want)
		}
	}
}

// TestBudget: a priced model's budget carries the free credits (billing
// off), the tighter of the plan's cap and the org's credit limit, and
// the unit limit (the org's over the plan's); a free model's carries the
// unit limit only, so spent credits never stop it.
func TestBudget(t *testing.T) {
	a := &tollgate.Access{
		Org: &tollgate.Org{ID: "o", Billing: tollgate.Billing{MonthlyCreditLimit: 50,
			MonthlyLimits: map[string]float64{"catalog": 7}}},
		Plan: &tollgate.Plan{BillingRequired: true, FreeCredits: 500, MonthlyCreditCap: 100,
			MonthlyLimits: map[string]float64{"forecast": 3600, "catalog": 10}},
	}
	priced := &tollgate.Model{ID: "forecast", Meter: tollgate.Meter{Price: 5}}
	free := &tollgate.Model{ID: "catalog"}
	got := a.Budget(priced)
	want := tollgate.Budget{OrgID: "o", Model: "forecast", Unit: tollgate.UnitRequests,
		UsesFreeCredits: true, FreeCredits: 500, CreditLimit: 50, UnitLimit: 3600}
	if got != want {
		t.Errorf("priced: %+v, want %+v", got, want)
	}
	got = a.Budget(free)
	want = tollgate.Budget{OrgID: "o", Model: "catalog", Unit: tollgate.UnitRequests, UnitLimit: 7}
	if got != want {
		t.Errorf("free: %+v, want %+v", got, want)
	}
	a.Org.Billing.MonthlyLimits = nil
	if got := a.Budget(free); got.Limited() != true || got.UnitLimit != 10 {
		t.Errorf("free with the plan's unit limit: %+v", got)
	}
	a.Plan.MonthlyLimits = nil
	if got := a.Budget(free); got.Limited() {
		t.Errorf("free without limits is limited: %+v", got)
	}
}
