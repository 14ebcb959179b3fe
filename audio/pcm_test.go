package audio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// pcmFloats is n little-endian float32 samples of value v, with bad at
// index at (when at >= 0).
func pcmFloats(n int, v float32, at int, bad float32) []byte {
	b := make([]byte, 4*n)
	for i := range n {
		x := v
		if i == at {
			x = bad
		}
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func pcmCases(t testing.TB) []probeCase {
	decl := func(enc string, rate, channels int) *RawPCM {
		return &RawPCM{Encoding: enc, SampleRate: rate, Channels: channels}
	}
	s16 := decl("s16le", 16000, 1)
	info := func(codec string, rate, ch int, d time.Duration) Info {
		return Info{Format: PCM, Codec: codec, SampleRate: rate, Channels: ch, HasSamples: true, Duration: d}
	}
	sec := time.Second
	bad := tollgate.CodeUnsupportedAudioFormat
	wav := readTestdata(t, "wav_s16le.wav")
	ogg := readTestdata(t, "ogg_opus.opus")
	flac := readTestdata(t, "flac_s16.flac")
	return []probeCase{
		{name: "s16le", pcm: s16, in: wavSamples(32000), want: info("pcm_s16le", 16000, 1, sec)},
		{name: "s24le stereo", pcm: decl("s24le", 48000, 2), in: wavSamples(288000), want: info("pcm_s24le", 48000, 2, sec)},
		{name: "s32le", pcm: decl("s32le", 8000, 1), in: wavSamples(16000), want: info("pcm_s32le", 8000, 1, sec/2)},
		{name: "mulaw", pcm: decl("mulaw", 8000, 1), in: wavSamples(8000), want: info("pcm_mulaw", 8000, 1, sec)},
		{name: "alaw stereo", pcm: decl("alaw", 8000, 2), in: wavSamples(8000), want: info("pcm_alaw", 8000, 2, sec/2)},
		{name: "f32le", pcm: decl("f32le", 16000, 1), in: pcmFloats(16000, 0.5, -1, 0), want: info("pcm_f32le", 16000, 1, sec)},
		{name: "f32le with a large finite sample", pcm: decl("f32le", 16000, 1), in: pcmFloats(16000, 0.5, 3, math.MaxFloat32),
			want: info("pcm_f32le", 16000, 1, sec)},
		{name: "one sample", pcm: s16, in: []byte{1, 2}, want: info("pcm_s16le", 16000, 1, sec/16000)},
		{name: "starts like an MPEG frame sync", pcm: s16, in: joinBytes([]byte{0xFF, 0xF1, 0x50, 0x80}, wavSamples(31996)),
			want: info("pcm_s16le", 16000, 1, sec)},
		{name: "starts like ID3 but no version", pcm: s16, in: joinBytes("ID3\x00", wavSamples(31996)), want: info("pcm_s16le", 16000, 1, sec)},

		{name: "f32le NaN", pcm: decl("f32le", 16000, 1), in: pcmFloats(16000, 0.5, 12345, float32(math.NaN())), code: bad, msg: "sample 12345"},
		{name: "f32le infinity", pcm: decl("f32le", 16000, 1), in: pcmFloats(16000, 0.5, 0, float32(math.Inf(-1))), code: bad, msg: "NaN or infinite"},
		{name: "s16le odd bytes", pcm: s16, in: wavSamples(32001), code: bad, msg: "not a whole number of 2-byte frames"},
		{name: "s16le stereo, half a frame", pcm: decl("s16le", 16000, 2), in: wavSamples(32002), code: bad, msg: "4-byte frames"},
		{name: "WAV sent as raw PCM", pcm: s16, in: wav, code: bad, msg: "Declared raw s16le PCM but the data starts with a WAV header"},
		{name: "Ogg sent as raw PCM", pcm: s16, in: ogg, code: bad, msg: "an Ogg page"},
		{name: "FLAC sent as raw PCM", pcm: s16, in: flac, code: bad, msg: "FLAC"},
		{name: "ID3 sent as raw PCM", pcm: s16, in: joinBytes("ID3\x04\x00\x00", wavSamples(1000)), code: bad, msg: "ID3"},
		{name: "WebM sent as raw PCM", pcm: s16, in: joinBytes("\x1a\x45\xdf\xa3", wavSamples(1000)), code: bad, msg: "WebM"},
		{name: "MP4 sent as raw PCM", pcm: s16, in: joinBytes("\x00\x00\x00\x20ftypM4A ", wavSamples(1000)), code: bad, msg: "MP4"},
		{name: "AVI sent as raw PCM", pcm: s16, in: joinBytes("RIFF\x00\x10\x00\x00AVI ", wavSamples(1000)), code: bad, msg: "RIFF"},
		{name: "unknown encoding", pcm: decl("s8", 16000, 1), in: wavSamples(100), code: bad, msg: "declaration is invalid"},
		{name: "rate 0", pcm: decl("s16le", 0, 1), in: wavSamples(100), code: bad, msg: "sample rate 0"},
	}
}

func TestProbePCM(t *testing.T) { runProbeCases(t, pcmCases(t)) }

// TestProbePCMContainer checks that the refusal of a container declared
// raw PCM carries ErrContainerInPCM, and no other refusal does.
func TestProbePCMContainer(t *testing.T) {
	for _, c := range pcmCases(t) {
		if c.code == "" {
			continue
		}
		_, err := Probe(bytes.NewReader(c.in), Options{PCM: c.pcm})
		container := pcmContainer(c.in) != "" && c.pcm.Validate() == nil
		if errors.Is(err, ErrContainerInPCM) != container {
			t.Errorf("%s: errors.Is(%v, ErrContainerInPCM) = %v, want %v", c.name, err, !container, container)
		}
	}
}

func BenchmarkProbePCM(b *testing.B) {
	b.Run("s16le", func(b *testing.B) {
		benchProbe(b, wavSamples(10<<20), Options{PCM: &RawPCM{Encoding: "s16le", SampleRate: 16000, Channels: 1}})
	})
	b.Run("f32le", func(b *testing.B) {
		benchProbe(b, pcmFloats(10<<18, 0.25, -1, 0), Options{PCM: &RawPCM{Encoding: "f32le", SampleRate: 16000, Channels: 1}})
	})
}
