// Package audio says what an audio upload is without decoding it: the
// container sniffed from magic bytes, the codec, sample rate, channels and
// the real duration of the audio actually present. It reads an io.Reader
// once, front to back, in bounded memory, and knows nothing of HTTP or keys.
package audio

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
)

// Format is a container (or raw PCM).
type Format string

// The formats Probe recognizes.
const (
	WAV  Format = "wav"  // RIFF/WAVE, WAVE_FORMAT_EXTENSIBLE, RF64
	Ogg  Format = "ogg"  // Opus, Vorbis, FLAC in Ogg
	MP3  Format = "mp3"  // ID3v2 or bare frame sync
	FLAC Format = "flac" // native FLAC
	WebM Format = "webm" // WebM / Matroska
	MP4  Format = "mp4"  // MP4 / M4A (ftyp)
	AAC  Format = "aac"  // AAC ADTS
	PCM  Format = "pcm"  // raw PCM, only when declared
)

// Formats lists every format, for error details.
var Formats = []Format{WAV, Ogg, MP3, FLAC, WebM, MP4, AAC, PCM}

// Info is what Probe found.
type Info struct {
	Format Format
	// Codec names the encoding: "pcm_s16le", "opus", "vorbis", "flac",
	// "mp3", "aac", … ("" when the container does not say).
	Codec      string
	SampleRate int
	Channels   int
	// Duration is the audio actually present. When a header claims more
	// (or less) than the data holds, the data wins.
	Duration time.Duration
	// HasSamples is false for files that hold no audio samples at all
	// (empty data chunk, stripped track, metadata only).
	HasSamples bool
	// Bytes is how many bytes Probe read.
	Bytes int64
}

// Seconds returns the duration in seconds.
func (i Info) Seconds() float64 { return i.Duration.Seconds() }

// RawPCM declares a raw PCM stream, which has no header to sniff.
type RawPCM struct {
	// Encoding: s16le, s24le, s32le, f32le, mulaw, alaw.
	Encoding   string
	SampleRate int
	Channels   int
}

// Encodings lists the raw PCM encodings.
var Encodings = []string{"s16le", "s24le", "s32le", "f32le", "mulaw", "alaw"}

// SampleSize returns the bytes per sample of an encoding (0 if unknown).
func SampleSize(encoding string) int {
	switch encoding {
	case "s16le":
		return 2
	case "s24le":
		return 3
	case "s32le", "f32le":
		return 4
	case "mulaw", "alaw":
		return 1
	}
	return 0
}

// Validate reports a declaration that cannot describe a stream.
func (p RawPCM) Validate() error {
	var problems []string
	if SampleSize(p.Encoding) == 0 {
		problems = append(problems, fmt.Sprintf("unsupported PCM encoding %q (want one of %s)", p.Encoding, strings.Join(Encodings, ", ")))
	}
	if p.SampleRate < 1000 || p.SampleRate > 384000 {
		problems = append(problems, fmt.Sprintf("sample rate %d out of range 1000-384000", p.SampleRate))
	}
	if p.Channels < 1 || p.Channels > 8 {
		problems = append(problems, fmt.Sprintf("channel count %d out of range 1-8", p.Channels))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Options tune Probe.
type Options struct {
	// PCM, when set, declares the input raw PCM: it is not sniffed, and
	// a container's magic at its start is refused (the data does not
	// match the declaration).
	PCM *RawPCM
}

// Probe reads r to its end and reports what the audio is. Errors are
// catalog errors: unsupported_audio_format (details carry "accepted") for
// an empty, unrecognized or undecodable input. Probe never decides policy
// (minimum duration, accepted formats): the caller does.
func Probe(r io.Reader, opts Options) (Info, error) {
	cr := &countingReader{r: r}
	br := bufio.NewReaderSize(cr, 64<<10)
	info, err := probe(br, opts)
	// Drain what the format parser did not need, so Bytes is the whole
	// input and the caller's tee sees every byte.
	if _, derr := io.Copy(io.Discard, br); derr != nil && err == nil {
		err = derr
	}
	info.Bytes = cr.n
	if err != nil {
		return info, err
	}
	return info, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Unsupported returns the catalog error for an input that is not audio
// Probe can measure.
func Unsupported(format string, args ...any) error {
	return &tollgate.Error{
		Code:    tollgate.CodeUnsupportedAudioFormat,
		Message: fmt.Sprintf(format, args...),
		Details: map[string]any{"accepted": acceptedNames()},
	}
}

func acceptedNames() []string {
	out := make([]string, len(Formats))
	for i, f := range Formats {
		out[i] = string(f)
	}
	return out
}

// ErrEmpty is the cause of the error for an input with no bytes.
var ErrEmpty = errors.New("audio: empty input")

// probe sniffs the format from the first bytes and hands off to its parser.
func probe(br *bufio.Reader, opts Options) (Info, error) {
	head, err := br.Peek(64)
	if len(head) == 0 {
		if err != nil && err != io.EOF {
			return Info{}, err
		}
		e := Unsupported("The upload is empty: it holds no audio.").(*tollgate.Error)
		e.Err = ErrEmpty
		return Info{}, e
	}
	if opts.PCM != nil {
		return probePCM(br, *opts.PCM)
	}
	switch Sniff(head) {
	case WAV:
		return probeWAV(br)
	case Ogg:
		return probeOgg(br)
	case FLAC:
		return probeFLAC(br)
	case MP3:
		return probeMP3(br)
	case WebM:
		return probeWebM(br)
	case MP4:
		return probeMP4(br)
	case AAC:
		return probeAAC(br)
	}
	return Info{}, Unsupported("The upload is not a recognized audio format.")
}

// Sniff names the container from the first bytes of a file ("" when
// unknown). It never trusts a file name or declared type.
func Sniff(head []byte) Format {
	has := func(off int, magic string) bool {
		return len(head) >= off+len(magic) && string(head[off:off+len(magic)]) == magic
	}
	switch {
	case (has(0, "RIFF") || has(0, "RF64") || has(0, "BW64")) && has(8, "WAVE"):
		return WAV
	case has(0, "OggS"):
		return Ogg
	case has(0, "fLaC"):
		return FLAC
	case has(0, "\x1a\x45\xdf\xa3"):
		return WebM
	case has(4, "ftyp"):
		return MP4
	case has(0, "ID3"):
		return MP3
	case len(head) >= 2 && head[0] == 0xFF && head[1]&0xF6 == 0xF0:
		// ADTS sync: 12 bits set, layer 00.
		return AAC
	case len(head) >= 2 && head[0] == 0xFF && head[1]&0xE0 == 0xE0 && head[1]&0x06 != 0:
		// MPEG audio frame sync with a layer.
		return MP3
	}
	return ""
}
