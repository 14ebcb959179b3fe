package httpapi_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/httpapi"
	"github.com/tollgate/tollgate/inmem"
	"github.com/tollgate/tollgate/sqlite"
)

// newServer builds a Server on SQLite and the in-memory limiter whose
// Forward answers a fixed body in-process, so the chain is measured alone.
func newServer(tb testing.TB, plan *tollgate.Plan) (*httpapi.Server, http.Handler, string) {
	tb.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "t.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	answer := []byte(`{"output":"ok"}`)
	s := &httpapi.Server{
		Store:   store,
		Limiter: inmem.NewLimiter(0),
		Forward: func(w http.ResponseWriter, r *http.Request, chain []*tollgate.Model, id string, hook httpapi.Hook) (httpapi.Upstream, error) {
			if err := hook(chain[0], 200, func(string) string { return "" }); err != nil {
				return httpapi.Upstream{}, err
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(200)
			w.Write(answer)
			return httpapi.Upstream{Model: chain[0], Status: 200}, nil
		},
		Models:     []*tollgate.Model{{ID: "m", Feature: "text", Method: "POST", Path: "/v1/m", Upstream: "http://127.0.0.1:1"}, {ID: "j", Method: "GET", Path: "/v1/jobs/{id}"}, {ID: "jd", Method: "DELETE", Path: "/v1/jobs/{job}"}},
		Hasher:     tollgate.NewKeyHasher([]byte("0123456789abcdef0123")),
		AdminToken: "admin-token-0123456789",
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	h, err := s.Handler()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	if err := store.PutPlan(ctx, plan); err != nil {
		tb.Fatal(err)
	}
	if err := store.CreateOrg(ctx, &tollgate.Org{ID: "o", Name: "O", PlanID: plan.ID}); err != nil {
		tb.Fatal(err)
	}
	for _, m := range []string{"m", "j", "jd"} {
		store.GrantModel(ctx, "o", m)
	}
	_, key, err := s.CreateKey(ctx, "o", httpapi.KeyRequest{Name: "k"})
	if err != nil {
		tb.Fatal(err)
	}
	return s, h, key
}

func TestMethodNotAllowedAcrossWildcardNames(t *testing.T) {
	_, h, key := newServer(t, &tollgate.Plan{ID: "p", RPM: 100, Features: []string{"*"}})
	req := httptest.NewRequest("PUT", "/v1/jobs/42", nil)
	req.Header.Set("X-API-Key", key)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 405 || w.Header().Get("Allow") != "DELETE, GET" {
		t.Fatalf("status %d, Allow %q: %s", w.Code, w.Header().Get("Allow"), w.Body)
	}
}

func TestRouteConflictIsAnError(t *testing.T) {
	s := &httpapi.Server{
		Store: nil, Limiter: inmem.NewLimiter(0), Hasher: tollgate.NewKeyHasher([]byte("x")),
		Forward: func(http.ResponseWriter, *http.Request, []*tollgate.Model, string, httpapi.Hook) (httpapi.Upstream, error) {
			return httpapi.Upstream{}, nil
		},
		Models: []*tollgate.Model{{ID: "a", Method: "POST", Path: "/v1/x"}, {ID: "b", Method: "POST", Path: "/v1/x"}},
	}
	store, _ := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "t.db"))
	defer store.Close()
	s.Store = store
	if _, err := s.Handler(); err == nil || !strings.Contains(err.Error(), "model b") {
		t.Fatalf("conflicting routes: err = %v", err)
	}
}

func TestCredentialSources(t *testing.T) {
	_, h, key := newServer(t, &tollgate.Plan{ID: "p", RPM: 1000, Features: []string{"*"}})
	tests := []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"x-api-key lower case", map[string]string{"x-api-key": key}, 200},
		{"X-API-KEY upper case", map[string]string{"X-API-KEY": key}, 200},
		{"bearer", map[string]string{"Authorization": "Bearer " + key}, 200},
		{"bearer lower-case scheme", map[string]string{"Authorization": "bearer " + key}, 200},
		{"basic", map[string]string{"Authorization": "Basic " + key}, 401},
		{"empty bearer", map[string]string{"Authorization": "Bearer "}, 401},
		{"none", nil, 401},
	}
	for _, tt := range tests {
		req := httptest.NewRequest("POST", "/v1/m", strings.NewReader("{}"))
		for k, v := range tt.header {
			req.Header[k] = []string{v} // raw, as it arrives off the wire before canonicalization
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != tt.want {
			t.Errorf("%s: status %d, want %d: %s", tt.name, w.Code, tt.want, w.Body)
		}
	}
}

// BenchmarkChain measures the whole request path in-process: request id,
// key check + HMAC + cache, entitlements, GCRA, concurrency lease, metrics
// and a fixed upstream answer.
func BenchmarkChain(b *testing.B) {
	_, h, key := newServer(b, &tollgate.Plan{ID: "p", RPM: 1 << 30, Concurrency: 1 << 20, Features: []string{"*"}})
	b.ReportAllocs()
	// Each request waits for its group commit (one fsync) before its
	// answer, as in production: enough concurrent requests share each
	// commit that the figure is the chain's cost, not the fsync's latency.
	b.SetParallelism(64)
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("POST", "/v1/m", nil)
		req.Header.Set("X-API-Key", key)
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
}
