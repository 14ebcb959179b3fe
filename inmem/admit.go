package inmem

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate/tollgate"
)

var _ tollgate.Admitter = (*Limiter)(nil)

// Admit takes a's rate token, reservation and lease; see
// tollgate.Admitter. It composes AllowRate, Reserve and Acquire, each
// atomic on its own: when the lease is refused, the reservation is
// released again before Admit returns. In between, a concurrent
// reservation on the same budget may be refused for a hold that is then
// given back; a budget is never exceeded.
//
// Invalid input (a rate limit, a cost, a negative concurrency) is an
// internal error before anything is taken.
func (l *Limiter) Admit(ctx context.Context, a tollgate.Admission, now time.Time) (tollgate.Admitted, error) {
	var got tollgate.Admitted
	if a.RateKey != "" {
		if _, _, err := gcra(a.Rate); err != nil {
			return got, err
		}
	}
	if a.Budget != nil && (!validCost(a.Credits) || !validCost(a.Units)) {
		return got, fmt.Errorf("inmem: invalid cost: %v credits, %v units", a.Credits, a.Units)
	}
	if a.LeaseKey != "" && a.Concurrency < 0 {
		return got, fmt.Errorf("inmem: invalid concurrency limit %d", a.Concurrency)
	}
	if a.RateKey != "" {
		d, err := l.AllowRate(ctx, a.RateKey, a.Rate, now)
		got.Rate = d
		if err != nil {
			return got, err
		}
	}
	if a.Budget != nil {
		r, err := l.Reserve(ctx, *a.Budget, a.Credits, a.Units, now)
		if err != nil {
			return got, err
		}
		got.Reservation = &r
	}
	if a.LeaseKey != "" {
		lease, err := l.Acquire(ctx, a.LeaseKey, a.Concurrency, now)
		if err != nil {
			if got.Reservation != nil {
				l.Settle(ctx, *got.Reservation, 0, 0) // cannot fail: the reservation is valid
				got.Reservation = nil
			}
			return got, err
		}
		got.Lease = &lease
	}
	return got, nil
}

// Finish settles r (when not nil) at credits and units and releases lease
// (when not nil); see tollgate.Admitter. The lease is released even when
// the settlement is invalid; the first error is returned.
func (l *Limiter) Finish(ctx context.Context, r *tollgate.Reservation, credits, units float64, lease *tollgate.Lease) error {
	var err error
	if r != nil {
		err = l.Settle(ctx, *r, credits, units)
	}
	if lease != nil {
		if rerr := l.Release(ctx, *lease); err == nil {
			err = rerr
		}
	}
	return err
}
