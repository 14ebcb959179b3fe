package tollgate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Unit is what a model meters.
type Unit string

// The meters.
const (
	UnitRequests     Unit = "requests"
	UnitAudioSeconds Unit = "audio_seconds"
	UnitCharacters   Unit = "characters"
	// UnitCredits is the unit of the monthly credit limit (quota details).
	UnitCredits Unit = "credits"
)

// ValidUnit reports whether u is a model meter.
func ValidUnit(u Unit) bool {
	return u == UnitRequests || u == UnitAudioSeconds || u == UnitCharacters
}

// Meter says how a model's usage is counted and priced.
type Meter struct {
	// Unit metered (zero value: requests).
	Unit Unit
	// Price is credits per unit (0: free).
	Price float64
	// TrustUpstream takes the actual quantity from the upstream's
	// Tollgate-Usage response header (e.g. "audio_seconds=12.5") when
	// present; the estimate from the input is reserved before the call.
	TrustUpstream bool
}

// UnitOrDefault returns the meter's unit.
func (m Meter) UnitOrDefault() Unit {
	if m.Unit == "" {
		return UnitRequests
	}
	return m.Unit
}

// Quantity returns the units a request's input measures.
func (m Meter) Quantity(f Facts) float64 {
	switch m.UnitOrDefault() {
	case UnitAudioSeconds:
		return f.AudioSeconds
	case UnitCharacters:
		return float64(f.Characters)
	}
	return 1
}

// UsageHeader is the upstream response header a trusted model reports its
// actual usage in.
const UsageHeader = "Tollgate-Usage"

// Billing is an org's billing settings.
type Billing struct {
	// Active is true once the org has set up billing.
	Active bool
	// MonthlyCreditLimit is the org's own cap on credits per month
	// (0: the plan's cap); at most the plan's MonthlyCreditCap.
	MonthlyCreditLimit float64
	// MonthlyLimits caps units per model per month, overriding the plan's.
	MonthlyLimits map[string]float64
}

// Period returns the calendar month (UTC) that t falls in, as "2006-01",
// with its start and the next month's start.
func Period(t time.Time) (name string, start, end time.Time) {
	t = t.UTC()
	start = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	end = start.AddDate(0, 1, 0)
	return start.Format("2006-01"), start, end
}

// Budget is everything a reservation is checked against for one org ×
// model. It is built from the org, its plan and the model's meter.
type Budget struct {
	OrgID string
	Model string
	Unit  Unit
	// UsesFreeCredits: the plan requires billing and the org has none, so
	// charges draw on the free credits (none left: billing_required).
	UsesFreeCredits bool
	FreeCredits     float64
	// CreditLimit caps credits per month (0: none).
	CreditLimit float64
	// UnitLimit caps the model's units per month (0: none).
	UnitLimit float64
}

// Limited reports whether any limit applies to b: free credits, a monthly
// credit limit or a monthly unit limit. Cost under an unlimited budget
// need not be reserved, only counted.
func (b Budget) Limited() bool {
	return b.UsesFreeCredits || b.CreditLimit > 0 || b.UnitLimit > 0
}

// Reservation is cost held before an upstream call; Settle replaces it
// with the actual cost.
type Reservation struct {
	OrgID   string
	Model   string
	Period  string
	Credits float64
	Units   float64
	// Free is true when the credits were drawn from the free grant.
	Free bool
}

// UsageTotal is one ledger sum, for rebuilding counters.
type UsageTotal struct {
	OrgID, Model, Period string
	Units, Credits       float64
	// FreeCredits is the part of Credits drawn from the free grant.
	FreeCredits float64
}

// Balance is an org's standing for one month.
type Balance struct {
	Period          string
	ResetsAt        time.Time
	FreeCreditsUsed float64
	MonthCredits    float64
	MonthUnits      map[string]float64
}

// Quota reserves and settles cost atomically against free credits and
// monthly limits. Implementations: inmem, redis; both pass
// internal/limitertest. Counters are rebuilt from the ledger with Load.
type Quota interface {
	// Reserve holds credits and units for b at now, or returns
	// billing_required (free credits gone, billing inactive) or
	// quota_exceeded with details {unit, used, limit, resets_at} and
	// RetryAfter until the month's end. Nothing is held on error.
	Reserve(ctx context.Context, b Budget, credits, units float64, now time.Time) (Reservation, error)
	// Settle replaces a reservation with the actual cost (0, 0 releases
	// it). Settling twice is the caller's bug.
	Settle(ctx context.Context, r Reservation, credits, units float64) error
	// Load replaces the counters with the ledger's sums.
	Load(ctx context.Context, totals []UsageTotal) error
	// Balance reports an org's counters for the month of now.
	Balance(ctx context.Context, orgID string, now time.Time) (Balance, error)
}

// UsageEvent is one charged request in the append-only ledger.
type UsageEvent struct {
	RequestID string
	OrgID     string
	KeyID     string
	Model     string
	Unit      Unit
	Quantity  float64
	Credits   float64
	// FreeCredits is the part of Credits drawn from the free grant.
	FreeCredits float64
	Time        time.Time
}

// HistoryItem is one generation, successful or not.
type HistoryItem struct {
	ID        string
	OrgID     string
	KeyID     string
	RequestID string
	Model     string
	Feature   string
	Status    int
	// Code is the catalog code of a failure ("" on success).
	Code     Code
	Unit     Unit
	Quantity float64
	Credits  float64
	// Input and Output are bounded summaries.
	Input     string
	Output    string
	CreatedAt time.Time
}

// HistoryFilter selects an org's history, newest first.
type HistoryFilter struct {
	OrgID   string
	Feature string
	Limit   int
	Offset  int
}

// The account API's default paths: an API key's own history and usage.
const (
	DefaultHistoryPath = "/v1/history"
	DefaultUsagePath   = "/v1/usage"
)

// AccountRoutes are the account API's ServeMux patterns with history and
// usage as its paths (empty: the defaults): list the history, get one
// item, delete one item, and the usage. The gateway serves them and the
// config refuses model routes that conflict with them.
func AccountRoutes(history, usage string) [4]string {
	history, usage = cmp.Or(history, DefaultHistoryPath), cmp.Or(usage, DefaultUsagePath)
	return [4]string{"GET " + history, "GET " + history + "/{id}", "DELETE " + history + "/{id}", "GET " + usage}
}

// History page sizes: a zero Limit asks for DefaultHistoryLimit, a larger
// one than MaxHistoryLimit gets MaxHistoryLimit.
const (
	DefaultHistoryLimit = 50
	MaxHistoryLimit     = 1000
)

// PageSize returns how many items f asks for, or a validation_error for a
// negative Limit or Offset.
func (f HistoryFilter) PageSize() (int, error) {
	if f.Limit < 0 || f.Offset < 0 {
		return 0, Errorf(CodeValidationError, "limit and offset must not be negative.")
	}
	if f.Limit == 0 {
		return DefaultHistoryLimit, nil
	}
	return min(f.Limit, MaxHistoryLimit), nil
}

// UsageQuery asks for an org's usage between From (inclusive) and To
// (exclusive), grouped by "day" or "model".
type UsageQuery struct {
	OrgID    string
	From, To time.Time
	GroupBy  string
}

// Validate reports a query no ledger answers: a GroupBy other than "day"
// or "model", or a To before From (a zero To means no end).
func (q UsageQuery) Validate() error {
	if q.GroupBy != "day" && q.GroupBy != "model" {
		return Errorf(CodeValidationError, "group_by must be day or model, not %q.", q.GroupBy)
	}
	if !q.To.IsZero() && q.To.Before(q.From) {
		return Errorf(CodeValidationError, "to must not be before from.")
	}
	return nil
}

// UsageRow is one group of a UsageQuery.
type UsageRow struct {
	Day      string // "2006-01-02" when grouped by day
	Model    string // when grouped by model
	Unit     Unit
	Requests int
	Quantity float64
	Credits  float64
}

// Ledger is the durable usage ledger and history. The PostgreSQL store
// implements it too.
type Ledger interface {
	// Commit appends events and history items in one transaction. An
	// event whose request id is already in the ledger is skipped: a
	// request is never billed twice.
	Commit(ctx context.Context, events []UsageEvent, items []HistoryItem) error
	// UsageTotals sums the ledger per org × model × month from since on.
	UsageTotals(ctx context.Context, since time.Time) ([]UsageTotal, error)
	Usage(ctx context.Context, q UsageQuery) ([]UsageRow, error)
	History(ctx context.Context, f HistoryFilter) ([]HistoryItem, error)
	// HistoryItem returns one of the org's items; not_found for another
	// org's id.
	HistoryItem(ctx context.Context, orgID, id string) (*HistoryItem, error)
	// DeleteHistory removes one of the org's items; not_found otherwise.
	DeleteHistory(ctx context.Context, orgID, id string) error
	// PruneHistory deletes items created before t.
	PruneHistory(ctx context.Context, before time.Time) (int, error)
}

// Validate reports an event no ledger may hold: no request id, org or time,
// a time outside what int64 Unix nanoseconds hold (years 1678 to 2262), or
// a quantity or credits that is not a finite number (one would poison
// every sum it joins).
func (e *UsageEvent) Validate() error {
	switch {
	case e.RequestID == "":
		return errors.New("no request id")
	case e.OrgID == "":
		return fmt.Errorf("request %q: no org", e.RequestID)
	case e.Time.IsZero():
		return fmt.Errorf("request %q: no time", e.RequestID)
	}
	if err := storableTime(e.Time); err != nil {
		return fmt.Errorf("request %q: %w", e.RequestID, err)
	}
	if err := finite(e.Quantity, e.Credits, e.FreeCredits); err != nil {
		return fmt.Errorf("request %q: %w", e.RequestID, err)
	}
	return nil
}

// Validate reports a history item no ledger may hold, as
// UsageEvent.Validate does.
func (h *HistoryItem) Validate() error {
	switch {
	case h.ID == "":
		return errors.New("no id")
	case h.OrgID == "":
		return fmt.Errorf("%q: no org", h.ID)
	case h.CreatedAt.IsZero():
		return fmt.Errorf("%q: no creation time", h.ID)
	}
	if err := storableTime(h.CreatedAt); err != nil {
		return fmt.Errorf("%q: %w", h.ID, err)
	}
	if err := finite(h.Quantity, h.Credits); err != nil {
		return fmt.Errorf("%q: %w", h.ID, err)
	}
	return nil
}

var (
	minStorableTime = time.Unix(0, math.MinInt64)
	maxStorableTime = time.Unix(0, math.MaxInt64)
)

func storableTime(t time.Time) error {
	if t.Before(minStorableTime) || t.After(maxStorableTime) {
		return fmt.Errorf("time %v outside the storable range %v..%v", t, minStorableTime.UTC(), maxStorableTime.UTC())
	}
	return nil
}

func finite(vs ...float64) error {
	for _, v := range vs {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%v is not a finite number", v)
		}
	}
	return nil
}
