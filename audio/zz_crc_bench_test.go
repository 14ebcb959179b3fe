package audio

import "testing"

func BenchmarkZZOggCRC(b *testing.B) {
	buf := make([]byte, 10000)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		oggCRC(0, buf)
	}
}
