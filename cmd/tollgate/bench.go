package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	goredis "github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/demomodel"
	"github.com/tollgate/tollgate/internal/loadtest"
)

// `tollgate bench` measures the gateway side by side with the upstream
// itself, a tuned httputil.ReverseProxy and nginx, on loopback. Every server
// runs in its own process (this binary re-executed in a hidden serve mode,
// or nginx), so none shares a Go runtime with the load generator, which
// runs in the bench process itself.

var benchTargets = []string{"direct", "reverseproxy", "tollgate", "tollgate-cluster", "nginx"}

// benchExtraTargets are measured only when --targets names them:
// tollgate-bgsync is tollgate with ledger_sync: background.
var benchExtraTargets = []string{"tollgate-bgsync"}

// The gateway under test: one model in front of the demo upstream, a plan
// whose limits are checked on every request but never refuse.
const (
	benchRPM         = 100_000_000
	benchConcurrency = 10_000
	benchPath        = "/v1/hello"
	benchGateway     = `listen: 127.0.0.1:0
store: %q
limiter: %q
limiter_prefix: %q
admin_token: %q
key_secret: %q
ledger_sync: %s
models:
  - {id: bench-hello, route: GET /v1/hello, upstream: %q, upstream_path: /v1/hello}
plans:
  - {id: bench, rpm: %d, concurrency: %d, features: ["*"]}
`
)

type benchOptions struct {
	mode                   string
	duration, warmup       time.Duration
	connections, rounds    int
	maxInFlight            int
	rates                  []int
	targets                []string
	cpuProfile, memProfile string
	// postgres and redis are the shared services of tollgate-cluster.
	postgres, redis string
}

func newBenchCmd(stdout, stderr io.Writer, environ []string) *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load-test the gateway side by side with the upstream, httputil.ReverseProxy and nginx (loopback only)",
		Long: `bench starts the demo model server, a tuned httputil.ReverseProxy, a tollgate
gateway (auth + rate limit + concurrency limit on) and, when installed, nginx,
each as its own process on loopback, and measures them in turn, alternating,
with its own load generator: closed loop (N connections, requests/s) and open
loop (fixed arrival rates, latency from the intended send time).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBench(cmd.Context(), stdout, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.mode, "mode", "both", "closed, open or both")
	f.DurationVar(&o.duration, "duration", 2*time.Second, "length of each measurement")
	f.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "load before each measurement, not counted")
	f.IntVar(&o.connections, "connections", 50, "closed-loop connections")
	f.IntSliceVar(&o.rates, "rates", []int{2000, 5000}, "open-loop arrival rates, requests/s")
	f.StringSliceVar(&o.targets, "targets", benchTargets, "targets to measure; also "+strings.Join(benchExtraTargets, ", ")+" (tollgate with ledger_sync: background)")
	f.StringVar(&o.postgres, "postgres", envOr(environ, "TOLLGATE_BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432/tollgate_test?sslmode=disable"),
		"PostgreSQL DSN for tollgate-cluster; the bench uses a schema of its own and drops it (TOLLGATE_BENCH_POSTGRES)")
	f.StringVar(&o.redis, "redis", envOr(environ, "TOLLGATE_BENCH_REDIS", "redis://127.0.0.1:6379/0"),
		"Redis URL for tollgate-cluster; the bench uses a key prefix of its own (TOLLGATE_BENCH_REDIS)")
	f.IntVar(&o.rounds, "rounds", 3, "rounds; each round measures every target once, in turn")
	f.IntVar(&o.maxInFlight, "max-in-flight", loadtest.DefaultMaxInFlight, "open-loop cap on requests in flight; requests due beyond it are dropped and counted")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write the gateway process's CPU profile (whole run) to this file")
	f.StringVar(&o.memProfile, "memprofile", "", "write the gateway process's allocation profile (at exit) to this file")
	cmd.AddCommand(newBenchServeCmds(stdout, stderr)...)
	return cmd
}

func (o *benchOptions) validate() error {
	var errs []error
	if o.mode != "closed" && o.mode != "open" && o.mode != "both" {
		errs = append(errs, fmt.Errorf("--mode %q: want closed, open or both", o.mode))
	}
	for _, t := range o.targets {
		if known := slices.Concat(benchTargets, benchExtraTargets); !slices.Contains(known, t) {
			errs = append(errs, fmt.Errorf("--targets: unknown target %q (want %s)", t, strings.Join(known, ", ")))
		}
	}
	if o.rounds < 1 || o.rounds > 20 {
		errs = append(errs, fmt.Errorf("--rounds %d: want 1 to 20", o.rounds))
	}
	if o.duration <= 0 || o.warmup < 0 {
		errs = append(errs, errors.New("--duration must be positive, --warmup not negative"))
	}
	if o.mode != "closed" && len(o.rates) == 0 {
		errs = append(errs, errors.New("--rates: at least one rate for open loop"))
	}
	if total := o.estimate(); total > 30*time.Minute {
		errs = append(errs, fmt.Errorf("this run would take about %v; keep it under 30m", total))
	}
	return errors.Join(errs...)
}

// estimate is the time spent measuring.
func (o *benchOptions) estimate() time.Duration {
	n := 0
	if o.mode != "open" {
		n++
	}
	if o.mode != "closed" {
		n += len(o.rates)
	}
	return time.Duration(n*o.rounds*len(o.targets)) * (o.duration + o.warmup)
}

// benchTarget is one thing measured: its URL and the process that serves it.
type benchTarget struct {
	name string
	url  string
	proc *loadtest.Process // nil for direct
	what string
	key  string // the API key a tollgate target expects
}

// gateway reports whether t is a tollgate gateway, whose /metrics the
// bench reads.
func (t *benchTarget) gateway() bool { return strings.HasPrefix(t.name, "tollgate") }

// benchRun is one run of `tollgate bench`: its processes and targets.
type benchRun struct {
	o       benchOptions
	w       io.Writer
	self    string // this binary, re-executed for the children
	dir     string // config, SQLite file, logs
	procs   []*loadtest.Process
	up      *loadtest.Process
	targets []*benchTarget
	// cleanups drop what the cluster target made in the shared services.
	cleanups []func()
}

func runBench(ctx context.Context, w io.Writer, o benchOptions) (err error) {
	if err := o.validate(); err != nil {
		return err
	}
	b := &benchRun{o: o, w: w}
	if b.self, err = os.Executable(); err != nil {
		return err
	}
	if b.dir, err = os.MkdirTemp("", "tollgate-bench-"); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			fmt.Fprintf(w, "logs kept in %s\n", b.dir)
		} else {
			os.RemoveAll(b.dir)
		}
	}()
	defer b.stop()
	if err := b.start(ctx); err != nil {
		return err
	}
	b.printSetup()
	closed := map[string]*loadtest.Series{}
	open := map[int]map[string]*loadtest.Series{}
	var ledger []modeLedger // in the order the modes ran
	if o.mode != "open" {
		fmt.Fprintf(w, "\nclosed loop, %d connections:\n", o.connections)
		c := loadtest.Config{Mode: loadtest.Closed, Connections: o.connections, Duration: o.duration, Warmup: o.warmup}
		heading := fmt.Sprintf("closed loop, %d connections", o.connections)
		ledger = append(ledger, modeLedger{heading, map[string]ledgerWait{}})
		if err := b.measure(ctx, "closed", c, closed, ledger[len(ledger)-1].byTarget); err != nil {
			return err
		}
	}
	if o.mode != "closed" {
		for _, rate := range o.rates {
			heading := fmt.Sprintf("open loop, %s requests/s", loadtest.FormatRate(float64(rate)))
			fmt.Fprintf(w, "\n%s:\n", heading)
			open[rate] = map[string]*loadtest.Series{}
			ledger = append(ledger, modeLedger{heading, map[string]ledgerWait{}})
			c := loadtest.Config{Mode: loadtest.Open, Rate: float64(rate), MaxInFlight: o.maxInFlight, Duration: o.duration, Warmup: o.warmup}
			if err := b.measure(ctx, "open", c, open[rate], ledger[len(ledger)-1].byTarget); err != nil {
				return err
			}
		}
	}
	b.printResults(closed, open)
	b.printLedger(ledger)
	return nil
}

// start starts the upstream and every target, and checks that each answers
// the bench request.
func (b *benchRun) start(ctx context.Context) error {
	var err error
	if b.up, err = b.startChild("upstream", "bench", "serve-upstream"); err != nil {
		return err
	}
	for _, name := range b.o.targets {
		t := &benchTarget{name: name}
		switch name {
		case "direct":
			t.url, t.what = b.up.URL, "the demo model server itself (net/http)"
		case "reverseproxy":
			t.proc, err = b.startChild(name, "bench", "serve-reverseproxy", "--upstream", b.up.URL)
			t.what = "httputil.ReverseProxy, Transport MaxIdleConns/MaxIdleConnsPerHost 1000"
		case "tollgate":
			t.proc, t.key, err = b.startGateway(ctx, name, "sqlite://"+filepath.Join(b.dir, "tollgate.db"), "memory", config.LedgerSyncCommit)
			t.what = fmt.Sprintf("tollgate serve: SQLite, memory limiter; X-API-Key auth + rate (rpm %s) + concurrency (%s per org×model)",
				loadtest.FormatRate(benchRPM), loadtest.FormatRate(benchConcurrency))
		case "tollgate-bgsync":
			t.proc, t.key, err = b.startGateway(ctx, name, "sqlite://"+filepath.Join(b.dir, "tollgate-bgsync.db"), "memory", config.LedgerSyncBackground)
			t.what = "tollgate serve as tollgate, with ledger_sync: background (the journal synced every 10 ms, not before each answer)"
		case "tollgate-cluster":
			dsn, serr := b.benchSchema(ctx)
			if serr != nil {
				fmt.Fprintf(b.w, "tollgate-cluster: not measured: %v\n", serr)
				continue
			}
			t.proc, t.key, err = b.startGateway(ctx, name, dsn, b.o.redis, config.LedgerSyncCommit)
			t.what = "tollgate serve as above on PostgreSQL + Redis (one replica of a cluster): the limiter's decisions are Redis round trips"
		case "nginx":
			path := loadtest.NginxPath()
			if path == "" {
				fmt.Fprintln(b.w, "nginx: not installed, not measured (apt-get install nginx)")
				continue
			}
			t.proc, err = loadtest.StartNginx(path, filepath.Join(b.dir, "nginx"), b.up.URL)
			if t.proc != nil {
				b.procs = append(b.procs, t.proc)
			}
			t.what = loadtest.NginxVersion(path) + " proxy_pass, upstream keepalive 256, worker_processes auto, access_log off"
		}
		if err != nil {
			return err
		}
		if t.proc != nil {
			t.url = t.proc.URL
		}
		if err := probe(t.url+benchPath, t.key); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		b.targets = append(b.targets, t)
	}
	return nil
}

func (b *benchRun) startChild(name string, args ...string) (*loadtest.Process, error) {
	p, err := loadtest.StartChild(name, b.self, args, filepath.Join(b.dir, name+".log"))
	if err == nil {
		b.procs = append(b.procs, p)
	}
	return p, err
}

// stop stops every process, the last started first.
func (b *benchRun) stop() {
	for _, p := range slices.Backward(b.procs) {
		if err := p.Stop(); err != nil {
			fmt.Fprintf(b.w, "stop %s: %v\n", p.Name, err)
		}
	}
	for _, f := range slices.Backward(b.cleanups) {
		f()
	}
}

func (b *benchRun) printSetup() {
	w, o := b.w, b.o
	fmt.Fprintf(w, "tollgate bench: %s, %v per measurement after %v warmup, %d round(s), targets in turn\n",
		o.describeModes(), o.duration, o.warmup, o.rounds)
	fmt.Fprintf(w, "machine: %d CPUs, GOMAXPROCS %d in each Go process, %s %s/%s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "processes (each its own OS process, all on loopback, all sharing the CPUs):\n")
	fmt.Fprintf(w, "  %-13s pid %-7d this process: fasthttp HostClient, prebuilt request, no retries\n", "generator", os.Getpid())
	fmt.Fprintf(w, "  %-13s pid %-7d %s demo model server, GET %s -> %d-byte JSON\n", "upstream", b.up.PID, b.up.URL, benchPath, len(demomodel.HelloAnswer))
	for _, t := range b.targets {
		pid := b.up.PID
		if t.proc != nil {
			pid = t.proc.PID
		}
		fmt.Fprintf(w, "  %-13s pid %-7d %s %s\n", t.name, pid, t.url, t.what)
	}
	fmt.Fprintf(w, "request: GET %s with X-API-Key, the same to every target; req/s counts 2xx answers\n", benchPath)
	fmt.Fprintf(w, "cpu: cores used during each measurement by the generator, the proxy, the upstream and the rest of\n")
	fmt.Fprintf(w, "  the machine (other processes, kernel, steal): a busy rest means a noisy measurement\n")
}

// measure runs c against every target in turn, o.rounds times. For a
// tollgate target it also reads the gateway's ledger metrics before and
// after each measurement and adds what they moved to ledger.
func (b *benchRun) measure(ctx context.Context, label string, c loadtest.Config, into map[string]*loadtest.Series, ledger map[string]ledgerWait) error {
	client := &http.Client{Timeout: 5 * time.Second}
	for round := 1; round <= b.o.rounds; round++ {
		for _, t := range b.targets {
			c.Request = loadtest.Request{Method: "GET", URL: t.url + benchPath}
			if t.key != "" {
				c.Request.Header = [][2]string{{"X-API-Key", t.key}}
			}
			var before ledgerWait
			if t.gateway() {
				var err error
				if before, err = scrapeLedger(client, t.url); err != nil {
					return fmt.Errorf("%s %s: %w", label, t.name, err)
				}
			}
			s, err := sample(ctx, c, t, b.up)
			if err != nil {
				return fmt.Errorf("%s %s: %w", label, t.name, err)
			}
			if into[t.name] == nil {
				into[t.name] = &loadtest.Series{Target: t.name}
			}
			into[t.name].Samples = append(into[t.name].Samples, s)
			line := s.String()
			if t.gateway() {
				after, err := scrapeLedger(client, t.url)
				if err != nil {
					return fmt.Errorf("%s %s: %w", label, t.name, err)
				}
				d := after.since(before)
				ledger[t.name] = ledger[t.name].add(d)
				line += "  " + d.String()
			}
			fmt.Fprintf(b.w, "  %s round %d/%d %-13s %s\n", label, round, b.o.rounds, t.name, line)
		}
	}
	return nil
}

func (b *benchRun) printResults(closed map[string]*loadtest.Series, open map[int]map[string]*loadtest.Series) {
	w, o := b.w, b.o
	ordered := func(m map[string]*loadtest.Series) []*loadtest.Series {
		var v []*loadtest.Series
		for _, t := range b.targets {
			v = append(v, m[t.name])
		}
		return v
	}
	if len(closed) > 0 {
		fmt.Fprintf(w, "\nclosed loop, %d connections, %d × %v (latency over all rounds; it hides queueing):\n", o.connections, o.rounds, o.duration)
		loadtest.WriteClosed(w, ordered(closed))
	}
	for _, rate := range o.rates {
		if open[rate] == nil {
			continue
		}
		fmt.Fprintf(w, "\nopen loop, %s requests/s, %d × %v (latency from the intended send time, over all rounds):\n",
			loadtest.FormatRate(float64(rate)), o.rounds, o.duration)
		loadtest.WriteOpen(w, ordered(open[rate]))
	}
	writeRatios(w, closed, open, o.rates)
	for _, t := range b.targets {
		if strings.HasPrefix(t.name, "tollgate") {
			writeLogSummary(w, t.proc.Log)
		}
	}
}

// printLedger prints, for each mode and tollgate target, what the
// gateway's ledger metrics moved by over every round (warmups included):
// how long answered requests waited for their durable commit.
func (b *benchRun) printLedger(ledger []modeLedger) {
	headed := false
	for _, m := range ledger {
		for _, t := range b.targets {
			if l, ok := m.byTarget[t.name]; ok && l.waits > 0 {
				if !headed {
					fmt.Fprintf(b.w, "\nledger (each gateway's /metrics over every round, warmups included: the time answered\n")
					fmt.Fprintf(b.w, "  requests waited for their usage event and history item to be durable, before the answer):\n")
					headed = true
				}
				fmt.Fprintf(b.w, "  %-30s %-16s %s requests, %s\n", m.heading, t.name, loadtest.FormatRate(l.waits), l)
			}
		}
	}
}

// modeLedger is one mode's (closed loop, or one open-loop rate) ledger
// figures, by target.
type modeLedger struct {
	heading  string
	byTarget map[string]ledgerWait
}

func (o *benchOptions) describeModes() string {
	var rates []string
	for _, r := range o.rates {
		rates = append(rates, loadtest.FormatRate(float64(r)))
	}
	closed := fmt.Sprintf("closed loop (%d connections)", o.connections)
	open := fmt.Sprintf("open loop (%s requests/s)", strings.Join(rates, ", "))
	switch o.mode {
	case "closed":
		return closed
	case "open":
		return open
	}
	return closed + " and " + open
}

// sample runs one measurement of t, with the CPU each process used.
func sample(ctx context.Context, c loadtest.Config, t *benchTarget, up *loadtest.Process) (loadtest.Sample, error) {
	roles := []loadtest.Role{{Name: "generator", PID: os.Getpid()}, {Name: "upstream", PID: up.PID}}
	if t.proc != nil {
		roles = append(roles, loadtest.Role{Name: "proxy", PID: t.proc.PID, Children: true})
	}
	s, err := loadtest.Measure(ctx, c, roles)
	if err == nil && t.proc != nil && t.proc.Exited() {
		err = fmt.Errorf("%s exited during the run; see %s", t.name, t.proc.Log)
	}
	return s, err
}

// writeRatios compares the targets against the goals.
func writeRatios(w io.Writer, closed map[string]*loadtest.Series, open map[int]map[string]*loadtest.Series, rates []int) {
	fmt.Fprintln(w, "\nratios:")
	rps := func(name string) (median, best float64, ok bool) {
		s, ok := closed[name]
		if !ok {
			return 0, 0, false
		}
		return s.MedianThroughput(), slices.Max(s.Throughputs()), true
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	if len(closed) > 0 {
		fmt.Fprintln(w, "  closed loop, req/s (median of rounds; best vs best):")
		for _, p := range [][2]string{{"tollgate", "nginx"}, {"tollgate", "reverseproxy"}, {"tollgate-cluster", "tollgate"},
			{"tollgate-bgsync", "nginx"}, {"tollgate-bgsync", "tollgate"}, {"tollgate", "direct"}, {"nginx", "direct"}, {"reverseproxy", "direct"}} {
			a, bestA, okA := rps(p[0])
			b, bestB, okB := rps(p[1])
			if !okA || !okB || b == 0 || bestB == 0 {
				continue
			}
			r := a / b
			goal := ""
			switch p {
			case [2]string{"tollgate", "nginx"}:
				goal = fmt.Sprintf("   target ≥ 0.80: %s; goal ≥ 1.00: %s", verdict(r >= 0.8), verdict(r >= 1.0))
			case [2]string{"tollgate", "reverseproxy"}:
				goal = fmt.Sprintf("   target ≥ 2.00: %s", verdict(r >= 2.0))
			case [2]string{"tollgate-cluster", "tollgate"}:
				goal = fmt.Sprintf("   target ≥ 0.70: %s", verdict(r >= 0.7))
			}
			fmt.Fprintf(w, "    %-24s %5.2f×  %5.2f×%s\n", p[0]+"/"+p[1], r, bestA/bestB, goal)
		}
	}
	for _, rate := range rates {
		m := open[rate]
		d, ok := m["direct"]
		if m == nil || !ok {
			continue
		}
		fmt.Fprintf(w, "  open loop %s requests/s, p99 added over direct: median of rounds' p99; best round vs best round; all rounds merged; median of rounds' p99 from the actual send:\n",
			loadtest.FormatRate(float64(rate)))
		for _, name := range []string{"tollgate", "tollgate-bgsync", "tollgate-cluster", "reverseproxy", "nginx"} {
			s, ok := m[name]
			if !ok {
				continue
			}
			added := s.MedianP99() - d.MedianP99()
			goal := ""
			if name == "tollgate" && rate == 2000 {
				goal = "   target ≤ 1ms: " + verdict(added <= time.Millisecond && s.Failures() == 0)
			}
			fmt.Fprintf(w, "    %-24s %8s  %8s  %8s  %8s%s\n", name, signed(added), signed(s.BestP99()-d.BestP99()),
				signed(s.Latency().Percentile(0.99)-d.Latency().Percentile(0.99)), signed(s.MedianP99FromSend()-d.MedianP99FromSend()), goal)
		}
	}
}

func signed(d time.Duration) string {
	if d < 0 {
		return loadtest.FormatDuration(d)
	}
	return "+" + loadtest.FormatDuration(d)
}

// writeLogSummary reports the gateway's warnings and errors during the run.
func writeLogSummary(w io.Writer, path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	var n int
	var first []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
			n++
			if len(first) < 3 {
				first = append(first, line)
			}
		}
	}
	fmt.Fprintf(w, "\ngateway log: %d warning/error lines\n", n)
	for _, l := range first {
		fmt.Fprintf(w, "  %.300s\n", l)
	}
}

// startGateway writes the gateway's config, starts it and creates the
// bench org and its key through the admin API.
func (b *benchRun) startGateway(ctx context.Context, name, store, limiter, ledgerSync string) (*loadtest.Process, string, error) {
	admin, secret := randomHex(16), randomHex(16)
	conf := filepath.Join(b.dir, name+".yaml")
	prefix := "tgbench:" + randomHex(6) + ":"
	if err := os.WriteFile(conf, fmt.Appendf(nil, benchGateway, store, limiter, prefix, admin, secret, ledgerSync, b.up.URL, benchRPM, benchConcurrency), 0o600); err != nil {
		return nil, "", err
	}
	args := []string{"bench", "serve-gateway", "--config", conf}
	if limiter != "memory" {
		b.cleanups = append(b.cleanups, func() { dropRedisPrefix(limiter, prefix) })
	}
	if b.o.cpuProfile != "" && name == "tollgate" {
		args = append(args, "--cpuprofile", b.o.cpuProfile)
	}
	if b.o.memProfile != "" && name == "tollgate" {
		args = append(args, "--memprofile", b.o.memProfile)
	}
	p, err := b.startChild(name, args...)
	if err != nil {
		return nil, "", err
	}
	key, err := benchKey(ctx, p.URL, admin, "bench-hello")
	if err != nil {
		return nil, "", err
	}
	return p, key, nil
}

// benchKey creates the bench org, with model granted, and its key through
// the admin API of the gateway at base.
func benchKey(ctx context.Context, base, admin, model string) (string, error) {
	call := func(path string, body any) (map[string]any, error) {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, "POST", base+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out map[string]any
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusCreated || json.Unmarshal(data, &out) != nil {
			return nil, fmt.Errorf("admin POST %s: %d %s", path, resp.StatusCode, data)
		}
		return out, nil
	}
	if _, err := call("/admin/orgs", map[string]any{"id": "bench", "name": "Bench", "plan": "bench", "models": []string{model}}); err != nil {
		return "", err
	}
	k, err := call("/admin/orgs/bench/keys", map[string]any{"name": "bench"})
	if err != nil {
		return "", err
	}
	key, _ := k["key"].(string)
	return key, nil
}

// benchSchema creates a PostgreSQL schema for tollgate-cluster, dropped
// when the bench ends, and returns a DSN whose search_path is it.
func (b *benchRun) benchSchema(ctx context.Context) (string, error) {
	db, err := sql.Open("pgx", b.o.postgres) // pgx/v5/stdlib
	if err != nil {
		return "", fmt.Errorf("tollgate-cluster: %w", err)
	}
	schema := "tgbench_" + randomHex(6)
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		db.Close()
		return "", fmt.Errorf("tollgate-cluster: PostgreSQL at --postgres: %w", err)
	}
	b.cleanups = append(b.cleanups, func() {
		db.Exec("DROP SCHEMA " + schema + " CASCADE")
		db.Close()
	})
	u, err := url.Parse(b.o.postgres)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", errors.New("tollgate-cluster: --postgres must be a postgres:// URL")
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// dropRedisPrefix deletes the keys a bench gateway left under prefix.
func dropRedisPrefix(url, prefix string) {
	opts, err := goredis.ParseURL(url)
	if err != nil {
		return
	}
	c := goredis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		c.Del(ctx, iter.Val())
	}
}

func envOr(environ []string, name, def string) string {
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, name+"="); ok && v != "" {
			return v
		}
	}
	return def
}

// probe checks that a target answers the bench request with the demo's answer.
func probe(u, key string) error {
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("X-API-Key", key)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(b, demomodel.HelloAnswer) {
		return fmt.Errorf("GET %s: %d %.200s", u, resp.StatusCode, b)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// The hidden serve modes: the bench's child processes. Each announces its
// URL on stdout and stops when its stdin closes.
func newBenchServeCmds(stdout, stderr io.Writer) []*cobra.Command {
	upstream := &cobra.Command{
		Use: "serve-upstream", Hidden: true, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := loadtest.ParentContext(cmd.Context(), cmd.InOrStdin())
			defer cancel()
			s, err := demomodel.Start()
			if err != nil {
				return err
			}
			defer s.Close()
			loadtest.Announce(stdout, s.URL)
			<-ctx.Done()
			return nil
		},
	}

	var target string
	rp := &cobra.Command{
		Use: "serve-reverseproxy", Hidden: true, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := loadtest.ParentContext(cmd.Context(), cmd.InOrStdin())
			defer cancel()
			u, err := url.Parse(target)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			srv := &http.Server{Handler: loadtest.NewReverseProxy(u), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
			go srv.Serve(ln)
			defer srv.Close()
			loadtest.Announce(stdout, "http://"+ln.Addr().String())
			<-ctx.Done()
			return nil
		},
	}
	rp.Flags().StringVar(&target, "upstream", "", "upstream base URL")

	var conf, cpuProfile, memProfile string
	gw := &cobra.Command{
		Use: "serve-gateway", Hidden: true, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := loadtest.ParentContext(cmd.Context(), cmd.InOrStdin())
			defer cancel()
			c, err := config.Load(conf, nil)
			if err != nil {
				return err
			}
			// As `tollgate serve` does: JSON logs on stderr, default level.
			m := &Main{Config: c, Logger: slog.New(slog.NewJSONHandler(stderr, nil))}
			if err := m.Open(ctx); err != nil {
				m.Close()
				return err
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			if memProfile != "" {
				defer writeAllocProfile(memProfile, stderr)
			}
			loadtest.Announce(stdout, m.URL())
			return m.Run(ctx)
		},
	}
	gw.Flags().StringVar(&conf, "config", "", "config file")
	gw.Flags().StringVar(&cpuProfile, "cpuprofile", "", "CPU profile file")
	gw.Flags().StringVar(&memProfile, "memprofile", "", "allocation profile file")
	return []*cobra.Command{upstream, rp, gw}
}

func writeAllocProfile(path string, stderr io.Writer) {
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup("allocs").WriteTo(f, 0)
		f.Close()
	}
	if err != nil {
		fmt.Fprintln(stderr, "memprofile:", err)
	}
}
