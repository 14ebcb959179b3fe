package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate"
)

func TestStream(t *testing.T) {
	c, err := Parse([]byte(inputBase+`
  - id: live
    route: GET /v1/live
    upstream: wss://models.internal:9443
    stream: {}
  - id: tuned
    feature: stt
    route: GET /v1/tuned/{lang}
    upstream: ws://127.0.0.1:9103
    upstream_path: /v1/stream
    meter: {price: 0.5}
    stream:
      formats: [s16le, mulaw]
      sample_rates: [8000]
      channels: [1]
      max_frame_bytes: 4096
      chunk_seconds: 2.5
      idle_timeout: 5s
      ping_interval: 1s
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	ms := c.DomainModels()
	want := []*tollgate.Model{
		{ID: "live", Method: "GET", Path: "/v1/live", Upstream: "wss://models.internal:9443", Timeout: tollgate.DefaultTimeout,
			UpstreamErrorCode: tollgate.CodeUpstreamError, Meter: tollgate.Meter{Unit: tollgate.UnitAudioSeconds}, Stream: &tollgate.Stream{}},
		{ID: "tuned", Feature: "stt", Method: "GET", Path: "/v1/tuned/{lang}", Upstream: "ws://127.0.0.1:9103", UpstreamPath: "/v1/stream",
			Timeout: tollgate.DefaultTimeout, UpstreamErrorCode: tollgate.CodeUpstreamError,
			Meter: tollgate.Meter{Unit: tollgate.UnitAudioSeconds, Price: 0.5},
			Stream: &tollgate.Stream{Formats: []string{"s16le", "mulaw"}, SampleRates: []int{8000}, Channels: []int{1},
				MaxFrameBytes: 4096, ChunkSeconds: 2.5, IdleTimeout: 5 * time.Second, PingInterval: time.Second}},
	}
	if diff := cmp.Diff(ms, want); diff != "" {
		t.Errorf("DomainModels (-got +want):\n%s", diff)
	}
	// The zero Stream's defaults.
	st := ms[0].Stream
	if st.FrameCap() != 65536 || st.Chunk() != 30 || st.Idle() != 30*time.Second || st.Ping() != 15*time.Second ||
		!st.AcceptsFormat("alaw") || !st.AcceptsRate(44100) || st.AcceptsRate(999) || !st.AcceptsChannels(2) || st.AcceptsChannels(3) {
		t.Errorf("zero Stream defaults: %+v", st)
	}
	if st := ms[1].Stream; st.AcceptsFormat("f32le") || st.AcceptsRate(16000) || st.AcceptsChannels(2) {
		t.Errorf("tuned Stream accepts too much: %+v", st)
	}
	// The domain value is a copy.
	ms[1].Stream.Formats[0] = "changed"
	if c.Models[1].Stream.Formats[0] != "s16le" {
		t.Error("the domain Stream shares memory with the Config")
	}
}

func TestStreamInvalid(t *testing.T) {
	_, err := Parse([]byte(inputBase+`
  - id: a
    route: POST /v1/a
    upstream: http://127.0.0.1:1
    fallbacks: [b]
    input: {max_bytes: 10}
    meter: {unit: requests, trust_upstream: true}
    stream:
      formats: [s16le, mp3, s16le]
      sample_rates: [16000, 999, 500000]
      channels: [0, 2, 9]
      max_frame_bytes: -1
      chunk_seconds: -2
      idle_timeout: -1s
  - id: b
    route: GET /v1/b
    upstream: ws://127.0.0.1:1/x?y=1
    stream: {max_frame_bytes: 3, chunk_seconds: 7200}
  - {id: c, route: GET /v1/c, upstream: "ws://127.0.0.1:1"}
  - {id: d, routes: [GET /v1/d, PUT /v1/d], upstream: "ws://127.0.0.1:1", stream: {}}
  - {id: e, route: GET /v1/e, upstream: "ws://127.0.0.1:1", stream: {ping_interval: 1}}
`), nil)
	if err == nil {
		t.Fatal("accepted")
	}
	want := []string{
		`models[0].fallbacks: a stream has no fallbacks`,
		`models[0].input: a stream takes no input rules: its checks are under stream`,
		`models[0].meter.trust_upstream: a stream is metered by the gateway, not its upstream`,
		`models[0].meter.unit: "requests": a stream meters audio_seconds`,
		`models[0].route: a stream's route is its WebSocket handshake: want GET, not POST`,
		`models[0].stream.channels[0]: 0: want 1 to 8`,
		`models[0].stream.channels[2]: 9: want 1 to 8`,
		`models[0].stream.chunk_seconds: -2: want 0 (default 30) to 3600 seconds`,
		`models[0].stream.formats[1]: "mp3": want a raw PCM encoding (s16le, s24le, s32le, f32le, mulaw, alaw)`,
		`models[0].stream.formats[2]: "s16le" is listed twice`,
		`models[0].stream.idle_timeout: -1s: must not be negative`,
		`models[0].stream.max_frame_bytes: -1: want 0 (default 65536) to 16777216`,
		`models[0].stream.sample_rates[1]: 999: want 1000 to 384000 Hz`,
		`models[0].stream.sample_rates[2]: 500000: want 1000 to 384000 Hz`,
		`models[0].upstream: a stream's upstream is an absolute ws:// or wss:// URL`,
		`models[1].stream.chunk_seconds: 7200: want 0 (default 30) to 3600 seconds`,
		`models[1].stream.max_frame_bytes: 3: too small for one sample frame (want at least 32)`,
		`models[1].upstream: want a base URL without query or fragment`,
		`models[2].stream: required with a ws:// or wss:// upstream`,
		`models[3].routes[1]: a stream's route is its WebSocket handshake: want GET, not PUT`,
		`models[4].stream.ping_interval: duration 1 has no unit (want e.g. "1s")`,
	}
	if diff := cmp.Diff(strings.Split(err.Error(), "\n"), want); diff != "" {
		t.Errorf("Parse errors (-got +want):\n%s", diff)
	}
}
