package audio

import (
	"bufio"
	"bytes"
	"encoding/binary"
)

// Ogg: Opus, Vorbis and FLAC in Ogg.
//
// probeOgg walks the pages once. A page counts only when its CRC-32
// holds; anything else (a damaged or forged page, garbage between pages)
// is skipped up to the next "OggS" capture pattern. The first logical
// stream whose first packet is an Opus, Vorbis or FLAC identification
// header is measured; other streams are ignored.
//
// The duration comes from the granule position of that stream's last
// page that has one: (granule − pre-skip) / 48000 for Opus, granule / rate
// for Vorbis and FLAC, less the granule at which the stream starts when
// it does not start at 0 (a stream cut from a live one). The granule is
// then held to the packets actually present: it may not exceed the
// samples of every audio packet walked, nor fall below the samples of the
// packets before the last one of its page (a decoder trims at most that
// one). For Opus (TOC byte, RFC 6716 §3.1) and FLAC (frame header) those
// counts are exact, and for Vorbis too once the modes of its setup header
// are read (vorbis.go). A Vorbis setup header that cannot be read leaves
// bounds (blocksize_0/2 to blocksize_1/2 per packet), and the granule may
// then fall to the samples before its page. An honest file is measured
// exactly by its granule; a forged granule on a page with a valid CRC can
// move the duration only within those bounds.
//
// Header pages only (granule 0), or a pre-skip at least the whole
// stream: no samples. Limits: chained streams (a second stream after the
// first ends) are not added to the first; a Vorbis stream cut from a live
// one is measured up to its upper bound.

// oggMaxPage is the longest page: header, 255 lacing values, 255×255 bytes.
const oggMaxPage = 27 + 255 + 255*255

// oggMaxBadBytes caps the bytes checksummed for pages whose CRC fails.
// Every "OggS" in a damaged or hostile file may claim a 64 KiB page, and
// looking for the next page restarts just after it: without a cap, a file
// of n bytes could cost n × 64 KiB of CRC.
const oggMaxBadBytes = 32 << 20

var oggCapture = []byte("OggS")

// oggStream is the logical stream being measured.
type oggStream struct {
	codec    string
	serial   uint32
	rate     int64 // granule positions count samples at this rate
	channels int
	preSkip  int64 // Opus
	bs0, bs1 int64 // Vorbis block sizes
	// Vorbis: the setup header while it is read (nil once it is), and
	// the clock its modes give (nil: the packets' bounds are used).
	setup    []byte
	setupBig bool
	vclock   *vorbisClock
	flac     flacStreamInfo

	packets  int64 // packets completed, headers included
	inPacket bool  // a packet continues on the next page
	head     [flacMaxHeader]byte
	headLen  int

	// Samples of the completed audio packets: exact for Opus and FLAC,
	// bounds for Vorbis.
	sumLo, sumHi int64
	primed       bool // an audio packet was seen (the first gives Vorbis no samples)
	started      bool
	start        int64 // granule at which the stream starts
	granule      int64 // of the last page that had one
	lo, hi       int64 // bounds for granule − start at that page
}

func probeOgg(br *bufio.Reader) (Info, error) {
	info := Info{Format: Ogg}
	if br.Size() < oggMaxPage {
		br = bufio.NewReaderSize(br, oggMaxPage)
	}
	var (
		st      *oggStream
		pages   int   // with a valid CRC
		unknown bool  // a stream of another codec was seen
		bad     int64 // bytes checksummed in pages that failed
	)
	for {
		ok, err := oggSync(br)
		if err != nil {
			return info, err
		}
		if !ok {
			break
		}
		page, n, err := oggPage(br)
		if err != nil {
			return info, err
		}
		if page == nil { // not a page: look further
			if bad += int64(n); bad > oggMaxBadBytes {
				return info, Unsupported("The Ogg file is damaged: too many pages fail their checksum.")
			}
			br.Discard(1)
			continue
		}
		pages++
		serial := binary.LittleEndian.Uint32(page[14:18])
		if st == nil && page[5]&0x02 != 0 { // beginning of a stream
			st = newOggStream(page, serial)
			if st == nil {
				unknown = true
			}
		}
		if st != nil && serial == st.serial {
			st.page(page)
		}
		br.Discard(len(page))
	}
	switch {
	case st == nil && unknown:
		return info, Unsupported("The Ogg file holds no Opus, Vorbis or FLAC stream.")
	case st == nil && pages == 0:
		return info, Unsupported("The Ogg file has no valid page.")
	case st == nil:
		return info, Unsupported("The Ogg file has no stream header.")
	}
	info.Codec, info.Channels = st.codec, st.channels
	info.SampleRate = int(st.rate)
	samples := st.samples()
	info.HasSamples = samples > 0
	info.Duration = framesDuration(samples, st.rate)
	return info, nil
}

// oggSync discards bytes up to the next "OggS"; false at the end of the
// input.
func oggSync(br *bufio.Reader) (bool, error) {
	if b, err := peekUpTo(br, 4); err != nil || bytes.Equal(b, oggCapture) {
		return err == nil, err
	}
	for {
		buf, err := peekUpTo(br, br.Size())
		if err != nil {
			return false, err
		}
		if len(buf) < 4 {
			br.Discard(len(buf))
			return false, nil
		}
		if i := bytes.Index(buf, oggCapture); i >= 0 {
			br.Discard(i)
			return true, nil
		}
		br.Discard(len(buf) - 3)
	}
}

// oggPage returns the page at br's position (without consuming it) when
// it is whole and its CRC holds; otherwise nil and how many bytes were
// checksummed in vain.
func oggPage(br *bufio.Reader) (page []byte, bad int, err error) {
	h, err := peekUpTo(br, 27)
	if err != nil || len(h) < 27 || h[4] != 0 {
		return nil, 0, err
	}
	nseg := int(h[26])
	h, err = peekUpTo(br, 27+nseg)
	if err != nil || len(h) < 27+nseg {
		return nil, 0, err
	}
	n := 27 + nseg
	for _, l := range h[27:] {
		n += int(l)
	}
	page, err = peekUpTo(br, n)
	if err != nil || len(page) < n {
		return nil, 0, err
	}
	crc := oggCRC(0, page[:22])
	crc = oggCRC(crc, []byte{0, 0, 0, 0})
	crc = oggCRC(crc, page[26:])
	if crc != binary.LittleEndian.Uint32(page[22:26]) {
		return nil, n, nil
	}
	return page, 0, nil
}

// newOggStream identifies the stream whose first page is page from its
// first packet; nil for a codec this package does not measure.
func newOggStream(page []byte, serial uint32) *oggStream {
	nseg := int(page[26])
	body := page[27+nseg:]
	n := 0
	for _, l := range page[27 : 27+nseg] {
		n += int(l)
		if l < 255 {
			break
		}
	}
	p := body[:n]
	st := &oggStream{serial: serial}
	switch {
	case len(p) >= 19 && string(p[:8]) == "OpusHead" && p[8]>>4 == 0 && p[9] > 0:
		st.codec, st.rate, st.channels = "opus", 48000, int(p[9])
		st.preSkip = int64(binary.LittleEndian.Uint16(p[10:12]))
	case len(p) >= 30 && string(p[:7]) == "\x01vorbis" && binary.LittleEndian.Uint32(p[7:11]) == 0:
		st.codec, st.channels = "vorbis", int(p[11])
		st.rate = int64(binary.LittleEndian.Uint32(p[12:16]))
		e0, e1 := p[28]&0xF, p[28]>>4
		if st.channels == 0 || st.rate == 0 || e0 < 6 || e1 > 13 || e0 > e1 {
			return nil
		}
		st.bs0, st.bs1 = 1<<e0, 1<<e1
	case len(p) >= 51 && string(p[:5]) == "\x7fFLAC" && p[5] == 1 && string(p[9:13]) == "fLaC" && p[13]&0x7F == 0:
		si, err := parseFLACStreamInfo(p[17:51])
		if err != nil {
			return nil
		}
		st.codec, st.rate, st.channels, st.flac = "flac", si.rate, si.channels, si
	default:
		return nil
	}
	return st
}

// page takes one page of the stream (whole, CRC checked).
func (st *oggStream) page(page []byte) {
	nseg := int(page[26])
	segs := page[27 : 27+nseg]
	body := page[27+nseg:]
	granule := int64(binary.LittleEndian.Uint64(page[6:14]))
	continued := page[5]&0x01 != 0

	orphan := continued && !st.inPacket // the rest of a packet never seen
	if !continued {
		st.inPacket = false // a packet cut short by a lost page: dropped
	}
	lo0 := st.sumLo
	var pageLo, pageHi, lastLo int64
	audio := false
	off := 0
	for _, l := range segs {
		seg := body[off : off+int(l)]
		off += int(l)
		if !orphan && !st.inPacket {
			st.inPacket = true
			st.headLen = copy(st.head[:], seg)
			st.setup = st.setup[:0]
		}
		if !orphan && st.codec == "vorbis" && st.packets == 2 { // the setup header
			if len(st.setup)+len(seg) > vorbisMaxSetup {
				st.setupBig = true
			} else {
				st.setup = append(st.setup, seg...)
			}
		}
		if l == 255 {
			continue // the packet goes on
		}
		if orphan {
			orphan = false
			continue
		}
		st.inPacket = false
		lo, hi, isAudio := st.packet(st.head[:st.headLen])
		st.packets++
		if isAudio {
			audio = true
			pageLo += lo
			pageHi += hi
			lastLo = lo
		}
	}
	st.sumLo += pageLo
	st.sumHi += pageHi
	if granule < 0 { // -1: no packet ends on this page
		return
	}
	if !st.started && audio {
		st.started = true
		if st.exact() { // where the stream starts
			st.start = max(granule-pageHi, 0)
		}
	}
	st.granule, st.lo, st.hi = granule, lo0, st.sumHi
	if st.exact() {
		// A granule may trim the end of the last packet of its page (a
		// decoder discards no more than that), not the packets before it.
		st.lo = st.sumLo - lastLo
	}
}

// exact reports whether the packets' samples are counted exactly (not
// bounded): always but for a Vorbis stream whose modes are unknown.
func (st *oggStream) exact() bool { return st.codec != "vorbis" || st.vclock != nil }

// packet reports the samples of a completed packet whose first bytes are
// head (bounds, equal when exact) and whether it is an audio packet.
func (st *oggStream) packet(head []byte) (lo, hi int64, audio bool) {
	switch st.codec {
	case "opus":
		if st.packets < 2 { // OpusHead, OpusTags
			return 0, 0, false
		}
		n := int64(opusTOCSamples(head))
		return n, n, true
	case "vorbis":
		if st.packets == 2 { // the setup header, complete
			if !st.setupBig {
				st.vclock = newVorbisClock(st.bs0, st.bs1, st.setup)
			}
			st.setup = nil
			return 0, 0, false
		}
		if st.packets < 3 || len(head) == 0 || head[0]&1 != 0 {
			return 0, 0, false
		}
		n := int64(-1)
		if st.vclock != nil {
			n = st.vclock.samples(head[0])
		}
		if !st.primed { // the first audio packet only primes the decoder
			st.primed = true
			return 0, 0, true
		}
		if n >= 0 {
			return n, n, true
		}
		return st.bs0 / 2, st.bs1 / 2, true
	case "flac":
		if st.packets == 0 {
			return 0, 0, false
		}
		f, ok := parseFLACFrame(head, &st.flac)
		if !ok { // a metadata block
			return 0, 0, false
		}
		return f.blockSize, f.blockSize, true
	}
	return 0, 0, false
}

// samples is the measured duration in granule units.
func (st *oggStream) samples() int64 {
	n := st.granule - st.start
	n = max(n, st.lo)
	n = min(n, st.hi)
	n -= st.preSkip
	return max(n, 0)
}

// opusTOCSamples is the duration in 48 kHz samples of the Opus packet
// that starts with p, from its TOC byte and, for code 3, its frame count
// byte (RFC 6716 §3.1); 0 for an empty or invalid packet.
func opusTOCSamples(p []byte) int {
	if len(p) == 0 {
		return 0
	}
	toc := p[0]
	cfg := toc >> 3
	var frame int
	switch {
	case cfg < 12: // SILK: 10, 20, 40, 60 ms
		frame = [4]int{480, 960, 1920, 2880}[cfg&3]
	case cfg < 16: // hybrid: 10, 20 ms
		frame = [2]int{480, 960}[cfg&1]
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = [4]int{120, 240, 480, 960}[cfg&3]
	}
	frames := 1
	switch toc & 3 {
	case 1, 2:
		frames = 2
	case 3:
		if len(p) < 2 {
			return 0
		}
		frames = int(p[1] & 0x3F)
	}
	if frame*frames > 5760 { // a packet holds at most 120 ms
		return 0
	}
	return frame * frames
}

// oggCRC continues the Ogg page checksum (CRC-32, polynomial 0x04C11DB7,
// not reflected, initial 0, no final xor) over b, eight bytes at a time
// (slicing-by-8).
func oggCRC(crc uint32, b []byte) uint32 {
	t := &oggCRCTables
	for len(b) >= 8 {
		crc ^= uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		crc = t[7][crc>>24] ^ t[6][crc>>16&0xFF] ^ t[5][crc>>8&0xFF] ^ t[4][crc&0xFF] ^
			t[3][b[4]] ^ t[2][b[5]] ^ t[1][b[6]] ^ t[0][b[7]]
		b = b[8:]
	}
	for _, c := range b {
		crc = crc<<8 ^ t[0][byte(crc>>24)^c]
	}
	return crc
}

// oggCRCTables[0] is the byte-at-a-time table; oggCRCTables[k][i] is the
// CRC of byte i followed by k zero bytes.
var oggCRCTables = func() (t [8][256]uint32) {
	for i := range t[0] {
		c := uint32(i) << 24
		for range 8 {
			if c&0x80000000 != 0 {
				c = c<<1 ^ 0x04C11DB7
			} else {
				c <<= 1
			}
		}
		t[0][i] = c
	}
	for k := 1; k < 8; k++ {
		for i := range t[k] {
			c := t[k-1][i]
			t[k][i] = c<<8 ^ t[0][c>>24]
		}
	}
	return t
}()
