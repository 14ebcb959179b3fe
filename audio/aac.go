package audio

import "bufio"

// AAC in ADTS framing.
//
// probeAAC walks the ADTS frames to the end of the input: each holds
// number_of_raw_data_blocks_in_frame + 1 raw blocks of 1024 samples at
// the header's sampling frequency (for HE-AAC that is the core rate, so
// the duration is still right). Encoder priming is not signalled in ADTS
// and is not subtracted. Channel configuration 0 (channels given by a
// program config element) reports Channels 0.

var adtsRates = [13]int{96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350}

// adtsFrames frames ADTS. Frames after the first must keep its MPEG
// version, profile, sampling frequency and channel configuration.
var adtsFrames = &syncFormat{
	hdrLen:   7,
	maxFrame: 8191,
	parse: func(h, ref []byte) (int, int, bool) {
		if len(h) < 7 || h[0] != 0xFF || h[1]&0xF6 != 0xF0 {
			return 0, 0, false
		}
		if int(h[2]>>2)&0xF >= len(adtsRates) {
			return 0, 0, false
		}
		n := int(h[3]&3)<<11 | int(h[4])<<3 | int(h[5]>>5)
		least := 7
		if h[1]&1 == 0 { // CRC present
			least = 9
		}
		if n < least {
			return 0, 0, false
		}
		if ref != nil && (h[1]&0xF8 != ref[1]&0xF8 || h[2]&0xFD != ref[2]&0xFD || h[3]>>6 != ref[3]>>6) {
			return 0, 0, false
		}
		return n, (int(h[6]&3) + 1) * 1024, true
	},
}

func probeAAC(br *bufio.Reader) (Info, error) {
	return probeADTS(br, Info{Format: AAC, Codec: "aac"})
}

// probeADTS measures an ADTS stream at br (after any ID3v2 tag).
func probeADTS(br *bufio.Reader, info Info) (Info, error) {
	if _, err := adtsFrames.find(br); err != nil {
		if err == errNoFrame {
			return info, Unsupported("aac: no ADTS frame found.")
		}
		return info, err
	}
	h, _ := br.Peek(7)
	info.SampleRate = adtsRates[h[2]>>2&0xF]
	ch := int(h[2]&1)<<2 | int(h[3]>>6)
	if ch == 7 {
		ch = 8
	}
	info.Channels = ch
	var ref [7]byte
	copy(ref[:], h)
	var samples int64
	err := adtsFrames.walk(br, ref[:], func(s int) { samples += int64(s) })
	if err != nil {
		return info, err
	}
	info.HasSamples = samples > 0
	info.Duration = framesDuration(samples, int64(info.SampleRate))
	return info, nil
}

// parseASC reads the sample rate and channel count of an MPEG-4
// AudioSpecificConfig (channels 0: given elsewhere).
func parseASC(b []byte) (rate, channels int, ok bool) {
	var pos int
	get := func(n int) int {
		v := 0
		for i := 0; i < n; i++ {
			if pos/8 >= len(b) {
				ok = false
				return 0
			}
			v = v<<1 | int(b[pos/8]>>(7-pos%8)&1)
			pos++
		}
		return v
	}
	ok = true
	if get(5) == 31 {
		get(6)
	}
	if i := get(4); i == 15 {
		rate = get(24)
	} else if i < len(adtsRates) {
		rate = adtsRates[i]
	}
	switch c := get(4); {
	case c == 7:
		channels = 8
	case c < 7:
		channels = c
	}
	return rate, channels, ok
}
