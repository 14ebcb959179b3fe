package audio

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// flacHead builds the "fLaC" marker and a STREAMINFO block.
func flacHead(rate, channels, bits int, total int64, last bool) []byte {
	si := make([]byte, 34)
	binary.BigEndian.PutUint16(si[0:], 4096)
	binary.BigEndian.PutUint16(si[2:], 4096)
	binary.BigEndian.PutUint64(si[10:], uint64(rate)<<44|uint64(channels-1)<<41|uint64(bits-1)<<36|uint64(total))
	return joinBytes("fLaC", flacMeta(0, last, si))
}

// flacMeta builds a metadata block of type typ.
func flacMeta(typ byte, last bool, body []byte) []byte {
	h := []byte{typ, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}
	if last {
		h[0] |= 0x80
	}
	return joinBytes(h, body)
}

// flacFrameHeader builds a frame header: number is the frame number, or
// the first sample number when variable; the block size is coded in 16
// bits, the sample rate and sample size come from STREAMINFO.
func flacFrameHeader(variable bool, number int64, blockSize, channels int) []byte {
	h := []byte{0xFF, 0xF8, 7 << 4, byte(channels-1) << 4}
	if variable {
		h[1] |= 1
	}
	// UTF-8-like coding of number
	switch {
	case number < 0x80:
		h = append(h, byte(number))
	default:
		n := 1
		for number >= 1<<(6*n+6-n) {
			n++
		}
		lead := byte(0xFF<<(7-n)) | byte(number>>(6*n))
		h = append(h, lead)
		for i := n - 1; i >= 0; i-- {
			h = append(h, 0x80|byte(number>>(6*i))&0x3F)
		}
	}
	h = binary.BigEndian.AppendUint16(h, uint16(blockSize-1))
	return append(h, flacCRC8(h))
}

// flacFrames builds n frames of blockSize samples, each followed by body
// bytes of noise (which holds false syncs).
func flacFrames(variable bool, first int64, n, blockSize, channels, body int, rng *rand.Rand) []byte {
	var b []byte
	num := first
	for range n {
		b = append(b, flacFrameHeader(variable, num, blockSize, channels)...)
		for range body {
			b = append(b, byte(rng.Uint32()))
		}
		if variable {
			num += int64(blockSize)
		} else {
			num++
		}
	}
	return b
}

func flacCases(t testing.TB) []probeCase {
	rng := rand.New(rand.NewPCG(1, 2))
	sec := time.Second
	mono := Info{Format: FLAC, Codec: "flac", SampleRate: 16000, Channels: 1, HasSamples: true, Duration: sec}
	noSamples := mono
	noSamples.HasSamples, noSamples.Duration = false, 0
	bad := tollgate.CodeUnsupportedAudioFormat
	frames := flacFrames(false, 0, 4, 4000, 1, 300, rng) // 1 s
	damaged := flacFrames(false, 0, 5, 3200, 1, 300, rng)
	damaged[2*(len(damaged)/5)+5] ^= 1 // the third header's CRC-8 fails
	// a frame header copied into a frame body: a false sync that does
	// not continue the chain
	falseSync := joinBytes(flacFrames(false, 0, 2, 4000, 1, 100, rng), flacFrameHeader(false, 7, 4000, 1),
		flacFrames(false, 2, 2, 4000, 1, 100, rng))
	fixture := readTestdata(t, "flac_s16.flac")
	return []probeCase{
		{name: "STREAMINFO total unknown", in: joinBytes(flacHead(16000, 1, 16, 0, true), frames), want: mono},
		{name: "header claims 10 s, 1 s of frames", in: joinBytes(flacHead(16000, 1, 16, 160000, true), frames), want: mono},
		{name: "header claims 0.5 s, 1 s of frames", in: joinBytes(flacHead(16000, 1, 16, 8000, true), frames), want: mono},
		{name: "variable block size", in: joinBytes(flacHead(16000, 1, 16, 16000, true), flacFrames(true, 0, 8, 2000, 1, 200, rng)), want: mono},
		{name: "more metadata blocks", in: joinBytes(flacHead(16000, 1, 16, 16000, false), flacMeta(4, false, []byte("vorbis comment")),
			flacMeta(1, true, make([]byte, 1000)), frames), want: mono},
		{name: "frames without a last metadata block", in: joinBytes(flacHead(16000, 1, 16, 16000, false), frames), want: mono},
		{name: "false sync in a frame", in: joinBytes(flacHead(16000, 1, 16, 16000, true), falseSync), want: mono},
		{name: "damaged frame header: the walk resyncs", in: joinBytes(flacHead(16000, 1, 16, 16000, true), damaged),
			want: withInfo(mono, func(i *Info) { i.Duration = 4 * 3200 * sec / 16000 })},
		{name: "frames of another channel count are not counted",
			in: joinBytes(flacHead(16000, 1, 16, 16000, true), flacFrames(false, 0, 4, 4000, 2, 300, rng)), want: noSamples},
		{name: "frames starting mid-stream", in: joinBytes(flacHead(16000, 1, 16, 0, true), flacFrames(false, 100, 4, 4000, 1, 300, rng)), want: mono},
		{name: "stereo 48 kHz", in: joinBytes(flacHead(48000, 2, 24, 0, true), flacFrames(false, 0, 12, 4000, 2, 100, rng)),
			want: withInfo(mono, func(i *Info) { i.SampleRate, i.Channels = 48000, 2 })},
		{name: "metadata only", in: flacHead(16000, 1, 16, 16000, true), want: noSamples},
		{name: "metadata only, truncated in a block", in: joinBytes(flacHead(16000, 1, 16, 16000, false), flacMeta(1, true, make([]byte, 100))[:50]), want: noSamples},
		{name: "huge metadata block", in: joinBytes(flacHead(16000, 1, 16, 16000, false), []byte{0x81, 0xFF, 0xFF, 0xFF}, frames), want: noSamples},
		{name: "fixture truncated to its metadata", in: fixture[:42], want: noSamples},
		{name: "rate 0", in: joinBytes(flacHead(0, 1, 16, 0, true), frames), code: bad, msg: "sample rate of 0"},
		{name: "no STREAMINFO", in: joinBytes("fLaC", flacMeta(1, true, make([]byte, 34)), frames), code: bad, msg: "STREAMINFO"},
		{name: "short STREAMINFO", in: joinBytes("fLaC", []byte{0x80, 0, 0, 10}, make([]byte, 34)), code: bad, msg: "34"},
		{name: "marker only", in: []byte("fLaC"), code: bad, msg: "truncated"},
		{name: "garbage after the marker", in: joinBytes("fLaC", wavSamples(100)), code: bad, msg: "STREAMINFO"},
	}
}

func TestProbeFLAC(t *testing.T) { runProbeCases(t, flacCases(t)) }

// TestProbeFLACTruncated cuts a real file at every 500th byte: the
// duration never decreases as bytes are added, stays within a frame of
// the audio present and reaches the full second at the end.
func TestProbeFLACTruncated(t *testing.T) {
	in := readTestdata(t, "flac_s16.flac")
	var last time.Duration
	for n := 42; n <= len(in); n += 500 {
		if n+500 > len(in) {
			n = len(in)
		}
		info, err := Probe(bytes.NewReader(in[:n]), Options{})
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if info.Duration < last {
			t.Errorf("%d bytes: Duration %v < %v with fewer bytes", n, info.Duration, last)
		}
		// the frames are about the same size: the share of bytes is
		// within one 4096-sample frame of the share of samples
		share := time.Duration(float64(time.Second) * float64(n) / float64(len(in)))
		if d := info.Duration - share; d > 256*time.Millisecond || d < -256*time.Millisecond {
			t.Errorf("%d bytes of %d: Duration %v", n, len(in), info.Duration)
		}
		last = info.Duration
	}
	if last != time.Second {
		t.Errorf("whole file: Duration %v", last)
	}
}

func TestFLACFrameHeader(t *testing.T) {
	si := &flacStreamInfo{rate: 16000, channels: 1, bits: 16}
	for _, num := range []int64{0, 1, 0x7F, 0x80, 0x7FF, 0x800, 0xFFFF, 0x10000, 1 << 30, 1<<31 - 1} {
		f, ok := parseFLACFrame(flacFrameHeader(false, num, 4096, 1), si)
		if !ok || f.number != num || f.blockSize != 4096 {
			t.Errorf("fixed %d: %+v %v", num, f, ok)
		}
	}
	for _, num := range []int64{1 << 32, 1<<36 - 1} {
		f, ok := parseFLACFrame(flacFrameHeader(true, num, 16, 1), si)
		if !ok || f.number != num || f.blockSize != 16 || !f.variable {
			t.Errorf("variable %d: %+v %v", num, f, ok)
		}
	}
	if _, ok := parseFLACFrame(flacFrameHeader(false, 1<<31, 4096, 1), si); ok {
		t.Errorf("a fixed-block frame number of 32 bits was accepted")
	}
}

func BenchmarkProbeFLAC(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	benchProbe(b, joinBytes(flacHead(44100, 2, 16, 0, true), flacFrames(false, 0, 1280, 4096, 2, 8<<10, rng)), Options{})
}
