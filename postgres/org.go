package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate"
)

func errOrgNotFound(id string) error {
	return tollgate.Errorf(tollgate.CodeNotFound, "Organization %q not found.", id)
}

func errPlanNotFound(id string) error {
	return tollgate.Errorf(tollgate.CodeNotFound, "Plan %q not found.", id)
}

// CreateOrg stores org; conflict when its ID exists, not_found when its plan
// does not. A zero CreatedAt is set to s.Now() (on org too).
func (s *Store) CreateOrg(ctx context.Context, org *tollgate.Org) error {
	if org.CreatedAt.IsZero() {
		org.CreatedAt = s.now()
	}
	created, err := encodeTime(org.CreatedAt)
	if err != nil {
		return wrap("create org", err)
	}
	_, err = s.pool.Exec(ctx, `
		INSERT INTO orgs (id, name, plan_id, created_at, billing_active, monthly_credit_limit, monthly_limits)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		org.ID, org.Name, org.PlanID, created,
		org.Billing.Active, org.Billing.MonthlyCreditLimit, floatMap(org.Billing.MonthlyLimits))
	switch {
	case isUnique(err):
		return tollgate.Errorf(tollgate.CodeConflict, "Organization %q already exists.", org.ID)
	case isForeignKey(err):
		return errPlanNotFound(org.PlanID)
	}
	return wrap("create org", err)
}

const orgColumns = `id, name, plan_id, created_at, billing_active, monthly_credit_limit, monthly_limits`

// orgFields are the Scan destinations of orgColumns; finish decodes them
// into o.
type orgFields struct {
	created *int64
	limits  map[string]float64
}

func (f *orgFields) dest(o *tollgate.Org) []any {
	return []any{&o.ID, &o.Name, &o.PlanID, &f.created,
		&o.Billing.Active, &o.Billing.MonthlyCreditLimit, &f.limits}
}

func (f *orgFields) finish(o *tollgate.Org) *tollgate.Org {
	o.CreatedAt = decodeTime(f.created)
	o.Billing.MonthlyLimits = emptyNilMap(f.limits)
	return o
}

func scanOrg(row pgx.Row) (*tollgate.Org, error) {
	var o tollgate.Org
	var f orgFields
	if err := row.Scan(f.dest(&o)...); err != nil {
		return nil, err
	}
	return f.finish(&o), nil
}

// Org returns the org with id; not_found when there is none.
func (s *Store) Org(ctx context.Context, id string) (*tollgate.Org, error) {
	o, err := scanOrg(s.pool.QueryRow(ctx, `SELECT `+orgColumns+` FROM orgs WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errOrgNotFound(id)
	}
	if err != nil {
		return nil, wrap("find org", err)
	}
	return o, nil
}

// Orgs lists every org by ID.
func (s *Store) Orgs(ctx context.Context) ([]*tollgate.Org, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+orgColumns+` FROM orgs ORDER BY id`)
	if err != nil {
		return nil, wrap("list orgs", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*tollgate.Org, error) { return scanOrg(row) })
	return emptyNil(out), wrap("list orgs", err)
}

// SetOrgPlan moves an org to plan; not_found when either is unknown.
func (s *Store) SetOrgPlan(ctx context.Context, orgID, planID string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE orgs SET plan_id = $1 WHERE id = $2`, planID, orgID)
	if isForeignKey(err) {
		return errPlanNotFound(planID)
	}
	if err != nil {
		return wrap("set org plan", err)
	}
	if tag.RowsAffected() == 0 {
		return errOrgNotFound(orgID)
	}
	return nil
}

// SetOrgBilling replaces the org's billing settings; not_found when the org
// is unknown. The limits are stored as given: checking them against the
// plan's cap is the caller's (the plan may change afterwards anyway, and
// Access.Budget takes the lower of the two).
func (s *Store) SetOrgBilling(ctx context.Context, orgID string, b tollgate.Billing) error {
	tag, err := s.pool.Exec(ctx, `
		UPDATE orgs SET billing_active = $1, monthly_credit_limit = $2, monthly_limits = $3
		WHERE id = $4`,
		b.Active, b.MonthlyCreditLimit, floatMap(b.MonthlyLimits), orgID)
	if err != nil {
		return wrap("set org billing", err)
	}
	if tag.RowsAffected() == 0 {
		return errOrgNotFound(orgID)
	}
	return nil
}

// PutPlan creates or replaces a plan.
func (s *Store) PutPlan(ctx context.Context, plan *tollgate.Plan) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO plans (id, rpm, concurrency, model_concurrency, features,
			billing_required, free_credits, monthly_credit_cap, monthly_limits)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (id) DO UPDATE SET
			rpm = excluded.rpm,
			concurrency = excluded.concurrency,
			model_concurrency = excluded.model_concurrency,
			features = excluded.features,
			billing_required = excluded.billing_required,
			free_credits = excluded.free_credits,
			monthly_credit_cap = excluded.monthly_credit_cap,
			monthly_limits = excluded.monthly_limits`,
		plan.ID, plan.RPM, plan.Concurrency, intMap(plan.ModelConcurrency), stringList(plan.Features),
		plan.BillingRequired, plan.FreeCredits, plan.MonthlyCreditCap, floatMap(plan.MonthlyLimits))
	return wrap("put plan", err)
}

const planColumns = `id, rpm, concurrency, model_concurrency, features,
	billing_required, free_credits, monthly_credit_cap, monthly_limits`

// planFields are the Scan destinations of planColumns that need decoding.
type planFields struct {
	mc     map[string]int
	limits map[string]float64
}

func (f *planFields) dest(p *tollgate.Plan) []any {
	return []any{&p.ID, &p.RPM, &p.Concurrency, &f.mc, &p.Features,
		&p.BillingRequired, &p.FreeCredits, &p.MonthlyCreditCap, &f.limits}
}

func (f *planFields) finish(p *tollgate.Plan) *tollgate.Plan {
	p.ModelConcurrency = emptyNilMap(f.mc)
	p.Features = emptyNil(p.Features)
	p.MonthlyLimits = emptyNilMap(f.limits)
	return p
}

func scanPlan(row pgx.Row) (*tollgate.Plan, error) {
	var p tollgate.Plan
	var f planFields
	if err := row.Scan(f.dest(&p)...); err != nil {
		return nil, err
	}
	return f.finish(&p), nil
}

// Plan returns the plan with id; not_found when there is none.
func (s *Store) Plan(ctx context.Context, id string) (*tollgate.Plan, error) {
	p, err := scanPlan(s.pool.QueryRow(ctx, `SELECT `+planColumns+` FROM plans WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errPlanNotFound(id)
	}
	if err != nil {
		return nil, wrap("find plan", err)
	}
	return p, nil
}

// Plans lists every plan by ID.
func (s *Store) Plans(ctx context.Context) ([]*tollgate.Plan, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+planColumns+` FROM plans ORDER BY id`)
	if err != nil {
		return nil, wrap("list plans", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*tollgate.Plan, error) { return scanPlan(row) })
	return emptyNil(out), wrap("list plans", err)
}

// GrantModel enables model for the org (idempotent); not_found when the org
// is unknown.
func (s *Store) GrantModel(ctx context.Context, orgID, model string) error {
	_, err := s.pool.Exec(ctx,
		`INSERT INTO grants (org_id, model) VALUES ($1, $2) ON CONFLICT DO NOTHING`, orgID, model)
	if isForeignKey(err) {
		return errOrgNotFound(orgID)
	}
	return wrap("grant model", err)
}

// RevokeModel disables model for the org; not_found when it is not granted
// (or the org is unknown).
func (s *Store) RevokeModel(ctx context.Context, orgID, model string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM grants WHERE org_id = $1 AND model = $2`, orgID, model)
	if err != nil {
		return wrap("revoke model", err)
	}
	if tag.RowsAffected() == 0 {
		return tollgate.Errorf(tollgate.CodeNotFound, "Model %q is not granted to organization %q.", model, orgID)
	}
	return nil
}

// Grants lists the org's granted models, sorted; not_found when the org is
// unknown. One statement: the org's row carries its grants, so an unknown
// org is no row at all.
func (s *Store) Grants(ctx context.Context, orgID string) ([]string, error) {
	var out []string
	err := s.pool.QueryRow(ctx, `
		SELECT ARRAY(SELECT model FROM grants WHERE org_id = o.id ORDER BY model)
		FROM orgs o WHERE o.id = $1`, orgID).Scan(&out)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errOrgNotFound(orgID)
	}
	if err != nil {
		return nil, wrap("list grants", err)
	}
	return emptyNil(out), nil
}

// SetConcurrency sets the org × model in-flight limit; limit < 0 removes
// the override (removing an absent one is not an error). not_found when the
// org is unknown.
func (s *Store) SetConcurrency(ctx context.Context, orgID, model string, limit int) error {
	if limit >= 0 {
		_, err := s.pool.Exec(ctx, `
			INSERT INTO concurrency_overrides (org_id, model, max_inflight) VALUES ($1, $2, $3)
			ON CONFLICT (org_id, model) DO UPDATE SET max_inflight = excluded.max_inflight`,
			orgID, model, limit)
		if isForeignKey(err) {
			return errOrgNotFound(orgID)
		}
		return wrap("set concurrency", err)
	}
	// The DELETE runs whatever the SELECT finds; the SELECT tells an
	// unknown org (no row) from an absent override.
	var one int
	err := s.pool.QueryRow(ctx, `
		WITH removed AS (DELETE FROM concurrency_overrides WHERE org_id = $1 AND model = $2)
		SELECT 1 FROM orgs WHERE id = $1`, orgID, model).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return errOrgNotFound(orgID)
	}
	return wrap("set concurrency", err)
}

// overridesOf is the JSON object of an org's overrides ({} when none), for
// a query over orgs o.
const overridesOf = `COALESCE((SELECT jsonb_object_agg(c.model, c.max_inflight)
	FROM concurrency_overrides c WHERE c.org_id = o.id), '{}')`

// ConcurrencyOverrides returns the org's per-model in-flight overrides
// (empty, not nil, when there are none); not_found when the org is unknown.
func (s *Store) ConcurrencyOverrides(ctx context.Context, orgID string) (map[string]int, error) {
	var out map[string]int
	err := s.pool.QueryRow(ctx, `SELECT `+overridesOf+` FROM orgs o WHERE o.id = $1`, orgID).Scan(&out)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errOrgNotFound(orgID)
	}
	if err != nil {
		return nil, wrap("list concurrency overrides", err)
	}
	if out == nil {
		out = map[string]int{}
	}
	return out, nil
}
