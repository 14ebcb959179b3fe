package main

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/demomodel"
	"github.com/tollgate/tollgate/sqlite"
)

// meteredExtra adds metered models and plans to the e2e config's models
// and plans through YAML anchors would be neat; instead the e2e config is
// reused and billing is set through the admin API.

func (g *gateway) plan(id string, body map[string]any) {
	g.t.Helper()
	g.admin("PUT", "/admin/plans/"+id, body, 200)
}

// usageTotal reads the ledger through the admin usage API.
func (g *gateway) usage(org string) map[string]any {
	g.t.Helper()
	return g.admin("GET", "/admin/orgs/"+org+"/usage?group_by=model", nil, 200)
}

func creditsOf(u map[string]any) float64 {
	var total float64
	for _, r := range u["rows"].([]any) {
		total += r.(map[string]any)["credits"].(float64)
	}
	return total
}

func requestsOf(u map[string]any) int {
	var n int
	for _, r := range u["rows"].([]any) {
		n += int(r.(map[string]any)["requests"].(float64))
	}
	return n
}

// TestNoOvershoot: a budget for exactly 10 requests, 200 concurrent
// requests from a cold start → exactly 10 admitted, the ledger holds 10 ×
// the price.
func TestNoOvershoot(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	// echo-text costs 1 request; price it through the meter-priced model below.
	g.plan("free", map[string]any{"rpm": 100000, "features": []string{"*"}, "billing_required": true, "free_credits": 15})
	_, key, _ := g.newOrg("acme", "free", []string{"priced"}, nil)
	const n = 200
	var wg sync.WaitGroup
	codes := make(chan int, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			codes <- post(http.DefaultClient, g.url+"/v1/priced", key, `{"text":"x"}`, nil)
		}()
	}
	close(start)
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[200] != 10 || count[402] != n-10 {
		t.Fatalf("answers %v, want exactly 10 × 200 and %d × 402", count, n-10)
	}
	u := g.usage("acme")
	if c := creditsOf(u); c != 15 || requestsOf(u) != 10 {
		t.Errorf("ledger: %v credits over %d requests, want 15 over 10", c, requestsOf(u))
	}
	free := u["balance"].(map[string]any)["free_credits"].(map[string]any)
	if free["left"] != float64(0) || free["used"] != float64(15) {
		t.Errorf("balance %v", free)
	}
}

// TestFailedAndRefusedChargeNothing: an upstream failure, a timeout and a
// refused request leave the ledger and the counters as they were.
func TestFailedAndRefusedChargeNothing(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	g.plan("free", map[string]any{"rpm": 100000, "features": []string{"*"}, "billing_required": true, "free_credits": 100})
	_, key, _ := g.newOrg("acme", "free", []string{"priced", "priced-fail", "priced-slow"}, nil)
	h := map[string]string{"X-API-Key": key}
	if r := g.do("POST", "/v1/priced", h, `{"text":"x"}`); r.Status != 200 {
		t.Fatalf("priced: %d %s", r.Status, r.Body)
	}
	for _, c := range []struct {
		path, body string
		status     int
	}{
		{"/v1/priced-fail", `{}`, 502},
		{"/v1/priced-fail?status=400", `{}`, 400}, // the model refuses: passed through
		{"/v1/priced", `{"text":`, 422},
		{"/v1/priced", `{"text":"` + strings.Repeat("a", 300) + `"}`, 422},
		{"/v1/priced-slow?ms=2000", `{}`, 504}, // the model's 200 ms timeout
	} {
		if r := g.do("POST", c.path, h, c.body); r.Status != c.status {
			t.Errorf("%s: %d, want %d: %s", c.path, r.Status, c.status, r.Body)
		}
	}
	u := g.usage("acme")
	if c := creditsOf(u); c != 1.5 || requestsOf(u) != 1 {
		t.Errorf("ledger: %v credits over %d requests, want 1.5 over 1", c, requestsOf(u))
	}
	if used := u["balance"].(map[string]any)["free_credits"].(map[string]any)["used"]; used != 1.5 {
		t.Errorf("free credits used %v, want 1.5", used)
	}
	// History has the success and the failures, newest first.
	hist := g.do("GET", "/v1/history?limit=10", h, "")
	var hl struct {
		Items []struct {
			Status int
			Code   string
			Model  string
		}
	}
	json.Unmarshal(hist.Body, &hl)
	if len(hl.Items) != 6 || hl.Items[5].Status != 200 || hl.Items[4].Code != "upstream_error" ||
		hl.Items[3].Status != 400 || hl.Items[3].Code != "" || hl.Items[0].Code != "upstream_timeout" {
		t.Errorf("history %s", hist.Body)
	}
}

// TestQuotaExceeded: a monthly credit limit answers quota_exceeded with its
// details and Retry-After to the month's end, remapped to 403 by the
// model's profile (seed 000).
func TestQuotaExceeded(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	g.plan("paid", map[string]any{"rpm": 100000, "features": []string{"*"}, "monthly_credit_cap": 1000})
	_, key, _ := g.newOrg("acme", "paid", []string{"priced", "priced-403"}, nil)
	g.admin("PUT", "/admin/orgs/acme/billing", map[string]any{"active": true, "monthly_credit_limit": 3}, 200)
	if r := g.admin("PUT", "/admin/orgs/acme/billing", map[string]any{"active": true, "monthly_credit_limit": 5000}, 422); r["code"] != "validation_error" {
		t.Errorf("limit above the plan's cap: %v", r)
	}
	h := map[string]string{"X-API-Key": key}
	for i := 0; i < 2; i++ {
		if r := g.do("POST", "/v1/priced", h, `{"text":"x"}`); r.Status != 200 {
			t.Fatalf("request %d: %d %s", i, r.Status, r.Body)
		}
	}
	r := g.do("POST", "/v1/priced", h, `{"text":"x"}`)
	if r.Status != 429 {
		t.Fatalf("third request: %d %s", r.Status, r.Body)
	}
	body := r.JSON(t)
	d := body["details"].(map[string]any)
	_, _, resets := periodOf(g.clock.Now())
	if d["unit"] != "credits" || d["used"] != float64(3) || d["limit"] != float64(3) || d["resets_at"] != resets.Format(time.RFC3339) {
		t.Errorf("details %v", d)
	}
	// Retry-After is the seconds to the month's end (rounded up).
	want := int(math.Ceil(resets.Sub(g.clock.Now()).Seconds()))
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < want-2 || ra > want+1 {
		t.Errorf("Retry-After %q, want %d (the seconds to %v)", r.Header.Get("Retry-After"), want, resets)
	}
	if r := g.do("POST", "/v1/priced-403", h, `{"text":"x"}`); r.Status != 403 || r.JSON(t)["detail"] == nil {
		t.Errorf("profile remap: %d %s", r.Status, r.Body)
	}
}

func periodOf(t time.Time) (string, time.Time, time.Time) {
	t = t.UTC()
	start := time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	return start.Format("2006-01"), start, start.AddDate(0, 1, 0)
}

// TestBOLA: org A's key against org B's history ids, every verb → 404,
// and B's item untouched.
func TestBOLA(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	_, keyA, _ := g.newOrg("org-a", "basic", allModels, nil)
	_, keyB, _ := g.newOrg("org-b", "basic", allModels, nil)
	hb := map[string]string{"X-API-Key": keyB}
	if r := g.do("POST", "/v1/text", hb, `{"text":"secret of b"}`); r.Status != 200 {
		t.Fatal(r.Status)
	}
	var list struct{ Items []struct{ ID string } }
	json.Unmarshal(g.do("GET", "/v1/history", hb, "").Body, &list)
	if len(list.Items) != 1 {
		t.Fatalf("b's history: %+v", list)
	}
	idB := list.Items[0].ID
	ha := map[string]string{"X-API-Key": keyA}
	for _, method := range []string{"GET", "DELETE"} {
		r := g.do(method, "/v1/history/"+idB, ha, "")
		if r.Status != 404 || r.JSON(t)["code"] != "not_found" || strings.Contains(string(r.Body), "secret") {
			t.Errorf("%s b's item with a's key: %d %s", method, r.Status, r.Body)
		}
	}
	if r := g.do("GET", "/v1/history", ha, ""); strings.Contains(string(r.Body), idB) {
		t.Errorf("a's list shows b's item: %s", r.Body)
	}
	if r := g.do("GET", "/v1/usage?group_by=model", ha, ""); strings.Contains(string(r.Body), `"requests":1`) {
		t.Errorf("a's usage counts b's request: %s", r.Body)
	}
	if r := g.do("GET", "/v1/history/"+idB, hb, ""); r.Status != 200 {
		t.Errorf("b's own item after a's attempts: %d", r.Status)
	}
	if r := g.do("DELETE", "/v1/history/"+idB, hb, ""); r.Status != 204 {
		t.Errorf("b deletes its item: %d", r.Status)
	}
	if r := g.do("GET", "/v1/history/"+idB, hb, ""); r.Status != 404 {
		t.Errorf("deleted item: %d", r.Status)
	}
	if r := g.do("GET", "/v1/history?limit=0", hb, ""); r.Status != 422 {
		t.Errorf("limit=0: %d", r.Status)
	}
	if r := g.do("GET", "/v1/history", nil, ""); r.Status != 401 {
		t.Errorf("no key: %d", r.Status)
	}
}

// TestMain lets the test binary serve as a gateway subprocess (as main
// does, signals included) for the crash and SIGTERM tests.
func TestMain(m *testing.M) {
	if cfg := os.Getenv("TOLLGATE_TEST_SERVE"); cfg != "" {
		os.Exit(run([]string{"serve", "--config", cfg}))
	}
	os.Exit(m.Run())
}

// processConfig writes the config of a gateway subprocess: a free
// loopback address, a fresh SQLite file, the tests' admin token and key
// secret, then rest (models, plans, other settings). It returns the
// config's path, the listen address and the database file.
func processConfig(t *testing.T, rest string) (cfg, addr, db string) {
	t.Helper()
	dir := t.TempDir()
	addr, db, cfg = freeAddr(t), filepath.Join(dir, "t.db"), filepath.Join(dir, "tollgate.yaml")
	conf := fmt.Sprintf("listen: %s\nstore: sqlite://%s\nadmin_token: %s\nkey_secret: %s\n", addr, db, testAdmin, testSecret) + rest
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, addr, db
}

// post sends a POST of body with the API key (and header) to url and
// returns the answer's status, its body read and discarded, or 0 when no
// answer came. Unlike gateway.do it never fails the test, so goroutines
// may call it.
func post(client *http.Client, url, key, body string, header map[string]string) int {
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("X-API-Key", key)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// startProcess runs the test binary as `tollgate serve --config cfg` in a
// process of its own (see TestMain) and waits until addr, the config's
// listen address, answers /healthz.
func startProcess(t *testing.T, cfg, addr string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TOLLGATE_TEST_SERVE="+cfg)
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() }) // a no-op once it has exited
	waitFor(t, 20*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return cmd
}

// TestCrashLosesNothing kill -9s a gateway process under load, restarts it,
// and checks the ledger against what the client saw: every request the
// client saw succeed is in the ledger once, and the ledger holds nothing
// else but requests whose answers were cut off by the kill. With
// ledger_sync: background the answers go out before the journal is on the
// disk, but a killed process's writes are the operating system's: nothing
// is lost either.
func TestCrashLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts subprocesses")
	}
	for _, sync := range []string{config.LedgerSyncCommit, config.LedgerSyncBackground} {
		t.Run(sync, func(t *testing.T) { crashLosesNothing(t, sync) })
	}
}

func crashLosesNothing(t *testing.T, ledgerSync string) {
	models, err := demomodel.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer models.Close()
	cfg, addr, dbFile := processConfig(t, fmt.Sprintf(`
ledger_sync: %s
models:
  - {id: echo, route: POST /v1/echo, upstream: %q, upstream_path: /v1/text/generate, meter: {price: 1}}
plans:
  - {id: p, rpm: 1000000, features: ["*"]}
`, ledgerSync, models.URL))

	proc := startProcess(t, cfg, addr)
	g := &gateway{t: t, url: "http://" + addr}
	_, key, _ := g.newOrg("acme", "p", []string{"echo"}, nil)

	var (
		mu     sync.Mutex
		seen   = map[string]int{}
		other  = map[int]int{}
		cutOff atomic.Int64
		stop   atomic.Bool
		wg     sync.WaitGroup
	)
	client := &http.Client{Timeout: 5 * time.Second}
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				req, _ := http.NewRequest("POST", g.url+"/v1/echo", strings.NewReader(`{"text":"x"}`))
				req.Header.Set("X-API-Key", key)
				resp, err := client.Do(req)
				if err != nil {
					if !errors.Is(err, syscall.ECONNREFUSED) {
						cutOff.Add(1) // sent, answer lost (refused ones never left)
					}
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					cutOff.Add(1)
				case resp.StatusCode == 200:
					mu.Lock()
					seen[resp.Header.Get("X-Request-Id")]++
					mu.Unlock()
				default:
					mu.Lock()
					other[resp.StatusCode]++
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	proc.Process.Kill() // SIGKILL: no shutdown, no flush
	proc.Wait()
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	// The ledger is the tables and the journal in front of them (what
	// the dead process had appended but not yet moved into the tables):
	// opening the store replays the journal.
	st, err := sqlite.Open(t.Context(), dbFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dbFile)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT request_id FROM usage_events`)
	if err != nil {
		t.Fatal(err)
	}
	ledger := map[string]int{}
	for rows.Next() {
		var id string
		rows.Scan(&id)
		ledger[id]++
	}
	rows.Close()
	if len(seen) < 100 {
		t.Fatalf("only %d requests succeeded before the kill; other answers %v, %d cut off", len(seen), other, cutOff.Load())
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("request id %s answered %d times", id, n)
		}
		if ledger[id] != 1 {
			t.Errorf("answered request %s is in the ledger %d times", id, ledger[id])
		}
	}
	extra := 0
	for id, n := range ledger {
		if n != 1 {
			t.Errorf("request %s billed %d times", id, n)
		}
		if seen[id] == 0 {
			extra++
		}
	}
	if int64(extra) > cutOff.Load() {
		t.Errorf("%d ledger events were never answered, but only %d requests were cut off", extra, cutOff.Load())
	}
	t.Logf("%d answered, %d in the ledger, %d cut off by the kill, %d billed but cut off", len(seen), len(ledger), cutOff.Load(), extra)

	// After a restart the counters come from the ledger.
	proc = startProcess(t, cfg, addr)
	defer func() { proc.Process.Kill(); proc.Wait() }()
	u := g.usage("acme")
	if got := u["balance"].(map[string]any)["month_credits"]; got != float64(len(ledger)) {
		t.Errorf("month credits after restart %v, want %d (the ledger)", got, len(ledger))
	}
}

// TestLedgerSyncSetting: ledger_sync reaches the store, which the
// start-up log reports.
func TestLedgerSyncSetting(t *testing.T) {
	for setting, want := range map[string]string{
		"":                        "journal, synced before each commit returns",
		"ledger_sync: commit":     "journal, synced before each commit returns",
		"ledger_sync: background": "journal, synced in the background every 10ms",
	} {
		g := startGateway(t, "tollgate", setting)
		got := g.main.Store.(*sqlite.Store).LedgerSync()
		if strings.HasPrefix(got, "tables") {
			t.Skip("no ledger journal on this platform (no file locks): commits go to the tables")
		}
		if got != want {
			t.Errorf("%q: the store's ledger is %q, want %q", setting, got, want)
		}
	}
}

// TestUnlimitedBudgetStillCounted: under a plan with no credit or unit
// limit nothing is reserved, but the month's counters still hold every
// charge, so the balance matches the ledger.
func TestUnlimitedBudgetStillCounted(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	_, key, _ := g.newOrg("acme", "paid", []string{"priced"}, nil)
	for i := 0; i < 3; i++ {
		if r := g.do("POST", "/v1/priced", map[string]string{"X-API-Key": key}, `{"text":"x"}`); r.Status != 200 {
			t.Fatalf("request %d: %d %s", i, r.Status, r.Body)
		}
	}
	u := g.usage("acme")
	if c := creditsOf(u); c != 4.5 {
		t.Errorf("ledger holds %v credits, want 4.5", c)
	}
	// The counters are settled as each handler returns, just after the
	// answer: poll briefly.
	waitFor(t, 2*time.Second, func() bool {
		return g.usage("acme")["balance"].(map[string]any)["month_credits"] == 4.5
	})
}

// TestMonthBoundary: a request admitted just before midnight on a month's
// last day and answered after it is the admission month's, in the ledger
// as in the counters its reservation was taken from (a rebuild from the
// ledger must give the same months).
func TestMonthBoundary(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	_, key, _ := g.newOrg("acme", "basic", []string{"slow-ok"}, nil)
	now := g.clock.Now().UTC()
	next := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	g.clock.Advance(next.Sub(now) - 300*time.Millisecond)
	r := g.do("POST", "/v1/slow-ok?ms=700", map[string]string{"X-API-Key": key}, "")
	if r.Status != 200 {
		t.Fatalf("slow-ok: %d %s", r.Status, r.Body)
	}
	if after := g.clock.Now(); after.Before(next) {
		t.Fatalf("answered at %v, before midnight: the test did not cross it", after)
	}
	last := next.AddDate(0, -1, 0).Format("2006-01-02")
	old := g.admin("GET", "/admin/orgs/acme/usage?group_by=model&from="+last, nil, 200)
	cur := g.usage("acme") // this month, which began while the request ran
	if requestsOf(old) != 1 || requestsOf(cur) != 0 {
		t.Errorf("requests from %s: %d, this month: %d; want 1 and 0 (the admission's month)", last, requestsOf(old), requestsOf(cur))
	}
}

// TestUsageCLI: `tollgate usage show` prints the org's ledger rows and
// balance, and `tollgate usage rebuild` replaces the counters with the
// ledger's sums (one group per org × model × month) without changing a
// balance the ledger agrees with.
func TestUsageCLI(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	g.plan("free", map[string]any{"rpm": 100000, "features": []string{"*"}, "billing_required": true, "free_credits": 100})
	_, key, _ := g.newOrg("acme", "free", []string{"priced", "echo-text"}, nil)
	for _, path := range []string{"/v1/priced", "/v1/priced", "/v1/text"} {
		if r := g.do("POST", path, map[string]string{"X-API-Key": key}, `{"text":"x"}`); r.Status != 200 {
			t.Fatalf("%s: %d %s", path, r.Status, r.Body)
		}
	}
	env := []string{"TOLLGATE_SERVER=" + g.url, "TOLLGATE_ADMIN_TOKEN=" + testAdmin}
	out, err := runCLI(t, env, "usage", "show", "--org", "acme", "--group-by", "model")
	if err != nil {
		t.Fatalf("usage show: %v\n%s", err, out)
	}
	var shown struct {
		Rows []struct {
			Model    string
			Requests int
			Credits  float64
		}
		Balance struct {
			MonthCredits float64 `json:"month_credits"`
		}
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatalf("usage show printed %q: %v", out, err)
	}
	if len(shown.Rows) != 2 || shown.Balance.MonthCredits != 3 {
		t.Errorf("usage show: %+v, want 2 models and 3 credits this month", shown)
	}
	out, err = runCLI(t, env, "usage", "rebuild")
	if err != nil {
		t.Fatalf("usage rebuild: %v\n%s", err, out)
	}
	var rebuilt struct {
		Rebuilt bool
		Groups  int
	}
	if err := json.Unmarshal([]byte(out), &rebuilt); err != nil || !rebuilt.Rebuilt || rebuilt.Groups != 2 {
		t.Errorf("usage rebuild printed %q; want rebuilt, 2 groups (priced and echo-text this month)", out)
	}
	if c := g.usage("acme")["balance"].(map[string]any)["month_credits"]; c != 3.0 {
		t.Errorf("month credits after the rebuild: %v, want 3 (the ledger)", c)
	}
}
