package loadtest

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Role is a process whose CPU a Sample reports: "generator", "proxy" or
// "upstream". Children counts its live child processes too (nginx's
// workers).
type Role struct {
	Name     string
	PID      int
	Children bool
}

// Measure runs c and reports, with its result, the CPU each role's process
// used meanwhile and the CPU the rest of the machine used ("rest": other
// processes, kernel work not charged to these, steal), in cores.
func Measure(ctx context.Context, c Config, roles []Role) (Sample, error) {
	before := map[string]time.Duration{}
	for _, r := range roles {
		if d, ok := ProcessCPU(r.PID, r.Children); ok {
			before[r.Name] = d
		}
	}
	machine, machineOK := MachineCPU()
	began := time.Now()
	res, err := Run(ctx, c)
	if err != nil {
		return Sample{}, err
	}
	wall := time.Since(began).Seconds()
	cpu := map[string]float64{}
	var ours time.Duration
	for _, r := range roles {
		b, ok := before[r.Name]
		if d, ok2 := ProcessCPU(r.PID, r.Children); ok && ok2 {
			cpu[r.Name] = (d - b).Seconds() / wall
			ours += d - b
		}
	}
	if m, ok := MachineCPU(); ok && machineOK {
		cpu["rest"] = max(m-machine-ours, 0).Seconds() / wall
	}
	return Sample{Result: res, CPU: cpu}, nil
}

// String is the sample on one line: throughput (closed loop) or requests
// sent (open loop), latency, failures and CPU.
func (s Sample) String() string {
	r, h := s.Result, s.Result.Latency
	var b strings.Builder
	if r.Mode == Closed {
		fmt.Fprintf(&b, "%8s req/s", FormatRate(r.Throughput()))
	} else {
		fmt.Fprintf(&b, "%8s sent", FormatRate(float64(r.Sent)))
	}
	fmt.Fprintf(&b, "  p50 %-7s p99 %-7s p99.9 %-7s max %-7s errors %d",
		FormatDuration(h.Percentile(0.5)), FormatDuration(h.Percentile(0.99)),
		FormatDuration(h.Percentile(0.999)), FormatDuration(h.Max()), r.Failures())
	if r.Mode == Open {
		fmt.Fprintf(&b, "  send lag p99 %s", FormatDuration(r.SendLag.Percentile(0.99)))
	}
	fmt.Fprintf(&b, "  cpu")
	for _, role := range [][2]string{{"generator", "gen"}, {"proxy", "proxy"}, {"upstream", "up"}, {"rest", "rest"}} {
		if c, ok := s.CPU[role[0]]; ok {
			fmt.Fprintf(&b, " %s %.2f", role[1], c)
		}
	}
	if p := r.Problems(); p != "" {
		fmt.Fprintf(&b, "  (%s)", p)
	}
	return b.String()
}
