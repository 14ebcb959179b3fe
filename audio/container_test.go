package audio

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tollgate/tollgate"
)

// Test helpers shared by mp3_test.go, aac_test.go, webm_test.go and
// mp4_test.go.

// formatCase is one row of a per-format probe table.
type formatCase struct {
	name string
	in   []byte
	want Info          // Bytes is always len(in)
	tol  time.Duration // allowed |Duration - want.Duration|: one codec frame
	code tollgate.Code // when set, Probe must fail with this code
}

// testFormatCases probes every case and compares the result.
func testFormatCases(t *testing.T, cases []formatCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Probe(bytes.NewReader(c.in), Options{})
			if got.Bytes != int64(len(c.in)) {
				t.Errorf("Bytes = %d, want %d", got.Bytes, len(c.in))
			}
			if c.code != "" {
				if code := tollgate.ErrorCode(err); code != c.code {
					t.Fatalf("error code = %q (%v), want %q", code, err, c.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("Probe: %v", err)
			}
			if d := got.Duration - c.want.Duration; d < -c.tol || d > c.tol {
				t.Errorf("Duration = %v, want %v ± %v", got.Duration, c.want.Duration, c.tol)
			}
			got.Duration, got.Bytes = 0, 0
			want := c.want
			want.Duration = 0
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("Probe (-got +want):\n%s", diff)
			}
		})
	}
}

// formatFixture reads testdata/name.
func formatFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// formatFixtures returns every fixture whose name starts with prefix.
func formatFixtures(t testing.TB, prefix string) [][]byte {
	t.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", prefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, n := range names {
		if strings.HasSuffix(n, ".md") {
			continue
		}
		out = append(out, formatFixture(t, filepath.Base(n)))
	}
	return out
}

// fuzzFormat checks what must hold for any input: no panic, no more than
// a bounded allocation, well under 2 s, every byte read, a catalog error
// or a sane Info.
func fuzzFormat(t *testing.T, in []byte) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	info, err := Probe(bytes.NewReader(in), Options{})
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Probe took %v on %d bytes", d, len(in))
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 16<<20+uint64(len(in)) {
		t.Fatalf("Probe allocated %d bytes for a %d-byte input", n, len(in))
	}
	if info.Bytes != int64(len(in)) {
		t.Fatalf("Bytes = %d, want %d", info.Bytes, len(in))
	}
	if err != nil {
		if code := tollgate.ErrorCode(err); code != tollgate.CodeUnsupportedAudioFormat {
			t.Fatalf("error code = %q (%v)", code, err)
		}
		return
	}
	if info.Duration < 0 || info.SampleRate < 0 || info.Channels < 0 {
		t.Fatalf("insane Info %+v", info)
	}
	if !info.HasSamples && info.Duration != 0 {
		t.Fatalf("no samples but Duration %v", info.Duration)
	}
}

// benchmarkProbe probes in b.N times, reporting MB/s.
func benchmarkProbe(b *testing.B, in []byte) {
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	r := bytes.NewReader(in)
	for b.Loop() {
		r.Reset(in)
		info, err := Probe(r, Options{})
		if err != nil || !info.HasSamples {
			b.Fatalf("Probe = %+v, %v", info, err)
		}
	}
}

// repeatReader yields n bytes made of unit repeated, without holding them.
type repeatReader struct {
	unit []byte
	n    int64
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	total := 0
	for len(p) > 0 {
		c := copy(p, r.unit[r.off:])
		r.off = (r.off + c) % len(r.unit)
		p = p[c:]
		total += c
	}
	r.n -= int64(total)
	return total, nil
}

// framesDuration is binary.go's; the parsers here rely on it saturating.
func TestFramesDurationSaturates(t *testing.T) {
	for _, c := range []struct {
		samples, rate int64
		want          time.Duration
	}{
		{44100, 44100, time.Second},
		{1152, 44100, 26122448},
		{0, 44100, 0},
		{5, 0, 0},
		{1 << 62, 1, time.Duration(1<<63 - 1)}, // saturates
		{48000*3600*1000 + 24000, 48000, 1000*time.Hour + 500*time.Millisecond},
	} {
		if got := framesDuration(c.samples, c.rate); got != c.want {
			t.Errorf("framesDuration(%d, %d) = %v, want %v", c.samples, c.rate, got, c.want)
		}
	}
}

func TestTagLen(t *testing.T) {
	ape := make([]byte, 32)
	copy(ape, "APETAGEX")
	ape[12] = 100 // size
	apeHeader := bytes.Clone(ape)
	apeHeader[23] = 0x20 // flags bit 29: header
	for _, c := range []struct {
		name string
		in   []byte
		want int64
	}{
		{"id3v2", []byte("ID3\x04\x00\x00\x00\x00\x01\x00"), 10 + 128},
		{"id3v2 footer", []byte("ID3\x04\x00\x10\x00\x00\x00\x05"), 10 + 5 + 10},
		{"id3v2 bad syncsafe", []byte("ID3\x04\x00\x00\x80\x00\x00\x00"), 0},
		{"id3v1", []byte("TAGxyz"), 128},
		{"ape footer", ape, 32},
		{"ape header", apeHeader, 32 + 100},
		{"short", []byte("TA"), 0},
		{"none", []byte("hello world"), 0},
	} {
		if got := tagLen(c.in); got != c.want {
			t.Errorf("%s: tagLen = %d, want %d", c.name, got, c.want)
		}
	}
}
