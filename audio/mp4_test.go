package audio

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// MP4 builders for the crafted cases.

func u16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func box(typ string, parts ...[]byte) []byte {
	body := cat(parts...)
	return cat(u32(uint32(8+len(body))), []byte(typ), body)
}

func fullBox(typ string, version byte, parts ...[]byte) []byte {
	return box(typ, []byte{version, 0, 0, 0}, cat(parts...))
}

// mp4Spec describes a crafted single-track M4A.
type mp4Spec struct {
	handler   string   // "soun" unless set
	entry     []byte   // sample entry; an AAC mp4a at 16 kHz mono unless set
	sizes     []uint32 // per-sample sizes (stsz), all 100 bytes × 50 unless set
	constSize uint32   // when set, stsz gives this one size to count samples
	count     uint32
	delta     uint32 // stts delta, 1024 unless set
	claimed   uint32 // mdhd duration
	priming   int32  // elst media time when non-zero
	mdatCut   int    // bytes of the mdat payload to drop at the end
	moovLast  bool   // mdat before moov
	co64      bool
	largeMdat bool // mdat with a 64-bit size
}

func mp4aEntry(rate uint32, channels uint16) []byte {
	return box("mp4a", make([]byte, 6), u16(1), u16(0), u16(0), u32(0), u16(channels), u16(16), u16(0), u16(0), u32(rate<<16))
}

// mp4aASC is an mp4a entry with an esds whose AudioSpecificConfig says
// AAC-LC at ascRate (one of the ADTS rates), mono; the entry itself says
// entryRate.
func mp4aASC(entryRate, ascRate uint32) []byte {
	idx := 0
	for i, r := range adtsRates {
		if uint32(r) == ascRate {
			idx = i
		}
	}
	asc := u16(uint16(2<<11 | idx<<7 | 1<<3)) // AOT 2, rate index, 1 channel
	dsi := cat([]byte{0x05, byte(len(asc))}, asc)
	dcd := cat([]byte{0x04, byte(13 + len(dsi)), 0x40, 0x15}, make([]byte, 11), dsi)
	es := cat([]byte{0x03, byte(3 + len(dcd))}, u16(1), []byte{0}, dcd)
	return box("mp4a", make([]byte, 6), u16(1), u16(0), u16(0), u32(0), u16(1), u16(16), u16(0), u16(0), u32(entryRate<<16),
		fullBox("esds", 0, es))
}

func (s mp4Spec) build() []byte {
	if s.handler == "" {
		s.handler = "soun"
	}
	if s.entry == nil {
		s.entry = mp4aEntry(16000, 1)
	}
	if s.delta == 0 {
		s.delta = 1024
	}
	if s.sizes == nil && s.constSize == 0 {
		for i := 0; i < 50; i++ {
			s.sizes = append(s.sizes, 100)
		}
	}
	n, total := uint32(len(s.sizes)), 0
	var stsz []byte
	if s.constSize != 0 {
		n, total = s.count, int(s.count*s.constSize)
		stsz = fullBox("stsz", 0, u32(s.constSize), u32(n))
	} else {
		var sizes []byte
		for _, v := range s.sizes {
			sizes = append(sizes, u32(v)...)
			total += int(v)
		}
		stsz = fullBox("stsz", 0, u32(0), u32(n), sizes)
	}
	ftyp := box("ftyp", []byte("M4A "), u32(0), []byte("M4A isomiso2"))
	mdatHdr := 8
	if s.largeMdat {
		mdatHdr = 16
	}
	moov := func(off int) []byte {
		stco := fullBox("stco", 0, u32(1), u32(uint32(off)))
		if s.co64 {
			stco = fullBox("co64", 0, u32(1), u64(uint64(off)))
		}
		var edts []byte
		if s.priming != 0 {
			edts = box("edts", fullBox("elst", 0, u32(1), u32(0), u32(uint32(s.priming)), u32(1<<16)))
		}
		return box("moov",
			fullBox("mvhd", 0, make([]byte, 96)),
			box("trak",
				fullBox("tkhd", 0, u32(0), u32(0), u32(1), make([]byte, 72)),
				edts,
				box("mdia",
					fullBox("mdhd", 0, u32(0), u32(0), u32(16000), u32(s.claimed), u32(0)),
					fullBox("hdlr", 0, u32(0), []byte(s.handler), make([]byte, 13)),
					box("minf", box("stbl",
						fullBox("stsd", 0, u32(1), s.entry),
						fullBox("stts", 0, u32(1), u32(n), u32(s.delta)),
						fullBox("stsc", 0, u32(1), u32(1), u32(n), u32(1)),
						stsz, stco)))))
	}
	// The mdat's size is the sample table's total, its payload cut short
	// by mdatCut: a truncated upload. With moov last, the mdat's size is
	// what it holds: a sample table claiming more than there is.
	payload := make([]byte, total-s.mdatCut)
	size := total
	if s.moovLast {
		size = len(payload)
	}
	mdat := cat(u32(uint32(8+size)), []byte("mdat"), payload)
	if s.largeMdat {
		mdat = cat(u32(1), []byte("mdat"), u64(uint64(16+size)), payload)
	}
	if s.moovLast {
		return cat(ftyp, mdat, moov(len(ftyp)+mdatHdr))
	}
	off := len(ftyp) + len(moov(0)) + mdatHdr
	return cat(ftyp, moov(off), mdat)
}

// mp4Frag builds a fragmented MP4: an empty sample table, trex defaults
// of 1024 ticks and 100 bytes, and fragments of the given sample counts
// (per-sample sizes in trun) each followed by its mdat.
func mp4Frag(cutLast int, samples ...int) []byte {
	out := cat(box("ftyp", []byte("iso5"), u32(0), []byte("iso5")),
		box("moov",
			box("trak",
				fullBox("tkhd", 0, u32(0), u32(0), u32(1), make([]byte, 72)),
				box("mdia",
					fullBox("mdhd", 0, u32(0), u32(0), u32(16000), u32(0), u32(0)),
					fullBox("hdlr", 0, u32(0), []byte("soun"), make([]byte, 13)),
					box("minf", box("stbl",
						fullBox("stsd", 0, u32(1), mp4aEntry(16000, 1)),
						fullBox("stts", 0, u32(0)), fullBox("stsc", 0, u32(0)),
						fullBox("stsz", 0, u32(0), u32(0)), fullBox("stco", 0, u32(0)))))),
			box("mvex", fullBox("trex", 0, u32(1), u32(1), u32(1024), u32(100), u32(0)))))
	for i, n := range samples {
		var sizes []byte
		for j := 0; j < n; j++ {
			sizes = append(sizes, u32(100)...)
		}
		trun := box("trun", []byte{0, 0, 0x02, 0x01}, u32(uint32(n)), u32(0), sizes) // data offset, sizes
		mdat := box("mdat", make([]byte, n*100))
		if i == len(samples)-1 {
			mdat = mdat[:len(mdat)-cutLast]
		}
		out = cat(out, box("moof", fullBox("mfhd", 0, u32(uint32(i+1))), box("traf", fullBox("tfhd", 0, u32(1)), trun)), mdat)
	}
	return out
}

// mp4Cases is TestProbeMP4's table; FuzzProbeMP4 is seeded from it.
func mp4Cases(t testing.TB) []formatCase {
	aac := func(samples int64) Info {
		return Info{Format: MP4, Codec: "aac", SampleRate: 16000, Channels: 1, HasSamples: samples > 0, Duration: framesDuration(samples, 16000)}
	}
	frame := framesDuration(1024, 16000)
	faststart := formatFixture(t, "mp4_aac_faststart.m4a")
	forged := bytes.Clone(formatFixture(t, "mp4_aac.m4a"))
	if i := bytes.Index(forged, []byte("mdhd")); i < 0 {
		t.Fatal("no mdhd in the fixture")
	} else {
		binary.BigEndian.PutUint32(forged[i+4+4+8+4:], 16000*3600) // duration: an hour
	}
	// A sample table or timescale a decoder never reads must not change
	// the charge: the AAC frames are what is there.
	shortStts := bytes.Clone(formatFixture(t, "mp4_aac.m4a"))
	if i := bytes.Index(shortStts, []byte("stts")); i < 0 {
		t.Fatal("no stts in the fixture")
	} else {
		for n, e := 0, i+12; n < int(binary.BigEndian.Uint32(shortStts[i+8:])); n, e = n+1, e+8 {
			binary.BigEndian.PutUint32(shortStts[e+4:], binary.BigEndian.Uint32(shortStts[e+4:])/16)
		}
	}
	fastClock := bytes.Clone(formatFixture(t, "mp4_aac.m4a"))
	if i := bytes.Index(fastClock, []byte("mdhd")); i < 0 {
		t.Fatal("no mdhd in the fixture")
	} else {
		binary.BigEndian.PutUint32(fastClock[i+16:], 16000*16) // timescale
	}
	fragFastClock := bytes.Clone(formatFixture(t, "mp4_aac_frag.mp4"))
	if i := bytes.Index(fragFastClock, []byte("mdhd")); i < 0 {
		t.Fatal("no mdhd in the fragmented fixture")
	} else {
		binary.BigEndian.PutUint32(fragFastClock[i+16:], 16000*16) // timescale: the trun durations read 16 × shorter
	}
	mdat := bytes.Index(faststart, []byte("mdat"))
	variable := make([]uint32, 10000) // more samples than the checkpoints hold
	var cut, cutSamples int
	for i := range variable {
		variable[i] = uint32(40 + i%3*10)
		if i < 6789 {
			cut += int(variable[i])
			cutSamples++
		}
	}
	total := 0
	for _, v := range variable {
		total += int(v)
	}

	return []formatCase{
		// fixtures made by ffmpeg (testdata/README.md)
		{name: "ffmpeg moov after mdat", in: formatFixture(t, "mp4_aac.m4a"), want: aac(16000), tol: frame},
		{name: "forged stts: deltas ÷ 16", in: shortStts, want: aac(16000), tol: 70 * time.Millisecond},
		{name: "forged mdhd: timescale × 16", in: fastClock, want: aac(16000), tol: 70 * time.Millisecond},
		{name: "ffmpeg faststart", in: faststart, want: aac(16000), tol: frame},
		{name: "ffmpeg fragmented", in: formatFixture(t, "mp4_aac_frag.mp4"), want: aac(16000), tol: frame},
		{name: "fragmented, forged mdhd: timescale × 16", in: fragFastClock, want: aac(16000), tol: 70 * time.Millisecond},
		{name: "ffmpeg Opus", in: formatFixture(t, "mp4_opus.mp4"),
			want: Info{Format: MP4, Codec: "opus", SampleRate: 48000, Channels: 1, HasSamples: true, Duration: time.Second}, tol: 20 * time.Millisecond},
		{name: "mdhd duration forged to an hour", in: forged, want: aac(16000), tol: frame},
		{name: "faststart, mdat cut in half", in: faststart[:mdat+(len(faststart)-mdat)/2], want: aac(8000), tol: 2 * frame},
		{name: "faststart, mdat gone", in: faststart[:mdat+4], want: Info{Format: MP4, Codec: "aac", SampleRate: 16000, Channels: 1}},

		// crafted
		{name: "50 samples", in: mp4Spec{}.build(), want: aac(50 * 1024)},
		{name: "moov last", in: mp4Spec{moovLast: true}.build(), want: aac(50 * 1024)},
		{name: "mdhd claims 10 s", in: mp4Spec{claimed: 160000}.build(), want: aac(50 * 1024)},
		{name: "mdat cut: whole samples present", in: mp4Spec{mdatCut: 1050}.build(), want: aac(39 * 1024)},
		{name: "table claims more than mdat holds (moov last)", in: mp4Spec{mdatCut: 2000, moovLast: true}.build(), want: aac(30 * 1024)},
		{name: "constant sample size, cut", in: mp4Spec{constSize: 10, count: 1000, mdatCut: 5005}.build(), want: aac(499 * 1024)},
		{name: "10000 variable samples, cut", in: mp4Spec{sizes: variable, mdatCut: total - cut - 20}.build(), want: aac(int64(cutSamples) * 1024), tol: 2 * frame},
		{name: "co64 and 64-bit mdat size", in: mp4Spec{co64: true, largeMdat: true}.build(), want: aac(50 * 1024)},
		{name: "edit list priming", in: mp4Spec{priming: 1024}.build(), want: aac(49 * 1024)},
		{name: "forged priming: at most 0.1 s", in: mp4Spec{priming: 1 << 30}.build(), want: aac(50*1024 - 1600)},
		{name: "ASC: stts as the frames say", in: mp4Spec{entry: mp4aASC(16000, 16000)}.build(), want: aac(50 * 1024)},
		{name: "ASC: stts deltas of 64 buy nothing", in: mp4Spec{entry: mp4aASC(16000, 16000), delta: 64}.build(), want: aac(50 * 960)},
		{name: "ASC: stts deltas of 1<<20 cost nothing more", in: mp4Spec{entry: mp4aASC(16000, 16000), delta: 1 << 20}.build(), want: aac(50 * 1024)},
		{name: "ASC at 8 kHz under an entry and stts saying 16 kHz: at least 960 samples a frame", in: mp4Spec{entry: mp4aASC(16000, 8000), delta: 1024}.build(), want: aac(50 * 1920)},
		{name: "stereo 44.1 kHz entry", in: mp4Spec{entry: mp4aEntry(44100, 2)}.build(),
			want: Info{Format: MP4, Codec: "aac", SampleRate: 44100, Channels: 2, HasSamples: true, Duration: framesDuration(50*1024, 16000)}},
		{name: "no samples", in: mp4Spec{sizes: []uint32{}}.build(), want: Info{Format: MP4, Codec: "aac", SampleRate: 16000, Channels: 1}},
		{name: "no audio track", in: mp4Spec{handler: "vide"}.build(), want: Info{Format: MP4}},
		{name: "fragmented", in: mp4Frag(0, 10, 10, 10), want: aac(30 * 1024)},
		{name: "fragmented, last mdat cut", in: mp4Frag(500, 10, 10, 10), want: aac(25 * 1024)},
		{name: "fragmented, moof without mdat", in: mp4Frag(0, 10, 10, 10)[:len(mp4Frag(0, 10, 10, 10))-1008], want: aac(20 * 1024)},
		{name: "huge free box after the data", in: cat(mp4Spec{}.build(), u32(1), []byte("free"), u64(1<<60)), want: aac(50 * 1024)},

		{name: "moov last, file cut", in: mp4Spec{moovLast: true}.build()[:3000], code: tollgate.CodeUnsupportedAudioFormat},
		{name: "moov cut", in: mp4Spec{}.build()[:200], code: tollgate.CodeUnsupportedAudioFormat},
		{name: "garbage after ftyp", in: cat(box("ftyp", []byte("M4A ")), bytes.Repeat([]byte("garbage!"), 100)), code: tollgate.CodeUnsupportedAudioFormat},
		{name: "box size below 8", in: cat(box("ftyp", []byte("M4A ")), u32(5), []byte("moov")), code: tollgate.CodeUnsupportedAudioFormat},
		{name: "child overruns moov", in: cat(box("ftyp", []byte("M4A ")), u32(16), []byte("moov"), u32(1<<30), []byte("trak")), code: tollgate.CodeUnsupportedAudioFormat},
		{name: "stsz claims 2^32 samples", in: cat(box("ftyp", []byte("M4A ")), box("moov", box("trak", box("mdia", box("minf", box("stbl",
			fullBox("stsz", 0, u32(0), u32(0xFFFFFFFF)))))))), code: tollgate.CodeUnsupportedAudioFormat},
		{name: "huge free box before moov", in: cat(box("ftyp", []byte("M4A ")), u32(1), []byte("free"), u64(1<<60), mp4Spec{}.build()), code: tollgate.CodeUnsupportedAudioFormat},
	}
}

func TestProbeMP4(t *testing.T) { testFormatCases(t, mp4Cases(t)) }

func TestMP4SizesFit(t *testing.T) {
	var s mp4Sizes
	var cum []int64
	var sum int64
	for i := 0; i < 50000; i++ {
		cum = append(cum, sum)
		sz := int64(100 + i%7*30)
		s.add(sz)
		sum += sz
	}
	for _, avail := range []int64{0, 1, 99, 100, 12345, 999999, sum / 2, sum - 1, sum, sum + 1} {
		// exact: the samples whose end fits in avail
		exact := int64(0)
		for i := range cum {
			end := sum
			if i+1 < len(cum) {
				end = cum[i+1]
			}
			if end <= avail {
				exact = int64(i) + 1
			}
		}
		if got := s.fit(avail); got < exact-2 || got > exact+2 {
			t.Errorf("fit(%d) = %d, want %d ± 2", avail, got, exact)
		}
	}
}

func FuzzProbeMP4(f *testing.F) {
	for _, c := range mp4Cases(f) {
		f.Add(c.in)
	}
	for _, b := range formatFixtures(f, "mp4_") {
		f.Add(b)
	}
	f.Add(mp4Spec{mdatCut: 50}.build())
	f.Add(mp4Spec{moovLast: true, co64: true, largeMdat: true, priming: 1024}.build())
	f.Add(mp4Spec{constSize: 10, count: 100}.build())
	f.Add(mp4Frag(50, 3, 4))
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzFormat(t, in)
	})
}

func BenchmarkProbeMP4(b *testing.B) {
	// ~8 MB: 60,000 AAC samples, faststart
	sizes := make([]uint32, 60000)
	for i := range sizes {
		sizes[i] = uint32(100 + i%50)
	}
	benchmarkProbe(b, mp4Spec{sizes: sizes}.build())
}
