package tollgate

import "time"

// Org is a customer organization: it owns keys, is on one plan, and is
// granted models.
type Org struct {
	ID        string
	Name      string
	PlanID    string
	Billing   Billing
	CreatedAt time.Time
}

// Plan sets an org's default limits and features.
type Plan struct {
	ID string
	// RPM is each key's requests-per-minute limit (burst = RPM).
	RPM int
	// Concurrency is the default in-flight limit per org × model; 0 means
	// unlimited.
	Concurrency int
	// ModelConcurrency overrides Concurrency per model id.
	ModelConcurrency map[string]int
	// Features lists the model features the plan includes (e.g. "tts",
	// "stt"); a model whose feature is absent answers feature_not_enabled.
	Features []string
	// BillingRequired: until the org activates billing, charges draw on
	// FreeCredits, then billing_required.
	BillingRequired bool
	// FreeCredits is the one-time grant for orgs without billing.
	FreeCredits float64
	// MonthlyCreditCap caps an org's monthly credit limit (0: none).
	MonthlyCreditCap float64
	// MonthlyLimits caps units per model per month (0 or absent: none).
	MonthlyLimits map[string]float64
}

// HasFeature reports whether the plan includes feature. A model without a
// feature is available on every plan.
func (p *Plan) HasFeature(feature string) bool {
	if feature == "" {
		return true
	}
	for _, f := range p.Features {
		if f == feature || f == "*" {
			return true
		}
	}
	return false
}

// Access is everything the request path needs to know about a credential:
// the key, its org and plan, the org's model grants and concurrency
// overrides. It is resolved once per key and cached briefly.
type Access struct {
	Key    *Key
	Org    *Org
	Plan   *Plan
	Grants map[string]bool
	// Concurrency holds the org's per-model in-flight overrides.
	Concurrency map[string]int
}

// RPM returns the key's effective requests-per-minute limit: the plan's,
// or the key's own when it is tighter. A key's value is checked against
// the plan at creation; if the org later moves to a plan with a lower
// rate, the plan's wins.
func (a *Access) RPM() int {
	if a.Key.RPM > 0 && (a.Plan.RPM <= 0 || a.Key.RPM < a.Plan.RPM) {
		return a.Key.RPM
	}
	return a.Plan.RPM
}

// ConcurrencyLimit returns the in-flight limit for model: the org's
// override, else the plan's per-model value, else the plan default.
// 0 means unlimited.
func (a *Access) ConcurrencyLimit(model string) int {
	if n, ok := a.Concurrency[model]; ok {
		return n
	}
	if n, ok := a.Plan.ModelConcurrency[model]; ok {
		return n
	}
	return a.Plan.Concurrency
}

// Authorize checks the org grant and the key's model list, then the plan's
// features: no_model_access or feature_not_enabled.
func (a *Access) Authorize(m *Model) error {
	if !a.Grants[m.ID] || !a.Key.AllowsModel(m.ID) {
		return Errorf(CodeNoModelAccess, "Model access not enabled for %s.", m.ID)
	}
	if !a.Plan.HasFeature(m.Feature) {
		return Errorf(CodeFeatureNotEnabled, "Your plan does not include the %s feature.", m.Feature)
	}
	return nil
}

// Budget returns what a request to model m is checked against.
func (a *Access) Budget(m *Model) Budget {
	b := Budget{OrgID: a.Org.ID, Model: m.ID, Unit: m.Meter.UnitOrDefault()}
	b.UnitLimit = a.Plan.MonthlyLimits[m.ID]
	if l, ok := a.Org.Billing.MonthlyLimits[m.ID]; ok {
		b.UnitLimit = l
	}
	if m.Meter.Price == 0 {
		// A free model costs no credits: spent free credits or a full
		// monthly credit limit do not stop it (004's free catalog beside
		// its paid inference); its own monthly unit limit still does.
		return b
	}
	if a.Plan.BillingRequired && !a.Org.Billing.Active {
		b.UsesFreeCredits = true
		b.FreeCredits = a.Plan.FreeCredits
	}
	b.CreditLimit = a.Plan.MonthlyCreditCap
	if l := a.Org.Billing.MonthlyCreditLimit; l > 0 && (b.CreditLimit == 0 || l < b.CreditLimit) {
		b.CreditLimit = l
	}
	return b
}
