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
// atomic on its own (tollgate.AdmitSteps).
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
	return tollgate.AdmitSteps(ctx, l, l, a, now)
}

// Finish settles r (when not nil) at credits and units and releases lease
// (when not nil); see tollgate.Admitter. The lease is released even when
// the settlement is invalid; the first error is returned.
func (l *Limiter) Finish(ctx context.Context, r *tollgate.Reservation, credits, units float64, lease *tollgate.Lease) error {
	return tollgate.FinishSteps(ctx, l, l, r, credits, units, lease)
}
