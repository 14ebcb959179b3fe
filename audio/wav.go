package audio

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math"
)

// WAV: RIFF/WAVE, RF64 and BW64.
//
// probeWAV walks the chunks once. "fmt " gives the encoding (PCM, IEEE
// float, mu-law, A-law, directly or through WAVE_FORMAT_EXTENSIBLE's
// subformat GUID); "ds64" gives RF64's 64-bit data size; every "data"
// chunk's bytes are counted as they stream past. The duration is the data
// bytes actually present, in whole blocks, divided by the block rate
// (blockAlign × sample rate): the RIFF size, the byte rate and the "fact"
// chunk are never trusted.
//
//   - A data size of 0xFFFFFFFF (streamed WAV, or RF64 without ds64) runs
//     to the end of the input.
//   - A data size larger than the input (truncated file, or a header
//     forged longer) counts only the bytes present.
//   - After the data chunk, anything that is not a well-formed chunk
//     header (four printable ASCII characters and a size) counts as audio
//     too: a data size of 0 from a streaming writer, or a header forged
//     shorter than its data, does not hide the bytes behind it.
//
// Limit: a well-formed chunk after the data (a "LIST", or a forged "JUNK"
// that swallows the rest of the file) is skipped unmeasured, as players
// skip it: a header forged shorter and followed by such a chunk is
// reported at its claimed length.

// WAVE format tags.
const (
	wavPCM        = 0x0001
	wavFloat      = 0x0003
	wavALaw       = 0x0006
	wavMuLaw      = 0x0007
	wavExtensible = 0xFFFE
)

// wavGUIDTail is the part of a KSDATAFORMAT_SUBTYPE GUID after its format
// tag: {tag-0000-0010-8000-00AA00389B71}, as stored (little-endian fields).
const wavGUIDTail = "\x00\x00\x00\x00\x10\x00\x80\x00\x00\xAA\x00\x38\x9B\x71"

// wavFormat is what the fmt chunk says.
type wavFormat struct {
	tag        uint16 // resolved through the extensible subformat
	channels   int
	rate       int64
	blockAlign int64
	bits       int
}

func probeWAV(br *bufio.Reader) (Info, error) {
	info := Info{Format: WAV}
	head, err := peekUpTo(br, 12)
	if err != nil {
		return info, err
	}
	if len(head) < 12 {
		return info, Unsupported("The WAV file is truncated: its RIFF header is incomplete.")
	}
	rf64 := string(head[:4]) != "RIFF"
	br.Discard(12)

	var (
		fmtc       *wavFormat
		sawData    bool
		dataBytes  int64
		ds64Data   int64 = -1 // RF64 data size from ds64
		chunkCount int
	)
chunks:
	for {
		h, err := peekUpTo(br, 8)
		if err != nil {
			return info, err
		}
		if len(h) < 8 || !asciiID(h) {
			if !sawData {
				if len(h) == 0 {
					break
				}
				if len(h) < 8 {
					return info, Unsupported("The WAV file is truncated: a chunk header is incomplete.")
				}
				return info, Unsupported("The WAV file is corrupt: chunk %d has no valid id.", chunkCount+1)
			}
			// Not a chunk: audio behind a data size that claimed less
			// (or 0), or trailing garbage. Count it.
			n, err := discardRest(br)
			if err != nil {
				return info, err
			}
			dataBytes += n
			break
		}
		chunkCount++
		id := string(h[:4])
		size := int64(binary.LittleEndian.Uint32(h[4:8]))
		odd := size&1 == 1
		br.Discard(8)
		switch id {
		case "fmt ":
			f, err := readWAVFormat(br, size)
			if err != nil {
				return info, err
			}
			if fmtc == nil { // the first one counts
				fmtc = f
			}
			size = 0 // consumed, but for the pad byte
		case "ds64":
			if !rf64 {
				break
			}
			b, err := peekUpTo(br, 28)
			if err != nil {
				return info, err
			}
			if size >= 28 && len(b) >= 16 {
				ds64Data = int64(binary.LittleEndian.Uint64(b[8:16]) & math.MaxInt64)
			}
		case "data":
			sawData = true
			n := size
			switch {
			case size == 0xFFFFFFFF && rf64 && ds64Data >= 0:
				n = ds64Data
			case size == 0xFFFFFFFF:
				n = math.MaxInt64 // streamed: to the end
			}
			got, err := discardUpTo(br, n)
			if err != nil {
				return info, err
			}
			dataBytes += got
			if got < n {
				break chunks // the input ended inside the chunk
			}
			size = 0
		}
		// Skip the rest of the chunk and the pad byte after an odd size
		// (when a writer forgot it, the next byte starts a chunk id and
		// is not 0).
		if size > 0 {
			got, err := discardUpTo(br, size)
			if err != nil {
				return info, err
			}
			if got < size {
				break chunks
			}
		}
		if odd {
			b, err := peekUpTo(br, 1)
			if err != nil {
				return info, err
			}
			if len(b) == 1 && b[0] == 0 {
				br.Discard(1)
			}
		}
	}
	switch {
	case fmtc == nil && !sawData:
		return info, Unsupported("The WAV file has neither a fmt chunk nor a data chunk.")
	case fmtc == nil:
		return info, Unsupported("The WAV file has no fmt chunk: its encoding is unknown.")
	case !sawData:
		return info, Unsupported("The WAV file has no data chunk: it holds no audio.")
	}
	info.Codec = wavCodec(fmtc)
	info.SampleRate = int(fmtc.rate)
	info.Channels = fmtc.channels
	frames := dataBytes / fmtc.blockAlign
	info.HasSamples = frames > 0
	info.Duration = framesDuration(frames, fmtc.rate)
	return info, nil
}

// readWAVFormat reads a fmt chunk of size bytes (its first 40 at most)
// and checks that it describes audio this package can measure.
func readWAVFormat(br *bufio.Reader, size int64) (*wavFormat, error) {
	if size < 16 {
		return nil, Unsupported("The WAV fmt chunk is %d bytes; it needs at least 16.", size)
	}
	want := int(min(size, 40))
	b, err := peekUpTo(br, want)
	if err != nil {
		return nil, err
	}
	if len(b) < want {
		return nil, Unsupported("The WAV file is truncated inside its fmt chunk.")
	}
	f := &wavFormat{
		tag:        binary.LittleEndian.Uint16(b[0:2]),
		channels:   int(binary.LittleEndian.Uint16(b[2:4])),
		rate:       int64(binary.LittleEndian.Uint32(b[4:8])),
		blockAlign: int64(binary.LittleEndian.Uint16(b[12:14])),
		bits:       int(binary.LittleEndian.Uint16(b[14:16])),
	}
	if f.tag == wavExtensible {
		if len(b) < 40 {
			return nil, Unsupported("The WAV fmt chunk is WAVE_FORMAT_EXTENSIBLE but only %d bytes long; it needs 40.", size)
		}
		guid := b[24:40]
		if string(guid[2:]) != wavGUIDTail {
			return nil, Unsupported("The WAV subformat GUID is not one this service measures (PCM, IEEE float, mu-law, A-law).")
		}
		f.tag = binary.LittleEndian.Uint16(guid[0:2])
	}
	br.Discard(want)
	if _, err := discardUpTo(br, size-int64(want)); err != nil {
		return nil, err
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	return f, nil
}

// check refuses a format that cannot describe a stream, or one whose
// duration cannot be read off its size.
func (f *wavFormat) check() error {
	switch {
	case f.channels == 0:
		return Unsupported("The WAV fmt chunk declares 0 channels.")
	case f.rate == 0:
		return Unsupported("The WAV fmt chunk declares a sample rate of 0.")
	case f.blockAlign == 0:
		return Unsupported("The WAV fmt chunk declares a block size of 0.")
	}
	if f.blockAlign%int64(f.channels) != 0 {
		return Unsupported("The WAV block size %d is not a whole number of bytes per channel (%d channels).", f.blockAlign, f.channels)
	}
	size := int(f.blockAlign) / f.channels // bytes per sample
	if f.bits == 0 {
		f.bits = 8 * size
	}
	if (f.bits+7)/8 != size {
		return Unsupported("The WAV fmt chunk is inconsistent: %d bits per sample in %d-byte samples.", f.bits, size)
	}
	switch f.tag {
	case wavPCM:
		if size > 4 && size != 8 {
			return Unsupported("The WAV file holds %d-byte PCM samples; 1 to 4 or 8 bytes are supported.", size)
		}
	case wavFloat:
		if size != 4 && size != 8 {
			return Unsupported("The WAV file holds %d-byte float samples; 4 or 8 bytes are supported.", size)
		}
	case wavMuLaw, wavALaw:
		if size != 1 {
			return Unsupported("The WAV file holds %d-byte G.711 samples; they are 1 byte.", size)
		}
	default:
		return Unsupported("The WAV file is encoded with format 0x%04X; PCM, IEEE float, mu-law and A-law are supported.", f.tag)
	}
	return nil
}

// wavCodec names the encoding as ffmpeg does.
func wavCodec(f *wavFormat) string {
	size := int(f.blockAlign) / f.channels
	switch f.tag {
	case wavFloat:
		return fmt.Sprintf("pcm_f%dle", 8*size)
	case wavMuLaw:
		return "pcm_mulaw"
	case wavALaw:
		return "pcm_alaw"
	}
	if size == 1 {
		return "pcm_u8"
	}
	return fmt.Sprintf("pcm_s%dle", 8*size)
}
