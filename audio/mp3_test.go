package audio

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// MPEG audio headers used by the crafted cases.
var (
	mp3L3  = [4]byte{0xFF, 0xFB, 0x90, 0xC4} // MPEG-1 layer III, 128 kbit/s, 44.1 kHz, mono: 417 bytes, 1152 samples
	mp3L2  = [4]byte{0xFF, 0xFD, 0x90, 0x04} // MPEG-1 layer II, 112 kbit/s, 44.1 kHz, stereo: 365 bytes, 1152 samples
	mp3L1  = [4]byte{0xFF, 0xFF, 0x90, 0x04} // MPEG-1 layer I, 256 kbit/s, 44.1 kHz, stereo: 276 bytes, 384 samples
	mp3V25 = [4]byte{0xFF, 0xE3, 0x48, 0xC4} // MPEG-2.5 layer III, 32 kbit/s, 8 kHz, mono: 288 bytes, 576 samples
	mp3Sec = 44100.0 / 1152                  // MPEG-1 frames per second at 44.1 kHz
	mp3Tol = 26122449 * time.Nanosecond      // one MPEG-1 layer III frame at 44.1 kHz
)

// mp3Dur is the duration of n MPEG-1 layer III frames at 44.1 kHz.
func mp3Dur(n int) time.Duration { return framesDuration(int64(n)*1152, 44100) }

// mp3Frame returns a frame with header h and a zero body.
func mp3Frame(h [4]byte) []byte {
	hd, ok := parseMP3Header(h[:])
	if !ok {
		panic("bad test header")
	}
	f := make([]byte, hd.length)
	copy(f, h[:])
	return f
}

// mp3Frames returns n frames with header h.
func mp3Stream(h [4]byte, n int) []byte {
	return bytes.Repeat(mp3Frame(h), n)
}

// mp3Xing returns an MPEG-1 mono layer III Xing frame claiming frames
// frames; with lame, a LAME tag with encoder delay and padding follows.
func mp3Xing(tag string, frames uint32, lame bool, delay, padding int) []byte {
	f := mp3Frame(mp3L3)
	o := 4 + 17
	copy(f[o:], tag)
	binary.BigEndian.PutUint32(f[o+4:], 1|2|4|8)
	binary.BigEndian.PutUint32(f[o+8:], frames)
	if lame {
		l := o + 120
		copy(f[l:], "LAME3.100")
		f[l+21] = byte(delay >> 4)
		f[l+22] = byte(delay<<4) | byte(padding>>8)
		f[l+23] = byte(padding)
	}
	return f
}

// id3v2 returns an ID3v2.4 tag with a body of n bytes.
func id3v2(n int) []byte {
	t := []byte{'I', 'D', '3', 4, 0, 0, byte(n >> 21 & 0x7F), byte(n >> 14 & 0x7F), byte(n >> 7 & 0x7F), byte(n & 0x7F)}
	body := make([]byte, n)
	copy(body, "TIT2\x00\x00\x00\x05\x00\x00\x03tone")
	return append(t, body...)
}

func id3v1() []byte {
	t := make([]byte, 128)
	copy(t, "TAGtone")
	return t
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// mp3Cases is TestProbeMP3's table; FuzzProbeMP3 is seeded from it.
func mp3Cases(t testing.TB) []formatCase {
	// A file holding 1 s of 44.1 kHz MPEG-1 layer III: 39 frames.
	oneSec := mp3Stream(mp3L3, 39)
	dur39 := mp3Dur(39)
	garbage := bytes.Repeat([]byte("garbage!"), 200)
	mono44 := Info{Format: MP3, Codec: "mp3", SampleRate: 44100, Channels: 1, HasSamples: true}
	with := func(i Info, d time.Duration) Info { i.Duration = d; return i }
	return []formatCase{
		// fixtures made by lame and ffmpeg (testdata/README.md)
		{name: "lame CBR", in: formatFixture(t, "mp3_cbr.mp3"), want: with(mono44, 1044898*time.Microsecond), tol: mp3Tol},
		{name: "lame VBR Xing+LAME", in: formatFixture(t, "mp3_vbr_xing.mp3"), want: with(mono44, time.Second), tol: mp3Tol},
		{name: "lame ID3v2+ID3v1", in: formatFixture(t, "mp3_id3.mp3"), want: with(mono44, time.Second), tol: mp3Tol},
		{name: "ffmpeg MPEG-2 22.05 kHz", in: formatFixture(t, "mp3_mpeg2.mp3"),
			want: Info{Format: MP3, Codec: "mp3", SampleRate: 22050, Channels: 2, HasSamples: true, Duration: time.Second}, tol: 26 * time.Millisecond},

		// crafted
		{name: "bare frames", in: oneSec, want: with(mono44, dur39)},
		{name: "Xing claims 10 s, 1 s present", in: cat(mp3Xing("Xing", 383, false, 0, 0), oneSec), want: with(mono44, dur39)},
		{name: "Xing claims 0.1 s, 1 s present", in: cat(mp3Xing("Xing", 4, false, 0, 0), oneSec), want: with(mono44, dur39)},
		{name: "Info with LAME delay and padding", in: cat(mp3Xing("Info", 39, true, 576, 1000), oneSec),
			want: with(mono44, framesDuration(39*1152-1576, 44100))},
		{name: "LAME tag, truncated: delay only", in: cat(mp3Xing("Info", 78, true, 576, 1000), oneSec),
			want: with(mono44, framesDuration(39*1152-576, 44100))},
		{name: "VBRI", in: cat(func() []byte {
			f := mp3Frame(mp3L3)
			copy(f[36:], "VBRI\x00\x01")
			binary.BigEndian.PutUint32(f[36+14:], 1000)
			return f
		}(), oneSec), want: with(mono44, dur39)},
		{name: "ID3v2 + frames + APE + ID3v1", in: cat(id3v2(300), oneSec, func() []byte {
			a := make([]byte, 32+40)
			copy(a, "APETAGEX")
			a[12] = 40
			a[23] = 0x20
			return a
		}(), id3v1()), want: with(mono44, dur39)},
		{name: "ID3v2 footer flag", in: cat([]byte("ID3\x04\x00\x10\x00\x00\x00\x04abcd3DI\x04\x00\x10\x00\x00\x00\x04"), oneSec), want: with(mono44, dur39)},
		{name: "two ID3v2 tags and zero padding", in: cat(id3v2(20), id3v2(30), make([]byte, 500), oneSec), want: with(mono44, dur39)},
		{name: "garbage between frames resyncs", in: cat(oneSec[:20*417], garbage, oneSec[20*417:]), want: with(mono44, dur39)},
		{name: "cut in a frame", in: oneSec[:len(oneSec)-100], want: with(mono44, mp3Dur(38))},
		{name: "a different sample rate mid-stream is garbage", in: cat(oneSec, mp3Stream(mp3V25, 10)), want: with(mono44, dur39)},
		{name: "layer II", in: mp3Stream(mp3L2, 10), want: Info{Format: MP3, Codec: "mp2", SampleRate: 44100, Channels: 2, HasSamples: true, Duration: mp3Dur(10)}},
		{name: "layer I", in: mp3Stream(mp3L1, 10), want: Info{Format: MP3, Codec: "mp1", SampleRate: 44100, Channels: 2, HasSamples: true, Duration: framesDuration(10*384, 44100)}},
		{name: "MPEG-2.5 8 kHz", in: mp3Stream(mp3V25, 100), want: Info{Format: MP3, Codec: "mp3", SampleRate: 8000, Channels: 1, HasSamples: true, Duration: framesDuration(100*576, 8000)}},
		{name: "one frame", in: mp3Frame(mp3L3), want: with(mono44, mp3Dur(1))},
		{name: "ID3 only", in: id3v2(1000), want: Info{Format: MP3}},
		{name: "ID3v2 and ID3v1 only", in: cat(id3v2(1000), id3v1()), want: Info{Format: MP3}},
		{name: "ID3 claims more than the file", in: id3v2(1000)[:200], want: Info{Format: MP3}},
		{name: "Xing frame only", in: mp3Xing("Xing", 1000, true, 576, 0), want: Info{Format: MP3, Codec: "mp3", SampleRate: 44100, Channels: 1}},
		{name: "one frame, cut short", in: mp3Frame(mp3L3)[:100], want: Info{Format: MP3, Codec: "mp3", SampleRate: 44100, Channels: 1}},
		{name: "ADTS behind ID3", in: cat(id3v2(50), adtsStream(adtsHdr(4, 1, 0), 20, 200)),
			want: Info{Format: AAC, Codec: "aac", SampleRate: 44100, Channels: 1, HasSamples: true, Duration: framesDuration(20*1024, 44100)}},
		{name: "garbage after ID3", in: cat(id3v2(10), garbage), code: tollgate.CodeUnsupportedAudioFormat},
		{name: "garbage after a frame header", in: cat(mp3L3[:], garbage), code: tollgate.CodeUnsupportedAudioFormat},
		{name: "malformed ID3 size", in: []byte("ID3\x04\x00\x00\xff\xff\xff\xff rest"), code: tollgate.CodeUnsupportedAudioFormat},
	}
}

func TestProbeMP3(t *testing.T) { testFormatCases(t, mp3Cases(t)) }

func TestProbeMP3LargeStreamSmallMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 100 MB")
	}
	const size = 100 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	info, err := Probe(&repeatReader{unit: mp3Frame(mp3L3), n: size}, Options{})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if info.Bytes != size {
		t.Errorf("Bytes = %d, want %d", info.Bytes, size)
	}
	frames := size / 417
	if want := time.Duration(float64(frames) / mp3Sec * float64(time.Second)); info.Duration < want-time.Second || info.Duration > want+time.Second {
		t.Errorf("Duration = %v, want ~%v", info.Duration, want)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("probing 100 MB allocated %d bytes, want < 1 MB", alloc)
	}
}

func FuzzProbeMP3(f *testing.F) {
	for _, c := range mp3Cases(f) {
		f.Add(c.in)
	}
	for _, b := range formatFixtures(f, "mp3_") {
		f.Add(b)
	}
	oneSec := mp3Stream(mp3L3, 5)
	f.Add(cat(mp3Xing("Xing", 383, true, 576, 1000), oneSec))
	f.Add(cat(id3v2(20), oneSec, id3v1()))
	f.Add(cat(mp3L3[:], []byte("garbage")))
	f.Add(mp3Stream(mp3V25, 3))
	f.Add(mp3Stream(mp3L1, 3))
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzFormat(t, in)
	})
}

func BenchmarkProbeMP3(b *testing.B) {
	// ~4 MB of real lame VBR frames: the fixture's frames, repeated
	one := formatFixture(b, "mp3_vbr_xing.mp3")
	benchmarkProbe(b, bytes.Repeat(one, (4<<20)/len(one)))
}
