package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/httpapi"
	"github.com/tollgate/tollgate/inmem"
	"github.com/tollgate/tollgate/postgres"
	"github.com/tollgate/tollgate/redis"
	"github.com/tollgate/tollgate/sqlite"
	"github.com/tollgate/tollgate/upstream"
)

// Main is one running gateway: config in, store, limiter, proxy and HTTP
// server wired together. Open starts listening; Run serves until its
// context ends, then shuts down gracefully.
type Main struct {
	Config *config.Config
	Logger *slog.Logger
	// Now is the clock (nil: time.Now); tests move it to expire keys.
	Now func() time.Time

	Store   tollgate.Store
	Limiter tollgate.Limiter
	Proxy   *upstream.Proxy
	API     *httpapi.Server

	ln  net.Listener
	srv *http.Server

	// With a redis:// limiter: the limiter, the admin-change bus and
	// the context of its subscription.
	redis      *redis.Limiter
	bus        *redis.Bus
	busCtx     context.Context
	busCancel  context.CancelFunc
	rebuilding atomic.Bool
}

// openRedis connects the Redis limiter and the admin-change bus.
func (m *Main) openRedis(ctx context.Context, url string) error {
	c := m.Config
	l, err := redis.New(ctx, url, redis.Options{
		Prefix:         c.LimiterPrefix,
		LeaseTTL:       c.LeaseTTL,
		Timeout:        c.LimiterTimeout,
		RateFailure:    redis.FailureMode(c.LimiterFailure),
		Replicas:       c.Replicas,
		OnCountersLost: m.rebuildLost,
	})
	if err != nil {
		return fmt.Errorf("limiter: %w", err)
	}
	m.redis, m.Limiter = l, l
	bus, err := redis.NewBus(ctx, url, c.LimiterPrefix+"admin")
	if err != nil {
		return fmt.Errorf("limiter: %w", err)
	}
	m.bus = bus
	m.busCtx, m.busCancel = context.WithCancel(context.Background())
	return nil
}

// rebuildLost reloads the quota counters from the ledger after Redis lost
// them, once at a time; requests meanwhile are refused 503 with
// Retry-After rather than charged against counters read as zero.
func (m *Main) rebuildLost() {
	if m.API == nil || !m.rebuilding.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer m.rebuilding.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if n, err := m.API.RebuildUsage(ctx); err != nil {
			m.Logger.Error("rebuild lost usage counters from the ledger", "err", err)
		} else {
			m.Logger.Warn("usage counters were lost by Redis; rebuilt from the ledger", "groups", n)
		}
	}()
}

// Addr is the address the gateway listens on (after Open).
func (m *Main) Addr() string { return m.ln.Addr().String() }

// URL is the gateway's base URL (after Open).
func (m *Main) URL() string { return "http://" + m.Addr() }

// Open connects the store and limiter, seeds the configured plans, builds
// the routes and starts listening.
func (m *Main) Open(ctx context.Context) error {
	c := m.Config
	if m.Logger == nil {
		m.Logger = slog.Default()
	}
	store, err := openStore(ctx, c.StoreBackend(), c.LedgerSync)
	if err != nil {
		return err
	}
	m.Store = store
	for _, p := range c.DomainPlans() {
		if err := store.PutPlan(ctx, p); err != nil {
			return fmt.Errorf("seed plan %s: %w", p.ID, err)
		}
	}
	var quota tollgate.Quota
	rebuild := true // quota counters start from the ledger, never from zero
	switch b := c.LimiterBackend(); b.Kind {
	case config.Memory:
		l := inmem.NewLimiter(c.LeaseTTL)
		m.Limiter, quota = l, l
	case config.Redis:
		if err := m.openRedis(ctx, b.Target); err != nil {
			m.Close()
			return err
		}
		quota = m.redis
		// The counters are shared: a replica joining a running cluster
		// must not reload them under the others' reservations.
		if loaded, err := m.redis.Loaded(ctx); err == nil && loaded {
			rebuild = false
		}
	default:
		m.Close()
		return fmt.Errorf("limiter: unknown kind %q", b.Kind)
	}
	m.Proxy = upstream.New()
	m.API = &httpapi.Server{
		Store:       m.Store,
		Limiter:     m.Limiter,
		Quota:       quota,
		Forward:     m.forward,
		Models:      c.DomainModels(),
		Profile:     c.Profile(),
		Keys:        tollgate.KeyFormat{Prefix: c.KeyPrefix},
		Hasher:      tollgate.NewKeyHasher([]byte(c.KeySecret)),
		AdminToken:  c.AdminToken,
		KeyCacheTTL: c.KeyCacheTTL,
		LeaseTTL:    c.LeaseTTL,
		Logger:      m.Logger,
		Now:         m.Now,

		HistoryRetention: c.HistoryRetention,
		HistoryPath:      c.HistoryPath,
		UsagePath:        c.UsagePath,
	}
	h, err := m.API.Handler()
	if err != nil {
		return err
	}
	// /readyz: the store answers, and Redis when it is the limiter.
	m.API.Ready = m.Store.Ping
	if m.redis != nil {
		m.API.Ready = func(ctx context.Context) error {
			return errors.Join(m.Store.Ping(ctx), m.redis.Ready(ctx))
		}
		if m.bus != nil {
			m.API.Broadcast = func(ctx context.Context) error { return m.bus.Publish(ctx, "admin") }
			if err := m.bus.Subscribe(m.busCtx, func(string) { m.API.ForgetKeys() }); err != nil {
				m.Close()
				return err
			}
		}
	}
	if rebuild {
		if n, err := m.API.RebuildUsage(ctx); err != nil {
			m.Close()
			return fmt.Errorf("rebuild usage counters from the ledger: %w", err)
		} else if n > 0 {
			m.Logger.Info("usage counters rebuilt from the ledger", "groups", n)
		}
	}
	m.ln, err = net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", c.Listen, err)
	}
	m.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		IdleTimeout:       c.KeepaliveTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelWarn),
	}
	return nil
}

func (m *Main) forward(w http.ResponseWriter, r *http.Request, chain []*tollgate.Model, requestID string, hook httpapi.Hook) (httpapi.Upstream, error) {
	res, err := m.Proxy.ForwardHook(w, r, chain, requestID, upstream.Hook(hook))
	if err != nil {
		return httpapi.Upstream{}, err
	}
	return httpapi.Upstream{Model: res.Model, Status: res.Status, Latency: res.Latency}, nil
}

// Run serves until ctx ends, then stops accepting, lets in-flight requests
// and streams finish within the shutdown grace (streams left are closed
// with 1001), and closes everything.
func (m *Main) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- m.srv.Serve(m.ln) }()
	var ledger string
	if s, ok := m.Store.(interface{ LedgerSync() string }); ok { // both stores
		ledger = s.LedgerSync()
	}
	m.Logger.Info("tollgate listening", "addr", m.Addr(), "models", len(m.Config.Models), "ledger", ledger)
	select {
	case err := <-errc:
		m.Close()
		return err
	case <-ctx.Done():
	}
	m.API.Drain()
	grace := m.Config.ShutdownGrace
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	m.Logger.Info("shutting down", "grace", grace)
	// Shutdown does not wait for WebSocket streams (hijacked connections):
	// they get the same grace, then are closed with 1001, settled first.
	streams := make(chan struct{})
	go func() {
		defer close(streams)
		m.API.CloseStreams(sctx)
	}()
	err := m.srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		m.Logger.Warn("shutdown grace elapsed; closing remaining connections")
		m.srv.Close()
	}
	<-streams
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close releases the store and the proxy's connections.
func (m *Main) Close() error {
	var errs []error
	if m.API != nil {
		m.API.Close()
	}
	if m.Proxy != nil {
		m.Proxy.Close()
	}
	if m.busCancel != nil {
		m.busCancel()
	}
	if m.bus != nil {
		errs = append(errs, m.bus.Close())
		m.bus = nil
	}
	if m.redis != nil {
		errs = append(errs, m.redis.Close())
		m.redis = nil
	}
	if m.Store != nil {
		errs = append(errs, m.Store.Close())
		m.Store = nil
	}
	return errors.Join(errs...)
}

func openStore(ctx context.Context, b config.Backend, ledgerSync string) (tollgate.Store, error) {
	switch b.Kind {
	case config.SQLite:
		var opts []sqlite.Option
		if ledgerSync == config.LedgerSyncBackground {
			opts = append(opts, sqlite.WithBackgroundSync())
		}
		return sqlite.Open(ctx, b.Target, opts...)
	case config.Postgres:
		return postgres.Open(ctx, b.Target)
	default:
		return nil, fmt.Errorf("store: unknown kind %q", b.Kind)
	}
}
