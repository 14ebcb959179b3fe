package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/audio"
)

// stream is one admitted stream, from the handshake to its close.
//
// Two pumps move frames: up (client → upstream: binary audio, checked,
// metered and covered by a reservation before it is forwarded) and down
// (upstream → client, as is). The first end, whoever sees it (a pump, the
// idle or ping timer, shutdown), is the cause; the stream's handler then
// finishes it: no more audio goes upstream, the exact audio forwarded is
// committed to the ledger with one history item, the reservations are
// settled and the lease released, and only then is the client told, with
// the cause's close code.
type stream struct {
	// start is the admission time: the stream's usage belongs to its
	// month (every chunk is reserved in it, and its ledger event is
	// stamped with it), however long the stream runs.
	start time.Time
	route *streamRoute
	s     *Server
	id    string
	// cred is the client's key, checked again at every ping: a key
	// revoked or a grant removed ends the stream.
	cred   string
	access *tollgate.Access
	params streamParams
	facts  tollgate.Facts
	// budget is what reservations are checked against (nil: nothing is
	// reserved, usage is only counted).
	budget *tollgate.Budget
	adm    *admission
	meter  *streamMeter
	client *websocket.Conn
	up     *websocket.Conn

	// fwdMu orders forwarding against the end: once fenced, no audio goes
	// upstream and sent is final.
	fwdMu  sync.Mutex
	fenced bool
	sent   int64 // bytes of audio forwarded upstream

	head    audio.Head
	buf     []byte // the client message being read
	started time.Time
	// lastAudio is when the client last sent audio, as time since started
	// (monotonic).
	lastAudio  atomic.Int64
	idle, ping *time.Timer

	endOnce sync.Once
	ending  chan struct{}
	cause   streamEnd
	pumps   sync.WaitGroup
}

// streamEnd is why a stream ended and what each side is told.
type streamEnd struct {
	// by is who ended it: "client", "upstream" or "gateway".
	by string
	// code and reason are the client's close frame.
	code   websocket.StatusCode
	reason string
	// err is the catalog error the stream ended on (nil for a normal end):
	// the history item's code.
	err *tollgate.Error
	// clientGone: the client cannot be told (it closed or went away).
	clientGone bool
	// upCode closes the upstream (0: at once, without a close handshake:
	// it is gone or at fault).
	upCode websocket.StatusCode
}

var (
	endShutdown = streamEnd{by: "gateway", code: websocket.StatusGoingAway, reason: reasonShutdown, upCode: websocket.StatusGoingAway}
	endIdle     = streamEnd{by: "gateway", code: websocket.StatusPolicyViolation, reason: reasonIdle, upCode: websocket.StatusNormalClosure}
)

// errorEnd ends a stream on a catalog error of the gateway's.
func errorEnd(err error) streamEnd {
	e := tollgate.AsError(err)
	code, reason := closeFor(e)
	return streamEnd{by: "gateway", code: code, reason: reason, err: e, upCode: websocket.StatusNormalClosure}
}

// end records the stream's end, once; later ends are ignored.
func (st *stream) end(e streamEnd) {
	st.endOnce.Do(func() {
		st.cause = e
		close(st.ending)
	})
}

func (st *stream) model() *tollgate.Model { return st.route.model }

// abandon gives back what open took, for a stream that never ran.
func (st *stream) abandon() {
	st.up.CloseNow()
	st.adm.finish()
}

// run serves the stream on the accepted client connection until it ends,
// then finishes it.
func (st *stream) run(c *websocket.Conn) {
	s, m := st.s, st.model()
	st.client = c
	st.ending = make(chan struct{})
	st.started = time.Now()
	// Client messages are capped here, to close with payload_too_large.
	c.SetReadLimit(-1)
	st.buf = make([]byte, min(4096, m.Stream.FrameCap()+1))
	s.streamMetrics.active.Inc()
	defer s.streamMetrics.active.Dec()
	if s.streams.track(st) {
		defer s.streams.untrack(st)
	} else {
		st.end(endShutdown)
	}
	// The timers are set before they are armed: their callbacks re-arm
	// them through these fields.
	idle, ping := m.Stream.Idle(), m.Stream.Ping()
	st.idle = time.AfterFunc(forever, func() { st.checkIdle(idle) })
	st.ping = time.AfterFunc(forever, func() { st.pingPeers(ping) })
	st.idle.Reset(idle)
	st.ping.Reset(ping)
	st.pumps.Add(2)
	go st.pumpUp()
	go st.pumpDown()
	<-st.ending
	st.finish()
}

// pumpUp reads the client's messages, checks and meters them and
// forwards them upstream.
func (st *stream) pumpUp() {
	defer st.pumps.Done()
	frameCap := st.model().Stream.FrameCap()
	for {
		typ, r, err := st.client.Reader(context.Background())
		if err != nil {
			st.end(clientEnd(err))
			return
		}
		frame, err := readMessage(r, &st.buf, frameCap)
		switch {
		case err == errTooBig:
			st.end(errorEnd(&tollgate.Error{Code: tollgate.CodePayloadTooLarge,
				Message: fmt.Sprintf("A message is over %d bytes.", frameCap), Details: map[string]any{"max_bytes": frameCap}}))
			return
		case err != nil:
			st.end(clientEnd(err))
			return
		case typ != websocket.MessageBinary:
			st.end(errorEnd(tollgate.Errorf(tollgate.CodeValidationError, "Send audio in binary messages.")))
			return
		}
		if err := st.check(frame); err != nil {
			st.end(errorEnd(err))
			return
		}
		if err := st.meter.cover(st.sent + int64(len(frame))); err != nil {
			st.end(errorEnd(err))
			return
		}
		if !st.forward(frame) {
			return
		}
		st.lastAudio.Store(int64(time.Since(st.started)))
	}
}

// check refuses audio that does not match the declaration:
// audio_format_mismatch (4002).
func (st *stream) check(frame []byte) error {
	p := st.params
	if len(frame)%p.FrameBytes != 0 {
		return tollgate.Errorf(tollgate.CodeAudioFormatMismatch, "A message of %d bytes is not whole %d-byte samples (%s × %d).",
			len(frame), p.FrameBytes, p.Encoding, p.Channels)
	}
	if name, _ := st.head.Add(frame); name != "" {
		return tollgate.Errorf(tollgate.CodeAudioFormatMismatch, "The data starts with %s, not raw %s PCM.", name, p.Encoding)
	}
	if p.Encoding == "f32le" {
		if i := audio.FirstNonFinite(frame); i >= 0 {
			return tollgate.Errorf(tollgate.CodeAudioFormatMismatch, "Sample %d is NaN or infinite: not f32le PCM.", st.sent/4+int64(i))
		}
	}
	return nil
}

// forward sends one frame upstream unless the stream is fenced; false
// when the stream is over.
func (st *stream) forward(frame []byte) bool {
	st.fwdMu.Lock()
	if st.fenced {
		st.fwdMu.Unlock()
		return false
	}
	err := st.up.Write(context.Background(), websocket.MessageBinary, frame)
	if err == nil {
		st.sent += int64(len(frame))
	}
	st.fwdMu.Unlock()
	if err != nil {
		st.end(st.upstreamEnd(err))
		return false
	}
	return true
}

// pumpDown passes the upstream's messages to the client as they come.
func (st *stream) pumpDown() {
	defer st.pumps.Done()
	buf := make([]byte, 1024)
	for {
		typ, r, err := st.up.Reader(context.Background())
		if err != nil {
			st.end(st.upstreamEnd(err))
			return
		}
		msg, err := readMessage(r, &buf, maxUpstreamMessage)
		if err != nil {
			st.end(st.upstreamEnd(err))
			return
		}
		if err := st.client.Write(context.Background(), typ, msg); err != nil {
			st.end(clientEnd(err))
			return
		}
	}
}

// errTooBig reports a message over its cap.
var errTooBig = errors.New("httpapi: message too big")

// readMessage reads one message into *buf, growing it up to limit+1
// bytes: errTooBig past limit.
func readMessage(r io.Reader, buf *[]byte, limit int) ([]byte, error) {
	b := *buf
	n := 0
	for {
		if n == len(b) {
			if n > limit {
				*buf = b
				return nil, errTooBig
			}
			nb := make([]byte, min(2*len(b), limit+1))
			copy(nb, b[:n])
			b = nb
		}
		k, err := r.Read(b[n:])
		n += k
		if err == io.EOF {
			*buf = b
			if n > limit {
				return nil, errTooBig
			}
			return b[:n], nil
		}
		if err != nil {
			*buf = b
			return nil, err
		}
	}
}

// clientEnd is the end a client's read or write error means: the client
// closed (its close was answered already) or went away.
func clientEnd(err error) streamEnd {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		up := ce.Code
		if !sendable(up) {
			up = websocket.StatusNormalClosure
		}
		return streamEnd{by: "client", code: ce.Code, reason: ce.Reason, clientGone: true, upCode: up}
	}
	return streamEnd{by: "client", code: websocket.StatusAbnormalClosure, clientGone: true, upCode: websocket.StatusGoingAway}
}

// upstreamEnd is the end an upstream read or write error means: the
// upstream closed (its code passes to the client) or went away
// (upstream_unavailable).
func (st *stream) upstreamEnd(err error) streamEnd {
	errCode := st.model().UpstreamErrorCode
	if errCode == "" {
		errCode = tollgate.CodeUpstreamError
	}
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		code, reason := upstreamClose(ce.Code, ce.Reason, errCode)
		e := streamEnd{by: "upstream", code: code, reason: reason}
		switch {
		case code == websocket.StatusTryAgainLater:
			e.err = tollgate.NewError(tollgate.CodeOverloaded)
		case code != websocket.StatusNormalClosure && code != websocket.StatusGoingAway && (code < 4000 || code > 4999):
			e.err = tollgate.NewError(errCode)
		}
		return e
	}
	if errors.Is(err, websocket.ErrMessageTooBig) {
		e := errorEnd(&tollgate.Error{Code: errCode, Err: err})
		e.by, e.upCode = "upstream", 0
		return e
	}
	e := errorEnd(&tollgate.Error{Code: tollgate.CodeUpstreamUnavailable, Err: err})
	e.by, e.upCode = "upstream", 0
	return e
}

// sendable reports whether code may be sent in a close frame.
func sendable(code websocket.StatusCode) bool {
	switch {
	case code == 1004 || code == 1005 || code == 1006 || code == 1015:
		return false
	case code >= 1000 && code <= 1014, code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// checkIdle ends a stream whose client sent no audio for d.
func (st *stream) checkIdle(d time.Duration) {
	select {
	case <-st.ending:
		return
	default:
	}
	quiet := time.Since(st.started) - time.Duration(st.lastAudio.Load())
	if quiet >= d {
		st.end(endIdle)
		return
	}
	st.idle.Reset(d - quiet)
}

// pingPeers checks the key again, then pings the client and the
// upstream; a peer that does not answer within d ends the stream.
func (st *stream) pingPeers(d time.Duration) {
	select {
	case <-st.ending:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := st.recheck(ctx); err != nil {
		st.end(errorEnd(err))
		return
	}
	upErr := make(chan error, 1)
	go func() { upErr <- st.up.Ping(ctx) }()
	clientErr := st.client.Ping(ctx)
	switch err := <-upErr; {
	case clientErr != nil:
		st.end(streamEnd{by: "client", code: websocket.StatusPolicyViolation, reason: reasonPingTimeout, clientGone: true, upCode: websocket.StatusGoingAway})
	case err != nil:
		e := errorEnd(&tollgate.Error{Code: tollgate.CodeUpstreamTimeout, Message: "The model did not answer a ping.", Err: err})
		e.by, e.upCode = "upstream", 0
		st.end(e)
	default:
		st.ping.Reset(d)
	}
}

// recheck resolves the stream's key again (through the key cache, so a
// revocation applies within its TTL, at once on the replica that made
// it): a key no longer valid, or no longer granted the model, is the
// stream's end. Store trouble is not: the stream goes on.
func (st *stream) recheck(ctx context.Context) error {
	access, err := st.s.authenticate(ctx, st.cred)
	if err == nil {
		err = access.Authorize(st.model())
	}
	switch tollgate.ErrorCode(err) {
	case tollgate.CodeInvalidCredential, tollgate.CodeNoModelAccess, tollgate.CodeFeatureNotEnabled:
		return err
	}
	return nil
}

// fenceWait bounds how long finish waits for a frame being written
// upstream before cutting the upstream off.
const fenceWait = 5 * time.Second

// finish ends the stream after its cause: fence, settle, close.
func (st *stream) finish() {
	s, m, e := st.s, st.model(), st.cause
	st.idle.Stop()
	st.ping.Stop()

	// No more audio upstream; sent is final.
	cut := time.AfterFunc(fenceWait, func() { st.up.CloseNow() })
	st.fwdMu.Lock()
	st.fenced = true
	sent := st.sent
	st.fwdMu.Unlock()
	cut.Stop()

	// The upstream's close handshake waits for its answer: alongside.
	upClosed := make(chan struct{})
	go func() {
		defer close(upClosed)
		if e.upCode == 0 {
			st.up.CloseNow()
		} else {
			st.up.Close(e.upCode, "")
		}
	}()

	st.settle(sent, e)

	if e.clientGone {
		st.client.CloseNow()
	} else {
		st.client.Close(e.code, e.reason)
	}
	<-upClosed
	st.pumps.Wait()
	s.streamMetrics.closes.WithLabelValues(m.ID, strconv.Itoa(int(e.code))).Inc()
	s.streamMetrics.seconds.WithLabelValues(m.ID).Add(st.params.Seconds(sent))
	if e.err != nil && (e.err.Code == tollgate.CodeInternal || e.err.Err != nil) {
		s.logger().Warn("stream ended", "request_id", st.id, "model", m.ID, "code", string(e.err.Code), "err", e.err)
	}
}

// settle commits the stream's usage (the exact audio forwarded) and its
// history item to the ledger, then settles the reservations at that usage
// and releases the lease. A stream the ledger could not take is charged
// nothing.
func (st *stream) settle(sent int64, e streamEnd) {
	s, m := st.s, st.model()
	st.meter.drain()
	now := st.start.UTC() // the month the stream's usage was reserved in
	seconds := st.params.Seconds(sent)
	ev := &tollgate.UsageEvent{RequestID: st.id, OrgID: st.access.Org.ID, KeyID: st.access.Key.ID, Model: m.ID,
		Unit: tollgate.UnitAudioSeconds, Quantity: seconds, Credits: seconds * m.Meter.Price, Time: now}
	ev.FreeCredits = st.meter.freeShare(seconds)
	item := st.route.historyItem(st.access, st.id, st.facts, now)
	item.Status = 101
	item.Unit, item.Quantity, item.Credits = ev.Unit, ev.Quantity, ev.Credits
	item.Output = fmt.Sprintf("%d %s by the %s, %.3f s", e.code, e.reason, e.by, seconds)
	if e.reason == "" {
		item.Output = fmt.Sprintf("%d by the %s, %.3f s", e.code, e.by, seconds)
	}
	if e.err != nil {
		item.Code = e.err.Code
	}
	if err := s.ledger.commit(ev, item); err != nil {
		s.logger().Error("ledger: stream usage not recorded; charged nothing", "request_id", st.id, "err", err)
		seconds = 0
	}
	credits, units := st.meter.settle(seconds)
	st.adm.charge(credits, units)
	st.adm.finish()
}
