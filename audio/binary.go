package audio

import (
	"bufio"
	"io"
	"math"
	"time"
)

// Reading helpers for the WAV, FLAC, Ogg and raw PCM parsers. Every size
// they are given may come from the file: they skip and peek, and never
// allocate for it.

// peekUpTo returns up to n bytes at br's position without consuming them
// (n is at most br.Size()). A short slice means the input ended; the error
// is only ever a read error other than io.EOF.
func peekUpTo(br *bufio.Reader, n int) ([]byte, error) {
	b, err := br.Peek(n)
	if err == io.EOF || err == bufio.ErrBufferFull {
		err = nil
	}
	return b, err
}

// discardUpTo consumes up to n bytes and reports how many it consumed;
// fewer than n means the input ended. The error is only ever a read
// error other than io.EOF.
func discardUpTo(br *bufio.Reader, n int64) (int64, error) {
	var done int64
	for n > done {
		step := n - done
		if step > 1<<30 {
			step = 1 << 30
		}
		d, err := br.Discard(int(step))
		done += int64(d)
		if err == io.EOF {
			return done, nil
		}
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// discardRest consumes br to its end and reports how many bytes that was.
func discardRest(br *bufio.Reader) (int64, error) {
	return discardUpTo(br, math.MaxInt64)
}

// framesDuration converts a count of sample frames at rate frames per
// second to a duration, rounding down and saturating instead of
// overflowing.
func framesDuration(frames, rate int64) time.Duration {
	if frames <= 0 || rate <= 0 {
		return 0
	}
	whole := frames / rate
	if whole >= int64(math.MaxInt64/time.Second) {
		return time.Duration(math.MaxInt64)
	}
	frac := frames % rate // < rate < 2^32, so frac*1e9 fits
	return time.Duration(whole)*time.Second + time.Duration(frac*int64(time.Second)/rate)
}

// asciiID reports whether b (a RIFF chunk id) is four printable ASCII
// characters.
func asciiID(b []byte) bool {
	if len(b) < 4 {
		return false
	}
	for _, c := range b[:4] {
		if c < 0x20 || c > 0x7E {
			return false
		}
	}
	return true
}
