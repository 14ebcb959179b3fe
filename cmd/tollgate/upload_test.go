package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// wavStream is a WAV file of n data bytes generated as it is read: an
// upload that the client never holds in memory.
type wavStream struct {
	head []byte
	left int64
}

func newWAVStream(dataBytes int64) *wavStream {
	h := make([]byte, 44)
	copy(h, "RIFF")
	binary.LittleEndian.PutUint32(h[4:], uint32(36+dataBytes))
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], 1)
	binary.LittleEndian.PutUint16(h[22:], 1)
	binary.LittleEndian.PutUint32(h[24:], 16000)
	binary.LittleEndian.PutUint32(h[28:], 32000)
	binary.LittleEndian.PutUint16(h[32:], 2)
	binary.LittleEndian.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], uint32(dataBytes))
	return &wavStream{head: h, left: dataBytes}
}

func (s *wavStream) Read(p []byte) (int, error) {
	if len(s.head) > 0 {
		n := copy(p, s.head)
		s.head = s.head[n:]
		return n, nil
	}
	if s.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	for i := range p {
		p[i] = byte(i)
	}
	s.left -= int64(len(p))
	return len(p), nil
}

// rssBytes reads this process's resident set size.
func rssBytes() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func postStream(tb testing.TB, url, key string, body io.Reader) int {
	tb.Helper()
	req, _ := http.NewRequest("POST", url, body)
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Content-Type", "audio/wav")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestLargeUploadStreams sends a 20 MB WAV without Content-Length through
// validation (sniff, real duration, spool) to the upstream, and one over
// the 200 MB cap.
func TestLargeUploadStreams(t *testing.T) {
	g := startGateway(t, "tollgate", "")
	_, key, _ := g.newOrg("acme", "basic", allModels, nil)
	req, _ := http.NewRequest("POST", g.url+"/v1/audio/transcriptions", struct{ io.Reader }{newWAVStream(20 << 20)})
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Content-Type", "audio/wav")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var answer struct {
		Bytes  int64
		SHA256 string
	}
	err = json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if resp.StatusCode != 200 || err != nil {
		t.Fatalf("20 MB: status %d, %v", resp.StatusCode, err)
	}
	if got := g.models.LastHeaders().Get("Content-Length"); got != strconv.Itoa(20<<20+44) {
		t.Errorf("upstream Content-Length %q, want the whole file", got)
	}
	// The upstream got the upload byte for byte (it went through the
	// temp-file spool: over the in-memory 1 MiB).
	sum := sha256.New()
	io.Copy(sum, newWAVStream(20<<20))
	if want := hex.EncodeToString(sum.Sum(nil)); answer.SHA256 != want || answer.Bytes != 20<<20+44 {
		t.Errorf("upstream got %d bytes, sha256 %s; want %d bytes, %s", answer.Bytes, answer.SHA256, 20<<20+44, want)
	}
	start := time.Now()
	if s := postStream(t, g.url+"/v1/audio/transcriptions", key, struct{ io.Reader }{newWAVStream(200<<20 + 1)}); s != 413 {
		t.Errorf("over the cap: status %d, want 413", s)
	}
	t.Logf("200 MB + 1 byte refused in %v", time.Since(start))
}

// BenchmarkUpload100MB validates (sniff + real duration) and forwards a
// 100 MB WAV upload sent without Content-Length, reporting throughput and
// the process's peak RSS growth while it streams.
func BenchmarkUpload100MB(b *testing.B) {
	g := startGateway(b, "tollgate", "")
	_, key, _ := g.newOrg("acme", "basic", allModels, nil)
	const size = 100 << 20
	var peak atomic.Int64
	base := rssBytes()
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if r := rssBytes() - base; r > peak.Load() {
					peak.Store(r)
				}
			}
		}
	}()
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if s := postStream(b, g.url+"/v1/audio/transcriptions", key, struct{ io.Reader }{newWAVStream(size - 44)}); s != 200 {
			b.Fatalf("status %d", s)
		}
	}
	b.StopTimer()
	close(stop)
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-RSS-growth-MB")
}
