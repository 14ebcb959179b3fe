package httpapi

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate"
)

// route is one model's public route: the request path of DESIGN.md in
// front of the model's upstream chain.
type route struct {
	s       *Server
	model   *tollgate.Model
	chain   []*tollgate.Model
	profile tollgate.Profile
	input   *inputRules
	// ok counts answered requests by upstream status, resolved lazily.
	okByStatus sync.Map // int -> prometheus.Counter
}

func (s *Server) newRoute(m *tollgate.Model) (*route, error) {
	chain := []*tollgate.Model{m}
	for _, id := range m.Fallbacks {
		fb, ok := s.models[id]
		if !ok {
			return nil, fmt.Errorf("httpapi: model %s: unknown fallback %q", m.ID, id)
		}
		chain = append(chain, fb)
	}
	input, err := compileInput(m)
	if err != nil {
		return nil, err
	}
	return &route{
		s:       s,
		model:   m,
		chain:   chain,
		profile: s.Profile.WithOverrides(m.Profile, m.Statuses).WithMessages(m.Messages),
		input:   input,
	}, nil
}

func (rt *route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := rt.s
	id := newRequestID()
	w.Header().Set("X-Request-Id", id)
	s.metrics.inFlight.Inc()
	defer s.metrics.inFlight.Dec()
	guard := guardBody(w, r, rt.model.UpstreamTimeout())
	defer guard.lift()

	up, err := rt.serve(w, r, id)
	if err != nil {
		code, status := s.writeError(w, r, rt.profile, err, id)
		s.metrics.requests.WithLabelValues(rt.model.ID, string(code), strconv.Itoa(status)).Inc()
		return
	}
	s.metrics.upstream.WithLabelValues(up.Model.ID).Observe(up.Latency.Seconds())
	rt.countOK(up.Status)
}

func (rt *route) countOK(status int) {
	c, ok := rt.okByStatus.Load(status)
	if !ok {
		c, _ = rt.okByStatus.LoadOrStore(status,
			rt.s.metrics.requests.WithLabelValues(rt.model.ID, "ok", strconv.Itoa(status)))
	}
	c.(prometheus.Counter).Inc()
}

// serve walks the request path. Each step passes or returns one catalog
// error; nothing after a failing step runs.
func (rt *route) serve(w http.ResponseWriter, r *http.Request, requestID string) (Upstream, error) {
	s := rt.s
	ctx := r.Context()

	// Authenticate.
	cred, err := credential(r)
	if err != nil {
		return Upstream{}, err
	}
	access, err := s.authenticate(ctx, cred)
	if err != nil {
		return Upstream{}, err
	}
	// Authorize.
	if err := access.Authorize(rt.model); err != nil {
		return Upstream{}, err
	}
	// Admit: a rate token, the estimated cost reserved against free
	// credits and monthly limits (so concurrent requests can never
	// overshoot a budget) and a concurrency slot. A route that reads the
	// body to validate it takes its rate token first, so a client over its
	// limit is refused before uploading, and the rest once the body is
	// measured; any other route takes all three in one step (one limiter
	// round trip).
	now := s.now()
	m := rt.model
	adm := tollgate.Admission{RateKey: "rate:" + access.Key.ID, Rate: tollgate.PerMinute(access.RPM())}
	if rt.input.readsBody() {
		got, err := s.adm.Admit(ctx, tollgate.Admission{RateKey: adm.RateKey, Rate: adm.Rate}, now)
		s.countAdmission(adm, err)
		if got.Rate.Limit > 0 {
			setRateHeaders(w.Header(), got.Rate)
		}
		if err != nil {
			return Upstream{}, err
		}
		adm.RateKey = ""
	}

	// Validate.
	facts, cleanup, err := rt.input.validate(r)
	defer cleanup()
	if err != nil {
		rt.recordFailure(access, requestID, facts, err, now)
		return Upstream{}, err
	}
	if rt.input.in != nil {
		r = r.WithContext(context.WithValue(ctx, factsKey{}, facts))
	}

	units := m.Meter.Quantity(facts)
	// Under a budget with no limit nothing is reserved, so a Redis outage
	// with fail_open does not stop requests no quota applies to; their
	// cost is still counted when the handler returns.
	var unreserved *tollgate.Reservation
	if s.Quota != nil {
		b := access.Budget(m)
		if b.Limited() {
			adm.Budget, adm.Credits, adm.Units = &b, units*m.Meter.Price, units
		} else {
			period, _, _ := tollgate.Period(now)
			unreserved = &tollgate.Reservation{OrgID: b.OrgID, Model: b.Model, Period: period}
		}
	}
	if limit := access.ConcurrencyLimit(m.ID); limit > 0 {
		adm.LeaseKey, adm.Concurrency = "conc:"+access.Org.ID+":"+m.ID, limit
	}
	held, got, err := s.admit(ctx, adm, now, m.UpstreamTimeout(), requestID)
	if adm.RateKey != "" && got.Rate.Limit > 0 {
		setRateHeaders(w.Header(), got.Rate)
	}
	if err != nil {
		if tollgate.ErrorCode(err) != tollgate.CodeRateLimitExceeded {
			rt.recordFailure(access, requestID, facts, err, now)
		}
		return Upstream{}, err
	}
	held.unreserved = unreserved
	defer held.finish()

	// Proxy; commit the usage to the ledger once the upstream's head is
	// in, before anything is written to the client. The reservation is
	// settled at the charged cost when the handler returns, or released
	// if nothing was charged.
	settle := func(served *tollgate.Model, status int, header func(string) string) error {
		if status >= 400 {
			// The model refused the input (or is unavailable and said
			// so): nothing is charged, but the generation is history.
			item := rt.historyItem(access, requestID, facts, now)
			item.Status, item.Output = status, outputSummary(status, header)
			if err := s.ledger.commit(nil, item); err != nil {
				s.logger().Error("history: record upstream refusal", "request_id", requestID, "err", err)
			}
			return nil
		}
		actual := units
		if m.Meter.TrustUpstream {
			if q, ok := reportedUsage(header(tollgate.UsageHeader), m.Meter.UnitOrDefault()); ok {
				actual = q
			}
		}
		cost := actual * m.Meter.Price
		// Stamped with the admission time: the event belongs to the month
		// its reservation was made in, or a request answered after
		// midnight on a month's last day would be counted in one month and
		// rebuilt from the ledger into the next.
		ev := &tollgate.UsageEvent{RequestID: requestID, OrgID: access.Org.ID, KeyID: access.Key.ID, Model: m.ID,
			Unit: m.Meter.UnitOrDefault(), Quantity: actual, Credits: cost, Time: now.UTC()}
		if res := held.got.Reservation; res != nil && res.Free {
			ev.FreeCredits = cost
		}
		item := rt.historyItem(access, requestID, facts, ev.Time)
		item.Status, item.Unit, item.Quantity, item.Credits = status, ev.Unit, ev.Quantity, ev.Credits
		item.Output = outputSummary(status, header)
		if served.ID != m.ID {
			item.Output += " (served by " + served.ID + ")"
		}
		if err := s.ledger.commit(ev, item); err != nil {
			// Not durable: charge nothing and answer 500 rather than serve
			// a request the ledger does not hold.
			return &tollgate.Error{Code: tollgate.CodeInternal, Err: fmt.Errorf("ledger: %w", err)}
		}
		held.charge(cost, actual)
		return nil
	}
	up, err := s.Forward(w, r, rt.chain, requestID, settle)
	if err != nil {
		rt.recordFailure(access, requestID, facts, err, now)
	}
	return up, err
}

// reportedUsage parses a Tollgate-Usage header ("audio_seconds=12.5",
// several comma-separated pairs allowed) for unit.
func reportedUsage(v string, unit tollgate.Unit) (float64, bool) {
	for _, part := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || tollgate.Unit(strings.TrimSpace(k)) != unit {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || q < 0 || math.IsInf(q, 0) || math.IsNaN(q) {
			return 0, false
		}
		return q, true
	}
	return 0, false
}

func outputSummary(status int, header func(string) string) string {
	out := strconv.Itoa(status)
	if ct := header("Content-Type"); ct != "" {
		out += " " + truncate(ct, 100)
	}
	if cl := header("Content-Length"); cl != "" {
		out += " " + cl + " bytes"
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func (rt *route) historyItem(a *tollgate.Access, requestID string, facts tollgate.Facts, at time.Time) *tollgate.HistoryItem {
	return &tollgate.HistoryItem{ID: sortableID("hist_"), OrgID: a.Org.ID, KeyID: a.Key.ID, RequestID: requestID,
		Model: rt.model.ID, Feature: rt.model.Feature, Unit: rt.model.Meter.UnitOrDefault(),
		Input: facts.Summary, CreatedAt: at.UTC()}
}

// recordFailure adds a failed generation to the org's history (nothing is
// charged). It waits for the commit, so the history a client reads after
// an answer holds that answer.
func (rt *route) recordFailure(a *tollgate.Access, requestID string, facts tollgate.Facts, err error, now time.Time) {
	if rt.s.ledger == nil {
		return
	}
	e := tollgate.AsError(err)
	item := rt.historyItem(a, requestID, facts, now)
	item.Code = e.Code
	item.Status = rt.profile.Status(e)
	item.Output = string(e.Code)
	if err := rt.s.ledger.commit(nil, item); err != nil {
		rt.s.logger().Error("history: record failure", "request_id", requestID, "err", err)
	}
}

// heldLease is one request's lease. While held it is in s.held (when
// tracked), whose loop heartbeats leases older than a third of the TTL, so
// long requests keep their slot and a crashed holder's expire.
type heldLease struct {
	s        *Server
	ctx      context.Context
	lease    tollgate.Lease
	since    time.Time
	tracked  bool
	released atomic.Bool
}

// leaseSet holds the leases of requests in flight.
type leaseSet struct {
	shards [16]struct {
		mu sync.Mutex
		m  map[*heldLease]struct{}
	}
	next atomic.Uint32
}

func newLeaseSet() *leaseSet {
	ls := &leaseSet{}
	for i := range ls.shards {
		ls.shards[i].m = make(map[*heldLease]struct{})
	}
	return ls
}

func (ls *leaseSet) add(h *heldLease) {
	sh := &ls.shards[ls.next.Add(1)%uint32(len(ls.shards))]
	sh.mu.Lock()
	sh.m[h] = struct{}{}
	sh.mu.Unlock()
}

func (ls *leaseSet) remove(h *heldLease) {
	for i := range ls.shards {
		sh := &ls.shards[i]
		sh.mu.Lock()
		_, ok := sh.m[h]
		delete(sh.m, h)
		sh.mu.Unlock()
		if ok {
			return
		}
	}
}

// older returns the held leases acquired before cutoff.
func (ls *leaseSet) older(cutoff time.Time) []*heldLease {
	var out []*heldLease
	for i := range ls.shards {
		sh := &ls.shards[i]
		sh.mu.Lock()
		for h := range sh.m {
			if h.since.Before(cutoff) {
				out = append(out, h)
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// heartbeatLoop extends every lease held longer than a third of the TTL,
// every third of the TTL, until ctx ends.
func (s *Server) heartbeatLoop(ctx context.Context) {
	every := s.LeaseTTL / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.now()
		for _, h := range s.held.older(now.Add(-every)) {
			if h.released.Load() {
				continue
			}
			hctx, cancel := context.WithTimeout(ctx, every)
			_, err := s.Limiter.Heartbeat(hctx, h.lease, now)
			cancel()
			if err != nil && !h.released.Load() {
				s.logger().Warn("lease heartbeat", "key", h.lease.Key, "err", err)
			}
		}
	}
}

func setRateHeaders(h http.Header, d tollgate.RateDecision) {
	h["X-Ratelimit-Limit"] = []string{strconv.Itoa(d.Limit)}
	h["X-Ratelimit-Remaining"] = []string{strconv.Itoa(max(d.Remaining, 0))}
	reset := d.ResetAt.Unix()
	if d.ResetAt.Nanosecond() > 0 {
		reset++
	}
	h["X-Ratelimit-Reset"] = []string{strconv.FormatInt(reset, 10)}
}
