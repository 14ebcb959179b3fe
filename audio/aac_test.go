package audio

import (
	"bytes"
	"testing"

	"github.com/tollgate/tollgate"
)

// adtsHdr returns an MPEG-4 AAC LC ADTS header without CRC for sampling
// frequency index sf, channel configuration ch and rdb+1 raw data blocks;
// adtsStream sets its frame length.
func adtsHdr(sf, ch, rdb byte) [7]byte {
	return [7]byte{0xFF, 0xF1, 1<<6 | sf<<2 | ch>>2, ch << 6, 0, 0x1F, 0xFC | rdb}
}

// adtsStream returns n frames of length bytes with header h.
func adtsStream(h [7]byte, n, length int) []byte {
	f := make([]byte, length)
	copy(f, h[:])
	f[3] = f[3]&^3 | byte(length>>11)&3
	f[4] = byte(length >> 3)
	f[5] = byte(length)<<5 | f[5]&0x1F
	return bytes.Repeat(f, n)
}

// aacCases is TestProbeAAC's table; FuzzProbeAAC is seeded from it.
func aacCases(t testing.TB) []formatCase {
	frame16k := framesDuration(1024, 16000)
	mono16 := func(frames int64) Info {
		return Info{Format: AAC, Codec: "aac", SampleRate: 16000, Channels: 1, HasSamples: true, Duration: framesDuration(frames*1024, 16000)}
	}
	lc := adtsHdr(8, 1, 0) // 16 kHz mono
	stream := adtsStream(lc, 50, 100)
	crc := lc
	crc[1] &^= 1 // protection_absent 0: a CRC follows the header
	return []formatCase{
		// ffmpeg's 1 s tone: 17 frames, the first one encoder priming
		{name: "ffmpeg ADTS", in: formatFixture(t, "aac_adts.aac"), want: mono16(17), tol: frame16k},

		{name: "frames", in: stream, want: mono16(50)},
		{name: "two raw data blocks per frame", in: adtsStream(adtsHdr(8, 1, 1), 10, 200), want: mono16(20)},
		{name: "CRC", in: adtsStream(crc, 10, 100), want: mono16(10)},
		{name: "garbage between frames", in: cat(stream[:2000], bytes.Repeat([]byte{0xFF, 0x00, 0x12}, 300), stream[2000:]), want: mono16(50)},
		{name: "cut in the last frame", in: stream[:len(stream)-10], want: mono16(49)},
		{name: "ID3v1 and APE at the end", in: cat(stream, func() []byte {
			a := make([]byte, 32)
			copy(a, "APETAGEX")
			return a
		}(), id3v1()), want: mono16(50)},
		{name: "another sampling rate mid-stream is garbage", in: cat(stream, adtsStream(adtsHdr(3, 1, 0), 10, 100)), want: mono16(50)},
		{name: "8 channels", in: adtsStream(adtsHdr(3, 7, 0), 10, 300),
			want: Info{Format: AAC, Codec: "aac", SampleRate: 48000, Channels: 8, HasSamples: true, Duration: framesDuration(10*1024, 48000)}},
		{name: "one frame cut short", in: stream[:50], want: Info{Format: AAC, Codec: "aac", SampleRate: 16000, Channels: 1}},
		{name: "garbage after the sync", in: cat(lc[:], bytes.Repeat([]byte("x"), 5000)), code: tollgate.CodeUnsupportedAudioFormat},
		{name: "reserved sampling frequency", in: adtsStream(adtsHdr(13, 1, 0), 10, 100), code: tollgate.CodeUnsupportedAudioFormat},
	}
}

func TestProbeAAC(t *testing.T) { testFormatCases(t, aacCases(t)) }

func TestParseASC(t *testing.T) {
	for _, c := range []struct {
		in       []byte
		rate, ch int
	}{
		{[]byte{0x14, 0x08}, 16000, 1},                  // AAC LC, 16 kHz, mono
		{[]byte{0x12, 0x10}, 44100, 2},                  // AAC LC, 44.1 kHz, stereo
		{[]byte{0x17, 0x80, 0x0F, 0xA0, 0x10}, 8000, 2}, // explicit 24-bit rate
	} {
		rate, ch, ok := parseASC(c.in)
		if !ok || rate != c.rate || ch != c.ch {
			t.Errorf("parseASC(% x) = %d, %d, %v; want %d, %d", c.in, rate, ch, ok, c.rate, c.ch)
		}
	}
}

func FuzzProbeAAC(f *testing.F) {
	for _, c := range aacCases(f) {
		f.Add(c.in)
	}
	for _, b := range formatFixtures(f, "aac_") {
		f.Add(b)
	}
	f.Add(adtsStream(adtsHdr(8, 1, 0), 5, 100))
	f.Add(adtsStream(adtsHdr(3, 7, 3), 3, 300))
	f.Add(cat(adtsStream(adtsHdr(8, 1, 0), 2, 100), []byte("garbage"), id3v1()))
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzFormat(t, in)
	})
}

func BenchmarkProbeAAC(b *testing.B) {
	one := formatFixture(b, "aac_adts.aac")
	benchmarkProbe(b, bytes.Repeat(one, (4<<20)/len(one)))
}
