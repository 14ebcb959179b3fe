package tollgate

import "fmt"

// A Profile renders catalog errors in one API's envelope, with that API's
// statuses. The seeds disagree on both; a deployment picks one profile and a
// model may override it.
type Profile struct {
	// Name is one of the ProfileNames.
	Name string
	// Statuses remaps the HTTP status per code; codes absent keep the
	// catalog status.
	Statuses map[Code]int
}

// The built-in envelopes.
const (
	// ProfileTollgate: {"error", "code", "status", "request_id", "retry_after", "details"}.
	ProfileTollgate = "tollgate"
	// ProfileDetail: {"detail": msg} (FastAPI).
	ProfileDetail = "detail"
	// ProfileNumeric: {"error", "code": <status>, "retry_after", "details"}.
	ProfileNumeric = "numeric"
	// ProfileCode: {"error", "code": "<code>"}.
	ProfileCode = "code"
)

// ProfileNames lists the built-in envelopes.
var ProfileNames = []string{ProfileTollgate, ProfileDetail, ProfileNumeric, ProfileCode}

// ValidProfile reports whether name is a built-in envelope.
func ValidProfile(name string) bool {
	for _, n := range ProfileNames {
		if n == name {
			return true
		}
	}
	return false
}

// Status returns the HTTP status for e under p, applying e's own override,
// then p's remap, then the catalog.
func (p Profile) Status(e *Error) int {
	if e.Status != 0 {
		return e.Status
	}
	if s, ok := p.Statuses[e.Code]; ok {
		return s
	}
	if s := Lookup(e.Code).Status; s != 0 {
		return s
	}
	return 500
}

// WithOverrides returns a copy of p whose statuses also apply overrides
// (overrides win).
func (p Profile) WithOverrides(name string, overrides map[Code]int) Profile {
	out := Profile{Name: p.Name, Statuses: make(map[Code]int, len(p.Statuses)+len(overrides))}
	if name != "" {
		out.Name = name
	}
	for c, s := range p.Statuses {
		out.Statuses[c] = s
	}
	for c, s := range overrides {
		out.Statuses[c] = s
	}
	return out
}

// Body returns the JSON-encodable body for e under p, its fields in the
// order the seeds show them. status is the status being sent; requestID is
// the request's id.
func (p Profile) Body(e *Error, status int, requestID string) any {
	msg := ErrorMessage(e)
	var retry int
	if e.RetryAfter > 0 || status == 429 || status == 503 {
		retry = RetryAfterSeconds(e.RetryAfter)
	}
	details := e.Details
	if len(details) == 0 {
		details = nil
	}
	switch p.Name {
	case ProfileDetail:
		return detailBody{Detail: msg}
	case ProfileNumeric:
		return numericBody{Error: msg, Code: status, RetryAfter: retry, Details: details}
	case ProfileCode:
		return codeBody{Error: msg, Code: e.Code}
	default:
		return tollgateBody{Error: msg, Code: e.Code, Status: status, RequestID: requestID, RetryAfter: retry, Details: details}
	}
}

type tollgateBody struct {
	Error      string         `json:"error"`
	Code       Code           `json:"code"`
	Status     int            `json:"status"`
	RequestID  string         `json:"request_id"`
	RetryAfter int            `json:"retry_after,omitempty"`
	Details    map[string]any `json:"details,omitempty"`
}

type detailBody struct {
	Detail string `json:"detail"`
}

type numericBody struct {
	Error      string         `json:"error"`
	Code       int            `json:"code"`
	RetryAfter int            `json:"retry_after,omitempty"`
	Details    map[string]any `json:"details,omitempty"`
}

type codeBody struct {
	Error string `json:"error"`
	Code  Code   `json:"code"`
}

// ValidateStatuses reports every remap that is not a known code with an
// error status (400–599).
func ValidateStatuses(m map[Code]int) []error {
	var errs []error
	for c, s := range m {
		if !Known(c) {
			errs = append(errs, fmt.Errorf("unknown error code %q", c))
		}
		if s < 400 || s > 599 {
			errs = append(errs, fmt.Errorf("status %d for %q is not an error status (400-599)", s, c))
		}
	}
	return errs
}
