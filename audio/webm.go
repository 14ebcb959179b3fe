package audio

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// WebM / Matroska.
//
// probeWebM walks the EBML element tree in one pass: the EBML header
// (DocType), the first Segment's Info (TimecodeScale) and Tracks (the
// first audio track: codec, sampling frequency, channels, bit depth,
// CodecPrivate for Opus pre-skip and the Vorbis block size), then every
// Cluster's SimpleBlocks and BlockGroups of that track. Unknown-size
// Segments and Clusters (live streams) end where an element that cannot
// be their child begins.
//
// The duration is the audio in the blocks, never the Duration element:
//   - Opus: the sum of each packet's duration from its TOC byte (RFC 6716
//     §3.1), less the OpusHead pre-skip (else CodecDelay) and any
//     DiscardPadding;
//   - AAC: 1024 samples per frame; PCM: block bytes ÷ frame size;
//   - other codecs (Vorbis, …): last block timestamp − first + the last
//     block's duration (BlockDuration, else DefaultDuration, else the mean
//     gap between blocks), and for Vorbis at most blocksize_1/2 samples
//     per packet, so forged timestamps cannot stretch it.
//
// Elements after the first Segment (chained segments) are not read, nor
// are blocks met before the Tracks that describe them.

// Matroska element IDs (marker bits kept).
const (
	ebmlHeaderID      = 0x1A45DFA3
	ebmlDocType       = 0x4282
	mkvSegment        = 0x18538067
	mkvInfo           = 0x1549A966
	mkvTimecodeScale  = 0x2AD7B1
	mkvTracks         = 0x1654AE6B
	mkvTrackEntry     = 0xAE
	mkvTrackNumber    = 0xD7
	mkvTrackType      = 0x83
	mkvCodecID        = 0x86
	mkvCodecPrivate   = 0x63A2
	mkvCodecDelay     = 0x56AA
	mkvDefaultDur     = 0x23E383
	mkvAudio          = 0xE1
	mkvSamplingFreq   = 0xB5
	mkvChannels       = 0x9F
	mkvBitDepth       = 0x6264
	mkvCluster        = 0x1F43B675
	mkvTimecode       = 0xE7
	mkvSimpleBlock    = 0xA3
	mkvBlockGroup     = 0xA0
	mkvBlock          = 0xA1
	mkvBlockDuration  = 0x9B
	mkvDiscardPadding = 0x75A2
)

// mkvClusterChild reports the IDs that may appear in a Cluster, which
// end an unknown-size Cluster when they do not.
func mkvClusterChild(id uint32) bool {
	switch id {
	case mkvTimecode, mkvSimpleBlock, mkvBlockGroup,
		0x5854, // SilentTracks
		0xA7,   // Position
		0xAB,   // PrevSize
		0xAF,   // EncryptedBlock
		0xEC,   // Void
		0xBF:   // CRC-32
		return true
	}
	return false
}

// mkvTrack is one TrackEntry.
type mkvTrack struct {
	number     uint64
	typ        uint64
	codecID    [32]byte
	codecLen   int
	rate       float64
	channels   uint64
	bitDepth   uint64
	codecDelay uint64 // ns
	defaultDur uint64 // ns
	private    []byte // CodecPrivate, its first mkvMaxPrivate bytes
}

// mkvMaxPrivate bounds the CodecPrivate kept: Vorbis's holds its setup
// header (a few KiB of codebooks), whose modes give its packets' sizes.
const mkvMaxPrivate = vorbisMaxSetup + 1024

func (t *mkvTrack) codec() string { return string(t.codecID[:t.codecLen]) }

// mkvBlockInfo is a block of the audio track: its timestamp in ticks and
// its samples (-1 when the codec does not tell).
type mkvBlockInfo struct {
	ts       int64
	samples  int64
	packets  int64
	duration int64 // BlockDuration, ticks; -1 absent
	discard  int64 // DiscardPadding, ns
}

type webmParser struct {
	cursor
	open nest[uint32] // open master elements

	docType   [16]byte
	docLen    int
	segment   bool  // the first Segment has begun
	scale     int64 // ns per tick
	cur       mkvTrack
	track     mkvTrack
	haveTrack bool
	opus      bool
	// vorbis counts a Vorbis track's packets from its setup header's
	// modes (nil: not Vorbis, or a setup header it cannot read);
	// vorbisPrimed is set once the first packet, which decodes to
	// nothing, has passed.
	vorbis       *vorbisClock
	vorbisPrimed bool
	clusterTC    int64
	group        mkvBlockInfo // the open BlockGroup's Block
	groupBlock   bool         // group holds a Block
	lace         [256]int64

	// measurement of the audio track's blocks
	blocks  int64
	packets int64
	samples int64 // sum of exact block samples
	exact   bool  // every block's samples were known
	firstTS int64
	lastTS  int64
	last    mkvBlockInfo
}

var errEBML = errors.New("bad EBML")

func probeWebM(br *bufio.Reader) (Info, error) {
	p := &webmParser{cursor: cursor{br: br}, scale: 1000000, exact: true}
	info := Info{Format: WebM}
	err := p.run()
	if errors.Is(err, errEBML) {
		return info, Unsupported("webm: malformed EBML (%s).", strings.TrimPrefix(err.Error(), "bad EBML: "))
	}
	if err != nil {
		return info, err
	}
	if !p.haveTrack {
		return info, nil // no audio track
	}
	t := &p.track
	info.Codec = mkvCodecName(t.codec(), t.bitDepth)
	if t.rate > 0 && t.rate < 1e7 {
		info.SampleRate = int(t.rate)
	}
	info.Channels = 1
	if t.channels > 0 && t.channels < 256 {
		info.Channels = int(t.channels)
	}
	if p.opus {
		// Opus always decodes at 48 kHz (SamplingFrequency is often the
		// encoder's input rate)
		info.SampleRate = 48000
	}
	info.Duration = p.duration()
	info.HasSamples = info.Duration > 0
	return info, nil
}

// duration measures the audio track's blocks.
func (p *webmParser) duration() time.Duration {
	if p.blocks == 0 {
		return 0
	}
	t := &p.track
	var rate int64
	switch {
	case p.opus:
		rate = 48000
	case t.rate >= 1 && t.rate < 1e7: // also false for NaN
		rate = int64(t.rate)
	}
	if p.exact && rate > 0 {
		s := p.samples
		if p.opus {
			s -= p.opusPreSkip()
		}
		// DiscardPadding trims the padding of the stream's last block:
		// only the last block's counts, and at most its own samples, so a
		// forged padding on every block cannot make the audio free.
		s -= min(mulDiv(p.last.discard, rate, int64(time.Second)), max(p.last.samples, 0))
		return framesDuration(s, rate)
	}
	span := satMul(p.lastTS-p.firstTS, p.scale)
	var last int64
	switch {
	case p.last.duration >= 0:
		last = satMul(p.last.duration, p.scale)
	case t.defaultDur > 0 && t.defaultDur < math.MaxInt64:
		last = int64(t.defaultDur)
	case p.last.samples >= 0 && rate > 0:
		last = int64(framesDuration(p.last.samples, rate))
	case p.blocks > 1:
		last = span / (p.blocks - 1)
	}
	d := satAdd(span, last)
	if bs := p.vorbisMaxBlock(); bs > 0 && rate > 0 {
		if limit := int64(framesDuration(satMul(p.packets, bs/2), rate)); d > limit {
			d = limit
		}
	}
	if n := p.minPacketSamples(); n > 0 && rate > 0 {
		// A Vorbis stream's first packet decodes to nothing.
		packets := p.packets
		if mkvCodecName(p.track.codec(), 0) == "vorbis" {
			packets--
		}
		d = max(d, int64(framesDuration(satMul(max(packets, 0), n), rate)))
	}
	return time.Duration(d)
}

// opusPreSkip is the OpusHead pre-skip, else CodecDelay, in 48 kHz samples.
func (p *webmParser) opusPreSkip() int64 {
	t := &p.track
	if h := t.private; len(h) >= 12 && string(h[:8]) == "OpusHead" {
		return int64(binary.LittleEndian.Uint16(h[10:12]))
	}
	if t.codecDelay > 0 && t.codecDelay < uint64(time.Second) {
		return int64(t.codecDelay) * 48000 / int64(time.Second)
	}
	return 0
}

// vorbisMaxBlock is blocksize_1 from the Vorbis identification header in
// a Xiph-laced CodecPrivate, 0 when absent.
func (p *webmParser) vorbisMaxBlock() int64 { return p.vorbisBlock(true) }

// minPacketSamples is the fewest samples one packet of the track's codec
// decodes to (0 when unknown): AAC 960, MP3 576, Vorbis half its short
// block. The block timestamps (and the TimecodeScale they are read with)
// are metadata a decoder does not need, so the packets present set a
// floor under the duration they claim.
func (p *webmParser) minPacketSamples() int64 {
	switch mkvCodecName(p.track.codec(), 0) {
	case "aac":
		return 960
	case "mp3":
		return 576
	case "vorbis":
		return p.vorbisBlock(false) / 2
	}
	return 0
}

// vorbisBlock is the Vorbis identification header's long (or short)
// block size, 0 when there is none.
func (p *webmParser) vorbisBlock(long bool) int64 {
	ident, _, ok := p.vorbisHeaders()
	if !ok || len(ident) < 29 || string(ident[:7]) != "\x01vorbis" {
		return 0
	}
	e := ident[28] >> 4
	if !long {
		e = ident[28] & 0x0F
	}
	if e < 6 || e > 13 {
		return 0
	}
	return 1 << e
}

// vorbisHeaders splits a Vorbis track's CodecPrivate (three headers, Xiph
// laced) into its identification and setup headers.
func (p *webmParser) vorbisHeaders() (ident, setup []byte, ok bool) {
	t := &p.track
	h := t.private
	if t.codec() != "A_VORBIS" || len(h) < 1 || h[0] != 2 {
		return nil, nil, false
	}
	var sizes [2]int
	o := 1
	for i := range sizes { // two Xiph lace sizes: runs of 255 and the rest
		for {
			if o >= len(h) {
				return nil, nil, false
			}
			sizes[i] += int(h[o])
			o++
			if h[o-1] != 255 {
				break
			}
		}
	}
	if sizes[0] > len(h)-o || sizes[1] > len(h)-o-sizes[0] {
		return nil, nil, false
	}
	return h[o : o+sizes[0]], h[o+sizes[0]+sizes[1]:], true
}

// mkvCodecName maps a Matroska CodecID to a codec name.
func mkvCodecName(id string, depth uint64) string {
	pcm := func(kind, endian string) string {
		switch depth {
		case 8, 16, 24, 32, 64:
			return "pcm_" + kind + strconv.FormatUint(depth, 10) + endian
		}
		return "pcm"
	}
	switch {
	case id == "A_OPUS":
		return "opus"
	case id == "A_VORBIS":
		return "vorbis"
	case strings.HasPrefix(id, "A_AAC"):
		return "aac"
	case id == "A_FLAC":
		return "flac"
	case id == "A_MPEG/L3":
		return "mp3"
	case id == "A_AC3":
		return "ac3"
	case id == "A_PCM/INT/LIT":
		if depth == 8 {
			return "pcm_u8"
		}
		return pcm("s", "le")
	case id == "A_PCM/INT/BIG":
		return pcm("s", "be")
	case id == "A_PCM/FLOAT/IEEE":
		return pcm("f", "le")
	}
	return strings.ToLower(strings.TrimPrefix(id, "A_"))
}

// run walks the elements to the end of the first Segment.
func (p *webmParser) run() error {
	for first := true; ; first = false {
		p.popEnded()
		id, err := p.readID()
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
		if first && id != ebmlHeaderID {
			return errEBMLf("the first element is not the EBML header")
		}
		size, err := p.readSize()
		if err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
		for {
			top, end, ok := p.open.top()
			if !ok || end >= 0 || p.childOf(top, id) {
				break
			}
			p.pop() // the unknown-size element ends here
		}
		if p.open.depth == 0 && p.segment {
			break // past the first Segment: not read
		}
		end := int64(-1)
		if size >= 0 {
			end = satAdd(p.pos, size)
		}
		if lim := p.open.limit(); lim >= 0 {
			if end < 0 {
				end = lim
			} else if end > lim {
				return errEBMLf("element 0x%X overruns its parent", id)
			}
		}
		err = p.element(id, size, end)
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			break // truncated input: keep what was complete
		}
		if err != nil {
			return err
		}
	}
	// a truncated BlockGroup still counts its complete Block
	for p.open.depth > 0 {
		p.pop()
	}
	return nil
}

// element handles one element whose header has been read; size is -1
// when unknown, end its end offset (-1 unknown).
func (p *webmParser) element(id uint32, size, end int64) error {
	top, _, _ := p.open.top()
	switch id {
	case ebmlHeaderID:
		if p.open.depth != 0 || size < 0 {
			return errEBMLf("misplaced EBML header")
		}
		return p.push(id, end)
	case mkvSegment:
		if p.open.depth != 0 {
			return errEBMLf("nested Segment")
		}
		switch d := string(p.docType[:p.docLen]); d {
		case "webm", "matroska", "":
		default:
			return Unsupported("webm: EBML document type %q is not WebM or Matroska.", d)
		}
		p.segment = true
		return p.push(id, end)
	case mkvInfo, mkvTracks, mkvCluster, mkvTrackEntry, mkvAudio, mkvBlockGroup:
		if size < 0 && id != mkvCluster {
			return errEBMLf("element 0x%X of unknown size", id)
		}
		switch id {
		case mkvTrackEntry:
			p.cur = mkvTrack{}
		case mkvCluster:
			p.clusterTC = 0
		case mkvBlockGroup:
			p.groupBlock = false
			p.group = mkvBlockInfo{duration: -1}
		}
		return p.push(id, end)
	}
	if size < 0 {
		return errEBMLf("element 0x%X of unknown size", id)
	}
	switch {
	case id == ebmlDocType && top == ebmlHeaderID:
		n, err := p.readBytes(size, p.docType[:])
		p.docLen = n
		return err
	case id == mkvTimecodeScale && top == mkvInfo:
		v, err := p.readUint(size)
		if v > 0 && v < 1<<40 {
			p.scale = int64(v)
		}
		return err
	case top == mkvTrackEntry || top == mkvAudio:
		return p.trackField(id, size)
	case id == mkvTimecode && top == mkvCluster:
		v, err := p.readUint(size)
		p.clusterTC = int64(min(v, 1<<40))
		return err
	case id == mkvSimpleBlock && top == mkvCluster:
		return p.block(size, false)
	case id == mkvBlock && top == mkvBlockGroup:
		return p.block(size, true)
	case id == mkvBlockDuration && top == mkvBlockGroup:
		v, err := p.readUint(size)
		p.group.duration = int64(min(v, 1<<40))
		return err
	case id == mkvDiscardPadding && top == mkvBlockGroup:
		v, err := p.readUint(size)
		if size > 0 && size < 8 && v&(1<<(8*size-1)) != 0 {
			v |= ^uint64(0) << (8 * size) // sign-extend
		}
		if d := int64(v); d > 0 && d < int64(time.Second) {
			p.group.discard = d // negative padding is not a trim
		}
		return err
	}
	return p.skip(size)
}

// trackField reads a TrackEntry or Audio child.
func (p *webmParser) trackField(id uint32, size int64) error {
	t := &p.cur
	var err error
	switch id {
	case mkvTrackNumber:
		t.number, err = p.readUint(size)
	case mkvTrackType:
		t.typ, err = p.readUint(size)
	case mkvCodecID:
		t.codecLen, err = p.readBytes(size, t.codecID[:])
	case mkvCodecPrivate:
		t.private, err = p.readPrivate(size)
	case mkvCodecDelay:
		t.codecDelay, err = p.readUint(size)
	case mkvDefaultDur:
		t.defaultDur, err = p.readUint(size)
	case mkvSamplingFreq:
		t.rate, err = p.readFloat(size)
	case mkvChannels:
		t.channels, err = p.readUint(size)
	case mkvBitDepth:
		t.bitDepth, err = p.readUint(size)
	default:
		err = p.skip(size)
	}
	return err
}

// block reads a Block or SimpleBlock of size bytes.
func (p *webmParser) block(size int64, inGroup bool) error {
	rem := size
	track, n, err := p.readVint(8, false)
	if err != nil {
		return err
	}
	rem -= int64(n)
	if rem < 0 {
		return errEBMLf("block header overruns the block")
	}
	if !p.haveTrack || track != p.track.number || rem < 3 {
		return p.skip(rem)
	}
	h, err := p.read(3)
	if err != nil {
		return err
	}
	rem -= 3
	ts := p.clusterTC + int64(int16(binary.BigEndian.Uint16(h)))
	lacing := h[2] >> 1 & 3
	frames := 1
	lace := p.lace[:1]
	lace[0] = rem
	if lacing != 0 {
		c, err := p.read(1)
		if err != nil {
			return err
		}
		rem--
		frames = int(c[0]) + 1
		lace = p.lace[:frames]
		if rem, err = p.laceSizes(lacing, lace, rem); err != nil {
			return err
		}
	}
	// the frames' data
	samples := int64(-1)
	t := &p.track
	switch {
	case p.opus:
		samples = 0
		for _, s := range lace {
			if s == 0 {
				continue
			}
			toc, _ := p.br.Peek(int(min(s, 2)))
			if int64(len(toc)) < min(s, 2) {
				return io.ErrUnexpectedEOF
			}
			samples += int64(opusTOCSamples(toc)) // ogg.go: RFC 6716 §3.1
			if err := p.skip(s); err != nil {
				return err
			}
		}
		rem = 0
	case p.vorbis != nil:
		samples = 0
		for _, s := range lace {
			if s == 0 {
				continue
			}
			first, _ := p.br.Peek(1)
			if len(first) < 1 {
				return io.ErrUnexpectedEOF
			}
			if first[0]&1 == 0 { // an audio packet
				n := p.vorbis.samples(first[0])
				if !p.vorbisPrimed {
					p.vorbisPrimed, n = true, 0
				}
				samples += n
			}
			if err := p.skip(s); err != nil {
				return err
			}
		}
		rem = 0
	case strings.HasPrefix(t.codec(), "A_AAC"):
		samples = int64(frames) * 1024
	case strings.HasPrefix(t.codec(), "A_PCM/"):
		if fs := int64(t.bitDepth/8) * int64(t.channels); fs > 0 && t.bitDepth%8 == 0 && t.channels < 256 {
			samples = rem / fs
		}
	}
	if err := p.skip(rem); err != nil {
		return err
	}
	b := mkvBlockInfo{ts: ts, samples: samples, packets: int64(frames), duration: -1}
	if inGroup {
		b.duration, b.discard = p.group.duration, p.group.discard
		p.group = b
		p.groupBlock = true
		return nil
	}
	p.commit(b)
	return nil
}

// laceSizes reads the lace sizes of a laced block into lace (whose
// length is the frame count) and returns the bytes left for the data.
func (p *webmParser) laceSizes(lacing byte, lace []int64, rem int64) (int64, error) {
	n := len(lace)
	var sum int64
	switch lacing {
	case 1: // Xiph
		for i := 0; i < n-1; i++ {
			var s int64
			for {
				b, err := p.read(1)
				if err != nil {
					return 0, err
				}
				if rem--; rem < 0 {
					return 0, errEBMLf("lace sizes overrun the block")
				}
				s += int64(b[0])
				if b[0] != 255 {
					break
				}
			}
			lace[i] = s
			sum += s
		}
	case 3: // EBML
		v, l, err := p.readVint(8, false)
		if err != nil {
			return 0, err
		}
		rem -= int64(l)
		s := int64(min(v, 1<<40))
		lace[0], sum = s, s
		for i := 1; i < n-1; i++ {
			v, l, err := p.readVint(8, false)
			if err != nil {
				return 0, err
			}
			rem -= int64(l)
			bias := int64(1)<<(7*l-1) - 1
			s += int64(v) - bias
			if s < 0 || s > 1<<40 {
				return 0, errEBMLf("bad EBML lace size")
			}
			lace[i] = s
			sum += s
		}
	case 2: // fixed
		if rem < 0 || rem%int64(n) != 0 {
			return 0, errEBMLf("bad fixed-size lacing")
		}
		for i := range lace {
			lace[i] = rem / int64(n)
		}
		return rem, nil
	}
	if rem < 0 || sum > rem {
		return 0, errEBMLf("lace sizes overrun the block")
	}
	lace[n-1] = rem - sum
	return rem, nil
}

// commit records a block of the audio track.
func (p *webmParser) commit(b mkvBlockInfo) {
	if p.blocks == 0 || b.ts < p.firstTS {
		p.firstTS = b.ts
	}
	if p.blocks == 0 || b.ts >= p.lastTS {
		p.lastTS = b.ts
		p.last = b
	}
	p.blocks++
	p.packets = satAdd(p.packets, b.packets)
	if b.samples >= 0 {
		p.samples = satAdd(p.samples, b.samples)
	} else {
		p.exact = false
	}
}

func (p *webmParser) push(id uint32, end int64) error {
	if !p.open.push(id, end) {
		return errEBMLf("elements nested too deep")
	}
	return nil
}

// pop closes the innermost open element.
func (p *webmParser) pop() {
	switch p.open.pop() {
	case mkvTrackEntry:
		if !p.haveTrack && p.cur.typ == 2 {
			p.track, p.haveTrack = p.cur, true
			p.opus = p.track.codec() == "A_OPUS"
			if _, setup, ok := p.vorbisHeaders(); ok {
				if bs0, bs1 := p.vorbisBlock(false), p.vorbisBlock(true); bs0 > 0 && bs1 >= bs0 {
					p.vorbis = newVorbisClock(bs0, bs1, setup)
				}
			}
		}
	case mkvBlockGroup:
		if p.groupBlock {
			p.commit(p.group)
		}
		p.groupBlock = false
	}
}

// popEnded closes the known-size elements that end at the position.
func (p *webmParser) popEnded() {
	for {
		_, end, ok := p.open.top()
		if !ok || end < 0 || p.pos < end {
			return
		}
		p.pop()
	}
}

// childOf reports whether id may continue the unknown-size element parent.
func (p *webmParser) childOf(parent, id uint32) bool {
	switch parent {
	case mkvSegment:
		return id != ebmlHeaderID && id != mkvSegment
	case mkvCluster:
		return mkvClusterChild(id)
	}
	return true
}

func errEBMLf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errEBML}, args...)...)
}

// readVint reads a variable-length integer of at most maxLen bytes. With
// marker the length marker is kept (element IDs). It returns the value,
// its length in bytes and io.EOF only when no byte was left.
func (p *webmParser) readVint(maxLen int, marker bool) (uint64, int, error) {
	b, err := p.br.Peek(1)
	if len(b) == 0 {
		if err == nil {
			err = io.EOF
		}
		return 0, 0, err
	}
	n := bits.LeadingZeros8(b[0]) + 1
	if n > maxLen {
		return 0, 0, errEBMLf("invalid variable-length integer at offset %d", p.pos)
	}
	b, err = p.read(n)
	if err != nil {
		return 0, 0, err
	}
	v := uint64(b[0])
	if !marker {
		v &= 0xFF >> n
	}
	for _, c := range b[1:] {
		v = v<<8 | uint64(c)
	}
	return v, n, nil
}

func (p *webmParser) readID() (uint32, error) {
	v, _, err := p.readVint(4, true)
	return uint32(v), err
}

// readSize reads an element size; -1 for unknown (all value bits set).
func (p *webmParser) readSize() (int64, error) {
	v, n, err := p.readVint(8, false)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	if v == 1<<(7*n)-1 {
		return -1, nil
	}
	if v > math.MaxInt64/2 {
		return 0, errEBMLf("element size out of range")
	}
	return int64(v), nil
}

func (p *webmParser) readUint(size int64) (uint64, error) {
	if size > 8 {
		return 0, errEBMLf("integer element of %d bytes", size)
	}
	b, err := p.read(int(size))
	if err != nil {
		return 0, err
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v, nil
}

func (p *webmParser) readFloat(size int64) (float64, error) {
	switch size {
	case 0:
		return 0, nil
	case 4:
		b, err := p.read(4)
		if err != nil {
			return 0, err
		}
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b))), nil
	case 8:
		b, err := p.read(8)
		if err != nil {
			return 0, err
		}
		return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
	}
	return 0, errEBMLf("float element of %d bytes", size)
}

// readBytes reads up to len(dst) bytes of a size-byte element into dst
// and skips the rest.
// readPrivate reads a CodecPrivate, keeping its first mkvMaxPrivate bytes.
func (p *webmParser) readPrivate(size int64) ([]byte, error) {
	keep := min(size, mkvMaxPrivate)
	out := make([]byte, 0, min(keep, 4096))
	for int64(len(out)) < keep {
		b, err := p.read(int(min(keep-int64(len(out)), 4096)))
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, p.skip(size - keep)
}

func (p *webmParser) readBytes(size int64, dst []byte) (int, error) {
	n := int(min(size, int64(len(dst))))
	b, err := p.read(n)
	if err != nil {
		return 0, err
	}
	copy(dst, b)
	return n, p.skip(size - int64(n))
}
