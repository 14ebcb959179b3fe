package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/pgtest"
	"github.com/tollgate/tollgate/internal/tcpproxy"
)

// The scale-out tests run N gateway replicas, in-process on their own ports
// (and one as a subprocess, to be killed), sharing one real PostgreSQL
// schema and one real Redis key prefix: N replicas must behave exactly like
// one.

// countingUpstream answers every request after the delay its X-Delay-Ms
// header asks for, and records the most requests it ever had in flight.
type countingUpstream struct {
	*httptest.Server
	in, max, total atomic.Int64
}

func startCountingUpstream(t testing.TB) *countingUpstream {
	u := &countingUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := u.in.Add(1)
		defer u.in.Add(-1)
		u.total.Add(1)
		for {
			m := u.max.Load()
			if n <= m || u.max.CompareAndSwap(m, n) {
				break
			}
		}
		io.Copy(io.Discard, r.Body)
		if ms, _ := strconv.Atoi(r.Header.Get("X-Delay-Ms")); ms > 0 {
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(u.Close)
	return u
}

// scaleOutEnv is one test's share of the real services: an isolated
// PostgreSQL schema and a Redis key prefix of its own.
type scaleOutEnv struct {
	t        *testing.T
	dsn      string
	redis    string // host:port
	prefix   string
	upstream *countingUpstream
}

func newScaleOutEnv(t *testing.T) *scaleOutEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("scale-out tests need PostgreSQL and Redis and take seconds")
	}
	redisURL := os.Getenv("TOLLGATE_TEST_REDIS")
	if redisURL == "" {
		t.Skip("TOLLGATE_TEST_REDIS not set: the scale-out tests need a real Redis (e.g. redis://127.0.0.1:6379/0); .ci/run sets it")
	}
	dsn := pgtest.DSN(t) // skips without TOLLGATE_TEST_POSTGRES
	opts, err := goredis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	e := &scaleOutEnv{t: t, dsn: dsn, redis: opts.Addr, prefix: "tgtest:" + rand.Text()[:10] + ":",
		upstream: startCountingUpstream(t)}
	t.Cleanup(func() { e.flushPrefix() })
	return e
}

// flushPrefix deletes this test's Redis keys (never the whole database:
// other tests share it). Deleting them mid-test is what a Redis restart
// or FLUSHALL does to the counters.
func (e *scaleOutEnv) flushPrefix() {
	c := goredis.NewClient(&goredis.Options{Addr: e.redis})
	defer c.Close()
	ctx := context.Background()
	iter := c.Scan(ctx, 0, e.prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if len(keys) > 0 {
		c.Del(ctx, keys...)
	}
}

// config renders a replica's config. redisAddr may be a fault proxy's.
// Tests that are not about Redis failing give its calls a generous
// timeout: a loaded -race run (every package at once on 2 CPUs) can take
// longer than the default 100 ms, open the breaker and turn an exact
// global limit into fail_open's per-replica share.
func (e *scaleOutEnv) config(listen, redisAddr string, replicas int, extra string) string {
	if !strings.Contains(extra, "limiter_timeout") {
		extra += "\nlimiter_timeout: 2s"
	}
	return fmt.Sprintf(`
listen: %s
store: %q
limiter: redis://%s/0
limiter_prefix: %q
replicas: %d
admin_token: %s
key_secret: %s
key_cache_ttl: 1m
%s
models:
  - {id: fast, feature: text, route: POST /v1/fast, upstream: %q, upstream_path: /fast, meter: {price: 1}}
  - {id: slow, feature: text, route: POST /v1/slow, upstream: %q, upstream_path: /slow, timeout: 60s}
plans:
  - {id: rpm100, rpm: 100, features: ["*"]}
  - {id: big, rpm: 1000000, concurrency: 20, features: ["*"]}
  - {id: open, rpm: 1000000, features: ["*"]}
  - {id: budget, rpm: 1000000, features: ["*"], billing_required: true, free_credits: 10}
`, listen, e.dsn, redisAddr, e.prefix, replicas, testAdmin, testSecret, extra, e.upstream.URL, e.upstream.URL)
}

// startReplica runs one in-process replica.
func (e *scaleOutEnv) startReplica(redisAddr string, replicas int, extra string) *gateway {
	t := e.t
	t.Helper()
	c, err := config.Parse([]byte(e.config("127.0.0.1:0", redisAddr, replicas, extra)), nil)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	g := &gateway{t: t, clock: &clock{}, done: make(chan error, 1)}
	g.main = &Main{Config: c, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
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

func (e *scaleOutEnv) startReplicas(n int, extra string) []*gateway {
	gs := make([]*gateway, n)
	for i := range gs {
		gs[i] = e.startReplica(e.redis, n, extra)
	}
	return gs
}

// blast sends n requests at once, the i-th to replicas[i % len], and
// returns the count of answers by status (0: no answer).
func blast(t *testing.T, replicas []*gateway, n int, path, key string, header map[string]string) map[int]int {
	t.Helper()
	var wg sync.WaitGroup
	codes := make(chan int, n)
	start := make(chan struct{})
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	defer client.CloseIdleConnections()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			codes <- post(client, replicas[i%len(replicas)].url+path, key, `{}`, header)
		}()
	}
	close(start)
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	return count
}

// TestScaleOutRateLimitIsGlobal: 3 replicas, 1,000 concurrent clients on
// one key limited to 100/min → 100 admitted in all, not 100 per replica.
// GCRA refills one request per 0.6 s, so a blast that takes d seconds may
// admit floor(d / 0.6) more; the bound is checked from the measured time.
func TestScaleOutRateLimitIsGlobal(t *testing.T) {
	e := newScaleOutEnv(t)
	rs := e.startReplicas(3, "")
	_, key, _ := rs[0].newOrg("acme", "rpm100", []string{"fast"}, nil)
	began := time.Now()
	count := blast(t, rs, 1000, "/v1/fast", key, nil)
	refill := int(time.Since(began) / (600 * time.Millisecond))
	if count[200] < 100 || count[200] > 100+refill || count[200]+count[429] != 1000 {
		t.Fatalf("answers %v over %v; want 100 (+%d refilled) × 200, the rest 429", count, time.Since(began), refill)
	}
	t.Logf("1,000 requests over 3 replicas in %v: %v", time.Since(began).Round(time.Millisecond), count)
}

// TestScaleOutConcurrencyCap: a cap of 20 per org × model, 500 overlapping
// slow requests spread over 3 replicas → the upstream never sees more than
// 20 at once; the rest are refused at once.
func TestScaleOutConcurrencyCap(t *testing.T) {
	e := newScaleOutEnv(t)
	rs := e.startReplicas(3, "")
	_, key, _ := rs[0].newOrg("acme", "big", []string{"slow"}, nil)
	count := blast(t, rs, 500, "/v1/slow", key, map[string]string{"X-Delay-Ms": "300"})
	if max := e.upstream.max.Load(); max > 20 {
		t.Errorf("upstream saw %d in flight, cap 20", max)
	}
	if count[200] < 20 || count[200]+count[429] != 500 {
		t.Errorf("answers %v; want at least 20 × 200, the rest 429", count)
	}
	t.Logf("500 slow requests over 3 replicas: %v; upstream max in flight %d", count, e.upstream.max.Load())
}

// TestScaleOutBudget: free credits for exactly 10 requests, 200 concurrent
// requests over 3 replicas → exactly 10 admitted, 10 in the ledger.
func TestScaleOutBudget(t *testing.T) {
	e := newScaleOutEnv(t)
	rs := e.startReplicas(3, "")
	_, key, _ := rs[0].newOrg("acme", "budget", []string{"fast"}, nil)
	count := blast(t, rs, 200, "/v1/fast", key, nil)
	if count[200] != 10 || count[402] != 190 {
		t.Fatalf("answers %v, want exactly 10 × 200 and 190 × 402", count)
	}
	u := rs[1].usage("acme")
	if c := creditsOf(u); c != 10 || requestsOf(u) != 10 {
		t.Errorf("ledger: %v credits over %d requests, want 10 over 10", c, requestsOf(u))
	}
}

// TestScaleOutCountersLost: Redis loses the counters (a restart, a
// FLUSHALL) after 6 of 10 credits are spent → they are rebuilt from the
// ledger, never read as zero: exactly 4 more requests are admitted.
func TestScaleOutCountersLost(t *testing.T) {
	e := newScaleOutEnv(t)
	rs := e.startReplicas(2, "")
	_, key, _ := rs[0].newOrg("acme", "budget", []string{"fast"}, nil)
	if count := blast(t, rs, 6, "/v1/fast", key, nil); count[200] != 6 {
		t.Fatalf("first 6: %v", count)
	}
	e.flushPrefix()
	// The first request to meet the loss is refused 503 (never charged
	// against counters read as zero) and starts a rebuild; probe one at a
	// time until it is done.
	admitted := 0
	waitFor(t, 5*time.Second, func() bool {
		r := rs[0].do("POST", "/v1/fast", map[string]string{"X-API-Key": key}, `{}`)
		if r.Status == 200 {
			admitted++
		} else if r.Status != 503 {
			t.Fatalf("while the counters are rebuilt: %d %s", r.Status, r.Body)
		}
		return r.Status != 503
	})
	count := blast(t, rs, 100, "/v1/fast", key, nil)
	admitted += count[200]
	if admitted != 4 || count[200]+count[402] != 100 {
		t.Fatalf("after the counters were lost: %d admitted in all (blast %v), want exactly 4", admitted, count)
	}
	if u := rs[0].usage("acme"); creditsOf(u) != 10 {
		t.Errorf("ledger holds %v credits, want 10", creditsOf(u))
	}
}

// TestScaleOutRevocation: a key revoked on one replica under load is
// refused by every replica within 1 s. The key cache TTL is a minute here,
// so only the broadcast can do it.
func TestScaleOutRevocation(t *testing.T) {
	e := newScaleOutEnv(t)
	rs := e.startReplicas(3, "")
	_, key, keyID := rs[0].newOrg("acme", "open", []string{"fast"}, nil)
	var revokedAt atomic.Int64 // unix nanos; 0 until the revoke answered
	lastOK := make([]atomic.Int64, len(rs))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for i := range rs {
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					sent := time.Now()
					req, _ := http.NewRequest("POST", rs[i].url+"/v1/fast", strings.NewReader(`{}`))
					req.Header.Set("X-API-Key", key)
					resp, err := client.Do(req)
					if err != nil {
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						lastOK[i].Store(sent.UnixNano())
					}
				}
			}()
		}
	}
	time.Sleep(300 * time.Millisecond) // load and warm caches on every replica
	for i := range rs {
		if lastOK[i].Load() == 0 {
			t.Fatalf("replica %d answered nothing before the revoke", i)
		}
	}
	rs[0].admin("POST", "/admin/keys/"+keyID+"/revoke", nil, 200)
	revokedAt.Store(time.Now().UnixNano())
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	for i := range rs {
		after := time.Duration(lastOK[i].Load() - revokedAt.Load())
		if after > time.Second {
			t.Errorf("replica %d admitted a request sent %v after the revoke", i, after)
		}
		if r := rs[i].do("POST", "/v1/fast", map[string]string{"X-API-Key": key}, `{}`); r.Status != 401 {
			t.Errorf("replica %d: %d after the revoke, want 401", i, r.Status)
		}
		t.Logf("replica %d: last success sent %v after the revoke answered", i, after.Round(time.Millisecond))
	}
}

// TestScaleOutRedisDown: the path to Redis is cut for one deployment
// (a fault proxy, so the shared Redis keeps running). With fail_open, rate
// limits fall back to each replica's share in memory while quotas and
// concurrency fail closed with 503 overloaded; with fail_closed, every
// limited request gets 503 + Retry-After. Nothing waits for a timeout,
// /readyz says not ready, and all is back within 5 s of Redis returning.
func TestScaleOutRedisDown(t *testing.T) {
	for _, policy := range []string{config.FailOpen, config.FailClosed} {
		t.Run(policy, func(t *testing.T) {
			e := newScaleOutEnv(t)
			proxy, err := tcpproxy.Start(e.redis)
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			extra := "limiter_failure: " + policy + "\nlimiter_timeout: 200ms"
			rs := []*gateway{e.startReplica(proxy.Addr(), 2, extra), e.startReplica(proxy.Addr(), 2, extra)}
			_, key, _ := rs[0].newOrg("acme", "rpm100", []string{"fast", "slow"}, nil)
			_, bigKey, _ := rs[0].newOrg("bigco", "big", []string{"slow"}, nil)
			if r := rs[0].do("POST", "/v1/fast", map[string]string{"X-API-Key": key}, `{}`); r.Status != 200 {
				t.Fatalf("before the cut: %d %s", r.Status, r.Body)
			}

			proxy.Cut()
			cut := time.Now()
			// Every answer comes quickly: no request waits on a dead Redis.
			var codes []int
			for i := 0; i < 60; i++ {
				began := time.Now()
				r := rs[i%2].do("POST", "/v1/fast", map[string]string{"X-API-Key": key}, `{}`)
				if d := time.Since(began); d > time.Second {
					t.Errorf("request %d took %v with Redis down", i, d)
				}
				codes = append(codes, r.Status)
				if r.Status == 503 {
					if ra := r.Header.Get("Retry-After"); ra == "" {
						t.Errorf("503 without Retry-After")
					}
					if c := r.JSON(t)["code"]; c != "overloaded" {
						t.Errorf("503 code %v, want overloaded", c)
					}
				}
			}
			count := map[int]int{}
			for _, c := range codes {
				count[c]++
			}
			switch policy {
			case config.FailOpen:
				// The key's model has a price: its free-credit-less plan
				// reserves nothing, but "fast" is metered, so the quota
				// step runs. Rate alone is checked on the slow model of
				// the open plan below.
				if count[200]+count[503] != 60 {
					t.Errorf("fail_open, metered model: %v", count)
				}
			case config.FailClosed:
				if count[503] != 60 {
					t.Errorf("fail_closed: %v, want 60 × 503", count)
				}
			}
			// Concurrency always fails closed.
			if r := rs[1].do("POST", "/v1/slow", map[string]string{"X-API-Key": bigKey}, `{}`); r.Status != 503 {
				t.Errorf("concurrency-limited request with Redis down: %d, want 503", r.Status)
			}
			for i, g := range rs {
				if r := g.do("GET", "/readyz", nil, ""); r.Status != 503 {
					t.Errorf("replica %d /readyz = %d with Redis down, want 503", i, r.Status)
				}
			}
			t.Logf("%s, %v after the cut: %v", policy, time.Since(cut).Round(time.Millisecond), count)

			proxy.Restore()
			restored := time.Now()
			waitFor(t, 5*time.Second, func() bool {
				for _, g := range rs {
					if g.do("GET", "/readyz", nil, "").Status != 200 {
						return false
					}
				}
				return rs[0].do("POST", "/v1/slow", map[string]string{"X-API-Key": bigKey}, `{}`).Status == 200
			})
			t.Logf("recovered %v after Redis returned", time.Since(restored).Round(time.Millisecond))
		})
	}
}

// TestScaleOutFailOpenShare: with Redis cut and fail_open, each of 2
// replicas admits its share of a key's limit, 100 ÷ 2 = 50, from memory.
func TestScaleOutFailOpenShare(t *testing.T) {
	e := newScaleOutEnv(t)
	proxy, err := tcpproxy.Start(e.redis)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	extra := "limiter_failure: fail_open\nlimiter_timeout: 200ms"
	rs := []*gateway{e.startReplica(proxy.Addr(), 2, extra), e.startReplica(proxy.Addr(), 2, extra)}
	_, key, _ := rs[0].newOrg("acme", "rpm100", []string{"slow"}, nil)
	proxy.Cut()
	for i, g := range rs {
		count := blast(t, []*gateway{g}, 80, "/v1/slow", key, nil)
		if count[200] < 50 || count[200] > 51 || count[429] != 80-count[200] {
			t.Errorf("replica %d with Redis down: %v, want its share of 50 × 200, the rest 429", i, count)
		}
	}
}

// TestScaleOutCrashedReplicaFreesSlots: a replica holding every slot of a
// concurrency cap is killed (SIGKILL, a real process): its leases expire
// and the other replicas admit again within lease TTL + heartbeat interval.
func TestScaleOutCrashedReplicaFreesSlots(t *testing.T) {
	e := newScaleOutEnv(t)
	const ttl = 3 * time.Second
	extra := "lease_ttl: " + ttl.String()
	live := e.startReplica(e.redis, 2, extra)
	_, key, _ := live.newOrg("acme", "big", []string{"slow"}, nil)

	addr := freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "replica.yaml")
	if err := os.WriteFile(cfg, []byte(e.config(addr, e.redis, 2, extra)), 0o600); err != nil {
		t.Fatal(err)
	}
	proc := startProcess(t, cfg, addr)
	defer proc.Process.Kill()
	doomed := &gateway{t: t, url: "http://" + addr}

	// Fill the cap of 20 through the doomed replica with requests the
	// upstream holds for a minute.
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 2 * time.Minute}
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", doomed.url+"/v1/slow", strings.NewReader(`{}`))
			req.Header.Set("X-API-Key", key)
			req.Header.Set("X-Delay-Ms", "60000")
			if resp, err := client.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	waitFor(t, 10*time.Second, func() bool { return e.upstream.in.Load() == 20 })
	if r := live.do("POST", "/v1/slow", map[string]string{"X-API-Key": key}, `{}`); r.Status != 429 {
		t.Fatalf("with 20 of 20 slots held elsewhere: %d, want 429", r.Status)
	}

	// Let the doomed replica heartbeat once, so the leases are not just
	// expiring on their first TTL, then kill it.
	time.Sleep(ttl/3 + 500*time.Millisecond)
	if err := proc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	proc.Wait()
	wg.Wait()
	var freedAfter time.Duration
	waitFor(t, ttl+ttl/3+3*time.Second, func() bool {
		r := live.do("POST", "/v1/slow", map[string]string{"X-API-Key": key}, `{}`)
		freedAfter = time.Since(killed)
		return r.Status == 200
	})
	if limit := ttl + ttl/3 + 500*time.Millisecond; freedAfter > limit {
		t.Errorf("slots free again %v after the kill, want within TTL + heartbeat interval (%v)", freedAfter, limit)
	}
	t.Logf("slots free again %v after the kill (TTL %v, heartbeat every %v)", freedAfter.Round(time.Millisecond), ttl, ttl/3)
}

// TestScaleOutRotation: a key rotated on one replica with no overlap is
// refused by every replica within 1 s (the broadcast; the key cache TTL
// is a minute), and its successor works on every replica at once.
func TestScaleOutRotation(t *testing.T) {
	e := newScaleOutEnv(t)
	rs := e.startReplicas(3, "")
	_, key, keyID := rs[0].newOrg("acme", "open", []string{"fast"}, nil)
	for i := range rs { // every replica caches the key
		if r := rs[i].do("POST", "/v1/fast", map[string]string{"X-API-Key": key}, `{}`); r.Status != 200 {
			t.Fatalf("replica %d before the rotation: %d %s", i, r.Status, r.Body)
		}
	}
	next := rs[1].admin("POST", "/admin/keys/"+keyID+"/rotate", map[string]any{"overlap": "0s"}, 201)["key"].(map[string]any)["key"].(string)
	rotated := time.Now()
	for i := range rs {
		if r := rs[i].do("POST", "/v1/fast", map[string]string{"X-API-Key": next}, `{}`); r.Status != 200 {
			t.Errorf("replica %d, the new key: %d %s", i, r.Status, r.Body)
		}
		waitFor(t, time.Second-time.Since(rotated), func() bool {
			return rs[i].do("POST", "/v1/fast", map[string]string{"X-API-Key": key}, `{}`).Status == 401
		})
	}
	t.Logf("every replica refuses the old key %v after the rotation answered", time.Since(rotated).Round(time.Millisecond))
}
