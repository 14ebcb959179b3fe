package upstream

import (
	"net"
	"net/http"
	"strings"

	"github.com/tollgate/tollgate"
)

// HeaderModel names the response header telling which model served.
const HeaderModel = "X-Tollgate-Model"

// copyRequestHeader copies r's headers to the upstream request, minus the
// hop-by-hop ones and the client's credentials, and sets the forwarding
// headers.
func (ex *exchange) copyRequestHeader(r *http.Request, requestID string) {
	h := &ex.req.Header
	// Headers named by Connection are hop-by-hop too (RFC 9110 §7.6.1).
	connection := r.Header["Connection"]
	for k, vs := range r.Header {
		if dropRequestHeader(k) || (connection != nil && listedIn(connection, k)) {
			continue
		}
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	if requestID != "" {
		h.Set("X-Request-Id", requestID)
	}

	b := ex.scratch[:0]
	for _, v := range r.Header["X-Forwarded-For"] {
		if len(b) > 0 {
			b = append(b, ", "...)
		}
		b = append(b, v...)
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if len(b) > 0 {
			b = append(b, ", "...)
		}
		b = append(b, ip...)
	}
	if len(b) > 0 {
		h.SetBytesV("X-Forwarded-For", b)
	}
	ex.scratch = b
	if r.TLS != nil {
		h.Set("X-Forwarded-Proto", "https")
	} else {
		h.Set("X-Forwarded-Proto", "http")
	}
	if r.Host != "" {
		h.Set("X-Forwarded-Host", r.Host)
	}
}

// dropRequestHeader reports whether the request header k stays at the
// gateway: hop-by-hop headers, the credentials (the model server never sees
// the customer's key, nor the dashboard's session cookie), headers fasthttp
// sets from the request itself, and the forwarding headers set above.
func dropRequestHeader(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"X-Api-Key", "Authorization", "Cookie",
		"Host", "Content-Length", "Expect",
		"X-Request-Id", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host":
		return true
	}
	if len(k) > 6 && strings.EqualFold(k[:6], "Proxy-") {
		return true
	}
	// r.Header is canonical when net/http parsed it; a handcrafted one may
	// not be, and credentials must not slip through.
	switch len(k) {
	case len("X-Api-Key"):
		return strings.EqualFold(k, "X-Api-Key")
	case len("Authorization"):
		return strings.EqualFold(k, "Authorization")
	case len("Cookie"):
		return strings.EqualFold(k, "Cookie")
	}
	return false
}

// dropResponseHeader reports whether the upstream's response header k is
// hop-by-hop. fasthttp has normalized k.
func dropResponseHeader(k []byte) bool {
	switch string(k) {
	case "Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return len(k) > 6 && string(k[:6]) == "Proxy-"
}

// retryAfterOne is the Retry-After of a 503 or 429 that came without one:
// every 429 and 503 a client gets says when to retry.
const retryAfterOne = "1"

// writeHead copies the upstream's response head to w and writes it. Headers
// the gateway already set on w (X-Request-Id, rate-limit headers) win over
// the upstream's. All values share one string and one slice backing array,
// so a typical response costs two allocations here.
func (ex *exchange) writeHead(w http.ResponseWriter, m *tollgate.Model, status int) {
	src := &ex.resp.Header
	b := ex.scratch[:0]
	fields := ex.fields[:0]
	var connection []byte
	for k, v := range src.All() {
		if dropResponseHeader(k) {
			if string(k) == "Connection" {
				connection = append(connection, v...)
			}
			continue
		}
		fields = append(fields, field{key: headerKey(k), start: len(b), end: len(b) + len(v)})
		b = append(b, v...)
	}
	ex.scratch, ex.fields = b, fields

	dst := w.Header()
	all := string(b)
	vals := make([]string, len(fields)+1)
	for i, f := range fields {
		if connection != nil && listed(connection, f.key) {
			continue
		}
		vals[i] = all[f.start:f.end]
		cur, ok := dst[f.key]
		switch {
		case !ok:
			dst[f.key] = vals[i : i+1 : i+1]
			ex.added = append(ex.added, f.key)
		case ex.setHere(f.key):
			dst[f.key] = append(cur, vals[i])
		}
	}
	if (status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests) && len(dst["Retry-After"]) == 0 {
		dst["Retry-After"] = []string{retryAfterOne}
	}
	n := len(fields)
	vals[n] = m.ID
	dst[HeaderModel] = vals[n : n+1 : n+1]
	w.WriteHeader(status)
}

func (ex *exchange) setHere(key string) bool {
	for _, k := range ex.added {
		if k == key {
			return true
		}
	}
	return false
}

// listed reports whether the Connection header value conn names key.
func listed(conn []byte, key string) bool {
	return listedIn([]string{string(conn)}, key)
}

// listedIn reports whether the Connection header values conn name key.
func listedIn(conn []string, key string) bool {
	for _, v := range conn {
		for name := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(name), key) {
				return true
			}
		}
	}
	return false
}

// headerKey returns k as a string, without allocating for common names.
func headerKey(k []byte) string {
	switch string(k) {
	case "Content-Type":
		return "Content-Type"
	case "Content-Length":
		return "Content-Length"
	case "Content-Encoding":
		return "Content-Encoding"
	case "Content-Disposition":
		return "Content-Disposition"
	case "Cache-Control":
		return "Cache-Control"
	case "Server":
		return "Server"
	case "Set-Cookie":
		return "Set-Cookie"
	case "Vary":
		return "Vary"
	case "Etag":
		return "Etag"
	case "Last-Modified":
		return "Last-Modified"
	case "Location":
		return "Location"
	case "Retry-After":
		return "Retry-After"
	case "X-Request-Id":
		return "X-Request-Id"
	case "X-Content-Type-Options":
		return "X-Content-Type-Options"
	case "Access-Control-Allow-Origin":
		return "Access-Control-Allow-Origin"
	case "X-Ratelimit-Limit":
		return "X-Ratelimit-Limit"
	case "X-Ratelimit-Remaining":
		return "X-Ratelimit-Remaining"
	case "X-Ratelimit-Reset":
		return "X-Ratelimit-Reset"
	}
	return string(k)
}
