package loadtest

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram buckets: log-linear, HDR style. Values are counted in units of
// Resolution; below 2·subBuckets units every unit has its own bucket, above
// that every power of two is split into subBuckets equal buckets, so a
// bucket is at most 1/subBuckets (0.78%) of its value wide.
const (
	// Resolution is the histogram's smallest step.
	Resolution = time.Microsecond

	subBits    = 7
	subBuckets = 1 << subBits // buckets per power of two
	maxShift   = 30           // values up to 2^(subBits+1+maxShift) µs (≈ 76 h)
	numBuckets = 2*subBuckets + maxShift*subBuckets
)

// Histogram records durations with 1 µs resolution at the low end and under
// 1% relative error above 256 µs. Record is safe for concurrent use (one
// atomic add per value); read the percentiles once recording has stopped.
// The zero Histogram is empty and ready to use.
type Histogram struct {
	counts   [numBuckets]atomic.Uint64
	total    atomic.Uint64
	sum      atomic.Uint64 // in Resolution units
	min, max atomic.Int64  // in Resolution units; min is stored +1 so 0 means unset
}

// Record adds one value; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d/Resolution), 0)
	h.counts[bucket(uint64(v))].Add(1)
	h.total.Add(1)
	h.sum.Add(uint64(v))
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
	for {
		m := h.min.Load()
		if (m != 0 && v+1 >= m) || h.min.CompareAndSwap(m, v+1) {
			break
		}
	}
}

// Merge adds every value recorded in o.
func (h *Histogram) Merge(o *Histogram) {
	if o.Count() == 0 {
		return
	}
	for i := range o.counts {
		if n := o.counts[i].Load(); n > 0 {
			h.counts[i].Add(n)
		}
	}
	h.total.Add(o.total.Load())
	h.sum.Add(o.sum.Load())
	if v := o.max.Load(); v > h.max.Load() {
		h.max.Store(v)
	}
	if v := o.min.Load(); h.min.Load() == 0 || v < h.min.Load() {
		h.min.Store(v)
	}
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total.Load() }

// Min is the smallest recorded value (0 when empty).
func (h *Histogram) Min() time.Duration {
	if h.Count() == 0 {
		return 0
	}
	return time.Duration(h.min.Load()-1) * Resolution
}

// Max is the largest recorded value, exact.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) * Resolution }

// Mean is the average of the recorded values (0 when empty).
func (h *Histogram) Mean() time.Duration {
	n := h.Count()
	if n == 0 {
		return 0
	}
	return time.Duration(float64(h.sum.Load())/float64(n)) * Resolution
}

// Percentile returns the value at or below which q (0 < q ≤ 1) of the
// recorded values lie: the ceil(q·n)-th smallest value, given as the middle
// of its bucket (clamped to the recorded min and max). 0 when empty.
func (h *Histogram) Percentile(q float64) time.Duration {
	n := h.Count()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q*float64(n) - 1e-9)) // 0.9×200 is 180, not 181
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, width := bucketRange(i)
			v := int64(lo + (width-1)/2)
			v = min(max(v, h.min.Load()-1), h.max.Load())
			return time.Duration(v) * Resolution
		}
	}
	return h.Max()
}

// bucket is the index of the bucket holding v (in Resolution units).
func bucket(v uint64) int {
	if v < 2*subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - (subBits + 1) // v>>shift is in [subBuckets, 2·subBuckets)
	if shift > maxShift {
		return numBuckets - 1
	}
	return 2*subBuckets + (shift-1)*subBuckets + int(v>>shift) - subBuckets
}

// bucketRange is the lowest value of bucket i and its width.
func bucketRange(i int) (lo, width uint64) {
	if i < 2*subBuckets {
		return uint64(i), 1
	}
	j := i - 2*subBuckets
	shift := j/subBuckets + 1
	return uint64(j%subBuckets+subBuckets) << shift, 1 << shift
}
