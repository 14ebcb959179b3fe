// Package loadtest is tollgate's load generator: a bounded HTTP/1.1 load
// generator for loopback targets, in two modes.
//
// Closed loop: N connections, each sending its next request as soon as the
// previous answer arrives. It measures throughput (requests/s); its latency
// hides queueing, because a slow answer also delays the requests behind it.
//
// Open loop: a fixed arrival rate R. Request i is due at t0 + i/R and its
// latency is measured from that intended time, not from when it was sent,
// so a stalled server (or generator) shows as latency instead of as a lower
// rate. Requests go out through a pool of at most MaxInFlight workers; a
// request due when all of them are busy is counted as dropped, not queued.
//
// The client is fasthttp's HostClient with a prebuilt request and no
// retries. Every run is bounded in time and in requests, and only loopback
// targets are accepted (checked on the URL and again on every connection).
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Mode is the load model.
type Mode string

const (
	Closed Mode = "closed" // N connections back to back: throughput
	Open   Mode = "open"   // a fixed arrival rate: latency from intended send time
)

// Bounds of a run.
const (
	MaxDuration    = 10 * time.Minute
	MaxConnections = 10_000
	MaxRate        = 1_000_000 // requests/s

	DefaultMaxRequests = 50_000_000
	DefaultMaxInFlight = 1000
	DefaultTimeout     = 5 * time.Second
)

// ErrNotLoopback is returned for a target that is not on loopback.
var ErrNotLoopback = errors.New("loadtest: target is not a loopback address (127.0.0.0/8, ::1, localhost)")

// Request is the request sent, built once before the run.
type Request struct {
	Method string // "" means GET
	URL    string // http://127.0.0.1:port/path
	Header [][2]string
	Body   []byte
}

// Config is one measurement.
type Config struct {
	Mode    Mode
	Request Request
	// Duration of the measurement. Required, at most MaxDuration.
	Duration time.Duration
	// Warmup runs the same load first, with its figures discarded. Zero
	// means none.
	Warmup time.Duration
	// Connections is the number of closed-loop workers, each on its own
	// connection. Required in Closed mode.
	Connections int
	// Rate is the open-loop arrival rate in requests/s. Required in Open mode.
	Rate float64
	// MaxInFlight caps open-loop concurrency. Zero means DefaultMaxInFlight.
	MaxInFlight int
	// MaxRequests stops a run after this many requests. Zero means
	// DefaultMaxRequests.
	MaxRequests int64
	// Timeout is the per-request timeout; a run ends at most this long
	// after Duration. Zero means DefaultTimeout.
	Timeout time.Duration
}

// Result is what one measurement saw.
type Result struct {
	Mode     Mode
	Duration time.Duration // measured window
	Rate     float64       // open loop: the intended rate

	// Sent counts requests sent; every one either got a response or is
	// counted in Errors.
	Sent int64
	// Responses counts responses by status code.
	Responses map[int]int64
	// Errors counts requests that got no response, by kind.
	Errors map[string]int64
	// Dropped counts open-loop requests not sent because MaxInFlight
	// requests were already in flight when they were due.
	Dropped int64
	// Latency holds every response's latency: from send (closed loop) or
	// from the intended send time (open loop) to the end of the response.
	Latency *Histogram
	// SendLag holds, open loop, how late each request was sent after its
	// intended time: the generator's own delay (dispatch, a busy worker
	// pool, scheduling), which Latency includes. Empty in closed loop.
	SendLag *Histogram
	// FromSend holds, open loop, each response's latency from when it was
	// actually sent: Latency without the generator's send lag, so the
	// server's own delays (its queueing included) without the generator's.
	FromSend *Histogram
}

// OK is the number of 2xx responses.
func (r *Result) OK() int64 {
	var n int64
	for s, c := range r.Responses {
		if s >= 200 && s < 300 {
			n += c
		}
	}
	return n
}

// Throughput is 2xx responses per second of the measured window.
func (r *Result) Throughput() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.OK()) / r.Duration.Seconds()
}

// Failures counts every request that did not end in a 2xx: transport
// errors, non-2xx responses and dropped requests.
func (r *Result) Failures() int64 {
	n := r.Dropped
	for _, c := range r.Errors {
		n += c
	}
	for s, c := range r.Responses {
		if s < 200 || s >= 300 {
			n += c
		}
	}
	return n
}

// Problems describes the failures, e.g. "429×3, timeout×1, dropped×2";
// empty when there were none.
func (r *Result) Problems() string {
	var parts []string
	for _, s := range sortedKeys(r.Responses) {
		if s < 200 || s >= 300 {
			parts = append(parts, fmt.Sprintf("%d×%d", s, r.Responses[s]))
		}
	}
	for _, k := range sortedKeys(r.Errors) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, r.Errors[k]))
	}
	if r.Dropped > 0 {
		parts = append(parts, fmt.Sprintf("dropped×%d", r.Dropped))
	}
	return strings.Join(parts, ", ")
}

func sortedKeys[K int | string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

// CheckLoopback returns ErrNotLoopback unless rawURL is an http:// URL on
// 127.0.0.0/8, ::1 or localhost.
func CheckLoopback(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("loadtest: target %q: %w", rawURL, err)
	}
	if u.Scheme != "http" {
		return fmt.Errorf("loadtest: target %q: only http:// is supported", rawURL)
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: %q", ErrNotLoopback, rawURL)
}

func (c *Config) validate() error {
	var errs []error
	if err := CheckLoopback(c.Request.URL); err != nil {
		errs = append(errs, err)
	}
	if c.Duration <= 0 || c.Duration > MaxDuration {
		errs = append(errs, fmt.Errorf("loadtest: duration %v: must be in (0, %v]", c.Duration, MaxDuration))
	}
	if c.Warmup < 0 || c.Warmup > MaxDuration {
		errs = append(errs, fmt.Errorf("loadtest: warmup %v: must be in [0, %v]", c.Warmup, MaxDuration))
	}
	if c.Timeout < 0 || c.MaxRequests < 0 || c.MaxInFlight < 0 {
		errs = append(errs, errors.New("loadtest: timeout, max requests and max in flight must not be negative"))
	}
	switch c.Mode {
	case Closed:
		if c.Connections <= 0 || c.Connections > MaxConnections {
			errs = append(errs, fmt.Errorf("loadtest: connections %d: must be in [1, %d]", c.Connections, MaxConnections))
		}
	case Open:
		if c.Rate <= 0 || c.Rate > MaxRate {
			errs = append(errs, fmt.Errorf("loadtest: rate %v: must be in (0, %d] requests/s", c.Rate, MaxRate))
		}
		if c.MaxInFlight > MaxConnections {
			errs = append(errs, fmt.Errorf("loadtest: max in flight %d: must be at most %d", c.MaxInFlight, MaxConnections))
		}
	default:
		errs = append(errs, fmt.Errorf("loadtest: mode %q: want %q or %q", c.Mode, Closed, Open))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxRequests == 0 {
		c.MaxRequests = DefaultMaxRequests
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.Request.Method == "" {
		c.Request.Method = "GET"
	}
	return c
}

// Run performs one measurement (after its warmup) and returns what it saw.
// It stops by itself after Warmup + Duration (+ at most Timeout for the
// requests in flight), after MaxRequests, or when ctx ends.
func Run(ctx context.Context, c Config) (*Result, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	u, _ := url.Parse(c.Request.URL)
	conns := c.Connections
	if c.Mode == Open {
		conns = c.MaxInFlight
	}
	hc := &fasthttp.HostClient{
		Addr:                          u.Host,
		MaxConns:                      conns,
		MaxConnWaitTimeout:            c.Timeout,
		MaxIdemponentCallAttempts:     1, // a retry would hide an error
		ReadTimeout:                   c.Timeout,
		WriteTimeout:                  c.Timeout,
		MaxIdleConnDuration:           time.Minute,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		DialTimeout:                   dialLoopback,
	}
	defer hc.CloseIdleConnections()

	tmpl := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(tmpl)
	tmpl.SetRequestURI(c.Request.URL)
	tmpl.Header.SetMethod(c.Request.Method)
	for _, h := range c.Request.Header {
		tmpl.Header.Set(h[0], h[1])
	}
	if len(c.Request.Body) > 0 {
		tmpl.SetBody(c.Request.Body)
	}

	run := func(d time.Duration, max int64) *Result {
		if c.Mode == Open {
			return runOpen(ctx, hc, tmpl, c, d, max)
		}
		return runClosed(ctx, hc, tmpl, c, d, max)
	}
	if c.Warmup > 0 {
		run(c.Warmup, c.MaxRequests)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return run(c.Duration, c.MaxRequests), ctx.Err()
}

// dialLoopback dials addr and refuses a connection whose peer is not on
// loopback (e.g. "localhost" resolving elsewhere).
func dialLoopback(addr string, timeout time.Duration) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	if a, ok := conn.RemoteAddr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
		conn.Close()
		return nil, fmt.Errorf("%w: %s", ErrNotLoopback, conn.RemoteAddr())
	}
	return conn, nil
}

// tally collects one run's counts from many goroutines.
type tally struct {
	latency Histogram
	lag     Histogram
	service Histogram
	sent    atomic.Int64
	dropped atomic.Int64
	status  [600]atomic.Int64 // status codes 100-599; 0 holds any other

	mu     sync.Mutex
	errors map[string]int64
}

func (t *tally) response(status int, latency time.Duration) {
	if status < 100 || status >= len(t.status) {
		status = 0
	}
	t.status[status].Add(1)
	t.latency.Record(latency)
}

func (t *tally) error(err error) {
	k := errorKind(err)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.errors == nil {
		t.errors = make(map[string]int64)
	}
	if _, ok := t.errors[k]; !ok && len(t.errors) >= 16 {
		k = "other"
	}
	t.errors[k]++
}

func (t *tally) result(mode Mode, d time.Duration) *Result {
	r := &Result{Mode: mode, Duration: d, Sent: t.sent.Load(), Dropped: t.dropped.Load(),
		Responses: make(map[int]int64), Errors: make(map[string]int64), Latency: &t.latency, SendLag: &t.lag, FromSend: &t.service}
	for s := range t.status {
		if n := t.status[s].Load(); n > 0 {
			r.Responses[s] = n
		}
	}
	t.mu.Lock()
	for k, n := range t.errors {
		r.Errors[k] = n
	}
	t.mu.Unlock()
	return r
}

// errorKind is a short, bounded name for a transport error.
func errorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return "no free connection"
	case errors.Is(err, fasthttp.ErrConnectionClosed):
		return "connection closed"
	case errors.Is(err, ErrNotLoopback):
		return "not loopback"
	}
	s := err.Error()
	for _, k := range []string{"connection refused", "connection reset", "broken pipe"} {
		if strings.Contains(s, k) {
			return k
		}
	}
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}
