package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestDemoModelCmd: `tollgate demo-model` serves the demo model server
// until its context ends.
func TestDemoModelCmd(t *testing.T) {
	pr, pw := io.Pipe()
	cmd := newRootCmd(pw, io.Discard, nil)
	cmd.SetArgs([]string{"demo-model", "--listen", "127.0.0.1:0"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx); pw.Close() }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	url := strings.Fields(strings.TrimPrefix(line, "demo model server on "))[0]
	resp, err := http.Get(url + "/v1/hello")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /v1/hello: %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("demo-model: %v", err)
	}
}
