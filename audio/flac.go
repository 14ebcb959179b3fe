package audio

import (
	"bufio"
	"bytes"
	"encoding/binary"
)

// FLAC.
//
// probeFLAC reads the metadata blocks (STREAMINFO gives the sample rate
// and channels; the others are skipped) and then always walks the frames:
// it scans for frame sync codes and keeps a frame header only when its
// CRC-8 holds, it agrees with STREAMINFO (channels, sample rate, sample
// size) and its frame number (fixed block size) or sample number
// (variable block size) continues the frames already counted. A header
// that does not continue them is counted only once the next header
// continues it, so the walk resynchronizes after a damaged frame but a
// false sync inside compressed data is never counted.
//
// The duration is the samples of the frames walked, whatever STREAMINFO's
// total says: 0 (unknown), more (truncated file, or forged) or fewer
// (forged). Taking the smaller of the two would let a header forged short
// buy a shorter charge; the frame chain cannot be inflated by chance.
// A file with no frames (metadata only) has no samples.
//
// Limits: frames are not decoded and their CRC-16 is not checked, so a
// frame cut short by the end of the input counts whole (at most one
// block, 4096 samples for most encoders); a file forged from bare frame
// headers is measured by its headers.

// flacStreamInfo is the STREAMINFO metadata block.
type flacStreamInfo struct {
	rate     int64
	channels int
	bits     int
	total    int64 // 0 when unknown
}

// parseFLACStreamInfo reads the 34-byte STREAMINFO body b.
func parseFLACStreamInfo(b []byte) (flacStreamInfo, error) {
	if len(b) < 34 {
		return flacStreamInfo{}, Unsupported("The FLAC STREAMINFO block is truncated.")
	}
	v := binary.BigEndian.Uint64(b[10:18])
	si := flacStreamInfo{
		rate:     int64(v >> 44),
		channels: int(v>>41&7) + 1,
		bits:     int(v>>36&31) + 1,
		total:    int64(v & (1<<36 - 1)),
	}
	if si.rate == 0 {
		return si, Unsupported("The FLAC STREAMINFO declares a sample rate of 0.")
	}
	return si, nil
}

func probeFLAC(br *bufio.Reader) (Info, error) {
	info := Info{Format: FLAC, Codec: "flac"}
	b, err := peekUpTo(br, 4+4+34)
	if err != nil {
		return info, err
	}
	if len(b) < 8 {
		return info, Unsupported("The FLAC file is truncated before its STREAMINFO block.")
	}
	if b[4]&0x7F != 0 {
		return info, Unsupported("The FLAC file does not start with a STREAMINFO block.")
	}
	last := b[4]&0x80 != 0
	size := int64(b[5])<<16 | int64(b[6])<<8 | int64(b[7])
	if size < 34 {
		return info, Unsupported("The FLAC STREAMINFO block is %d bytes; it is 34.", size)
	}
	si, err := parseFLACStreamInfo(b[8:])
	if err != nil {
		return info, err
	}
	info.SampleRate, info.Channels = int(si.rate), si.channels
	br.Discard(8)
	if got, err := discardUpTo(br, size); err != nil || got < size {
		return info, err // metadata only
	}
	// The other metadata blocks.
	for !last {
		h, err := peekUpTo(br, 4)
		if err != nil {
			return info, err
		}
		if len(h) < 4 {
			return info, nil // metadata only
		}
		if h[0] == 0xFF || h[0]&0x7F == 127 {
			break // frames without a "last" flag before them, or garbage
		}
		last = h[0]&0x80 != 0
		size := int64(h[1])<<16 | int64(h[2])<<8 | int64(h[3])
		br.Discard(4)
		if got, err := discardUpTo(br, size); err != nil || got < size {
			return info, err
		}
	}
	w := flacWalk{si: &si}
	if err := w.run(br); err != nil {
		return info, err
	}
	info.HasSamples = w.samples > 0
	info.Duration = framesDuration(w.samples, si.rate)
	return info, nil
}

// flacFrame is a frame header.
type flacFrame struct {
	variable  bool  // variable block size: number counts samples
	number    int64 // frame number, or first sample number when variable
	blockSize int64
	length    int // bytes in the header, CRC-8 included
}

// next is the number the following frame carries.
func (f flacFrame) next() int64 {
	if f.variable {
		return f.number + f.blockSize
	}
	return f.number + 1
}

// flacMaxHeader is the longest frame header: sync and codes (4), a 7-byte
// coded number, 2 bytes of block size, 2 of sample rate, CRC-8.
const flacMaxHeader = 16

// parseFLACFrame parses the frame header at the start of b, which holds
// flacMaxHeader bytes or everything left. ok is false unless it is a
// well-formed header whose CRC-8 holds and which agrees with si.
func parseFLACFrame(b []byte, si *flacStreamInfo) (f flacFrame, ok bool) {
	if len(b) < 6 || b[0] != 0xFF || b[1]&0xFE != 0xF8 {
		return f, false
	}
	f.variable = b[1]&1 == 1
	bsCode, rateCode := b[2]>>4, b[2]&0xF
	chanCode, sizeCode := b[3]>>4, b[3]>>1&7
	if bsCode == 0 || rateCode == 15 || chanCode > 10 || sizeCode == 3 || b[3]&1 != 0 {
		return f, false
	}
	// The frame or sample number, coded like UTF-8 (up to 36 bits).
	c := b[4]
	n := 0 // continuation bytes
	var num int64
	switch {
	case c < 0x80:
		num = int64(c)
	case c >= 0xC0 && c < 0xFF:
		for m := byte(0x40); c&m != 0; m >>= 1 {
			n++
		}
		num = int64(c & (0x3F >> n))
	default:
		return f, false
	}
	if n > 6 || (!f.variable && n > 5) {
		return f, false
	}
	i := 5
	if len(b) < i+n {
		return f, false
	}
	for _, c := range b[i : i+n] {
		if c&0xC0 != 0x80 {
			return f, false
		}
		num = num<<6 | int64(c&0x3F)
	}
	i += n
	f.number = num
	// Block size and sample rate, possibly at the end of the header.
	extra := 0
	switch bsCode {
	case 6:
		extra = 1
	case 7:
		extra = 2
	}
	switch rateCode {
	case 12:
		extra++
	case 13, 14:
		extra += 2
	}
	if len(b) < i+extra+1 {
		return f, false
	}
	switch {
	case bsCode == 1:
		f.blockSize = 192
	case bsCode <= 5:
		f.blockSize = 576 << (bsCode - 2)
	case bsCode == 6:
		f.blockSize = int64(b[i]) + 1
		i++
	case bsCode == 7:
		f.blockSize = int64(binary.BigEndian.Uint16(b[i:])) + 1
		i += 2
	default:
		f.blockSize = 256 << (bsCode - 8)
	}
	var rate int64
	switch rateCode {
	case 0:
		rate = si.rate
	case 12:
		rate = int64(b[i]) * 1000
		i++
	case 13:
		rate = int64(binary.BigEndian.Uint16(b[i:]))
		i += 2
	case 14:
		rate = int64(binary.BigEndian.Uint16(b[i:])) * 10
		i += 2
	default:
		rate = flacRates[rateCode]
	}
	if flacCRC8(b[:i]) != b[i] {
		return f, false
	}
	f.length = i + 1
	channels := int(chanCode) + 1
	if chanCode >= 8 {
		channels = 2
	}
	if rate != si.rate || channels != si.channels {
		return f, false
	}
	if sizeCode != 0 && flacSampleSizes[sizeCode] != si.bits {
		return f, false
	}
	return f, true
}

var flacRates = [12]int64{0, 88200, 176400, 192000, 8000, 16000, 22050, 24000, 32000, 44100, 48000, 96000}

var flacSampleSizes = [8]int{0, 8, 12, 0, 16, 20, 24, 32}

// flacWalk counts the samples of a chain of frames.
type flacWalk struct {
	si      *flacStreamInfo
	frames  int64
	samples int64
	last    flacFrame // the last frame counted
	cand    flacFrame // a frame that did not continue the chain
	hasCand bool
}

// add takes the frame header f found in the stream.
func (w *flacWalk) add(f flacFrame) {
	switch {
	case w.frames == 0 && f.number == 0,
		w.frames > 0 && f.variable == w.last.variable && f.number == w.last.next():
		w.count(f)
	case w.hasCand && f.variable == w.cand.variable && f.number == w.cand.next():
		w.count(w.cand)
		w.count(f)
	case w.frames == 0 || f.number > w.last.next():
		w.cand, w.hasCand = f, true
	}
}

func (w *flacWalk) count(f flacFrame) {
	w.frames++
	w.samples += f.blockSize
	w.last, w.hasCand = f, false
}

// run scans br to its end for frame headers.
func (w *flacWalk) run(br *bufio.Reader) error {
	for {
		buf, err := peekUpTo(br, br.Size())
		if err != nil {
			return err
		}
		if len(buf) == 0 {
			return nil
		}
		atEOF := len(buf) < br.Size()
		i := 0
		for {
			j := bytes.IndexByte(buf[i:], 0xFF)
			if j < 0 {
				i = len(buf)
				break
			}
			i += j
			if !atEOF && i+flacMaxHeader > len(buf) {
				break // read more before looking at this one
			}
			if f, ok := parseFLACFrame(buf[i:min(i+flacMaxHeader, len(buf))], w.si); ok {
				w.add(f)
				i += f.length
				continue
			}
			i++
		}
		br.Discard(i)
		if atEOF && i >= len(buf) {
			return nil
		}
	}
}

// flacCRC8 is FLAC's frame header CRC: polynomial x^8+x^2+x+1, initial 0.
func flacCRC8(b []byte) byte {
	var crc byte
	for _, c := range b {
		crc = flacCRC8Table[crc^c]
	}
	return crc
}

var flacCRC8Table = func() (t [256]byte) {
	for i := range t {
		c := byte(i)
		for range 8 {
			if c&0x80 != 0 {
				c = c<<1 ^ 0x07
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()
