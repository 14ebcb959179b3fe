package audio

import "bufio"

func probePCM(br *bufio.Reader, p RawPCM) (Info, error) {
	return Info{}, Unsupported("pcm: not implemented")
}
