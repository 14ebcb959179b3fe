package audio

// Vorbis packet durations without decoding.
//
// A Vorbis audio packet's first byte names its mode (after the packet
// type bit), each mode says whether its block is short or long
// (blocksize_0 or blocksize_1 of the identification header), and a
// packet decodes to a quarter of the previous block plus a quarter of its
// own. The first audio packet only primes the decoder.
//
// The modes are the last fields of the setup header, behind codebooks,
// floors, residues and mappings of variable length that only a decoder
// parses. They are read backwards from the header's end instead, as
// FFmpeg's and liboggz's parsers do: the framing bit, then mode entries
// of 41 bits (block flag 1, window type 16, transform type 16, mapping 8,
// read back to front) as long as window and transform types are 0 and
// the mapping is below 64, noting each count at which the 6 bits before
// it say that count (vorbis_mode_count − 1). The last such count is the
// mode count. The scan can be fooled into a count that is too high only
// by a crafted header, which a decoder would then read differently too;
// a header the scan cannot read leaves the caller with its bounds.

// vorbisMaxSetup caps the setup header kept to read the modes: real ones
// are a few KiB (codebooks), rarely tens.
const vorbisMaxSetup = 256 << 10

// vorbisClock measures the packets of one Vorbis stream.
type vorbisClock struct {
	block    [2]int64 // blocksize_0, blocksize_1
	long     []bool   // per mode: a long block
	modeMask byte     // the mode's bits in a packet's first byte
	prev     int64    // the previous block's size
}

// newVorbisClock reads the modes of setup (a whole setup header packet);
// nil when it cannot.
func newVorbisClock(bs0, bs1 int64, setup []byte) *vorbisClock {
	long, ok := vorbisModes(setup)
	if !ok {
		return nil
	}
	c := &vorbisClock{block: [2]int64{bs0, bs1}, long: long}
	bits := 0 // bits of the mode number: ilog(count − 1)
	for n := len(long) - 1; n > 0; n >>= 1 {
		bits++
	}
	c.modeMask = byte((1<<bits)-1) << 1
	c.prev = c.block[0]
	if long[0] {
		c.prev = c.block[1]
	}
	return c
}

// samples is what the audio packet starting with first decodes to (for
// any packet but the first, which only primes the decoder); 0 for a
// packet whose mode does not exist (a decoder skips it).
func (c *vorbisClock) samples(first byte) int64 {
	mode := int(first&c.modeMask) >> 1
	if mode >= len(c.long) {
		return 0
	}
	cur := c.block[0]
	if c.long[mode] {
		cur = c.block[1]
	}
	// As libvorbis counts it: a quarter of the block before (the one
	// decoded, whatever a long block's window flag says) and of this one.
	n := (c.prev + cur) / 4
	c.prev = cur
	return n
}

// vorbisModes reads the block flag of each mode from a setup header,
// scanning back from its end (see above).
func vorbisModes(setup []byte) (long []bool, ok bool) {
	if len(setup) < 7 || setup[0] != 5 || string(setup[1:7]) != "vorbis" {
		return nil, false
	}
	r := backBits{b: setup, left: len(setup) * 8}
	for r.left > 97 { // the framing bit: the last bit set
		if r.read(1) == 1 {
			break
		}
	}
	if r.left <= 97 {
		return nil, false
	}
	modes := r // just before the last mode
	count, last := 0, 0
	for r.left >= 97 {
		if r.read(8) > 63 || r.read(16) != 0 || r.read(16) != 0 {
			break
		}
		r.read(1)
		count++
		if count > 64 {
			break
		}
		if peek := r; peek.read(6)+1 == count {
			last = count
		}
	}
	if last == 0 || last > 63 {
		return nil, false
	}
	long = make([]bool, last)
	for i := last - 1; i >= 0; i-- {
		modes.read(40)
		long[i] = modes.read(1) == 1
	}
	return long, true
}

// backBits reads the bits of a Vorbis (least significant bit first)
// bitstream backwards from its end: a field read back to front comes out
// with its own value.
type backBits struct {
	b    []byte
	left int // bits not read yet: those at 0 … left−1
}

func (r *backBits) read(n int) int {
	v := 0
	for ; n > 0 && r.left > 0; n-- {
		r.left--
		v = v<<1 | int(r.b[r.left/8]>>(r.left%8)&1)
	}
	return v
}
