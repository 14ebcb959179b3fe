package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/internal/loadtest"
)

// `tollgate bench-ws` measures streams through the gateway: N real-time
// 16 kHz mono s16le streams (a frame every 20 ms, answered per frame by
// the demo streaming model), at rising N, on loopback. The gateway and the
// model each run in their own process (the bench's hidden serve modes);
// the load generator runs here. It stops by itself: every level is bounded
// in time, and the run stops at the first level past the latency target.

type benchWSOptions struct {
	streams          []int
	duration, warmup time.Duration
	ramp, frame      time.Duration
	rate             int
	target           time.Duration
	direct           bool
	rounds           int
	cpuProfile       string
}

const benchWSGateway = `listen: 127.0.0.1:0
store: %q
limiter: memory
admin_token: %q
key_secret: %q
shutdown_grace: 5s
models:
  - id: bench-stream
    route: GET /v1/stream
    upstream: %q
    upstream_path: /v1/stream
    meter: {price: 0.001}
    stream: {formats: [s16le], sample_rates: [%d], channels: [1], chunk_seconds: 5}
plans:
  - {id: bench, rpm: 100000000, concurrency: 100000, features: ["*"], monthly_credit_cap: 1000000000}
`

func newBenchWSCmd(stdout, stderr io.Writer) *cobra.Command {
	var o benchWSOptions
	cmd := &cobra.Command{
		Use:   "bench-ws",
		Short: "Load-test WebSocket streams through the gateway: real-time audio streams at rising counts (loopback only)",
		Long: `bench-ws starts the demo model server and a tollgate gateway (auth, rate,
concurrency and quota reservations on, audio metered) as their own processes on
loopback, then holds N real-time streams through the gateway at each level of
--streams: 16 kHz mono s16le, one frame every --frame, each answered by the
model. It reports per-frame latency (from the frame's due time to its answer),
the gateway's CPU per stream, and the most streams held with p99 under --target.
With --direct each level is measured against the model alone too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return runBenchWS(cmd.Context(), stdout, o)
		},
	}
	f := cmd.Flags()
	f.IntSliceVar(&o.streams, "streams", []int{100, 200, 300, 400, 500}, "stream counts to hold, in rising order")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "measurement at each level")
	f.DurationVar(&o.warmup, "warmup", 2*time.Second, "load before each measurement, not counted")
	f.DurationVar(&o.ramp, "ramp", 2*time.Second, "handshakes spread over this long")
	f.DurationVar(&o.frame, "frame", 20*time.Millisecond, "audio per frame (a frame is sent every frame)")
	f.IntVar(&o.rate, "rate", 16000, "sample rate, Hz (mono s16le)")
	f.DurationVar(&o.target, "target", 10*time.Millisecond, "p99 latency a level must stay under")
	f.BoolVar(&o.direct, "direct", true, "also measure each level against the model directly (the added latency is the difference)")
	f.IntVar(&o.rounds, "rounds", 3, "measurements per level and target, alternating; the median p99 counts")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write the gateway's CPU profile (whole run) to this file")
	return cmd
}

func (o *benchWSOptions) validate() error {
	var errs []error
	if len(o.streams) == 0 || !slices.IsSorted(o.streams) || o.streams[0] < 1 || o.streams[len(o.streams)-1] > loadtest.MaxStreams {
		errs = append(errs, fmt.Errorf("--streams: rising counts from 1 to %d", loadtest.MaxStreams))
	}
	if o.frame < time.Millisecond || o.frame > time.Second || o.rate < 1000 || o.rate > 384000 {
		errs = append(errs, errors.New("--frame 1ms to 1s, --rate 1000 to 384000"))
	}
	if o.duration <= 0 || o.duration > 2*time.Minute || o.warmup < 0 || o.warmup > time.Minute || o.ramp < 0 || o.ramp > time.Minute {
		errs = append(errs, errors.New("--duration up to 2m, --warmup and --ramp up to 1m"))
	}
	if o.rounds < 1 || o.rounds > 5 {
		errs = append(errs, fmt.Errorf("--rounds %d: want 1 to 5", o.rounds))
	}
	per := (o.ramp + o.warmup + o.duration + 2*time.Second) * time.Duration(max(o.rounds, 1))
	if o.direct {
		per *= 2
	}
	if total := per * time.Duration(len(o.streams)); total > 20*time.Minute {
		errs = append(errs, fmt.Errorf("this run would take about %v; keep it under 20m", total))
	}
	return errors.Join(errs...)
}

func runBenchWS(ctx context.Context, w io.Writer, o benchWSOptions) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "tollgate-bench-ws-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	log := filepath.Join(dir, "children.log")

	up, err := loadtest.StartChild("upstream", exe, []string{"bench", "serve-upstream"}, log)
	if err != nil {
		return err
	}
	defer up.Stop()
	upWS := "ws" + strings.TrimPrefix(up.URL, "http")
	admin, secret := randomHex(16), randomHex(16)
	conf := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, benchWSGateway, "sqlite://"+filepath.Join(dir, "bench.db"), admin, secret, upWS, o.rate), 0o600); err != nil {
		return err
	}
	args := []string{"bench", "serve-gateway", "--config", conf}
	if o.cpuProfile != "" {
		args = append(args, "--cpuprofile", o.cpuProfile)
	}
	gw, err := loadtest.StartChild("tollgate", exe, args, log)
	if err != nil {
		return err
	}
	defer gw.Stop()
	key, err := benchKey(ctx, gw.URL, admin, "bench-stream")
	if err != nil {
		return err
	}

	query := fmt.Sprintf("/v1/stream?audio_format=s16le&sample_rate=%d&num_channels=1", o.rate)
	gwURL := "ws" + strings.TrimPrefix(gw.URL, "http") + query + "&api_key=" + key
	directURL := upWS + query
	frame := benchWSFrame(o.rate, o.frame)

	fmt.Fprintf(w, "bench-ws: %d CPUs (GOMAXPROCS %d), %s; streams of %d Hz mono s16le, %d-byte frames every %v, answered per frame\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), o.rate, len(frame), o.frame)
	fmt.Fprintf(w, "each level: %v ramp, %v warmup, %v measured, %d round(s) per target alternating; latency from each frame's due time to its answer\n",
		o.ramp, o.warmup, o.duration, o.rounds)
	fmt.Fprintf(w, "a level passes when every stream is held, at most 0.1%% of frames are lost and the p99 through the gateway is under %v", o.target)
	if o.direct {
		fmt.Fprintf(w, " (strict), or its p99 less the model's alone is (added)")
	}
	fmt.Fprint(w, "\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tstreams\tround\theld\tframes\tlost\tp50\tp99\tp99.9\tmax\tp99 from send\tsender lag p99\tgateway CPU\tCPU/stream\tmodel CPU\tgenerator CPU\tother CPU\t")

	type level struct {
		n                       int
		p99, direct             time.Duration
		cpu                     float64
		held, strict, addedPass bool
	}
	var levels []level
	for _, n := range o.streams {
		c := loadtest.WSConfig{Streams: n, Frame: frame, Interval: o.frame, Ramp: o.ramp, Warmup: o.warmup, Duration: o.duration}
		var gwP99, upP99 []time.Duration
		var cpus []float64
		held := true
		for round := 1; round <= o.rounds; round++ {
			if o.direct {
				c.URL = directURL
				r, cpu, err := benchWSLevel(ctx, c, nil, up)
				if err != nil {
					return err
				}
				writeWSRow(tw, "model", round, r, cpu)
				upP99 = append(upP99, r.Latency.Percentile(0.99))
			}
			c.URL = gwURL
			r, cpu, err := benchWSLevel(ctx, c, gw, up)
			if err != nil {
				return err
			}
			writeWSRow(tw, "tollgate", round, r, cpu)
			tw.Flush()
			gwP99 = append(gwP99, r.Latency.Percentile(0.99))
			cpus = append(cpus, cpu["gateway"])
			held = held && r.Held == n && r.Lost() <= r.Frames/1000
		}
		l := level{n: n, p99: medianOf(gwP99), cpu: medianOf(cpus), held: held}
		if o.direct {
			l.direct = medianOf(upP99)
		}
		l.strict = held && l.p99 < o.target
		l.addedPass = held && l.p99-l.direct < o.target
		levels = append(levels, l)
		if !l.addedPass {
			break
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "streams\tall held\tgateway p99\tmodel p99\tadded p99\tgateway CPU\tCPU per stream-second\t")
	strict, added := 0, 0
	for _, l := range levels {
		modelP99 := "-"
		if o.direct {
			modelP99 = fmtMS(l.direct)
		}
		fmt.Fprintf(tw, "%d\t%v\t%s\t%s\t%s\t%.2f cores\t%.2f ms\t\n", l.n, l.held, fmtMS(l.p99), modelP99, fmtMS(l.p99-l.direct), l.cpu, 1000*l.cpu/float64(l.n))
		if l.strict {
			strict = l.n
		}
		if l.addedPass {
			added = l.n
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nmost streams held with p99 < %v through the gateway (strict): %d\n", o.target, strict)
	if o.direct {
		fmt.Fprintf(w, "most streams held with the gateway adding p99 < %v over the model alone: %d\n", o.target, added)
	}
	if gw.Exited() || up.Exited() {
		return fmt.Errorf("a server exited during the run; see its log")
	}
	return nil
}

// benchWSLevel measures one level, with each process's CPU over the
// measurement in cores: gateway (when gw is not nil), model, machine.
func benchWSLevel(ctx context.Context, c loadtest.WSConfig, gw, up *loadtest.Process) (*loadtest.WSResult, map[string]float64, error) {
	type mark struct {
		at                 time.Time
		gw, up, gen, total time.Duration
	}
	sample := func() mark {
		m := mark{at: time.Now()}
		m.gen, _ = loadtest.ProcessCPU(os.Getpid(), false)
		if gw != nil {
			m.gw, _ = loadtest.ProcessCPU(gw.PID, false)
		}
		m.up, _ = loadtest.ProcessCPU(up.PID, false)
		m.total, _ = loadtest.MachineCPU()
		return m
	}
	var begin, end mark
	c.Window = func(b bool) {
		if b {
			begin = sample()
		} else {
			end = sample()
		}
	}
	r, err := loadtest.RunWS(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	cpu := map[string]float64{}
	if d := end.at.Sub(begin.at).Seconds(); d > 0 && !begin.at.IsZero() {
		cpu["gateway"] = (end.gw - begin.gw).Seconds() / d
		cpu["model"] = (end.up - begin.up).Seconds() / d
		cpu["generator"] = (end.gen - begin.gen).Seconds() / d
		cpu["machine"] = (end.total - begin.total).Seconds() / d
		// Whatever else ran meanwhile (other processes, the kernel's
		// own work): a level measured while it is high is not clean.
		cpu["other"] = max(0, cpu["machine"]-cpu["gateway"]-cpu["model"]-cpu["generator"])
	}
	return r, cpu, nil
}

func fmtMS(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

// medianOf returns the median; of an even count, the upper middle (the
// worse p99: a level must not pass on its luckiest round).
func medianOf[T time.Duration | float64](v []T) T {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func writeWSRow(w io.Writer, name string, round int, r *loadtest.WSResult, cpu map[string]float64) {
	ms := fmtMS
	gw, per := "-", "-"
	if name != "model" {
		gw = fmt.Sprintf("%.2f", cpu["gateway"])
		per = fmt.Sprintf("%.2fms/s", 1000*cpu["gateway"]/float64(max(r.Held, 1)))
	}
	fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%.2f\t\n", name, r.Streams, round, r.Held, r.Frames, r.Lost(),
		ms(r.Latency.Percentile(0.5)), ms(r.Latency.Percentile(0.99)), ms(r.Latency.Percentile(0.999)), ms(r.Latency.Max()),
		ms(r.FromSend.Percentile(0.99)), ms(r.SendLag.Percentile(0.99)), gw, per, cpu["model"], cpu["generator"], cpu["other"])
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "errors:\t%v\t\n", r.Errors)
	}
}

// benchWSFrame is d of a 440 Hz tone, s16le at rate.
func benchWSFrame(rate int, d time.Duration) []byte {
	n := int(d.Seconds() * float64(rate))
	b := make([]byte, 2*n)
	for i := range n {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(int16(0.3*32767*math.Sin(2*math.Pi*440*float64(i)/float64(rate)))))
	}
	return b
}
