package audio

import "bufio"

func probeWAV(br *bufio.Reader) (Info, error) {
	return Info{}, Unsupported("wav: not implemented")
}
