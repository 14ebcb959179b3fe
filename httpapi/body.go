package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/tollgate/tollgate"
)

// stallGuard bounds how long a request body may send nothing: each read
// must bring something within idle (the model's timeout). A client that
// stops mid-upload would otherwise hold its goroutine, its spool file
// and, on a route that streams the body to the model, its concurrency
// slot for as long as it keeps the connection open. The deadline is
// lifted once the body has ended (net/http then reads the connection in
// the background to notice the client leaving, which a deadline would
// turn into a false disconnect) and when the handler returns.
type stallGuard struct {
	body    io.ReadCloser
	rc      *http.ResponseController
	idle    time.Duration
	armed   bool // a deadline is set
	stalled bool // it passed: it stays
}

func guardBody(w http.ResponseWriter, r *http.Request, idle time.Duration) *stallGuard {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 || idle <= 0 {
		return nil
	}
	g := &stallGuard{body: r.Body, rc: http.NewResponseController(w), idle: idle}
	r.Body = g
	return g
}

func (g *stallGuard) Read(p []byte) (int, error) {
	if g.rc.SetReadDeadline(time.Now().Add(g.idle)) == nil {
		g.armed = true
	}
	n, err := g.body.Read(p)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			// The deadline stays passed: net/http, which would read the
			// rest of the body before answering, gives up at once and
			// closes the connection after the answer.
			g.stalled = true
			return n, &tollgate.Error{Code: tollgate.CodeValidationError, Variant: tollgate.VariantMalformed,
				Message: fmt.Sprintf("The request body stopped arriving: nothing for %v.", g.idle),
				Err:     fmt.Errorf("read request body: %w", err)}
		}
		g.lift()
	}
	return n, err
}

func (g *stallGuard) Close() error { return g.body.Close() }

// lift removes the deadline, if one is set.
func (g *stallGuard) lift() {
	if g != nil && g.armed && !g.stalled {
		g.rc.SetReadDeadline(time.Time{})
		g.armed = false
	}
}
