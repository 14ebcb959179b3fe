package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeyImportFile imports keys from a JSON lines file and a JSON array,
// in batches each stored all or none, and reports where a failing batch
// was.
func TestKeyImportFile(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	g.newOrg("acme", "basic", []string{"echo-text"}, nil)
	env := []string{"TOLLGATE_SERVER=" + g.url, "TOLLGATE_ADMIN_TOKEN=" + testAdmin}
	cli := func(stdin string, args ...string) (string, error) {
		var out bytes.Buffer
		cmd := newRootCmd(&out, io.Discard, env)
		cmd.SetIn(strings.NewReader(stdin))
		cmd.SetArgs(args)
		err := cmd.ExecuteContext(context.Background())
		return out.String(), err
	}
	keys := func() int {
		return len(g.admin("GET", "/admin/orgs/acme/keys", nil, 200)["keys"].([]any))
	}
	dir := t.TempDir()
	lines := filepath.Join(dir, "keys.jsonl")
	os.WriteFile(lines, []byte(fmt.Sprintf(`# exported from the old API
{"name": "a", "key": "sk-legacy-aaaaaaaaaaaaaaaaaaaa", "rpm": 10}

{"name": "b", "hash": "%x", "scheme": "sha256", "models": ["echo-text"]}
`, sha256.Sum256([]byte("sk-legacy-bbbbbbbbbbbbbbbbbbbb")))), 0o600)
	out, err := cli("", "key", "import", "--org", "acme", "--file", lines)
	if err != nil || !strings.Contains(out, "imported 2 keys") {
		t.Fatalf("JSON lines: %q, %v", out, err)
	}
	for _, k := range []string{"sk-legacy-aaaaaaaaaaaaaaaaaaaa", "sk-legacy-bbbbbbbbbbbbbbbbbbbb"} {
		if r := g.do("POST", "/v1/text", map[string]string{"X-API-Key": k}, `{"text":"x"}`); r.Status != 200 {
			t.Errorf("imported key: %d %s", r.Status, r.Body)
		}
	}
	// A JSON array from stdin.
	if out, err := cli(`[{"name": "c", "key": "sk-legacy-cccccccccccccccccccc"}]`, "key", "import", "--org", "acme", "--file", "-"); err != nil || !strings.Contains(out, "imported 1 keys") {
		t.Fatalf("JSON array on stdin: %q, %v", out, err)
	}

	// Batches: the first 1,000 are stored, the failing second batch is
	// reported with its entries and stores nothing.
	var b strings.Builder
	for i := range 1001 {
		key := fmt.Sprintf("sk-batch-%020d", i)
		if i == 1000 {
			key = "short"
		}
		fmt.Fprintf(&b, `{"name": "k%d", "key": %q}`+"\n", i, key)
	}
	before := keys()
	_, err = cli(b.String(), "key", "import", "--org", "acme", "--file", "-")
	if err == nil || !strings.Contains(err.Error(), "imported 1000 of 1001 keys; the batch of entries 1001 to 1001") || !strings.Contains(err.Error(), "keys[0].key") {
		t.Fatalf("failing second batch: %v", err)
	}
	if n := keys() - before; n != 1000 {
		t.Errorf("%d keys stored, want the first batch's 1000", n)
	}

	for _, args := range [][]string{
		{"--file", lines, "--name", "x"},             // settings come from the file
		{"--name", "x"},                              // neither a key nor a hash
		{"--name", "x", "--key", "a", "--hash", "b"}, // both
	} {
		if _, err := cli("", append([]string{"key", "import", "--org", "acme"}, args...)...); err == nil {
			t.Errorf("key import %v succeeded", args)
		}
	}
}
