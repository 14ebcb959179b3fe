// Package upstream forwards inference requests to model servers.
//
// The gateway's server is net/http; upstream calls go over fasthttp's pooled
// HostClient (one per upstream base URL), which costs a fraction of
// httputil.ReverseProxy's Transport per request (see PERFORMANCE.md and
// BenchmarkForward). Request and response bodies are streamed, never buffered,
// except a small request body that may have to be resent to a fallback model.
//
// The package decides the upstream error codes: upstream_timeout,
// upstream_unavailable, upstream_error / grpc_error and overloaded are
// assigned here, never translated by the caller.
package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/valyala/fasthttp"
)

// Defaults for the zero values of Proxy's settings.
const (
	DefaultMaxConns            = 4096
	DefaultMaxIdleConnDuration = 4 * time.Second
	DefaultReadBufferSize      = 16 << 10
	DefaultWriteBufferSize     = 16 << 10
	DefaultMaxResendBody       = 1 << 20
)

// Proxy forwards requests to model upstreams. It is safe for concurrent use.
// A zero Proxy is ready to use; New returns one. Settings are read when an
// upstream is first used, so set them before the first Forward.
type Proxy struct {
	// MaxConns caps the connections to one upstream base URL; a request
	// that finds none free waits for one until its model's timeout.
	// Zero means DefaultMaxConns.
	MaxConns int
	// MaxIdleConnDuration closes keep-alive connections idle for longer.
	// Zero means DefaultMaxIdleConnDuration, below the 5 s keep-alive of
	// common model servers (uvicorn, Node) so the gateway never writes to
	// a connection the upstream is closing.
	MaxIdleConnDuration time.Duration
	// ReadBufferSize is the per-connection read buffer; it also caps the
	// size of an upstream's response headers. Zero means DefaultReadBufferSize.
	ReadBufferSize int
	// WriteBufferSize is the per-connection write buffer. Zero means
	// DefaultWriteBufferSize.
	WriteBufferSize int
	// MaxResendBody is the largest request body (with a known length) that
	// is read into memory so it can be resent to a fallback model. Larger
	// or unknown-length bodies are streamed, and fail over only when no
	// body byte was sent. Zero means DefaultMaxResendBody; negative never
	// buffers.
	MaxResendBody int64
	// TLSConfig is used for https:// upstreams; nil means the defaults.
	TLSConfig *tls.Config

	clients sync.Map // Model.Upstream → *host or error
}

// New returns a Proxy with default settings.
func New() *Proxy { return &Proxy{} }

// Close closes idle upstream connections. Connections in use finish their
// request and stay open; the Proxy remains usable.
func (p *Proxy) Close() error {
	p.clients.Range(func(_, v any) bool {
		if h, ok := v.(*host); ok {
			h.hc.CloseIdleConnections()
		}
		return true
	})
	return nil
}

// Result describes a forwarded request.
type Result struct {
	// Model is the model that served the request; when Forward returns a
	// catalog error it is the last model tried (nil if none was).
	Model *tollgate.Model
	// Status is the upstream's status: the one passed to the client, or
	// the failing one (e.g. 500) behind an upstream_error. Zero when no
	// upstream answered.
	Status int
	// Attempts counts the upstream calls made, failed ones included.
	Attempts int
	// Latency is the time from Forward's start to the serving upstream's
	// response headers.
	Latency time.Duration
	// BytesOut counts the response body bytes written to the client.
	BytesOut int64
}

// Forward sends r to the first model in chain that answers, writing the
// upstream's answer to w.
//
// When no model answered it returns a catalog *tollgate.Error and writes
// nothing: upstream_timeout, upstream_unavailable, overloaded, or the last
// model's UpstreamErrorCode for a 5xx. When the client went away first, the
// error wraps context.Canceled (check with errors.Is). After the response
// head is written it returns the Result and any error copying the body,
// which the caller can only log.
//
// The next model in chain is tried when one times out, is unreachable or
// answers 5xx, and only when the request body can be sent again: no body,
// a body of known length up to MaxResendBody (read into memory when chain
// has more than one model), or a streamed body of which no byte was sent.
// A 503 from the last model passes through with Retry-After (1 s when the
// upstream set none); any other 5xx from it becomes the catalog error and
// its body, which may leak internals, is discarded.
//
// A model's UpstreamTimeout bounds the time to its response headers,
// including the dial and sending the request body; the response body is
// not bounded by it. Cancelling r's context aborts the call at any point.
func (p *Proxy) Forward(w http.ResponseWriter, r *http.Request, chain []*tollgate.Model, requestID string) (Result, error) {
	return p.ForwardHook(w, r, chain, requestID, nil)
}

// Hook runs once the serving upstream's response head has arrived and
// before anything is written to the client: the gateway settles and
// commits usage there, so the usage is durable before the response starts.
// header reads one upstream response header. A non-nil error aborts: the
// upstream's answer is discarded, nothing is written, and Forward returns
// that error.
type Hook func(m *tollgate.Model, status int, header func(name string) string) error

// ForwardHook is Forward with a Hook (nil: none).
func (p *Proxy) ForwardHook(w http.ResponseWriter, r *http.Request, chain []*tollgate.Model, requestID string, hook Hook) (Result, error) {
	var res Result
	if len(chain) == 0 {
		return res, &tollgate.Error{Code: tollgate.CodeInternal, Err: errors.New("upstream: empty model chain")}
	}
	start := time.Now()
	ex := acquireExchange()
	defer releaseExchange(ex)
	ex.hook = hook

	if err := ex.prepare(p, r, requestID, len(chain) > 1); err != nil {
		return res, err
	}
	var err error
	for i, m := range chain {
		res.Model = m
		hasNext := i+1 < len(chain)
		var served bool
		served, err = p.attempt(ex, w, r, m, hasNext, start, &res)
		if served {
			return res, err
		}
		if !hasNext || !retryable(err) || !ex.resendable() {
			break
		}
	}
	return res, err
}

// host is one upstream base URL: its pooled client and address parts.
type host struct {
	hc       *fasthttp.HostClient
	hostport string // Host header
	basePath string // path prefix of the base URL, without trailing slash
}

// host returns the client for base, creating it on first use.
func (p *Proxy) host(base string) (*host, error) {
	if v, ok := p.clients.Load(base); ok {
		if h, ok := v.(*host); ok {
			return h, nil
		}
		return nil, v.(error)
	}
	var v any
	h, err := p.newHost(base)
	if err != nil {
		v = err
	} else {
		v = h
	}
	v, _ = p.clients.LoadOrStore(base, v)
	if h, ok := v.(*host); ok {
		return h, nil
	}
	return nil, v.(error)
}

func (p *Proxy) newHost(base string) (*host, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("upstream: parse %q: %w", base, err)
	}
	if u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("upstream: %q is not an http:// or https:// URL", base)
	}
	isTLS := u.Scheme == "https"
	hc := &fasthttp.HostClient{
		Addr:                fasthttp.AddMissingPort(u.Host, isTLS),
		IsTLS:               isTLS,
		TLSConfig:           p.TLSConfig,
		MaxConns:            orInt(p.MaxConns, DefaultMaxConns),
		MaxIdleConnDuration: orDuration(p.MaxIdleConnDuration, DefaultMaxIdleConnDuration),
		ReadBufferSize:      orInt(p.ReadBufferSize, DefaultReadBufferSize),
		WriteBufferSize:     orInt(p.WriteBufferSize, DefaultWriteBufferSize),
		// Wait for a free connection rather than fail at once; each
		// request's own timeout bounds the wait.
		MaxConnWaitTimeout: 24 * time.Hour,
		// LIFO keeps a hot set of connections busy and lets the rest
		// expire when load drops.
		ConnPoolStrategy:              fasthttp.LIFO,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		StreamResponseBody:            true,
	}
	return &host{
		hc:       hc,
		hostport: u.Host,
		basePath: strings.TrimSuffix(u.EscapedPath(), "/"),
	}, nil
}

// retryable reports whether err lets the next model in the chain be tried.
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	switch tollgate.ErrorCode(err) {
	case tollgate.CodeUpstreamTimeout, tollgate.CodeUpstreamUnavailable,
		tollgate.CodeUpstreamError, tollgate.CodeGRPCError, tollgate.CodeOverloaded:
		return true
	}
	return false
}

// upstreamErrorCode is the code m answers for a failing upstream.
func upstreamErrorCode(m *tollgate.Model) tollgate.Code {
	if m.UpstreamErrorCode != "" {
		return m.UpstreamErrorCode
	}
	return tollgate.CodeUpstreamError
}

// copyBody copies the upstream body to w, flushing after each chunk when
// flush is set. It reports the bytes written and whether the body was read
// to its end.
func copyBody(w http.ResponseWriter, body io.Reader, buf []byte, flush bool) (n int64, eof bool, err error) {
	var rc *http.ResponseController
	if flush {
		rc = http.NewResponseController(w)
	}
	for {
		nr, rerr := body.Read(buf)
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, false, fmt.Errorf("upstream: write response: %w", werr)
			}
			if flush {
				switch ferr := rc.Flush(); {
				case errors.Is(ferr, http.ErrNotSupported):
					flush = false // a wrapper without Flush: stream unflushed
				case ferr != nil:
					return n, false, fmt.Errorf("upstream: flush response: %w", ferr)
				}
			}
		}
		if rerr == io.EOF {
			return n, true, nil
		}
		if rerr != nil {
			return n, false, fmt.Errorf("upstream: read response body: %w", rerr)
		}
	}
}

func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func orDuration(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}
