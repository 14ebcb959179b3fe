package httpapi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/audio"
)

// streamRoute is a stream model's route: the WebSocket handshake walks the
// request path of DESIGN.md (authenticate, authorize, rate, the declared
// format, a first quota chunk and the concurrency slot, the upstream's
// handshake), then the stream proxies frames both ways, checking and
// metering the audio as it flows (stream_proxy.go).
//
// Every refusal accepts the upgrade and closes at once with the catalog's
// close code and the code as the reason: browsers cannot read the status
// of a failed upgrade.
type streamRoute struct {
	*route
	// client dials upstreams: HTTP/1.1, no proxy from the environment.
	client *http.Client
}

func (s *Server) newStreamRoute(rt *route) *streamRoute {
	return &streamRoute{route: rt, client: &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		ForceAttemptHTTP2:   false,
		MaxIdleConnsPerHost: -1, // upgraded connections are never idle
		TLSHandshakeTimeout: 10 * time.Second,
	}}}
}

// streamParams is the audio a client declared at the handshake.
type streamParams struct {
	Encoding   string
	SampleRate int
	Channels   int
	// FrameBytes is one sample frame (sample size × channels): every
	// message must hold a whole number of them.
	FrameBytes int
	// BytesPerSecond is SampleRate × FrameBytes.
	BytesPerSecond float64
}

// Seconds converts bytes of this audio to seconds.
func (p streamParams) Seconds(n int64) float64 { return float64(n) / p.BytesPerSecond }

func (p streamParams) String() string {
	return fmt.Sprintf("%s %d Hz × %d", p.Encoding, p.SampleRate, p.Channels)
}

// parseStreamParams checks audio_format, sample_rate and num_channels
// against what the stream accepts: validation_error (1003) naming every
// problem.
func parseStreamParams(q url.Values, st *tollgate.Stream) (streamParams, error) {
	var p streamParams
	var problems []string
	var details []map[string]any
	bad := func(field, reason, msg string) {
		problems = append(problems, msg)
		details = append(details, map[string]any{"field": field, "reason": reason})
	}
	p.Encoding = q.Get("audio_format")
	switch {
	case p.Encoding == "":
		bad("audio_format", "required", "audio_format is required")
	case audio.SampleSize(p.Encoding) == 0 || !st.AcceptsFormat(p.Encoding):
		bad("audio_format", "unsupported", fmt.Sprintf("audio_format %q is not supported (want %s)", truncate(p.Encoding, 20), acceptedFormats(st)))
	}
	if v := q.Get("sample_rate"); v == "" {
		bad("sample_rate", "required", "sample_rate is required")
	} else if n, err := strconv.Atoi(v); err != nil {
		bad("sample_rate", "not_integer", fmt.Sprintf("sample_rate %q is not an integer", truncate(v, 20)))
	} else if !st.AcceptsRate(n) {
		bad("sample_rate", "unsupported", fmt.Sprintf("sample_rate %d is not supported (want %s)", n, acceptedInts(st.SampleRates, "1000 to 384000")))
	} else {
		p.SampleRate = n
	}
	if v := q.Get("num_channels"); v == "" {
		bad("num_channels", "required", "num_channels is required")
	} else if n, err := strconv.Atoi(v); err != nil {
		bad("num_channels", "not_integer", fmt.Sprintf("num_channels %q is not an integer", truncate(v, 20)))
	} else if !st.AcceptsChannels(n) {
		bad("num_channels", "unsupported", fmt.Sprintf("num_channels %d is not supported (want %s)", n, acceptedInts(st.Channels, "1 or 2")))
	} else {
		p.Channels = n
	}
	if len(problems) > 0 {
		return p, &tollgate.Error{Code: tollgate.CodeValidationError, Message: strings.Join(problems, "; "),
			Details: map[string]any{"errors": details}}
	}
	p.FrameBytes = audio.SampleSize(p.Encoding) * p.Channels
	p.BytesPerSecond = float64(p.SampleRate * p.FrameBytes)
	return p, nil
}

func acceptedFormats(st *tollgate.Stream) string {
	if len(st.Formats) == 0 {
		return strings.Join(audio.Encodings, ", ")
	}
	return strings.Join(st.Formats, ", ")
}

func acceptedInts(v []int, all string) string {
	if len(v) == 0 {
		return all
	}
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

// streamCredential takes the key from the headers, as any request, or
// else from the api_key query parameter (browsers cannot set headers on
// a WebSocket).
func streamCredential(r *http.Request) (string, error) {
	key, err := credential(r)
	if tollgate.ErrorCode(err) != tollgate.CodeMissingCredential {
		return key, err
	}
	if v := strings.TrimSpace(r.URL.Query().Get("api_key")); v != "" {
		return v, nil
	}
	return "", err
}

// isWebSocket reports whether r asks for a WebSocket upgrade.
func isWebSocket(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h[name] {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// acceptOptions: the origin is not checked. The credential is an API key
// the client sends explicitly (query or header), never a cookie, so a
// page on another origin gains nothing it did not already hold; browser
// clients on any origin are the point of the api_key parameter.
var acceptOptions = &websocket.AcceptOptions{InsecureSkipVerify: true}

func (sr *streamRoute) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := sr.s
	id := newRequestID()
	w.Header().Set("X-Request-Id", id)
	if !isWebSocket(r) {
		w.Header().Set("Upgrade", "websocket")
		code, status := s.writeError(w, r, sr.profile, &tollgate.Error{Code: tollgate.CodeValidationError, Status: http.StatusUpgradeRequired,
			Message: "This route is a WebSocket stream: connect with a WebSocket client."}, id)
		s.metrics.requests.WithLabelValues(sr.model.ID, string(code), strconv.Itoa(status)).Inc()
		return
	}
	var (
		st  *stream
		err = errShuttingDown
	)
	if s.streams.begin() {
		defer s.streams.done()
		st, err = sr.open(w, r, id)
	}
	c, aerr := websocket.Accept(w, r, acceptOptions)
	if aerr != nil {
		// Accept has answered (400, 426, …): nothing was streamed.
		if st != nil {
			st.abandon()
		}
		return
	}
	if err != nil {
		s.refuseStream(c, sr.model.ID, err, id)
		return
	}
	s.metrics.requests.WithLabelValues(sr.model.ID, "ok", "101").Inc()
	st.run(c)
}

// refuseStream closes a just-accepted stream with err's close code and
// code string, and counts it.
func (s *Server) refuseStream(c *websocket.Conn, model string, err error, requestID string) {
	if err == errShuttingDown {
		s.metrics.requests.WithLabelValues(model, "shutting_down", "101").Inc()
		s.streamMetrics.closes.WithLabelValues(model, strconv.Itoa(int(websocket.StatusGoingAway))).Inc()
		c.Close(websocket.StatusGoingAway, reasonShutdown)
		return
	}
	e := tollgate.AsError(err)
	if e.Code == tollgate.CodeInternal || e.Err != nil {
		s.logger().Error("stream refused", "request_id", requestID, "model", model, "code", string(e.Code), "err", e)
	}
	code, reason := closeFor(e)
	s.metrics.requests.WithLabelValues(model, string(e.Code), "101").Inc()
	s.streamMetrics.closes.WithLabelValues(model, strconv.Itoa(int(code))).Inc()
	c.Close(code, reason)
}

// refuseUpgrade answers a WebSocket handshake that reached no stream
// route (model_not_found, 4004) the way a stream refuses.
func (s *Server) refuseUpgrade(w http.ResponseWriter, r *http.Request, err error) {
	c, aerr := websocket.Accept(w, r, acceptOptions)
	if aerr != nil {
		return
	}
	e := tollgate.AsError(err)
	code, reason := closeFor(e)
	c.Close(code, reason)
}

// open walks the handshake's request path. On success the stream holds
// its admission and its upstream connection (abandon gives them back if
// the upgrade then fails); on error nothing is held.
func (sr *streamRoute) open(w http.ResponseWriter, r *http.Request, requestID string) (*stream, error) {
	s := sr.s
	// The stream outlives nothing of the request but its values.
	ctx := context.WithoutCancel(r.Context())
	m := sr.model

	// Authenticate.
	cred, err := streamCredential(r)
	if err != nil {
		return nil, err
	}
	access, err := s.authenticate(ctx, cred)
	if err != nil {
		return nil, err
	}
	// Authorize.
	if err := access.Authorize(m); err != nil {
		return nil, err
	}
	// Rate: before the declaration is looked at, in the chain's order.
	now := s.now()
	rate := tollgate.Admission{RateKey: "rate:" + access.Key.ID, Rate: tollgate.PerMinute(access.RPM())}
	got, err := s.adm.Admit(ctx, rate, now)
	s.countAdmission(rate, err)
	if got.Rate.Limit > 0 {
		setRateHeaders(w.Header(), got.Rate)
	}
	if err != nil {
		return nil, err
	}
	// Validate the declared audio.
	q := r.URL.Query()
	params, err := parseStreamParams(q, m.Stream)
	facts := tollgate.Facts{Summary: truncate(q.Get("audio_format"), 20) + " " + truncate(q.Get("sample_rate"), 10) + " Hz × " + truncate(q.Get("num_channels"), 5)}
	if err != nil {
		sr.recordFailure(access, requestID, facts, err, now)
		return nil, err
	}
	facts.Summary = params.String()
	// Admit: the first chunk of audio reserved, and the concurrency slot.
	st := &stream{route: sr, s: s, id: requestID, cred: cred, access: access, params: params, facts: facts, start: now}
	held, reserved, err := sr.admit(ctx, st, now)
	if err != nil {
		sr.recordFailure(access, requestID, facts, err, now)
		return nil, err
	}
	st.adm = held
	st.meter = newStreamMeter(s, st, reserved)
	// The upstream's handshake.
	up, err := sr.dial(ctx, r, requestID)
	if err != nil {
		sr.recordFailure(access, requestID, facts, err, now)
		held.finish()
		return nil, err
	}
	st.up = up
	return st, nil
}

// errShuttingDown refuses a handshake once shutdown has begun: 1001
// (going away), so the client reconnects, to another replica.
var errShuttingDown = errors.New("httpapi: shutting down")

// forever marks a lease as long-held, so the heartbeat loop extends it.
const forever = time.Duration(math.MaxInt64)

// admit takes the concurrency slot and reserves the first chunk of audio.
// When the full chunk is refused but some of the budget is left, what is
// left is reserved instead, so a stream may use the last of a quota.
func (sr *streamRoute) admit(ctx context.Context, st *stream, now time.Time) (*admission, float64, error) {
	s, m, access := sr.s, sr.model, st.access
	var adm tollgate.Admission
	if limit := access.ConcurrencyLimit(m.ID); limit > 0 {
		adm.LeaseKey, adm.Concurrency = "conc:"+access.Org.ID+":"+m.ID, limit
	}
	var unreserved *tollgate.Reservation
	if s.Quota != nil {
		b := access.Budget(m)
		if b.Limited() {
			st.budget = &b
		} else {
			period, _, _ := tollgate.Period(now)
			unreserved = &tollgate.Reservation{OrgID: b.OrgID, Model: b.Model, Period: period}
		}
	}
	seconds := m.Stream.Chunk()
	for attempt := 0; ; attempt++ {
		if st.budget != nil {
			adm.Budget, adm.Credits, adm.Units = st.budget, seconds*m.Meter.Price, seconds
		}
		held, _, err := s.admit(ctx, adm, now, forever, st.id)
		if err == nil {
			held.unreserved = unreserved
			if st.budget == nil {
				seconds = 0
			}
			return held, seconds, nil
		}
		left, ok := affordable(err, m.Meter.Price, st.params)
		if st.budget == nil || attempt == 2 || !ok || left >= seconds {
			return nil, 0, err
		}
		seconds = left
	}
}

// affordable reads a refused reservation's details for the audio seconds
// still left under the limit that refused it; ok is false when there is
// not one sample frame's worth.
func affordable(err error, price float64, p streamParams) (seconds float64, ok bool) {
	e := tollgate.AsError(err)
	used, _ := detailNumber(e.Details["used"])
	var left float64
	switch e.Code {
	case tollgate.CodeQuotaExceeded:
		limit, ok := detailNumber(e.Details["limit"])
		if !ok {
			return 0, false
		}
		left = limit - used
		if e.Details["unit"] == string(tollgate.UnitCredits) {
			if price <= 0 {
				return 0, false
			}
			left /= price
		}
	case tollgate.CodeBillingRequired:
		free, ok := detailNumber(e.Details["free_credits"])
		if !ok || price <= 0 {
			return 0, false
		}
		left = (free - used) / price
	default:
		return 0, false
	}
	// Whole microseconds, rounded down: float crumbs must not pass the limit.
	left = math.Floor(left*1e6) / 1e6
	return left, left*p.BytesPerSecond >= float64(p.FrameBytes)
}

func detailNumber(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, !math.IsNaN(n) && !math.IsInf(n, 0)
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}

// maxUpstreamMessage caps one message from the upstream (results are
// small JSON; an upstream sending more is broken).
const maxUpstreamMessage = 1 << 20

// dial opens the upstream's WebSocket: the model's base URL, the request
// path (or upstream_path) and the client's query parameters but api_key;
// the request id goes along, the client's credentials never do.
func (sr *streamRoute) dial(ctx context.Context, r *http.Request, requestID string) (*websocket.Conn, error) {
	m := sr.model
	u, err := url.Parse(m.Upstream)
	if err != nil {
		return nil, &tollgate.Error{Code: tollgate.CodeInternal, Err: fmt.Errorf("stream upstream %q: %w", m.Upstream, err)}
	}
	path := m.UpstreamPath
	if path == "" {
		path = r.URL.Path
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	q := r.URL.Query()
	q.Del("api_key")
	u.RawQuery = q.Encode()

	ctx, cancel := context.WithTimeout(ctx, m.UpstreamTimeout())
	defer cancel()
	c, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{
		HTTPClient: sr.client,
		HTTPHeader: http.Header{"X-Request-Id": {requestID}},
	})
	if err != nil {
		return nil, dialError(ctx, m, resp, err)
	}
	c.SetReadLimit(maxUpstreamMessage)
	return c, nil
}

// dialError names a failed upstream handshake: upstream_timeout (1011)
// past the model's timeout, overloaded (1013) for a 503, the model's
// upstream error code (1014) for another answer, upstream_unavailable
// (1014) when nothing answered.
func dialError(ctx context.Context, m *tollgate.Model, resp *http.Response, err error) error {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return &tollgate.Error{Code: tollgate.CodeUpstreamTimeout, Err: err}
	case resp != nil && resp.StatusCode == http.StatusServiceUnavailable:
		return &tollgate.Error{Code: tollgate.CodeOverloaded, Message: "The model is overloaded; try again.", Err: err}
	case resp != nil:
		code := m.UpstreamErrorCode
		if code == "" {
			code = tollgate.CodeUpstreamError
		}
		return &tollgate.Error{Code: code, Err: fmt.Errorf("upstream answered the handshake %d: %w", resp.StatusCode, err)}
	}
	return &tollgate.Error{Code: tollgate.CodeUpstreamUnavailable, Err: err}
}
