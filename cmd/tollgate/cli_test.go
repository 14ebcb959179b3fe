package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func runCLI(t *testing.T, environ []string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := newRootCmd(&out, io.Discard, environ)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`
listen: "nope"
admin_token: short
key_secret: "0123456789abcdef0123"
error_profile: fancy
models:
  - {id: a, route: POST /v1/a, upstream: "ftp://x"}
  - {id: a, route: POST /v1/a, upstream: "http://127.0.0.1:1", upstrem: typo}
plans:
  - {id: free, rpm: 0}
`), 0o644)
	_, err := runCLI(t, nil, "check-config", "--config", bad)
	if err == nil {
		t.Fatal("bad config accepted")
	}
	msg := err.Error()
	for _, want := range []string{"listen", "admin_token", "error_profile", "models[0].upstream", "models[1]", "upstrem", "plans[0].rpm"} {
		if !strings.Contains(msg, want) {
			t.Errorf("report lacks %q:\n%s", want, msg)
		}
	}

	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(`
admin_token: 0123456789abcdef
key_secret: 0123456789abcdef0123
models:
  - {id: a, route: POST /v1/a, upstream: "http://127.0.0.1:1"}
plans:
  - {id: free, rpm: 10}
`), 0o644)
	out, err := runCLI(t, nil, "check-config", "--config", good)
	if err != nil || !strings.Contains(out, "ok") {
		t.Fatalf("good config: %q, %v", out, err)
	}
	// Env overrides apply to check-config too.
	if _, err := runCLI(t, []string{"TOLLGATE_ADMIN_TOKEN=x"}, "check-config", "--config", good); err == nil {
		t.Error("a short TOLLGATE_ADMIN_TOKEN passed")
	}
	if _, err := runCLI(t, nil, "check-config", "--config", filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a missing file passed")
	}
}

// TestAdminCLI drives the admin commands against a running gateway.
func TestAdminCLI(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	env := []string{"TOLLGATE_SERVER=" + g.url, "TOLLGATE_ADMIN_TOKEN=" + testAdmin}
	steps := []struct {
		args []string
		want string // in the output, or in the error when fail
		fail bool
	}{
		{[]string{"plan", "put", "pro", "--rpm", "100", "--features", "text", "--concurrency", "3"}, `"rpm": 100`, false},
		{[]string{"plan", "list"}, `"pro"`, false},
		{[]string{"plan", "put", "metered", "--rpm", "10", "--monthly-limit", "echo-text=2.5"}, `"echo-text": 2.5`, false},
		{[]string{"plan", "put", "bad", "--rpm", "10", "--monthly-limit", "echo-text=lots"}, "not a number", true},
		{[]string{"org", "create", "--id", "acme", "--name", "Acme", "--plan", "pro", "--models", "echo-text"}, `"id": "acme"`, false},
		{[]string{"org", "create", "--id", "acme", "--name", "Acme", "--plan", "pro"}, "conflict", true},
		{[]string{"grant", "add", "acme", "slow-ok"}, `"slow-ok"`, false},
		{[]string{"grant", "remove", "acme", "slow-ok"}, `"echo-text"`, false},
		{[]string{"concurrency", "set", "acme", "echo-text", "1"}, `"echo-text": 1`, false},
		{[]string{"key", "create", "--org", "acme", "--name", "ci", "--rpm", "50"}, `"key": "tg_live_`, false},
		{[]string{"key", "create", "--org", "acme", "--name", "ci"}, "conflict", true},
		{[]string{"key", "create", "--org", "acme", "--name", "fast", "--rpm", "500"}, "validation_error", true},
		{[]string{"key", "list", "--org", "acme"}, `"name": "ci"`, false},
		{[]string{"org", "show", "nope"}, "not_found", true},
		// billing changes only what its flags name.
		{[]string{"org", "billing", "acme", "--active", "--monthly-limit", "echo-text=100"}, `"active": true`, false},
		{[]string{"org", "billing", "acme", "--monthly-credit-limit", "50"}, `"monthly_credit_limit": 50`, false},
		{[]string{"org", "show", "acme"}, `"echo-text": 100`, false},
		{[]string{"org", "show", "acme"}, `"active": true`, false},
		{[]string{"org", "billing", "acme", "--active=false"}, `"active": false`, false},
		{[]string{"org", "show", "acme"}, `"monthly_credit_limit": 50`, false},
	}
	for _, s := range steps {
		out, err := runCLI(t, env, s.args...)
		got := out
		if err != nil {
			got = err.Error()
		}
		if (err != nil) != s.fail || !strings.Contains(got, s.want) {
			t.Errorf("tollgate %s: err=%v, output:\n%s\nwant %q", strings.Join(s.args, " "), err, out, s.want)
		}
	}
	out, _ := runCLI(t, env, "key", "list", "--org", "acme")
	if strings.Contains(out, `"key":`) {
		t.Errorf("key list shows a key:\n%s", out)
	}
	if _, err := runCLI(t, []string{"TOLLGATE_SERVER=" + g.url}, "org", "list"); err == nil || !strings.Contains(err.Error(), "admin token") {
		t.Errorf("no token: %v", err)
	}
}

// TestDemo runs the demo and the curl lines it prints, as printed.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	d := &Demo{Dir: t.TempDir(), Listen: "127.0.0.1:0", Out: &out, Logger: discardLogger()}
	ctx, cancel := context.WithCancel(context.Background())
	if err := d.Open(ctx); err != nil {
		t.Fatal(err)
	}
	d.PrintWelcome()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo Run: %v", err)
		}
	}()
	if !strings.Contains(out.String(), d.Key) {
		t.Fatal("the key is not printed")
	}
	var curls []string
	for _, line := range strings.Split(out.String(), "\n") {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "curl ") {
			curls = append(curls, l)
		}
	}
	if len(curls) < 7 {
		t.Fatalf("only %d curl lines:\n%s", len(curls), out.String())
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed; the printed lines were not run")
	}
	want := []string{`"output":"HELLO TOLLGATE"`, `"bytes":64044`, `"code":"audio_too_short"`, "401", "504", "502", "X-Tollgate-Model: echo-text"}
	for i, w := range want {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, "sh", "-c", curls[i])
		cmd.Dir = "."
		b, err := cmd.CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(b), w) {
			t.Errorf("%s\n=> %v\n%s\nwant %q", curls[i], err, b, w)
		}
	}
}
