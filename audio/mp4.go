package audio

import "bufio"

func probeMP4(br *bufio.Reader) (Info, error) {
	return Info{}, Unsupported("mp4: not implemented")
}
