package httpapi

import (
	"context"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate"
)

// Close reasons for ends that are not catalog errors.
const (
	reasonShutdown    = "shutting_down"
	reasonIdle        = "idle_timeout"
	reasonPingTimeout = "ping_timeout"
)

// maxCloseReason is the most a close frame's reason may hold (125 bytes
// of payload less the code).
const maxCloseReason = 123

// closeFor is the close code and reason a catalog error closes a stream
// with: the catalog's close code (1011, internal_error's, for a code
// without one) and the code as the reason. An error about what the client
// sent (1003, 4002, 1009) says what was wrong after the code:
// "audio_format_mismatch: the data starts with a WAV header".
func closeFor(e *tollgate.Error) (websocket.StatusCode, string) {
	info := tollgate.Lookup(e.Code)
	code := info.CloseCode
	if code == 0 {
		code = tollgate.Lookup(tollgate.CodeInternal).CloseCode
	}
	reason := string(info.Code)
	switch code {
	case 1003, 1009, 4002:
		if e.Message != "" && e.Message != info.Message {
			reason = truncateReason(reason + ": " + e.Message)
		}
	}
	return websocket.StatusCode(code), reason
}

// truncateReason cuts s to a close frame's reason, on a rune boundary.
func truncateReason(s string) string {
	if len(s) <= maxCloseReason {
		return s
	}
	n := maxCloseReason - len("…")
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// upstreamClose is what the client is told when the upstream closed with
// code: the code passes through; the upstream's reason too with 1000,
// 1001 or an application code (4000-4999), which are the model's own
// protocol, as an upstream 4xx body is. An error code's reason may hold
// internals and is replaced by errCode (the model's upstream_error or
// grpc_error; overloaded for 1013), as a 5xx body is. Codes that cannot
// be sent (1005, 1006, 1015, out of range) become errCode's (1014).
func upstreamClose(code websocket.StatusCode, reason string, errCode tollgate.Code) (websocket.StatusCode, string) {
	switch {
	case code == websocket.StatusNormalClosure || code == websocket.StatusGoingAway || (code >= 4000 && code <= 4999):
		return code, truncateReason(strings.ToValidUTF8(reason, ""))
	case code == websocket.StatusTryAgainLater:
		return code, string(tollgate.CodeOverloaded)
	case code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006, code >= 3000 && code <= 3999:
		return code, string(errCode)
	}
	return websocket.StatusCode(tollgate.Lookup(errCode).CloseCode), string(errCode)
}

// streamSet is the streams being served, for shutdown. The zero value is
// ready to use.
type streamSet struct {
	mu      sync.Mutex
	closing bool
	live    map[*stream]struct{}
	// handlers counts the stream handlers running, from the handshake to
	// their return.
	handlers sync.WaitGroup
}

// begin counts a handshake in; false once shutdown has begun. A true
// begin is paired with done.
func (ss *streamSet) begin() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closing {
		return false
	}
	ss.handlers.Add(1)
	return true
}

func (ss *streamSet) done() { ss.handlers.Done() }

// track registers a running stream; false once shutdown has begun.
func (ss *streamSet) track(st *stream) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closing {
		return false
	}
	if ss.live == nil {
		ss.live = make(map[*stream]struct{})
	}
	ss.live[st] = struct{}{}
	return true
}

func (ss *streamSet) untrack(st *stream) {
	ss.mu.Lock()
	delete(ss.live, st)
	ss.mu.Unlock()
}

// goAway refuses new streams and ends every running one with 1001.
func (ss *streamSet) goAway() {
	ss.mu.Lock()
	ss.closing = true
	live := make([]*stream, 0, len(ss.live))
	for st := range ss.live {
		live = append(live, st)
	}
	ss.mu.Unlock()
	for _, st := range live {
		st.end(endShutdown)
	}
}

// CloseStreams is the streams' part of a graceful shutdown. New
// handshakes are refused with 1001 (going away) at once; running streams
// may go on until ctx ends (the drain grace), then those left are closed
// with 1001. Each is settled and in the ledger before its close frame is
// sent, and CloseStreams returns once every stream handler has returned.
// Call it after Drain, alongside http.Server.Shutdown, which does not wait
// for WebSocket (hijacked) connections.
func (s *Server) CloseStreams(ctx context.Context) {
	ss := &s.streams
	ss.mu.Lock()
	ss.closing = true
	ss.mu.Unlock()
	all := make(chan struct{})
	go func() {
		ss.handlers.Wait()
		close(all)
	}()
	select {
	case <-all:
		return
	case <-ctx.Done():
	}
	ss.goAway()
	<-all
}

// streamMetrics are the stream collectors, on the Server's registry.
type streamMetrics struct {
	active  prometheus.Gauge
	closes  *prometheus.CounterVec
	seconds *prometheus.CounterVec
}

func newStreamMetrics(reg *prometheus.Registry) *streamMetrics {
	m := &streamMetrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_stream_active_streams",
			Help: "WebSocket streams open now.",
		}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_stream_closes_total",
			Help: "WebSocket streams closed (refused at the handshake included), by model and close code.",
		}, []string{"model", "close_code"}),
		seconds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_stream_audio_seconds_total",
			Help: "Audio forwarded upstream by streams, in seconds, by model.",
		}, []string{"model"}),
	}
	reg.MustRegister(m.active, m.closes, m.seconds)
	return m
}
