package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/demomodel"
	"github.com/tollgate/tollgate/sqlite"
)

const (
	testAdmin  = "test-admin-token-0123456789"
	testSecret = "test-key-secret-0123456789abcdef"
)

// gateway is a real tollgate Main on 127.0.0.1:0 with a temp SQLite file
// and the demo model server as its upstream.
type gateway struct {
	t      testing.TB
	main   *Main
	models *demomodel.Server
	url    string
	clock  *clock
	cancel context.CancelFunc
	done   chan error
}

// clock is a movable clock: real time plus an offset.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// testConfig is the e2e deployment; %[1]s is the demo model server URL,
// %[2]s a refused address, %[3]s the profile and %[4]s extra top-level YAML.
const testConfig = `
listen: 127.0.0.1:0
store: sqlite://%[5]s
limiter: memory
admin_token: ` + testAdmin + `
key_secret: ` + testSecret + `
error_profile: %[3]s
key_cache_ttl: 1m
%[4]s
models:
  - {id: echo-text, feature: text, route: POST /v1/text, upstream: %[1]q, upstream_path: /v1/text/generate, timeout: 5s}
  - {id: echo-get, feature: text, route: GET /v1/text, upstream: %[1]q, upstream_path: /v1/hello}
  - {id: demo-stt, feature: stt, route: POST /v1/audio/transcriptions, upstream: %[1]q, upstream_path: /v1/audio/transcribe, input: {max_bytes: 209715200, audio: {}}}
  - {id: slow, feature: text, route: POST /v1/slow, upstream: %[1]q, upstream_path: /v1/slow, timeout: 300ms}
  - {id: slow-ok, feature: text, route: POST /v1/slow-ok, upstream: %[1]q, upstream_path: /v1/slow, timeout: 10s}
  - {id: failing, feature: text, route: POST /v1/fail, upstream: %[1]q, upstream_path: /v1/fail}
  - {id: failing-grpc, feature: forecast, route: POST /v1/forecast, upstream: %[1]q, upstream_path: /v1/fail, upstream_error_code: grpc_error}
  - {id: flaky, feature: text, route: POST /v1/flaky, upstream: %[1]q, upstream_path: /v1/fail, fallbacks: [echo-text]}
  - {id: gone, feature: text, route: POST /v1/gone, upstream: %[2]q}
  - {id: premium, feature: premium, route: POST /v1/premium, upstream: %[1]q, upstream_path: /v1/text/generate}
  - {id: ungranted, feature: text, route: POST /v1/ungranted, upstream: %[1]q, upstream_path: /v1/text/generate}
  - id: priced
    feature: text
    route: POST /v1/priced
    upstream: %[1]q
    upstream_path: /v1/text/generate
    input: {json_schema: {type: object, required: [text]}, max_length: {/text: 200}, text_field: /text}
    meter: {price: 1.5}
  - {id: priced-fail, feature: text, route: POST /v1/priced-fail, upstream: %[1]q, upstream_path: /v1/fail, meter: {price: 1.5}}
  - {id: priced-slow, feature: text, route: POST /v1/priced-slow, upstream: %[1]q, upstream_path: /v1/slow, timeout: 200ms, meter: {price: 1.5}}
  - {id: priced-403, feature: text, route: POST /v1/priced-403, upstream: %[1]q, upstream_path: /v1/text/generate, meter: {price: 1.5}, error_profile: detail, error_statuses: {quota_exceeded: 403}}
plans:
  - {id: basic, rpm: 1000, concurrency: 0, model_concurrency: {slow-ok: 2}, features: [text, stt, forecast]}
  - {id: tiny, rpm: 3, features: [text]}
  - {id: free, rpm: 100000, features: ["*"]}
  - {id: paid, rpm: 100000, features: ["*"]}
`

func refusedAddr(t testing.TB) string { return "http://" + freeAddr(t) }

// freeAddr is a loopback host:port nothing listens on (for now).
func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func startGateway(t testing.TB, profile, extra string) *gateway {
	t.Helper()
	models, err := demomodel.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { models.Close() })
	db := filepath.Join(t.TempDir(), "tollgate.db")
	c, err := config.Parse([]byte(fmt.Sprintf(testConfig, models.URL, refusedAddr(t), profile, extra, db)), nil)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	g := &gateway{t: t, models: models, clock: &clock{}, done: make(chan error, 1)}
	g.main = &Main{Config: c, Now: g.clock.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	if err := g.main.Open(ctx); err != nil {
		t.Fatal(err)
	}
	g.url = g.main.URL()
	go func() { g.done <- g.main.Run(ctx) }()
	t.Cleanup(g.stop)
	return g
}

func (g *gateway) stop() {
	if g.cancel == nil {
		return
	}
	g.cancel()
	g.cancel = nil
	select {
	case err := <-g.done:
		if err != nil {
			g.t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		g.t.Error("gateway did not stop")
	}
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, r.Body)
	}
	return m
}

func (g *gateway) do(method, path string, header map[string]string, body string) response {
	g.t.Helper()
	req, err := http.NewRequest(method, g.url+path, strings.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

// admin calls the admin API and decodes its JSON answer.
func (g *gateway) admin(method, path string, body any, wantStatus int) map[string]any {
	g.t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	r := g.do(method, path, map[string]string{"Authorization": "Bearer " + testAdmin, "Content-Type": "application/json"}, string(b))
	if r.Status != wantStatus {
		g.t.Fatalf("%s %s = %d, want %d: %s", method, path, r.Status, wantStatus, r.Body)
	}
	return r.JSON(g.t)
}

// newOrg creates an org on plan with models granted, and a key; returns the key.
func (g *gateway) newOrg(id, plan string, models []string, key map[string]any) (org string, secret string, keyID string) {
	g.t.Helper()
	g.admin("POST", "/admin/orgs", map[string]any{"id": id, "name": id + " Inc", "plan": plan, "models": models}, 201)
	if key == nil {
		key = map[string]any{}
	}
	if key["name"] == nil {
		key["name"] = "default"
	}
	k := g.admin("POST", "/admin/orgs/"+id+"/keys", key, 201)
	return id, k["key"].(string), k["id"].(string)
}

var allModels = []string{"echo-text", "echo-get", "demo-stt", "slow", "slow-ok", "failing", "failing-grpc", "flaky", "gone", "premium"}

func TestTextModelSuccess(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	_, key, _ := g.newOrg("acme", "basic", allModels, nil)
	r := g.do("POST", "/v1/text", map[string]string{"x-api-key": key, "Content-Type": "application/json"}, `{"text":"hello"}`)
	if r.Status != 200 {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	if got := r.JSON(t)["output"]; got != "HELLO" {
		t.Errorf("output = %v, want HELLO", got)
	}
	id := r.Header.Get("X-Request-Id")
	if !strings.HasPrefix(id, "req_") {
		t.Errorf("X-Request-Id = %q", id)
	}
	for _, h := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} {
		if r.Header.Get(h) == "" {
			t.Errorf("missing %s", h)
		}
	}
	if got := r.Header.Get("X-RateLimit-Limit"); got != "1000" {
		t.Errorf("X-RateLimit-Limit = %q, want 1000", got)
	}
	if got := r.Header.Get("X-Tollgate-Model"); got != "echo-text" {
		t.Errorf("X-Tollgate-Model = %q", got)
	}
	up := g.models.LastHeaders()
	if up.Get("X-Api-Key") != "" || up.Get("Authorization") != "" {
		t.Errorf("the upstream saw the customer's key: %v", up)
	}
	if up.Get("X-Request-Id") != id {
		t.Errorf("upstream X-Request-Id = %q, want %q", up.Get("X-Request-Id"), id)
	}

	// Bearer works too, and so does the audio model.
	r = g.do("POST", "/v1/audio/transcriptions", map[string]string{"Authorization": "Bearer " + key, "Content-Type": "audio/wav"}, string(sineWAV(16000, time.Second, 440)))
	if r.Status != 200 {
		t.Fatalf("audio: status %d: %s", r.Status, r.Body)
	}
	if got := r.JSON(t)["bytes"]; got != float64(44+32000) {
		t.Errorf("upstream got %v bytes", got)
	}
}

func TestFallback(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	_, key, _ := g.newOrg("acme", "basic", allModels, nil)
	r := g.do("POST", "/v1/flaky", map[string]string{"X-API-Key": key}, `{"text":"failover"}`)
	if r.Status != 200 || r.Header.Get("X-Tollgate-Model") != "echo-text" {
		t.Fatalf("status %d model %q: %s", r.Status, r.Header.Get("X-Tollgate-Model"), r.Body)
	}
}

func TestUpstream503PassesThrough(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	_, key, _ := g.newOrg("acme", "basic", allModels, nil)
	r := g.do("POST", "/v1/fail?status=503", map[string]string{"X-API-Key": key}, `{}`)
	if r.Status != 503 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q", r.Status, r.Header.Get("Retry-After"))
	}
}

// wantMetrics fails t for each of wants that the /metrics body lacks.
func wantMetrics(t *testing.T, body []byte, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestMetrics(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	_, key, _ := g.newOrg("acme", "basic", allModels, nil)
	g.do("POST", "/v1/text", map[string]string{"X-API-Key": key}, `{"text":"x"}`)
	g.do("POST", "/v1/text", nil, `{"text":"x"}`)
	wantMetrics(t, g.do("GET", "/metrics", nil, "").Body,
		`tollgate_http_requests_total{code="ok",model="echo-text",status="200"} 1`,
		`tollgate_http_requests_total{code="missing_credential",model="echo-text",status="401"} 1`,
		`tollgate_limiter_decisions_total{limit="rate",result="allow"} 1`,
		`tollgate_upstream_latency_seconds_count{model="echo-text"} 1`,
		// One answered request waited for one group commit of one request.
		"tollgate_ledger_wait_seconds_count 1\n",
		"tollgate_ledger_commit_requests_sum 1\n",
		"tollgate_ledger_commit_seconds_count 1\n",
		"tollgate_ledger_commit_failures_total 0\n",
	)
	// The journal's ingestion: after a read (which ingests first), nothing
	// is pending and the one event and its history item went in one round.
	if s, ok := g.main.Store.(*sqlite.Store); !ok || strings.HasPrefix(s.LedgerSync(), "tables") {
		t.Log("no ledger journal: its metrics are not checked")
	} else {
		if _, err := s.UsageTotals(t.Context(), time.Time{}); err != nil {
			t.Fatal(err)
		}
		wantMetrics(t, g.do("GET", "/metrics", nil, "").Body,
			"tollgate_ledger_journal_rows 0\n",
			"tollgate_ledger_ingest_rows_total 2\n",
			"tollgate_ledger_ingest_rounds_total 1\n",
			"tollgate_ledger_ingest_seconds_total ",
		)
	}
	if r := g.do("GET", "/healthz", nil, ""); r.Status != 200 {
		t.Errorf("healthz %d", r.Status)
	}
	if r := g.do("GET", "/readyz", nil, ""); r.Status != 200 {
		t.Errorf("readyz %d", r.Status)
	}
	// Every answer has an X-Request-Id, these three too.
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := g.do("GET", path, nil, ""); !strings.HasPrefix(r.Header.Get("X-Request-Id"), "req_") {
			t.Errorf("%s: X-Request-Id %q", path, r.Header.Get("X-Request-Id"))
		}
	}
	// Draining, /readyz is 503 with a Retry-After, as every 503.
	g.main.API.Drain()
	if r := g.do("GET", "/readyz", nil, ""); r.Status != 503 || r.Header.Get("Retry-After") != "1" {
		t.Errorf("readyz while draining: %d, Retry-After %q; want 503 and 1", r.Status, r.Header.Get("Retry-After"))
	}
}

func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	_, key, _ := g.newOrg("acme", "basic", allModels, nil)
	var wg sync.WaitGroup
	var status atomic.Int32
	wg.Add(1)
	go func() {
		defer wg.Done()
		req, _ := http.NewRequest("POST", g.url+"/v1/slow-ok?ms=500", strings.NewReader("{}"))
		req.Header.Set("X-API-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("in-flight request: %v", err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status.Store(int32(resp.StatusCode))
	}()
	waitFor(t, time.Second, func() bool { return g.models.InFlight() == 1 })
	g.stop()
	wg.Wait()
	if status.Load() != 200 {
		t.Errorf("in-flight request ended with %d, want 200", status.Load())
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestReadyChecksTheStore: /readyz is 503 (with Retry-After) when the
// store does not answer, 200 while it does.
func TestReadyChecksTheStore(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	if r := g.do("GET", "/readyz", nil, ""); r.Status != 200 {
		t.Fatalf("readyz %d %s", r.Status, r.Body)
	}
	g.main.Store.Close() // the database is gone
	r := g.do("GET", "/readyz", nil, "")
	if r.Status != 503 || r.Header.Get("Retry-After") != "1" || !strings.Contains(string(r.Body), "unavailable") {
		t.Errorf("readyz with the store closed: %d, Retry-After %q, %s", r.Status, r.Header.Get("Retry-After"), r.Body)
	}
}

// TestHeaderLimit: request headers over 64 KB are refused (431) before
// any handler runs.
// TestConnectionTimeouts: a client that sends part of its headers and
// stops is disconnected after read_header_timeout, and an idle keep-alive
// connection after keepalive_timeout; a connection that keeps sending
// requests stays open past both.
func TestConnectionTimeouts(t *testing.T) {
	g := startGateway(t, "tollgate", "read_header_timeout: 300ms\nkeepalive_timeout: 600ms")
	addr := strings.TrimPrefix(g.url, "http://")
	// closedAfter reports how long the server took to close conn.
	closedAfter := func(conn net.Conn, start time.Time) time.Duration {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		for {
			if _, err := conn.Read(buf); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatal("the server kept the connection open for 5 s")
				}
				return time.Since(start)
			}
		}
	}

	t.Run("slow headers", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")); err != nil {
			t.Fatal(err)
		}
		if d := closedAfter(conn, start); d < 250*time.Millisecond || d > 2*time.Second {
			t.Errorf("closed %v after the partial headers, want about 300ms", d)
		}
	})

	t.Run("idle keep-alive", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		get := func() {
			t.Helper()
			if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("GET /healthz: %d", resp.StatusCode)
			}
		}
		// Requests 200 ms apart for 1 s: longer than both timeouts in all.
		for range 5 {
			get()
			time.Sleep(200 * time.Millisecond)
		}
		get()
		if d := closedAfter(conn, time.Now()); d < 500*time.Millisecond || d > 3*time.Second {
			t.Errorf("an idle connection closed %v after its last answer, want about 600ms", d)
		}
	})
}

func TestHeaderLimit(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	r := g.do("GET", "/healthz", map[string]string{"X-Padding": strings.Repeat("a", 100<<10)}, "")
	if r.Status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("100 KB of headers: %d, want 431", r.Status)
	}
	if r := g.do("GET", "/healthz", map[string]string{"X-Padding": strings.Repeat("a", 32<<10)}, ""); r.Status != 200 {
		t.Errorf("32 KB of headers: %d, want 200", r.Status)
	}
}
