package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate"
)

// route is one model's public route: the request path of DESIGN.md in
// front of the model's upstream chain.
type route struct {
	s       *Server
	model   *tollgate.Model
	chain   []*tollgate.Model
	profile tollgate.Profile
	rateKey string
	// ok counts answered requests by upstream status, resolved lazily.
	okByStatus sync.Map // int -> prometheus.Counter
}

func (s *Server) newRoute(m *tollgate.Model) (*route, error) {
	chain := []*tollgate.Model{m}
	for _, id := range m.Fallbacks {
		fb, ok := s.models[id]
		if !ok {
			return nil, fmt.Errorf("httpapi: model %s: unknown fallback %q", m.ID, id)
		}
		chain = append(chain, fb)
	}
	return &route{
		s:       s,
		model:   m,
		chain:   chain,
		profile: s.Profile.WithOverrides(m.Profile, m.Statuses),
	}, nil
}

func (rt *route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := rt.s
	id := newRequestID()
	w.Header().Set("X-Request-Id", id)
	s.metrics.inFlight.Inc()
	defer s.metrics.inFlight.Dec()

	up, err := rt.serve(w, r, id)
	if err != nil {
		code, status := s.writeError(w, r, rt.profile, err, id)
		s.metrics.requests.WithLabelValues(rt.model.ID, string(code), strconv.Itoa(status)).Inc()
		return
	}
	s.metrics.upstream.WithLabelValues(up.Model.ID).Observe(up.Latency.Seconds())
	rt.countOK(up.Status)
}

func (rt *route) countOK(status int) {
	c, ok := rt.okByStatus.Load(status)
	if !ok {
		c, _ = rt.okByStatus.LoadOrStore(status,
			rt.s.metrics.requests.WithLabelValues(rt.model.ID, "ok", strconv.Itoa(status)))
	}
	c.(prometheus.Counter).Inc()
}

// serve walks the request path. Each step passes or returns one catalog
// error; nothing after a failing step runs.
func (rt *route) serve(w http.ResponseWriter, r *http.Request, requestID string) (Upstream, error) {
	s := rt.s
	ctx := r.Context()

	// Authenticate.
	cred, err := credential(r)
	if err != nil {
		return Upstream{}, err
	}
	access, err := s.authenticate(ctx, cred)
	if err != nil {
		return Upstream{}, err
	}
	// Authorize.
	if err := access.Authorize(rt.model); err != nil {
		return Upstream{}, err
	}
	// Rate limit.
	now := s.now()
	dec, err := s.Limiter.AllowRate(ctx, "rate:"+access.Key.ID, tollgate.PerMinute(access.RPM()), now)
	if dec.Limit > 0 {
		setRateHeaders(w.Header(), dec)
	}
	if err != nil {
		if tollgate.ErrorCode(err) == tollgate.CodeRateLimitExceeded {
			s.counters.rateDeny.Inc()
		} else {
			s.counters.rateErr.Inc()
		}
		return Upstream{}, err
	}
	s.counters.rateAllow.Inc()

	// Concurrency.
	if limit := access.ConcurrencyLimit(rt.model.ID); limit > 0 {
		release, err := s.acquire(ctx, "conc:"+access.Org.ID+":"+rt.model.ID, limit, now, rt.model.UpstreamTimeout())
		if err != nil {
			return Upstream{}, err
		}
		defer release()
	}

	// Proxy.
	return s.Forward(w, r, rt.chain, requestID)
}

// acquire takes a concurrency lease and returns its release func. The lease
// is released once: on return, or as soon as the client goes away; a
// request that may outlive a third of the lease TTL heartbeats it.
func (s *Server) acquire(ctx context.Context, key string, limit int, now time.Time, timeout time.Duration) (func(), error) {
	lease, err := s.Limiter.Acquire(ctx, key, limit, now)
	if err != nil {
		if tollgate.ErrorCode(err) == tollgate.CodeConcurrencyLimitExceeded {
			s.counters.concDeny.Inc()
		} else {
			s.counters.concErr.Inc()
		}
		return nil, err
	}
	s.counters.concAllow.Inc()

	var once sync.Once
	var hb *heartbeat
	release := func() {
		once.Do(func() {
			if hb != nil {
				hb.stop()
			}
			// The request context may be gone; releasing must not be.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if err := s.Limiter.Release(rctx, lease); err != nil {
				s.logger().Warn("release lease", "key", key, "err", err)
			}
		})
	}
	if timeout > s.LeaseTTL/3 {
		hb = s.startHeartbeat(ctx, lease)
	}
	stop := context.AfterFunc(ctx, release)
	return func() {
		stop()
		release()
	}, nil
}

// heartbeat extends a lease every LeaseTTL/3 until stopped.
type heartbeat struct {
	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
}

func (s *Server) startHeartbeat(ctx context.Context, lease tollgate.Lease) *heartbeat {
	hb := &heartbeat{}
	every := s.LeaseTTL / 3
	var beat func()
	beat = func() {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), every)
		next, err := s.Limiter.Heartbeat(hctx, lease, s.now())
		cancel()
		if err != nil {
			s.logger().Warn("lease heartbeat", "key", lease.Key, "err", err)
			return
		}
		lease = next
		hb.mu.Lock()
		defer hb.mu.Unlock()
		if !hb.stopped {
			hb.timer = time.AfterFunc(every, beat)
		}
	}
	hb.mu.Lock()
	hb.timer = time.AfterFunc(every, beat)
	hb.mu.Unlock()
	return hb
}

func (hb *heartbeat) stop() {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	hb.stopped = true
	hb.timer.Stop()
}

func setRateHeaders(h http.Header, d tollgate.RateDecision) {
	h["X-Ratelimit-Limit"] = []string{strconv.Itoa(d.Limit)}
	h["X-Ratelimit-Remaining"] = []string{strconv.Itoa(max(d.Remaining, 0))}
	reset := d.ResetAt.Unix()
	if d.ResetAt.Nanosecond() > 0 {
		reset++
	}
	h["X-Ratelimit-Reset"] = []string{strconv.FormatInt(reset, 10)}
}
