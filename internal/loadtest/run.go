package loadtest

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// runClosed has c.Connections workers send back to back for d (or until
// ctx ends) or until max requests are answered. Requests still in flight
// when d or ctx closes the window are neither counted nor recorded.
func runClosed(ctx context.Context, hc *fasthttp.HostClient, tmpl *fasthttp.Request, c Config, d time.Duration, max int64) *Result {
	var t tally
	var stopped atomic.Bool
	var stopAt atomic.Int64 // nanoseconds since start
	start := time.Now()
	stop := func() {
		if stopped.CompareAndSwap(false, true) {
			stopAt.Store(int64(time.Since(start)))
		}
	}
	timer := time.AfterFunc(d, stop)
	defer timer.Stop()
	defer context.AfterFunc(ctx, stop)()

	var wg sync.WaitGroup
	for range c.Connections {
		wg.Go(func() {
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			tmpl.CopyTo(req)
			for !stopped.Load() {
				if t.sent.Add(1) > max {
					t.sent.Add(-1) // the others finish theirs; the window ends with the last
					return
				}
				sent := time.Now()
				err := hc.DoDeadline(req, resp, sent.Add(c.Timeout))
				done := time.Since(start)
				if stopped.Load() && int64(done) > stopAt.Load() {
					t.sent.Add(-1) // finished after the window
					return
				}
				if err != nil {
					t.error(err)
					continue
				}
				t.response(resp.StatusCode(), done-sent.Sub(start))
			}
		})
	}
	wg.Wait()
	stop()
	return t.result(Closed, time.Duration(stopAt.Load()))
}

// runOpen sends request i at t0 + i/Rate for d (or until max requests or
// ctx) through at most c.MaxInFlight workers, and records each latency from
// the request's intended send time. A request due when every worker is
// busy is dropped and counted. It waits for the requests in flight (each
// bounded by c.Timeout).
func runOpen(ctx context.Context, hc *fasthttp.HostClient, tmpl *fasthttp.Request, c Config, d time.Duration, max int64) *Result {
	var t tally
	total := min(int64(d.Seconds()*c.Rate), max)
	t0 := time.Now()
	due := func(i int64) time.Time {
		return t0.Add(time.Duration(float64(i) * float64(time.Second) / c.Rate))
	}

	jobs := make(chan int64) // unbuffered: a send succeeds only to an idle worker
	worker := func(i int64) {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		tmpl.CopyTo(req)
		for ok := true; ok; i, ok = <-jobs {
			intended := due(i)
			t.sent.Add(1)
			sent := time.Now()
			t.lag.Record(sent.Sub(intended))
			err := hc.DoDeadline(req, resp, sent.Add(c.Timeout))
			if err != nil {
				t.error(err)
				continue
			}
			done := time.Now()
			t.response(resp.StatusCode(), done.Sub(intended))
			t.service.Record(done.Sub(sent))
		}
	}

	var stopped atomic.Bool
	defer context.AfterFunc(ctx, func() { stopped.Store(true) })()
	var wg sync.WaitGroup
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		defer lockDispatchThread()()
		workers := 0
		for i := int64(0); i < total; i++ {
			// Sleep in slices of at most 10 ms, so ctx is seen soon.
			for wait := time.Until(due(i)); wait > 0; wait = time.Until(due(i)) {
				if stopped.Load() {
					return
				}
				sleepFor(min(wait, 10*time.Millisecond))
			}
			select {
			case jobs <- i:
				continue
			default:
			}
			if workers < c.MaxInFlight {
				workers++
				wg.Go(func() { worker(i) })
				continue
			}
			t.dropped.Add(1)
		}
	}()
	<-dispatched
	close(jobs)
	wg.Wait()
	r := t.result(Open, d)
	r.Rate = c.Rate
	return r
}
