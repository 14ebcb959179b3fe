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
	// Messages replaces the message per code, whatever the error's own
	// message: an API reproduced behind tollgate keeps its wording.
	Messages map[Code]string
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
	if e.Variant != "" {
		if s, ok := p.Statuses[StatusKey(e.Code, e.Variant)]; ok {
			return s
		}
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
	out := Profile{Name: p.Name, Statuses: make(map[Code]int, len(p.Statuses)+len(overrides)), Messages: p.Messages}
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

// WithMessages returns a copy of p whose messages also apply overrides
// (overrides win).
func (p Profile) WithMessages(overrides map[Code]string) Profile {
	if len(overrides) == 0 {
		return p
	}
	msgs := make(map[Code]string, len(p.Messages)+len(overrides))
	for c, m := range p.Messages {
		msgs[c] = m
	}
	for c, m := range overrides {
		msgs[c] = m
	}
	p.Messages = msgs
	return p
}

// Body returns the JSON-encodable body for e under p, its fields in the
// order the seeds show them. status is the status being sent; requestID is
// the request's id.
func (p Profile) Body(e *Error, status int, requestID string) any {
	msg := ErrorMessage(e)
	if m, ok := p.Messages[e.Code]; ok {
		msg = m
	}
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
		if e.Code == CodeQuotaExceeded {
			details = unitDetails(details)
		}
		return numericBody{Error: msg, Code: status, RetryAfter: retry, Details: details}
	case ProfileCode:
		return codeBody{Error: msg, Code: e.Code}
	default:
		return tollgateBody{Error: msg, Code: e.Code, Status: status, RequestID: requestID, RetryAfter: retry, Details: details}
	}
}

// unitDetails words quota details as the numeric envelope's API (seed
// 003) does: {unit: characters, used, limit, resets_at} becomes
// {characters_used, characters_limit, resets_at}. Other details pass.
func unitDetails(d map[string]any) map[string]any {
	unit, ok := d["unit"].(string)
	if !ok || unit == "" {
		return d
	}
	out := make(map[string]any, len(d))
	for k, v := range d {
		switch k {
		case "unit":
		case "used", "limit":
			out[unit+"_"+k] = v
		default:
			out[k] = v
		}
	}
	return out
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

// ValidateStatuses reports every remap that is not a known code (or
// variant key, such as "validation_error.malformed") with an error status
// (400–599).
func ValidateStatuses(m map[Code]int) []error {
	var errs []error
	for c, s := range m {
		if !Known(c) && !statusVariants[c] {
			errs = append(errs, fmt.Errorf("unknown error code %q", c))
		}
		if s < 400 || s > 599 {
			errs = append(errs, fmt.Errorf("status %d for %q is not an error status (400-599)", s, c))
		}
	}
	return errs
}

// ValidateMessages checks message overrides: known codes, a message of 1 to
// 1,000 bytes.
func ValidateMessages(m map[Code]string) []error {
	var errs []error
	for c, msg := range m {
		if !Known(c) {
			errs = append(errs, fmt.Errorf("unknown error code %q", c))
		}
		if msg == "" || len(msg) > 1000 {
			errs = append(errs, fmt.Errorf("message for %q must be 1 to 1000 bytes", c))
		}
	}
	return errs
}
