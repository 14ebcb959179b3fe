package upstream_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/demomodel"
	"github.com/tollgate/tollgate/upstream"
)

// The proxy in front of the demo model server, as `tollgate demo` runs it.
func TestForwardDemoModel(t *testing.T) {
	dm, err := demomodel.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer dm.Close()
	p := newProxy(t)
	text := &tollgate.Model{ID: "echo-text", Upstream: dm.URL, UpstreamPath: "/v1/text/generate"}

	r := httptest.NewRequest("POST", "/v1/models/echo-text", strings.NewReader(`{"text":"hi"}`))
	r.Header.Set("X-API-Key", "tg_live_secret")
	r.Header.Set("Content-Type", "application/json")
	rec, res, err := forward(t, p, r, text)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Code != 200 || rec.Body.String() != `{"model":"echo-text","output":"HI","characters":2}` || res.BytesOut != int64(rec.Body.Len()) {
		t.Fatalf("got %d %q (%d bytes out)", rec.Code, rec.Body.String(), res.BytesOut)
	}
	h := dm.LastHeaders()
	if h.Get("X-Api-Key") != "" || h.Get("X-Request-Id") != "req-123" {
		t.Errorf("demo model saw headers %v", h)
	}

	failing := &tollgate.Model{ID: "broken", Upstream: dm.URL, UpstreamPath: "/v1/fail"}
	rec, _, err = forward(t, p, httptest.NewRequest("POST", "/x", strings.NewReader("{}")), failing)
	wantCode(t, err, tollgate.CodeUpstreamError)
	wantNothingWritten(t, rec)

	// Fail over from the failing model to the text model.
	rec, res, err = forward(t, p, httptest.NewRequest("POST", "/x", strings.NewReader(`{"text":"again"}`)), failing, text)
	if err != nil || rec.Header().Get(upstream.HeaderModel) != "echo-text" || res.Attempts != 2 {
		t.Fatalf("failover: %v, served by %q, %d attempts", err, rec.Header().Get(upstream.HeaderModel), res.Attempts)
	}

	r = httptest.NewRequest("POST", "/x?status=503", nil)
	rec, _, err = forward(t, p, r, failing)
	if err != nil || rec.Code != 503 || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("503: %v, %d, Retry-After %q", err, rec.Code, rec.Header().Get("Retry-After"))
	}
}
