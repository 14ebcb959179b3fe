package audio

import "bufio"

func probeOgg(br *bufio.Reader) (Info, error) {
	return Info{}, Unsupported("ogg: not implemented")
}
