package upstream_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/upstream"
	"github.com/valyala/fasthttp"
)

// The upstream answers 179 bytes of JSON, as in PERFORMANCE.md.
var benchAnswer = []byte(`{"model":"echo","output":"hello","usage":{"characters":5,"credits":1},"request_id":"00000000-0000-0000-0000-000000000000","latency_ms":0,"cached":false,"padding":"xxxxxxxxxxxxxx"}`)

func benchUpstream(b *testing.B) *httptest.Server {
	b.Helper()
	if len(benchAnswer) != 179 {
		b.Fatalf("answer is %d bytes", len(benchAnswer))
	}
	cl := strconv.Itoa(len(benchAnswer))
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{cl}
		w.Write(benchAnswer)
	}))
	b.Cleanup(up.Close)
	return up
}

// benchLoad sends GETs to base from 50 goroutines over a fasthttp client,
// which costs little next to the servers it measures.
func benchLoad(b *testing.B, base string) {
	b.Helper()
	u, _ := url.Parse(base)
	c := &fasthttp.HostClient{Addr: u.Host, MaxConns: 1024, NoDefaultUserAgentHeader: true}
	b.Cleanup(c.CloseIdleConnections)
	target := base + "/v1/hello"
	b.ReportAllocs()
	b.SetParallelism(25) // × GOMAXPROCS goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(target)
		req.Header.Set("X-API-Key", "tg_live_benchmark")
		for pb.Next() {
			if err := c.DoTimeout(req, resp, 10*time.Second); err != nil {
				b.Error(err)
				return
			}
			if resp.StatusCode() != 200 || len(resp.Body()) != len(benchAnswer) {
				b.Errorf("got %d, %d bytes", resp.StatusCode(), len(resp.Body()))
				return
			}
		}
	})
}

// BenchmarkDirect is the baseline: the load generator against the upstream.
func BenchmarkDirect(b *testing.B) {
	benchLoad(b, benchUpstream(b).URL)
}

// BenchmarkForward: load → net/http server → Proxy.Forward → upstream.
func BenchmarkForward(b *testing.B) {
	up := benchUpstream(b)
	p := upstream.New()
	b.Cleanup(func() { p.Close() })
	chain := []*tollgate.Model{{ID: "echo", Upstream: up.URL}}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := p.Forward(w, r, chain, "req-bench"); err != nil {
			w.WriteHeader(tollgate.Lookup(tollgate.ErrorCode(err)).Status)
		}
	}))
	b.Cleanup(front.Close)
	benchLoad(b, front.URL)
}

// BenchmarkReverseProxy: load → net/http server → httputil.ReverseProxy with
// a tuned Transport → upstream, doing the same header work as Forward.
func BenchmarkReverseProxy(b *testing.B) {
	up := benchUpstream(b)
	target, _ := url.Parse(up.URL)
	tr := &http.Transport{
		MaxIdleConns:        1000,
		MaxIdleConnsPerHost: 1000,
		IdleConnTimeout:     90 * time.Second,
	}
	b.Cleanup(tr.CloseIdleConnections)
	rp := &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			pr.Out.Header.Del("X-Api-Key")
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Set("X-Request-Id", "req-bench")
		},
		ModifyResponse: func(r *http.Response) error {
			r.Header.Set(upstream.HeaderModel, "echo")
			return nil
		},
	}
	front := httptest.NewServer(rp)
	b.Cleanup(front.Close)
	benchLoad(b, front.URL)
}

// BenchmarkForwardRecorder measures Forward alone, against a recorder: its
// own allocations, without the servers'.
func BenchmarkForwardRecorder(b *testing.B) {
	up := benchUpstream(b)
	p := upstream.New()
	b.Cleanup(func() { p.Close() })
	chain := []*tollgate.Model{{ID: "echo", Upstream: up.URL}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest("POST", "/v1/hello", strings.NewReader(`{"text":"hi"}`))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("X-Api-Key", "tg_live_benchmark")
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			r.Body = http.NoBody
			r.ContentLength = 0
			if _, err := p.Forward(w, r, chain, "req-bench"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}
