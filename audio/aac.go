package audio

import "bufio"

func probeAAC(br *bufio.Reader) (Info, error) {
	return Info{}, Unsupported("aac: not implemented")
}
