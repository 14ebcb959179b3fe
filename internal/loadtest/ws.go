package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// The streaming load: N WebSocket streams held open at once, each sending
// one audio frame every Interval in real time (a microphone's pace, not as
// fast as possible) and reading the one answer the model sends per frame.
// A frame's latency runs from the moment it was due to be sent to its
// answer, so a sender held up by the system under test is charged for it.

// WSConfig is one streaming measurement.
type WSConfig struct {
	// URL is the ws:// URL streams dial (declaration and key included); it
	// must be on loopback.
	URL string
	// Streams is how many streams are held at once.
	Streams int
	// Frame is sent every Interval by every stream.
	Frame    []byte
	Interval time.Duration
	// Ramp spreads the handshakes (and so the streams' phases) over this
	// long. Zero: one Interval.
	Ramp time.Duration
	// Warmup runs before the measurement, uncounted; Duration is the
	// measurement.
	Warmup, Duration time.Duration
	// Seq reads which frame (1 for the first) an answer is for. Nil:
	// DemoSeq.
	Seq func(answer []byte) (int64, bool)
	// Window, when set, is called as the measurement begins (true) and
	// ends (false): to sample CPU.
	Window func(begin bool)
}

// MaxStreams bounds WSConfig.Streams.
const MaxStreams = 5000

// WSResult is what a streaming measurement saw.
type WSResult struct {
	Streams int // streams asked for
	// Opened is how many handshakes succeeded; Held how many streams were
	// still open and answering when the measurement ended.
	Opened, Held int
	// Frames is the frames due within the measurement; Answered how many
	// of them were answered before it ended (plus one Interval of grace).
	Frames, Answered int64
	// Latency is from each measured frame's due time to its answer;
	// FromSend from its actual send; SendLag how late the sender was.
	Latency, FromSend, SendLag *Histogram
	// Errors counts stream failures by kind ("dial", "closed 1011", …).
	Errors  map[string]int
	Elapsed time.Duration
}

// Lost is the measured frames without an answer.
func (r *WSResult) Lost() int64 { return r.Frames - r.Answered }

// DemoSeq reads the demo streaming model's answer: `"chunk":N`.
func DemoSeq(answer []byte) (int64, bool) {
	const key = `"chunk":`
	i := bytes.Index(answer, []byte(key))
	if i < 0 {
		return 0, false
	}
	var n int64
	j := i + len(key)
	for ; j < len(answer) && answer[j] >= '0' && answer[j] <= '9'; j++ {
		n = n*10 + int64(answer[j]-'0')
	}
	return n, j > i+len(key)
}

func (c *WSConfig) validate() error {
	var errs []error
	u, err := url.Parse(c.URL)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("loadtest: URL %q: %w", c.URL, err))
	case u.Scheme != "ws":
		errs = append(errs, fmt.Errorf("loadtest: URL %q: only ws:// is supported", c.URL))
	default:
		if err := CheckLoopback("http://" + u.Host); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Streams < 1 || c.Streams > MaxStreams {
		errs = append(errs, fmt.Errorf("loadtest: %d streams: want 1 to %d", c.Streams, MaxStreams))
	}
	if len(c.Frame) == 0 || c.Interval <= 0 {
		errs = append(errs, errors.New("loadtest: a frame and a positive interval are required"))
	}
	if c.Duration <= 0 || c.Duration > 10*time.Minute || c.Warmup < 0 || c.Warmup > time.Minute || c.Ramp < 0 || c.Ramp > time.Minute {
		errs = append(errs, errors.New("loadtest: duration up to 10m, warmup and ramp up to 1m"))
	}
	return errors.Join(errs...)
}

// wsStream is one stream's state, shared by its sender and reader.
type wsStream struct {
	c     *websocket.Conn
	start time.Time // when frame 1 is due
	// sent[k%len] is when frame k was actually sent (unix nanos).
	sent []atomic.Int64
}

// RunWS opens the streams, runs the warmup and the measurement, and closes
// them. It stops by itself: every phase is bounded, and ctx ends it early.
func RunWS(ctx context.Context, c WSConfig) (*WSResult, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if c.Seq == nil {
		c.Seq = DemoSeq
	}
	if c.Ramp == 0 {
		c.Ramp = c.Interval
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := &WSResult{Streams: c.Streams, Latency: &Histogram{}, FromSend: &Histogram{}, SendLag: &Histogram{}, Errors: map[string]int{}}
	var mu sync.Mutex
	fail := func(kind string) {
		mu.Lock()
		res.Errors[kind]++
		mu.Unlock()
	}

	// Frames due in [from, to) are measured.
	t0 := time.Now()
	from := t0.Add(c.Ramp + c.Warmup)
	to := from.Add(c.Duration)
	var answered, due atomic.Int64
	var held atomic.Int64

	client := &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: -1,
	}}
	ring := int(2*time.Second/c.Interval) + 1
	var wg sync.WaitGroup
	for i := range c.Streams {
		start := t0.Add(time.Duration(int64(c.Ramp) * int64(i) / int64(c.Streams)))
		wg.Go(func() {
			if !sleepCtx(ctx, time.Until(start)) {
				return
			}
			dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
			conn, _, err := websocket.Dial(dctx, c.URL, &websocket.DialOptions{HTTPClient: client})
			dcancel()
			if err != nil {
				fail("dial")
				return
			}
			defer conn.CloseNow()
			mu.Lock()
			res.Opened++
			mu.Unlock()
			st := &wsStream{c: conn, start: time.Now().Add(c.Interval), sent: make([]atomic.Int64, ring)}
			var alive, closing atomic.Bool
			alive.Store(true)
			readerDone := make(chan struct{})
			go func() {
				defer close(readerDone)
				defer alive.Store(false)
				var buf bytes.Buffer
				for {
					_, r, err := conn.Reader(context.Background())
					if err != nil {
						if ctx.Err() == nil && !closing.Load() {
							fail(streamError(err))
						}
						return
					}
					buf.Reset()
					if _, err := buf.ReadFrom(r); err != nil {
						if ctx.Err() == nil {
							fail(streamError(err))
						}
						return
					}
					now := time.Now()
					k, ok := c.Seq(buf.Bytes())
					if !ok {
						continue
					}
					dueAt := st.start.Add(time.Duration(k-1) * c.Interval)
					if dueAt.Before(from) || !dueAt.Before(to) || now.After(to.Add(c.Interval)) {
						continue
					}
					answered.Add(1)
					res.Latency.Record(now.Sub(dueAt))
					if s := st.sent[k%int64(ring)].Load(); s != 0 {
						res.FromSend.Record(now.Sub(time.Unix(0, s)))
					}
				}
			}()
			// Send until the measurement (and one interval for the last
			// answers) is over.
			pace := time.NewTimer(time.Hour)
			defer pace.Stop()
			for k := int64(1); ; k++ {
				dueAt := st.start.Add(time.Duration(k-1) * c.Interval)
				if !dueAt.Before(to) {
					break
				}
				if d := time.Until(dueAt); d > 0 {
					pace.Reset(d)
					select {
					case <-pace.C:
					case <-ctx.Done():
					}
				}
				if ctx.Err() != nil || !alive.Load() {
					break
				}
				now := time.Now()
				st.sent[k%int64(ring)].Store(now.UnixNano())
				if !dueAt.Before(from) {
					due.Add(1)
					res.SendLag.Record(now.Sub(dueAt))
				}
				if err := conn.Write(ctx, websocket.MessageBinary, c.Frame); err != nil {
					if ctx.Err() == nil {
						fail("write")
					}
					break
				}
			}
			sleepCtx(ctx, time.Until(to.Add(c.Interval)))
			if alive.Load() {
				held.Add(1)
			}
			closing.Store(true)
			cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
			go func() {
				<-cctx.Done()
				conn.CloseNow()
			}()
			conn.Close(websocket.StatusNormalClosure, "")
			ccancel()
			<-readerDone
		})
	}
	if c.Window != nil {
		wg.Go(func() {
			if sleepCtx(ctx, time.Until(from)) {
				c.Window(true)
				if sleepCtx(ctx, time.Until(to)) {
					c.Window(false)
				}
			}
		})
	}
	wg.Wait()
	res.Frames, res.Answered, res.Held = due.Load(), answered.Load(), int(held.Load())
	res.Elapsed = time.Since(t0)
	return res, ctx.Err()
}

// sleepCtx sleeps d unless ctx ends first; false when it did.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func streamError(err error) string {
	if code := websocket.CloseStatus(err); code != -1 {
		return "closed " + strconv.Itoa(int(code))
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return "read: " + s
}
