package audio

import "encoding/binary"

// Checks for raw PCM that arrives in pieces (a WebSocket stream), frame by
// frame, without buffering the stream.

// streamHeadMax is how much of a stream's start Head keeps: enough to
// confirm an MPEG audio or ADTS frame header by the next one (ADTS frames
// reach 8191 bytes).
const streamHeadMax = 8192 + 16

// Head recognizes a container at the start of a stream declared raw PCM,
// as the stream's first pieces arrive. A magic that needs more bytes than
// have arrived, or an MPEG audio or ADTS frame header whose following
// frame has not arrived yet, leaves it undecided; it then keeps a copy of
// the stream's start, at most 8 KiB, until it can decide. The zero value
// is ready to use.
type Head struct {
	buf     []byte
	decided bool
}

// Add feeds the next piece of the stream. It returns the container found
// at the stream's start ("a WAV header", "an Ogg page", …), or "" when
// there is none or it cannot tell yet; decided reports whether Add has
// made up its mind (later calls return the same answer at no cost).
func (h *Head) Add(p []byte) (container string, decided bool) {
	if h.decided {
		return "", true
	}
	if len(h.buf) == 0 && len(p) >= streamHeadMax {
		// The whole head is in this piece: no copy.
		return h.decide(p[:streamHeadMax], true)
	}
	n := min(len(p), streamHeadMax-len(h.buf))
	h.buf = append(h.buf, p[:n]...)
	return h.decide(h.buf, len(h.buf) == streamHeadMax)
}

func (h *Head) decide(head []byte, full bool) (string, bool) {
	name, more := streamContainer(head)
	if name != "" || !more || full {
		h.decided, h.buf = true, nil
		return name, true
	}
	return "", false
}

// streamMagics are the containers whose magic is fixed bytes at a fixed
// offset, with the bytes pcmContainer needs to name them (a RIFF header is
// a WAV file when "WAVE" follows; ID3 is followed by its version).
var streamMagics = []struct {
	off   int
	magic string
	need  int
}{
	{0, "RIFF", 12}, {0, "RF64", 12}, {0, "BW64", 12}, {0, "OggS", 4}, {0, "fLaC", 4},
	{0, "\x1a\x45\xdf\xa3", 4}, {4, "ftyp", 8}, {0, "ID3", 4},
}

// streamContainer names the container starting head, or says whether
// more bytes could still reveal one.
func streamContainer(head []byte) (name string, more bool) {
	for _, m := range streamMagics {
		if len(head) >= m.need {
			continue
		}
		// Could head still start this magic?
		if len(head) <= m.off {
			return "", true
		}
		have := min(len(head), m.off+len(m.magic)) - m.off
		if string(head[m.off:m.off+have]) == m.magic[:have] {
			return "", true
		}
	}
	if name := pcmContainer(head); name != "" {
		return name, false
	}
	if len(head) >= 12 && (string(head[:4]) == "RF64" || string(head[:4]) == "BW64") {
		return "an RF64 header", false
	}
	for _, f := range []struct {
		frames *syncFormat
		name   string
	}{{mp3Frames, "an MPEG audio frame"}, {adtsFrames, "an AAC (ADTS) frame"}} {
		switch syncConfirmed(f.frames, head) {
		case syncYes:
			return f.name, false
		case syncMaybe:
			more = true
		}
	}
	return "", more
}

type syncVerdict int

const (
	syncNo syncVerdict = iota
	syncMaybe
	syncYes
)

// syncConfirmed reports whether head starts with a frame of f that the
// next frame header confirms: a lone valid header is too common in PCM
// (0xFF 0xFx is an ordinary pair of sample bytes) to refuse a stream on.
func syncConfirmed(f *syncFormat, head []byte) syncVerdict {
	if len(head) < f.hdrLen {
		if len(head) > 0 && head[0] == 0xFF {
			return syncMaybe
		}
		return syncNo
	}
	n, _, ok := f.parse(head, nil)
	if !ok {
		return syncNo
	}
	if n+f.hdrLen > len(head) {
		return syncMaybe
	}
	if _, _, ok := f.parse(head[n:], head[:f.hdrLen]); ok {
		return syncYes
	}
	return syncNo
}

// FirstNonFinite returns the index of the first 32-bit little-endian float
// in p that is NaN or infinite, or -1 when every one is finite. A trailing
// partial sample is ignored.
func FirstNonFinite(p []byte) int {
	for i := 0; i+4 <= len(p); i += 4 {
		// Exponent all ones: infinity or NaN.
		if binary.LittleEndian.Uint32(p[i:])&0x7F800000 == 0x7F800000 {
			return i / 4
		}
	}
	return -1
}
