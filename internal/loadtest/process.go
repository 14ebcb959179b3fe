package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// A benchmark runs each server in its own process, so that no server
// shares a Go runtime (scheduler, GC) with the load generator or with
// another server. Children of the bench are the bench binary itself in a
// serve mode: a child announces its URL with one line on stdout,
//
//	listening http://127.0.0.1:PORT
//
// and shuts down when its stdin closes, so it cannot outlive the bench
// (on Linux it also gets SIGTERM when the bench dies).

const announcePrefix = "listening "

// Announce writes the line StartChild waits for.
func Announce(w io.Writer, url string) error {
	_, err := fmt.Fprintf(w, "%s%s\n", announcePrefix, url)
	return err
}

// ParentContext returns a context that ends with ctx or when stdin reaches
// EOF (the parent closed it, or died).
func ParentContext(ctx context.Context, stdin io.Reader) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		io.Copy(io.Discard, stdin)
		cancel()
	}()
	return ctx, cancel
}

// Process is a server started for a benchmark.
type Process struct {
	Name string
	URL  string
	PID  int
	Log  string // path of its stderr (and, for nginx, error log)

	cmd   *exec.Cmd
	stdin io.Closer
	done  chan struct{}
	err   error
	// stop asks the process to end; Stop kills it after a grace.
	stop func() error
}

// StartChild runs path with args (a serve mode of the bench binary), its
// stderr appended to logPath, and waits up to 15 s for its announced URL.
func StartChild(name, path string, args []string, logPath string) (*Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(path, args...)
	cmd.Stderr = logf
	cmd.SysProcAttr = childSysProcAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p := &Process{Name: name, Log: logPath, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	p.stop = stdin.Close
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p.PID = cmd.Process.Pid
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), announcePrefix); ok {
				lines <- u
				break
			}
		}
		io.Copy(io.Discard, stdout)
		p.err = cmd.Wait()
		close(p.done)
	}()
	select {
	case p.URL = <-lines:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before listening (%v): %s", name, p.err, tail(logPath))
	case <-time.After(15 * time.Second):
		p.Stop()
		return nil, fmt.Errorf("%s did not announce its address within 15s: %s", name, tail(logPath))
	}
}

// Stop asks the process to shut down and kills it (by its PID) if it has
// not within 5 s.
func (p *Process) Stop() error {
	if p == nil {
		return nil
	}
	p.stop()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s (pid %d) did not stop within 5s: killed", p.Name, p.PID)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) && !ee.Exited() {
		return nil // ended by a signal we sent
	}
	return p.err
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail is the end of a log file, for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	b = bytes.TrimSpace(b)
	if len(b) > 800 {
		b = b[len(b)-800:]
	}
	if len(b) == 0 {
		return "(no output)"
	}
	return string(b)
}
