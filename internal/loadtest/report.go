package loadtest

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Sample is one measurement of one target, with the CPU each process used
// during it, in cores (CPU seconds per second), by role: "generator",
// "proxy", "upstream", and "rest" for the rest of the machine.
type Sample struct {
	Result *Result
	CPU    map[string]float64
}

// Series is one target's samples in one mode (and, open loop, one rate),
// one per round.
type Series struct {
	Target  string
	Samples []Sample
}

// Latency merges every round's latencies.
func (s *Series) Latency() *Histogram {
	var h Histogram
	for _, x := range s.Samples {
		h.Merge(x.Result.Latency)
	}
	return &h
}

// Throughputs are the rounds' 2xx responses per second, in round order.
func (s *Series) Throughputs() []float64 {
	var v []float64
	for _, x := range s.Samples {
		v = append(v, x.Result.Throughput())
	}
	return v
}

// MedianThroughput is the median of the rounds' throughputs.
func (s *Series) MedianThroughput() float64 { return median(s.Throughputs()) }

// P99s are the rounds' p99 latencies, in round order.
func (s *Series) P99s() []time.Duration {
	return s.p99s(func(r *Result) *Histogram { return r.Latency })
}

func (s *Series) p99s(h func(*Result) *Histogram) []time.Duration {
	var v []time.Duration
	for _, x := range s.Samples {
		v = append(v, h(x.Result).Percentile(0.99))
	}
	return v
}

// MedianP99 is the median of the rounds' p99 latencies.
func (s *Series) MedianP99() time.Duration { return medianDuration(s.P99s()) }

// MedianP99FromSend is the median of the rounds' p99 latencies measured
// from the actual send (open loop).
func (s *Series) MedianP99FromSend() time.Duration {
	return medianDuration(s.p99s(func(r *Result) *Histogram { return r.FromSend }))
}

// BestP99 is the lowest of the rounds' p99 latencies.
func (s *Series) BestP99() time.Duration { return slices.Min(s.P99s()) }

func medianDuration(d []time.Duration) time.Duration {
	var v []float64
	for _, x := range d {
		v = append(v, float64(x))
	}
	return time.Duration(median(v))
}

// Failures sums the rounds' failures; Problems describes them.
func (s *Series) Failures() int64 {
	var n int64
	for _, x := range s.Samples {
		n += x.Result.Failures()
	}
	return n
}

func (s *Series) Problems() string {
	var p []string
	for i, x := range s.Samples {
		if d := x.Result.Problems(); d != "" {
			p = append(p, fmt.Sprintf("round %d: %s", i+1, d))
		}
	}
	return strings.Join(p, "; ")
}

// CPU is the mean CPU of role over the rounds, in cores.
func (s *Series) CPU(role string) (float64, bool) {
	var sum float64
	var n int
	for _, x := range s.Samples {
		if c, ok := x.CPU[role]; ok {
			sum += c
			n++
		}
	}
	if n == 0 {
		return 0, false
	}
	return sum / float64(n), true
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// WriteClosed prints the closed-loop table: throughput (median and best of
// the rounds, then each round) and latency over all rounds.
func WriteClosed(w io.Writer, series []*Series) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\treq/s median\tbest\tp50\tp99\tp99.9\tmax\terrors\tcpu gen/proxy/up/rest\treq/s per round\t")
	for _, s := range series {
		h := s.Latency()
		var rounds []string
		for _, t := range s.Throughputs() {
			rounds = append(rounds, FormatRate(t))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t\n", s.Target,
			FormatRate(s.MedianThroughput()), FormatRate(slices.Max(s.Throughputs())),
			FormatDuration(h.Percentile(0.5)), FormatDuration(h.Percentile(0.99)), FormatDuration(h.Percentile(0.999)),
			FormatDuration(h.Max()), s.Failures(), cpuColumn(s), strings.Join(rounds, " "))
	}
	tw.Flush()
	writeProblems(w, series)
}

// WriteOpen prints one open-loop table: the achieved rate, latency from
// the intended send time over all rounds, the generator's send lag and
// the p99 from the actual send, then the median of the rounds' p99 and
// each round's.
func WriteOpen(w io.Writer, series []*Series) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tsent/s\tp50\tp90\tp99\tp99.9\tmax\terrors\tsend lag p99\tp99 from send\tcpu gen/proxy/up/rest\tp99 median\tp99 per round\t")
	for _, s := range series {
		h := s.Latency()
		var lag, fromSend Histogram
		var sent int64
		var secs float64
		var rounds []string
		for _, x := range s.Samples {
			sent += x.Result.Sent
			lag.Merge(x.Result.SendLag)
			fromSend.Merge(x.Result.FromSend)
			secs += x.Result.Duration.Seconds()
			rounds = append(rounds, FormatDuration(x.Result.Latency.Percentile(0.99)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n", s.Target,
			FormatRate(float64(sent)/secs),
			FormatDuration(h.Percentile(0.5)), FormatDuration(h.Percentile(0.9)), FormatDuration(h.Percentile(0.99)),
			FormatDuration(h.Percentile(0.999)), FormatDuration(h.Max()), s.Failures(),
			FormatDuration(lag.Percentile(0.99)), FormatDuration(fromSend.Percentile(0.99)), cpuColumn(s),
			FormatDuration(s.MedianP99()), strings.Join(rounds, " "))
	}
	tw.Flush()
	writeProblems(w, series)
}

func writeProblems(w io.Writer, series []*Series) {
	for _, s := range series {
		if p := s.Problems(); p != "" {
			fmt.Fprintf(w, "  %s errors: %s\n", s.Target, p)
		}
	}
}

func cpuColumn(s *Series) string {
	var parts []string
	for _, role := range []string{"generator", "proxy", "upstream", "rest"} {
		if c, ok := s.CPU(role); ok {
			parts = append(parts, fmt.Sprintf("%.2f", c))
		} else {
			parts = append(parts, "-")
		}
	}
	return strings.Join(parts, "/")
}

// FormatRate is a rate with thousands separators: 41,234.
func FormatRate(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// FormatDuration prints a latency with three significant digits: 412µs,
// 1.23ms, 204ms, 2.05s.
func FormatDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + FormatDuration(-d)
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d/time.Microsecond)
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}
