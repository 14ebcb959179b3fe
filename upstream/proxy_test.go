package upstream_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/upstream"
)

// model returns a model routed to base.
func model(id, base string) *tollgate.Model {
	return &tollgate.Model{ID: id, Method: "POST", Path: "/v1/" + id, Upstream: base}
}

// refusedURL returns a loopback URL nothing listens on.
func refusedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func newProxy(t *testing.T) *upstream.Proxy {
	t.Helper()
	p := upstream.New()
	t.Cleanup(func() { p.Close() })
	return p
}

// forward calls p.Forward with a recorder.
func forward(t *testing.T, p *upstream.Proxy, r *http.Request, chain ...*tollgate.Model) (*httptest.ResponseRecorder, upstream.Result, error) {
	t.Helper()
	rec := httptest.NewRecorder()
	res, err := p.Forward(rec, r, chain, "req-123")
	return rec, res, err
}

// front serves p in front of chain with a real net/http server; errors
// are answered with their code as the body and the catalog status.
func front(t *testing.T, p *upstream.Proxy, chain ...*tollgate.Model) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := p.Forward(w, r, chain, "req-front"); err != nil {
			var e *tollgate.Error
			if errors.As(err, &e) && w.Header().Get(upstream.HeaderModel) == "" {
				w.WriteHeader(tollgate.Lookup(e.Code).Status)
				io.WriteString(w, string(e.Code))
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func wantCode(t *testing.T, err error, want tollgate.Code) {
	t.Helper()
	if got := tollgate.ErrorCode(err); got != want {
		t.Fatalf("error code = %q (%v), want %q", got, err, want)
	}
}

// wantNothingWritten checks that a failed Forward left the writer alone.
func wantNothingWritten(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Body.Len() != 0 || len(rec.Header()) != 0 {
		t.Fatalf("failed Forward wrote a response: headers %v, body %q", rec.Header(), rec.Body.String())
	}
}

func TestForwardPassThrough(t *testing.T) {
	for _, status := range []int{200, 201, 302, 400, 404, 422, 429} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			body := fmt.Sprintf(`{"status":%d}`, status)
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("X-Upstream", "yes")
				w.Header().Add("Set-Cookie", "a=1")
				w.Header().Add("Set-Cookie", "b=2")
				w.Header().Set("X-Request-Id", "upstream-id")
				w.WriteHeader(status)
				io.WriteString(w, body)
			}))
			defer up.Close()
			p := newProxy(t)
			m := model("echo", up.URL)
			r := httptest.NewRequest("POST", "/v1/echo", strings.NewReader(`{"text":"hi"}`))
			rec := httptest.NewRecorder()
			rec.Header().Set("X-Request-Id", "gateway-id") // set by the gateway: wins
			res, err := p.Forward(rec, r, []*tollgate.Model{m}, "gateway-id")
			if err != nil {
				t.Fatal(err)
			}
			if rec.Code != status || rec.Body.String() != body {
				t.Fatalf("got %d %q, want %d %q", rec.Code, rec.Body.String(), status, body)
			}
			h := rec.Header()
			for k, want := range map[string][]string{
				"Content-Type":       {"application/json"},
				"X-Upstream":         {"yes"},
				"Set-Cookie":         {"a=1", "b=2"},
				"X-Request-Id":       {"gateway-id"},
				"Content-Length":     {strconv.Itoa(len(body))},
				upstream.HeaderModel: {"echo"},
			} {
				if diff := cmp.Diff(h[k], want); diff != "" {
					t.Errorf("header %s (-got +want):\n%s", k, diff)
				}
			}
			if _, ok := h["Connection"]; ok {
				t.Errorf("hop-by-hop Connection header passed: %v", h)
			}
			want := upstream.Result{Model: m, Status: status, Attempts: 1, BytesOut: int64(len(body)), Latency: res.Latency}
			if diff := cmp.Diff(res, want); diff != "" || res.Latency <= 0 {
				t.Errorf("result (-got +want):\n%s latency %v", diff, res.Latency)
			}
		})
	}
}

func TestForwardRequest(t *testing.T) {
	var (
		mu   sync.Mutex
		got  *http.Request
		body []byte
	)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, body = r, b
		mu.Unlock()
		w.WriteHeader(204)
	}))
	defer up.Close()
	upHost := strings.TrimPrefix(up.URL, "http://")

	tests := []struct {
		name     string
		base     string
		upPath   string
		target   string
		wantURI  string
		withBody bool
	}{
		{"path and query", up.URL, "", "/v1/echo?lang=en&x=%2F", "/v1/echo?lang=en&x=%2F", true},
		{"upstream path", up.URL, "/generate", "/v1/models/tts?a=1", "/generate?a=1", true},
		{"base path", up.URL + "/api/", "", "/v1/echo", "/api/v1/echo", false},
		{"escaped path", up.URL, "", "/v1/a%2Fb", "/v1/a%2Fb", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProxy(t)
			m := model("echo", tt.base)
			m.UpstreamPath = tt.upPath
			var rb io.Reader
			if tt.withBody {
				rb = strings.NewReader("payload")
			}
			r := httptest.NewRequest("POST", tt.target, rb)
			r.RemoteAddr = "192.0.2.7:5555"
			r.Host = "api.example.com"
			r.Header.Set("X-API-Key", "tg_live_secret")
			r.Header.Set("Authorization", "Bearer tg_live_secret")
			r.Header["x-api-key"] = []string{"lowercase-secret"} // not canonical
			r.Header.Set("Cookie", "session=secret")
			r.Header.Set("Proxy-Authorization", "Basic secret")
			r.Header.Set("X-Request-Id", "client-chosen")
			r.Header.Set("X-Forwarded-For", "10.0.0.1")
			r.Header.Set("Connection", "X-Hop")
			r.Header.Set("X-Hop", "hop")
			r.Header.Set("Keep-Alive", "timeout=5")
			r.Header.Set("Te", "trailers")
			r.Header.Set("Content-Type", "text/plain")
			r.Header.Add("X-Custom", "1")
			r.Header.Add("X-Custom", "2")
			r.Header.Set("User-Agent", "sdk/1.0")
			rec, _, err := forward(t, p, r, m)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Code != 204 {
				t.Fatalf("status %d", rec.Code)
			}
			mu.Lock()
			defer mu.Unlock()
			if got.RequestURI != tt.wantURI {
				t.Errorf("upstream request URI %q, want %q", got.RequestURI, tt.wantURI)
			}
			if got.Host != upHost {
				t.Errorf("upstream Host %q, want %q", got.Host, upHost)
			}
			for _, k := range []string{"X-Api-Key", "Authorization", "Cookie", "Proxy-Authorization", "X-Hop", "Keep-Alive", "Te"} {
				if v, ok := got.Header[k]; ok {
					t.Errorf("upstream saw %s: %q", k, v)
				}
			}
			for k, want := range map[string][]string{
				"X-Request-Id":      {"req-123"},
				"X-Forwarded-For":   {"10.0.0.1, 192.0.2.7"},
				"X-Forwarded-Proto": {"http"},
				"X-Forwarded-Host":  {"api.example.com"},
				"Content-Type":      {"text/plain"},
				"X-Custom":          {"1", "2"},
				"User-Agent":        {"sdk/1.0"},
			} {
				if diff := cmp.Diff(got.Header[k], want); diff != "" {
					t.Errorf("upstream header %s (-got +want):\n%s", k, diff)
				}
			}
			wantBody := ""
			if tt.withBody {
				wantBody = "payload"
			}
			if string(body) != wantBody || got.Method != "POST" {
				t.Errorf("upstream got %s body %q, want POST %q", got.Method, body, wantBody)
			}
		})
	}
}

func TestForwardHead(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "42")
		w.Header().Set("X-Method", r.Method)
	}))
	defer up.Close()
	p := newProxy(t)
	for range 3 { // the connection stays reusable after a body-less answer
		rec, _, err := forward(t, p, httptest.NewRequest("HEAD", "/x", nil), model("m", up.URL))
		if err != nil {
			t.Fatal(err)
		}
		if rec.Code != 200 || rec.Header().Get("X-Method") != "HEAD" || rec.Header().Get("Content-Length") != "42" || rec.Body.Len() != 0 {
			t.Fatalf("got %d %v %q", rec.Code, rec.Header(), rec.Body.String())
		}
	}
}

func TestForwardTLS(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secure")
	}))
	defer up.Close()
	pool := x509.NewCertPool()
	pool.AddCert(up.Certificate())
	p := newProxy(t)
	p.TLSConfig = &tls.Config{RootCAs: pool}
	rec, _, err := forward(t, p, httptest.NewRequest("GET", "/x", nil), model("m", up.URL))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Body.String() != "secure" {
		t.Fatalf("body %q", rec.Body.String())
	}
}

func TestForwardKeepAlive(t *testing.T) {
	var conns atomic.Int32
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	defer up.Close()
	p := newProxy(t)
	m := model("m", up.URL)
	for range 20 {
		if _, _, err := forward(t, p, httptest.NewRequest("POST", "/x", strings.NewReader("b")), m); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 sequential requests opened %d upstream connections, want 1", n)
	}
}

// pipeBody is a request body the test writes while the proxy reads it.
func TestForwardStreamsUpload(t *testing.T) {
	const size = 50 << 20
	for _, known := range []bool{true, false} {
		t.Run(fmt.Sprintf("content-length=%v", known), func(t *testing.T) {
			firstBytes := make(chan struct{})
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				buf := make([]byte, 64<<10)
				var n int64
				once := sync.Once{}
				for {
					k, err := r.Body.Read(buf)
					n += int64(k)
					if n > 0 {
						once.Do(func() { close(firstBytes) })
					}
					if err != nil {
						break
					}
				}
				fmt.Fprintf(w, "%d", n)
			}))
			defer up.Close()
			p := newProxy(t)
			// Two models: a large body is still streamed, not buffered.
			srv := front(t, p, model("stt", up.URL), model("stt-2", up.URL))

			pr, pw := io.Pipe()
			go func() {
				chunk := bytes.Repeat([]byte("a"), 1<<20)
				pw.Write(chunk)
				// The upstream must see bytes before the client sends the rest.
				select {
				case <-firstBytes:
				case <-time.After(10 * time.Second):
					pw.CloseWithError(errors.New("upstream saw nothing after 1 MiB: the body is buffered"))
					return
				}
				for sent := len(chunk); sent < size; sent += len(chunk) {
					if _, err := pw.Write(chunk); err != nil {
						return
					}
				}
				pw.Close()
			}()
			req, _ := http.NewRequest("POST", srv.URL+"/v1/audio", pr)
			req.Header.Set("Content-Type", "audio/wav")
			if known {
				req.ContentLength = size
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(b) != strconv.Itoa(size) {
				t.Fatalf("got %d %q, want 200 %d", resp.StatusCode, b, size)
			}
		})
	}
}

func TestForwardStreamsResponse(t *testing.T) {
	for _, tt := range []struct {
		name, contentType string
		contentLength     bool
	}{
		{"chunked", "application/json", false},
		{"event-stream with length", "text/event-stream", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			first, second := "data: one\n\n", "data: two\n\n"
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				if tt.contentLength {
					w.Header().Set("Content-Length", strconv.Itoa(len(first)+len(second)))
				}
				io.WriteString(w, first)
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				io.WriteString(w, second)
			}))
			defer up.Close()
			defer close(release)
			p := newProxy(t)
			srv := front(t, p, model("tts", up.URL))
			resp, err := http.Post(srv.URL+"/v1/tts", "application/json", strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			buf := make([]byte, len(first))
			done := make(chan error, 1)
			go func() {
				_, err := io.ReadFull(resp.Body, buf)
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil || string(buf) != first {
					t.Fatalf("first chunk %q, %v", buf, err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("first chunk did not arrive before the upstream finished")
			}
			release <- struct{}{}
			rest, _ := io.ReadAll(resp.Body)
			if string(rest) != second {
				t.Fatalf("rest %q", rest)
			}
		})
	}
}

func TestForwardTimeout(t *testing.T) {
	up := slowUpstream(t, false)
	p := newProxy(t)
	m := model("slow", up.URL)
	m.Timeout = 100 * time.Millisecond
	start := time.Now()
	rec, res, err := forward(t, p, httptest.NewRequest("POST", "/x", strings.NewReader("{}")), m)
	wantCode(t, err, tollgate.CodeUpstreamTimeout)
	wantNothingWritten(t, rec)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("timeout took %v", d)
	}
	if res.Attempts != 1 || res.Model != m {
		t.Errorf("result %+v", res)
	}
}

// The timeout bounds the time to the response headers, not a long stream.
func TestForwardTimeoutNotOnBody(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 4 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}))
	defer up.Close()
	p := newProxy(t)
	m := model("stream", up.URL)
	m.Timeout = 150 * time.Millisecond
	rec, res, err := forward(t, p, httptest.NewRequest("GET", "/x", nil), m)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rec.Body.String(), "data: 3") || res.BytesOut != int64(rec.Body.Len()) {
		t.Fatalf("stream cut: %q (%d bytes out)", rec.Body.String(), res.BytesOut)
	}
}

func TestForwardUnavailable(t *testing.T) {
	p := newProxy(t)
	for _, base := range []string{refusedURL(t), "http://no-such-host.invalid:1", "not a url"} {
		rec, res, err := forward(t, p, httptest.NewRequest("GET", "/x", nil), model("gone", base))
		wantCode(t, err, tollgate.CodeUpstreamUnavailable)
		wantNothingWritten(t, rec)
		if res.Status != 0 {
			t.Errorf("%s: status %d", base, res.Status)
		}
	}
}

// Behind a gRPC inference gateway (upstream_error_code grpc_error) every
// failure to talk to the model is grpc_error: unreachable, timed out or
// failing alike.
func TestForwardGRPCGateway(t *testing.T) {
	p := newProxy(t)
	gone := model("gone", refusedURL(t))
	gone.UpstreamErrorCode = tollgate.CodeGRPCError
	_, _, err := forward(t, p, httptest.NewRequest("GET", "/x", nil), gone)
	wantCode(t, err, tollgate.CodeGRPCError)

	slow := model("slow", slowUpstream(t, false).URL)
	slow.UpstreamErrorCode, slow.Timeout = tollgate.CodeGRPCError, 100*time.Millisecond
	_, _, err = forward(t, p, httptest.NewRequest("POST", "/x", strings.NewReader("{}")), slow)
	wantCode(t, err, tollgate.CodeGRPCError)
}

// An upstream that closes the connection without answering is unavailable;
// one that answers garbage failed.
func TestForwardBrokenUpstream(t *testing.T) {
	listen := func(answer string) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					c.Read(make([]byte, 4096))
					io.WriteString(c, answer)
					c.Close()
				}()
			}
		}()
		return "http://" + l.Addr().String()
	}
	p := newProxy(t)
	_, _, err := forward(t, p, httptest.NewRequest("GET", "/x", nil), model("m", listen("")))
	wantCode(t, err, tollgate.CodeUpstreamUnavailable)
	_, _, err = forward(t, p, httptest.NewRequest("GET", "/x", nil), model("m", listen("SSH-2.0-OpenSSH\r\n\r\n")))
	wantCode(t, err, tollgate.CodeUpstreamError)
}

func TestForwardServerError(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		io.WriteString(w, "panic: runtime error at /srv/model/secret.py:42")
	}))
	defer up.Close()
	p := newProxy(t)
	for _, tt := range []struct {
		configured, want tollgate.Code
	}{
		{"", tollgate.CodeUpstreamError},
		{tollgate.CodeGRPCError, tollgate.CodeGRPCError},
	} {
		m := model("m", up.URL)
		m.UpstreamErrorCode = tt.configured
		rec, res, err := forward(t, p, httptest.NewRequest("POST", "/x", strings.NewReader("{}")), m)
		wantCode(t, err, tt.want)
		wantNothingWritten(t, rec)
		if strings.Contains(tollgate.ErrorMessage(err), "secret") {
			t.Errorf("client message leaks the upstream body: %q", tollgate.ErrorMessage(err))
		}
		if res.Status != 500 {
			t.Errorf("result status %d", res.Status)
		}
	}
}

func TestForwardUnavailable503(t *testing.T) {
	for _, c := range []struct {
		status     int
		retryAfter string
	}{{503, ""}, {503, "7"}, {429, ""}, {429, "7"}} {
		retryAfter := c.retryAfter
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			w.WriteHeader(c.status)
			io.WriteString(w, `{"detail":"busy"}`)
		}))
		p := newProxy(t)
		rec, _, err := forward(t, p, httptest.NewRequest("GET", "/x", nil), model("m", up.URL))
		up.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := retryAfter
		if want == "" {
			want = "1"
		}
		if rec.Code != c.status || rec.Header().Get("Retry-After") != want || rec.Body.String() != `{"detail":"busy"}` {
			t.Errorf("got %d Retry-After %q body %q", rec.Code, rec.Header().Get("Retry-After"), rec.Body.String())
		}
	}
}

func TestForwardFailover(t *testing.T) {
	var gotBody atomic.Value
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotBody.Store(string(b))
		io.WriteString(w, "ok")
	}))
	defer ok.Close()
	fail := func(status int) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(status)
			io.WriteString(w, "internal detail")
		}))
		t.Cleanup(s.Close)
		return s.URL
	}
	slow := slowUpstream(t, false)

	big := strings.Repeat("x", upstream.DefaultMaxResendBody+1)
	tests := []struct {
		name      string
		first     string
		timeout   time.Duration
		body      string
		wantModel string // "" when the chain fails
		wantCode  tollgate.Code
		attempts  int
	}{
		{"500 then ok", fail(500), 0, "hello", "b", "", 2},
		{"502 then ok", fail(502), 0, "", "b", "", 2},
		{"503 then ok", fail(503), 0, "hello", "b", "", 2},
		{"refused then ok", refusedURL(t), 0, "hello", "b", "", 2},
		{"timeout then ok", slow.URL, 100 * time.Millisecond, "hello", "b", "", 2},
		{"refused then ok, large body", refusedURL(t), 0, big, "b", "", 2},
		{"500, large body sent: no failover", fail(500), 0, big, "", tollgate.CodeUpstreamError, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotBody.Store("")
			p := newProxy(t)
			a, b := model("a", tt.first), model("b", ok.URL)
			a.Timeout = tt.timeout
			var rb io.Reader
			if tt.body != "" {
				rb = strings.NewReader(tt.body)
			}
			rec, res, err := forward(t, p, httptest.NewRequest("POST", "/x", rb), a, b)
			if res.Attempts != tt.attempts {
				t.Errorf("attempts %d, want %d", res.Attempts, tt.attempts)
			}
			if tt.wantModel == "" {
				wantCode(t, err, tt.wantCode)
				wantNothingWritten(t, rec)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rec.Body.String() != "ok" || rec.Header().Get(upstream.HeaderModel) != tt.wantModel || res.Model.ID != tt.wantModel {
				t.Fatalf("got %q served by %q (%v)", rec.Body.String(), rec.Header().Get(upstream.HeaderModel), res.Model.ID)
			}
			if got := gotBody.Load().(string); got != tt.body {
				t.Errorf("fallback got a %d-byte body, want %d bytes", len(got), len(tt.body))
			}
		})
	}
}

// The last model's error is returned when every model fails.
func TestForwardFailoverExhausted(t *testing.T) {
	p := newProxy(t)
	_, res, err := forward(t, p, httptest.NewRequest("GET", "/x", nil), model("a", refusedURL(t)), model("b", refusedURL(t)))
	wantCode(t, err, tollgate.CodeUpstreamUnavailable)
	if res.Attempts != 2 || res.Model.ID != "b" {
		t.Errorf("result %+v", res)
	}
}

func TestForwardBodyTooLarge(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	defer up.Close()
	p := newProxy(t)
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "/x", strings.NewReader(strings.Repeat("x", 1000)))
	r.Body = http.MaxBytesReader(rec, r.Body, 10)
	for _, chain := range [][]*tollgate.Model{
		{model("a", up.URL)},                     // streamed
		{model("a", up.URL), model("b", up.URL)}, // buffered for failover
	} {
		_, err := p.Forward(rec, r, chain, "id")
		wantCode(t, err, tollgate.CodePayloadTooLarge)
	}
}

// slowUpstream answers nothing until the test ends.
func slowUpstream(t *testing.T, headers bool) *httptest.Server {
	t.Helper()
	stop := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if headers {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: first\n\n")
			w.(http.Flusher).Flush()
		}
		select {
		case <-stop:
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	}))
	t.Cleanup(func() { close(stop); up.Close() })
	return up
}

func TestForwardCancel(t *testing.T) {
	for _, tt := range []struct {
		name    string
		headers bool // the upstream has answered and is streaming
	}{
		{"waiting for headers", false},
		{"streaming the body", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := slowUpstream(t, tt.headers)
			p := newProxy(t)
			ctx, cancel := context.WithCancel(context.Background())
			r := httptest.NewRequest("POST", "/x", strings.NewReader("{}")).WithContext(ctx)
			var cancelledAt atomic.Int64
			go func() {
				time.Sleep(150 * time.Millisecond)
				cancelledAt.Store(time.Now().UnixNano())
				cancel()
			}()
			rec, _, err := forward(t, p, r, model("slow", up.URL), model("next", up.URL))
			if lag := time.Since(time.Unix(0, cancelledAt.Load())); lag > 100*time.Millisecond {
				t.Errorf("Forward returned %v after the cancel", lag)
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("error %v, want one wrapping context.Canceled", err)
			}
			if !tt.headers {
				wantNothingWritten(t, rec)
			} else if !strings.Contains(rec.Body.String(), "first") {
				t.Errorf("body %q", rec.Body.String())
			}
		})
	}
}

// A client that disconnects from a real server frees the handler promptly.
func TestForwardClientDisconnect(t *testing.T) {
	up := slowUpstream(t, false)
	p := newProxy(t)
	returned := make(chan time.Time, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.Forward(w, r, []*tollgate.Model{model("slow", up.URL)}, "id")
		returned <- time.Now()
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL, strings.NewReader("{}"))
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("request succeeded")
	}
	gone := time.Now()
	select {
	case at := <-returned:
		if lag := at.Sub(gone); lag > 100*time.Millisecond {
			t.Errorf("handler returned %v after the client left", lag)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("handler still blocked 2 s after the client left")
	}
}

func TestForwardConcurrent(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	defer up.Close()
	p := newProxy(t)
	srv := front(t, p, model("a", up.URL))
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			for j := range 20 {
				want := fmt.Sprintf("body-%d-%d", i, j)
				resp, err := http.Post(srv.URL, "text/plain", strings.NewReader(want))
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != want {
					t.Errorf("got %q, want %q", b, want)
				}
			}
		})
	}
	wg.Wait()
}

func TestForwardHook(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Tollgate-Usage", "audio_seconds=12.5")
		w.WriteHeader(201)
		io.WriteString(w, "made")
	}))
	defer up.Close()
	m := &tollgate.Model{ID: "m", Upstream: up.URL}
	p := upstream.New()
	defer p.Close()

	var gotStatus int
	var gotUsage string
	w := httptest.NewRecorder()
	_, err := p.ForwardHook(w, httptest.NewRequest("POST", "/x", nil), []*tollgate.Model{m}, "req_1",
		func(sm *tollgate.Model, status int, header func(string) string) error {
			if w.Code != 200 || w.Body.Len() != 0 || len(w.Header()) != 0 {
				t.Error("the hook ran after something was written")
			}
			gotStatus, gotUsage = status, header("Tollgate-Usage")
			return nil
		})
	if err != nil || w.Code != 201 || w.Body.String() != "made" {
		t.Fatalf("err %v, status %d, body %q", err, w.Code, w.Body)
	}
	if gotStatus != 201 || gotUsage != "audio_seconds=12.5" {
		t.Errorf("hook saw %d %q", gotStatus, gotUsage)
	}

	// A hook error aborts: nothing written, the error returned.
	w = httptest.NewRecorder()
	_, err = p.ForwardHook(w, httptest.NewRequest("POST", "/x", nil), []*tollgate.Model{m}, "req_2",
		func(*tollgate.Model, int, func(string) string) error { return tollgate.NewError(tollgate.CodeInternal) })
	if tollgate.ErrorCode(err) != tollgate.CodeInternal || w.Body.Len() != 0 {
		t.Errorf("err %v, body %q", err, w.Body)
	}
}
