package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/tollgate/tollgate"
)

// The admin API: orgs, plans, model grants, concurrency overrides and keys,
// guarded by the admin token (Authorization: Bearer <token>). Errors use the
// tollgate profile whatever the deployment's profile is.

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (s *Server) registerAdmin(mux *http.ServeMux) error {
	var errs []error
	h := func(pattern string, fn func(w http.ResponseWriter, r *http.Request) error) {
		if err := register(mux, pattern, s.adminHandler(fn)); err != nil {
			errs = append(errs, fmt.Errorf("httpapi: admin route conflicts with a model route: %w", err))
		}
	}
	h("GET /admin/plans", s.listPlans)
	h("GET /admin/plans/{id}", s.getPlan)
	h("PUT /admin/plans/{id}", s.putPlan)
	h("GET /admin/orgs", s.listOrgs)
	h("POST /admin/orgs", s.createOrg)
	h("GET /admin/orgs/{id}", s.getOrg)
	h("PUT /admin/orgs/{id}/plan", s.setOrgPlan)
	h("GET /admin/orgs/{id}/models", s.listGrants)
	h("PUT /admin/orgs/{id}/models/{model}", s.grantModel)
	h("DELETE /admin/orgs/{id}/models/{model}", s.revokeModel)
	h("GET /admin/orgs/{id}/concurrency", s.listConcurrency)
	h("PUT /admin/orgs/{id}/concurrency/{model}", s.setConcurrency)
	h("DELETE /admin/orgs/{id}/concurrency/{model}", s.clearConcurrency)
	h("GET /admin/orgs/{id}/keys", s.listKeys)
	h("POST /admin/orgs/{id}/keys", s.createKey)
	h("GET /admin/keys/{id}", s.getKey)
	h("POST /admin/keys/{id}/revoke", s.revokeKey)
	h("POST /admin/keys/{id}/rotate", s.rotateKey)
	h("POST /admin/orgs/{id}/keys/import", s.importKeys)
	h("GET /admin/models", s.listModels)
	h("PUT /admin/orgs/{id}/billing", s.setBilling)
	h("GET /admin/orgs/{id}/usage", s.orgUsage)
	h("POST /admin/usage/rebuild", s.rebuildUsage)
	return errors.Join(errs...)
}

func (s *Server) adminHandler(fn func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	profile := tollgate.Profile{Name: tollgate.ProfileTollgate}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := newRequestID()
		w.Header().Set("X-Request-Id", id)
		w.Header().Set("Cache-Control", "no-store")
		err := s.checkAdmin(r)
		if err == nil {
			err = fn(w, r)
		}
		if err != nil {
			s.writeError(w, r, profile, err, id)
		}
	})
}

func (s *Server) checkAdmin(r *http.Request) error {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") ||
		subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), []byte(s.AdminToken)) != 1 {
		return tollgate.NewError(tollgate.CodeUnauthorized)
	}
	return nil
}

// decode reads a JSON body strictly (unknown fields are errors), at most 1 MiB.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return tollgate.Errorf(tollgate.CodeValidationError, "Request body is empty; send a JSON object.")
		}
		return &tollgate.Error{Code: tollgate.CodeValidationError, Message: "Request body is not valid JSON for this endpoint.",
			Details: map[string]any{"reason": err.Error()}}
	}
	return nil
}

func invalid(field, reason string) error {
	return &tollgate.Error{Code: tollgate.CodeValidationError, Message: fmt.Sprintf("%s: %s", field, reason),
		Details: map[string]any{"errors": []map[string]string{{"field": field, "reason": reason}}}}
}

// invalidAll reports several field problems in one validation_error.
type fieldErrors []map[string]string

func (f *fieldErrors) add(field, reason string) {
	*f = append(*f, map[string]string{"field": field, "reason": reason})
}

func (f fieldErrors) err() error {
	if len(f) == 0 {
		return nil
	}
	return &tollgate.Error{Code: tollgate.CodeValidationError,
		Message: fmt.Sprintf("%s: %s", f[0]["field"], f[0]["reason"]),
		Details: map[string]any{"errors": []map[string]string(f)}}
}

// Plans.

type planJSON struct {
	ID               string             `json:"id"`
	RPM              int                `json:"rpm"`
	Concurrency      int                `json:"concurrency"`
	ModelConcurrency map[string]int     `json:"model_concurrency,omitempty"`
	Features         []string           `json:"features"`
	BillingRequired  bool               `json:"billing_required"`
	FreeCredits      float64            `json:"free_credits"`
	MonthlyCreditCap float64            `json:"monthly_credit_cap"`
	MonthlyLimits    map[string]float64 `json:"monthly_limits,omitempty"`
}

func toPlanJSON(p *tollgate.Plan) planJSON {
	f := p.Features
	if f == nil {
		f = []string{}
	}
	return planJSON{ID: p.ID, RPM: p.RPM, Concurrency: p.Concurrency, ModelConcurrency: p.ModelConcurrency, Features: f,
		BillingRequired: p.BillingRequired, FreeCredits: p.FreeCredits, MonthlyCreditCap: p.MonthlyCreditCap, MonthlyLimits: p.MonthlyLimits}
}

func (s *Server) listPlans(w http.ResponseWriter, r *http.Request) error {
	plans, err := s.Store.Plans(r.Context())
	if err != nil {
		return err
	}
	out := make([]planJSON, 0, len(plans))
	for _, p := range plans {
		out = append(out, toPlanJSON(p))
	}
	writeJSON(w, http.StatusOK, map[string]any{"plans": out})
	return nil
}

func (s *Server) getPlan(w http.ResponseWriter, r *http.Request) error {
	p, err := s.Store.Plan(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toPlanJSON(p))
	return nil
}

func (s *Server) putPlan(w http.ResponseWriter, r *http.Request) error {
	var in planJSON
	if err := decode(r, &in); err != nil {
		return err
	}
	in.ID = r.PathValue("id")
	var fe fieldErrors
	if !idPattern.MatchString(in.ID) {
		fe.add("id", "must be 1-64 characters of [A-Za-z0-9._-]")
	}
	if in.RPM <= 0 {
		fe.add("rpm", "must be a positive number of requests per minute")
	}
	if in.Concurrency < 0 {
		fe.add("concurrency", "must be >= 0 (0 = unlimited)")
	}
	for m, n := range in.ModelConcurrency {
		if _, ok := s.models[m]; !ok {
			fe.add("model_concurrency."+m, "unknown model")
		}
		if n < 0 {
			fe.add("model_concurrency."+m, "must be >= 0")
		}
	}
	if in.FreeCredits < 0 {
		fe.add("free_credits", "must be >= 0")
	}
	if in.MonthlyCreditCap < 0 {
		fe.add("monthly_credit_cap", "must be >= 0 (0 = none)")
	}
	for m, n := range in.MonthlyLimits {
		if _, ok := s.models[m]; !ok {
			fe.add("monthly_limits."+m, "unknown model")
		}
		if n < 0 {
			fe.add("monthly_limits."+m, "must be >= 0")
		}
	}
	if err := fe.err(); err != nil {
		return err
	}
	p := &tollgate.Plan{ID: in.ID, RPM: in.RPM, Concurrency: in.Concurrency, ModelConcurrency: in.ModelConcurrency, Features: in.Features,
		BillingRequired: in.BillingRequired, FreeCredits: in.FreeCredits, MonthlyCreditCap: in.MonthlyCreditCap, MonthlyLimits: in.MonthlyLimits}
	if err := s.Store.PutPlan(r.Context(), p); err != nil {
		return err
	}
	s.changed(r.Context())
	writeJSON(w, http.StatusOK, toPlanJSON(p))
	return nil
}

// Orgs.

type orgJSON struct {
	ID        string      `json:"id"`
	Name      string      `json:"name"`
	Plan      string      `json:"plan"`
	Billing   billingJSON `json:"billing"`
	CreatedAt time.Time   `json:"created_at"`
}

type billingJSON struct {
	Active             bool               `json:"active"`
	MonthlyCreditLimit float64            `json:"monthly_credit_limit"`
	MonthlyLimits      map[string]float64 `json:"monthly_limits,omitempty"`
}

func toOrgJSON(o *tollgate.Org) orgJSON {
	return orgJSON{ID: o.ID, Name: o.Name, Plan: o.PlanID, CreatedAt: o.CreatedAt.UTC(), Billing: billingJSON{
		Active: o.Billing.Active, MonthlyCreditLimit: o.Billing.MonthlyCreditLimit, MonthlyLimits: o.Billing.MonthlyLimits}}
}

// setBilling replaces an org's billing settings; its monthly credit limit
// may not exceed the plan's cap.
func (s *Server) setBilling(w http.ResponseWriter, r *http.Request) error {
	var in billingJSON
	if err := decode(r, &in); err != nil {
		return err
	}
	o, err := s.Store.Org(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	plan, err := s.Store.Plan(r.Context(), o.PlanID)
	if err != nil {
		return err
	}
	var fe fieldErrors
	switch {
	case in.MonthlyCreditLimit < 0:
		fe.add("monthly_credit_limit", "must be >= 0 (0 = the plan's cap)")
	case plan.MonthlyCreditCap > 0 && in.MonthlyCreditLimit > plan.MonthlyCreditCap:
		fe.add("monthly_credit_limit", fmt.Sprintf("%g is above the plan's cap of %g credits", in.MonthlyCreditLimit, plan.MonthlyCreditCap))
	}
	for m, n := range in.MonthlyLimits {
		if _, ok := s.models[m]; !ok {
			fe.add("monthly_limits."+m, "unknown model")
		}
		if n < 0 {
			fe.add("monthly_limits."+m, "must be >= 0")
		}
	}
	if err := fe.err(); err != nil {
		return err
	}
	if err := s.Store.SetOrgBilling(r.Context(), o.ID, tollgate.Billing{Active: in.Active,
		MonthlyCreditLimit: in.MonthlyCreditLimit, MonthlyLimits: in.MonthlyLimits}); err != nil {
		return err
	}
	s.changed(r.Context())
	return s.getOrg(w, r)
}

func (s *Server) orgUsage(w http.ResponseWriter, r *http.Request) error {
	o, err := s.Store.Org(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	plan, err := s.Store.Plan(r.Context(), o.PlanID)
	if err != nil {
		return err
	}
	return s.writeUsage(w, r, o, plan)
}

// rebuildUsage reloads the quota counters from the ledger.
func (s *Server) rebuildUsage(w http.ResponseWriter, r *http.Request) error {
	n, err := s.RebuildUsage(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"rebuilt": true, "groups": n})
	return nil
}

// RebuildUsage replaces the quota counters with the ledger's sums. Main
// calls it at start; the admin API on demand.
func (s *Server) RebuildUsage(ctx context.Context) (int, error) {
	if s.Quota == nil {
		return 0, nil
	}
	totals, err := s.Store.UsageTotals(ctx, time.Time{})
	if err != nil {
		return 0, err
	}
	return len(totals), s.Quota.Load(ctx, totals)
}

func (s *Server) listOrgs(w http.ResponseWriter, r *http.Request) error {
	orgs, err := s.Store.Orgs(r.Context())
	if err != nil {
		return err
	}
	out := make([]orgJSON, 0, len(orgs))
	for _, o := range orgs {
		out = append(out, toOrgJSON(o))
	}
	writeJSON(w, http.StatusOK, map[string]any{"orgs": out})
	return nil
}

func (s *Server) createOrg(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		ID     string   `json:"id"`
		Name   string   `json:"name"`
		Plan   string   `json:"plan"`
		Models []string `json:"models"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	if in.ID == "" {
		in.ID = newID("org_")
	}
	var fe fieldErrors
	if !idPattern.MatchString(in.ID) {
		fe.add("id", "must be 1-64 characters of [A-Za-z0-9._-]")
	}
	if !validName(in.Name) {
		fe.add("name", nameRule)
	}
	if in.Plan == "" {
		fe.add("plan", "is required")
	}
	for _, m := range in.Models {
		if _, ok := s.models[m]; !ok {
			fe.add("models", fmt.Sprintf("unknown model %q", m))
		}
	}
	if err := fe.err(); err != nil {
		return err
	}
	o := &tollgate.Org{ID: in.ID, Name: in.Name, PlanID: in.Plan, CreatedAt: s.now().UTC()}
	if err := s.Store.CreateOrg(r.Context(), o); err != nil {
		return err
	}
	for _, m := range in.Models {
		if err := s.Store.GrantModel(r.Context(), o.ID, m); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusCreated, toOrgJSON(o))
	return nil
}

func (s *Server) getOrg(w http.ResponseWriter, r *http.Request) error {
	o, err := s.Store.Org(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toOrgJSON(o))
	return nil
}

func (s *Server) setOrgPlan(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Plan string `json:"plan"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	if in.Plan == "" {
		return invalid("plan", "is required")
	}
	id := r.PathValue("id")
	if err := s.Store.SetOrgPlan(r.Context(), id, in.Plan); err != nil {
		return err
	}
	s.changed(r.Context())
	return s.getOrg(w, r)
}

// Grants and concurrency overrides.

func (s *Server) knownOrgModel(r *http.Request) (org, model string, err error) {
	org, model = r.PathValue("id"), r.PathValue("model")
	if _, err := s.Store.Org(r.Context(), org); err != nil {
		return "", "", err
	}
	if _, ok := s.models[model]; !ok {
		return "", "", tollgate.Errorf(tollgate.CodeModelNotFound, "Unknown model %q.", model)
	}
	return org, model, nil
}

func (s *Server) listGrants(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, err := s.Store.Org(r.Context(), id); err != nil {
		return err
	}
	g, err := s.Store.Grants(r.Context(), id)
	if err != nil {
		return err
	}
	if g == nil {
		g = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"org": id, "models": g})
	return nil
}

func (s *Server) grantModel(w http.ResponseWriter, r *http.Request) error {
	org, model, err := s.knownOrgModel(r)
	if err != nil {
		return err
	}
	if err := s.Store.GrantModel(r.Context(), org, model); err != nil {
		return err
	}
	s.changed(r.Context())
	return s.listGrants(w, r)
}

func (s *Server) revokeModel(w http.ResponseWriter, r *http.Request) error {
	org, model, err := s.knownOrgModel(r)
	if err != nil {
		return err
	}
	if err := s.Store.RevokeModel(r.Context(), org, model); err != nil {
		return err
	}
	s.changed(r.Context())
	return s.listGrants(w, r)
}

func (s *Server) listConcurrency(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	o, err := s.Store.Org(r.Context(), id)
	if err != nil {
		return err
	}
	over, err := s.Store.ConcurrencyOverrides(r.Context(), id)
	if err != nil {
		return err
	}
	plan, err := s.Store.Plan(r.Context(), o.PlanID)
	if err != nil {
		return err
	}
	a := &tollgate.Access{Plan: plan, Concurrency: over}
	eff := map[string]int{}
	for _, m := range s.Models {
		eff[m.ID] = a.ConcurrencyLimit(m.ID)
	}
	if over == nil {
		over = map[string]int{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"org": id, "overrides": over, "effective": eff})
	return nil
}

func (s *Server) setConcurrency(w http.ResponseWriter, r *http.Request) error {
	org, model, err := s.knownOrgModel(r)
	if err != nil {
		return err
	}
	var in struct {
		Limit *int `json:"limit"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	if in.Limit == nil || *in.Limit < 0 {
		return invalid("limit", "is required and must be >= 0")
	}
	if err := s.Store.SetConcurrency(r.Context(), org, model, *in.Limit); err != nil {
		return err
	}
	s.changed(r.Context())
	return s.listConcurrency(w, r)
}

func (s *Server) clearConcurrency(w http.ResponseWriter, r *http.Request) error {
	org, model, err := s.knownOrgModel(r)
	if err != nil {
		return err
	}
	if err := s.Store.SetConcurrency(r.Context(), org, model, -1); err != nil {
		return err
	}
	s.changed(r.Context())
	return s.listConcurrency(w, r)
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request) error {
	type modelJSON struct {
		ID        string   `json:"id"`
		Feature   string   `json:"feature,omitempty"`
		Route     string   `json:"route"`
		Upstream  string   `json:"upstream"`
		Timeout   string   `json:"timeout"`
		Fallbacks []string `json:"fallbacks,omitempty"`
	}
	out := make([]modelJSON, 0, len(s.Models))
	for _, m := range s.Models {
		out = append(out, modelJSON{m.ID, m.Feature, m.Method + " " + m.Path, m.Upstream, m.UpstreamTimeout().String(), m.Fallbacks})
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": out})
	return nil
}

// nameRule is what validName checks, as a validation message.
const nameRule = "is required: at most 200 characters, no control characters"

// validName reports whether s is a usable display name for an org or a
// key: not blank, at most 200 bytes, no control characters (a NUL in a
// name is refused by PostgreSQL, and no name needs one).
func validName(s string) bool {
	if strings.TrimSpace(s) == "" || len(s) > 200 {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
