package main

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/demomodel"
)

// streamConfig is the streaming e2e deployment: %[1]s the SQLite file,
// %[2]s the demo model server's ws:// URL, %[3]s a refused ws:// address,
// %[4]s the shutdown grace and %[5]s the lease TTL.
const streamConfig = `
listen: 127.0.0.1:0
store: sqlite://%[1]s
limiter: memory
admin_token: ` + testAdmin + `
key_secret: ` + testSecret + `
key_cache_ttl: 1m
shutdown_grace: %[4]s
lease_ttl: %[5]s
models:
  - id: stt-stream
    feature: stt
    route: GET /v1/stream
    upstream: %[2]q
    upstream_path: /v1/stream
    meter: {price: 2}
    stream: {formats: [s16le, f32le, mulaw], sample_rates: [8000, 16000], max_frame_bytes: 8192, chunk_seconds: 1}
  - {id: idle-stream, feature: stt, route: GET /v1/idle-stream, upstream: %[2]q, upstream_path: /v1/stream, stream: {idle_timeout: 300ms}}
  - {id: ping-stream, feature: stt, route: GET /v1/ping-stream, upstream: %[2]q, upstream_path: /v1/stream, stream: {ping_interval: 200ms}}
  - {id: gone-stream, feature: stt, route: GET /v1/gone-stream, upstream: %[3]q, stream: {}}
  - {id: premium-stream, feature: premium, route: GET /v1/premium-stream, upstream: %[2]q, upstream_path: /v1/stream, stream: {}}
plans:
  - {id: basic, rpm: 100000, features: [stt], model_concurrency: {stt-stream: 1}}
  - {id: tiny, rpm: 2, features: [stt]}
  - {id: metered, rpm: 100000, features: [stt], monthly_limits: {stt-stream: 2.5}}
  - {id: free, rpm: 100000, features: [stt], billing_required: true, free_credits: 3}
`

var streamModels = []string{"stt-stream", "idle-stream", "ping-stream", "gone-stream", "premium-stream"}

func startStreamGateway(t *testing.T, grace, leaseTTL string) *gateway {
	t.Helper()
	models, err := demomodel.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { models.Close() })
	db := filepath.Join(t.TempDir(), "tollgate.db")
	ws := "ws" + strings.TrimPrefix(models.URL, "http")
	refused := "ws" + strings.TrimPrefix(refusedAddr(t), "http")
	c, err := config.Parse([]byte(fmt.Sprintf(streamConfig, db, ws, refused, grace, leaseTTL)), nil)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	g := &gateway{t: t, models: models, clock: &clock{}, done: make(chan error, 1)}
	g.main = &Main{Config: c, Now: g.clock.Now, Logger: discardLogger()}
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

// streamQuery is the declaration of 16 kHz mono s16le.
const streamQuery = "audio_format=s16le&sample_rate=16000&num_channels=1"

func (g *gateway) wsURL(path, query string) string {
	return "ws" + strings.TrimPrefix(g.url, "http") + path + "?" + query
}

func dialWS(t *testing.T, url string, header http.Header) (*websocket.Conn, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c, resp
}

// closeOf reads c until it is closed and returns the close frame.
func closeOf(t *testing.T, c *websocket.Conn) websocket.CloseError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, _, err := c.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("stream ended without a close frame: %v", err)
		}
		return ce
	}
}

// pcm16 is d of a 440 Hz tone at amplitude 0.3, s16le at rate.
func pcm16(rate int, d time.Duration) []byte {
	n := int(d.Seconds() * float64(rate))
	b := make([]byte, 2*n)
	for i := range n {
		v := int16(0.3 * 32767 * math.Sin(2*math.Pi*440*float64(i)/float64(rate)))
		binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
	}
	return b
}

// answer is the demo streaming model's reply to one chunk.
type answer struct {
	Model        string
	Chunk        int
	Bytes        int
	RMS          float64
	TotalSeconds float64 `json:"total_seconds"`
}

func readAnswer(t *testing.T, c *websocket.Conn) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	var a answer
	if typ != websocket.MessageText || json.Unmarshal(b, &a) != nil {
		t.Fatalf("answer %v %q", typ, b)
	}
	return a
}

func send(t *testing.T, c *websocket.Conn, typ websocket.MessageType, p []byte) {
	t.Helper()
	if err := c.Write(context.Background(), typ, p); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// streamUsage is the org's stream-model ledger row: audio seconds,
// credits and events.
func (g *gateway) streamUsage(org, model string) (seconds, credits float64, events int) {
	g.t.Helper()
	for _, r := range g.usage(org)["rows"].([]any) {
		row := r.(map[string]any)
		if row["model"] == model {
			return row["quantity"].(float64), row["credits"].(float64), int(row["requests"].(float64))
		}
	}
	return 0, 0, 0
}

// TestStream: a stream through the gateway reaches the model with its
// declaration and not the key, gets every answer, and is billed exactly
// the audio it sent, with one ledger event and one history item.
func TestStream(t *testing.T) {
	g := startStreamGateway(t, "1s", "15s")
	_, key, _ := g.newOrg("acme", "basic", streamModels, nil)
	c, resp := dialWS(t, g.wsURL("/v1/stream", streamQuery+"&api_key="+key+"&language=en"), nil)
	id := resp.Header.Get("X-Request-Id")
	if !strings.HasPrefix(id, "req_") || resp.Header.Get("X-RateLimit-Limit") != "100000" {
		t.Errorf("handshake headers %v", resp.Header)
	}
	for i := 1; i <= 10; i++ {
		send(t, c, websocket.MessageBinary, pcm16(16000, 100*time.Millisecond))
		a := readAnswer(t, c)
		if a.Model != demomodel.StreamModel || a.Chunk != i || a.Bytes != 3200 || math.Abs(a.RMS-0.3/math.Sqrt2) > 0.01 {
			t.Fatalf("answer %d: %+v", i, a)
		}
	}
	if q := g.models.LastQuery(); strings.Contains(q, "api_key") || !strings.Contains(q, "sample_rate=16000") || !strings.Contains(q, "language=en") {
		t.Errorf("upstream query %q", q)
	}
	if h := g.models.LastHeaders(); h.Get("X-Request-Id") != id || h.Get("X-Api-Key") != "" {
		t.Errorf("upstream headers %v", h)
	}
	c.Close(websocket.StatusNormalClosure, "")
	// The client's close is answered at once (by the WebSocket layer); the
	// ledger follows.
	waitFor(t, 5*time.Second, func() bool { _, _, n := g.streamUsage("acme", "stt-stream"); return n == 1 })
	if sec, credits, n := g.streamUsage("acme", "stt-stream"); sec != 1 || credits != 2 || n != 1 {
		t.Errorf("ledger: %v s, %v credits, %d events; want 1 s, 2 credits, 1 event", sec, credits, n)
	}
	var hist struct {
		Items []struct {
			RequestID string `json:"request_id"`
			Status    int
			Code      string
			Unit      string
			Quantity  float64
			Input     string
			Output    string
		}
	}
	json.Unmarshal(g.do("GET", "/v1/history", map[string]string{"X-API-Key": key}, "").Body, &hist)
	if len(hist.Items) != 1 {
		t.Fatalf("history %+v", hist)
	}
	if it := hist.Items[0]; it.RequestID != id || it.Status != 101 || it.Code != "" || it.Unit != "audio_seconds" ||
		it.Quantity != 1 || it.Input != "s16le 16000 Hz × 1" || !strings.HasPrefix(it.Output, "1000 by the client") {
		t.Errorf("history item %+v", it)
	}
	waitFor(t, 5*time.Second, func() bool { return g.inFlight("acme", "stt-stream") == 0 })

	// The usual headers carry the key too.
	c, _ = dialWS(t, g.wsURL("/v1/stream", "audio_format=mulaw&sample_rate=8000&num_channels=2"), http.Header{"Authorization": {"Bearer " + key}})
	send(t, c, websocket.MessageBinary, make([]byte, 320))
	if a := readAnswer(t, c); a.Bytes != 320 || a.TotalSeconds != 0.02 {
		t.Errorf("mulaw stereo answer %+v", a)
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// TestStreamCloseCodes produces every close code a stream can end with,
// from a real dial, and checks its code and reason.
func TestStreamCloseCodes(t *testing.T) {
	g := startStreamGateway(t, "1s", "15s")
	_, key, _ := g.newOrg("acme", "basic", streamModels, nil)
	_, narrow, _ := g.newOrg("narrow", "basic", []string{"idle-stream"}, nil)
	_, tiny, _ := g.newOrg("tiny", "tiny", streamModels, nil)
	_, free, _ := g.newOrg("broke", "free", streamModels, nil)
	g.plan("free", map[string]any{"rpm": 100000, "features": []string{"stt"}, "billing_required": true, "free_credits": 0})

	nan := make([]byte, 4*10)
	binary.LittleEndian.PutUint32(nan[4*5:], math.Float32bits(float32(math.NaN())))
	tests := []struct {
		name, path, query string
		header            http.Header
		send              func(c *websocket.Conn)
		code              websocket.StatusCode
		reason            string
		prefix            bool // reason starts with reason
	}{
		{name: "missing key", path: "/v1/stream", query: streamQuery, code: 4001, reason: "missing_credential"},
		{name: "invalid key", path: "/v1/stream", query: streamQuery + "&api_key=tg_live_nope", code: 4001, reason: "invalid_credential"},
		{name: "invalid header key", path: "/v1/stream", query: streamQuery, header: http.Header{"X-Api-Key": {key + "x"}}, code: 4001, reason: "invalid_credential"},
		{name: "no model access", path: "/v1/stream", query: streamQuery + "&api_key=" + narrow, code: 4003, reason: "no_model_access"},
		{name: "feature not enabled", path: "/v1/premium-stream", query: streamQuery + "&api_key=" + key, code: 4003, reason: "feature_not_enabled"},
		{name: "billing required", path: "/v1/stream", query: streamQuery + "&api_key=" + free, code: 4029, reason: "billing_required"},
		{name: "missing params", path: "/v1/stream", query: "api_key=" + key, code: 1003,
			reason: "validation_error: audio_format is required; sample_rate is required; num_channels is required"},
		{name: "misspelled param", path: "/v1/stream", query: "audio_format=s16le&sample_rat=16000&num_channels=1&api_key=" + key, code: 1003,
			reason: "validation_error: sample_rate is required"},
		{name: "unsupported format", path: "/v1/stream", query: "audio_format=mp3&sample_rate=16000&num_channels=1&api_key=" + key, code: 1003,
			reason: `validation_error: audio_format "mp3" is not supported (want s16le, f32le, mulaw)`},
		{name: "unsupported rate", path: "/v1/stream", query: "audio_format=s16le&sample_rate=44100&num_channels=1&api_key=" + key, code: 1003,
			reason: "validation_error: sample_rate 44100 is not supported (want 8000, 16000)"},
		{name: "rate not an integer", path: "/v1/stream", query: "audio_format=s16le&sample_rate=16k&num_channels=1&api_key=" + key, code: 1003,
			reason: `validation_error: sample_rate "16k" is not an integer`},
		{name: "three channels", path: "/v1/stream", query: "audio_format=s16le&sample_rate=16000&num_channels=3&api_key=" + key, code: 1003,
			reason: "validation_error: num_channels 3 is not supported (want 1 or 2)"},
		{name: "wav header", path: "/v1/stream", query: streamQuery + "&api_key=" + key,
			send: func(c *websocket.Conn) {
				send(t, c, websocket.MessageBinary, sineWAV(16000, 100*time.Millisecond, 440))
			},
			code: 4002, reason: "audio_format_mismatch: The data starts with a WAV header, not raw s16le PCM."},
		{name: "nan f32", path: "/v1/stream", query: "audio_format=f32le&sample_rate=16000&num_channels=1&api_key=" + key,
			send: func(c *websocket.Conn) { send(t, c, websocket.MessageBinary, nan) },
			code: 4002, reason: "audio_format_mismatch: Sample 5 is NaN or infinite: not f32le PCM."},
		{name: "partial sample", path: "/v1/stream", query: streamQuery + "&api_key=" + key,
			send: func(c *websocket.Conn) { send(t, c, websocket.MessageBinary, make([]byte, 3201)) },
			code: 4002, reason: "audio_format_mismatch: A message of 3201 bytes is not whole 2-byte samples (s16le × 1)."},
		{name: "frame too large", path: "/v1/stream", query: streamQuery + "&api_key=" + key,
			send: func(c *websocket.Conn) { send(t, c, websocket.MessageBinary, make([]byte, 8194)) },
			code: 1009, reason: "payload_too_large: A message is over 8192 bytes."},
		{name: "text message", path: "/v1/stream", query: streamQuery + "&api_key=" + key,
			send: func(c *websocket.Conn) { send(t, c, websocket.MessageText, []byte(`{"type":"config"}`)) },
			code: 1003, reason: "validation_error: Send audio in binary messages."},
		{name: "upstream unreachable", path: "/v1/gone-stream", query: streamQuery + "&api_key=" + key, code: 1014, reason: "upstream_unavailable"},
		{name: "upstream overloaded", path: "/v1/stream", query: streamQuery + "&reject=503&api_key=" + key, code: 1013, reason: "overloaded"},
		{name: "upstream refuses", path: "/v1/stream", query: streamQuery + "&reject=500&api_key=" + key, code: 1014, reason: "upstream_error"},
		{name: "upstream error close", path: "/v1/stream", query: streamQuery + "&close_after=1&close_code=1011&close_reason=CUDA+OOM+on+gpu-07&api_key=" + key,
			send: func(c *websocket.Conn) { send(t, c, websocket.MessageBinary, make([]byte, 640)) },
			code: 1011, reason: "upstream_error"},
		{name: "upstream app close", path: "/v1/stream", query: streamQuery + "&close_after=1&close_code=4400&close_reason=enough&api_key=" + key,
			send: func(c *websocket.Conn) { send(t, c, websocket.MessageBinary, make([]byte, 640)) },
			code: 4400, reason: "enough"},
		{name: "upstream done", path: "/v1/stream", query: streamQuery + "&close_after=1&close_code=1000&close_reason=bye&api_key=" + key,
			send: func(c *websocket.Conn) { send(t, c, websocket.MessageBinary, make([]byte, 640)) },
			code: 1000, reason: "bye"},
		{name: "idle", path: "/v1/idle-stream", query: streamQuery + "&api_key=" + key, code: 1008, reason: "idle_timeout"},
		{name: "unknown model", path: "/v1/nope", query: streamQuery + "&api_key=" + key, code: 4004, reason: "model_not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := dialWS(t, g.wsURL(tt.path, tt.query), tt.header)
			if tt.send != nil {
				tt.send(c)
			}
			ce := closeOf(t, c)
			if ce.Code != tt.code || ce.Reason != tt.reason {
				t.Errorf("closed %d %q, want %d %q", ce.Code, ce.Reason, tt.code, tt.reason)
			}
		})
	}

	// Rate: the plan allows 2 handshakes a minute.
	for i := 0; i < 2; i++ {
		c, _ := dialWS(t, g.wsURL("/v1/stream", streamQuery+"&api_key="+tiny), nil)
		send(t, c, websocket.MessageBinary, make([]byte, 640))
		readAnswer(t, c)
		c.Close(websocket.StatusNormalClosure, "")
	}
	c, resp := dialWS(t, g.wsURL("/v1/stream", streamQuery+"&api_key="+tiny), nil)
	if ce := closeOf(t, c); ce.Code != 4029 || ce.Reason != "rate_limit_exceeded" {
		t.Errorf("third handshake: %d %q", ce.Code, ce.Reason)
	}
	if resp.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Errorf("X-RateLimit-Remaining %q", resp.Header.Get("X-RateLimit-Remaining"))
	}

	// A plain GET is told to upgrade.
	r := g.do("GET", "/v1/stream?"+streamQuery, map[string]string{"X-API-Key": key}, "")
	if r.Status != http.StatusUpgradeRequired || r.JSON(t)["code"] != "validation_error" || r.Header.Get("Upgrade") != "websocket" {
		t.Errorf("plain GET: %d %s", r.Status, r.Body)
	}
	// Every refusal above was counted by close code.
	m := g.do("GET", "/metrics", nil, "")
	for _, want := range []string{`tollgate_stream_closes_total{close_code="4001",model="stt-stream"} 3`, `tollgate_stream_closes_total{close_code="1009",model="stt-stream"} 1`} {
		if !strings.Contains(string(m.Body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestStreamQuotaCut: a stream that outlives its quota is cut with 4029
// having forwarded no audio beyond it, and is billed exactly what it sent.
func TestStreamQuotaCut(t *testing.T) {
	for _, tt := range []struct {
		plan, reason string
		seconds      float64 // the quota, in audio seconds
	}{
		{"metered", "quota_exceeded", 2.5}, // monthly_limits: 2.5 s
		{"free", "billing_required", 1.5},  // 3 free credits at 2 a second
	} {
		t.Run(tt.reason, func(t *testing.T) {
			g := startStreamGateway(t, "1s", "15s")
			_, key, _ := g.newOrg("acme", tt.plan, streamModels, nil)
			c, _ := dialWS(t, g.wsURL("/v1/stream", streamQuery+"&api_key="+key), nil)
			// Send 100 ms frames until the gateway closes; answers are read
			// by closeOf meanwhile.
			var sent atomic.Int64
			go func() {
				frame := pcm16(16000, 100*time.Millisecond)
				for c.Write(context.Background(), websocket.MessageBinary, frame) == nil {
					sent.Add(1)
					time.Sleep(2 * time.Millisecond)
				}
			}()
			ce := closeOf(t, c)
			if ce.Code != 4029 || ce.Reason != tt.reason {
				t.Fatalf("closed %d %q, want 4029 %q", ce.Code, ce.Reason, tt.reason)
			}
			frames := int64(math.Round(tt.seconds * 10))
			// The model reads what was forwarded on its own time.
			waitFor(t, 5*time.Second, func() bool { return g.models.StreamBytes() >= frames*3200 })
			if got := g.models.StreamBytes(); got != frames*3200 {
				t.Errorf("the model got %d bytes, want %d (%v s)", got, frames*3200, tt.seconds)
			}
			if sent.Load() <= frames {
				t.Errorf("the client sent %d frames, not more than the quota's %d", sent.Load(), frames)
			}
			// Committed before the close frame was sent.
			if sec, credits, n := g.streamUsage("acme", "stt-stream"); sec != tt.seconds || credits != 2*tt.seconds || n != 1 {
				t.Errorf("ledger: %v s, %v credits, %d events; want %v s, %v credits, 1 event", sec, credits, n, tt.seconds, 2*tt.seconds)
			}
			// The quota is spent: the next handshake is refused.
			next, _ := dialWS(t, g.wsURL("/v1/stream", streamQuery+"&api_key="+key), nil)
			if ce := closeOf(t, next); ce.Code != 4029 || ce.Reason != tt.reason {
				t.Errorf("next handshake closed %d %q", ce.Code, ce.Reason)
			}
			waitFor(t, 5*time.Second, func() bool { return g.inFlight("acme", "stt-stream") == 0 })
		})
	}
}

// TestStreamConcurrency: a stream holds a concurrency slot for its life,
// released on a close and on a disconnect.
func TestStreamConcurrency(t *testing.T) {
	g := startStreamGateway(t, "1s", "15s")
	_, key, _ := g.newOrg("acme", "basic", streamModels, nil) // stt-stream: 1 at a time
	url := g.wsURL("/v1/stream", streamQuery+"&api_key="+key)
	open := func() *websocket.Conn {
		c, _ := dialWS(t, url, nil)
		send(t, c, websocket.MessageBinary, make([]byte, 640))
		readAnswer(t, c)
		return c
	}

	first := open()
	if n := g.inFlight("acme", "stt-stream"); n != 1 {
		t.Fatalf("in flight %d, want 1", n)
	}
	second, _ := dialWS(t, url, nil)
	if ce := closeOf(t, second); ce.Code != 4029 || ce.Reason != "concurrency_limit_exceeded" {
		t.Errorf("second stream: %d %q", ce.Code, ce.Reason)
	}

	first.Close(websocket.StatusNormalClosure, "")
	waitFor(t, 5*time.Second, func() bool { return g.inFlight("acme", "stt-stream") == 0 })
	third := open()

	// A disconnect (no close frame) releases the slot and bills the audio.
	third.CloseNow()
	waitFor(t, 5*time.Second, func() bool { return g.inFlight("acme", "stt-stream") == 0 })
	open().Close(websocket.StatusNormalClosure, "")
	waitFor(t, 5*time.Second, func() bool { _, _, n := g.streamUsage("acme", "stt-stream"); return n == 3 })
	if sec, _, _ := g.streamUsage("acme", "stt-stream"); math.Abs(sec-0.06) > 1e-9 {
		t.Errorf("ledger: %v s, want 0.06 (three 20 ms frames)", sec)
	}
}

// TestStreamHeartbeat: a stream outliving the lease TTL keeps its slot.
func TestStreamHeartbeat(t *testing.T) {
	g := startStreamGateway(t, "1s", "600ms")
	_, key, _ := g.newOrg("acme", "basic", streamModels, nil)
	url := g.wsURL("/v1/stream", streamQuery+"&api_key="+key)
	c, _ := dialWS(t, url, nil)
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		send(t, c, websocket.MessageBinary, make([]byte, 640))
		readAnswer(t, c)
		time.Sleep(50 * time.Millisecond) // real time: the lease TTL must pass
	}
	if n := g.inFlight("acme", "stt-stream"); n != 1 {
		t.Errorf("in flight %d after 2.5 lease TTLs, want 1", n)
	}
	second, _ := dialWS(t, url, nil)
	if ce := closeOf(t, second); ce.Code != 4029 {
		t.Errorf("second stream: %d %q", ce.Code, ce.Reason)
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// TestStreamPingTimeout: a client that answers no ping loses its stream
// (and its slot) after one ping interval.
func TestStreamPingTimeout(t *testing.T) {
	g := startStreamGateway(t, "1s", "15s")
	_, key, _ := g.newOrg("acme", "basic", streamModels, nil)
	c, _ := dialWS(t, g.wsURL("/v1/ping-stream", streamQuery+"&api_key="+key), nil)
	// Never read: pings go unanswered.
	go func() {
		for c.Write(context.Background(), websocket.MessageBinary, make([]byte, 640)) == nil {
			time.Sleep(20 * time.Millisecond)
		}
	}()
	waitFor(t, 5*time.Second, func() bool { _, _, n := g.streamUsage("acme", "ping-stream"); return n == 1 })
	var hist struct{ Items []struct{ Output string } }
	json.Unmarshal(g.do("GET", "/v1/history", map[string]string{"X-API-Key": key}, "").Body, &hist)
	if len(hist.Items) != 1 || !strings.Contains(hist.Items[0].Output, "ping_timeout") {
		t.Errorf("history %+v", hist)
	}
}

// TestStreamRevoked: a key revoked mid-stream ends the stream at the next
// ping (4001), billed for what it sent.
func TestStreamRevoked(t *testing.T) {
	g := startStreamGateway(t, "1s", "15s")
	_, key, keyID := g.newOrg("acme", "basic", streamModels, nil)
	c, _ := dialWS(t, g.wsURL("/v1/ping-stream", streamQuery+"&api_key="+key), nil)
	send(t, c, websocket.MessageBinary, make([]byte, 640))
	readAnswer(t, c)
	g.admin("POST", "/admin/keys/"+keyID+"/revoke", nil, 200)
	if ce := closeOf(t, c); ce.Code != 4001 || ce.Reason != "invalid_credential" {
		t.Errorf("closed %d %q, want 4001 invalid_credential", ce.Code, ce.Reason)
	}
	if sec, _, n := g.streamUsage("acme", "ping-stream"); sec != 0.02 || n != 1 {
		t.Errorf("ledger: %v s over %d events, want 0.02 over 1", sec, n)
	}
}

// TestStreamShutdown: shutdown lets streams run for the grace, then closes
// them with 1001, their usage in the ledger.
func TestStreamShutdown(t *testing.T) {
	g := startStreamGateway(t, "300ms", "15s")
	_, key, _ := g.newOrg("acme", "basic", streamModels, nil)
	c, resp := dialWS(t, g.wsURL("/v1/stream", streamQuery+"&api_key="+key), nil)
	send(t, c, websocket.MessageBinary, pcm16(16000, 100*time.Millisecond))
	readAnswer(t, c)
	start := time.Now()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		g.stop()
	}()
	ce := closeOf(t, c)
	if ce.Code != websocket.StatusGoingAway || ce.Reason != "shutting_down" {
		t.Errorf("closed %d %q, want 1001 shutting_down", ce.Code, ce.Reason)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("closed after %v, before the 300ms grace", d)
	}
	// The ledger holds the stream (read from the file: the gateway is gone).
	<-stopped
	db, err := sql.Open("sqlite", g.main.Config.StoreBackend().Target)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var q float64
	if err := db.QueryRow(`SELECT quantity FROM usage_events WHERE request_id = ?`, resp.Header.Get("X-Request-Id")).Scan(&q); err != nil || q != 0.1 {
		t.Errorf("ledger quantity %v, %v; want 0.1", q, err)
	}
}

// TestStreamRefusedOnceShutdownBegan: a handshake that arrives after the
// streams' shutdown began (on a connection the HTTP server still serves)
// is accepted and closed at once with 1001 shutting_down, and nothing is
// charged.
func TestStreamRefusedOnceShutdownBegan(t *testing.T) {
	g := startStreamGateway(t, "5s", "15s")
	_, key, _ := g.newOrg("acme", "basic", streamModels, nil)
	g.main.API.CloseStreams(context.Background()) // no stream runs: returns at once
	c, resp := dialWS(t, g.wsURL("/v1/stream", streamQuery+"&api_key="+key), nil)
	if resp.Header.Get("X-Request-Id") == "" {
		t.Error("the refused handshake has no X-Request-Id")
	}
	ce := closeOf(t, c)
	if ce.Code != websocket.StatusGoingAway || ce.Reason != "shutting_down" {
		t.Errorf("closed %d %q, want 1001 shutting_down", ce.Code, ce.Reason)
	}
	if seconds, credits, events := g.streamUsage("acme", "stt-stream"); seconds != 0 || credits != 0 || events != 0 {
		t.Errorf("a refused stream was charged: %v s, %v credits, %d events", seconds, credits, events)
	}
}

// TestDemoStream dials the ws:// URL `tollgate demo` prints, as printed,
// and streams the demo's sample PCM through it.
func TestDemoStream(t *testing.T) {
	var out strings.Builder
	d := &Demo{Dir: t.TempDir(), Listen: "127.0.0.1:0", Out: &out, Logger: discardLogger()}
	ctx, cancel := context.WithCancel(context.Background())
	if err := d.Open(ctx); err != nil {
		t.Fatal(err)
	}
	d.PrintWelcome()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo Run: %v", err)
		}
	}()
	var url string
	for _, line := range strings.Split(out.String(), "\n") {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "ws://") {
			url = l
			break
		}
	}
	if url == "" || !strings.Contains(out.String(), "websocat -b -B 3200 '"+url+"' < "+d.PCM) {
		t.Fatalf("no ws:// URL and websocat line printed:\n%s", out.String())
	}
	pcm, err := os.ReadFile(d.PCM)
	if err != nil || len(pcm) != 64000 {
		t.Fatalf("sample PCM: %d bytes, %v", len(pcm), err)
	}
	c, _ := dialWS(t, url, nil)
	for i := 0; i < 20; i++ {
		send(t, c, websocket.MessageBinary, pcm[i*3200:(i+1)*3200])
		if a := readAnswer(t, c); a.Chunk != i+1 || math.Abs(a.RMS-0.3/math.Sqrt2) > 0.01 {
			t.Fatalf("answer %d: %+v", i, a)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// TestStreamUpstreamDrops: a model that goes away mid-stream without a
// close frame ends the stream with 1014 upstream_unavailable; the audio
// it took is billed and the slot is free.
func TestStreamUpstreamDrops(t *testing.T) {
	g := startStreamGateway(t, "1s", "15s")
	_, key, _ := g.newOrg("acme", "basic", streamModels, nil)
	c, _ := dialWS(t, g.wsURL("/v1/stream", streamQuery+"&api_key="+key+"&drop_after=2"), nil)
	for range 2 {
		send(t, c, websocket.MessageBinary, make([]byte, 640))
		readAnswer(t, c)
	}
	if ce := closeOf(t, c); ce.Code != 1014 || ce.Reason != "upstream_unavailable" {
		t.Errorf("closed %d %q, want 1014 upstream_unavailable", ce.Code, ce.Reason)
	}
	waitFor(t, 5*time.Second, func() bool { return g.inFlight("acme", "stt-stream") == 0 })
	if sec, _, n := g.streamUsage("acme", "stt-stream"); sec != 0.04 || n != 1 {
		t.Errorf("ledger: %v s over %d events, want 0.04 over 1", sec, n)
	}
}

// TestStreamUpstreamPingTimeout: a model that stops answering pings (it
// hung) ends the stream with 1011 upstream_timeout, and the slot is free.
func TestStreamUpstreamPingTimeout(t *testing.T) {
	g := startStreamGateway(t, "1s", "15s")
	_, key, _ := g.newOrg("acme", "basic", streamModels, nil)
	c, _ := dialWS(t, g.wsURL("/v1/ping-stream", streamQuery+"&api_key="+key+"&stall_after=1"), nil)
	send(t, c, websocket.MessageBinary, make([]byte, 640))
	readAnswer(t, c)
	start := time.Now()
	if ce := closeOf(t, c); ce.Code != 1011 || ce.Reason != "upstream_timeout" {
		t.Errorf("closed %d %q, want 1011 upstream_timeout", ce.Code, ce.Reason)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("closed after %v; want about the 200 ms ping interval, twice", d)
	}
	waitFor(t, 5*time.Second, func() bool { return g.inFlight("acme", "ping-stream") == 0 })
}

// TestStreamSettlesExactly: a stream on a monthly limit reserves a chunk
// (1 s) ahead, and at its end the counter keeps the audio sent, not the
// chunk: the rest of the month's limit is given back.
func TestStreamSettlesExactly(t *testing.T) {
	g := startStreamGateway(t, "1s", "15s")
	_, key, _ := g.newOrg("acme", "metered", streamModels, nil)
	c, _ := dialWS(t, g.wsURL("/v1/stream", streamQuery+"&api_key="+key), nil)
	for range 15 { // 15 × 20 ms
		send(t, c, websocket.MessageBinary, make([]byte, 640))
		readAnswer(t, c)
	}
	c.Close(websocket.StatusNormalClosure, "")
	waitFor(t, 5*time.Second, func() bool { _, _, n := g.streamUsage("acme", "stt-stream"); return n == 1 })
	units := func() float64 {
		b := g.usage("acme")["balance"].(map[string]any)
		u, _ := b["month_units"].(map[string]any)
		v, _ := u["stt-stream"].(float64)
		return v
	}
	waitFor(t, 5*time.Second, func() bool { return units() < 0.5 })
	if got := units(); math.Abs(got-0.3) > 1e-9 {
		t.Errorf("month units of stt-stream after the stream: %v, want the 0.3 s sent", got)
	}
}
