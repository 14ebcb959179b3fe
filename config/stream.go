package config

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/audio"
)

// StreamConfig makes a model a WebSocket stream (`stream:`): its route is
// the handshake (GET), its upstream a ws:// or wss:// URL, and its audio
// raw PCM declared by the client's audio_format, sample_rate and
// num_channels query parameters, metered in audio_seconds as it flows.
type StreamConfig struct {
	// Formats are the raw PCM encodings accepted: s16le, s24le, s32le,
	// f32le, mulaw, alaw. Default: every one.
	Formats []string `yaml:"formats,omitempty" koanf:"formats"`
	// SampleRates are the accepted rates in Hz. Default: any from 1000
	// to 384000.
	SampleRates []int `yaml:"sample_rates,omitempty" koanf:"sample_rates"`
	// Channels are the accepted channel counts, 1 to 8. Default: 1 and 2.
	Channels []int `yaml:"channels,omitempty" koanf:"channels"`
	// MaxFrameBytes caps one client message. Default: 65536.
	MaxFrameBytes int `yaml:"max_frame_bytes,omitempty" koanf:"max_frame_bytes"`
	// ChunkSeconds is the audio reserved against quotas at a time.
	// Default: 30.
	ChunkSeconds float64 `yaml:"chunk_seconds,omitempty" koanf:"chunk_seconds"`
	// IdleTimeout closes a stream without client audio for this long.
	// Default: 30s.
	IdleTimeout time.Duration `yaml:"idle_timeout,omitempty" koanf:"idle_timeout"`
	// PingInterval is how often both peers are pinged; an unanswered ping
	// ends the stream at the next one. Default: 15s.
	PingInterval time.Duration `yaml:"ping_interval,omitempty" koanf:"ping_interval"`
}

// Bounds on stream settings.
const (
	maxStreamFrameBytes = 16 << 20
	maxChunkSeconds     = 3600
	maxStreamChannels   = 8
)

// stream checks a model's stream block and what it implies for the rest
// of the model; m.Stream is not nil.
func (p *problems) stream(at func(string) string, m *ModelConfig) {
	st := m.Stream
	for k, f := range st.Formats {
		if audio.SampleSize(f) == 0 {
			p.addf(at(fmt.Sprintf("stream.formats[%d]", k)), "%q: want a raw PCM encoding (%s)", f, strings.Join(audio.Encodings, ", "))
		} else if slices.Index(st.Formats, f) < k {
			p.addf(at(fmt.Sprintf("stream.formats[%d]", k)), "%q is listed twice", f)
		}
	}
	for k, r := range st.SampleRates {
		if r < tollgate.MinStreamRate || r > tollgate.MaxStreamRate {
			p.addf(at(fmt.Sprintf("stream.sample_rates[%d]", k)), "%d: want %d to %d Hz", r, tollgate.MinStreamRate, tollgate.MaxStreamRate)
		}
	}
	for k, n := range st.Channels {
		if n < 1 || n > maxStreamChannels {
			p.addf(at(fmt.Sprintf("stream.channels[%d]", k)), "%d: want 1 to %d", n, maxStreamChannels)
		}
	}
	if st.MaxFrameBytes < 0 || st.MaxFrameBytes > maxStreamFrameBytes {
		p.addf(at("stream.max_frame_bytes"), "%d: want 0 (default 65536) to %d", st.MaxFrameBytes, maxStreamFrameBytes)
	} else if st.MaxFrameBytes > 0 && st.MaxFrameBytes < 4*maxStreamChannels {
		p.addf(at("stream.max_frame_bytes"), "%d: too small for one sample frame (want at least %d)", st.MaxFrameBytes, 4*maxStreamChannels)
	}
	if math.IsNaN(st.ChunkSeconds) || st.ChunkSeconds < 0 || st.ChunkSeconds > maxChunkSeconds {
		p.addf(at("stream.chunk_seconds"), "%v: want 0 (default 30) to %d seconds", st.ChunkSeconds, maxChunkSeconds)
	}
	p.duration(at("stream.idle_timeout"), st.IdleTimeout, true)
	p.duration(at("stream.ping_interval"), st.PingInterval, true)

	if err := checkStreamUpstream(m.Upstream); err != nil {
		p.add(at("upstream"), err)
	}
	for _, r := range m.patterns() {
		if method, _, ok := splitRoute(r); ok && method != "GET" {
			field := "route"
			if m.Route == "" {
				field = fmt.Sprintf("routes[%d]", slices.Index(m.Routes, r))
			}
			p.addf(at(field), "a stream's route is its WebSocket handshake: want GET, not %s", method)
		}
	}
	if m.Input != nil {
		p.addf(at("input"), "a stream takes no input rules: its checks are under stream")
	}
	if len(m.Fallbacks) > 0 {
		p.addf(at("fallbacks"), "a stream has no fallbacks")
	}
	if mt := m.Meter; mt != nil {
		if mt.Unit != "" && tollgate.Unit(mt.Unit) != tollgate.UnitAudioSeconds {
			p.addf(at("meter.unit"), "%q: a stream meters audio_seconds", mt.Unit)
		}
		if mt.TrustUpstream {
			p.addf(at("meter.trust_upstream"), "a stream is metered by the gateway, not its upstream")
		}
	}
}

func checkStreamUpstream(s string) error {
	if s == "" {
		return errors.New("required")
	}
	u, err := parseURL(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return errors.New("a stream's upstream is an absolute ws:// or wss:// URL")
	}
	if u.Fragment != "" || u.RawQuery != "" {
		return errors.New("want a base URL without query or fragment")
	}
	return nil
}

// domainStream converts a valid StreamConfig.
func domainStream(st *StreamConfig) *tollgate.Stream {
	if st == nil {
		return nil
	}
	return &tollgate.Stream{
		Formats:       slices.Clone(st.Formats),
		SampleRates:   slices.Clone(st.SampleRates),
		Channels:      slices.Clone(st.Channels),
		MaxFrameBytes: st.MaxFrameBytes,
		ChunkSeconds:  st.ChunkSeconds,
		IdleTimeout:   st.IdleTimeout,
		PingInterval:  st.PingInterval,
	}
}
