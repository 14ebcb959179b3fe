package audio

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// wavFile builds a WAV file: magic (RIFF, RF64, BW64), a RIFF size and the
// chunks.
func wavFile(magic string, chunks ...[]byte) []byte {
	body := bytes.Join(chunks, nil)
	return joinBytes(magic, le32(uint32(4+len(body))), "WAVE", body)
}

// wavChunk builds a chunk that declares size and holds payload (followed
// by a pad byte when pad is set).
func wavChunk(id string, size uint32, payload []byte, pad bool) []byte {
	b := joinBytes(id, le32(size), payload)
	if pad {
		b = append(b, 0)
	}
	return b
}

// wavData is a data chunk holding n bytes that declares as much.
func wavData(n int) []byte { return wavChunk("data", uint32(n), wavSamples(n), false) }

// wavSamples is n bytes of audio that cannot be read as a chunk id.
func wavSamples(n int) []byte { return bytes.Repeat([]byte{0x01, 0x81}, n/2+1)[:n] }

// wavFmt is a 16-byte fmt chunk.
func wavFmt(tag, channels uint16, rate uint32, blockAlign, bits uint16) []byte {
	return wavChunk("fmt ", 16, joinBytes(le16(tag), le16(channels), le32(rate),
		le32(rate*uint32(blockAlign)), le16(blockAlign), le16(bits)), false)
}

// wavFmtExt is a WAVE_FORMAT_EXTENSIBLE fmt chunk with subformat sub.
func wavFmtExt(sub, channels uint16, rate uint32, blockAlign, bits uint16) []byte {
	return wavChunk("fmt ", 40, joinBytes(le16(wavExtensible), le16(channels), le32(rate),
		le32(rate*uint32(blockAlign)), le16(blockAlign), le16(bits),
		le16(22), le16(bits), le32(4), le16(sub), wavGUIDTail), false)
}

// wavMono16 is the fmt chunk of 16 kHz mono s16le (32000 bytes a second).
var wavMono16 = wavFmt(wavPCM, 1, 16000, 2, 16)

func wavCases(t testing.TB) []probeCase {
	sec := time.Second
	s16 := Info{Format: WAV, Codec: "pcm_s16le", SampleRate: 16000, Channels: 1, HasSamples: true, Duration: sec}
	noSamples := s16
	noSamples.HasSamples, noSamples.Duration = false, 0
	bad := tollgate.CodeUnsupportedAudioFormat
	ds64 := func(data uint64) []byte {
		return wavChunk("ds64", 28, joinBytes(le64(0), le64(data), le64(0), le32(0)), false)
	}
	streamed := wavChunk("data", 0xFFFFFFFF, wavSamples(32000), false)
	list := wavChunk("LIST", 11, []byte("INFOISFT\x03\x00x"), true)
	return []probeCase{
		{name: "plain", in: wavFile("RIFF", wavMono16, wavData(32000)), want: s16},
		{name: "truncated: header claims 10 s, 1 s present",
			in: wavFile("RIFF", wavMono16, wavChunk("data", 320000, wavSamples(32000), false)), want: s16},
		{name: "forged short: header claims 0.5 s, 1 s present",
			in: wavFile("RIFF", wavMono16, wavChunk("data", 16000, wavSamples(32000), false)), want: s16},
		{name: "data size 0 from a streaming writer",
			in: wavFile("RIFF", wavMono16, wavChunk("data", 0, wavSamples(32000), false)), want: s16},
		{name: "data size 0xFFFFFFFF", in: wavFile("RIFF", wavMono16, streamed), want: s16},
		{name: "zero-length data chunk", in: wavFile("RIFF", wavMono16, wavData(0)), want: noSamples},
		{name: "zero-length data chunk then LIST", in: wavFile("RIFF", wavMono16, wavData(0), list), want: noSamples},
		{name: "half a frame", in: wavFile("RIFF", wavMono16, wavData(1)), want: noSamples},
		{name: "data before fmt", in: wavFile("RIFF", wavData(32000), wavMono16), want: s16},
		{name: "odd LIST padded before data", in: wavFile("RIFF", list, wavMono16, wavData(32000)), want: s16},
		{name: "odd chunk without its pad byte",
			in: wavFile("RIFF", wavChunk("abcd", 3, []byte("xyz"), false), wavMono16, wavData(32000)), want: s16},
		{name: "trailing LIST not counted", in: wavFile("RIFF", wavMono16, wavData(32000), list), want: s16},
		{name: "odd data chunk padded, then LIST",
			in:   wavFile("RIFF", wavFmt(wavPCM, 1, 8000, 1, 8), wavChunk("data", 8001, wavSamples(8001), true), list),
			want: Info{Format: WAV, Codec: "pcm_u8", SampleRate: 8000, Channels: 1, HasSamples: true, Duration: sec + 125*time.Microsecond}},
		{name: "byte rate and fact chunk forged",
			in: wavFile("RIFF", wavChunk("fmt ", 16, joinBytes(le16(wavPCM), le16(1), le32(16000), le32(1), le16(2), le16(16)), false),
				wavChunk("fact", 4, le32(16000*36000), false), wavData(32000)), want: s16},
		{name: "partial frame at the end", in: wavFile("RIFF", wavMono16, wavData(32001)), want: s16},
		{name: "RF64, ds64 claims 10 s", in: wavFile("RF64", ds64(320000), wavMono16, streamed), want: s16},
		{name: "RF64 without ds64", in: wavFile("RF64", wavMono16, streamed), want: s16},
		{name: "BW64", in: wavFile("BW64", ds64(32000), wavMono16, streamed), want: s16},
		{name: "extensible f64le stereo",
			in:   wavFile("RIFF", wavFmtExt(wavFloat, 2, 8000, 16, 64), wavData(128000)),
			want: withInfo(s16, func(i *Info) { i.Codec, i.SampleRate, i.Channels = "pcm_f64le", 8000, 2 })},
		{name: "extensible mulaw",
			in:   wavFile("RIFF", wavFmtExt(wavMuLaw, 1, 8000, 1, 8), wavData(8000)),
			want: withInfo(s16, func(i *Info) { i.Codec, i.SampleRate = "pcm_mulaw", 8000 })},
		{name: "s32le stereo", in: wavFile("RIFF", wavFmt(wavPCM, 2, 16000, 8, 32), wavData(64000)),
			want: withInfo(s16, func(i *Info) { i.Codec, i.Channels, i.Duration = "pcm_s32le", 2, sec/2 })},

		{name: "no fmt chunk", in: wavFile("RIFF", wavData(32000)), code: bad, msg: "no fmt chunk"},
		{name: "no data chunk", in: wavFile("RIFF", wavMono16, list), code: bad, msg: "no data chunk"},
		{name: "no chunks", in: wavFile("RIFF"), code: bad, msg: "neither"},
		{name: "0 channels", in: wavFile("RIFF", wavFmt(wavPCM, 0, 16000, 2, 16), wavData(32000)), code: bad, msg: "0 channels"},
		{name: "rate 0", in: wavFile("RIFF", wavFmt(wavPCM, 1, 0, 2, 16), wavData(32000)), code: bad, msg: "sample rate of 0"},
		{name: "block align 0", in: wavFile("RIFF", wavFmt(wavPCM, 1, 16000, 0, 16), wavData(32000)), code: bad, msg: "block size of 0"},
		{name: "bits disagree with block align", in: wavFile("RIFF", wavFmt(wavPCM, 1, 16000, 3, 16), wavData(32000)), code: bad, msg: "inconsistent"},
		{name: "MP3 in WAV", in: wavFile("RIFF", wavFmt(0x0055, 1, 16000, 1, 0), wavData(32000)), code: bad, msg: "0x0055"},
		{name: "extensible unknown subformat",
			in:   wavFile("RIFF", wavChunk("fmt ", 40, joinBytes(wavFmtExt(wavPCM, 1, 16000, 2, 16)[8:34], "0123456789abcd"), false), wavData(32000)),
			code: bad, msg: "subformat"},
		{name: "extensible fmt too short", in: wavFile("RIFF", wavChunk("fmt ", 18, joinBytes(le16(wavExtensible), wavMono16[10:], le16(0)), false), wavData(32000)),
			code: bad, msg: "EXTENSIBLE"},
		{name: "fmt chunk too short", in: wavFile("RIFF", wavChunk("fmt ", 14, wavMono16[8:22], false), wavData(32000)), code: bad, msg: "at least 16"},
		{name: "huge fmt chunk", in: wavFile("RIFF", wavChunk("fmt ", 0xFFFFFFF0, wavMono16[8:], false)), code: bad, msg: "truncated"},
		{name: "huge chunk before the data", in: wavFile("RIFF", wavChunk("JUNK", 0xFFFFFFF0, nil, false), wavMono16, wavData(32000)),
			code: bad, msg: "neither"},
		{name: "garbage after the magic", in: wavFile("RIFF", wavSamples(1000)), code: bad, msg: "corrupt"},
		{name: "truncated chunk header", in: wavFile("RIFF", []byte("fmt")), code: bad, msg: "truncated"},
		{name: "RIFF header only", in: []byte("RIFF\x00\x00\x00\x00WAVE"), code: bad, msg: "neither"},
	}
}

func TestProbeWAV(t *testing.T) { runProbeCases(t, wavCases(t)) }

// TestProbeWAVReadError checks that a read error is returned as it is (a
// body over its size cap is a payload_too_large catalog error, not an
// unsupported format).
func TestProbeWAVReadError(t *testing.T) {
	tooLarge := tollgate.NewError(tollgate.CodePayloadTooLarge)
	in := wavFile("RIFF", wavMono16, wavData(200000))
	_, err := Probe(io.MultiReader(bytes.NewReader(in[:100000]), failingReader{tooLarge}), Options{})
	if !errors.Is(err, tooLarge) {
		t.Fatalf("Probe error = %v, want %v", err, tooLarge)
	}
}

type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

// wavStream yields a WAV header for n bytes of 16 kHz s16le mono followed
// by n bytes, generated as they are read.
type wavStream struct {
	head []byte
	n    int64
}

func (w *wavStream) Read(p []byte) (int, error) {
	if len(w.head) > 0 {
		c := copy(p, w.head)
		w.head = w.head[c:]
		return c, nil
	}
	if w.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > w.n {
		p = p[:w.n]
	}
	for i := range p {
		p[i] = byte(i)
	}
	w.n -= int64(len(p))
	return len(p), nil
}

func newWAVStream(n int64) *wavStream {
	return &wavStream{head: wavFile("RIFF", wavMono16, wavChunk("data", uint32(n), nil, false)), n: n}
}

// TestProbeWAVLargeStreamSmallMemory probes a 100 MB WAV that is never
// held in memory and checks that Probe allocated less than 1 MB.
func TestProbeWAVLargeStreamSmallMemory(t *testing.T) {
	const n = 100 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	info, err := Probe(newWAVStream(n), Options{})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Duration(n / 32000 * int64(time.Second)); info.Duration != want+time.Duration(n%32000/2)*time.Second/16000 {
		t.Errorf("Duration = %v", info.Duration)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("Probe allocated %d bytes for a 100 MB WAV; want < 1 MB", alloc)
	}
}

func BenchmarkProbeWAV(b *testing.B) {
	benchProbe(b, wavFile("RIFF", wavMono16, wavData(10<<20)), Options{})
}
