package tollgate

import (
	"slices"
	"time"
)

// Stream holds a streaming model's settings. A stream model's route is a
// WebSocket handshake (GET) and its Upstream a ws:// or wss:// base URL.
// The client declares raw PCM audio with the audio_format, sample_rate and
// num_channels query parameters; the audio is checked, metered in
// audio_seconds and reserved against quotas in chunks as it flows.
//
// The zero value accepts every raw PCM encoding at any sample rate from
// 1000 to 384000 Hz, mono or stereo, with the defaults below.
type Stream struct {
	// Formats lists the raw PCM encodings accepted (s16le, s24le, s32le,
	// f32le, mulaw, alaw); empty accepts every one.
	Formats []string
	// SampleRates lists the accepted rates in Hz; empty accepts any rate
	// from 1000 to 384000.
	SampleRates []int
	// Channels lists the accepted channel counts; empty accepts 1 and 2.
	Channels []int
	// MaxFrameBytes caps one WebSocket message from the client
	// (0: DefaultStreamFrameBytes); a larger one closes the stream with
	// payload_too_large (1009).
	MaxFrameBytes int
	// ChunkSeconds is how much audio is reserved against free credits
	// and monthly limits at a time (0: DefaultChunkSeconds). The next
	// chunk is reserved while half of the current one is left.
	ChunkSeconds float64
	// IdleTimeout closes a stream whose client has sent no audio for this
	// long (0: DefaultStreamIdleTimeout).
	IdleTimeout time.Duration
	// PingInterval is how often the client and the upstream are pinged; a
	// ping not answered within the interval ends the stream
	// (0: DefaultPingInterval).
	PingInterval time.Duration
}

// Stream defaults.
const (
	DefaultStreamFrameBytes  = 64 << 10
	DefaultChunkSeconds      = 30.0
	DefaultStreamIdleTimeout = 30 * time.Second
	DefaultPingInterval      = 15 * time.Second
	// MinStreamRate and MaxStreamRate bound the sample rates accepted
	// when a stream lists none.
	MinStreamRate = 1000
	MaxStreamRate = 384000
)

// FrameCap returns the effective cap on one client message, in bytes.
func (s *Stream) FrameCap() int {
	if s.MaxFrameBytes <= 0 {
		return DefaultStreamFrameBytes
	}
	return s.MaxFrameBytes
}

// Chunk returns the effective reservation chunk, in seconds.
func (s *Stream) Chunk() float64 {
	if s.ChunkSeconds <= 0 {
		return DefaultChunkSeconds
	}
	return s.ChunkSeconds
}

// Idle returns the effective idle timeout.
func (s *Stream) Idle() time.Duration {
	if s.IdleTimeout <= 0 {
		return DefaultStreamIdleTimeout
	}
	return s.IdleTimeout
}

// Ping returns the effective ping interval.
func (s *Stream) Ping() time.Duration {
	if s.PingInterval <= 0 {
		return DefaultPingInterval
	}
	return s.PingInterval
}

// AcceptsFormat reports whether the stream takes encoding; the caller
// checks that encoding is one it can measure.
func (s *Stream) AcceptsFormat(encoding string) bool {
	return len(s.Formats) == 0 || slices.Contains(s.Formats, encoding)
}

// AcceptsRate reports whether the stream takes sample rate hz.
func (s *Stream) AcceptsRate(hz int) bool {
	if len(s.SampleRates) == 0 {
		return hz >= MinStreamRate && hz <= MaxStreamRate
	}
	return slices.Contains(s.SampleRates, hz)
}

// AcceptsChannels reports whether the stream takes n channels.
func (s *Stream) AcceptsChannels(n int) bool {
	if len(s.Channels) == 0 {
		return n == 1 || n == 2
	}
	return slices.Contains(s.Channels, n)
}
