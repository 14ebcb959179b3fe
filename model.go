package tollgate

import "time"

// Model is one routed model: its public route and its upstream.
type Model struct {
	ID string
	// Feature groups models for plans and history (e.g. "tts", "stt").
	Feature string
	// Method and Path are the public route ("POST", "/v1/models/tts");
	// Path may hold ServeMux wildcards ("/v1/jobs/{id}").
	Method string
	Path   string
	// Upstream is the model server's base URL; the request path is sent
	// unchanged unless UpstreamPath is set.
	Upstream     string
	UpstreamPath string
	// Timeout bounds the upstream call up to its response headers
	// (upstream_timeout when exceeded). Zero means 60 s.
	Timeout time.Duration
	// Fallbacks are model ids tried in order when this model's upstream is
	// unreachable or answers 5xx.
	Fallbacks []string
	// Profile overrides the deployment's error profile for this model.
	Profile string
	// Statuses remaps error statuses for this model only.
	Statuses map[Code]int
	// Messages replaces error messages for this model only.
	Messages map[Code]string
	// Input holds the input rules (nil: only the default body cap).
	Input *Input
	// Meter says how usage is counted and priced (zero: free requests).
	Meter Meter
	// UpstreamErrorCode is the code answered when the upstream fails with a
	// 5xx other than 503: upstream_error (default) or grpc_error.
	UpstreamErrorCode Code
	// Stream, when set, makes the model a WebSocket stream: Path is its
	// handshake (GET), Upstream a ws:// or wss:// base URL, Timeout bounds
	// the upstream handshake, and Meter counts audio_seconds.
	Stream *Stream
}

// DefaultTimeout is a model's upstream timeout when none is configured.
const DefaultTimeout = 60 * time.Second

// UpstreamTimeout returns m's timeout.
func (m *Model) UpstreamTimeout() time.Duration {
	if m.Timeout <= 0 {
		return DefaultTimeout
	}
	return m.Timeout
}
