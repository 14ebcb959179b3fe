package tollgate_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestCatalogGolden pins every code's status, close code, retry class and
// each profile's body: codes are public API.
func TestCatalogGolden(t *testing.T) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# code | status | close | retryable\n")
	for _, c := range tollgate.Catalog() {
		fmt.Fprintf(&b, "%s | %d | %d | %v\n", c.Code, c.Status, c.CloseCode, c.Retryable)
	}
	sample := &tollgate.Error{
		Code: tollgate.CodeQuotaExceeded, Message: "Character limit exceeded for your plan.",
		RetryAfter: 30 * time.Second,
		Details:    map[string]any{"characters_used": 500000, "characters_limit": 500000},
		Err:        errors.New("internal cause never rendered"),
	}
	for _, name := range tollgate.ProfileNames {
		p := tollgate.Profile{Name: name}
		status := p.Status(sample)
		body, err := json.Marshal(p.Body(sample, status, "req_test"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "\n# profile %s, status %d\n%s\n", name, status, body)
	}
	golden := "testdata/catalog.golden"
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update once to create it)", err)
	}
	if diff := cmp.Diff(b.String(), string(want)); diff != "" {
		t.Errorf("catalog changed (-got +want):\n%s", diff)
	}
}

func TestErrorCode(t *testing.T) {
	tests := []struct {
		err  error
		want tollgate.Code
	}{
		{nil, ""},
		{errors.New("boom"), tollgate.CodeInternal},
		{tollgate.NewError(tollgate.CodeConflict), tollgate.CodeConflict},
		{fmt.Errorf("wrapped: %w", tollgate.NewError(tollgate.CodeNotFound)), tollgate.CodeNotFound},
		{&tollgate.Error{Code: "not_a_code"}, tollgate.CodeInternal},
	}
	for _, tt := range tests {
		if got := tollgate.ErrorCode(tt.err); got != tt.want {
			t.Errorf("ErrorCode(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestErrorMessageHidesCause(t *testing.T) {
	err := fmt.Errorf("sqlite: find key: %w", errors.New("disk I/O error at /var/lib/secret"))
	if got, want := tollgate.ErrorMessage(err), "Internal error."; got != want {
		t.Errorf("ErrorMessage = %q, want %q", got, want)
	}
	body, _ := json.Marshal(tollgate.Profile{}.Body(tollgate.AsError(err), 500, "req_x"))
	if bytes.Contains(body, []byte("secret")) {
		t.Errorf("internal cause rendered: %s", body)
	}
}

func TestProfileStatus(t *testing.T) {
	p := tollgate.Profile{Name: tollgate.ProfileCode, Statuses: map[tollgate.Code]int{tollgate.CodeMissingCredential: 400}}
	m := p.WithOverrides(tollgate.ProfileDetail, map[tollgate.Code]int{tollgate.CodeQuotaExceeded: 403})
	tests := []struct {
		p    tollgate.Profile
		code tollgate.Code
		want int
	}{
		{p, tollgate.CodeMissingCredential, 400},
		{p, tollgate.CodeInvalidCredential, 401},
		{m, tollgate.CodeMissingCredential, 400},
		{m, tollgate.CodeQuotaExceeded, 403},
		{p, tollgate.CodeQuotaExceeded, 429},
	}
	for _, tt := range tests {
		if got := tt.p.Status(tollgate.NewError(tt.code)); got != tt.want {
			t.Errorf("%s: Status(%s) = %d, want %d", tt.p.Name, tt.code, got, tt.want)
		}
	}
	if m.Name != tollgate.ProfileDetail || p.Name != tollgate.ProfileCode {
		t.Errorf("WithOverrides changed names: %q %q", m.Name, p.Name)
	}
	if _, ok := p.Statuses[tollgate.CodeQuotaExceeded]; ok {
		t.Error("WithOverrides mutated the base profile")
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{0: 1, -time.Second: 1, time.Millisecond: 1, time.Second: 1, 1001 * time.Millisecond: 2, 30 * time.Second: 30} {
		if got := tollgate.RetryAfterSeconds(d); got != want {
			t.Errorf("RetryAfterSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}

func TestValidateStatuses(t *testing.T) {
	errs := tollgate.ValidateStatuses(map[tollgate.Code]int{"nope": 400, tollgate.CodeConflict: 200,
		"validation_error.malformed": 400, "validation_error.other": 400, "conflict.malformed": 400})
	if len(errs) != 4 {
		t.Errorf("got %d errors, want 4 (nope, 200, two unknown variants): %v", len(errs), errs)
	}
}

// TestVariantStatus: a variant's own remap wins over its code's; without
// one, the variant answers as its code.
func TestVariantStatus(t *testing.T) {
	malformed := &tollgate.Error{Code: tollgate.CodeValidationError, Variant: tollgate.VariantMalformed}
	invalid := &tollgate.Error{Code: tollgate.CodeValidationError}
	split := tollgate.Profile{Statuses: map[tollgate.Code]int{"validation_error.malformed": 400}}
	moved := tollgate.Profile{Statuses: map[tollgate.Code]int{tollgate.CodeValidationError: 400}}
	for _, tt := range []struct {
		name string
		p    tollgate.Profile
		e    *tollgate.Error
		want int
	}{
		{"split, malformed", split, malformed, 400},
		{"split, invalid", split, invalid, 422},
		{"code remap, malformed", moved, malformed, 400},
		{"code remap, invalid", moved, invalid, 400},
		{"catalog, malformed", tollgate.Profile{}, malformed, 422},
	} {
		if got := tt.p.Status(tt.e); got != tt.want {
			t.Errorf("%s: Status = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestProfileMessages(t *testing.T) {
	base := tollgate.Profile{Name: tollgate.ProfileDetail, Messages: map[tollgate.Code]string{tollgate.CodeInvalidCredential: "Invalid API key."}}
	m := base.WithOverrides("", map[tollgate.Code]int{tollgate.CodeQuotaExceeded: 403}).
		WithMessages(map[tollgate.Code]string{tollgate.CodeQuotaExceeded: "Monthly quota used up."})
	body := func(p tollgate.Profile, e *tollgate.Error) string {
		b, err := json.Marshal(p.Body(e, p.Status(e), "req_1"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// The override replaces even an error's own message.
	if got := body(m, tollgate.Errorf(tollgate.CodeInvalidCredential, "Key %s is revoked.", "k")); got != `{"detail":"Invalid API key."}` {
		t.Errorf("inherited message: %s", got)
	}
	if got := body(m, tollgate.NewError(tollgate.CodeQuotaExceeded)); got != `{"detail":"Monthly quota used up."}` {
		t.Errorf("model message: %s", got)
	}
	if got := body(base, tollgate.NewError(tollgate.CodeQuotaExceeded)); got == `{"detail":"Monthly quota used up."}` {
		t.Error("WithMessages mutated the base profile")
	}
	errs := tollgate.ValidateMessages(map[tollgate.Code]string{"nope": "x", tollgate.CodeConflict: ""})
	if len(errs) != 2 {
		t.Errorf("ValidateMessages: %v, want 2 errors", errs)
	}
}

// TestNumericQuotaDetails: the numeric envelope names quota details by
// unit, as seed 003 does; the others keep {unit, used, limit, resets_at}.
func TestNumericQuotaDetails(t *testing.T) {
	e := &tollgate.Error{Code: tollgate.CodeQuotaExceeded, Message: "Character limit exceeded for your plan.",
		Details: map[string]any{"unit": "characters", "used": 500000, "limit": 500000, "resets_at": "2026-03-01T00:00:00Z"}}
	num := tollgate.Profile{Name: tollgate.ProfileNumeric}
	b, _ := json.Marshal(num.Body(e, 429, "req_1"))
	want := `{"error":"Character limit exceeded for your plan.","code":429,"retry_after":1,"details":{"characters_limit":500000,"characters_used":500000,"resets_at":"2026-03-01T00:00:00Z"}}`
	if string(b) != want {
		t.Errorf("numeric:\n got %s\nwant %s", b, want)
	}
	tg := tollgate.Profile{Name: tollgate.ProfileTollgate}
	b, _ = json.Marshal(tg.Body(e, 429, "req_1"))
	if !strings.Contains(string(b), `"details":{"limit":500000,"resets_at":"2026-03-01T00:00:00Z","unit":"characters","used":500000}`) {
		t.Errorf("tollgate profile renamed the details: %s", b)
	}
}
