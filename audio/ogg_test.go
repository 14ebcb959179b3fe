package audio

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// Page header flags.
const (
	oggContinued = 0x01
	oggBOS       = 0x02
	oggEOS       = 0x04
)

// oggRawPage builds a page from its lacing values and body, with a valid
// CRC.
func oggRawPage(flags byte, granule int64, serial, seq uint32, lacing, body []byte) []byte {
	p := joinBytes("OggS", []byte{0, flags}, le64(uint64(granule)), le32(serial), le32(seq), le32(0),
		[]byte{byte(len(lacing))}, lacing, body)
	crc := oggCRC(0, p)
	binary.LittleEndian.PutUint32(p[22:], crc)
	return p
}

// oggPageOf builds a page holding whole packets.
func oggPageOf(flags byte, granule int64, serial, seq uint32, packets ...[]byte) []byte {
	var lacing, body []byte
	for _, p := range packets {
		n := len(p)
		for ; n >= 255; n -= 255 {
			lacing = append(lacing, 255)
		}
		lacing = append(lacing, byte(n))
		body = append(body, p...)
	}
	return oggRawPage(flags, granule, serial, seq, lacing, body)
}

// oggOpusHead is an OpusHead packet.
func oggOpusHead(channels byte, preSkip uint16) []byte {
	return joinBytes("OpusHead", []byte{1, channels}, le16(preSkip), le32(16000), le16(0), []byte{0})
}

// oggOpusPacket is a 20 ms Opus packet (CELT fullband, one frame).
func oggOpusPacket(size int) []byte {
	p := bytes.Repeat([]byte{0x5A}, size)
	p[0] = 31<<3 | 0
	return p
}

// oggStreamSpec describes a synthetic stream: its header packets, then
// audio packets of samples each, perPage to a page, the granule of each
// page being start + the samples so far (or granules[i] when given).
type oggStreamSpec struct {
	serial   uint32
	headers  [][]byte
	packet   func(i int) []byte
	samples  int64 // per audio packet
	packets  int
	perPage  int
	start    int64
	granules map[int]int64 // page index (among audio pages) → granule
}

// pages builds the stream's pages.
func (s oggStreamSpec) pages() [][]byte {
	var out [][]byte
	seq := uint32(0)
	for i, h := range s.headers {
		flags := byte(0)
		if i == 0 {
			flags = oggBOS
		}
		out = append(out, oggPageOf(flags, 0, s.serial, seq, h))
		seq++
	}
	granule := s.start
	for i, page := 0, 0; i < s.packets; page++ {
		var pkts [][]byte
		for ; i < s.packets && len(pkts) < s.perPage; i++ {
			pkts = append(pkts, s.packet(i))
			granule += s.samples
		}
		flags := byte(0)
		if i == s.packets {
			flags = oggEOS
		}
		g := granule
		if v, ok := s.granules[page]; ok {
			g = v
		}
		out = append(out, oggPageOf(flags, g, s.serial, seq, pkts...))
		seq++
	}
	return out
}

func (s oggStreamSpec) bytes() []byte { return bytes.Join(s.pages(), nil) }

// opusSpec is 1 s of mono Opus (50 packets of 20 ms, pre-skip 312 and
// the last page's granule trimming the end to exactly 1 s).
func opusSpec() oggStreamSpec {
	return oggStreamSpec{
		serial:   0x1234,
		headers:  [][]byte{oggOpusHead(1, 312), []byte("OpusTags\x00\x00\x00\x00\x00\x00\x00\x00")},
		packet:   func(int) []byte { return oggOpusPacket(40) },
		samples:  960,
		packets:  51,
		perPage:  10,
		granules: map[int]int64{5: 48000 + 312},
	}
}

// vorbisSpec is 1 s of 16 kHz mono Vorbis (block sizes 256 and 2048): 17
// packets, the first priming the decoder, the last page's granule
// trimming the end.
func vorbisSpec() oggStreamSpec {
	id := joinBytes("\x01vorbis", le32(0), []byte{1}, le32(16000), le32(0), le32(48000), le32(0), []byte{0xB8, 1})
	return oggStreamSpec{
		serial:   0x5678,
		headers:  [][]byte{id, []byte("\x03vorbis comment"), []byte("\x05vorbis setup")},
		packet:   func(int) []byte { return []byte{0x00, 0x42, 0x42} },
		samples:  1000,
		packets:  17,
		perPage:  4,
		granules: map[int]int64{4: 16000},
	}
}

// flacOggSpec is 1 s of 16 kHz mono FLAC in Ogg (4 frames of 4000).
func flacOggSpec() oggStreamSpec {
	head := joinBytes("\x7fFLAC\x01\x00", []byte{0, 1}, flacHead(16000, 1, 16, 16000, false))
	return oggStreamSpec{
		serial:  0x9ABC,
		headers: [][]byte{head, flacMeta(4, true, []byte("comment"))},
		packet: func(i int) []byte {
			return joinBytes(flacFrameHeader(false, int64(i), 4000, 1), bytes.Repeat([]byte{7}, 100))
		},
		samples: 4000,
		packets: 4,
		perPage: 1,
	}
}

// opusDur is the duration of n 48 kHz samples.
func opusDur(n int64) time.Duration { return framesDuration(n, 48000) }

func oggCases(t testing.TB) []probeCase {
	bad := tollgate.CodeUnsupportedAudioFormat
	opus := Info{Format: Ogg, Codec: "opus", SampleRate: 48000, Channels: 1, HasSamples: true, Duration: time.Second}
	noSamples := withInfo(opus, func(i *Info) { i.HasSamples, i.Duration = false, 0 })
	vorbis := Info{Format: Ogg, Codec: "vorbis", SampleRate: 16000, Channels: 1, HasSamples: true, Duration: time.Second}
	flac := withInfo(vorbis, func(i *Info) { i.Codec = "flac" })

	pages := opusSpec().pages() // 2 header pages, 6 audio pages
	forged := func(granule int64) []byte {
		s := opusSpec()
		s.granules = map[int]int64{5: granule}
		return s.bytes()
	}
	// a trailing copy of the last page claiming 10 h, its CRC not updated
	badCRC := bytes.Clone(pages[7])
	binary.LittleEndian.PutUint64(badCRC[6:], 48000*36000)
	lostPage := bytes.Clone(pages[4])
	lostPage[40] ^= 0xFF
	midStream := opusSpec()
	midStream.start = 48000 * 3600
	midStream.granules = map[int]int64{5: 48000*3600 + 48000 + 312}
	preSkip := opusSpec()
	preSkip.headers[0] = oggOpusHead(1, 60000)
	skeleton := oggPageOf(oggBOS, 0, 1, 0, []byte("fishead\x00 skeleton"))
	// Opus then Vorbis, their pages interleaved
	vp := vorbisSpec().pages()
	var mux [][]byte
	mux = append(mux, pages[0], vp[0], pages[1], vp[1], vp[2])
	for i := 2; i < len(pages) || i+1 < len(vp); i++ {
		if i < len(pages) {
			mux = append(mux, pages[i])
		}
		if i+1 < len(vp) {
			mux = append(mux, vp[i+1])
		}
	}
	// a 600-byte packet spanning two pages: 255 + 255 + 90
	big := oggOpusPacket(600)
	spanning := joinBytes(pages[0], pages[1],
		oggRawPage(0, -1, 0x1234, 2, []byte{255, 255}, big[:510]),
		oggRawPage(oggContinued, 2*960, 0x1234, 3, []byte{90, 40}, joinBytes(big[510:], oggOpusPacket(40))),
		oggPageOf(oggEOS, 3*960, 0x1234, 4, oggOpusPacket(40)))
	speex := oggPageOf(oggBOS, 0, 7, 0, joinBytes("Speex   1.2", make([]byte, 70)))

	return []probeCase{
		{name: "opus", in: bytes.Join(pages, nil), want: opus},
		{name: "opus header pages only", in: joinBytes(pages[0], pages[1]), want: noSamples},
		{name: "opus truncated mid-page", in: bytes.Join(pages, nil)[:len(bytes.Join(pages[:7], nil))+30],
			want: withInfo(opus, func(i *Info) { i.Duration = opusDur(50*960 - 312) })},
		{name: "trailing page with a bad CRC claims 10 h", in: joinBytes(bytes.Join(pages, nil), badCRC), want: opus},
		{name: "forged granule of 10 h on a valid page", in: forged(48000 * 36000),
			want: withInfo(opus, func(i *Info) { i.Duration = opusDur(51*960 - 312) })},
		{name: "forged granule of 0 on a valid page", in: forged(0),
			want: withInfo(opus, func(i *Info) { i.Duration = opusDur(50*960 - 312) })},
		{name: "a damaged page in the middle", in: joinBytes(bytes.Join(pages[:4], nil), lostPage, bytes.Join(pages[5:], nil)),
			want: withInfo(opus, func(i *Info) { i.Duration = opusDur(41*960 - 312) })},
		{name: "stream cut from a live one", in: midStream.bytes(), want: opus},
		{name: "pre-skip beyond the audio", in: preSkip.bytes(), want: noSamples},
		{name: "skeleton stream first", in: joinBytes(skeleton, bytes.Join(pages, nil)), want: opus},
		{name: "interleaved streams: the first is measured", in: bytes.Join(mux, nil), want: opus},
		{name: "garbage between pages", in: joinBytes(bytes.Join(pages[:4], nil), "garbage OggS garbage", bytes.Join(pages[4:], nil)), want: opus},
		{name: "packet spanning pages", in: spanning, want: withInfo(opus, func(i *Info) { i.Duration = opusDur(3*960 - 312) })},
		{name: "vorbis", in: vorbisSpec().bytes(), want: vorbis},
		{name: "vorbis forged granule of 10 h", in: func() []byte {
			s := vorbisSpec()
			s.granules = map[int]int64{4: 16000 * 36000}
			return s.bytes()
		}(), want: withInfo(vorbis, func(i *Info) { i.Duration = framesDuration(16*1024, 16000) })},
		{name: "flac in ogg", in: flacOggSpec().bytes(), want: flac},
		{name: "unknown codec", in: joinBytes(speex, oggPageOf(oggEOS, 100, 7, 1, []byte("x"))), code: bad, msg: "no Opus, Vorbis or FLAC"},
		{name: "opus head of an unknown version", in: joinBytes(oggPageOf(oggBOS, 0, 1, 0, joinBytes("OpusHead", []byte{0x10, 1}, make([]byte, 9)))),
			code: bad, msg: "no Opus"},
		{name: "no valid page", in: joinBytes("OggS", wavSamples(100)), code: bad, msg: "no valid page"},
		{name: "no stream header", in: bytes.Join(pages[2:], nil), code: bad, msg: "no stream header"},
	}
}

func TestProbeOgg(t *testing.T) { runProbeCases(t, oggCases(t)) }

// oggSplit splits a file made of whole pages.
func oggSplit(t *testing.T, b []byte) [][]byte {
	var pages [][]byte
	for len(b) > 0 {
		if len(b) < 27 || string(b[:4]) != "OggS" {
			t.Fatalf("not a page")
		}
		n := 27 + int(b[26])
		for _, l := range b[27:n] {
			n += int(l)
		}
		pages = append(pages, b[:n])
		b = b[n:]
	}
	return pages
}

// TestProbeOggFixtureCuts probes a real Opus file cut after each page: the
// duration follows the granule of the last page present, and header pages
// alone hold no samples.
func TestProbeOggFixtureCuts(t *testing.T) {
	in := readTestdata(t, "ogg_opus.opus")
	pages := oggSplit(t, in)
	head := pages[0][27+int(pages[0][26]):]
	preSkip := int64(binary.LittleEndian.Uint16(head[10:12]))
	n := 0
	granule := int64(0)
	for i, p := range pages {
		n += len(p)
		info, err := Probe(bytes.NewReader(in[:n]), Options{})
		if err != nil {
			t.Fatalf("%d pages: %v", i+1, err)
		}
		if g := int64(binary.LittleEndian.Uint64(p[6:14])); g != -1 {
			granule = g
		}
		want := opusDur(max(granule-preSkip, 0))
		if info.Duration != want || info.HasSamples != (want > 0) {
			t.Errorf("%d pages: %+v, want Duration %v", i+1, info, want)
		}
	}
}

// TestProbeOggForgedTrailingPage appends a copy of a real file's last page
// claiming 10 h. With its CRC left alone the page is ignored; with its CRC
// fixed its packets count, but the duration can grow by that page's
// audio only.
func TestProbeOggForgedTrailingPage(t *testing.T) {
	in := readTestdata(t, "ogg_opus.opus")
	pages := oggSplit(t, in)
	last := bytes.Clone(pages[len(pages)-1])
	binary.LittleEndian.PutUint64(last[6:], 48000*36000)
	info, err := Probe(bytes.NewReader(joinBytes(in, last)), Options{})
	if err != nil || info.Duration != time.Second {
		t.Errorf("bad CRC: %+v, %v; want 1s", info, err)
	}
	binary.LittleEndian.PutUint32(last[22:], 0)
	binary.LittleEndian.PutUint32(last[22:], oggCRC(0, last))
	info, err = Probe(bytes.NewReader(joinBytes(in, last)), Options{})
	if err != nil || info.Duration <= time.Second || info.Duration > 2*time.Second {
		t.Errorf("valid CRC: %+v, %v; want (1s, 2s]", info, err)
	}
}

func TestOggCRC(t *testing.T) {
	// every page of a real file checks out
	in := readTestdata(t, "ogg_vorbis.ogg")
	for i, p := range oggSplit(t, in) {
		c := bytes.Clone(p)
		want := binary.LittleEndian.Uint32(c[22:])
		binary.LittleEndian.PutUint32(c[22:], 0)
		if got := oggCRC(0, c); got != want {
			t.Errorf("page %d: CRC %08x, want %08x", i, got, want)
		}
	}
}

func TestOpusTOCSamples(t *testing.T) {
	for _, c := range []struct {
		p    []byte
		want int
	}{
		{nil, 0},
		{[]byte{0 << 3}, 480},        // SILK 10 ms
		{[]byte{3<<3 | 1}, 2 * 2880}, // SILK 60 ms, two frames
		{[]byte{13 << 3}, 960},       // hybrid 20 ms
		{[]byte{16 << 3}, 120},       // CELT 2.5 ms
		{[]byte{31<<3 | 3, 6}, 5760}, // CELT 20 ms × 6 = 120 ms
		{[]byte{31<<3 | 3, 7}, 0},    // over 120 ms
		{[]byte{31<<3 | 3}, 0},       // frame count missing
	} {
		if got := opusTOCSamples(c.p); got != c.want {
			t.Errorf("opusTOCSamples(%x) = %d, want %d", c.p, got, c.want)
		}
	}
}

func BenchmarkProbeOgg(b *testing.B) {
	s := opusSpec()
	s.packet = func(int) []byte { return oggOpusPacket(200) }
	s.packets, s.perPage, s.granules = 50000, 50, nil
	benchProbe(b, s.bytes(), Options{})
}

// TestProbeOggBadPagesBounded probes 4 MB of fake page headers, each
// claiming a 64 KiB page whose CRC fails: the work spent on them is
// capped, and the file refused as damaged.
func TestProbeOggBadPagesBounded(t *testing.T) {
	fake := joinBytes("OggS", make([]byte, 22), []byte{255}, bytes.Repeat([]byte{255}, 255))
	in := bytes.Repeat(fake, (4<<20)/len(fake))
	start := time.Now()
	_, err := Probe(bytes.NewReader(in), Options{})
	if tollgate.ErrorCode(err) != tollgate.CodeUnsupportedAudioFormat || !strings.Contains(tollgate.ErrorMessage(err), "damaged") {
		t.Errorf("Probe error = %v, want a damaged file", err)
	}
	t.Logf("%d bytes in %v", len(in), time.Since(start))
}
