package httpapi

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/tollgate/tollgate"
)

// writeError renders err through profile: status, Retry-After on every 429
// and 503, and the profile's JSON body. Internal causes are logged with the
// request id and never rendered.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, p tollgate.Profile, err error, requestID string) (tollgate.Code, int) {
	e := tollgate.AsError(err)
	status := p.Status(e)
	if e.Code == tollgate.CodeInternal || e.Err != nil {
		s.logger().LogAttrs(r.Context(), slog.LevelError, "request failed",
			slog.String("request_id", requestID),
			slog.String("code", string(e.Code)),
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Any("err", e))
	}
	h := w.Header()
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable || e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(tollgate.RetryAfterSeconds(e.RetryAfter)))
	}
	if status == http.StatusMethodNotAllowed {
		if allow, ok := e.Details["allow"].(string); ok {
			h.Set("Allow", allow)
		}
	}
	writeJSON(w, status, p.Body(e, status, requestID))
	return e.Code, status
}

// writeJSON answers v as JSON, without escaping <, > and & (json.Marshal
// does, for HTML): an API reproduced behind tollgate keeps its bytes.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	b := buf.Bytes()
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"Internal error.","code":"internal_error"}` + "\n")
	} else {
		b = buf.Bytes() // Encode ends the value with a newline
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(b)
}
