package main

import (
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate"
)

// scenario produces one catalog error with a real request.
type scenario struct {
	name   string
	code   tollgate.Code
	status int // in the default statuses
	// limited: the answer comes after the rate step, so it carries
	// X-RateLimit-* headers.
	limited bool
	// upstreamCalls is how many requests the scenario sends that reach the
	// demo model server (its setup calls and, for upstream errors, the
	// failing call itself).
	upstreamCalls int
	run           func(t *testing.T, f *fixture) response
}

// fixture is a gateway with orgs and keys for every scenario.
type fixture struct {
	g                       *gateway
	key, tinyKey, onlyText  string
	revokedKey, expiringKey string
}

func newFixture(t *testing.T, profile, extra string) *fixture {
	g := startGateway(t, profile, extra)
	f := &fixture{g: g}
	_, f.key, _ = g.newOrg("acme", "basic", allModels, nil)
	_, f.tinyKey, _ = g.newOrg("tiny", "tiny", []string{"echo-text"}, nil)
	k := g.admin("POST", "/admin/orgs/acme/keys", map[string]any{"name": "only-text", "models": []string{"echo-text"}}, 201)
	f.onlyText = k["key"].(string)
	k = g.admin("POST", "/admin/orgs/acme/keys", map[string]any{"name": "revoked"}, 201)
	f.revokedKey = k["key"].(string)
	g.admin("POST", "/admin/keys/"+k["id"].(string)+"/revoke", nil, 200)
	k = g.admin("POST", "/admin/orgs/acme/keys", map[string]any{"name": "expiring", "expires_in": "1h"}, 201)
	f.expiringKey = k["key"].(string)
	return f
}

func (f *fixture) call(method, path, key, body string) response {
	h := map[string]string{"Content-Type": "application/json"}
	if key != "" {
		h["X-API-Key"] = key
	}
	return f.g.do(method, path, h, body)
}

func flipLast(key string) string {
	b := []byte(key)
	if b[len(b)-1] == 'A' {
		b[len(b)-1] = 'B'
	} else {
		b[len(b)-1] = 'A'
	}
	return string(b)
}

var scenarios = []scenario{
	{"no key", tollgate.CodeMissingCredential, 401, false, 0, func(t *testing.T, f *fixture) response {
		return f.call("POST", "/v1/text", "", `{"text":"x"}`)
	}},
	{"malformed key", tollgate.CodeInvalidCredential, 401, false, 0, func(t *testing.T, f *fixture) response {
		return f.call("POST", "/v1/text", "not-a-key", `{"text":"x"}`)
	}},
	{"bad checksum", tollgate.CodeInvalidCredential, 401, false, 0, func(t *testing.T, f *fixture) response {
		return f.call("POST", "/v1/text", flipLast(f.key), `{"text":"x"}`)
	}},
	{"unknown key", tollgate.CodeInvalidCredential, 401, false, 0, func(t *testing.T, f *fixture) response {
		k, _ := tollgate.KeyFormat{}.Generate(nil)
		return f.call("POST", "/v1/text", k, `{"text":"x"}`)
	}},
	{"not bearer", tollgate.CodeInvalidCredential, 401, false, 0, func(t *testing.T, f *fixture) response {
		return f.g.do("POST", "/v1/text", map[string]string{"Authorization": "Basic " + f.key}, `{}`)
	}},
	{"revoked key", tollgate.CodeInvalidCredential, 401, false, 0, func(t *testing.T, f *fixture) response {
		return f.call("POST", "/v1/text", f.revokedKey, `{"text":"x"}`)
	}},
	{"expired key", tollgate.CodeInvalidCredential, 401, false, 1, func(t *testing.T, f *fixture) response {
		if r := f.call("POST", "/v1/text", f.expiringKey, `{"text":"x"}`); r.Status != 200 {
			t.Fatalf("before expiry: %d %s", r.Status, r.Body)
		}
		f.g.clock.Advance(2 * time.Hour)
		defer f.g.clock.Advance(-2 * time.Hour)
		return f.call("POST", "/v1/text", f.expiringKey, `{"text":"x"}`)
	}},
	{"model not granted to org", tollgate.CodeNoModelAccess, 403, false, 0, func(t *testing.T, f *fixture) response {
		return f.call("POST", "/v1/ungranted", f.key, `{"text":"x"}`)
	}},
	{"model not in key's list", tollgate.CodeNoModelAccess, 403, false, 0, func(t *testing.T, f *fixture) response {
		return f.call("POST", "/v1/slow-ok", f.onlyText, `{}`)
	}},
	{"feature not in plan", tollgate.CodeFeatureNotEnabled, 403, false, 0, func(t *testing.T, f *fixture) response {
		return f.call("POST", "/v1/premium", f.key, `{"text":"x"}`)
	}},
	{"unknown model route", tollgate.CodeModelNotFound, 404, false, 0, func(t *testing.T, f *fixture) response {
		return f.call("POST", "/v1/no-such-model", f.key, `{}`)
	}},
	{"wrong method", tollgate.CodeMethodNotAllowed, 405, false, 0, func(t *testing.T, f *fixture) response {
		r := f.call("DELETE", "/v1/text", f.key, ``)
		if got := r.Header.Get("Allow"); got != "GET, POST" {
			t.Errorf("Allow = %q, want GET, POST", got)
		}
		return r
	}},
	{"rate limit", tollgate.CodeRateLimitExceeded, 429, true, 3, func(t *testing.T, f *fixture) response {
		for i := 0; i < 3; i++ {
			r := f.call("POST", "/v1/text", f.tinyKey, `{"text":"x"}`)
			if r.Status != 200 {
				t.Fatalf("request %d: %d %s", i, r.Status, r.Body)
			}
			if got, want := r.Header.Get("X-RateLimit-Remaining"), strconv.Itoa(2-i); got != want {
				t.Errorf("request %d: X-RateLimit-Remaining = %s, want %s", i, got, want)
			}
		}
		r := f.call("POST", "/v1/text", f.tinyKey, `{"text":"x"}`)
		if ra, _ := strconv.Atoi(r.Header.Get("Retry-After")); ra < 19 || ra > 20 {
			t.Errorf("Retry-After = %q, want 20 (one request every 20 s)", r.Header.Get("Retry-After"))
		}
		if got := r.Header.Get("X-RateLimit-Remaining"); got != "0" {
			t.Errorf("X-RateLimit-Remaining = %q, want 0", got)
		}
		reset, _ := strconv.ParseInt(r.Header.Get("X-RateLimit-Reset"), 10, 64)
		if d := reset - time.Now().Unix(); d < 55 || d > 61 {
			t.Errorf("X-RateLimit-Reset is %d s away, want about 60", d)
		}
		return r
	}},
	{"concurrency limit", tollgate.CodeConcurrencyLimitExceeded, 429, true, 1, func(t *testing.T, f *fixture) response {
		f.g.admin("PUT", "/admin/orgs/acme/concurrency/slow-ok", map[string]any{"limit": 1}, 200)
		defer f.g.admin("DELETE", "/admin/orgs/acme/concurrency/slow-ok", nil, 200)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.call("POST", "/v1/slow-ok?ms=400", f.key, `{}`)
		}()
		defer wg.Wait()
		waitFor(t, 2*time.Second, func() bool { return f.g.models.InFlight() == 1 })
		r := f.call("POST", "/v1/slow-ok?ms=1", f.key, `{}`)
		if got := r.Header.Get("Retry-After"); got != "1" {
			t.Errorf("Retry-After = %q, want 1", got)
		}
		return r
	}},
	{"upstream timeout", tollgate.CodeUpstreamTimeout, 504, true, 1, func(t *testing.T, f *fixture) response {
		start := time.Now()
		r := f.call("POST", "/v1/slow?ms=3000", f.key, `{}`)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("timeout answered after %v, want about 300ms", d)
		}
		return r
	}},
	{"upstream refused", tollgate.CodeUpstreamUnavailable, 502, true, 0, func(t *testing.T, f *fixture) response {
		return f.call("POST", "/v1/gone", f.key, `{}`)
	}},
	{"upstream 500", tollgate.CodeUpstreamError, 502, true, 1, func(t *testing.T, f *fixture) response {
		return f.call("POST", "/v1/fail", f.key, `{}`)
	}},
	{"upstream 500 on a gRPC model", tollgate.CodeGRPCError, 502, true, 1, func(t *testing.T, f *fixture) response {
		return f.call("POST", "/v1/forecast", f.key, `{}`)
	}},
}

// TestErrorContract produces every catalog error reachable on the request
// path with a real request, under each profile, and checks status, body
// shape and headers.
func TestErrorContract(t *testing.T) {
	profiles := []struct {
		name     string
		extra    string
		statuses map[tollgate.Code]int
	}{
		{"tollgate", "", nil},
		{"detail", "error_statuses: {quota_exceeded: 403}", nil},
		{"numeric", "", nil},
		{"code", "error_statuses: {missing_credential: 400}", map[tollgate.Code]int{tollgate.CodeMissingCredential: 400}},
	}
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, p.name, p.extra)
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) {
					before := f.g.models.Requests()
					r := sc.run(t, f)
					want := sc.status
					if s, ok := p.statuses[sc.code]; ok {
						want = s
					}
					if r.Status != want {
						t.Fatalf("status %d, want %d: %s", r.Status, want, r.Body)
					}
					checkBody(t, p.name, sc.code, r)
					checkHeaders(t, sc, r)
					if got := f.g.models.Requests() - before; got != int64(sc.upstreamCalls) {
						t.Errorf("the upstream saw %d requests, want %d: a refused request must not reach it", got, sc.upstreamCalls)
					}
				})
			}
		})
	}
}

func checkBody(t *testing.T, profile string, code tollgate.Code, r response) {
	t.Helper()
	body := r.JSON(t)
	var keys []string
	for k := range body {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	retry := r.Status == 429 || r.Status == 503
	var want []string
	switch profile {
	case "detail":
		want = []string{"detail"}
	case "numeric":
		want = []string{"code", "error"}
		if retry {
			want = []string{"code", "error", "retry_after"}
		}
		if body["code"] != float64(r.Status) {
			t.Errorf("numeric code = %v, want %d", body["code"], r.Status)
		}
	case "code":
		want = []string{"code", "error"}
		if body["code"] != string(code) {
			t.Errorf("code = %v, want %s", body["code"], code)
		}
	default:
		want = []string{"code", "error", "request_id", "status"}
		if retry {
			want = []string{"code", "error", "request_id", "retry_after", "status"}
		}
		if body["code"] != string(code) || body["status"] != float64(r.Status) || body["request_id"] != r.Header.Get("X-Request-Id") {
			t.Errorf("body %s does not match code %s, status %d, request id %s", r.Body, code, r.Status, r.Header.Get("X-Request-Id"))
		}
	}
	if code == tollgate.CodeMethodNotAllowed && (profile == "tollgate" || profile == "numeric") {
		want = append(want, "details")
		sort.Strings(want)
	}
	if diff := cmp.Diff(keys, want); diff != "" {
		t.Errorf("body fields (-got +want):\n%s\nbody: %s", diff, r.Body)
	}
	msgField := "error"
	if profile == "detail" {
		msgField = "detail"
	}
	if msg, _ := body[msgField].(string); msg == "" || strings.Contains(msg, "tollgate/") {
		t.Errorf("message %q is empty or leaks internals", msg)
	}
	if retry {
		if ra, ok := body["retry_after"]; ok && strconv.Itoa(int(ra.(float64))) != r.Header.Get("Retry-After") {
			t.Errorf("retry_after %v != Retry-After %s", ra, r.Header.Get("Retry-After"))
		}
	}
}

func checkHeaders(t *testing.T, sc scenario, r response) {
	t.Helper()
	if !strings.HasPrefix(r.Header.Get("X-Request-Id"), "req_") {
		t.Errorf("X-Request-Id = %q", r.Header.Get("X-Request-Id"))
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if r.Status == http.StatusTooManyRequests || r.Status == http.StatusServiceUnavailable {
		if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 {
			t.Errorf("Retry-After = %q on %d", r.Header.Get("Retry-After"), r.Status)
		}
	}
	if sc.limited && (r.Header.Get("X-RateLimit-Limit") == "" || r.Header.Get("X-RateLimit-Remaining") == "" || r.Header.Get("X-RateLimit-Reset") == "") {
		t.Errorf("limited answer lacks X-RateLimit-* headers: %v", r.Header)
	}
}
