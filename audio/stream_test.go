package audio

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// sinePCM is n s16le samples of a tone at amplitude a (0..1).
func sinePCM(n int, a float64) []byte {
	b := make([]byte, 2*n)
	for i := range n {
		v := int16(a * 32767 * math.Sin(2*math.Pi*440*float64(i)/16000))
		binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
	}
	return b
}

type headCase struct {
	name string
	data []byte
	want string
}

func headCases(t testing.TB) []headCase {
	// A lone MPEG header (0xFF 0xFB 0x90 0x64: MPEG-1 layer III, 128
	// kbit/s) followed by PCM: refused only when the next frame confirms.
	lone := append([]byte{0xFF, 0xFB, 0x90, 0x64}, sinePCM(400, 0.3)...)
	rng := rand.New(rand.NewPCG(1, 2))
	noise := make([]byte, 4096)
	for i := range noise {
		noise[i] = byte(rng.UintN(256))
	}
	noise[0] = 0x00 // not a frame sync
	return []headCase{
		{"wav", readTestdata(t, "wav_s16le.wav"), "a WAV header"},
		{"rf64", readTestdata(t, "wav_rf64.wav"), "a WAV header"},
		{"riff", []byte("RIFF\x00\x00\x00\x00AVI LIST"), "a RIFF header"},
		{"ogg", readTestdata(t, "ogg_opus.opus"), "an Ogg page"},
		{"flac", readTestdata(t, "flac_s16.flac"), "a FLAC stream marker"},
		{"webm", readTestdata(t, "webm_opus.webm"), "a WebM/Matroska header"},
		{"mp4", readTestdata(t, "mp4_aac.m4a"), "an MP4 header"},
		{"id3", readTestdata(t, "mp3_id3.mp3"), "an ID3 tag (MP3)"},
		{"mp3 frame sync", readTestdata(t, "mp3_cbr.mp3"), "an MPEG audio frame"},
		{"mp3 vbr", readTestdata(t, "mp3_vbr_xing.mp3"), "an MPEG audio frame"},
		{"adts", readTestdata(t, "aac_adts.aac"), "an AAC (ADTS) frame"},
		{"sine", sinePCM(16000, 0.3), ""},
		{"silence", make([]byte, 640), ""},
		{"noise", noise, ""},
		{"lone mpeg header", lone, ""},
		{"mulaw silence", []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF}, ""},
		{"short", []byte{1, 2}, ""},
		{"empty", nil, ""},
	}
}

// feed gives data to a Head in pieces of n bytes (all at once when n is
// 0) and returns its verdict once decided, or at the end.
func feed(data []byte, n int) (string, bool) {
	var h Head
	if n <= 0 {
		n = len(data) + 1
	}
	for len(data) > 0 {
		k := min(n, len(data))
		if name, decided := h.Add(data[:k]); decided {
			return name, true
		}
		data = data[k:]
	}
	return "", false
}

func TestHead(t *testing.T) {
	for _, tt := range headCases(t) {
		for _, piece := range []int{0, 1, 3, 7, 320, 640, 4096} {
			got, decided := feed(tt.data, piece)
			if got != tt.want {
				t.Errorf("%s in pieces of %d: %q, want %q", tt.name, piece, got, tt.want)
			}
			if tt.want != "" && !decided {
				t.Errorf("%s in pieces of %d: not decided", tt.name, piece)
			}
		}
	}
	// Decided PCM costs nothing after: the head is dropped.
	var h Head
	if name, decided := h.Add(sinePCM(320, 0.3)); name != "" || !decided || h.buf != nil {
		t.Errorf("sine: %q %v, buf %d bytes", name, decided, len(h.buf))
	}
	if name, decided := h.Add([]byte("RIFF....WAVEfmt ")); name != "" || !decided {
		t.Errorf("a WAV header after the start: %q %v", name, decided)
	}
	// An undecided head stops growing at its cap and then decides.
	var u Head
	u.Add([]byte{0xFF, 0xFB, 0x90, 0x64})
	for i := 0; i < 20; i++ {
		if _, decided := u.Add(make([]byte, 1000)); decided {
			break
		}
	}
	if !u.decided || len(u.buf) > streamHeadMax {
		t.Errorf("head not decided after 20 KB (buf %d bytes)", len(u.buf))
	}
}

func TestFirstNonFinite(t *testing.T) {
	tests := []struct {
		p    []byte
		want int
	}{
		{pcmFloats(10, 0.5, -1, 0), -1},
		{pcmFloats(10, 0.5, 3, float32(math.NaN())), 3},
		{pcmFloats(10, 0.5, 0, float32(math.Inf(1))), 0},
		{pcmFloats(10, 0.5, 9, float32(math.Inf(-1))), 9},
		{pcmFloats(10, math.MaxFloat32, -1, 0), -1},
		{append(pcmFloats(2, 0, -1, 0), 0xFF, 0xFF, 0x7F), -1}, // partial sample ignored
		{nil, -1},
	}
	for i, tt := range tests {
		if got := FirstNonFinite(tt.p); got != tt.want {
			t.Errorf("case %d: FirstNonFinite = %d, want %d", i, got, tt.want)
		}
	}
}

// FuzzHead: no panic, bounded memory, and the verdict does not depend on
// how the stream is cut into pieces.
func FuzzHead(f *testing.F) {
	for _, tt := range headCases(f) {
		d := tt.data
		if len(d) > 16<<10 {
			d = d[:16<<10]
		}
		f.Add(d, uint16(7))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		whole, _ := feed(data, 0)
		pieces, _ := feed(data, int(cut%600)+1)
		if whole != pieces {
			t.Fatalf("whole %q, in pieces of %d %q", whole, cut%600+1, pieces)
		}
		var h Head
		h.Add(data)
		if len(h.buf) > streamHeadMax {
			t.Fatalf("head holds %d bytes", len(h.buf))
		}
	})
}
