package audio

import (
	"bufio"
	"encoding/binary"
	"io"
	"math"
	"math/bits"
	"sort"
	"strings"
)

// MP4 / M4A (ISO base media file format, QuickTime).
//
// probeMP4 walks the boxes in one pass, front to back: moov may come
// before or after mdat (an mdat is skipped with Discard, remembering where
// it starts and how many of its bytes are present). The first trak whose
// hdlr is "soun" is the audio track: mdhd gives its timescale, stsd its
// codec, sample rate and channels, stts the sample durations, stsz the
// sample sizes and stco/co64 where its first chunk starts.
//
// The duration is the samples actually present, never mvhd/mdhd's
// duration field: the stts samples (at most stsz's count), cut to those
// whose bytes the mdat holding the first chunk really has. That cut
// assumes the track's samples lie back to back from its first chunk (true
// of audio-only files; with interleaved video it can count samples whose
// bytes are missing) and, for files of more than 2048 samples, locates the
// cut between stored checkpoints of the cumulative sizes by the mean
// sample size there. Fragmented MP4 (moof/traf/trun) adds each fragment's
// trun durations for the audio track, scaled down by the share of the
// fragment's sample bytes that its following mdat holds. The first edit's
// media time (encoder priming) is subtracted, up to 0.1 s; the rest of
// the edit list is ignored. Codec, rate and channels come from the sample
// entry, refined by esds (AAC AudioSpecificConfig, MP3 object types) and
// dOps (Opus).

// mp4Run is a run of stts entries.
type mp4Run struct{ count, delta int64 }

// mp4Sizes keeps, in bounded memory, enough of a track's sample sizes to
// tell how many whole samples fit in a number of bytes.
type mp4Sizes struct {
	count    int64 // samples
	total    int64 // bytes
	constant int64 // the size of every sample, 0 when they vary
	every    int64 // samples between checkpoints (a power of two)
	pts      [2048]int64
	n        int // checkpoints used: pts[i] = bytes before sample i*every
}

func (s *mp4Sizes) add(size int64) {
	if s.every == 0 {
		s.every = 1
	}
	if s.count%s.every == 0 {
		if s.n == len(s.pts) {
			for i := 0; i < s.n/2; i++ {
				s.pts[i] = s.pts[2*i]
			}
			s.n /= 2
			s.every *= 2
		}
		if s.count%s.every == 0 {
			s.pts[s.n] = s.total
			s.n++
		}
	}
	s.total = satAdd(s.total, size)
	s.count++
}

// fit returns how many whole samples, from the first, fit in avail bytes.
func (s *mp4Sizes) fit(avail int64) int64 {
	switch {
	case avail >= s.total:
		return s.count
	case avail <= 0:
		return 0
	case s.constant > 0:
		return avail / s.constant
	}
	j := sort.Search(s.n, func(i int) bool { return s.pts[i] > avail }) - 1
	if j < 0 {
		return 0
	}
	base := int64(j) * s.every
	segEnd, segCount := s.total, s.count-base
	if j+1 < s.n {
		segEnd, segCount = s.pts[j+1], s.every
	}
	if segEnd <= s.pts[j] {
		return base + segCount
	}
	return base + min(mulDiv(avail-s.pts[j], segCount, segEnd-s.pts[j]), segCount)
}

// mp4Track is what a trak says about itself.
type mp4Track struct {
	id        uint32
	sound     bool // its hdlr is "soun"
	timescale int64
	codec     string
	rate      int
	channels  int
	// coreRate is an AAC track's AudioSpecificConfig sampling rate: the
	// rate the decoder runs at (its frames are 1024 or 960 samples of
	// it), unlike the sample table and the timescale, which nothing
	// decoding the audio reads.
	coreRate int

	sttsSamples int64
	sttsTicks   int64
	runs        [256]mp4Run
	nRuns       int
	manyRuns    bool // more runs than fit: durations are averaged

	haveSizes  bool
	sizes      mp4Sizes
	firstChunk int64 // file offset of the first chunk, -1 none
	priming    int64 // the first edit's media time, ticks
}

func (t *mp4Track) reset() {
	*t = mp4Track{firstChunk: -1}
}

// ticks returns the duration of the first k samples in timescale units.
func (t *mp4Track) ticks(k int64) int64 {
	if k >= t.sttsSamples {
		return t.sttsTicks
	}
	if t.manyRuns {
		return mulDiv(k, t.sttsTicks, t.sttsSamples)
	}
	var d int64
	for _, r := range t.runs[:t.nRuns] {
		c := min(r.count, k)
		d = satAdd(d, satMul(c, r.delta))
		if k -= c; k == 0 {
			break
		}
	}
	return d
}

// mp4Mdat is an mdat: where its payload starts, where it says it ends
// (-1: at the end of the input) and where the bytes present end.
type mp4Mdat struct{ start, end, present int64 }

// mp4Trex is a track's fragment defaults.
type mp4Trex struct {
	id         uint32
	dur, bytes int64
}

type mp4Parser struct {
	cursor
	open nest[string] // open container boxes

	tracks  [2]mp4Track
	cur     *mp4Track // the trak being read
	audio   *mp4Track // the audio track, nil until found
	moov    int       // 0 none yet, 1 inside, 2 done
	mdats   [8]mp4Mdat
	nMdats  int
	trex    [8]mp4Trex
	nTrex   int
	inTraf  bool // inside a traf of the audio track
	tfDur   int64
	tfBytes int64

	frag      bool  // a moof awaits its mdat
	fragTicks int64 // audio in that moof
	fragBytes int64
	fragN     int64 // its samples
	fragTotal int64 // fragment audio whose bytes were present, ticks
	fragCount int64 // and samples
}

func probeMP4(br *bufio.Reader) (Info, error) {
	p := &mp4Parser{cursor: cursor{br: br}}
	p.cur, p.audio = &p.tracks[0], nil
	info := Info{Format: MP4}
	if err := p.run(); err != nil {
		return info, err
	}
	if p.moov == 0 {
		return info, Unsupported("mp4: no moov box: the file is truncated or was never finished.")
	}
	if p.moov == 1 {
		return info, Unsupported("mp4: the moov box is truncated.")
	}
	t := p.audio
	if t == nil {
		return info, nil // no audio track
	}
	info.Codec, info.SampleRate, info.Channels = t.codec, t.rate, t.channels
	if info.SampleRate == 0 && t.timescale < 1e7 {
		info.SampleRate = int(t.timescale)
	}
	k := p.present(t)
	ticks := satAdd(aacBounded(t, k, t.ticks(k)), aacBounded(t, p.fragCount, p.fragTotal))
	// The edit list's priming (AAC 1024 or 2112 samples, Opus 312) is not
	// audio; at most 0.1 s of it is trusted, so a forged edit cannot
	// make a file free.
	if trim := min(t.priming, t.timescale/10); trim < ticks {
		ticks -= trim
	}
	info.Duration = framesDuration(ticks, t.timescale)
	info.HasSamples = info.Duration > 0
	return info, nil
}

// aacBounded holds an AAC track's duration to what its k frames can
// hold: 960 to 1024 samples each at the AudioSpecificConfig's rate. The
// sample durations (stts, a fragment's trun) and the timescale are
// metadata a decoder does not use, so a forged one could otherwise buy a
// shorter (or longer) charge for the same audio. HE-AAC decodes twice the samples
// at twice the rate: the same time per frame.
func aacBounded(t *mp4Track, k, ticks int64) int64 {
	if t.codec != "aac" || t.coreRate <= 0 || t.timescale <= 0 || k <= 0 {
		return ticks
	}
	lo := mulDiv(satMul(k, 960), t.timescale, int64(t.coreRate))
	hi := mulDiv(satMul(k, 1024), t.timescale, int64(t.coreRate))
	return min(max(ticks, lo), hi)
}

// present returns how many of the track's samples (by its sample table)
// have their bytes in the input.
func (p *mp4Parser) present(t *mp4Track) int64 {
	n := t.sttsSamples
	if t.haveSizes {
		n = min(n, t.sizes.count)
	}
	if n == 0 || t.firstChunk < 0 {
		return 0
	}
	for _, m := range p.mdats[:p.nMdats] {
		if t.firstChunk < m.start || (m.end >= 0 && t.firstChunk >= m.end) {
			continue
		}
		if !t.haveSizes {
			if t.firstChunk < m.present {
				return n
			}
			return 0
		}
		return min(n, t.sizes.fit(m.present-t.firstChunk))
	}
	return 0
}

func errMP4f(format string, args ...any) error {
	return Unsupported("mp4: "+format+".", args...)
}

// run walks the boxes to the end of the input.
func (p *mp4Parser) run() error {
	for {
		p.popEnded()
		start := p.pos
		h, err := p.read(8)
		if err != nil {
			return p.eof(err)
		}
		size := int64(binary.BigEndian.Uint32(h))
		typ := string(h[4:8])
		end := int64(-1)
		switch {
		case size == 1:
			h, err := p.read(8)
			if err != nil {
				return p.eof(err)
			}
			large := binary.BigEndian.Uint64(h)
			if large < 16 || large > math.MaxInt64/2 {
				return errMP4f("box %q has an invalid size %d at offset %d", printable(typ), large, start)
			}
			end = start + int64(large)
		case size == 0:
			// runs to the end of its parent or of the input
		case size < 8:
			return errMP4f("box %q has an invalid size %d at offset %d", printable(typ), size, start)
		default:
			end = start + size
		}
		if lim := p.open.limit(); lim >= 0 {
			if end < 0 {
				end = lim
			} else if end > lim {
				return errMP4f("box %q overruns its parent at offset %d", printable(typ), start)
			}
		}
		if err := p.box(typ, end); err != nil {
			return p.eof(err)
		}
	}
}

// eof turns the end of the input into the end of the walk: the boxes
// that run to the end of the input are complete, the others truncated.
func (p *mp4Parser) eof(err error) error {
	if err != io.EOF && err != io.ErrUnexpectedEOF {
		return err
	}
	for {
		_, end, ok := p.open.top()
		if !ok || (end >= 0 && p.pos < end) {
			return nil
		}
		p.pop()
	}
}

// box handles a box whose header has been read; end is -1 when it runs
// to the end of the input.
func (p *mp4Parser) box(typ string, end int64) error {
	parent, _, _ := p.open.top()
	switch typ {
	case "moov":
		if p.moov != 0 {
			break // a second moov is not read
		}
		p.moov = 1
		return p.push(typ, end)
	case "trak":
		if parent != "moov" {
			break
		}
		p.cur.reset()
		return p.push(typ, end)
	case "mdia", "minf", "stbl", "mvex", "traf", "edts":
		return p.push(typ, end)
	case "moof":
		p.frag, p.fragTicks, p.fragBytes, p.fragN = true, 0, 0, 0
		return p.push(typ, end)
	case "mdat":
		return p.mdat(end)
	}
	rem := int64(math.MaxInt64)
	if end >= 0 {
		rem = end - p.pos
	}
	r := &boxReader{c: &p.cursor, rem: rem}
	switch {
	case typ == "tkhd" && parent == "trak":
		p.tkhd(r)
	case typ == "mdhd" && parent == "mdia":
		p.mdhd(r)
	case typ == "hdlr" && parent == "mdia":
		p.hdlr(r)
	case typ == "elst" && parent == "edts":
		p.elst(r)
	case typ == "stsd" && parent == "stbl":
		p.stsd(r)
	case typ == "stts" && parent == "stbl":
		p.stts(r)
	case (typ == "stsz" || typ == "stz2") && parent == "stbl":
		p.stsz(typ, r)
	case (typ == "stco" || typ == "co64") && parent == "stbl":
		p.stco(typ, r)
	case typ == "trex" && parent == "mvex":
		p.trexBox(r)
	case typ == "tfhd" && parent == "traf":
		p.tfhd(r)
	case typ == "trun" && parent == "traf" && p.inTraf:
		p.trun(r)
	}
	if r.err != nil {
		return r.err
	}
	if end < 0 {
		return p.skip(math.MaxInt64)
	}
	return p.skip(end - p.pos)
}

// mdat skips an mdat, remembering its bytes present, and settles the
// fragment that precedes it.
func (p *mp4Parser) mdat(end int64) error {
	start := p.pos
	n := int64(math.MaxInt64)
	if end >= 0 {
		n = end - p.pos
	}
	err := p.skip(n)
	if p.nMdats < len(p.mdats) {
		p.mdats[p.nMdats] = mp4Mdat{start: start, end: end, present: p.pos}
		p.nMdats++
	}
	if p.frag {
		have := p.pos - start
		switch {
		case p.fragBytes <= have:
			p.fragTotal = satAdd(p.fragTotal, p.fragTicks)
			p.fragCount = satAdd(p.fragCount, p.fragN)
		default:
			p.fragTotal = satAdd(p.fragTotal, mulDiv(p.fragTicks, have, p.fragBytes))
			p.fragCount = satAdd(p.fragCount, mulDiv(p.fragN, have, p.fragBytes))
		}
		p.frag = false
	}
	if err == io.ErrUnexpectedEOF {
		return nil
	}
	return err
}

func (p *mp4Parser) tkhd(r *boxReader) {
	if v, _ := r.header(); v == 1 {
		r.skip(16) // creation and modification times
	} else {
		r.skip(8)
	}
	p.cur.id = r.u32()
}

func (p *mp4Parser) mdhd(r *boxReader) {
	if v, _ := r.header(); v == 1 {
		r.skip(16)
	} else {
		r.skip(8)
	}
	p.cur.timescale = int64(r.u32())
}

func (p *mp4Parser) hdlr(r *boxReader) {
	r.skip(8) // version, flags, pre_defined
	if b := r.next(4); string(b) == "soun" {
		p.cur.sound = true
	}
}

// stsd reads the first sample entry's codec, channels and sample rate,
// refined by its esds (AAC, MP3) or dOps (Opus) box.
func (p *mp4Parser) stsd(r *boxReader) {
	r.skip(8) // version, flags, entry_count
	if r.err != nil || r.rem < 36 {
		return
	}
	// the entry is read in place; the box's end skips it
	b, _ := p.br.Peek(int(min(r.rem, 1024)))
	if len(b) < 36 {
		r.err = io.ErrUnexpectedEOF
		return
	}
	if n := binary.BigEndian.Uint32(b); n >= 36 && int64(n) < int64(len(b)) {
		b = b[:n]
	}
	t := p.cur
	fourcc := string(b[4:8])
	t.codec = mp4CodecName(fourcc)
	// AudioSampleEntry after the 8-byte box header: reserved(6)
	// data_reference_index(2) version(2) revision(2) vendor(4)
	// channelcount(2) samplesize(2) compression(2) packet size(2)
	// samplerate(16.16); QuickTime v1 adds 16 bytes, v2 36.
	e := b[8:]
	version := binary.BigEndian.Uint16(e[8:])
	t.channels = int(binary.BigEndian.Uint16(e[16:]))
	t.rate = int(binary.BigEndian.Uint32(e[24:]) >> 16)
	children := e[28:]
	switch version {
	case 1:
		children = children[min(16, len(children)):]
	case 2:
		if len(e) >= 44 {
			r := math.Float64frombits(binary.BigEndian.Uint64(e[32:]))
			if r > 0 && r < 1e7 {
				t.rate = int(r)
			}
			t.channels = int(binary.BigEndian.Uint32(e[40:]))
		}
		children = children[min(36, len(children)):]
	}
	for len(children) >= 8 {
		n := int(binary.BigEndian.Uint32(children))
		if n < 8 || n > len(children) {
			break
		}
		body := children[8:n]
		switch string(children[4:8]) {
		case "esds":
			p.esds(body)
		case "dOps": // version, OutputChannelCount, PreSkip, InputSampleRate
			if len(body) >= 8 && body[1] > 0 {
				t.channels = int(body[1])
			}
		}
		children = children[n:]
	}
	if t.channels < 0 || t.channels > 255 {
		t.channels = 0
	}
}

// esds reads an MPEG-4 elementary stream descriptor: the object type
// (AAC or MP3) and the AudioSpecificConfig's rate and channels.
func (p *mp4Parser) esds(b []byte) {
	if len(b) < 4 {
		return
	}
	b = b[4:] // version, flags
	desc := func(b []byte) (tag byte, body, rest []byte, ok bool) {
		if len(b) < 2 {
			return 0, nil, nil, false
		}
		tag, b = b[0], b[1:]
		n := 0
		for i := 0; i < 4; i++ {
			if len(b) == 0 {
				return 0, nil, nil, false
			}
			c := b[0]
			b = b[1:]
			n = n<<7 | int(c&0x7F)
			if c&0x80 == 0 {
				break
			}
		}
		if n > len(b) {
			n = len(b) // a descriptor cut by its box: read what is there
		}
		return tag, b[:n], b[n:], true
	}
	tag, es, _, ok := desc(b)
	if !ok || tag != 0x03 || len(es) < 3 {
		return
	}
	flags := es[2]
	es = es[3:]
	if flags&0x80 != 0 { // dependsOn_ES_ID
		es = es[min(2, len(es)):]
	}
	if flags&0x40 != 0 && len(es) > 0 { // URL
		es = es[min(1+int(es[0]), len(es)):]
	}
	if flags&0x20 != 0 { // OCR_ES_Id
		es = es[min(2, len(es)):]
	}
	tag, dc, _, ok := desc(es)
	if !ok || tag != 0x04 || len(dc) < 13 {
		return
	}
	t := p.cur
	switch dc[0] {
	case 0x69, 0x6B:
		t.codec = "mp3"
		return
	case 0x40, 0x66, 0x67, 0x68:
		t.codec = "aac"
	default:
		return
	}
	tag, asc, _, ok := desc(dc[13:])
	if !ok || tag != 0x05 {
		return
	}
	if rate, ch, ok := parseASC(asc); ok {
		t.coreRate = rate
		if t.rate == 0 {
			t.rate = rate
		}
		if ch > 0 {
			t.channels = ch
		}
	}
}

// elst reads the first edit's media time: the encoder priming to skip.
func (p *mp4Parser) elst(r *boxReader) {
	v, _ := r.header()
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		var mt int64
		if v == 1 {
			r.skip(8) // segment_duration
			mt = int64(r.u64())
		} else {
			r.skip(4)
			mt = int64(int32(r.u32()))
		}
		r.skip(4)     // media_rate
		if mt != -1 { // -1 is an empty edit (a delay), not a skip
			p.cur.priming = max(mt, 0)
			return
		}
	}
}

func (p *mp4Parser) stts(r *boxReader) {
	t := p.cur
	t.sttsSamples, t.sttsTicks, t.nRuns, t.manyRuns = 0, 0, 0, false
	r.each(r.entries(8), 8, func(e []byte) {
		c := int64(binary.BigEndian.Uint32(e))
		d := int64(binary.BigEndian.Uint32(e[4:]))
		t.sttsSamples = satAdd(t.sttsSamples, c)
		t.sttsTicks = satAdd(t.sttsTicks, satMul(c, d))
		if t.nRuns < len(t.runs) {
			t.runs[t.nRuns] = mp4Run{c, d}
			t.nRuns++
		} else {
			t.manyRuns = true
		}
	})
}

// stsz reads the sample sizes of an stsz, or of an stz2 (4-, 8- or
// 16-bit sizes).
func (p *mp4Parser) stsz(typ string, r *boxReader) {
	t := p.cur
	t.haveSizes = true
	t.sizes = mp4Sizes{}
	r.header()
	field := r.u32() // stsz: sample_size; stz2: reserved and field_size
	count := int64(r.u32())
	w := 4
	switch {
	case typ == "stsz" && field != 0:
		t.sizes.count, t.sizes.constant = count, int64(field)
		t.sizes.total = satMul(count, int64(field))
		return
	case typ == "stz2" && field&0xFF == 4:
		r.each(r.fits((count+1)/2, 1), 1, func(e []byte) {
			t.sizes.add(int64(e[0] >> 4))
			if t.sizes.count < count {
				t.sizes.add(int64(e[0] & 0xF))
			}
		})
		return
	case typ == "stz2" && (field&0xFF == 8 || field&0xFF == 16):
		w = int(field&0xFF) / 8
	case typ == "stz2":
		r.fail("stz2 has a field size of %d bits", field&0xFF)
		return
	}
	r.each(r.fits(count, w), w, func(e []byte) {
		switch w {
		case 1:
			t.sizes.add(int64(e[0]))
		case 2:
			t.sizes.add(int64(binary.BigEndian.Uint16(e)))
		default:
			t.sizes.add(int64(binary.BigEndian.Uint32(e)))
		}
	})
}

func (p *mp4Parser) stco(typ string, r *boxReader) {
	if typ == "stco" {
		if r.entries(4) > 0 {
			p.cur.firstChunk = int64(r.u32())
		}
	} else if r.entries(8) > 0 {
		if off := r.u64(); off <= math.MaxInt64/2 {
			p.cur.firstChunk = int64(off)
		}
	}
}

func (p *mp4Parser) trexBox(r *boxReader) {
	r.header()
	x := mp4Trex{id: r.u32()}
	r.skip(4) // default_sample_description_index
	x.dur, x.bytes = int64(r.u32()), int64(r.u32())
	if r.err == nil && p.nTrex < len(p.trex) {
		p.trex[p.nTrex] = x
		p.nTrex++
	}
}

func (p *mp4Parser) tfhd(r *boxReader) {
	p.inTraf = false
	_, flags := r.header()
	if p.audio == nil || r.u32() != p.audio.id {
		return
	}
	p.inTraf = true
	p.tfDur, p.tfBytes = 0, 0
	for _, x := range p.trex[:p.nTrex] {
		if x.id == p.audio.id {
			p.tfDur, p.tfBytes = x.dur, x.bytes
		}
	}
	if flags&0x01 != 0 {
		r.skip(8) // base_data_offset
	}
	if flags&0x02 != 0 {
		r.skip(4) // sample_description_index
	}
	if flags&0x08 != 0 {
		p.tfDur = int64(r.u32())
	}
	if flags&0x10 != 0 {
		p.tfBytes = int64(r.u32())
	}
}

func (p *mp4Parser) trun(r *boxReader) {
	_, flags := r.header()
	count := int64(r.u32())
	if flags&0x01 != 0 {
		r.skip(4) // data_offset
	}
	if flags&0x04 != 0 {
		r.skip(4) // first_sample_flags
	}
	w := 4 * bits.OnesCount32(flags&0xF00) // per-sample fields
	if w == 0 {
		p.fragTicks = satAdd(p.fragTicks, satMul(count, p.tfDur))
		p.fragBytes = satAdd(p.fragBytes, satMul(count, p.tfBytes))
		p.fragN = satAdd(p.fragN, count)
		return
	}
	r.each(r.fits(count, w), w, func(e []byte) {
		d, s := p.tfDur, p.tfBytes
		if flags&0x100 != 0 {
			d = int64(binary.BigEndian.Uint32(e))
			e = e[4:]
		}
		if flags&0x200 != 0 {
			s = int64(binary.BigEndian.Uint32(e))
		}
		p.fragTicks = satAdd(p.fragTicks, d)
		p.fragBytes = satAdd(p.fragBytes, s)
		p.fragN++
	})
}

// mp4CodecName maps a sample entry's type to a codec name.
func mp4CodecName(fourcc string) string {
	switch fourcc {
	case "mp4a":
		return "aac"
	case "Opus":
		return "opus"
	case "alac":
		return "alac"
	case "fLaC":
		return "flac"
	case ".mp3":
		return "mp3"
	case "ac-3":
		return "ac3"
	case "ec-3":
		return "eac3"
	case "samr":
		return "amr_nb"
	case "sawb":
		return "amr_wb"
	case "sowt":
		return "pcm_s16le"
	case "twos":
		return "pcm_s16be"
	case "ulaw":
		return "pcm_mulaw"
	case "alaw":
		return "pcm_alaw"
	case "lpcm", "ipcm", "fpcm":
		return "pcm"
	}
	return strings.ToLower(strings.TrimSpace(printable(fourcc)))
}

// printable replaces the non-printable bytes of a box type.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7E {
			return '?'
		}
		return r
	}, s)
}

func (p *mp4Parser) push(typ string, end int64) error {
	if !p.open.push(typ, end) {
		return errMP4f("boxes nested too deep")
	}
	return nil
}

// pop closes the innermost open box.
func (p *mp4Parser) pop() {
	switch p.open.pop() {
	case "moov":
		p.moov = 2
	case "trak":
		if p.audio == nil && p.cur.sound {
			p.audio, p.cur = p.cur, &p.tracks[1]
		}
	case "traf":
		p.inTraf = false
	}
}

func (p *mp4Parser) popEnded() {
	for {
		_, end, ok := p.open.top()
		if !ok || end < 0 || p.pos < end {
			return
		}
		p.pop()
	}
}

// boxReader reads the fields of a leaf box that has rem bytes left. The
// first error sticks: later reads return zeros.
type boxReader struct {
	c   *cursor
	rem int64
	err error
}

// next returns the next n bytes (n <= the buffer size), nil after an error.
func (r *boxReader) next(n int) []byte {
	if r.err != nil {
		return nil
	}
	if r.rem < int64(n) {
		r.fail("a box is too short for its fields")
		return nil
	}
	b, err := r.c.read(n)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		r.err = err
		return nil
	}
	r.rem -= int64(n)
	return b
}

func (r *boxReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = errMP4f(format, args...)
	}
}

func (r *boxReader) skip(n int) { r.next(n) }

func (r *boxReader) u32() uint32 {
	if b := r.next(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *boxReader) u64() uint64 {
	if b := r.next(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// header reads a full box's version and flags.
func (r *boxReader) header() (version byte, flags uint32) {
	v := r.u32()
	return byte(v >> 24), v & 0xFFFFFF
}

// entries reads a full box's version, flags and entry count, checking
// that the entries, w bytes each, fit in the box.
func (r *boxReader) entries(w int) int64 {
	r.header()
	return r.fits(int64(r.u32()), w)
}

// fits returns n when n entries of w bytes fit in the box, else fails.
func (r *boxReader) fits(n int64, w int) int64 {
	if r.err == nil && n > r.rem/int64(w) {
		r.fail("a table lists %d entries in %d bytes", n, r.rem)
	}
	if r.err != nil {
		return 0
	}
	return n
}

// each calls fn on n entries of w bytes, reading them in batches.
func (r *boxReader) each(n int64, w int, fn func([]byte)) {
	per := int64(4096 / w)
	for n > 0 && r.err == nil {
		k := min(n, per)
		b := r.next(int(k) * w)
		for i := 0; i < len(b); i += w {
			fn(b[i : i+w])
		}
		n -= k
	}
}
