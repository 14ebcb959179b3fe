package tollgate

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// The limiters' refusals, worded once so every backend answers alike.

// RateLimitExceeded is the error of a request over limit, which may be
// retried after retry.
func RateLimitExceeded(limit RateLimit, retry time.Duration) *Error {
	return &Error{
		Code:       CodeRateLimitExceeded,
		Message:    fmt.Sprintf("Rate limit of %d requests per %s exceeded.", limit.Limit, periodName(limit.Period)),
		RetryAfter: retry,
	}
}

// BillingRequired is the error of a reservation that found the free
// credits (freeCredits, of which used are spent) exhausted.
func BillingRequired(freeCredits, used float64) *Error {
	return &Error{
		Code:    CodeBillingRequired,
		Message: "Free credits are exhausted and billing is not active. Set up billing to continue.",
		Details: map[string]any{"free_credits": freeCredits, "used": used},
	}
}

// QuotaExceeded is the error of a reservation over a monthly limit of
// unit (used of limit spent), which resets at resetsAt; now is the
// reservation's time, for Retry-After.
func QuotaExceeded(unit Unit, used, limit float64, resetsAt, now time.Time) *Error {
	resets := resetsAt.UTC().Format(time.RFC3339)
	return &Error{
		Code: CodeQuotaExceeded,
		Message: fmt.Sprintf("Monthly limit reached: %s of %s %s used; resets at %s.",
			number(used), number(limit), unit, resets),
		Details: map[string]any{
			"unit":      string(unit),
			"used":      used,
			"limit":     limit,
			"resets_at": resets,
		},
		RetryAfter: resetsAt.Sub(now),
	}
}

// periodName names a rate period for a client-facing message.
func periodName(d time.Duration) string {
	switch d {
	case time.Second:
		return "second"
	case time.Minute:
		return "minute"
	case time.Hour:
		return "hour"
	case 24 * time.Hour:
		return "day"
	}
	return d.String()
}

// number formats a counter for a client-facing message: no exponent, and
// no float crumbs past the sixth decimal.
func number(v float64) string {
	return strconv.FormatFloat(math.Round(v*1e6)/1e6, 'f', -1, 64)
}
