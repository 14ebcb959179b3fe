package httpapi

import (
	"context"
	"time"

	"github.com/tollgate/tollgate"
)

// newAdmitter returns the Admitter over l and q: l itself when it is one
// (one round trip for Redis), else steps over l and q.
func newAdmitter(l tollgate.Limiter, q tollgate.Quota) tollgate.Admitter {
	if a, ok := l.(tollgate.Admitter); ok && (q == nil || q == tollgate.Quota(a)) {
		return a
	}
	return stepAdmitter{l, q}
}

// stepAdmitter admits with one call per step, for a Limiter that is not an
// Admitter (or a Quota that is not the limiter). Quota may be nil when no
// Admission carries a Budget.
type stepAdmitter struct {
	tollgate.Limiter
	tollgate.Quota
}

func (a stepAdmitter) Admit(ctx context.Context, adm tollgate.Admission, now time.Time) (tollgate.Admitted, error) {
	return tollgate.AdmitSteps(ctx, a.Limiter, a.Quota, adm, now)
}

func (a stepAdmitter) Finish(ctx context.Context, r *tollgate.Reservation, credits, units float64, lease *tollgate.Lease) error {
	return tollgate.FinishSteps(ctx, a.Limiter, a.Quota, r, credits, units, lease)
}

// admission is one request's hold on the limiter, from Admit to Finish.
type admission struct {
	s         *Server
	ctx       context.Context
	requestID string
	got       tollgate.Admitted
	// lease is the held lease, tracked for heartbeats (nil without one).
	lease *heldLease
	// unreserved, for a budget without limits, is the zero reservation
	// that Finish charges instead (nil otherwise).
	unreserved *tollgate.Reservation
	// credits and units are what Finish settles (0, 0 until the ledger
	// holds the request: a failed call releases its reservation).
	credits, units float64
}

// admit runs adm and counts the decisions. On success the caller must
// call finish exactly once, when the handler returns.
func (s *Server) admit(ctx context.Context, adm tollgate.Admission, now time.Time, timeout time.Duration, requestID string) (*admission, tollgate.Admitted, error) {
	got, err := s.adm.Admit(ctx, adm, now)
	s.countAdmission(adm, err)
	if err != nil {
		return nil, got, err
	}
	a := &admission{s: s, ctx: ctx, requestID: requestID, got: got}
	if got.Lease != nil {
		a.lease = &heldLease{s: s, ctx: ctx, lease: *got.Lease, since: now, tracked: timeout > s.LeaseTTL/3}
		if a.lease.tracked {
			s.held.add(a.lease)
		}
	}
	return a, got, nil
}

// countAdmission counts limiter decisions by step: the error says which
// step refused; the steps before it allowed.
func (s *Server) countAdmission(adm tollgate.Admission, err error) {
	code := tollgate.ErrorCode(err)
	if adm.RateKey != "" {
		switch {
		case err == nil || (code != tollgate.CodeRateLimitExceeded && code != tollgate.CodeInternal && code != tollgate.CodeOverloaded):
			s.counters.rateAllow.Inc()
		case code == tollgate.CodeRateLimitExceeded:
			s.counters.rateDeny.Inc()
		default:
			s.counters.rateErr.Inc()
		}
	}
	if adm.LeaseKey != "" {
		switch {
		case err == nil:
			s.counters.concAllow.Inc()
		case code == tollgate.CodeConcurrencyLimitExceeded:
			s.counters.concDeny.Inc()
		case code == tollgate.CodeInternal || code == tollgate.CodeOverloaded:
			s.counters.concErr.Inc()
		}
	}
}

// charge sets what finish settles: the request is in the ledger.
func (a *admission) charge(credits, units float64) { a.credits, a.units = credits, units }

// finish settles the reservation (releasing it when nothing was charged)
// and releases the lease, in one call. It runs once, when the handler
// returns: on completion, error, client cancel or disconnect.
func (a *admission) finish() {
	var lease *tollgate.Lease
	if a.lease != nil {
		if !a.lease.released.CompareAndSwap(false, true) {
			return
		}
		if a.lease.tracked {
			a.s.held.remove(a.lease)
		}
		lease = &a.lease.lease
	}
	res := a.got.Reservation
	if res == nil && a.unreserved != nil && (a.credits > 0 || a.units > 0) {
		res = a.unreserved
	}
	if res == nil && lease == nil {
		return
	}
	// The request context may be gone; settling and releasing must not be.
	ctx := context.WithoutCancel(a.ctx)
	if err := a.s.adm.Finish(ctx, res, a.credits, a.units, lease); err != nil {
		a.s.logger().Error("finish admission", "request_id", a.requestID, "err", err)
	}
}
