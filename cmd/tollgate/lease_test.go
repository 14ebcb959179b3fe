package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func (g *gateway) inFlight(org, model string) int {
	g.t.Helper()
	n, err := g.main.Limiter.InFlight(context.Background(), "conc:"+org+":"+model, g.clock.Now())
	if err != nil {
		g.t.Fatal(err)
	}
	return n
}

// TestLeaseReleased checks that a concurrency lease is released on
// completion, on an upstream error, when the client cancels and when the
// client disconnects.
func TestLeaseReleased(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	_, key, _ := g.newOrg("acme", "basic", allModels, nil)
	g.admin("PUT", "/admin/orgs/acme/concurrency/slow", map[string]any{"limit": 1}, 200)

	t.Run("completion", func(t *testing.T) {
		r := g.do("POST", "/v1/slow-ok?ms=1", map[string]string{"X-API-Key": key}, "{}")
		if r.Status != 200 {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		if n := g.inFlight("acme", "slow-ok"); n != 0 {
			t.Errorf("in flight after completion: %d", n)
		}
	})
	t.Run("upstream error", func(t *testing.T) {
		r := g.do("POST", "/v1/slow?ms=2000", map[string]string{"X-API-Key": key}, "{}")
		if r.Status != 504 {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		if n := g.inFlight("acme", "slow"); n != 0 {
			t.Errorf("in flight after timeout: %d", n)
		}
	})
	t.Run("client cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "POST", g.url+"/v1/slow-ok?ms=5000", strings.NewReader("{}"))
		req.Header.Set("X-API-Key", key)
		errc := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		waitFor(t, 2*time.Second, func() bool { return g.inFlight("acme", "slow-ok") == 1 })
		cancel()
		<-errc
		waitFor(t, time.Second, func() bool { return g.inFlight("acme", "slow-ok") == 0 })
	})
	t.Run("client disconnect", func(t *testing.T) {
		conn, err := net.Dial("tcp", g.main.Addr())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /v1/slow-ok?ms=5000 HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\nContent-Length: 2\r\n\r\n{}", key)
		waitFor(t, 2*time.Second, func() bool { return g.inFlight("acme", "slow-ok") == 1 })
		conn.Close()
		waitFor(t, time.Second, func() bool { return g.inFlight("acme", "slow-ok") == 0 })
	})
	t.Run("client stalls its upload", func(t *testing.T) {
		// 2 bytes of the 100,000 it announced, then nothing: the model's
		// 300 ms timeout bounds the stall, and the slot is freed.
		conn, err := net.Dial("tcp", g.main.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /v1/slow?ms=1 HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\nContent-Length: 100000\r\n\r\n{}", key)
		waitFor(t, 2*time.Second, func() bool { return g.inFlight("acme", "slow") == 1 })
		waitFor(t, 3*time.Second, func() bool { return g.inFlight("acme", "slow") == 0 })
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer to the stalled upload: %v", err)
		}
		var e struct{ Code, Error string }
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 422 || e.Code != "validation_error" || !strings.Contains(e.Error, "stopped arriving") {
			t.Errorf("stalled upload: %d %+v, want 422 validation_error saying the body stopped arriving", resp.StatusCode, e)
		}
	})
	t.Run("slot is usable again", func(t *testing.T) {
		r := g.do("POST", "/v1/slow-ok?ms=1", map[string]string{"X-API-Key": key}, "{}")
		if r.Status != 200 {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
	})
	t.Run("only the answered requests are in the ledger", func(t *testing.T) {
		// The timeout, the cancel and the disconnect charged nothing.
		got := map[string]int{}
		for _, r := range g.usage("acme")["rows"].([]any) {
			row := r.(map[string]any)
			got[row["model"].(string)] += int(row["requests"].(float64))
		}
		if got["slow-ok"] != 2 || got["slow"] != 0 {
			t.Errorf("ledger requests by model %v, want slow-ok 2 (the two answered), slow 0", got)
		}
	})
}

// TestConcurrencyCapHolds sends many overlapping requests; the upstream
// never sees more than the cap in flight.
func TestConcurrencyCapHolds(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	_, key, _ := g.newOrg("acme", "basic", allModels, nil)
	// basic plan: slow-ok capped at 2 per org.
	const n = 40
	codes := make(chan int, n)
	for i := 0; i < n; i++ {
		go func() { codes <- post(http.DefaultClient, g.url+"/v1/slow-ok?ms=50", key, "{}", nil) }()
	}
	count := map[int]int{}
	for i := 0; i < n; i++ {
		count[<-codes]++
	}
	if count[200] < 2 || count[200]+count[429] != n {
		t.Errorf("answers %v: want only 200 and 429, at least 2 admitted", count)
	}
	if max := g.models.MaxInFlight(); max > 2 {
		t.Errorf("the upstream saw %d in flight, cap is 2", max)
	}
}

func TestRevocationIsImmediate(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	_, key, id := g.newOrg("acme", "basic", allModels, nil)
	h := map[string]string{"X-API-Key": key}
	if r := g.do("POST", "/v1/text", h, `{"text":"x"}`); r.Status != 200 {
		t.Fatalf("before revoke: %d", r.Status)
	}
	g.admin("POST", "/admin/keys/"+id+"/revoke", nil, 200)
	if r := g.do("POST", "/v1/text", h, `{"text":"x"}`); r.Status != 401 {
		t.Fatalf("after revoke: %d, want 401", r.Status)
	}
}

func TestRotation(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	_, oldKey, id := g.newOrg("acme", "basic", allModels, map[string]any{"models": []string{"echo-text"}, "rpm": 500})
	out := g.admin("POST", "/admin/keys/"+id+"/rotate", map[string]any{"overlap": "1h"}, 201)
	next := out["key"].(map[string]any)
	newKey := next["key"].(string)
	if next["rpm"] != float64(500) || fmt.Sprint(next["models"]) != "[echo-text]" || next["name"] != "default" {
		t.Errorf("rotated key changed settings: %v", next)
	}
	for name, k := range map[string]string{"old": oldKey, "new": newKey} {
		if r := g.do("POST", "/v1/text", map[string]string{"X-API-Key": k}, `{"text":"x"}`); r.Status != 200 {
			t.Errorf("%s key during overlap: %d", name, r.Status)
		}
	}
	g.clock.Advance(2 * time.Hour)
	if r := g.do("POST", "/v1/text", map[string]string{"X-API-Key": oldKey}, `{"text":"x"}`); r.Status != 401 {
		t.Errorf("old key after overlap: %d, want 401", r.Status)
	}
	if r := g.do("POST", "/v1/text", map[string]string{"X-API-Key": newKey}, `{"text":"x"}`); r.Status != 200 {
		t.Errorf("new key after overlap: %d", r.Status)
	}
}

func TestAdminAPI(t *testing.T) {
	g := startGateway(t, "detail", "")
	g.newOrg("acme", "basic", allModels, nil)
	// The admin API answers in the tollgate profile whatever the deployment's.
	tests := []struct {
		method, path string
		body         any
		status       int
		code         string
	}{
		{"POST", "/admin/orgs/acme/keys", map[string]any{"name": "default"}, 409, "conflict"},
		{"POST", "/admin/orgs", map[string]any{"id": "acme", "name": "again", "plan": "basic"}, 409, "conflict"},
		{"POST", "/admin/orgs/nope/keys", map[string]any{"name": "k"}, 404, "not_found"},
		{"GET", "/admin/orgs/nope", nil, 404, "not_found"},
		{"POST", "/admin/keys/key_nope/revoke", nil, 404, "not_found"},
		{"POST", "/admin/keys/key_nope/rotate", nil, 404, "not_found"},
		{"GET", "/admin/plans/nope", nil, 404, "not_found"},
		{"POST", "/admin/orgs", map[string]any{"name": "x", "plan": "nope"}, 404, "not_found"},
		{"POST", "/admin/orgs/acme/keys", map[string]any{"name": "fast", "rpm": 5000}, 422, "validation_error"},
		{"POST", "/admin/orgs/acme/keys", map[string]any{"name": "m", "models": []string{"nope"}}, 422, "validation_error"},
		{"POST", "/admin/orgs/acme/keys", map[string]any{"name": ""}, 422, "validation_error"},
		{"POST", "/admin/orgs/acme/keys", map[string]any{"name": "nul\u0000byte"}, 422, "validation_error"},
		{"POST", "/admin/orgs", map[string]any{"name": "tab\tname", "plan": "basic"}, 422, "validation_error"},
		{"POST", "/admin/orgs/acme/keys", map[string]any{"name": "x", "bogus": 1}, 422, "validation_error"},
		{"POST", "/admin/orgs/acme/keys", map[string]any{"name": "x", "expires_in": "-1h"}, 422, "validation_error"},
		{"PUT", "/admin/orgs/acme/models/nope", nil, 404, "model_not_found"},
		{"PUT", "/admin/orgs/acme/concurrency/slow", map[string]any{"limit": -1}, 422, "validation_error"},
		{"PUT", "/admin/plans/p1", map[string]any{"rpm": 0}, 422, "validation_error"},
	}
	for _, tt := range tests {
		r := g.admin(tt.method, tt.path, tt.body, tt.status)
		if r["code"] != tt.code {
			t.Errorf("%s %s: code %v, want %s", tt.method, tt.path, r["code"], tt.code)
		}
	}
	// Without the token.
	r := g.do("GET", "/admin/orgs", map[string]string{"Authorization": "Bearer wrong"}, "")
	if r.Status != 401 || r.JSON(t)["code"] != "unauthorized" {
		t.Errorf("wrong admin token: %d %s", r.Status, r.Body)
	}
	// Lists never show the key.
	keys := g.admin("GET", "/admin/orgs/acme/keys", nil, 200)
	for _, k := range keys["keys"].([]any) {
		if _, ok := k.(map[string]any)["key"]; ok {
			t.Errorf("key list shows a key: %v", k)
		}
	}
	// A key name is free again after revocation.
	id := keys["keys"].([]any)[0].(map[string]any)["id"].(string)
	g.admin("POST", "/admin/keys/"+id+"/revoke", nil, 200)
	g.admin("POST", "/admin/orgs/acme/keys", map[string]any{"name": "default"}, 201)
}

// TestClientDisconnectRawHTTP makes sure a half-read response does not
// wedge the server (read the status line, then hang up).
func TestPartialReadDoesNotLeak(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	_, key, _ := g.newOrg("acme", "basic", allModels, nil)
	conn, err := net.Dial("tcp", g.main.Addr())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /v1/slow-ok?ms=1 HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\nContent-Length: 2\r\n\r\n{}", key)
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.Contains(line, "200") {
		t.Fatalf("status line %q, %v", line, err)
	}
	conn.Close()
	waitFor(t, time.Second, func() bool { return g.inFlight("acme", "slow-ok") == 0 })
}

// TestLongRequestKeepsItsLease: a request outliving the lease TTL is
// heartbeated, so its slot is not handed to another request.
func TestLongRequestKeepsItsLease(t *testing.T) {
	g := startGateway(t, "tollgate", "lease_ttl: 600ms")
	_, key, _ := g.newOrg("acme", "basic", allModels, nil)
	g.admin("PUT", "/admin/orgs/acme/concurrency/slow-ok", map[string]any{"limit": 1}, 200)
	done := make(chan int, 1)
	go func() {
		r := g.do("POST", "/v1/slow-ok?ms=2200", map[string]string{"X-API-Key": key}, "{}")
		done <- r.Status
	}()
	waitFor(t, 2*time.Second, func() bool { return g.inFlight("acme", "slow-ok") == 1 })
	time.Sleep(1600 * time.Millisecond) // well past the 600 ms TTL
	if n := g.inFlight("acme", "slow-ok"); n != 1 {
		t.Fatalf("in flight after 2.6 TTLs: %d, want 1 (heartbeat lost the lease)", n)
	}
	if r := g.do("POST", "/v1/slow-ok?ms=1", map[string]string{"X-API-Key": key}, "{}"); r.Status != 429 {
		t.Errorf("second request while the first holds the slot: %d, want 429", r.Status)
	}
	if s := <-done; s != 200 {
		t.Errorf("long request: %d", s)
	}
	if n := g.inFlight("acme", "slow-ok"); n != 0 {
		t.Errorf("in flight after completion: %d", n)
	}
}
