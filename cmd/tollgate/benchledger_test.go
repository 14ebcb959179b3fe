package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestScrapeLedger: the bench reads a real gateway's ledger metrics, and
// what they move by between two reads is the requests answered in between,
// each in a group commit; a refused request waits for no commit.
func TestScrapeLedger(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	_, key, _ := g.newOrg("acme", "basic", allModels, nil)
	client := &http.Client{}
	before, err := scrapeLedger(client, g.url)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if r := g.do("POST", "/v1/text", map[string]string{"X-API-Key": key}, `{"text":"x"}`); r.Status != 200 {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
	}
	g.do("POST", "/v1/text", nil, `{"text":"x"}`) // 401: no commit
	after, err := scrapeLedger(client, g.url)
	if err != nil {
		t.Fatal(err)
	}
	d := after.since(before)
	if d.waits != 3 || d.commits != 3 || d.waitSum <= 0 || d.over1ms < 0 || d.over1ms > 3 {
		t.Errorf("ledger moved by %+v; want 3 waits in 3 commits", d)
	}
	if d.perCommit() != 1 || d.mean() <= 0 {
		t.Errorf("per commit %v, mean %v", d.perCommit(), d.mean())
	}
	if s := d.String(); !strings.Contains(s, "1.0 requests/commit") {
		t.Errorf("summary %q", s)
	}
}

// TestParseLedgerMetrics: the share over 1 ms comes from the 1 ms bucket;
// a page without the ledger's series (not a tollgate) is refused, and so
// is a value that is not a number.
func TestParseLedgerMetrics(t *testing.T) {
	page := `# HELP tollgate_ledger_wait_seconds ...
# TYPE tollgate_ledger_wait_seconds histogram
tollgate_ledger_wait_seconds_bucket{le="0.0005"} 50
tollgate_ledger_wait_seconds_bucket{le="0.001"} 90
tollgate_ledger_wait_seconds_bucket{le="+Inf"} 100
tollgate_ledger_wait_seconds_sum 0.08
tollgate_ledger_wait_seconds_count 100
tollgate_ledger_commit_requests_sum 100
tollgate_ledger_commit_requests_count 40
`
	l, err := parseLedgerMetrics(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	if l.waits != 100 || l.over1ms != 10 || l.commits != 40 || l.shareOver1ms() != 0.1 || l.perCommit() != 2.5 {
		t.Errorf("parsed %+v", l)
	}
	if got := l.mean().String(); got != "800µs" {
		t.Errorf("mean %s, want 800µs", got)
	}
	if _, err := parseLedgerMetrics(strings.NewReader("go_goroutines 12\n")); err == nil {
		t.Error("a page without the ledger's series was accepted")
	}
	if _, err := parseLedgerMetrics(strings.NewReader("tollgate_ledger_wait_seconds_count x\n")); err == nil {
		t.Error("a value that is not a number was accepted")
	}
}
