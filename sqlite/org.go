package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

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
	limits, err := encodeJSON(floatMap(org.Billing.MonthlyLimits))
	if err != nil {
		return wrap("create org", err)
	}
	_, err = s.write.ExecContext(ctx, `
		INSERT INTO orgs (id, name, plan_id, created_at, billing_active, monthly_credit_limit, monthly_limits)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		org.ID, org.Name, org.PlanID, created,
		org.Billing.Active, org.Billing.MonthlyCreditLimit, limits)
	switch {
	case isUnique(err):
		return tollgate.Errorf(tollgate.CodeConflict, "Organization %q already exists.", org.ID)
	case isForeignKey(err):
		return errPlanNotFound(org.PlanID)
	}
	return wrap("create org", err)
}

const orgColumns = `id, name, plan_id, created_at, billing_active, monthly_credit_limit, monthly_limits`

func scanOrg(row interface{ Scan(...any) error }) (*tollgate.Org, error) {
	var o tollgate.Org
	var created sql.NullInt64
	var limits string
	if err := row.Scan(&o.ID, &o.Name, &o.PlanID, &created,
		&o.Billing.Active, &o.Billing.MonthlyCreditLimit, &limits); err != nil {
		return nil, err
	}
	return decodeOrg(&o, created, limits)
}

func decodeOrg(o *tollgate.Org, created sql.NullInt64, limits string) (*tollgate.Org, error) {
	o.CreatedAt = decodeTime(created)
	var err error
	if o.Billing.MonthlyLimits, err = decodeFloats(limits); err != nil {
		return nil, fmt.Errorf("org %q: monthly_limits: %w", o.ID, err)
	}
	return o, nil
}

// Org returns the org with id; not_found when there is none.
func (s *Store) Org(ctx context.Context, id string) (*tollgate.Org, error) {
	o, err := scanOrg(s.read.QueryRowContext(ctx, `SELECT `+orgColumns+` FROM orgs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errOrgNotFound(id)
	}
	if err != nil {
		return nil, wrap("find org", err)
	}
	return o, nil
}

// Orgs lists every org by ID.
func (s *Store) Orgs(ctx context.Context) ([]*tollgate.Org, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+orgColumns+` FROM orgs ORDER BY id`)
	if err != nil {
		return nil, wrap("list orgs", err)
	}
	defer rows.Close()
	var out []*tollgate.Org
	for rows.Next() {
		o, err := scanOrg(rows)
		if err != nil {
			return nil, wrap("list orgs", err)
		}
		out = append(out, o)
	}
	return out, wrap("list orgs", rows.Err())
}

// SetOrgPlan moves an org to plan; not_found when either is unknown.
func (s *Store) SetOrgPlan(ctx context.Context, orgID, planID string) error {
	res, err := s.write.ExecContext(ctx, `UPDATE orgs SET plan_id = ? WHERE id = ?`, planID, orgID)
	if isForeignKey(err) {
		return errPlanNotFound(planID)
	}
	if err != nil {
		return wrap("set org plan", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return wrap("set org plan", err)
	} else if n == 0 {
		return errOrgNotFound(orgID)
	}
	return nil
}

// SetOrgBilling replaces the org's billing settings; not_found when the org
// is unknown. The limits are stored as given: checking them against the
// plan's cap is the caller's (the plan may change afterwards anyway, and
// Access.Budget takes the lower of the two).
func (s *Store) SetOrgBilling(ctx context.Context, orgID string, b tollgate.Billing) error {
	limits, err := encodeJSON(floatMap(b.MonthlyLimits))
	if err != nil {
		return wrap("set org billing", err)
	}
	res, err := s.write.ExecContext(ctx, `
		UPDATE orgs SET billing_active = ?, monthly_credit_limit = ?, monthly_limits = ?
		WHERE id = ?`,
		b.Active, b.MonthlyCreditLimit, limits, orgID)
	if err != nil {
		return wrap("set org billing", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return wrap("set org billing", err)
	} else if n == 0 {
		return errOrgNotFound(orgID)
	}
	return nil
}

// PutPlan creates or replaces a plan.
func (s *Store) PutPlan(ctx context.Context, plan *tollgate.Plan) error {
	mc := plan.ModelConcurrency
	if mc == nil {
		mc = map[string]int{}
	}
	mcJSON, err := encodeJSON(mc)
	if err != nil {
		return wrap("put plan", err)
	}
	features, err := encodeJSON(stringList(plan.Features))
	if err != nil {
		return wrap("put plan", err)
	}
	limits, err := encodeJSON(floatMap(plan.MonthlyLimits))
	if err != nil {
		return wrap("put plan", err)
	}
	_, err = s.write.ExecContext(ctx, `
		INSERT INTO plans (id, rpm, concurrency, model_concurrency, features,
			billing_required, free_credits, monthly_credit_cap, monthly_limits)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET
			rpm = excluded.rpm,
			concurrency = excluded.concurrency,
			model_concurrency = excluded.model_concurrency,
			features = excluded.features,
			billing_required = excluded.billing_required,
			free_credits = excluded.free_credits,
			monthly_credit_cap = excluded.monthly_credit_cap,
			monthly_limits = excluded.monthly_limits`,
		plan.ID, plan.RPM, plan.Concurrency, mcJSON, features,
		plan.BillingRequired, plan.FreeCredits, plan.MonthlyCreditCap, limits)
	return wrap("put plan", err)
}

const planColumns = `id, rpm, concurrency, model_concurrency, features,
	billing_required, free_credits, monthly_credit_cap, monthly_limits`

func scanPlan(row interface{ Scan(...any) error }) (*tollgate.Plan, error) {
	var p tollgate.Plan
	var mc, features, limits string
	if err := row.Scan(&p.ID, &p.RPM, &p.Concurrency, &mc, &features,
		&p.BillingRequired, &p.FreeCredits, &p.MonthlyCreditCap, &limits); err != nil {
		return nil, err
	}
	return decodePlan(&p, mc, features, limits)
}

func decodePlan(p *tollgate.Plan, mc, features, limits string) (*tollgate.Plan, error) {
	var err error
	if p.ModelConcurrency, err = decodeInts(mc); err != nil {
		return nil, fmt.Errorf("plan %q: model_concurrency: %w", p.ID, err)
	}
	if p.Features, err = decodeStrings(features); err != nil {
		return nil, fmt.Errorf("plan %q: features: %w", p.ID, err)
	}
	if p.MonthlyLimits, err = decodeFloats(limits); err != nil {
		return nil, fmt.Errorf("plan %q: monthly_limits: %w", p.ID, err)
	}
	return p, nil
}

// Plan returns the plan with id; not_found when there is none.
func (s *Store) Plan(ctx context.Context, id string) (*tollgate.Plan, error) {
	p, err := scanPlan(s.read.QueryRowContext(ctx, `SELECT `+planColumns+` FROM plans WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errPlanNotFound(id)
	}
	if err != nil {
		return nil, wrap("find plan", err)
	}
	return p, nil
}

// Plans lists every plan by ID.
func (s *Store) Plans(ctx context.Context) ([]*tollgate.Plan, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+planColumns+` FROM plans ORDER BY id`)
	if err != nil {
		return nil, wrap("list plans", err)
	}
	defer rows.Close()
	var out []*tollgate.Plan
	for rows.Next() {
		p, err := scanPlan(rows)
		if err != nil {
			return nil, wrap("list plans", err)
		}
		out = append(out, p)
	}
	return out, wrap("list plans", rows.Err())
}

// GrantModel enables model for the org (idempotent); not_found when the org
// is unknown.
func (s *Store) GrantModel(ctx context.Context, orgID, model string) error {
	_, err := s.write.ExecContext(ctx,
		`INSERT INTO grants (org_id, model) VALUES (?, ?) ON CONFLICT DO NOTHING`, orgID, model)
	if isForeignKey(err) {
		return errOrgNotFound(orgID)
	}
	return wrap("grant model", err)
}

// RevokeModel disables model for the org; not_found when it is not granted
// (or the org is unknown).
func (s *Store) RevokeModel(ctx context.Context, orgID, model string) error {
	res, err := s.write.ExecContext(ctx, `DELETE FROM grants WHERE org_id = ? AND model = ?`, orgID, model)
	if err != nil {
		return wrap("revoke model", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return wrap("revoke model", err)
	} else if n == 0 {
		return tollgate.Errorf(tollgate.CodeNotFound, "Model %q is not granted to organization %q.", model, orgID)
	}
	return nil
}

// orgExists returns not_found unless the org exists.
func orgExists(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, orgID string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM orgs WHERE id = ?`, orgID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return errOrgNotFound(orgID)
	}
	return err
}

// Grants lists the org's granted models, sorted; not_found when the org is
// unknown.
func (s *Store) Grants(ctx context.Context, orgID string) ([]string, error) {
	var out []string
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		if err := orgExists(ctx, tx, orgID); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT model FROM grants WHERE org_id = ? ORDER BY model`, orgID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var m string
			if err := rows.Scan(&m); err != nil {
				return err
			}
			out = append(out, m)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, wrap("list grants", err)
	}
	return out, nil
}

// SetConcurrency sets the org × model in-flight limit; limit < 0 removes
// the override (removing an absent one is not an error). not_found when the
// org is unknown.
func (s *Store) SetConcurrency(ctx context.Context, orgID, model string, limit int) error {
	if limit >= 0 {
		_, err := s.write.ExecContext(ctx, `
			INSERT INTO concurrency_overrides (org_id, model, max_inflight) VALUES (?, ?, ?)
			ON CONFLICT (org_id, model) DO UPDATE SET max_inflight = excluded.max_inflight`,
			orgID, model, limit)
		if isForeignKey(err) {
			return errOrgNotFound(orgID)
		}
		return wrap("set concurrency", err)
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := orgExists(ctx, tx, orgID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM concurrency_overrides WHERE org_id = ? AND model = ?`, orgID, model)
		return err
	})
	return wrap("set concurrency", err)
}

// ConcurrencyOverrides returns the org's per-model in-flight overrides
// (empty, not nil, when there are none); not_found when the org is unknown.
func (s *Store) ConcurrencyOverrides(ctx context.Context, orgID string) (map[string]int, error) {
	out := map[string]int{}
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		if err := orgExists(ctx, tx, orgID); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT model, max_inflight FROM concurrency_overrides WHERE org_id = ?`, orgID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var m string
			var n int
			if err := rows.Scan(&m, &n); err != nil {
				return err
			}
			out[m] = n
		}
		return rows.Err()
	})
	if err != nil {
		return nil, wrap("list concurrency overrides", err)
	}
	return out, nil
}
