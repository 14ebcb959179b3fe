package audio

import "bufio"

func probeMP3(br *bufio.Reader) (Info, error) {
	return Info{}, Unsupported("mp3: not implemented")
}
