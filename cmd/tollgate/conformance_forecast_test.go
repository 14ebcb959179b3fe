package main

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConformanceForecast walks seed 004 (the forecasting API's errors,
// auth and rate limits page) against examples/forecast.
func TestConformanceForecast(t *testing.T) {
	e := startExample(t, "forecast", nil)
	all := []string{"catalog", "timeseries-small", "timeseries-large"}
	_, key, _ := e.newOrg("free-org", "free", all, nil)
	codeShape := map[string]string{"error": jsonString, "code": jsonString}
	bearer := func(k string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + k, "Content-Type": "application/json"}
	}
	forecast := []byte(`{"model":"timeseries-small","inputs":[1,2,3,4.5],"parameters":{"horizon":12}}`)
	const small, large = "/v1/models/timeseries-small/forecast", "/v1/models/timeseries-large/forecast"
	// exact checks the whole body, byte for byte.
	exact := func(t *testing.T, r response, status int, body string) {
		t.Helper()
		if r.Status != status || string(r.Body) != body+"\n" {
			t.Errorf("got %d %s\nwant %d %s", r.Status, r.Body, status, body)
		}
	}

	t.Run("004 a forecast in the canonical model + inputs + parameters shape", func(t *testing.T) {
		r := e.call("POST", small, bearer(key), forecast)
		if r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		wantRateHeaders(t, r, 1000)
	})

	t.Run("004 400 missing_credential", func(t *testing.T) {
		e.notForwarded(t, func() {
			r := e.call("POST", small, map[string]string{"Content-Type": "application/json"}, forecast)
			// <, > and & are sent as they are, not escaped for HTML.
			exact(t, r, 400, `{"error":"Missing API key. Send it in the X-API-Key header or as Authorization: Bearer <key>.","code":"missing_credential"}`)
			wantNoHeader(t, r, "Retry-After", "X-RateLimit-Limit")
		})
	})
	t.Run("004 401 invalid_credential: not found, expired or revoked", func(t *testing.T) {
		expiring := e.admin("POST", "/admin/orgs/free-org/keys", map[string]any{"name": "expiring", "expires_in": "1h"}, 201)["key"].(string)
		revoked := e.admin("POST", "/admin/orgs/free-org/keys", map[string]any{"name": "revoked"}, 201)
		e.admin("POST", "/admin/keys/"+revoked["id"].(string)+"/revoke", nil, 200)
		if r := e.call("POST", small, bearer(expiring), forecast); r.Status != 200 {
			t.Fatalf("before expiry: %d %s", r.Status, r.Body)
		}
		e.clock.Advance(2 * time.Hour)
		defer e.clock.Advance(-2 * time.Hour)
		const body = `{"error":"Invalid API key: it is unknown, malformed, expired or revoked.","code":"invalid_credential"}`
		for name, k := range map[string]string{"not found": flipLast(key), "expired": expiring, "revoked": revoked["key"].(string)} {
			e.notForwarded(t, func() {
				r := e.call("POST", small, bearer(k), forecast)
				if r.Status != 401 || string(r.Body) != body+"\n" {
					t.Errorf("%s: %d %s", name, r.Status, r.Body)
				}
			})
		}
	})
	t.Run("004 401 invalid_credentials on login", func(t *testing.T) {
		t.Skip("waits on the dashboard issue (not filed yet): there is no login")
	})

	t.Run("004 402 billing_required after the 500 free credits", func(t *testing.T) {
		_, k, _ := e.newOrg("spender", "free", all, nil)
		// timeseries-large costs 5 credits: 100 forecasts are free.
		for i := range 100 {
			if r := e.call("POST", large, bearer(k), forecast); r.Status != 200 {
				t.Fatalf("forecast %d: %d %s", i+1, r.Status, r.Body)
			}
		}
		u := e.call("GET", "/v1/usage", bearer(k), nil).JSON(t)
		if free := u["balance"].(map[string]any)["free_credits"].(map[string]any); free["left"] != 0.0 || free["used"] != 500.0 || free["granted"] != 500.0 {
			t.Errorf("balance %v, want 500 granted, 500 used, 0 left", free)
		}
		e.notForwarded(t, func() {
			for _, path := range []string{large, small} {
				r := e.call("POST", path, bearer(k), forecast)
				exact(t, r, 402, `{"error":"Free credits are exhausted and billing is not active. Set up billing to continue.","code":"billing_required"}`)
				wantNoHeader(t, r, "Retry-After")
			}
		})
		// billing_required is about programmatic inference: the free
		// catalog still answers.
		if r := e.call("GET", "/v1/models", bearer(k), nil); r.Status != 200 {
			t.Errorf("the catalog with the free credits spent: %d %s", r.Status, r.Body)
		}
		// Setting up billing lifts it at once.
		e.admin("PUT", "/admin/orgs/spender/billing", map[string]any{"active": true}, 200)
		if r := e.call("POST", large, bearer(k), forecast); r.Status != 200 {
			t.Errorf("with billing: %d %s", r.Status, r.Body)
		}
	})

	t.Run("004 403 no_model_access", func(t *testing.T) {
		_, k, _ := e.newOrg("small-only", "free", []string{"timeseries-small"}, nil)
		e.notForwarded(t, func() {
			exact(t, e.call("POST", large, bearer(k), forecast), 403,
				`{"error":"Model access not enabled for timeseries-large.","code":"no_model_access"}`)
		})
	})
	t.Run("004 404 model_not_found", func(t *testing.T) {
		e.notForwarded(t, func() {
			exact(t, e.call("POST", "/v1/models/timeseries-huge/forecast", bearer(key), forecast), 404,
				`{"error":"No model is served at POST /v1/models/timeseries-huge/forecast.","code":"model_not_found"}`)
		})
	})
	t.Run("004 404 model_not_found for a model named in the body", func(t *testing.T) {
		t.Skip("not built (no issue filed): models are routed by method and path; the body's model field is passed to the model")
	})
	t.Run("004 409 conflict on a duplicate key name or email", func(t *testing.T) {
		t.Skip("waits on the dashboard issue (not filed yet): the account key pages and sign-up are not built; the admin API's 409 is in tollgate's envelope")
	})

	t.Run("004 422 validation_error", func(t *testing.T) {
		for body, msg := range map[string]string{
			`{"model":"timeseries-small"}`:                     "body: missing property 'inputs'",
			`{"inputs":["a"]}`:                                 "/inputs/0: got string, want number",
			`{"inputs":[1],"parameters":{"horizon":0}}`:        "/parameters/horizon: got 0, want 1",
			`{"inputs":[1],"horizon":12}`:                      "body: additional properties 'horizon' not allowed",
			`{"model":"timeseries-small","inputs":[1,2,3]`:     "The request body is not valid JSON.",
			`{"inputs":[1],"parameters":{"horizon":"twelve"}}`: "/parameters/horizon: got string, want integer",
		} {
			e.notForwarded(t, func() {
				r := e.call("POST", small, bearer(key), []byte(body))
				wantError(t, r, 422, codeShape, map[string]any{"code": "validation_error", "error": msg})
			})
		}
	})

	t.Run("004 429 rate_limit_exceeded at 1,000 rpm free", func(t *testing.T) {
		k := e.admin("POST", "/admin/orgs/free-org/keys", map[string]any{"name": "busy"}, 201)["key"].(string)
		// The catalog is free to call: the requests spend no credits. 16
		// clients send until one is refused; the bucket holds 1,000 and
		// refills at 1,000 a minute meanwhile.
		start := time.Now()
		before := e.up.Requests()
		var ok, other atomic.Int64
		var refused atomic.Pointer[response]
		var wg sync.WaitGroup
		const clients = 16
		for range clients {
			wg.Go(func() {
				for refused.Load() == nil && time.Since(start) < time.Minute {
					r, err := e.try("GET", "/v1/models", bearer(k))
					if err != nil {
						other.Add(1)
						continue
					}
					switch r.Status {
					case 200:
						ok.Add(1)
					case 429:
						refused.CompareAndSwap(nil, &r)
					default:
						other.Add(1)
					}
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		earned := int64(elapsed.Seconds()*1000/60) + 1
		if n := ok.Load(); n < 1000 || n > 1000+earned+clients || other.Load() != 0 {
			t.Errorf("%d requests admitted (%d other answers) in %v: want the 1,000 of the bucket, plus at most the %d earned meanwhile",
				n, other.Load(), elapsed, earned)
		}
		if n := e.up.Requests() - before; n != ok.Load() {
			t.Errorf("the upstream saw %d requests, want the %d admitted: refused ones must not reach it", n, ok.Load())
		}
		r := refused.Load()
		if r == nil {
			t.Fatal("no request was refused")
		}
		exact(t, *r, 429, `{"error":"Rate limit of 1000 requests per minute exceeded.","code":"rate_limit_exceeded"}`)
		wantRetryAfter(t, *r, 1, 1)
		if wantRateHeaders(t, *r, 1000) != 0 {
			t.Error("x-ratelimit-remaining is not 0")
		}

		// On the wire, as a client reading lower-case names sees them (a
		// 1 rpm key, so its second request is surely refused).
		one := e.admin("POST", "/admin/orgs/free-org/keys", map[string]any{"name": "one-rpm", "rpm": 1}, 201)["key"].(string)
		if r := e.call("GET", "/v1/models", bearer(one), nil); r.Status != 200 {
			t.Fatalf("first request: %d", r.Status)
		}
		status, lines := rawHeaders(t, e.url, "GET", "/v1/models", map[string]string{"authorization": "Bearer " + one}, "")
		if !strings.HasPrefix(status, "HTTP/1.1 429") {
			t.Fatalf("raw request: %s", status)
		}
		for _, name := range []string{"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after"} {
			v, ok := headerLine(lines, name)
			if _, err := strconv.ParseInt(v, 10, 64); !ok || err != nil {
				t.Errorf("%s: %q (present %v), want a number; headers %q", name, v, ok, lines)
			}
		}
	})
	t.Run("004 1,000,000 rpm with billing", func(t *testing.T) {
		_, k, _ := e.newOrg("paid-org", "billing", all, nil)
		e.admin("PUT", "/admin/orgs/paid-org/billing", map[string]any{"active": true}, 200)
		r := e.call("POST", small, bearer(k), forecast)
		if r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		wantRateHeaders(t, r, 1_000_000)
		// Lower-case lookups are the same header.
		if r.Header.Get("x-ratelimit-limit") != "1000000" {
			t.Errorf("x-ratelimit-limit = %q", r.Header.Get("x-ratelimit-limit"))
		}
	})

	t.Run("004 502 grpc_error, charged nothing", func(t *testing.T) {
		_, k, _ := e.newOrg("unlucky", "free", all, nil)
		h := bearer(k)
		h[faultStatus] = "500"
		r := e.call("POST", small, h, forecast)
		exact(t, r, 502, `{"error":"The inference gateway encountered an error communicating with the upstream model service.","code":"grpc_error"}`)
		wantRateHeaders(t, r, 1000)
		// The model server unreachable is the same gRPC error: 004's
		// clients know no other code for it.
		h = bearer(k)
		h[faultDrop] = "1"
		r = e.call("POST", small, h, forecast)
		exact(t, r, 502, `{"error":"The inference gateway encountered an error communicating with the upstream model service.","code":"grpc_error"}`)
		u := e.call("GET", "/v1/usage", bearer(k), nil).JSON(t)
		if used := u["balance"].(map[string]any)["free_credits"].(map[string]any)["used"]; used != 0.0 {
			t.Errorf("a failed forecast used %v credits", used)
		}
	})
	t.Run("004 retry-after when the upstream asks clients to slow down", func(t *testing.T) {
		h := bearer(key)
		h[faultStatus], h[faultRetryAfter] = "503", "7"
		r := e.call("POST", small, h, forecast)
		if r.Status != 503 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		wantRetryAfter(t, r, 7, 7)
	})
}
