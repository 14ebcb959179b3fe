package loadtest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCheckLoopback(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8080/v1/hello", true},
		{"http://127.0.0.2/", true},
		{"http://[::1]:9000/x", true},
		{"http://localhost:8080/", true},
		{"http://LocalHost/", true},
		{"http://10.0.0.1:8080/", false},
		{"http://0.0.0.0:8080/", false},
		{"http://192.168.1.10/", false},
		{"http://example.com/", false},
		{"http://localhost.example.com/", false},
		{"http://[::]:80/", false},
		{"https://127.0.0.1/", false},
		{"127.0.0.1:8080", false},
		{"", false},
	}
	for _, tt := range tests {
		err := CheckLoopback(tt.url)
		if (err == nil) != tt.ok {
			t.Errorf("CheckLoopback(%q) = %v, want ok %v", tt.url, err, tt.ok)
		}
	}
}

func TestRunRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"http://10.255.255.1:80/", "http://example.com/"} {
		start := time.Now()
		_, err := Run(context.Background(), Config{Mode: Closed, Connections: 1, Duration: time.Second,
			Request: Request{URL: u}})
		if !errors.Is(err, ErrNotLoopback) {
			t.Errorf("Run(%s) = %v, want ErrNotLoopback", u, err)
		}
		if time.Since(start) > 100*time.Millisecond {
			t.Errorf("Run(%s) took %v: it should refuse before sending", u, time.Since(start))
		}
	}
}

func TestConfigBounds(t *testing.T) {
	t.Parallel()
	ok := Request{URL: "http://127.0.0.1:1/"}
	for _, c := range []Config{
		{Mode: Closed, Request: ok, Connections: 1},                      // no duration
		{Mode: Closed, Request: ok, Connections: 1, Duration: time.Hour}, // too long
		{Mode: Closed, Request: ok, Duration: time.Second},               // no connections
		{Mode: Closed, Request: ok, Connections: MaxConnections + 1, Duration: time.Second},
		{Mode: Open, Request: ok, Duration: time.Second}, // no rate
		{Mode: Open, Request: ok, Duration: time.Second, Rate: 2 * MaxRate},
		{Mode: "wrk", Request: ok, Duration: time.Second},
	} {
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("Run(%+v) accepted", c)
		}
	}
}

// counter is a test upstream that counts requests, statuses and connections.
type counter struct {
	requests atomic.Int64
	teapots  atomic.Int64
	conns    atomic.Int64
}

func (c *counter) start(t *testing.T) *httptest.Server {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.requests.Add(1)%10 == 0 {
			c.teapots.Add(1)
			w.WriteHeader(http.StatusTeapot)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			c.conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func TestClosedLoopCounts(t *testing.T) {
	t.Parallel()
	var c counter
	srv := c.start(t)
	const conns = 4
	r, err := Run(context.Background(), Config{Mode: Closed, Connections: conns, Duration: 300 * time.Millisecond,
		Request: Request{URL: srv.URL + "/v1/hello", Header: [][2]string{{"X-API-Key", "k"}}}})
	if err != nil {
		t.Fatal(err)
	}
	ok, teapots := r.Responses[200], r.Responses[http.StatusTeapot]
	if len(r.Errors) != 0 || r.Dropped != 0 {
		t.Errorf("errors %v, dropped %d", r.Errors, r.Dropped)
	}
	if ok+teapots != r.Sent || int64(r.Latency.Count()) != r.Sent {
		t.Errorf("sent %d, responses %v, latencies %d: every sent request must be accounted for", r.Sent, r.Responses, r.Latency.Count())
	}
	// The server also saw the requests in flight when the window closed
	// (at most one per connection), which are not counted.
	if n := c.requests.Load(); n < r.Sent || n > r.Sent+conns {
		t.Errorf("server saw %d requests, generator counted %d", n, r.Sent)
	}
	if n := c.teapots.Load(); teapots < n-conns || teapots > n {
		t.Errorf("counted %d 418s, server sent %d", teapots, n)
	}
	if r.OK() != ok || r.Failures() != teapots {
		t.Errorf("OK %d, Failures %d; want %d, %d", r.OK(), r.Failures(), ok, teapots)
	}
	if got := c.conns.Load(); got != conns {
		t.Errorf("%d connections, want %d", got, conns)
	}
	if r.Duration < 300*time.Millisecond || r.Duration > 400*time.Millisecond {
		t.Errorf("window %v, want 300ms", r.Duration)
	}
	if want := float64(ok) / r.Duration.Seconds(); r.Throughput() != want {
		t.Errorf("throughput %v, want %v", r.Throughput(), want)
	}
}

func TestClosedLoopMaxRequests(t *testing.T) {
	var c counter
	srv := c.start(t)
	r, err := Run(context.Background(), Config{Mode: Closed, Connections: 3, Duration: 10 * time.Second,
		MaxRequests: 100, Request: Request{URL: srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != 100 || c.requests.Load() != 100 || int64(r.Latency.Count()) != 100 {
		t.Errorf("sent %d, server saw %d, latencies %d; want 100", r.Sent, c.requests.Load(), r.Latency.Count())
	}
	if r.Duration > 5*time.Second {
		t.Errorf("took %v: MaxRequests must end the run", r.Duration)
	}
}

// stallServer answers at once, except that 300 ms after start it stalls
// every request for 200 ms, once (as a GC pause or a lock would).
func stallServer(t *testing.T, start time.Time) *httptest.Server {
	var mu sync.RWMutex
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if time.Since(start) > 300*time.Millisecond {
			once.Do(func() {
				mu.Lock()
				time.AfterFunc(200*time.Millisecond, mu.Unlock)
			})
		}
		mu.RLock()
		mu.RUnlock()
		w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// A 200 ms stall at a steady 500 requests/s delays the ~100 requests due
// during it: open loop shows it in p99 and p99.9, while closed loop on one
// connection records it as a single slow sample (coordinated omission).
func TestOpenLoopIncludesQueueing(t *testing.T) {
	t.Parallel()
	t.Run("open", func(t *testing.T) {
		t.Parallel()
		srv := stallServer(t, time.Now())
		r, err := Run(context.Background(), Config{Mode: Open, Rate: 500, Duration: 700 * time.Millisecond,
			Request: Request{URL: srv.URL}})
		if err != nil {
			t.Fatal(err)
		}
		if r.Sent+r.Dropped != 350 || r.Failures() != 0 {
			t.Errorf("sent %d + dropped %d, want 350; failures: %s", r.Sent, r.Dropped, r.Problems())
		}
		h := r.Latency
		t.Logf("open loop: p50 %v p90 %v p99 %v p99.9 %v max %v", h.Percentile(0.5), h.Percentile(0.9), h.Percentile(0.99), h.Percentile(0.999), h.Max())
		if p := h.Percentile(0.999); p < 200*time.Millisecond {
			t.Errorf("p99.9 = %v, want ≥ 200ms", p)
		}
		if p := h.Percentile(0.99); p < 150*time.Millisecond {
			t.Errorf("p99 = %v, want ≥ 150ms: the requests queued behind the stall", p)
		}
		if p := h.Percentile(0.5); p > 100*time.Millisecond {
			t.Errorf("p50 = %v: most requests should not be affected", p)
		}
		// The stall was the server's: requests went out on time, so the
		// latency from the actual send shows it too.
		if r.SendLag.Count() != uint64(r.Sent) || r.FromSend.Count() != h.Count() || r.FromSend.Max() > h.Max() {
			t.Errorf("send lag %d values, from send %d (max %v); want %d and %d (max ≤ %v)",
				r.SendLag.Count(), r.FromSend.Count(), r.FromSend.Max(), r.Sent, h.Count(), h.Max())
		}
		if p := r.FromSend.Percentile(0.99); p < 150*time.Millisecond {
			t.Errorf("p99 from send = %v, want ≥ 150ms", p)
		}
	})
	t.Run("closed", func(t *testing.T) {
		t.Parallel()
		srv := stallServer(t, time.Now())
		r, err := Run(context.Background(), Config{Mode: Closed, Connections: 1, Duration: 700 * time.Millisecond,
			Request: Request{URL: srv.URL}})
		if err != nil {
			t.Fatal(err)
		}
		h := r.Latency
		t.Logf("closed loop: %d requests, p99 %v max %v", r.Sent, h.Percentile(0.99), h.Max())
		if h.Max() < 200*time.Millisecond || h.Percentile(0.99) > 50*time.Millisecond {
			t.Errorf("closed loop: max %v, p99 %v; want the stall as one sample (max ≥ 200ms, p99 < 50ms)", h.Max(), h.Percentile(0.99))
		}
	})
}

func TestOpenLoopDropsWhenSaturated(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
	}))
	t.Cleanup(srv.Close)
	// 2 workers × 50 ms serve at most 40 requests/s; 200/s are due.
	r, err := Run(context.Background(), Config{Mode: Open, Rate: 200, Duration: 500 * time.Millisecond,
		MaxInFlight: 2, Request: Request{URL: srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent+r.Dropped != 100 || r.Dropped < 60 || r.Sent > 30 {
		t.Errorf("sent %d, dropped %d; want ≤ 30 sent and the rest of 100 dropped", r.Sent, r.Dropped)
	}
	if r.Failures() != r.Dropped || r.Responses[200] != r.Sent {
		t.Errorf("failures %d (%s), responses %v", r.Failures(), r.Problems(), r.Responses)
	}
}

func TestRunStopsOnContext(t *testing.T) {
	t.Parallel()
	var c counter
	srv := c.start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	for _, cfg := range []Config{
		{Mode: Closed, Connections: 2, Duration: time.Minute, Request: Request{URL: srv.URL}},
		{Mode: Open, Rate: 100, Duration: time.Minute, Request: Request{URL: srv.URL}},
	} {
		if _, err := Run(ctx, cfg); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: err = %v, want the context's", cfg.Mode, err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v after the context ended", d)
	}
}

func TestTimeoutIsAnError(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	r, err := Run(context.Background(), Config{Mode: Open, Rate: 20, Duration: 200 * time.Millisecond,
		Timeout: 100 * time.Millisecond, Request: Request{URL: srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != 4 || r.Errors["timeout"] != 4 || r.Latency.Count() != 0 {
		t.Errorf("sent %d, errors %v, latencies %d; want 4 timeouts", r.Sent, r.Errors, r.Latency.Count())
	}
}
