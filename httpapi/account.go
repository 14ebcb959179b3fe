package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tollgate/tollgate"
)

// The account API: an API key's own org's history and usage. Another org's
// ids answer not_found, never its data.

func (s *Server) registerAccount(mux *http.ServeMux) error {
	var errs []error
	h := func(pattern string, fn func(w http.ResponseWriter, r *http.Request, a *tollgate.Access) error) {
		if err := register(mux, pattern, s.accountHandler(fn)); err != nil {
			errs = append(errs, fmt.Errorf("httpapi: account route conflicts with a model route: %w", err))
		}
	}
	routes := tollgate.AccountRoutes(s.HistoryPath, s.UsagePath)
	h(routes[0], s.listHistory)
	h(routes[1], s.getHistory)
	h(routes[2], s.deleteHistory)
	h(routes[3], s.getUsage)
	return errors.Join(errs...)
}

func (s *Server) accountHandler(fn func(w http.ResponseWriter, r *http.Request, a *tollgate.Access) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := newRequestID()
		w.Header().Set("X-Request-Id", id)
		w.Header().Set("Cache-Control", "no-store")
		err := func() error {
			cred, err := credential(r)
			if err != nil {
				return err
			}
			a, err := s.authenticate(r.Context(), cred)
			if err != nil {
				return err
			}
			return fn(w, r, a)
		}()
		if err != nil {
			s.writeError(w, r, s.Profile, err, id)
		}
	})
}

type historyJSON struct {
	ID        string    `json:"id"`
	RequestID string    `json:"request_id"`
	Model     string    `json:"model"`
	Feature   string    `json:"feature,omitempty"`
	Status    int       `json:"status"`
	Code      string    `json:"code,omitempty"`
	Unit      string    `json:"unit"`
	Quantity  float64   `json:"quantity"`
	Credits   float64   `json:"credits"`
	Input     string    `json:"input,omitempty"`
	Output    string    `json:"output,omitempty"`
	KeyID     string    `json:"key_id"`
	CreatedAt time.Time `json:"created_at"`
}

func toHistoryJSON(h *tollgate.HistoryItem) historyJSON {
	return historyJSON{ID: h.ID, RequestID: h.RequestID, Model: h.Model, Feature: h.Feature, Status: h.Status,
		Code: string(h.Code), Unit: string(h.Unit), Quantity: h.Quantity, Credits: h.Credits, Input: h.Input,
		Output: h.Output, KeyID: h.KeyID, CreatedAt: h.CreatedAt.UTC()}
}

// queryInt reads an integer query parameter within [min, max].
func queryInt(q url.Values, name string, def, min, max int, fe *fieldErrors) int {
	v := q.Get(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		fe.add(name, fmt.Sprintf("must be an integer from %d to %d", min, max))
		return def
	}
	return n
}

func (s *Server) listHistory(w http.ResponseWriter, r *http.Request, a *tollgate.Access) error {
	q := r.URL.Query()
	var fe fieldErrors
	f := tollgate.HistoryFilter{OrgID: a.Org.ID, Feature: q.Get("feature"),
		Limit: queryInt(q, "limit", tollgate.DefaultHistoryLimit, 1, tollgate.MaxHistoryLimit, &fe), Offset: queryInt(q, "offset", 0, 0, 1<<30, &fe)}
	if err := fe.err(); err != nil {
		return err
	}
	items, err := s.Store.History(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]historyJSON, 0, len(items))
	for i := range items {
		out = append(out, toHistoryJSON(&items[i]))
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": out, "limit": f.Limit, "offset": f.Offset})
	return nil
}

func (s *Server) getHistory(w http.ResponseWriter, r *http.Request, a *tollgate.Access) error {
	h, err := s.Store.HistoryItem(r.Context(), a.Org.ID, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toHistoryJSON(h))
	return nil
}

func (s *Server) deleteHistory(w http.ResponseWriter, r *http.Request, a *tollgate.Access) error {
	if err := s.Store.DeleteHistory(r.Context(), a.Org.ID, r.PathValue("id")); err != nil {
		return err
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) getUsage(w http.ResponseWriter, r *http.Request, a *tollgate.Access) error {
	return s.writeUsage(w, r, a.Org, a.Plan)
}

// parseTime reads an RFC 3339 time or a YYYY-MM-DD date (UTC midnight).
func parseTime(v string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC(), true
	}
	if t, err := time.Parse("2006-01-02", v); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// writeUsage answers an org's usage rows for [from, to) and its balance.
func (s *Server) writeUsage(w http.ResponseWriter, r *http.Request, org *tollgate.Org, plan *tollgate.Plan) error {
	q := r.URL.Query()
	now := s.now().UTC()
	_, monthStart, resets := tollgate.Period(now)
	uq := tollgate.UsageQuery{OrgID: org.ID, From: monthStart, To: now.Add(time.Second), GroupBy: "day"}
	var fe fieldErrors
	if v := q.Get("from"); v != "" {
		if t, ok := parseTime(v); ok {
			uq.From = t
		} else {
			fe.add("from", "must be RFC 3339 (2026-11-01T00:00:00Z) or a date (2026-11-01)")
		}
	}
	if v := q.Get("to"); v != "" {
		if t, ok := parseTime(v); ok {
			uq.To = t
		} else {
			fe.add("to", "must be RFC 3339 (2026-11-30T00:00:00Z) or a date (2026-11-30)")
		}
	}
	if g := q.Get("group_by"); g != "" {
		if g != "day" && g != "model" {
			fe.add("group_by", "must be day or model")
		}
		uq.GroupBy = g
	}
	if !uq.From.Before(uq.To) {
		fe.add("to", "must be after from")
	}
	if err := fe.err(); err != nil {
		return err
	}
	rows, err := s.Store.Usage(r.Context(), uq)
	if err != nil {
		return err
	}
	type rowJSON struct {
		Day      string  `json:"day,omitempty"`
		Model    string  `json:"model,omitempty"`
		Unit     string  `json:"unit,omitempty"`
		Requests int     `json:"requests"`
		Quantity float64 `json:"quantity"`
		Credits  float64 `json:"credits"`
	}
	out := make([]rowJSON, 0, len(rows))
	for _, row := range rows {
		out = append(out, rowJSON{row.Day, row.Model, string(row.Unit), row.Requests, row.Quantity, row.Credits})
	}
	balance := map[string]any{"billing_active": org.Billing.Active, "resets_at": resets.Format(time.RFC3339)}
	if s.Quota != nil {
		b, err := s.Quota.Balance(r.Context(), org.ID, now)
		if err != nil {
			return err
		}
		balance["month_credits"] = b.MonthCredits
		balance["month_units"] = b.MonthUnits
		if plan.BillingRequired {
			balance["free_credits"] = map[string]any{"granted": plan.FreeCredits, "used": b.FreeCreditsUsed,
				"left": max(plan.FreeCredits-b.FreeCreditsUsed, 0)}
		}
	}
	a := &tollgate.Access{Org: org, Plan: plan}
	limits := map[string]any{}
	for _, m := range s.Models {
		if b := a.Budget(m); b.UnitLimit > 0 {
			limits[m.ID] = map[string]any{"unit": string(b.Unit), "limit": b.UnitLimit}
		}
	}
	balance["monthly_limits"] = limits
	if cl := a.Budget(&tollgate.Model{}).CreditLimit; cl > 0 {
		balance["monthly_credit_limit"] = cl
	}
	writeJSON(w, http.StatusOK, map[string]any{"org": org.ID, "from": uq.From.Format(time.RFC3339),
		"to": uq.To.Format(time.RFC3339), "group_by": uq.GroupBy, "rows": out, "balance": balance})
	return nil
}

// pruneLoop deletes history older than the retention, hourly.
func (s *Server) pruneLoop(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		if n, err := s.Store.PruneHistory(pctx, s.now().Add(-s.HistoryRetention)); err != nil && ctx.Err() == nil {
			s.logger().Warn("prune history", "err", err)
		} else if n > 0 {
			s.logger().Info("pruned history", "items", n)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
