package audio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tollgate/tollgate"
)

// The shared table, fuzz targets and helpers of the WAV, FLAC, Ogg and raw
// PCM tests. Fixtures are in testdata (made by real encoders, see its
// README); crafted inputs are built by the per-format tests.

// probeCase is one probe and what it must report.
type probeCase struct {
	name string
	in   []byte
	pcm  *RawPCM // declared raw PCM
	want Info    // Bytes is always len(in)
	// tol is the allowed |Duration − want.Duration|: 0 where the
	// container counts samples exactly, one codec frame otherwise.
	tol time.Duration
	// code, when set, is the error Probe must return; msg is a part of
	// its message.
	code tollgate.Code
	msg  string
}

// runProbeCases probes every case and compares what it reports.
func runProbeCases(t *testing.T, cases []probeCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Probe(bytes.NewReader(c.in), Options{PCM: c.pcm})
			if got.Bytes != int64(len(c.in)) {
				t.Errorf("Bytes = %d, want %d", got.Bytes, len(c.in))
			}
			if c.code != "" {
				if code := tollgate.ErrorCode(err); code != c.code {
					t.Fatalf("error code = %q (%v), want %q", code, err, c.code)
				}
				if msg := tollgate.ErrorMessage(err); !strings.Contains(msg, c.msg) {
					t.Errorf("message %q does not say %q", msg, c.msg)
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

// readTestdata reads testdata/name.
func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProbeFixtures probes the files made by real encoders; the expected
// values are ffprobe's (for Opus, the granule less the pre-skip).
func TestProbeFixtures(t *testing.T) {
	sec := time.Second
	info := func(f Format, codec string, rate, ch int, d time.Duration) Info {
		return Info{Format: f, Codec: codec, SampleRate: rate, Channels: ch, Duration: d, HasSamples: true}
	}
	var cases []probeCase
	for _, c := range []struct {
		file string
		want Info
	}{
		{"wav_s16le.wav", info(WAV, "pcm_s16le", 16000, 1, sec)},
		{"wav_f32le_ext.wav", info(WAV, "pcm_f32le", 16000, 1, sec)},
		{"wav_s24le_ext.wav", info(WAV, "pcm_s24le", 16000, 1, sec)},
		{"wav_mulaw.wav", info(WAV, "pcm_mulaw", 8000, 1, sec)},
		{"wav_alaw.wav", info(WAV, "pcm_alaw", 8000, 1, sec)},
		{"wav_rf64.wav", info(WAV, "pcm_s16le", 16000, 1, sec)},
		{"wav_streamed.wav", info(WAV, "pcm_s16le", 16000, 1, sec)}, // sizes 0xFFFFFFFF
		{"wav_sox_pipe.wav", info(WAV, "pcm_s16le", 16000, 1, sec)}, // data size claims 18 h
		{"wav_u8_stereo.wav", info(WAV, "pcm_u8", 8000, 2, sec/2)},  //
		{"wav_silence.wav", info(WAV, "pcm_s16le", 16000, 1, sec)},  // silence is samples
		{"flac_s16.flac", info(FLAC, "flac", 16000, 1, sec)},        //
		{"flac_stereo_44k.flac", info(FLAC, "flac", 44100, 2, sec)}, //
		{"flac_total0.flac", info(FLAC, "flac", 16000, 1, sec)},     // STREAMINFO total zeroed
		{"ogg_opus.opus", info(Ogg, "opus", 48000, 1, sec)},         // opusenc
		{"ogg_opus_short.opus", info(Ogg, "opus", 48000, 1, 300*time.Millisecond)},
		{"ogg_opus_silence.opus", info(Ogg, "opus", 48000, 2, sec)}, //
		{"ogg_vorbis.ogg", info(Ogg, "vorbis", 16000, 1, sec)},      //
		{"ogg_flac.oga", info(Ogg, "flac", 16000, 1, sec)},          //
	} {
		cases = append(cases, probeCase{name: c.file, in: readTestdata(t, c.file), want: c.want})
	}
	runProbeCases(t, cases)
}

// checkProbe asserts what must hold for any input: every byte read, and a
// catalog error or a sane Info.
func checkProbe(t *testing.T, in []byte, opts Options, format Format) {
	t.Helper()
	start := time.Now()
	info, err := Probe(bytes.NewReader(in), opts)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Probe took %v on %d bytes", d, len(in))
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
	if info.Format != format || info.Duration < 0 || info.SampleRate <= 0 || info.Channels <= 0 || info.Codec == "" {
		t.Fatalf("insane Info %+v", info)
	}
	if !info.HasSamples && info.Duration != 0 {
		t.Fatalf("no samples but Duration %v", info.Duration)
	}
}

// fuzzSeedMax cuts long seeds (to a truncated file, itself a good seed):
// the fuzzer mutates and minimizes small inputs much faster.
const fuzzSeedMax = 16 << 10

// fuzzSeeds adds the fixtures named prefix* and the inputs of cases.
func fuzzSeeds(f *testing.F, prefix string, cases []probeCase) {
	names, err := filepath.Glob(filepath.Join("testdata", prefix+"*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, n := range names {
		b := readTestdata(f, filepath.Base(n))
		f.Add(b[:min(len(b), fuzzSeedMax)])
	}
	for _, c := range cases {
		if c.pcm == nil {
			f.Add(c.in[:min(len(c.in), fuzzSeedMax)])
		}
	}
}

func FuzzProbeWAV(f *testing.F) {
	fuzzSeeds(f, "wav_", wavCases(f))
	f.Fuzz(func(t *testing.T, in []byte) {
		if Sniff(in) != WAV {
			return
		}
		checkProbe(t, in, Options{}, WAV)
	})
}

func FuzzProbeFLAC(f *testing.F) {
	fuzzSeeds(f, "flac_", flacCases(f))
	f.Fuzz(func(t *testing.T, in []byte) {
		if Sniff(in) != FLAC {
			return
		}
		checkProbe(t, in, Options{}, FLAC)
	})
}

func FuzzProbeOgg(f *testing.F) {
	fuzzSeeds(f, "ogg_", oggCases(f))
	f.Fuzz(func(t *testing.T, in []byte) {
		if Sniff(in) != Ogg {
			return
		}
		checkProbe(t, in, Options{}, Ogg)
	})
}

// FuzzProbePCM takes the declaration from the input's first 4 bytes:
// encoding, channels and the sample rate in units of 1000 Hz (some of
// them invalid on purpose).
func FuzzProbePCM(f *testing.F) {
	for _, c := range pcmCases(f) {
		if c.pcm == nil {
			continue
		}
		k := 0
		for i, e := range Encodings {
			if e == c.pcm.Encoding {
				k = i
			}
		}
		decl := []byte{byte(k), byte(c.pcm.Channels), 0, 0}
		binary.LittleEndian.PutUint16(decl[2:], uint16(c.pcm.SampleRate/1000))
		f.Add(append(decl, c.in[:min(len(c.in), fuzzSeedMax)]...))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 5 {
			return
		}
		p := RawPCM{
			Encoding:   Encodings[int(in[0])%len(Encodings)],
			Channels:   int(in[1] % 10),
			SampleRate: 1000 * int(binary.LittleEndian.Uint16(in[2:4])%400),
		}
		if in[0] >= 0xF0 {
			p.Encoding = "s8"
		}
		info, err := Probe(bytes.NewReader(in[4:]), Options{PCM: &p})
		if info.Bytes != int64(len(in)-4) {
			t.Fatalf("Bytes = %d, want %d", info.Bytes, len(in)-4)
		}
		if err != nil {
			if code := tollgate.ErrorCode(err); code != tollgate.CodeUnsupportedAudioFormat {
				t.Fatalf("error code = %q (%v)", code, err)
			}
			if p.Validate() == nil && pcmContainer(in[4:]) == "" && errors.Is(err, ErrContainerInPCM) {
				t.Fatalf("ErrContainerInPCM without a container: %v", err)
			}
			return
		}
		if p.Validate() != nil {
			t.Fatalf("invalid declaration %+v accepted", p)
		}
		frame := int64(SampleSize(p.Encoding) * p.Channels)
		if int64(len(in)-4)%frame != 0 || info.Duration != framesDuration(int64(len(in)-4)/frame, int64(p.SampleRate)) {
			t.Fatalf("Info %+v for %d bytes of %+v", info, len(in)-4, p)
		}
	})
}

// benchProbe probes in b.N times, reporting MB/s.
func benchProbe(b *testing.B, in []byte, opts Options) {
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	r := bytes.NewReader(in)
	for b.Loop() {
		r.Reset(in)
		info, err := Probe(r, opts)
		if err != nil || !info.HasSamples {
			b.Fatalf("Probe = %+v, %v", info, err)
		}
	}
}

// le16, le32 and le64 encode little-endian integers.
func le16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// joinBytes concatenates byte slices and strings.
func joinBytes(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case []byte:
			b = append(b, p...)
		case string:
			b = append(b, p...)
		default:
			panic("joinBytes: not bytes")
		}
	}
	return b
}

// withInfo returns i changed by f.
func withInfo(i Info, f func(*Info)) Info { f(&i); return i }
