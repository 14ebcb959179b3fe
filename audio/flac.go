package audio

import "bufio"

func probeFLAC(br *bufio.Reader) (Info, error) {
	return Info{}, Unsupported("flac: not implemented")
}
