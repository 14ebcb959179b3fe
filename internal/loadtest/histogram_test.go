package loadtest

import (
	"math"
	"testing"
	"time"
)

func TestHistogramPercentiles(t *testing.T) {
	us := time.Microsecond
	tests := []struct {
		name   string
		values func(h *Histogram)
		q      []float64
		want   []time.Duration
		relErr float64
		min    time.Duration
		max    time.Duration
		count  uint64
	}{
		{
			name: "exact below 256µs",
			values: func(h *Histogram) {
				for v := 1; v <= 200; v++ {
					h.Record(time.Duration(v) * us)
				}
			},
			q:     []float64{0.5, 0.9, 0.99, 0.999, 1},
			want:  []time.Duration{100 * us, 180 * us, 198 * us, 200 * us, 200 * us},
			min:   us,
			max:   200 * us,
			count: 200,
		},
		{
			name: "uniform 1µs to 100ms",
			values: func(h *Histogram) {
				for v := 1; v <= 100_000; v++ {
					h.Record(time.Duration(v) * us)
				}
			},
			q:      []float64{0.01, 0.5, 0.99, 0.999},
			want:   []time.Duration{1000 * us, 50 * time.Millisecond, 99 * time.Millisecond, 99_900 * us},
			relErr: 0.01,
			min:    us,
			max:    100 * time.Millisecond,
			count:  100_000,
		},
		{
			name: "one outlier in a thousand",
			values: func(h *Histogram) {
				for range 999 {
					h.Record(300 * us)
				}
				h.Record(2 * time.Second)
			},
			q:      []float64{0.5, 0.99, 0.999, 0.9991},
			want:   []time.Duration{300 * us, 300 * us, 300 * us, 2 * time.Second},
			relErr: 0.01,
			min:    300 * us,
			max:    2 * time.Second,
			count:  1000,
		},
		{
			name: "single value is exact",
			values: func(h *Histogram) {
				h.Record(1234567 * us)
			},
			q:     []float64{0.001, 0.5, 1},
			want:  []time.Duration{1234567 * us, 1234567 * us, 1234567 * us},
			min:   1234567 * us,
			max:   1234567 * us,
			count: 1,
		},
		{
			name: "sub-µs and negative count as zero",
			values: func(h *Histogram) {
				h.Record(-time.Second)
				h.Record(999 * time.Nanosecond)
			},
			q:     []float64{1},
			want:  []time.Duration{0},
			count: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			tt.values(&h)
			for i, q := range tt.q {
				got := h.Percentile(q)
				if d := math.Abs(float64(got - tt.want[i])); d > tt.relErr*float64(tt.want[i]) {
					t.Errorf("p%v = %v, want %v (±%.0f%%)", q*100, got, tt.want[i], tt.relErr*100)
				}
			}
			if h.Min() != tt.min || h.Max() != tt.max || h.Count() != tt.count {
				t.Errorf("min, max, count = %v, %v, %d; want %v, %v, %d", h.Min(), h.Max(), h.Count(), tt.min, tt.max, tt.count)
			}
		})
	}
}

func TestHistogramEmpty(t *testing.T) {
	var h Histogram
	if h.Percentile(0.99) != 0 || h.Min() != 0 || h.Max() != 0 || h.Mean() != 0 {
		t.Errorf("empty histogram: p99 %v min %v max %v mean %v", h.Percentile(0.99), h.Min(), h.Max(), h.Mean())
	}
}

func TestHistogramMerge(t *testing.T) {
	var a, b, all Histogram
	for v := 1; v <= 5000; v++ {
		d := time.Duration(v*v) * time.Microsecond
		all.Record(d)
		if v%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	var m Histogram
	m.Merge(&a)
	m.Merge(&b)
	m.Merge(&Histogram{})
	for _, q := range []float64{0.1, 0.5, 0.9, 0.99, 0.999, 1} {
		if got, want := m.Percentile(q), all.Percentile(q); got != want {
			t.Errorf("merged p%v = %v, want %v", q*100, got, want)
		}
	}
	if m.Count() != all.Count() || m.Min() != all.Min() || m.Max() != all.Max() || m.Mean() != all.Mean() {
		t.Errorf("merged count/min/max/mean = %d %v %v %v, want %d %v %v %v",
			m.Count(), m.Min(), m.Max(), m.Mean(), all.Count(), all.Min(), all.Max(), all.Mean())
	}
}

// Every value falls in its bucket, and no bucket above the exact range is
// wider than 1/128 of its lowest value.
func TestHistogramBuckets(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<38; v = v + 1 + v/97 {
		i := bucket(v)
		lo, width := bucketRange(i)
		if v < lo || v >= lo+width {
			t.Fatalf("value %d in bucket %d = [%d, %d)", v, i, lo, lo+width)
		}
		if v >= 2*subBuckets && float64(width)/float64(lo) > 1.0/subBuckets {
			t.Fatalf("bucket %d = [%d, %d) is wider than 1/%d", i, lo, lo+width, subBuckets)
		}
		if i < prev {
			t.Fatalf("bucket(%d) = %d after %d", v, i, prev)
		}
		prev = i
	}
	if i := bucket(math.MaxUint64); i != numBuckets-1 {
		t.Errorf("bucket(max) = %d, want the last, %d", i, numBuckets-1)
	}
}
