package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/valyala/fasthttp"
)

// An exchange is one forwarded request's state, reused through a pool: the
// fasthttp request and response (embedded, so they are pooled with it), the
// request body and scratch buffers.
type exchange struct {
	req  fasthttp.Request
	resp fasthttp.Response

	body          bodyReader
	bodyMode      bodyMode
	contentLength int    // of a streamed body; -1 when unknown
	resend        []byte // a buffered body

	uri     []byte
	copyBuf []byte
	scratch []byte
	fields  []field
	hook    Hook
	added   []string // response header keys this exchange set on w
}

type bodyMode uint8

const (
	bodyNone bodyMode = iota
	bodyBuffered
	bodyStreamed
)

// field locates one response header value in exchange.scratch.
type field struct {
	key        string
	start, end int
}

const (
	copyBufSize = 16 << 10
	// maxPooledResend caps the resend buffer kept with a pooled exchange.
	maxPooledResend = 64 << 10
	// maxDrain is the largest failed response body read to keep its
	// connection; larger ones close it.
	maxDrain = 64 << 10
)

var exchangePool = sync.Pool{New: func() any { return new(exchange) }}

func acquireExchange() *exchange { return exchangePool.Get().(*exchange) }

func releaseExchange(ex *exchange) {
	ex.hook = nil
	ex.req.Reset()
	ex.resp.Reset()
	ex.body = bodyReader{}
	ex.bodyMode = bodyNone
	if cap(ex.resend) > maxPooledResend {
		ex.resend = nil
	}
	ex.resend = ex.resend[:0]
	clear(ex.fields)
	ex.fields = ex.fields[:0]
	clear(ex.added)
	ex.added = ex.added[:0]
	exchangePool.Put(ex)
}

// bodyReader is the client's request body as the upstream reads it: it
// counts the bytes sent and keeps the client's read error apart from the
// upstream's. It is no io.Closer, so fasthttp leaves r.Body to net/http.
type bodyReader struct {
	r   io.Reader
	n   int64
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// prepare fills the upstream request from r, except its target, and reads
// a small body into memory when it may have to be resent.
func (ex *exchange) prepare(p *Proxy, r *http.Request, requestID string, failover bool) error {
	if err := r.Context().Err(); err != nil {
		return cancelled("", err)
	}
	h := &ex.req.Header
	h.DisableNormalizing() // net/http has canonicalized the names already
	h.SetNoDefaultContentType(true)
	h.SetMethod(r.Method)
	ex.copyRequestHeader(r, requestID)

	switch {
	case r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0:
		ex.bodyMode = bodyNone
	case failover && r.ContentLength > 0 && r.ContentLength <= p.maxResend():
		n := int(r.ContentLength)
		if cap(ex.resend) < n {
			ex.resend = make([]byte, n)
		}
		ex.resend = ex.resend[:n]
		ex.body.r = r.Body
		if _, err := io.ReadFull(&ex.body, ex.resend); err != nil {
			if ex.body.err == nil {
				ex.body.err = err
			}
			return ex.clientFailure(r.Context(), "")
		}
		ex.bodyMode = bodyBuffered
	default:
		ex.body.r = r.Body
		ex.contentLength = int(r.ContentLength)
		if r.ContentLength < 0 || int64(ex.contentLength) != r.ContentLength {
			ex.contentLength = -1
		}
		ex.bodyMode = bodyStreamed
	}
	return nil
}

func (p *Proxy) maxResend() int64 {
	if p.MaxResendBody == 0 {
		return DefaultMaxResendBody
	}
	return p.MaxResendBody
}

// resendable reports whether the request body can be sent again.
func (ex *exchange) resendable() bool {
	return ex.bodyMode != bodyStreamed || ex.body.n == 0
}

// target points the request at m on h and sets its body for one attempt.
func (ex *exchange) target(h *host, m *tollgate.Model, r *http.Request) {
	path := m.UpstreamPath
	if path == "" {
		path = r.URL.EscapedPath()
	}
	u := append(ex.uri[:0], h.basePath...)
	if len(path) == 0 || path[0] != '/' {
		u = append(u, '/')
	}
	u = append(u, path...)
	if r.URL.RawQuery != "" {
		u = append(u, '?')
		u = append(u, r.URL.RawQuery...)
	}
	ex.uri = u
	ex.req.Header.SetRequestURIBytes(u)
	ex.req.Header.SetHost(h.hostport)

	switch ex.bodyMode {
	case bodyBuffered:
		ex.req.SetBodyRaw(ex.resend)
	case bodyStreamed:
		ex.req.SetBodyStream(&ex.body, ex.contentLength)
	default:
		ex.req.ResetBody()
	}
}

// aLongTimeAgo is a deadline in the past: setting it interrupts blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// attempt makes one upstream call to m. served reports that the answer was
// written to w (err is then a copy error); otherwise err is a catalog error
// and nothing was written.
//
// It drives the connection itself (HostClient.AcquireConn and friends, the
// same calls fasthttp's own transport makes) instead of HostClient.Do, for
// two reasons: Do keeps its deadline on the connection while the response
// body streams, but a model's timeout bounds only the time to the response
// headers; and holding the connection lets a cancelled client interrupt it
// with a deadline in the past (context.AfterFunc), with no goroutine per
// request and no race on pooled request/response objects.
func (p *Proxy) attempt(ex *exchange, w http.ResponseWriter, r *http.Request, m *tollgate.Model, hasNext bool, start time.Time, res *Result) (served bool, err error) {
	ctx := r.Context()
	if err := ctx.Err(); err != nil {
		return false, cancelled(m.ID, err)
	}
	h, err := p.host(m.Upstream)
	if err != nil {
		return false, &tollgate.Error{Code: unreachableCode(m, tollgate.CodeUpstreamUnavailable), Err: fmt.Errorf("upstream: model %s: %w", m.ID, err)}
	}
	res.Attempts++
	ex.target(h, m, r)
	hc := h.hc
	deadline := time.Now().Add(m.UpstreamTimeout())

	cc, err := hc.AcquireConn(time.Until(deadline), false)
	// Drop a pooled connection idle for longer than MaxIdleConnDuration:
	// the cleaner runs only now and then, and the upstream may be closing it.
	for err == nil && !cc.LastUseTime().IsZero() && time.Since(cc.LastUseTime()) > hc.MaxIdleConnDuration {
		hc.CloseConn(cc)
		cc, err = hc.AcquireConn(time.Until(deadline), false)
	}
	if err != nil {
		return false, ex.failure(ctx, m, err, false)
	}
	conn := cc.Conn()
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { _ = conn.SetDeadline(aLongTimeAgo) })
	}
	// done pools the connection, or closes it when it is not reusable or
	// the client's cancellation may have poisoned its deadline.
	done := func(reuse bool) {
		if stop != nil && !stop() {
			reuse = false
		}
		if reuse {
			hc.ReleaseConn(cc)
		} else {
			hc.CloseConn(cc)
		}
	}

	// Send the request, headers and body, and read the response headers,
	// all before the deadline.
	if err := conn.SetDeadline(deadline); err != nil {
		done(false)
		return false, ex.failure(ctx, m, err, false)
	}
	bw := hc.AcquireWriter(conn)
	err = ex.req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if err != nil {
		done(false)
		return false, ex.failure(ctx, m, err, false)
	}
	resp := &ex.resp
	resp.Reset()
	resp.StreamBody = true
	resp.SkipBody = ex.req.Header.IsHead()
	resp.Header.SetNoDefaultContentType(true)
	br := hc.AcquireReader(conn)
	if err := resp.ReadLimitBody(br, 0); err != nil {
		hc.ReleaseReader(br)
		done(false)
		return false, ex.failure(ctx, m, err, true)
	}
	res.Latency = time.Since(start)
	status := resp.StatusCode()
	res.Status = status
	keepConn := !resp.ConnectionClose() && resp.Header.ContentLength() != -2

	// A failing upstream: its body is discarded, still under the deadline.
	var fail error
	switch {
	case status < 200 || (status >= 500 && status != 503):
		fail = &tollgate.Error{Code: upstreamErrorCode(m), Err: fmt.Errorf("upstream: model %s answered %d", m.ID, status)}
	case status == 503 && hasNext && ex.resendable():
		fail = &tollgate.Error{Code: tollgate.CodeOverloaded, RetryAfter: time.Second, Err: fmt.Errorf("upstream: model %s answered 503", m.ID)}
	}
	if fail != nil {
		reuse := keepConn
		if bs := resp.BodyStream(); bs != nil {
			if cl := resp.Header.ContentLength(); cl >= 0 && cl <= maxDrain {
				_, derr := io.Copy(io.Discard, bs)
				reuse = reuse && derr == nil
			} else {
				reuse = false
			}
		}
		resp.CloseBodyStream() //nolint:errcheck // releases the stream to its pool
		hc.ReleaseReader(br)
		done(reuse)
		return false, fail
	}

	// Serve: the body is bounded by the client, not by the model timeout.
	// Clearing the deadline may undo a cancellation that just fired, so
	// check the context after clearing it.
	_ = conn.SetReadDeadline(time.Time{})
	if cerr := ctx.Err(); cerr != nil {
		resp.CloseBodyStream() //nolint:errcheck
		hc.ReleaseReader(br)
		done(false)
		return false, cancelled(m.ID, cerr)
	}
	if ex.hook != nil {
		if herr := ex.hook(m, status, func(name string) string { return string(resp.Header.Peek(name)) }); herr != nil {
			resp.CloseBodyStream() //nolint:errcheck
			hc.ReleaseReader(br)
			done(false)
			return true, herr
		}
	}
	ex.writeHead(w, m, status)
	var (
		eof  = true
		cerr error
	)
	if bs := resp.BodyStream(); bs != nil {
		flush := resp.Header.ContentLength() < 0 || isEventStream(resp.Header.ContentType())
		if ex.copyBuf == nil {
			ex.copyBuf = make([]byte, copyBufSize)
		}
		res.BytesOut, eof, cerr = copyBody(w, bs, ex.copyBuf, flush)
		if cerr != nil && ctx.Err() != nil {
			cerr = fmt.Errorf("%w (%w)", cerr, ctx.Err())
		}
	}
	resp.CloseBodyStream() //nolint:errcheck
	hc.ReleaseReader(br)
	done(keepConn && eof)
	return true, cerr
}

func isEventStream(contentType []byte) bool {
	return bytes.HasPrefix(contentType, []byte("text/event-stream"))
}

// failure turns a failed call into its catalog error. head reports that
// the request was sent and the response head was being read.
func (ex *exchange) failure(ctx context.Context, m *tollgate.Model, err error, head bool) error {
	if err := ex.clientFailure(ctx, m.ID); err != nil {
		return err
	}
	cause := fmt.Errorf("upstream: model %s: %w", m.ID, err)
	switch {
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return &tollgate.Error{Code: tollgate.CodeOverloaded, RetryAfter: time.Second, Err: cause}
	case isTimeout(err):
		return &tollgate.Error{Code: unreachableCode(m, tollgate.CodeUpstreamTimeout), Err: cause}
	case head && !isConnError(err):
		// The upstream answered something that is not HTTP (or headers
		// larger than ReadBufferSize).
		return &tollgate.Error{Code: upstreamErrorCode(m), Err: cause}
	}
	return &tollgate.Error{Code: unreachableCode(m, tollgate.CodeUpstreamUnavailable), Err: cause}
}

// clientFailure is the error when the client's side failed, nil when it
// did not: the gateway's own check of the body (a cap, a stalled upload)
// when it failed, as that may cancel the context too; else a client gone;
// else a body that could not be read.
func (ex *exchange) clientFailure(ctx context.Context, modelID string) error {
	var te *tollgate.Error
	if errors.As(ex.body.err, &te) {
		return te
	}
	if cerr := ctx.Err(); cerr != nil {
		return cancelled(modelID, cerr)
	}
	if ex.body.err != nil {
		return bodyError(ex.body.err)
	}
	return nil
}

// unreachableCode is the code for an upstream that could not be reached
// or did not answer in time: code, except behind a gRPC inference gateway
// (upstream_error_code grpc_error), which reports every failure to talk to
// the model as a gRPC error (UNAVAILABLE, DEADLINE_EXCEEDED): seed 004's
// clients know no other code for it.
func unreachableCode(m *tollgate.Model, code tollgate.Code) tollgate.Code {
	if m.UpstreamErrorCode == tollgate.CodeGRPCError {
		return tollgate.CodeGRPCError
	}
	return code
}

func isTimeout(err error) bool {
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isConnError reports whether err is the connection failing rather than
// the upstream answering garbage.
func isConnError(err error) bool {
	var (
		op    *net.OpError
		errno syscall.Errno
	)
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, fasthttp.ErrConnectionClosed) ||
		errors.As(err, &op) || errors.As(err, &errno)
}

// cancelled is the error for a client that went away. Nobody reads its
// answer; it wraps the context's error so the caller can tell it apart.
func cancelled(modelID string, err error) error {
	return &tollgate.Error{
		Code:    tollgate.CodeUpstreamUnavailable,
		Message: "The request was cancelled.",
		Err:     fmt.Errorf("upstream: model %q: client gone: %w", modelID, err),
	}
}

// bodyError is the error for a request body that could not be read.
func bodyError(err error) error {
	var te *tollgate.Error
	if errors.As(err, &te) {
		return te // the gateway's own body checks already said what is wrong
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &tollgate.Error{Code: tollgate.CodePayloadTooLarge, Err: fmt.Errorf("upstream: read request body: %w", err)}
	}
	return &tollgate.Error{
		Code:    tollgate.CodeValidationError,
		Message: "The request body could not be read.",
		Err:     fmt.Errorf("upstream: read request body: %w", err),
	}
}
