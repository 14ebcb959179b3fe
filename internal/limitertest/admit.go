package limitertest

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tollgate/tollgate"
)

// AdmitOptions describes the admitter under test.
type AdmitOptions struct {
	// New returns the admitter for one subtest. It may return the same
	// one, or one on the same backend, every time: each subtest uses keys
	// and orgs of its own. Its quota counters must be loaded; the suite
	// never calls Load. Required.
	New func(t *testing.T) tollgate.Admitter
	// LeaseTTL is the lease TTL the admitter was built with. Required.
	LeaseTTL time.Duration
}

// RunAdmit runs the tollgate.Admitter contract suite against the
// admitters opts.New returns.
//
// The contract, beyond the interface's documentation: each step decides
// exactly as AllowRate, Reserve and Acquire do, on the same buckets,
// counters and leases, and refuses with their errors; a refusal holds no
// reservation and no lease, and fills Rate whenever the rate step ran; an
// invalid input (rate limit, cost, concurrency) is an internal error that
// takes nothing, not even a rate token; Finish settles and releases as Settle and
// Release do. Concurrent admissions never exceed a concurrency limit or a
// budget, and those refused leave nothing behind.
//
// Like the quota suite it uses fixed instants in late 2026.
func RunAdmit(t *testing.T, opts AdmitOptions) {
	if opts.New == nil {
		t.Fatal("limitertest: AdmitOptions.New is nil")
	}
	if opts.LeaseTTL <= 0 {
		t.Fatalf("limitertest: AdmitOptions.LeaseTTL is %v; want the admitter's positive lease TTL", opts.LeaseTTL)
	}
	for _, tt := range []struct {
		name string
		test func(*testing.T, *admitEnv)
	}{
		{"AllSteps", testAdmitAllSteps},
		{"StepsSkipped", testAdmitStepsSkipped},
		{"SharesState", testAdmitSharesState},
		{"RateRefused", testAdmitRateRefused},
		{"ReservationRefused", testAdmitReservationRefused},
		{"LeaseRefused", testAdmitLeaseRefused},
		{"Finish", testAdmitFinish},
		{"Concurrent", testAdmitConcurrent},
		{"InvalidInput", testAdmitInvalidInput},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := opts.New(t)
			tt.test(t, &admitEnv{
				ctx: t.Context(),
				a:   a,
				env: &env{ctx: t.Context(), l: a, ttl: opts.LeaseTTL, base: nov15},
				q:   &quotaEnv{ctx: t.Context(), q: a},
			})
		})
	}
}

// admitEnv is one subtest's admitter, with the limiter and quota helpers
// on it.
type admitEnv struct {
	ctx context.Context
	a   tollgate.Admitter
	env *env
	q   *quotaEnv
}

// admission returns an admission of every step on keys and an org of
// the test's own: 10 requests a minute, 2 credits and 20 audio seconds of
// a budget with no limit, 2 in flight.
func admission(t *testing.T) tollgate.Admission {
	return tollgate.Admission{
		RateKey:     key(t, "rate"),
		Rate:        tollgate.PerMinute(10),
		Budget:      &tollgate.Budget{OrgID: key(t, "org"), Model: "stt", Unit: tollgate.UnitAudioSeconds},
		Credits:     2,
		Units:       20,
		LeaseKey:    key(t, "lease"),
		Concurrency: 2,
	}
}

// admit runs adm at now, which must be admitted, and checks what it took.
func (e *admitEnv) admit(t *testing.T, adm tollgate.Admission, now time.Time) tollgate.Admitted {
	t.Helper()
	got, err := e.a.Admit(e.ctx, adm, now)
	if err != nil {
		t.Fatalf("Admit at %v: %v", now, err)
	}
	if adm.RateKey != "" && (!got.Rate.Allowed || got.Rate.Limit != adm.Rate.Limit) {
		t.Errorf("Admit: rate decision %+v; want allowed at limit %d", got.Rate, adm.Rate.Limit)
	}
	if adm.RateKey == "" && got.Rate != (tollgate.RateDecision{}) {
		t.Errorf("Admit without a rate step: rate decision %+v; want the zero value", got.Rate)
	}
	switch {
	case adm.Budget == nil && got.Reservation != nil:
		t.Errorf("Admit without a budget: reservation %+v; want nil", got.Reservation)
	case adm.Budget != nil && got.Reservation == nil:
		t.Errorf("Admit with a budget: no reservation")
	case adm.Budget != nil:
		period, _, _ := tollgate.Period(now)
		want := tollgate.Reservation{OrgID: adm.Budget.OrgID, Model: adm.Budget.Model, Period: period,
			Credits: adm.Credits, Units: adm.Units, Free: adm.Budget.UsesFreeCredits}
		if diff := cmp.Diff(*got.Reservation, want); diff != "" {
			t.Errorf("Admit: reservation mismatch (-got +want):\n%s", diff)
		}
	}
	switch {
	case adm.LeaseKey == "" && got.Lease != nil:
		t.Errorf("Admit without a lease step: lease %+v; want nil", got.Lease)
	case adm.LeaseKey != "" && got.Lease == nil:
		t.Errorf("Admit with a lease step: no lease")
	case adm.LeaseKey != "":
		if got.Lease.Key != adm.LeaseKey || got.Lease.ID == "" || !got.Lease.ExpiresAt.Equal(now.Add(e.env.ttl)) {
			t.Errorf("Admit: lease %+v; want key %q, an ID, ExpiresAt %v", got.Lease, adm.LeaseKey, now.Add(e.env.ttl))
		}
	}
	return got
}

// refuse runs adm at now, which must be refused with code, and checks
// that it took no reservation and no lease.
func (e *admitEnv) refuse(t *testing.T, adm tollgate.Admission, now time.Time, code tollgate.Code) (tollgate.Admitted, *tollgate.Error) {
	t.Helper()
	got, err := e.a.Admit(e.ctx, adm, now)
	if err == nil {
		t.Fatalf("Admit at %v: admitted %+v; want %s", now, got, code)
	}
	if got.Reservation != nil || got.Lease != nil {
		t.Errorf("Admit refused with reservation %+v, lease %+v; want neither", got.Reservation, got.Lease)
	}
	return got, catalogError(t, err, code)
}

func (e *admitEnv) finish(t *testing.T, r *tollgate.Reservation, credits, units float64, lease *tollgate.Lease) {
	t.Helper()
	if err := e.a.Finish(e.ctx, r, credits, units, lease); err != nil {
		t.Fatalf("Finish(%+v, %v, %v, %+v): %v", r, credits, units, lease, err)
	}
}

func testAdmitAllSteps(t *testing.T, e *admitEnv) {
	adm := admission(t)
	got := e.admit(t, adm, nov15)
	wantDecision(t, "first admission", got.Rate,
		tollgate.RateDecision{Allowed: true, Limit: 10, Remaining: 9, ResetAt: nov15.Add(6 * time.Second)})
	e.env.wantInFlight(t, adm.LeaseKey, nov15, 1)
	e.q.balance(t, adm.Budget.OrgID, nov15, 0, 2, map[string]float64{"stt": 20})

	// The lease is a lease like any: it heartbeats.
	later := nov15.Add(e.env.ttl / 2)
	hb, err := e.a.Heartbeat(e.ctx, *got.Lease, later)
	if err != nil {
		t.Fatalf("Heartbeat of an admitted lease: %v", err)
	}
	if !hb.ExpiresAt.Equal(later.Add(e.env.ttl)) {
		t.Errorf("Heartbeat: ExpiresAt %v; want %v", hb.ExpiresAt, later.Add(e.env.ttl))
	}

	// A second admission takes a second of each.
	second := e.admit(t, adm, nov15)
	if second.Rate.Remaining != 8 || second.Lease.ID == got.Lease.ID {
		t.Errorf("second admission: Remaining %d, lease ID %q (first %q); want 8 and a new ID", second.Rate.Remaining, second.Lease.ID, got.Lease.ID)
	}
	e.env.wantInFlight(t, adm.LeaseKey, nov15, 2)
	e.q.balance(t, adm.Budget.OrgID, nov15, 0, 4, map[string]float64{"stt": 40})

	// Finish settles at the actual cost and frees the slot.
	e.finish(t, got.Reservation, 1.5, 15, got.Lease)
	e.env.wantInFlight(t, adm.LeaseKey, nov15, 1)
	e.q.balance(t, adm.Budget.OrgID, nov15, 0, 3.5, map[string]float64{"stt": 35})
	e.finish(t, second.Reservation, 0, 0, second.Lease)
	e.env.wantInFlight(t, adm.LeaseKey, nov15, 0)
	e.q.balance(t, adm.Budget.OrgID, nov15, 0, 1.5, map[string]float64{"stt": 15})
}

func testAdmitStepsSkipped(t *testing.T, e *admitEnv) {
	for _, tt := range []struct {
		name                 string
		rate, budget, lease  bool
		wantCredits, wantInF int
	}{
		{name: "RateOnly", rate: true},
		{name: "ReservationOnly", budget: true, wantCredits: 2},
		{name: "LeaseOnly", lease: true, wantInF: 1},
		{name: "RateAndLease", rate: true, lease: true, wantInF: 1},
		{name: "ReservationAndLease", budget: true, lease: true, wantCredits: 2, wantInF: 1},
		{name: "Nothing"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			full := admission(t)
			adm := full
			if !tt.rate {
				adm.RateKey, adm.Rate = "", tollgate.RateLimit{}
			}
			if !tt.budget {
				adm.Budget, adm.Credits, adm.Units = nil, 0, 0
			}
			if !tt.lease {
				adm.LeaseKey, adm.Concurrency = "", 0
			}
			got := e.admit(t, adm, nov15)
			if tt.rate && got.Rate.Remaining != 9 {
				t.Errorf("rate step: Remaining %d; want 9", got.Rate.Remaining)
			}
			// The skipped steps took nothing.
			e.env.wantInFlight(t, full.LeaseKey, nov15, tt.wantInF)
			var units map[string]float64
			if tt.wantCredits > 0 {
				units = map[string]float64{"stt": 20}
			}
			e.q.balance(t, full.Budget.OrgID, nov15, 0, float64(tt.wantCredits), units)
			want := 9
			if tt.rate {
				want = 8
			}
			if d := e.env.allow(t, full.RateKey, full.Rate, nov15); d.Remaining != want {
				t.Errorf("AllowRate after the admission: Remaining %d; want %d", d.Remaining, want)
			}
			e.finish(t, got.Reservation, 0, 0, got.Lease)
			e.env.wantInFlight(t, full.LeaseKey, nov15, 0)
			e.q.balance(t, full.Budget.OrgID, nov15, 0, 0, nil)
		})
	}
}

// testAdmitSharesState checks that Admit's steps use the buckets,
// counters and leases of AllowRate, Reserve and Acquire.
func testAdmitSharesState(t *testing.T, e *admitEnv) {
	adm := admission(t)
	adm.Rate = tollgate.PerMinute(2)
	adm.Budget.CreditLimit = 4
	adm.Concurrency = 1
	if !e.env.allow(t, adm.RateKey, adm.Rate, nov15).Allowed {
		t.Fatal("AllowRate denied the first request")
	}
	if _, err := e.a.Reserve(e.ctx, *adm.Budget, 2, 20, nov15); err != nil {
		t.Fatal(err)
	}
	got := e.admit(t, adm, nov15)
	if got.Rate.Remaining != 0 {
		t.Errorf("Admit after AllowRate on 2/min: Remaining %d; want 0", got.Rate.Remaining)
	}
	e.q.balance(t, adm.Budget.OrgID, nov15, 0, 4, map[string]float64{"stt": 40})
	e.env.refuse(t, adm.LeaseKey, 1, nov15)
	if e.env.allow(t, adm.RateKey, adm.Rate, nov15).Allowed {
		t.Error("AllowRate after Admit took the last token: allowed")
	}
	e.q.quotaExceeded(t, *adm.Budget, 1, 1, nov15, tollgate.UnitCredits, 4, 4)
	e.env.release(t, *got.Lease)
	e.env.acquire(t, adm.LeaseKey, 1, nov15)
}

func testAdmitRateRefused(t *testing.T, e *admitEnv) {
	adm := admission(t)
	adm.Rate = tollgate.PerMinute(1)
	first := e.admit(t, adm, nov15)
	got, ce := e.refuse(t, adm, nov15.Add(time.Second), tollgate.CodeRateLimitExceeded)
	wantDecision(t, "refused at 1s", got.Rate,
		tollgate.RateDecision{Limit: 1, ResetAt: nov15.Add(time.Minute), RetryAfter: 59 * time.Second})
	if ce.RetryAfter != got.Rate.RetryAfter {
		t.Errorf("error RetryAfter %v; decision RetryAfter %v; want equal", ce.RetryAfter, got.Rate.RetryAfter)
	}
	if want := "Rate limit of 1 requests per minute exceeded."; ce.Message != want {
		t.Errorf("message %q; want %q", ce.Message, want)
	}
	// Refused at the first step: the reservation and the lease were never
	// tried, and what the first admission holds is all there is.
	e.env.wantInFlight(t, adm.LeaseKey, nov15, 1)
	e.q.balance(t, adm.Budget.OrgID, nov15, 0, 2, map[string]float64{"stt": 20})
	// Refused again, the same way, until the bucket has room.
	got, _ = e.refuse(t, adm, nov15.Add(30*time.Second), tollgate.CodeRateLimitExceeded)
	if got.Rate.RetryAfter != 30*time.Second {
		t.Errorf("refused at 30s: RetryAfter %v; want 30s", got.Rate.RetryAfter)
	}
	e.finish(t, first.Reservation, 0, 0, first.Lease)
	e.admit(t, adm, nov15.Add(time.Minute))
}

func testAdmitReservationRefused(t *testing.T, e *admitEnv) {
	for _, tt := range []struct {
		name   string
		budget tollgate.Budget
		code   tollgate.Code
	}{
		{"BillingRequired", tollgate.Budget{UsesFreeCredits: true, FreeCredits: 3}, tollgate.CodeBillingRequired},
		{"CreditLimit", tollgate.Budget{CreditLimit: 3}, tollgate.CodeQuotaExceeded},
		{"UnitLimit", tollgate.Budget{UnitLimit: 30}, tollgate.CodeQuotaExceeded},
	} {
		t.Run(tt.name, func(t *testing.T) {
			adm := admission(t)
			b := tt.budget
			b.OrgID, b.Model, b.Unit = key(t, "org"), "stt", tollgate.UnitAudioSeconds
			adm.Budget = &b
			first := e.admit(t, adm, nov15)

			// What Reserve answers is what Admit must answer.
			_, rerr := e.a.Reserve(e.ctx, b, adm.Credits, adm.Units, nov15)
			want := catalogError(t, rerr, tt.code)
			got, ce := e.refuse(t, adm, nov15, tt.code)
			if diff := cmp.Diff(ce, want, floats); diff != "" {
				t.Errorf("Admit's error differs from Reserve's (-Admit +Reserve):\n%s", diff)
			}
			// The rate step ran and admitted: its decision is filled and its
			// token stays taken.
			wantDecision(t, "rate step", got.Rate,
				tollgate.RateDecision{Allowed: true, Limit: 10, Remaining: 8, ResetAt: nov15.Add(12 * time.Second)})
			if d := e.env.allow(t, adm.RateKey, adm.Rate, nov15); d.Remaining != 7 {
				t.Errorf("AllowRate after the refusal: Remaining %d; want 7", d.Remaining)
			}
			// Nothing else is held.
			e.env.wantInFlight(t, adm.LeaseKey, nov15, 1)
			free := 0.0
			if b.UsesFreeCredits {
				free = 2
			}
			e.q.balance(t, b.OrgID, nov15, free, 2, map[string]float64{"stt": 20})
			e.finish(t, first.Reservation, 0, 0, first.Lease)
			e.env.wantInFlight(t, adm.LeaseKey, nov15, 0)
		})
	}
}

func testAdmitLeaseRefused(t *testing.T, e *admitEnv) {
	adm := admission(t)
	adm.Budget.UsesFreeCredits, adm.Budget.FreeCredits, adm.Budget.CreditLimit = true, 4, 4
	adm.Concurrency = 1
	held := e.env.acquire(t, adm.LeaseKey, 1, nov15)

	got, ce := e.refuse(t, adm, nov15, tollgate.CodeConcurrencyLimitExceeded)
	if ce.RetryAfter != time.Second {
		t.Errorf("concurrency_limit_exceeded RetryAfter %v; want 1s", ce.RetryAfter)
	}
	wantDecision(t, "rate step", got.Rate,
		tollgate.RateDecision{Allowed: true, Limit: 10, Remaining: 9, ResetAt: nov15.Add(6 * time.Second)})
	// The reservation was not held (or was given back).
	e.env.wantInFlight(t, adm.LeaseKey, nov15, 1)
	e.q.balance(t, adm.Budget.OrgID, nov15, 0, 0, nil)
	// The budget still has room for exactly two.
	e.env.release(t, held)
	a := e.admit(t, adm, nov15)
	e.finish(t, nil, 0, 0, a.Lease)
	e.admit(t, adm, nov15)
	_, ce = e.refuse(t, adm, nov15, tollgate.CodeBillingRequired)
	if ce.Details["used"] != 4.0 {
		t.Errorf("billing_required details %v; want used 4", ce.Details)
	}

	// A concurrency of zero admits nothing.
	zero := admission(t)
	zero.Concurrency = 0
	e.refuse(t, zero, nov15, tollgate.CodeConcurrencyLimitExceeded)
	e.env.wantInFlight(t, zero.LeaseKey, nov15, 0)
	e.q.balance(t, zero.Budget.OrgID, nov15, 0, 0, nil)
}

func testAdmitFinish(t *testing.T, e *admitEnv) {
	adm := admission(t)
	adm.Budget.UsesFreeCredits, adm.Budget.FreeCredits = true, 100
	a := e.admit(t, adm, nov15)
	b := e.admit(t, adm, nov15)
	e.q.balance(t, adm.Budget.OrgID, nov15, 4, 4, map[string]float64{"stt": 40})

	// Nothing to finish is nothing to do.
	e.finish(t, nil, 0, 0, nil)

	// The reservation alone: released at 0, 0.
	e.finish(t, a.Reservation, 0, 0, nil)
	e.q.balance(t, adm.Budget.OrgID, nov15, 2, 2, map[string]float64{"stt": 20})
	e.env.wantInFlight(t, adm.LeaseKey, nov15, 2)
	// The lease alone, twice: the second does nothing.
	e.finish(t, nil, 0, 0, a.Lease)
	e.finish(t, nil, 0, 0, a.Lease)
	e.env.wantInFlight(t, adm.LeaseKey, nov15, 1)
	e.q.balance(t, adm.Budget.OrgID, nov15, 2, 2, map[string]float64{"stt": 20})

	// Both, at more than the estimate: settling is never refused.
	e.finish(t, b.Reservation, 3, 30, b.Lease)
	e.env.wantInFlight(t, adm.LeaseKey, nov15, 0)
	e.q.balance(t, adm.Budget.OrgID, nov15, 3, 3, map[string]float64{"stt": 30})

	// An invalid cost settles nothing.
	c := e.admit(t, adm, nov15)
	if err := e.a.Finish(e.ctx, c.Reservation, -1, 0, nil); tollgate.ErrorCode(err) != tollgate.CodeInternal {
		t.Errorf("Finish at -1 credits: %v; want an internal error", err)
	}
	e.q.balance(t, adm.Budget.OrgID, nov15, 5, 5, map[string]float64{"stt": 50})
	e.finish(t, c.Reservation, 0, 0, c.Lease)
	e.env.wantInFlight(t, adm.LeaseKey, nov15, 0)
	e.q.balance(t, adm.Budget.OrgID, nov15, 3, 3, map[string]float64{"stt": 30})
}

// testAdmitConcurrent races 200 admissions against a concurrency limit, a
// budget, or both: the winners hold exactly what they took, and the
// losers nothing.
func testAdmitConcurrent(t *testing.T, e *admitEnv) {
	for _, tt := range []struct {
		name        string
		concurrency int
		budget      tollgate.Budget
		want        int
		code        tollgate.Code // of the refusals
	}{
		{"Concurrency", 20, tollgate.Budget{CreditLimit: 1000}, 20, tollgate.CodeConcurrencyLimitExceeded},
		{"Budget", 100, tollgate.Budget{UsesFreeCredits: true, FreeCredits: 20}, 10, tollgate.CodeBillingRequired},
		{"CreditLimit", 100, tollgate.Budget{CreditLimit: 20}, 10, tollgate.CodeQuotaExceeded},
		{"Both", 10, tollgate.Budget{CreditLimit: 30}, 10, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			adm := admission(t)
			adm.Rate = tollgate.PerMinute(1000)
			b := tt.budget
			b.OrgID, b.Model, b.Unit = key(t, "org"), "stt", tollgate.UnitAudioSeconds
			adm.Budget = &b
			adm.Concurrency = tt.concurrency
			var (
				start   = make(chan struct{})
				wg      sync.WaitGroup
				mu      sync.Mutex
				held    []tollgate.Admitted
				refused atomic.Int64
			)
			for range 200 {
				wg.Go(func() {
					<-start
					got, err := e.a.Admit(e.ctx, adm, nov15)
					switch code := tollgate.ErrorCode(err); {
					case err == nil:
						mu.Lock()
						held = append(held, got)
						mu.Unlock()
					case code == tollgate.CodeConcurrencyLimitExceeded, code == tollgate.CodeBillingRequired,
						code == tollgate.CodeQuotaExceeded:
						if tt.code != "" && code != tt.code {
							t.Errorf("Admit: %v; want success or %s", err, tt.code)
						}
						if got.Reservation != nil || got.Lease != nil {
							t.Errorf("refused admission holds %+v, %+v", got.Reservation, got.Lease)
						}
						refused.Add(1)
					default:
						t.Errorf("Admit: %v", err)
					}
				})
			}
			close(start)
			wg.Wait()
			if len(held) != tt.want || len(held)+int(refused.Load()) != 200 {
				t.Fatalf("200 admissions: %d admitted, %d refused; want %d, %d", len(held), refused.Load(), tt.want, 200-tt.want)
			}
			n := float64(len(held))
			free := 0.0
			if b.UsesFreeCredits {
				free = 2 * n
			}
			e.env.wantInFlight(t, adm.LeaseKey, nov15, len(held))
			e.q.balance(t, b.OrgID, nov15, free, 2*n, map[string]float64{"stt": 20 * n})

			for _, got := range held {
				wg.Go(func() {
					if err := e.a.Finish(e.ctx, got.Reservation, 0, 0, got.Lease); err != nil {
						t.Errorf("Finish: %v", err)
					}
				})
			}
			wg.Wait()
			e.env.wantInFlight(t, adm.LeaseKey, nov15, 0)
			e.q.balance(t, b.OrgID, nov15, 0, 0, nil)
		})
	}
}

// testAdmitInvalidInput checks that invalid input is an internal error
// that holds nothing.
func testAdmitInvalidInput(t *testing.T, e *admitEnv) {
	for _, tt := range []struct {
		name   string
		change func(*tollgate.Admission)
	}{
		{"RateLimit", func(a *tollgate.Admission) { a.Rate = tollgate.RateLimit{Limit: 0, Period: time.Minute} }},
		{"NegativeCredits", func(a *tollgate.Admission) { a.Credits = -1 }},
		{"NaNUnits", func(a *tollgate.Admission) { a.Units = math.NaN() }},
		{"NegativeConcurrency", func(a *tollgate.Admission) { a.Concurrency = -1 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			adm := admission(t)
			tt.change(&adm)
			got, err := e.a.Admit(e.ctx, adm, nov15)
			if tollgate.ErrorCode(err) != tollgate.CodeInternal {
				t.Errorf("Admit: %v; want an internal error", err)
			}
			if got.Reservation != nil || got.Lease != nil || got.Rate.Allowed {
				t.Errorf("Admit with invalid input: %+v; want nothing taken", got)
			}
			e.env.wantInFlight(t, adm.LeaseKey, nov15, 0)
			e.q.balance(t, adm.Budget.OrgID, nov15, 0, 0, nil)
		})
	}
}
