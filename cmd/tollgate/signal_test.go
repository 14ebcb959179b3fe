package main

import (
	"fmt"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/demomodel"
)

// TestSIGTERMDrains runs the gateway as its own process and sends it
// SIGTERM while a request is at the model: that request is answered 200,
// new connections are refused, and the process exits 0.
func TestSIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a subprocess")
	}
	models, err := demomodel.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer models.Close()
	cfg, addr, _ := processConfig(t, fmt.Sprintf(`
shutdown_grace: 10s
models:
  - {id: slow, route: POST /v1/slow, upstream: %q, upstream_path: /v1/slow, timeout: 10s}
plans:
  - {id: p, rpm: 1000, features: ["*"]}
`, models.URL))
	proc := startProcess(t, cfg, addr)
	var waitErr error
	exited := make(chan struct{}) // closed once the process has exited
	go func() { waitErr = proc.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			proc.Process.Kill()
			<-exited
		}
	}()
	g := &gateway{t: t, url: "http://" + addr}
	_, key, _ := g.newOrg("acme", "p", []string{"slow"}, nil)

	answered := make(chan int, 1)
	go func() { answered <- post(http.DefaultClient, g.url+"/v1/slow?ms=800", key, "{}", nil) }()
	waitFor(t, 5*time.Second, func() bool { return models.InFlight() == 1 })
	if err := proc.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("a new connection was accepted after SIGTERM")
	}
	if status := <-answered; status != 200 {
		t.Errorf("the request in flight at SIGTERM ended with %d, want 200", status)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("the gateway exited with %v, want 0", waitErr)
		}
	case <-time.After(10 * time.Second):
		t.Error("the gateway did not exit within 10 s of SIGTERM")
	}
}
