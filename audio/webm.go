package audio

import "bufio"

func probeWebM(br *bufio.Reader) (Info, error) {
	return Info{}, Unsupported("webm: not implemented")
}
