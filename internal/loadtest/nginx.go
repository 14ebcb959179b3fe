package loadtest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// NginxPath is the nginx binary on PATH (or in /usr/sbin, which is not on
// every user's PATH), or "" when nginx is not installed.
func NginxPath() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	return ""
}

// NginxVersion is e.g. "nginx/1.22.1".
func NginxVersion(path string) string {
	out, _ := exec.Command(path, "-v").CombinedOutput()
	s := strings.TrimSpace(string(out))
	if _, v, ok := strings.Cut(s, "version: "); ok {
		return v
	}
	return s
}

// nginxConf is the reference a platform engineer would write: proxy_pass to
// a keep-alive upstream pool, HTTP/1.1 upstream, no access log (the Go
// servers log no requests either), keep-alive requests not capped at
// nginx's default 1,000 per connection (Go's servers do not cap them).
const nginxConf = `daemon off;
master_process on;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    upstream model {
        server %[2]s;
        keepalive 256;
        keepalive_requests 1000000;
    }
    server {
        listen %[3]s;
        location / {
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`

// StartNginx writes an nginx.conf in dir proxying to upstream (an
// http://host:port URL), starts nginx on a free loopback port and waits
// until it accepts connections. Stop ends it by its PID.
func StartNginx(path, dir, upstream string) (*Process, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// nginx's workers may run as another user (nobody, when started as root).
	os.Chmod(dir, 0o755)
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, dir, u.Host, addr), 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "error.log")
	cmd := exec.Command(path, "-p", dir, "-c", conf, "-e", logPath)
	out, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = childSysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	p := &Process{Name: "nginx", URL: "http://" + addr, PID: cmd.Process.Pid, Log: logPath, cmd: cmd,
		done: make(chan struct{}),
		stop: func() error { return cmd.Process.Signal(syscall.SIGTERM) }}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p, nil
		}
		if p.Exited() {
			return nil, fmt.Errorf("nginx exited (%v): %s %s", p.err, tail(out.Name()), tail(logPath))
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("nginx did not listen on %s within 10s: %s", addr, tail(logPath))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort is a loopback address free a moment ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
