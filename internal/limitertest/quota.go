package limitertest

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/tollgate/tollgate"
)

// QuotaOptions describes the quota under test.
type QuotaOptions struct {
	// New returns the quota for one subtest. It may return the same quota,
	// or one on the same backend, every time: each subtest uses orgs of its
	// own. The subtests run one after another and one of them calls Load,
	// which replaces every counter, so the backend must not be shared with
	// tests running in parallel. Required.
	New func(t *testing.T) tollgate.Quota
}

// RunQuota runs the tollgate.Quota contract suite against the quotas
// opts.New returns.
//
// The contract, beyond the interface's documentation:
//   - Checks in order: free credits (billing_required, details
//     {free_credits, used}, no RetryAfter), the monthly credit limit, the
//     model's monthly unit limit (quota_exceeded, details {unit, used,
//     limit, resets_at} with numbers as float64 and resets_at in RFC 3339
//     UTC, RetryAfter until the next month starts). The first that fails
//     is reported; a refused reservation holds nothing.
//   - used + x > limit fails, with 1e-9 of slack for float sums; an amount
//     of zero fails only once the limit is reached (used >= limit).
//   - Months are calendar months in UTC. A reservation is held in the
//     month it was made in, and Settle corrects that month even after it
//     has ended. Free credits are lifetime and never reset.
//   - Settle corrects by actual - reserved; no counter goes below zero.
//   - Load replaces every counter; free credits are summed over periods.
//
// The instants are fixed, in late 2026: a backend must take time from the
// calls, never from its own clock (key expiries included).
func RunQuota(t *testing.T, opts QuotaOptions) {
	if opts.New == nil {
		t.Fatal("limitertest: QuotaOptions.New is nil")
	}
	for _, tt := range []struct {
		name string
		test func(*testing.T, *quotaEnv)
	}{
		{"FreeCredits", testQuotaFreeCredits},
		{"FloatSums", testQuotaFloatSums},
		{"CreditLimit", testQuotaCreditLimit},
		{"UnitLimit", testQuotaUnitLimit},
		{"CheckOrder", testQuotaCheckOrder},
		{"ZeroCost", testQuotaZeroCost},
		{"NoLimits", testQuotaNoLimits},
		{"Overshoot", testQuotaOvershoot},
		{"Settle", testQuotaSettle},
		{"Release", testQuotaRelease},
		{"SettleNeverBelowZero", testQuotaSettleNeverBelowZero},
		{"MonthBoundary", testQuotaMonthBoundary},
		{"Load", testQuotaLoad},
		{"RefusalHoldsNothing", testQuotaRefusalHoldsNothing},
		{"OrgsIndependent", testQuotaOrgsIndependent},
		{"ModelsIndependent", testQuotaModelsIndependent},
		{"BalanceUnknownOrg", testQuotaBalanceUnknownOrg},
		{"InvalidCost", testQuotaInvalidCost},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.test(t, &quotaEnv{ctx: t.Context(), q: opts.New(t)})
		})
	}
}

// quotaEnv is one subtest's quota.
type quotaEnv struct {
	ctx context.Context
	q   tollgate.Quota
}

// date returns an instant in UTC.
func date(year int, month time.Month, day, hour, min, sec, nsec int) time.Time {
	return time.Date(year, month, day, hour, min, sec, nsec, time.UTC)
}

// The instants the quota tests use.
var (
	nov15    = date(2026, 11, 15, 12, 0, 0, 0)
	novLast  = date(2026, 11, 30, 23, 59, 59, 900_000_000) // 23:59:59.9
	dec1     = date(2026, 12, 1, 0, 0, 0, 0)
	resetDec = "2026-12-01T00:00:00Z"
)

// floats compares counters with the slack the quota allows.
var floats = cmpopts.EquateApprox(0, 1e-9)

// reserve holds credits and units for b at now, which must be granted,
// and checks the reservation.
func (e *quotaEnv) reserve(t *testing.T, b tollgate.Budget, credits, units float64, now time.Time) tollgate.Reservation {
	t.Helper()
	r, err := e.q.Reserve(e.ctx, b, credits, units, now)
	if err != nil {
		t.Fatalf("Reserve(%v credits, %v units) at %v: %v", credits, units, now, err)
	}
	period, _, _ := tollgate.Period(now)
	want := tollgate.Reservation{OrgID: b.OrgID, Model: b.Model, Period: period,
		Credits: credits, Units: units, Free: b.UsesFreeCredits}
	if diff := cmp.Diff(r, want); diff != "" {
		t.Errorf("Reserve(%v credits, %v units) at %v: reservation mismatch (-got +want):\n%s", credits, units, now, diff)
	}
	return r
}

// refuse tries to hold credits and units for b at now, which must be
// refused with code.
func (e *quotaEnv) refuse(t *testing.T, b tollgate.Budget, credits, units float64, now time.Time, code tollgate.Code) *tollgate.Error {
	t.Helper()
	r, err := e.q.Reserve(e.ctx, b, credits, units, now)
	if err == nil {
		t.Fatalf("Reserve(%v credits, %v units) at %v: granted %+v; want %s", credits, units, now, r, code)
	}
	if r != (tollgate.Reservation{}) {
		t.Errorf("Reserve refused with reservation %+v; want the zero value", r)
	}
	return catalogError(t, err, code)
}

// billingRequired checks that credits for b at now are refused with
// billing_required, free credits used being used.
func (e *quotaEnv) billingRequired(t *testing.T, b tollgate.Budget, credits, units float64, now time.Time, used float64) {
	t.Helper()
	ce := e.refuse(t, b, credits, units, now, tollgate.CodeBillingRequired)
	want := map[string]any{"free_credits": b.FreeCredits, "used": used}
	if diff := cmp.Diff(ce.Details, want, floats); diff != "" {
		t.Errorf("billing_required details mismatch (-got +want):\n%s", diff)
	}
	if ce.RetryAfter != 0 {
		t.Errorf("billing_required RetryAfter %v; want 0", ce.RetryAfter)
	}
	if want := "Free credits are exhausted and billing is not active. Set up billing to continue."; ce.Message != want {
		t.Errorf("billing_required message %q; want %q", ce.Message, want)
	}
}

// quotaExceeded checks that credits and units for b at now are refused
// with quota_exceeded on unit, used of limit, until the month's end.
func (e *quotaEnv) quotaExceeded(t *testing.T, b tollgate.Budget, credits, units float64, now time.Time, unit tollgate.Unit, used, limit float64) *tollgate.Error {
	t.Helper()
	ce := e.refuse(t, b, credits, units, now, tollgate.CodeQuotaExceeded)
	_, _, end := tollgate.Period(now)
	want := map[string]any{
		"unit":      string(unit),
		"used":      used,
		"limit":     limit,
		"resets_at": end.Format(time.RFC3339),
	}
	if diff := cmp.Diff(ce.Details, want, floats); diff != "" {
		t.Errorf("quota_exceeded at %v: details mismatch (-got +want):\n%s", now, diff)
	}
	if ce.RetryAfter != end.Sub(now) {
		t.Errorf("quota_exceeded at %v: RetryAfter %v; want %v, until %v", now, ce.RetryAfter, end.Sub(now), end)
	}
	return ce
}

func (e *quotaEnv) settle(t *testing.T, r tollgate.Reservation, credits, units float64) {
	t.Helper()
	if err := e.q.Settle(e.ctx, r, credits, units); err != nil {
		t.Fatalf("Settle(%+v, %v credits, %v units): %v", r, credits, units, err)
	}
}

// balance checks org's balance at now. units lists the models with units
// in the month; a backend may also report models at zero.
func (e *quotaEnv) balance(t *testing.T, org string, now time.Time, free, credits float64, units map[string]float64) {
	t.Helper()
	got, err := e.q.Balance(e.ctx, org, now)
	if err != nil {
		t.Fatalf("Balance at %v: %v", now, err)
	}
	for model, u := range got.MonthUnits {
		if u == 0 {
			delete(got.MonthUnits, model)
		}
	}
	period, _, end := tollgate.Period(now)
	want := tollgate.Balance{Period: period, ResetsAt: end, FreeCreditsUsed: free, MonthCredits: credits, MonthUnits: units}
	if diff := cmp.Diff(got, want, floats, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Balance at %v: mismatch (-got +want):\n%s", now, diff)
	}
}

// concurrently makes n reservations of credits and units for b at once at
// now and returns those granted; the others must be refused with code.
func (e *quotaEnv) concurrently(t *testing.T, b tollgate.Budget, credits, units float64, now time.Time, n int, code tollgate.Code) []tollgate.Reservation {
	t.Helper()
	var (
		start   = make(chan struct{})
		wg      sync.WaitGroup
		mu      sync.Mutex
		held    []tollgate.Reservation
		refused atomic.Int64
	)
	for range n {
		wg.Go(func() {
			<-start
			r, err := e.q.Reserve(e.ctx, b, credits, units, now)
			switch tollgate.ErrorCode(err) {
			case "":
				mu.Lock()
				held = append(held, r)
				mu.Unlock()
			case code:
				refused.Add(1)
			default:
				t.Errorf("Reserve: %v; want success or %s", err, code)
			}
		})
	}
	close(start)
	wg.Wait()
	if got := len(held) + int(refused.Load()); got != n && !t.Failed() {
		t.Errorf("%d of %d goroutines decided", got, n)
	}
	return held
}

func testQuotaFreeCredits(t *testing.T, e *quotaEnv) {
	org := key(t, "org")
	// Free credits for exactly 10 requests.
	b := tollgate.Budget{OrgID: org, Model: "tts", Unit: tollgate.UnitRequests, UsesFreeCredits: true, FreeCredits: 15}
	var held []tollgate.Reservation
	for range 10 {
		held = append(held, e.reserve(t, b, 1.5, 1, nov15))
	}
	e.billingRequired(t, b, 1.5, 1, nov15, 15)
	e.billingRequired(t, b, 0.5, 1, nov15, 15)
	e.balance(t, org, nov15, 15, 15, map[string]float64{"tts": 10})

	// A released request makes room for one more, and only one.
	e.settle(t, held[0], 0, 0)
	e.balance(t, org, nov15, 13.5, 13.5, map[string]float64{"tts": 9})
	e.reserve(t, b, 1.5, 1, nov15)
	e.billingRequired(t, b, 1.5, 1, nov15, 15)

	// A request that does not fit whole is refused whole.
	org2 := key(t, "partial")
	b2 := tollgate.Budget{OrgID: org2, Model: "tts", UsesFreeCredits: true, FreeCredits: 10}
	e.reserve(t, b2, 6, 1, nov15)
	e.billingRequired(t, b2, 6, 1, nov15, 6)
	e.reserve(t, b2, 4, 1, nov15)
	e.balance(t, org2, nov15, 10, 10, map[string]float64{"tts": 2})

	// Once billing is active the org no longer draws on its free credits.
	b.UsesFreeCredits = false
	e.reserve(t, b, 1.5, 1, nov15)
	e.balance(t, org, nov15, 15, 16.5, map[string]float64{"tts": 11})
}

// testQuotaFloatSums checks the slack for sums that float arithmetic
// puts a hair over the limit: 0.1+0.2 is 0.30000000000000004.
func testQuotaFloatSums(t *testing.T, e *quotaEnv) {
	org := key(t, "free")
	b := tollgate.Budget{OrgID: org, Model: "m", UsesFreeCredits: true, FreeCredits: 0.3}
	e.reserve(t, b, 0.1, 1, nov15)
	e.reserve(t, b, 0.2, 1, nov15)
	e.billingRequired(t, b, 0.1, 1, nov15, 0.3)

	org = key(t, "limit")
	b = tollgate.Budget{OrgID: org, Model: "m", CreditLimit: 1}
	var held []tollgate.Reservation
	for range 10 {
		held = append(held, e.reserve(t, b, 0.1, 1, nov15))
	}
	e.quotaExceeded(t, b, 0.1, 1, nov15, tollgate.UnitCredits, 1, 1)
	for _, r := range held {
		e.settle(t, r, 0, 0)
	}
	e.balance(t, org, nov15, 0, 0, nil)
}

func testQuotaCreditLimit(t *testing.T, e *quotaEnv) {
	org := key(t, "org")
	b := tollgate.Budget{OrgID: org, Model: "stt", Unit: tollgate.UnitAudioSeconds, CreditLimit: 100}
	e.reserve(t, b, 60, 600, nov15)
	e.reserve(t, b, 39, 390, nov15)

	ce := e.quotaExceeded(t, b, 1.5, 15, nov15, tollgate.UnitCredits, 99, 100)
	if want := 15*24*time.Hour + 12*time.Hour; ce.RetryAfter != want || tollgate.RetryAfterSeconds(ce.RetryAfter) != 1_339_200 {
		t.Errorf("RetryAfter on Nov 15 at noon: %v; want %v (1339200 s)", ce.RetryAfter, want)
	}
	if ce.Details["resets_at"] != resetDec {
		t.Errorf("resets_at %v; want %s", ce.Details["resets_at"], resetDec)
	}
	if want := "Monthly limit reached: 99 of 100 credits used; resets at 2026-12-01T00:00:00Z."; ce.Message != want {
		t.Errorf("message %q; want %q", ce.Message, want)
	}

	// Exactly the limit fits.
	late := date(2026, 11, 30, 23, 0, 0, 0)
	e.reserve(t, b, 1, 10, late)
	ce = e.quotaExceeded(t, b, 0.5, 5, late, tollgate.UnitCredits, 100, 100)
	if ce.RetryAfter != time.Hour {
		t.Errorf("RetryAfter at 23:00 on Nov 30: %v; want 1h", ce.RetryAfter)
	}
	e.balance(t, org, late, 0, 100, map[string]float64{"stt": 1000})
}

func testQuotaUnitLimit(t *testing.T, e *quotaEnv) {
	org := key(t, "org")
	// Ten hours of audio a month.
	b := tollgate.Budget{OrgID: org, Model: "stt", Unit: tollgate.UnitAudioSeconds, UnitLimit: 36000}
	e.reserve(t, b, 300, 30000, nov15)
	e.reserve(t, b, 60, 6000, nov15)

	at := date(2026, 11, 30, 23, 59, 59, 500_000_000)
	ce := e.quotaExceeded(t, b, 0.005, 0.5, at, tollgate.UnitAudioSeconds, 36000, 36000)
	if ce.RetryAfter != 500*time.Millisecond || tollgate.RetryAfterSeconds(ce.RetryAfter) != 1 {
		t.Errorf("RetryAfter at 23:59:59.5: %v; want 500ms (1 s)", ce.RetryAfter)
	}
	if want := "Monthly limit reached: 36000 of 36000 audio_seconds used; resets at 2026-12-01T00:00:00Z."; ce.Message != want {
		t.Errorf("message %q; want %q", ce.Message, want)
	}
	e.balance(t, org, at, 0, 360, map[string]float64{"stt": 36000})
}

// testQuotaCheckOrder checks which refusal wins when several limits are
// reached: free credits, then the credit limit, then the unit limit.
func testQuotaCheckOrder(t *testing.T, e *quotaEnv) {
	org := key(t, "org")
	b := tollgate.Budget{OrgID: org, Model: "m", Unit: tollgate.UnitRequests,
		UsesFreeCredits: true, FreeCredits: 100, CreditLimit: 10, UnitLimit: 4}
	for range 4 {
		e.reserve(t, b, 2.5, 1, nov15)
	}
	e.quotaExceeded(t, b, 2.5, 1, nov15, tollgate.UnitCredits, 10, 10)

	b.FreeCredits = 10
	e.billingRequired(t, b, 2.5, 1, nov15, 10)

	b.FreeCredits, b.CreditLimit = 100, 0
	e.quotaExceeded(t, b, 2.5, 1, nov15, tollgate.UnitRequests, 4, 4)

	b.UnitLimit = 0
	e.reserve(t, b, 2.5, 1, nov15)
	e.balance(t, org, nov15, 12.5, 12.5, map[string]float64{"m": 5})
}

// testQuotaZeroCost checks that a reservation of nothing passes a limit
// until the limit is reached, and not after.
func testQuotaZeroCost(t *testing.T, e *quotaEnv) {
	org := key(t, "credits")
	b := tollgate.Budget{OrgID: org, Model: "m", CreditLimit: 10}
	e.reserve(t, b, 9.5, 1, nov15)
	e.reserve(t, b, 0, 0, nov15)
	e.quotaExceeded(t, b, 1, 1, nov15, tollgate.UnitCredits, 9.5, 10)
	e.reserve(t, b, 0.5, 1, nov15)
	e.quotaExceeded(t, b, 0, 0, nov15, tollgate.UnitCredits, 10, 10)
	// A reached credit limit covers requests that cost no credits too.
	e.quotaExceeded(t, b, 0, 1, nov15, tollgate.UnitCredits, 10, 10)

	org = key(t, "units")
	b = tollgate.Budget{OrgID: org, Model: "m", Unit: tollgate.UnitCharacters, UnitLimit: 100}
	e.reserve(t, b, 0, 100, nov15)
	e.quotaExceeded(t, b, 0, 0, nov15, tollgate.UnitCharacters, 100, 100)

	org = key(t, "free")
	b = tollgate.Budget{OrgID: org, Model: "m", UsesFreeCredits: true, FreeCredits: 1}
	e.reserve(t, b, 0, 1, nov15)
	e.reserve(t, b, 1, 1, nov15)
	e.billingRequired(t, b, 0, 1, nov15, 1)

	// No free grant at all: billing is required from the first request.
	org = key(t, "nofree")
	b = tollgate.Budget{OrgID: org, Model: "m", UsesFreeCredits: true}
	e.billingRequired(t, b, 0, 1, nov15, 0)
	e.billingRequired(t, b, 1, 1, nov15, 0)
}

func testQuotaNoLimits(t *testing.T, e *quotaEnv) {
	org := key(t, "org")
	b := tollgate.Budget{OrgID: org, Model: "m"}
	e.reserve(t, b, 1e9, 1e9, nov15)
	e.reserve(t, b, 0, 0, nov15)
	e.reserve(t, b, 1e9, 1e9, nov15)
	e.balance(t, org, nov15, 0, 2e9, map[string]float64{"m": 2e9})
}

// testQuotaOvershoot races 200 reservations against budgets for 10: the
// check and the charge are one atomic step.
func testQuotaOvershoot(t *testing.T, e *quotaEnv) {
	for _, tt := range []struct {
		name    string
		budget  tollgate.Budget
		credits float64
		code    tollgate.Code
	}{
		{"FreeCredits", tollgate.Budget{UsesFreeCredits: true, FreeCredits: 15}, 1.5, tollgate.CodeBillingRequired},
		{"CreditLimit", tollgate.Budget{CreditLimit: 1}, 0.1, tollgate.CodeQuotaExceeded},
		{"UnitLimit", tollgate.Budget{Unit: tollgate.UnitRequests, UnitLimit: 10}, 2, tollgate.CodeQuotaExceeded},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.budget
			b.OrgID, b.Model = key(t, "org"), "m"
			held := e.concurrently(t, b, tt.credits, 1, nov15, 200, tt.code)
			if len(held) != 10 {
				t.Fatalf("200 goroutines on a budget for 10: %d granted; want 10", len(held))
			}
			free := 0.0
			if b.UsesFreeCredits {
				free = 10 * tt.credits
			}
			e.balance(t, b.OrgID, nov15, free, 10*tt.credits, map[string]float64{"m": 10})

			// Released at once, everything comes back.
			var wg sync.WaitGroup
			for _, r := range held {
				wg.Go(func() {
					if err := e.q.Settle(e.ctx, r, 0, 0); err != nil {
						t.Errorf("Settle: %v", err)
					}
				})
			}
			wg.Wait()
			e.balance(t, b.OrgID, nov15, 0, 0, nil)
			if got := len(e.concurrently(t, b, tt.credits, 1, nov15, 200, tt.code)); got != 10 {
				t.Errorf("after releasing: %d granted; want 10", got)
			}
		})
	}
}

func testQuotaSettle(t *testing.T, e *quotaEnv) {
	org := key(t, "org")
	b := tollgate.Budget{OrgID: org, Model: "stt", Unit: tollgate.UnitAudioSeconds,
		UsesFreeCredits: true, FreeCredits: 50, CreditLimit: 10, UnitLimit: 100}
	r1 := e.reserve(t, b, 3, 30, nov15)
	r2 := e.reserve(t, b, 3, 30, nov15)
	e.balance(t, org, nov15, 6, 6, map[string]float64{"stt": 60})

	// The actual cost is larger than the estimate…
	e.settle(t, r1, 4.5, 45)
	e.balance(t, org, nov15, 7.5, 7.5, map[string]float64{"stt": 75})
	// …or smaller.
	e.settle(t, r2, 1.5, 15)
	e.balance(t, org, nov15, 6, 6, map[string]float64{"stt": 60})

	// The room is what settling left.
	r3 := e.reserve(t, b, 4, 40, nov15)
	e.quotaExceeded(t, b, 0.5, 1, nov15, tollgate.UnitCredits, 10, 10)

	// Settling is never refused, even past a limit; the next reservation
	// sees the overrun.
	e.settle(t, r3, 6, 60)
	e.balance(t, org, nov15, 12, 12, map[string]float64{"stt": 120})
	e.quotaExceeded(t, b, 0, 0, nov15, tollgate.UnitCredits, 12, 10)
	b.CreditLimit = 0
	e.quotaExceeded(t, b, 1, 1, nov15, tollgate.UnitAudioSeconds, 120, 100)

	// Credits paid for (Free false) leave the free credits alone.
	b.UsesFreeCredits, b.UnitLimit = false, 0
	r4 := e.reserve(t, b, 2, 20, nov15)
	e.settle(t, r4, 3, 30)
	e.balance(t, org, nov15, 12, 15, map[string]float64{"stt": 150})
}

func testQuotaRelease(t *testing.T, e *quotaEnv) {
	org := key(t, "org")
	b := tollgate.Budget{OrgID: org, Model: "m", UsesFreeCredits: true, FreeCredits: 100, CreditLimit: 3}
	held := []tollgate.Reservation{
		e.reserve(t, b, 1, 1, nov15),
		e.reserve(t, b, 1, 1, nov15),
		e.reserve(t, b, 1, 1, nov15),
	}
	e.quotaExceeded(t, b, 1, 1, nov15, tollgate.UnitCredits, 3, 3)
	e.settle(t, held[1], 0, 0)
	e.balance(t, org, nov15, 2, 2, map[string]float64{"m": 2})
	held[1] = e.reserve(t, b, 1, 1, nov15)
	e.quotaExceeded(t, b, 1, 1, nov15, tollgate.UnitCredits, 3, 3)
	for _, r := range held {
		e.settle(t, r, 0, 0)
	}
	e.balance(t, org, nov15, 0, 0, nil)
}

func testQuotaSettleNeverBelowZero(t *testing.T, e *quotaEnv) {
	org := key(t, "org")
	b := tollgate.Budget{OrgID: org, Model: "m", UsesFreeCredits: true, FreeCredits: 10}
	r := e.reserve(t, b, 1, 1, nov15)
	// A reservation bigger than anything held (the caller's bug) takes the
	// counters to zero, not below.
	big := r
	big.Credits, big.Units = 5, 5
	e.settle(t, big, 0, 0)
	e.balance(t, org, nov15, 0, 0, nil)
	e.reserve(t, b, 1, 1, nov15)
	e.balance(t, org, nov15, 1, 1, map[string]float64{"m": 1})
}

// testQuotaMonthBoundary reserves in the last tenth of a second of
// November and settles after midnight: the reservation stays in November,
// and December starts fresh, once.
func testQuotaMonthBoundary(t *testing.T, e *quotaEnv) {
	org := key(t, "org")
	b := tollgate.Budget{OrgID: org, Model: "stt", Unit: tollgate.UnitRequests,
		UsesFreeCredits: true, FreeCredits: 1000, CreditLimit: 20, UnitLimit: 10}
	late := e.reserve(t, b, 20, 10, novLast)
	if late.Period != "2026-11" {
		t.Fatalf("reservation at %v held in %q; want 2026-11", novLast, late.Period)
	}
	ce := e.quotaExceeded(t, b, 1, 1, novLast.Add(50*time.Millisecond), tollgate.UnitCredits, 20, 20)
	if ce.RetryAfter != 50*time.Millisecond || ce.Details["resets_at"] != resetDec {
		t.Errorf("at 23:59:59.95: RetryAfter %v, resets_at %v; want 50ms, %s", ce.RetryAfter, ce.Details["resets_at"], resetDec)
	}
	e.balance(t, org, novLast, 20, 20, map[string]float64{"stt": 10})
	// Free credits are lifetime: December still counts November's.
	e.balance(t, org, dec1, 20, 0, nil)

	// At midnight the limits reset.
	r := e.reserve(t, b, 2, 1, dec1)
	if r.Period != "2026-12" {
		t.Errorf("reservation at %v held in %q; want 2026-12", dec1, r.Period)
	}
	// Settling after midnight corrects November, not December.
	e.settle(t, late, 16, 8)
	e.balance(t, org, novLast, 18, 16, map[string]float64{"stt": 8})
	e.balance(t, org, dec1.Add(time.Second), 18, 2, map[string]float64{"stt": 1})

	// December's limits hold all month: they reset once, at its start.
	e.reserve(t, b, 18, 9, date(2026, 12, 2, 0, 0, 0, 0))
	e.quotaExceeded(t, b, 1, 1, date(2026, 12, 15, 0, 0, 0, 0), tollgate.UnitCredits, 20, 20)
	b.CreditLimit = 0
	ce = e.quotaExceeded(t, b, 1, 1, date(2026, 12, 31, 23, 59, 59, 999_999_999), tollgate.UnitRequests, 10, 10)
	if ce.RetryAfter != time.Nanosecond || ce.Details["resets_at"] != "2027-01-01T00:00:00Z" {
		t.Errorf("at the last instant of 2026: RetryAfter %v, resets_at %v; want 1ns, 2027-01-01T00:00:00Z", ce.RetryAfter, ce.Details["resets_at"])
	}
	e.balance(t, org, novLast, 36, 16, map[string]float64{"stt": 8})
	e.balance(t, org, dec1, 36, 20, map[string]float64{"stt": 10})

	// Months are UTC: 20:00 on Dec 31 at UTC-5 is January.
	est := time.FixedZone("EST", -5*60*60)
	jan := time.Date(2026, 12, 31, 20, 0, 0, 0, est)
	if r := e.reserve(t, b, 3, 1, jan); r.Period != "2027-01" {
		t.Errorf("reservation at %v held in %q; want 2027-01", jan, r.Period)
	}
	e.balance(t, org, jan, 39, 3, map[string]float64{"stt": 1})
}

func testQuotaLoad(t *testing.T, e *quotaEnv) {
	a, b, c := key(t, "a"), key(t, "b"), key(t, "c")
	e.reserve(t, tollgate.Budget{OrgID: a, Model: "tts", UsesFreeCredits: true, FreeCredits: 100}, 50, 50, nov15)
	e.reserve(t, tollgate.Budget{OrgID: c, Model: "tts", UsesFreeCredits: true, FreeCredits: 100}, 7, 7, nov15)
	totals := []tollgate.UsageTotal{
		{OrgID: a, Model: "tts", Period: "2026-10", Units: 100, Credits: 10, FreeCredits: 10},
		{OrgID: a, Model: "tts", Period: "2026-11", Units: 50, Credits: 5, FreeCredits: 2},
		{OrgID: a, Model: "stt", Period: "2026-11", Units: 600, Credits: 6},
		{OrgID: b, Model: "tts", Period: "2026-11", Units: 1, Credits: 1, FreeCredits: 1},
	}
	load := func(totals []tollgate.UsageTotal) {
		t.Helper()
		if err := e.q.Load(e.ctx, totals); err != nil {
			t.Fatalf("Load: %v", err)
		}
	}
	load(totals)
	load(totals) // replaces, never adds
	oct := date(2026, 10, 20, 0, 0, 0, 0)
	e.balance(t, a, oct, 12, 10, map[string]float64{"tts": 100})
	e.balance(t, a, nov15, 12, 11, map[string]float64{"tts": 50, "stt": 600})
	e.balance(t, b, nov15, 1, 1, map[string]float64{"tts": 1})
	// An org the ledger does not mention starts from zero.
	e.balance(t, c, nov15, 0, 0, nil)

	// Reservations are checked against the loaded counters.
	bud := tollgate.Budget{OrgID: a, Model: "tts", UsesFreeCredits: true, FreeCredits: 13, CreditLimit: 12}
	e.reserve(t, bud, 1, 1, nov15)
	e.billingRequired(t, bud, 0.5, 1, nov15, 13)
	bud.UsesFreeCredits = false
	e.quotaExceeded(t, bud, 0.5, 1, nov15, tollgate.UnitCredits, 12, 12)

	load(nil)
	e.balance(t, a, nov15, 0, 0, nil)
	e.balance(t, b, nov15, 0, 0, nil)
}

// testQuotaRefusalHoldsNothing refuses reservations that pass some checks
// and fail a later one: nothing of them is held.
func testQuotaRefusalHoldsNothing(t *testing.T, e *quotaEnv) {
	org := key(t, "org")
	b := tollgate.Budget{OrgID: org, Model: "m", Unit: tollgate.UnitRequests,
		UsesFreeCredits: true, FreeCredits: 8, CreditLimit: 10, UnitLimit: 5}
	e.reserve(t, b, 4, 4, nov15)
	e.quotaExceeded(t, b, 2, 2, nov15, tollgate.UnitRequests, 4, 5)
	e.balance(t, org, nov15, 4, 4, map[string]float64{"m": 4})
	e.billingRequired(t, b, 5, 1, nov15, 4)
	e.balance(t, org, nov15, 4, 4, map[string]float64{"m": 4})
	b.FreeCredits, b.CreditLimit = 100, 5
	e.quotaExceeded(t, b, 2, 1, nov15, tollgate.UnitCredits, 4, 5)
	e.balance(t, org, nov15, 4, 4, map[string]float64{"m": 4})
	// What was refused left room for exactly what fits.
	e.reserve(t, b, 1, 1, nov15)
	e.balance(t, org, nov15, 5, 5, map[string]float64{"m": 5})
}

func testQuotaOrgsIndependent(t *testing.T, e *quotaEnv) {
	a, b := key(t, "a"), key(t, "b")
	ba := tollgate.Budget{OrgID: a, Model: "m", UsesFreeCredits: true, FreeCredits: 2, CreditLimit: 2, UnitLimit: 2}
	bb := ba
	bb.OrgID = b
	e.reserve(t, ba, 2, 2, nov15)
	e.billingRequired(t, ba, 1, 1, nov15, 2)
	e.reserve(t, bb, 1, 1, nov15)
	e.reserve(t, bb, 1, 1, nov15)
	e.billingRequired(t, bb, 1, 1, nov15, 2)
	e.balance(t, a, nov15, 2, 2, map[string]float64{"m": 2})
	e.balance(t, b, nov15, 2, 2, map[string]float64{"m": 2})
}

// testQuotaModelsIndependent checks that unit limits are per model and
// the credit limit is per org.
func testQuotaModelsIndependent(t *testing.T, e *quotaEnv) {
	org := key(t, "org")
	tts := tollgate.Budget{OrgID: org, Model: "tts", Unit: tollgate.UnitCharacters, CreditLimit: 5, UnitLimit: 2000}
	stt := tollgate.Budget{OrgID: org, Model: "stt", Unit: tollgate.UnitAudioSeconds, CreditLimit: 5, UnitLimit: 60}
	e.reserve(t, tts, 2, 1000, nov15)
	e.reserve(t, tts, 2, 1000, nov15)
	e.quotaExceeded(t, tts, 0.5, 1, nov15, tollgate.UnitCharacters, 2000, 2000)
	e.reserve(t, stt, 0.5, 30, nov15)
	e.quotaExceeded(t, stt, 1, 30, nov15, tollgate.UnitCredits, 4.5, 5)
	e.reserve(t, stt, 0.5, 30, nov15)
	e.quotaExceeded(t, stt, 0, 1, nov15, tollgate.UnitCredits, 5, 5)
	e.balance(t, org, nov15, 0, 5, map[string]float64{"tts": 2000, "stt": 60})
}

func testQuotaBalanceUnknownOrg(t *testing.T, e *quotaEnv) {
	e.balance(t, key(t, "org"), nov15, 0, 0, nil)
	bal, err := e.q.Balance(e.ctx, key(t, "org"), dec1.Add(-time.Nanosecond))
	if err != nil {
		t.Fatal(err)
	}
	if bal.Period != "2026-11" || bal.ResetsAt.Format(time.RFC3339) != resetDec {
		t.Errorf("Balance at the last instant of November: period %q, resets at %v; want 2026-11, %s", bal.Period, bal.ResetsAt, resetDec)
	}
}

// testQuotaInvalidCost checks that a negative or non-finite cost is an
// internal error that holds nothing.
func testQuotaInvalidCost(t *testing.T, e *quotaEnv) {
	org := key(t, "org")
	b := tollgate.Budget{OrgID: org, Model: "m", UsesFreeCredits: true, FreeCredits: 10}
	r := e.reserve(t, b, 1, 1, nov15)
	for _, x := range []float64{-1, math.NaN(), math.Inf(1), math.Inf(-1)} {
		for _, c := range [][2]float64{{x, 1}, {1, x}} {
			if _, err := e.q.Reserve(e.ctx, b, c[0], c[1], nov15); tollgate.ErrorCode(err) != tollgate.CodeInternal {
				t.Errorf("Reserve(%v credits, %v units): %v; want an internal error", c[0], c[1], err)
			}
			if err := e.q.Settle(e.ctx, r, c[0], c[1]); tollgate.ErrorCode(err) != tollgate.CodeInternal {
				t.Errorf("Settle(%v credits, %v units): %v; want an internal error", c[0], c[1], err)
			}
		}
	}
	e.balance(t, org, nov15, 1, 1, map[string]float64{"m": 1})
}
