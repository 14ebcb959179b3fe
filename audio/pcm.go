package audio

import (
	"bufio"
	"errors"

	"github.com/tollgate/tollgate"
)

// Raw PCM, which has no header: what it is comes from the declaration.
//
// probePCM refuses data that starts with a container's magic (a WAV sent
// as raw PCM would be played as noise by a model that trusts the
// declaration), counts the bytes, and requires a whole number of sample
// frames. For f32le every sample is checked as it streams past: NaN or
// infinity means the data is not float PCM. The duration is
// bytes ÷ (sample size × channels × rate).

// ErrContainerInPCM is the cause (tollgate.Error.Err) of the error for
// data declared raw PCM that starts with a container header, so a
// streaming caller can tell it apart and answer audio_format_mismatch.
var ErrContainerInPCM = errors.New("audio: container header in data declared raw PCM")

func probePCM(br *bufio.Reader, p RawPCM) (Info, error) {
	info := Info{Format: PCM}
	if err := p.Validate(); err != nil {
		return info, Unsupported("The raw PCM declaration is invalid: %v.", err)
	}
	head, err := peekUpTo(br, 64)
	if err != nil {
		return info, err
	}
	if name := pcmContainer(head); name != "" {
		e := Unsupported("Declared raw %s PCM but the data starts with %s.", p.Encoding, name).(*tollgate.Error)
		e.Err = ErrContainerInPCM
		return info, e
	}
	info.Codec = "pcm_" + p.Encoding
	info.SampleRate, info.Channels = p.SampleRate, p.Channels

	var n int64
	if p.Encoding == "f32le" {
		n, err = pcmScanFloats(br)
	} else {
		n, err = discardRest(br)
	}
	if err != nil {
		return info, err
	}
	frame := int64(SampleSize(p.Encoding) * p.Channels)
	if n%frame != 0 {
		return info, Unsupported("The raw PCM is %d bytes, not a whole number of %d-byte frames (%s × %d channels).", n, frame, p.Encoding, p.Channels)
	}
	info.HasSamples = n > 0
	info.Duration = framesDuration(n/frame, int64(p.SampleRate))
	return info, nil
}

// pcmContainer names the container whose magic starts head ("" when
// none). MPEG and ADTS frame syncs are not looked for: 0xFF 0xFx is an
// ordinary pair of PCM bytes. "ID3" must be followed by a version (2-4).
func pcmContainer(head []byte) string {
	has := func(off int, magic string) bool {
		return len(head) >= off+len(magic) && string(head[off:off+len(magic)]) == magic
	}
	switch {
	case Sniff(head) == WAV:
		return "a WAV header"
	case has(0, "RIFF"):
		return "a RIFF header"
	case has(0, "OggS"):
		return "an Ogg page"
	case has(0, "fLaC"):
		return "a FLAC stream marker"
	case has(0, "\x1a\x45\xdf\xa3"):
		return "a WebM/Matroska header"
	case has(4, "ftyp"):
		return "an MP4 header"
	case has(0, "ID3") && len(head) > 3 && head[3] >= 2 && head[3] <= 4:
		return "an ID3 tag (MP3)"
	}
	return ""
}

// pcmScanFloats consumes br to its end, checking that every 4-byte
// little-endian float is finite, and reports the bytes read.
func pcmScanFloats(br *bufio.Reader) (int64, error) {
	var n int64
	for {
		buf, err := peekUpTo(br, br.Size())
		if err != nil {
			return n, err
		}
		whole := len(buf) &^ 3
		if whole == 0 {
			br.Discard(len(buf))
			return n + int64(len(buf)), nil
		}
		for i := 0; i < whole; i += 4 {
			// exponent all ones: infinity or NaN
			if buf[i+3]&0x7F == 0x7F && buf[i+2]&0x80 != 0 {
				return n, Unsupported("The raw f32le PCM holds a NaN or infinite sample (sample %d): the data is not 32-bit float PCM.", (n+int64(i))/4)
			}
		}
		br.Discard(whole)
		n += int64(whole)
	}
}
