package audio

import (
	"bufio"
	"encoding/binary"
	"io"
)

// MPEG audio (MP3, and layers I and II).
//
// probeMP3 skips ID3v2 tags, finds the first frame, reads a Xing/Info or
// VBRI header and a LAME tag from it, then walks every frame to the end
// of the input, counting the samples actually present. The Xing frame
// count never sets the duration: it only says whether the file is whole,
// so that the LAME tag's end padding is subtracted only then (its
// encoder delay always is). ID3v1, APE and ID3v2 tags met on the way are
// skipped; garbage is skipped by resynchronizing on a frame header that
// the next frame confirms.

var (
	// mp3Bitrates[v2][layer-1][index] in kbit/s; v2 is MPEG-2 and 2.5.
	mp3Bitrates = [2][3][15]int{
		{ // MPEG-1
			{0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448}, // layer I
			{0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384},    // layer II
			{0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320},     // layer III
		},
		{ // MPEG-2, 2.5
			{0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256},
			{0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160},
			{0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160},
		},
	}
	// mp3Rates[version bits][index]; version bits 1 is reserved.
	mp3Rates = [4][3]int{
		{11025, 12000, 8000},  // MPEG-2.5
		{0, 0, 0},             // reserved
		{22050, 24000, 16000}, // MPEG-2
		{44100, 48000, 32000}, // MPEG-1
	}
)

// mp3Header is a decoded MPEG audio frame header.
type mp3Header struct {
	version int // version bits: 3 MPEG-1, 2 MPEG-2, 0 MPEG-2.5
	layer   int // 1, 2 or 3
	rate    int
	mono    bool
	length  int // bytes, header included
	samples int
}

// parseMP3Header decodes the 4-byte header at h. Free-format bitrates,
// reserved values and the reserved emphasis are refused.
func parseMP3Header(h []byte) (mp3Header, bool) {
	if len(h) < 4 || h[0] != 0xFF || h[1]&0xE0 != 0xE0 {
		return mp3Header{}, false
	}
	version := int(h[1]>>3) & 3
	layer := 4 - int(h[1]>>1)&3
	bri := int(h[2] >> 4)
	sri := int(h[2]>>2) & 3
	if version == 1 || layer == 4 || bri == 0 || bri == 15 || sri == 3 || h[3]&3 == 2 {
		return mp3Header{}, false
	}
	v2 := 0
	if version != 3 {
		v2 = 1
	}
	bitrate := mp3Bitrates[v2][layer-1][bri] * 1000
	rate := mp3Rates[version][sri]
	pad := int(h[2]>>1) & 1
	hd := mp3Header{version: version, layer: layer, rate: rate, mono: h[3]>>6 == 3}
	switch {
	case layer == 1:
		hd.length = (12*bitrate/rate + pad) * 4
		hd.samples = 384
	case layer == 2:
		hd.length = 144*bitrate/rate + pad
		hd.samples = 1152
	case v2 == 0: // MPEG-1 layer III
		hd.length = 144*bitrate/rate + pad
		hd.samples = 1152
	default: // MPEG-2/2.5 layer III
		hd.length = 72*bitrate/rate + pad
		hd.samples = 576
	}
	return hd, true
}

// mp3Frames frames MPEG audio. Frames after the first must keep its
// version, layer, sample rate and mono-ness.
var mp3Frames = &syncFormat{
	hdrLen:   4,
	maxFrame: 2881, // layer II, 160 kbit/s, 8 kHz, padded
	parse: func(h, ref []byte) (int, int, bool) {
		hd, ok := parseMP3Header(h)
		if !ok {
			return 0, 0, false
		}
		if ref != nil && (h[1]&0xFE != ref[1]&0xFE || h[2]&0x0C != ref[2]&0x0C || (h[3]>>6 == 3) != (ref[3]>>6 == 3)) {
			return 0, 0, false
		}
		return hd.length, hd.samples, true
	},
}

// mp3InfoFrame is what the first frame's Xing/Info or VBRI header says.
type mp3InfoFrame struct {
	found   bool
	frames  int64 // frame count, 0 when absent
	delay   int64 // LAME encoder delay, samples
	padding int64 // LAME end padding, samples
}

// parseMP3InfoFrame looks for a Xing/Info or VBRI header (and a LAME tag)
// in the frame f, whose header is hd.
func parseMP3InfoFrame(f []byte, hd mp3Header) mp3InfoFrame {
	var side int
	switch {
	case hd.version == 3 && hd.mono:
		side = 17
	case hd.version == 3:
		side = 32
	case hd.mono:
		side = 9
	default:
		side = 17
	}
	var x mp3InfoFrame
	if hd.layer != 3 {
		return x
	}
	if o := 4 + side; len(f) >= o+8 && (string(f[o:o+4]) == "Xing" || string(f[o:o+4]) == "Info") {
		x.found = true
		flags := binary.BigEndian.Uint32(f[o+4:])
		p := o + 8
		if flags&1 != 0 && len(f) >= p+4 {
			x.frames = int64(binary.BigEndian.Uint32(f[p:]))
			p += 4
		}
		if flags&2 != 0 {
			p += 4 // bytes
		}
		if flags&4 != 0 {
			p += 100 // TOC
		}
		if flags&8 != 0 {
			p += 4 // quality
		}
		// LAME tag: 9-byte version, then at +21 the 12-bit delay and padding.
		if len(f) >= p+24 {
			v := string(f[p : p+4])
			if v == "LAME" || v == "Lavf" || v == "Lavc" {
				d := f[p+21:]
				x.delay = int64(d[0])<<4 | int64(d[1]>>4)
				x.padding = int64(d[1]&0x0F)<<8 | int64(d[2])
			}
		}
		return x
	}
	if o := 36; len(f) >= o+18 && string(f[o:o+4]) == "VBRI" {
		x.found = true
		x.frames = int64(binary.BigEndian.Uint32(f[o+14:]))
	}
	return x
}

func probeMP3(br *bufio.Reader) (Info, error) {
	info := Info{Format: MP3}
	id3 := false
	for {
		h, _ := br.Peek(10)
		if len(h) < 10 || string(h[:3]) != "ID3" {
			break
		}
		n, ok := id3v2Len(h)
		if !ok {
			return info, Unsupported("mp3: malformed ID3v2 tag header.")
		}
		id3 = true
		if _, err := skip(br, n); err != nil {
			if err == io.ErrUnexpectedEOF {
				return info, nil // metadata only
			}
			return info, err
		}
	}
	if h, _ := br.Peek(2); len(h) == 2 && h[0] == 0xFF && h[1]&0xF6 == 0xF0 {
		// ADTS AAC behind an ID3 tag (common for .aac files)
		return probeADTS(br, Info{Format: AAC, Codec: "aac"})
	}
	data, err := mp3Frames.find(br)
	if err == errNoFrame {
		if id3 && !data {
			return info, nil // tags and padding, no audio
		}
		return info, Unsupported("mp3: no MPEG audio frame found.")
	}
	if err != nil {
		return info, err
	}
	h, _ := br.Peek(4)
	hd, _ := parseMP3Header(h)
	info.SampleRate = hd.rate
	info.Channels = 2
	if hd.mono {
		info.Channels = 1
	}
	info.Codec = [4]string{"", "mp1", "mp2", "mp3"}[hd.layer]
	var ref [4]byte
	copy(ref[:], h)

	f, _ := br.Peek(hd.length)
	x := parseMP3InfoFrame(f, hd)
	var frames, samples int64
	if x.found {
		// the Xing/VBRI frame carries no audio
		if d, _ := br.Discard(hd.length); d < hd.length {
			return info, nil
		}
	}
	err = mp3Frames.walk(br, ref[:], func(s int) {
		frames++
		samples += int64(s)
	})
	if err != nil {
		return info, err
	}
	if samples > 0 {
		trim := x.delay
		if x.frames == frames {
			trim += x.padding
		}
		// never trim a file to nothing: a frame present is audio present
		if trim >= samples {
			trim = 0
		}
		samples -= trim
	}
	info.HasSamples = samples > 0
	info.Duration = framesDuration(samples, int64(hd.rate))
	return info, nil
}
