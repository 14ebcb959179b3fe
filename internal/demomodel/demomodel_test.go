package demomodel_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tollgate/tollgate/internal/demomodel"
)

// serve runs one request through a fresh handler.
func serve(t *testing.T, r *http.Request) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	demomodel.New().ServeHTTP(rec, r)
	var body map[string]any
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("answer is not JSON: %v: %q", err, rec.Body.String())
		}
	}
	return rec, body
}

func TestTextGenerate(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		status int
		want   map[string]any
	}{
		{"text", `{"text":"hello wörld"}`, 200, map[string]any{"model": "echo-text", "output": "HELLO WÖRLD", "characters": 11.0}},
		{"inputs", `{"model":"m","inputs":"abc","parameters":{"t":1}}`, 200, map[string]any{"model": "echo-text", "output": "ABC", "characters": 3.0}},
		{"empty text", `{"text":""}`, 200, map[string]any{"model": "echo-text", "output": "", "characters": 0.0}},
		{"invalid JSON", `{"text":`, 400, map[string]any{"detail": "invalid JSON body"}},
		{"trailing data", `{"text":"a"} x`, 400, map[string]any{"detail": "invalid JSON body: trailing data"}},
		{"wrong type", `{"text":1}`, 400, map[string]any{"detail": "invalid JSON body"}},
		{"missing text", `{"model":"m"}`, 422, map[string]any{"detail": `field "text" (or "inputs") is required`}},
		{"too large", `{"text":"` + strings.Repeat("a", demomodel.MaxTextBody) + `"}`, 413, map[string]any{"detail": "body larger than 1 MiB"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, got := serve(t, httptest.NewRequest("POST", "/v1/text/generate", strings.NewReader(tt.body)))
			if rec.Code != tt.status {
				t.Errorf("status %d, want %d", rec.Code, tt.status)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("answer (-got +want):\n%s", diff)
			}
		})
	}
	if rec, _ := serve(t, httptest.NewRequest("GET", "/v1/text/generate", nil)); rec.Code != 405 {
		t.Errorf("GET: status %d, want 405", rec.Code)
	}
}

// generated is an io.Reader of n bytes that holds none of them.
type generated struct{ n int64 }

func (g *generated) Read(p []byte) (int, error) {
	if g.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.n {
		p = p[:g.n]
	}
	for i := range p {
		p[i] = byte(i)
	}
	g.n -= int64(len(p))
	return len(p), nil
}

// multipartBody streams a multipart body with one file field of n bytes.
func multipartBody(field, contentType string, n int64) (io.Reader, string) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		mw.WriteField("language", "en")
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="`+field+`"; filename="a.wav"`)
		if contentType != "" {
			h.Set("Content-Type", contentType)
		}
		part, _ := mw.CreatePart(h)
		io.Copy(part, &generated{n: n})
		pw.CloseWithError(mw.Close())
	}()
	return pr, mw.FormDataContentType()
}

func TestAudioTranscribe(t *testing.T) {
	const size = 1 << 20
	answer := func(n int64, ct string) map[string]any {
		sum := sha256.New()
		io.Copy(sum, &generated{n: n})
		return map[string]any{"model": "demo-stt", "bytes": float64(n), "sha256": hex.EncodeToString(sum.Sum(nil)),
			"content_type": ct, "text": demomodel.Transcript}
	}
	tests := []struct {
		name   string
		body   func() (io.Reader, string)
		status int
		want   map[string]any
	}{
		{"raw wav", func() (io.Reader, string) { return &generated{n: size}, "audio/wav" }, 200, answer(size, "audio/wav")},
		{"raw octet-stream", func() (io.Reader, string) { return &generated{n: 10}, "application/octet-stream" }, 200, answer(10, "application/octet-stream")},
		{"multipart", func() (io.Reader, string) { return multipartBody("file", "audio/mpeg", size) }, 200, answer(size, "audio/mpeg")},
		{"multipart no type", func() (io.Reader, string) { return multipartBody("file", "", 5) }, 200, answer(5, "application/octet-stream")},
		{"empty raw", func() (io.Reader, string) { return strings.NewReader(""), "audio/wav" }, 400, map[string]any{"detail": "empty audio"}},
		{"empty multipart file", func() (io.Reader, string) { return multipartBody("file", "audio/wav", 0) }, 400, map[string]any{"detail": "empty audio"}},
		{"multipart without file", func() (io.Reader, string) { return multipartBody("audio", "audio/wav", 5) }, 400, map[string]any{"detail": `multipart field "file" is required`}},
		{"not audio", func() (io.Reader, string) { return strings.NewReader("hi"), "text/plain" }, 415, map[string]any{"detail": "send audio/* or multipart/form-data with a file field"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, ct := tt.body()
			r := httptest.NewRequest("POST", "/v1/audio/transcribe", body)
			r.Header.Set("Content-Type", ct)
			rec, got := serve(t, r)
			if rec.Code != tt.status {
				t.Errorf("status %d, want %d", rec.Code, tt.status)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("answer (-got +want):\n%s", diff)
			}
		})
	}
}

// A large upload is counted as it streams, not held in memory.
func TestAudioTranscribeStreams(t *testing.T) {
	const size = 64 << 20
	for _, multi := range []bool{false, true} {
		var (
			body io.Reader = &generated{n: size}
			ct             = "audio/wav"
		)
		if multi {
			body, ct = multipartBody("file", "audio/wav", size)
		}
		r := httptest.NewRequest("POST", "/v1/audio/transcribe", body)
		r.Header.Set("Content-Type", ct)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		rec, got := serve(t, r)
		runtime.ReadMemStats(&after)
		if rec.Code != 200 || got["bytes"] != float64(size) {
			t.Fatalf("multipart=%v: %d %v", multi, rec.Code, got)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
			t.Errorf("multipart=%v: a %d MiB upload allocated %d MiB", multi, size>>20, alloc>>20)
		}
	}
}

func TestSlow(t *testing.T) {
	start := time.Now()
	rec, got := serve(t, httptest.NewRequest("POST", "/v1/slow?ms=50", nil))
	if d := time.Since(start); rec.Code != 200 || d < 50*time.Millisecond || got["model"] != demomodel.SlowModel {
		t.Errorf("got %d %v after %v", rec.Code, got, d)
	}
	if rec, _ := serve(t, httptest.NewRequest("POST", "/v1/slow?ms=x", nil)); rec.Code != 400 {
		t.Errorf("bad ms: status %d", rec.Code)
	}

	// The default wait ends with the request.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start = time.Now()
	serve(t, httptest.NewRequest("POST", "/v1/slow", nil).WithContext(ctx))
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancelled slow request took %v", d)
	}
}

func TestFail(t *testing.T) {
	rec, _ := serve(t, httptest.NewRequest("POST", "/v1/fail", strings.NewReader("{}")))
	if rec.Code != 500 || rec.Body.String() != demomodel.FailBody {
		t.Errorf("got %d %q", rec.Code, rec.Body.String())
	}
	rec, got := serve(t, httptest.NewRequest("POST", "/v1/fail?status=503", nil))
	if rec.Code != 503 || got["detail"] == nil {
		t.Errorf("got %d %q", rec.Code, rec.Body.String())
	}
	rec, _ = serve(t, httptest.NewRequest("POST", "/v1/fail?status=502", nil))
	if rec.Code != 502 || rec.Body.String() != demomodel.FailBody {
		t.Errorf("got %d %q", rec.Code, rec.Body.String())
	}
	if rec, _ := serve(t, httptest.NewRequest("POST", "/v1/fail?status=200", nil)); rec.Code != 400 {
		t.Errorf("status=200: got %d", rec.Code)
	}
}

func TestHello(t *testing.T) {
	if n := len(demomodel.HelloAnswer); n != 179 {
		t.Errorf("answer is %d bytes, want 179", n)
	}
	if !json.Valid(demomodel.HelloAnswer) {
		t.Error("answer is not JSON")
	}
	for _, r := range []*http.Request{
		httptest.NewRequest("GET", "/v1/hello", nil),
		httptest.NewRequest("POST", "/v1/echo", strings.NewReader(`{"a":1}`)),
	} {
		rec, _ := serve(t, r)
		if rec.Code != 200 || rec.Body.String() != string(demomodel.HelloAnswer) ||
			rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("Content-Length") != "179" {
			t.Errorf("%s %s: got %d %v %q", r.Method, r.URL.Path, rec.Code, rec.Header(), rec.Body.String())
		}
	}
}

func TestServerCounts(t *testing.T) {
	s, err := demomodel.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Fatalf("URL %q", s.URL)
	}

	req, _ := http.NewRequest("GET", s.URL+"/v1/hello", nil)
	req.Header.Set("X-Test", "seen")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got := s.LastHeaders().Get("X-Test"); got != "seen" {
		t.Errorf("LastHeaders X-Test = %q", got)
	}

	const n = 5
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, "POST", s.URL+"/v1/slow?ms=10000", nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.InFlight() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := s.InFlight(); got != n {
		t.Fatalf("InFlight %d, want %d", got, n)
	}
	if got := s.MaxInFlight(); got != n {
		t.Errorf("MaxInFlight %d, want %d", got, n)
	}
	cancel()
	wg.Wait()
	for s.InFlight() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := s.InFlight(); got != 0 {
		t.Errorf("InFlight %d after the requests ended", got)
	}
	if got := s.MaxInFlight(); got != n {
		t.Errorf("MaxInFlight %d, want %d", got, n)
	}
	if got := s.Requests(); got != n+1 {
		t.Errorf("Requests %d, want %d", got, n+1)
	}
	s.ResetMaxInFlight()
	if got := s.MaxInFlight(); got != 0 {
		t.Errorf("MaxInFlight %d after reset", got)
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
