package audio

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// TestVorbisModes reads the modes of the setup header oggenc wrote for
// the fixture: two, short then long.
func TestVorbisModes(t *testing.T) {
	pages := oggSplit(t, formatFixture(t, "ogg_vorbis.ogg"))
	// The setup header is the third packet; collect the header pages'
	// bodies until the first audio page (granule > 0) and take what
	// follows the comment header.
	var setup []byte
	for _, p := range pages {
		if binary.LittleEndian.Uint64(p[6:14]) != 0 {
			break
		}
		body := p[27+int(p[26]):]
		if i := bytes.Index(body, []byte("\x05vorbis")); i >= 0 {
			setup = append(setup, body[i:]...)
		} else if setup != nil {
			setup = append(setup, body...)
		}
	}
	long, ok := vorbisModes(setup)
	if !ok || len(long) != 2 || long[0] || !long[1] {
		t.Errorf("modes %v, %v; want [short long]", long, ok)
	}
	for _, bad := range [][]byte{nil, []byte("\x05vorbis"), []byte("\x05vorbis\x00\x00\x00"), bytes.Repeat([]byte{0xFF}, 200),
		append([]byte("\x05vorbis"), make([]byte, 200)...)} {
		if m, ok := vorbisModes(bad); ok {
			t.Errorf("vorbisModes(%q…) = %v, want none", bad[:min(len(bad), 12)], m)
		}
	}
}

// TestVorbisForgedGranule: with its packets counted exactly, an Ogg Vorbis
// file whose last page's granule is forged (CRC recomputed) is measured
// as the audio its packets hold: 10 hours buys nothing, and 2,000
// samples (the bounds alone allowed that: a short block for every
// packet) trims at most the last packet, as a decoder would.
func TestVorbisForgedGranule(t *testing.T) {
	fixture := formatFixture(t, "ogg_vorbis.ogg")
	honest, err := Probe(bytes.NewReader(fixture), Options{})
	if err != nil {
		t.Fatal(err)
	}
	forge := func(granule int64) time.Duration {
		pages := oggSplit(t, fixture)
		last := bytes.Clone(pages[len(pages)-1])
		binary.LittleEndian.PutUint64(last[6:14], uint64(granule))
		binary.LittleEndian.PutUint32(last[22:26], 0)
		crc := oggCRC(0, last)
		binary.LittleEndian.PutUint32(last[22:26], crc)
		pages[len(pages)-1] = last
		got, err := Probe(bytes.NewReader(bytes.Join(pages, nil)), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return got.Duration
	}
	long := 2048 * time.Second / 16000 // one long block
	if d := forge(16000 * 36000); d > honest.Duration+long {
		t.Errorf("granule forged to 10 h: %v; the file holds %v", d, honest.Duration)
	}
	low := forge(2000)
	if low < honest.Duration-long || low > honest.Duration {
		t.Errorf("granule forged to 2,000 samples: %v; the file holds %v", low, honest.Duration)
	}
	t.Logf("honest %v; last granule forged to 10 h: %v, to 2,000 samples: %v", honest.Duration, forge(16000*36000), low)
}

func FuzzVorbisModes(f *testing.F) {
	f.Add([]byte("\x05vorbis"))
	f.Add(append([]byte("\x05vorbis"), bytes.Repeat([]byte{0, 0, 0, 0, 0x80}, 40)...))
	f.Fuzz(func(t *testing.T, setup []byte) {
		long, ok := vorbisModes(setup)
		if ok != (len(long) > 0) || len(long) > 63 {
			t.Fatalf("vorbisModes = %d modes, %v", len(long), ok)
		}
		if ok {
			c := newVorbisClock(256, 2048, setup)
			for b := 0; b < 256; b++ {
				if n := c.samples(byte(b) &^ 1); n < 0 || n > 1024 {
					t.Fatalf("packet %#x: %d samples", b, n)
				}
			}
		}
	})
}
