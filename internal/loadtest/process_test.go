package loadtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// TestMain doubles as a bench child: with LOADTEST_CHILD=1 the test binary
// serves "ok" on loopback, announces its URL and exits when stdin closes.
func TestMain(m *testing.M) {
	if os.Getenv("LOADTEST_CHILD") == "1" {
		ctx, cancel := ParentContext(context.Background(), os.Stdin)
		defer cancel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
		Announce(os.Stdout, "http://"+ln.Addr().String())
		<-ctx.Done()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestStartChild(t *testing.T) {
	t.Setenv("LOADTEST_CHILD", "1")
	p, err := StartChild("child", os.Args[0], []string{"-test.run=^$"}, filepath.Join(t.TempDir(), "child.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	r, err := Run(context.Background(), Config{Mode: Closed, Connections: 2, Duration: 5 * time.Second, MaxRequests: 50,
		Request: Request{URL: p.URL}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Responses[200] != 50 {
		t.Errorf("responses %v, errors %v", r.Responses, r.Errors)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if !p.Exited() {
		t.Error("child still running after Stop")
	}
}

// The comparison proxies answer what the upstream answers.
func TestProxies(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/hello" || r.Header.Get("X-API-Key") != "k" {
			http.Error(w, "bad request", 400)
			return
		}
		io.WriteString(w, `{"hello":true}`)
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	rp := httptest.NewServer(NewReverseProxy(u))
	defer rp.Close()
	targets := map[string]string{"reverseproxy": rp.URL}
	if path := NginxPath(); path == "" {
		t.Log("nginx not installed: not tested")
	} else {
		p, err := StartNginx(path, filepath.Join(t.TempDir(), "nginx"), up.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := p.Stop(); err != nil {
				t.Errorf("stop nginx: %v", err)
			}
		}()
		targets["nginx"] = p.URL
	}
	for name, base := range targets {
		r, err := Run(context.Background(), Config{Mode: Closed, Connections: 4, Duration: 5 * time.Second, MaxRequests: 200,
			Request: Request{URL: base + "/v1/hello", Header: [][2]string{{"X-API-Key", "k"}}}})
		if err != nil {
			t.Fatal(err)
		}
		if r.Responses[200] != 200 {
			t.Errorf("%s: responses %v, errors %v", name, r.Responses, r.Errors)
		}
	}
}

func TestCPU(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	before, ok := ProcessCPU(os.Getpid(), false)
	machine, ok2 := MachineCPU()
	if !ok || !ok2 {
		t.Fatal("no /proc")
	}
	// Spin until the process has used 50 ms of CPU: on a loaded machine
	// (parallel test packages) that takes longer than 50 ms of wall time.
	// The counters tick at 10 ms, so a reading that never moves fails.
	var after time.Duration
	for deadline := time.Now().Add(10 * time.Second); after-before < 50*time.Millisecond; {
		if time.Now().After(deadline) {
			t.Fatalf("10 s of spinning: process CPU moved %v", after-before)
		}
		for end := time.Now().Add(5 * time.Millisecond); time.Now().Before(end); {
		}
		after, _ = ProcessCPU(os.Getpid(), true)
	}
	machine2, _ := MachineCPU()
	if machine2-machine < 40*time.Millisecond {
		t.Errorf("process used %v of CPU, the machine only %v", after-before, machine2-machine)
	}
}
