// Package httpapi is tollgate's HTTP surface: the request path in front of
// every model route, the error contract, the admin API, health and metrics.
package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tollgate/tollgate"
)

// Upstream is what a Forwarder reports about an answered request.
type Upstream struct {
	// Model is the model that served (the first of the chain, or a fallback).
	Model   *tollgate.Model
	Status  int
	Latency time.Duration
}

// Forwarder sends a request to the first model of chain that answers and
// writes its answer to w. It returns a catalog error, having written
// nothing, when no model answered. It calls hook (when not nil) once the
// serving upstream's response head is in and before writing anything; a
// hook error aborts the answer and is returned.
type Forwarder func(w http.ResponseWriter, r *http.Request, chain []*tollgate.Model, requestID string, hook Hook) (Upstream, error)

// Hook sees the serving model, the upstream's status and its headers
// before the client does.
type Hook func(m *tollgate.Model, status int, header func(name string) string) error

// Server serves model routes, the admin API, health and metrics. Set the
// fields, then call Handler. Fields must not change after Handler.
type Server struct {
	Store   tollgate.Store
	Limiter tollgate.Limiter
	// Quota reserves and settles cost (nil: nothing is reserved; usage is
	// still recorded).
	Quota   tollgate.Quota
	Forward Forwarder
	Models  []*tollgate.Model
	// Profile is the deployment's error profile (zero value: tollgate).
	Profile tollgate.Profile
	// Keys checks key format (zero value: tg_live_ prefix).
	Keys   tollgate.KeyFormat
	Hasher *tollgate.KeyHasher
	// AdminToken guards /admin/; empty disables the admin API.
	AdminToken string
	// KeyCacheTTL bounds how long a resolved key is trusted without a store
	// read (zero: 2 s). Admin changes on this server clear it at once.
	KeyCacheTTL time.Duration
	// LeaseTTL is the limiter's lease TTL; requests outliving a third of it
	// heartbeat their lease (zero: 15 s).
	LeaseTTL time.Duration
	// Now is the clock (zero: time.Now).
	Now    func() time.Time
	Logger *slog.Logger
	// Ready reports readiness for /readyz (nil: ready).
	Ready func(ctx context.Context) error
	// HistoryRetention is how long history items are kept (zero: 30 days).
	HistoryRetention time.Duration
	// HistoryPath and UsagePath are where the account API serves history
	// (GET the list, GET and DELETE HistoryPath/{id} one item) and usage
	// (GET). Empty: /v1/history and /v1/usage.
	HistoryPath, UsagePath string
	// Broadcast, when set, tells the other replicas that admin state
	// changed (keys, grants, plans, overrides, billing); each calls
	// ForgetKeys on receipt. Nil: this replica only, and the others
	// see the change within KeyCacheTTL.
	Broadcast func(ctx context.Context) error

	metrics  *metrics
	counters decisionCounters
	held     *leaseSet
	adm      tollgate.Admitter // Limiter and Quota, admitting in one call where they can
	ledger   *committer
	stop     context.CancelFunc
	cache    *accessCache
	models   map[string]*tollgate.Model
	draining atomic.Bool

	// The WebSocket streams (stream*.go).
	streams       streamSet
	streamMetrics *streamMetrics
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Close commits what the ledger has queued and stops the background
// loops. Call it after the HTTP server has shut down.
func (s *Server) Close() {
	// Streams still open are closed (1001) and settled first: the ledger
	// must take their usage.
	s.streams.goAway()
	s.streams.handlers.Wait()
	if s.stop != nil {
		s.stop()
		s.stop = nil
		s.ledger.close()
	}
}

// ForgetKeys drops every cached key resolution, so the next request of
// each key reads the store: an admin change made elsewhere applies at once.
func (s *Server) ForgetKeys() {
	if s.cache != nil {
		s.cache.clear()
	}
}

// changed applies an admin change here at once and tells the other
// replicas. A failed broadcast is logged, not returned: the change is
// stored, and the other replicas' key caches expire within KeyCacheTTL.
func (s *Server) changed(ctx context.Context) {
	s.cache.clear()
	if s.Broadcast == nil {
		return
	}
	if err := s.Broadcast(ctx); err != nil {
		s.logger().Warn("broadcast admin change; other replicas apply it within the key cache TTL", "err", err)
	}
}

// Drain makes /readyz fail so load balancers stop sending traffic before
// shutdown.
func (s *Server) Drain() { s.draining.Store(true) }

// Handler builds the routes. It fails when two routes conflict.
func (s *Server) Handler() (http.Handler, error) {
	if s.Store == nil || s.Limiter == nil || s.Forward == nil || s.Hasher == nil {
		return nil, fmt.Errorf("httpapi: Store, Limiter, Forward and Hasher are required")
	}
	if s.Profile.Name == "" {
		s.Profile.Name = tollgate.ProfileTollgate
	}
	ttl := s.KeyCacheTTL
	if ttl <= 0 {
		ttl = 2 * time.Second
	}
	if s.LeaseTTL <= 0 {
		s.LeaseTTL = 15 * time.Second
	}
	s.metrics = newMetrics()
	s.streamMetrics = newStreamMetrics(s.metrics.registry)
	s.counters = s.metrics.decisionCounters()
	s.cache = newAccessCache(ttl)
	s.held = newLeaseSet()
	s.adm = newAdmitter(s.Limiter, s.Quota)
	s.models = make(map[string]*tollgate.Model, len(s.Models))
	for _, m := range s.Models {
		s.models[m.ID] = m
	}

	mux := http.NewServeMux()
	// paths holds every model path without its method, to tell 405 from 404.
	paths := http.NewServeMux()
	allow := map[string][]string{}
	for _, m := range s.Models {
		rt, err := s.newRoute(m)
		if err != nil {
			return nil, err
		}
		var h http.Handler = rt
		if m.Stream != nil {
			h = s.newStreamRoute(rt)
		}
		if err := register(mux, m.Method+" "+m.Path, h); err != nil {
			return nil, fmt.Errorf("httpapi: model %s: %w", m.ID, err)
		}
		shape := pathShape(m.Path)
		if _, seen := allow[shape]; !seen {
			if err := register(paths, shape, http.NotFoundHandler()); err != nil {
				return nil, fmt.Errorf("httpapi: model %s: %w", m.ID, err)
			}
		}
		allow[shape] = append(allow[shape], m.Method)
	}
	for p := range allow {
		sort.Strings(allow[p])
	}

	if err := s.registerAccount(mux); err != nil {
		return nil, err
	}
	mux.Handle("GET /healthz", withRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})))
	mux.Handle("GET /readyz", withRequestID(http.HandlerFunc(s.serveReady)))
	mux.Handle("GET /metrics", withRequestID(promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{})))
	if s.AdminToken != "" {
		if err := s.registerAdmin(mux); err != nil {
			return nil, err
		}
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		id := newRequestID()
		w.Header().Set("X-Request-Id", id)
		if _, pattern := paths.Handler(r); pattern != "" {
			allowed := strings.Join(allow[pattern], ", ")
			s.writeError(w, r, s.Profile, &tollgate.Error{
				Code:    tollgate.CodeMethodNotAllowed,
				Message: fmt.Sprintf("Method %s is not allowed here; use %s.", r.Method, allowed),
				Details: map[string]any{"allow": allowed},
			}, id)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/admin/") {
			s.writeError(w, r, s.Profile, tollgate.NewError(tollgate.CodeNotFound), id)
			return
		}
		notFound := tollgate.Errorf(tollgate.CodeModelNotFound, "No model is served at %s %s.", r.Method, r.URL.Path)
		if isWebSocket(r) {
			s.refuseUpgrade(w, r, notFound) // 4004
			return
		}
		s.writeError(w, r, s.Profile, notFound, id)
	})
	if s.HistoryRetention <= 0 {
		s.HistoryRetention = 30 * 24 * time.Hour
	}
	s.ledger = newCommitter(s.Store, func(msg string, args ...any) { s.logger().Error(msg, args...) }, newLedgerMetrics(s.metrics.registry, s.Store))
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	go s.heartbeatLoop(ctx)
	go s.pruneLoop(ctx)
	return mux, nil
}

// register adds a pattern, turning ServeMux's panic on a bad or conflicting
// pattern into an error.
func register(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("route %q: %v", pattern, p)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// pathShape names every wildcard alike, so /v1/jobs/{id} and
// /v1/jobs/{job} are one path when telling 405 from 404.
func pathShape(path string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(path, '{')
		if i < 0 {
			b.WriteString(path)
			return b.String()
		}
		j := strings.IndexByte(path[i:], '}')
		if j < 0 {
			b.WriteString(path)
			return b.String()
		}
		b.WriteString(path[:i])
		if strings.HasSuffix(path[i:i+j], "...") {
			b.WriteString("{w...}")
		} else if path[i:i+j+1] == "{$}" {
			b.WriteString("{$}")
		} else {
			b.WriteString("{w}")
		}
		path = path[i+j+1:]
	}
}

// withRequestID gives every answer of h an X-Request-Id, as every other
// answer has.
func withRequestID(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", newRequestID())
		h.ServeHTTP(w, r)
	})
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "draining"})
		return
	}
	if s.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.Ready(ctx); err != nil {
			s.logger().Warn("not ready", slog.Any("err", err))
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "error": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
}
