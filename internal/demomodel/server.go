package demomodel

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server is the demo model listening on a TCP address.
type Server struct {
	*Handler
	// URL is the base URL, e.g. http://127.0.0.1:40123.
	URL string

	srv       *http.Server
	done      chan error
	closeOnce sync.Once
	closeErr  error
}

// Start serves a new demo model on a free loopback port.
func Start() (*Server, error) { return Listen("127.0.0.1:0") }

// Listen serves a new demo model on addr.
func Listen(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demomodel: listen: %w", err)
	}
	h := New()
	s := &Server{
		Handler: h,
		URL:     "http://" + ln.Addr().String(),
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       60 * time.Second,
		},
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server at once, closing its connections; requests in
// flight see their context cancelled. Closing twice is harmless.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		err := s.srv.Close()
		if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
		s.closeErr = err
	})
	return s.closeErr
}
