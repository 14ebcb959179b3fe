package audio

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
)

// Helpers shared by the streaming parsers of mp3.go, aac.go, webm.go and
// mp4.go: skipping, sample-count arithmetic, metadata tags, and a walker
// for sync-word framed streams (MPEG audio, ADTS).

// skip discards n bytes from br. It returns how many it discarded and
// io.ErrUnexpectedEOF when the input ended first. n is a size read from
// the file, so it may be anything: nothing is allocated for it.
func skip(br *bufio.Reader, n int64) (int64, error) {
	var done int64
	for n > 0 {
		step := n
		if step > 1<<30 {
			step = 1 << 30
		}
		d, err := br.Discard(int(step))
		done += int64(d)
		n -= int64(d)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return done, err
		}
	}
	return done, nil
}

// satAdd adds two non-negative counts, saturating at MaxInt64.
func satAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// satMul multiplies two non-negative counts, saturating at MaxInt64.
func satMul(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}

// mulDiv returns a*b/c for non-negative a, b and positive c without
// overflowing the intermediate product (saturating the result).
func mulDiv(a, b, c int64) int64 {
	if a <= 0 || b <= 0 || c <= 0 {
		return 0
	}
	if a <= math.MaxInt64/b {
		return a * b / c
	}
	q := float64(a) / float64(c) * float64(b)
	if q >= math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}

// tagLen reports the length of the metadata tag starting at h (ID3v2,
// ID3v1 "TAG", an APEv2 header or footer), 0 when h does not start one.
// h holds at least 32 bytes unless the input ends sooner. Sizes come from
// the file and are only ever skipped.
func tagLen(h []byte) int64 {
	switch {
	case len(h) >= 10 && string(h[:3]) == "ID3":
		n, _ := id3v2Len(h)
		return n
	case len(h) >= 3 && string(h[:3]) == "TAG":
		return 128
	case len(h) >= 32 && string(h[:8]) == "APETAGEX":
		if flags := binary.LittleEndian.Uint32(h[20:24]); flags&(1<<29) != 0 {
			// the header: the items and the footer follow
			return 32 + int64(binary.LittleEndian.Uint32(h[12:16]))
		}
		return 32
	}
	return 0
}

// id3v2Len returns the total length of the ID3v2 tag at h (len(h) >= 10):
// header, syncsafe size and the footer when flagged.
func id3v2Len(h []byte) (int64, bool) {
	if string(h[:3]) != "ID3" || h[3] == 0xFF || h[4] == 0xFF {
		return 0, false
	}
	var size int64
	for _, b := range h[6:10] {
		if b&0x80 != 0 {
			return 0, false
		}
		size = size<<7 | int64(b)
	}
	n := 10 + size
	if h[5]&0x10 != 0 {
		n += 10
	}
	return n, true
}

// syncFormat describes a stream of frames that each start with a sync
// word and a fixed-size header giving the frame's length (MPEG audio,
// ADTS).
type syncFormat struct {
	hdrLen   int // bytes needed to parse a header
	maxFrame int // longest frame the header can describe
	// parse reports the length in bytes and the samples of the frame
	// whose header is h (len(h) >= hdrLen), or ok false when h is not a
	// valid header or does not match ref (nil ref matches any).
	parse func(h, ref []byte) (n, samples int, ok bool)
}

// resyncWindow is how far resync looks at once; it exceeds the longest
// frame (ADTS: 8191 bytes) with room for the next header.
const resyncWindow = 16 << 10

// errNoFrame reports a stream in which find saw no valid frame.
var errNoFrame = errors.New("no frame")

// find skips metadata tags and garbage up to the first frame whose header
// is valid and is followed by another valid frame, a tag or the end of
// the input; it leaves br at that frame. It returns errNoFrame at the end
// of the input, with data true when some of the skipped bytes were
// neither tags nor zero padding.
func (f *syncFormat) find(br *bufio.Reader) (data bool, err error) {
	for {
		ok, d, err := f.resync(br, nil, false)
		data = data || d
		if err != nil || ok {
			return data, err
		}
		// a tag at the current position
		h, _ := br.Peek(32)
		n := tagLen(h)
		if n <= 0 {
			return data, errNoFrame
		}
		if _, err := skip(br, n); err != nil {
			return data, errNoFrame
		}
	}
}

// walk counts the frames matching ref from br's position to the end of
// the input, skipping tags and resynchronizing on garbage. A frame cut
// short by the end of the input is not counted.
func (f *syncFormat) walk(br *bufio.Reader, ref []byte, count func(samples int)) error {
	for {
		h, err := br.Peek(f.hdrLen)
		if len(h) < f.hdrLen {
			if err == io.EOF {
				err = nil
			}
			return err
		}
		if n, s, ok := f.parse(h, ref); ok {
			if d, err := br.Discard(n); d < n {
				if err == io.EOF {
					err = nil
				}
				return err
			}
			count(s)
			continue
		}
		h, _ = br.Peek(32)
		if n := tagLen(h); n > 0 {
			if _, err := skip(br, n); err != nil {
				return nil
			}
			continue
		}
		ok, _, err := f.resync(br, ref, true)
		if err != nil || !ok {
			return err
		}
	}
}

// resync scans forward from br's position (past its first byte when
// drop) for a frame header that is valid, matches ref, and whose frame is
// followed by another matching frame, a tag or the end of the input; it
// also stops at a tag at the current position (ok false, err nil). On
// success br is left at the frame. ok false with err nil at the end of the
// input. data reports whether any discarded byte was non-zero.
func (f *syncFormat) resync(br *bufio.Reader, ref []byte, drop bool) (ok, data bool, err error) {
	discard := func(buf []byte, n int) {
		for _, c := range buf[:n] {
			if c != 0 {
				data = true
				break
			}
		}
		br.Discard(n)
	}
	if drop {
		buf, _ := br.Peek(1)
		if len(buf) == 0 {
			return false, data, nil
		}
		discard(buf, 1)
	}
	for {
		// A window smaller than the buffer: Peek slides the buffered
		// bytes when it refills, so peeking all of it on every resync
		// would cost a buffer's worth of copying each time.
		buf, perr := br.Peek(min(br.Size(), resyncWindow))
		atEOF := perr != nil
		if perr != nil && perr != io.EOF {
			return false, data, perr
		}
		if len(buf) == 0 {
			return false, data, nil
		}
		if !drop {
			if tagLen(buf) > 0 {
				// a tag here: the caller skips it
				return false, data, nil
			}
		}
		i := 0
		for {
			j := bytes.IndexByte(buf[i:], 0xFF)
			if j < 0 {
				discard(buf, len(buf))
				break
			}
			i += j
			if !atEOF && i > 0 && i+f.maxFrame+32 > len(buf) {
				// not enough lookahead: move the candidate to the front
				discard(buf, i)
				break
			}
			if f.validAt(buf, i, ref, atEOF) {
				discard(buf, i)
				return true, data, nil
			}
			i++
		}
	}
}

// validAt reports whether buf[i:] starts a frame matching ref that is
// followed by a frame matching it, a tag or the end of the input (atEOF
// means buf holds everything that is left). A frame cut short by the end
// of the input is valid too: the walk will then not count it.
func (f *syncFormat) validAt(buf []byte, i int, ref []byte, atEOF bool) bool {
	if i+f.hdrLen > len(buf) {
		return false
	}
	n, _, ok := f.parse(buf[i:], ref)
	if !ok {
		return false
	}
	next := i + n
	if next >= len(buf) {
		return atEOF
	}
	if ref == nil {
		ref = buf[i : i+f.hdrLen]
	}
	if next+f.hdrLen <= len(buf) {
		if _, _, ok := f.parse(buf[next:], ref); ok {
			return true
		}
	}
	return tagLen(buf[next:]) > 0
}

// cursor reads a bufio.Reader front to back, counting the offset.
type cursor struct {
	br  *bufio.Reader
	pos int64
}

// read returns the next n bytes (n <= the buffer size), valid until the
// next read: io.EOF when no byte was left, io.ErrUnexpectedEOF when
// some were.
func (c *cursor) read(n int) ([]byte, error) {
	b, err := c.br.Peek(n)
	if len(b) < n {
		if len(b) == 0 && err == io.EOF {
			return nil, io.EOF
		}
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	c.br.Discard(n)
	c.pos += int64(n)
	return b, nil
}

// skip discards n bytes: io.ErrUnexpectedEOF when the input ends first.
func (c *cursor) skip(n int64) error {
	d, err := skip(c.br, n)
	c.pos += d
	return err
}

// nest is the stack of open containers: MP4 boxes, EBML master elements.
type nest[K comparable] struct {
	open [12]struct {
		id  K
		end int64 // -1: unknown size, or up to the end of the input
	}
	depth int
}

// push opens a container; false when they nest too deep.
func (n *nest[K]) push(id K, end int64) bool {
	if n.depth == len(n.open) {
		return false
	}
	n.open[n.depth].id, n.open[n.depth].end = id, end
	n.depth++
	return true
}

// top returns the innermost open container.
func (n *nest[K]) top() (id K, end int64, ok bool) {
	if n.depth == 0 {
		return id, -1, false
	}
	t := n.open[n.depth-1]
	return t.id, t.end, true
}

// pop closes the innermost open container and returns its id.
func (n *nest[K]) pop() K {
	n.depth--
	return n.open[n.depth].id
}

// limit is the end of the innermost open container of known size, -1
// when there is none.
func (n *nest[K]) limit() int64 {
	for i := n.depth - 1; i >= 0; i-- {
		if n.open[i].end >= 0 {
			return n.open[i].end
		}
	}
	return -1
}
