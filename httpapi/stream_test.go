package httpapi

import (
	"bytes"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate"
)

func TestParseStreamParams(t *testing.T) {
	all := &tollgate.Stream{}
	narrow := &tollgate.Stream{Formats: []string{"s16le"}, SampleRates: []int{16000}, Channels: []int{1}}
	tests := []struct {
		query string
		st    *tollgate.Stream
		want  streamParams
		err   string
	}{
		{"audio_format=s16le&sample_rate=16000&num_channels=1", narrow, streamParams{"s16le", 16000, 1, 2, 32000}, ""},
		{"audio_format=f32le&sample_rate=48000&num_channels=2", all, streamParams{"f32le", 48000, 2, 8, 384000}, ""},
		{"audio_format=s24le&sample_rate=8000&num_channels=1", all, streamParams{"s24le", 8000, 1, 3, 24000}, ""},
		{"", all, streamParams{}, "audio_format is required; sample_rate is required; num_channels is required"},
		{"audio_format=s16le&sample_rate=16000&num_channel=1", all, streamParams{}, "num_channels is required"},
		{"audio_format=S16LE&sample_rate=16000&num_channels=1", all, streamParams{},
			`audio_format "S16LE" is not supported (want s16le, s24le, s32le, f32le, mulaw, alaw)`},
		{"audio_format=f32le&sample_rate=16000&num_channels=1", narrow, streamParams{}, `audio_format "f32le" is not supported (want s16le)`},
		{"audio_format=s16le&sample_rate=16000.0&num_channels=1", all, streamParams{}, `sample_rate "16000.0" is not an integer`},
		{"audio_format=s16le&sample_rate=500&num_channels=1", all, streamParams{}, "sample_rate 500 is not supported (want 1000 to 384000)"},
		{"audio_format=s16le&sample_rate=8000&num_channels=1", narrow, streamParams{}, "sample_rate 8000 is not supported (want 16000)"},
		{"audio_format=s16le&sample_rate=16000&num_channels=0", all, streamParams{}, "num_channels 0 is not supported (want 1 or 2)"},
		{"audio_format=s16le&sample_rate=16000&num_channels=two", all, streamParams{}, `num_channels "two" is not an integer`},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		got, err := parseStreamParams(q, tt.st)
		if tt.err != "" {
			if tollgate.ErrorCode(err) != tollgate.CodeValidationError || tollgate.ErrorMessage(err) != tt.err {
				t.Errorf("%q: error %v, want %q", tt.query, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: %+v, %v; want %+v", tt.query, got, err, tt.want)
		}
	}
	// Details name each problem's parameter.
	_, err := parseStreamParams(url.Values{"audio_format": {"s16le"}}, all)
	want := []map[string]any{{"field": "sample_rate", "reason": "required"}, {"field": "num_channels", "reason": "required"}}
	if diff := cmp.Diff(tollgate.AsError(err).Details["errors"], want); diff != "" {
		t.Errorf("details (-got +want):\n%s", diff)
	}
}

func TestCloseFor(t *testing.T) {
	long := strings.Repeat("é", 100)
	tests := []struct {
		err    *tollgate.Error
		code   websocket.StatusCode
		reason string
	}{
		{tollgate.NewError(tollgate.CodeMissingCredential), 4001, "missing_credential"},
		{tollgate.Errorf(tollgate.CodeNoModelAccess, "Model access not enabled for m."), 4003, "no_model_access"},
		{tollgate.NewError(tollgate.CodeQuotaExceeded), 4029, "quota_exceeded"},
		{tollgate.NewError(tollgate.CodeBillingRequired), 4029, "billing_required"},
		{tollgate.NewError(tollgate.CodeModelNotFound), 4004, "model_not_found"},
		{tollgate.Errorf(tollgate.CodeValidationError, "sample_rate is required"), 1003, "validation_error: sample_rate is required"},
		{tollgate.NewError(tollgate.CodeValidationError), 1003, "validation_error"},
		{tollgate.Errorf(tollgate.CodeAudioFormatMismatch, "bad"), 4002, "audio_format_mismatch: bad"},
		{tollgate.Errorf(tollgate.CodePayloadTooLarge, "big"), 1009, "payload_too_large: big"},
		{tollgate.NewError(tollgate.CodeUpstreamUnavailable), 1014, "upstream_unavailable"},
		{tollgate.NewError(tollgate.CodeUpstreamTimeout), 1011, "upstream_timeout"},
		{tollgate.NewError(tollgate.CodeOverloaded), 1013, "overloaded"},
		{&tollgate.Error{Code: tollgate.CodeInternal, Message: "secret detail"}, 1011, "internal_error"},
		{tollgate.NewError(tollgate.CodeConflict), 1011, "conflict"}, // no close code of its own
	}
	for _, tt := range tests {
		code, reason := closeFor(tt.err)
		if code != tt.code || reason != tt.reason {
			t.Errorf("%v: %d %q, want %d %q", tt.err, code, reason, tt.code, tt.reason)
		}
	}
	_, reason := closeFor(tollgate.Errorf(tollgate.CodeValidationError, "%s", long))
	if len(reason) > maxCloseReason || !strings.HasSuffix(reason, "é…") {
		t.Errorf("long reason: %d bytes %q", len(reason), reason)
	}
}

func TestUpstreamClose(t *testing.T) {
	tests := []struct {
		code   websocket.StatusCode
		reason string
		want   websocket.StatusCode
		wantR  string
	}{
		{1000, "done", 1000, "done"},
		{1001, "restarting", 1001, "restarting"},
		{4400, "bad language", 4400, "bad language"},
		{1011, "CUDA OOM on gpu-07", 1011, "grpc_error"},
		{1013, "busy", 1013, "overloaded"},
		{1003, "nope", 1003, "grpc_error"},
		{3001, "x", 3001, "grpc_error"},
		{1005, "", 1014, "grpc_error"},
		{1006, "", 1014, "grpc_error"},
		{1015, "", 1014, "grpc_error"},
		{5000, "", 1014, "grpc_error"},
	}
	for _, tt := range tests {
		code, reason := upstreamClose(tt.code, tt.reason, tollgate.CodeGRPCError)
		if code != tt.want || reason != tt.wantR {
			t.Errorf("upstream %d %q: %d %q, want %d %q", tt.code, tt.reason, code, reason, tt.want, tt.wantR)
		}
	}
}

func TestReadMessage(t *testing.T) {
	buf := make([]byte, 4)
	for _, n := range []int{0, 3, 4, 5, 100} {
		msg := bytes.Repeat([]byte{7}, n)
		got, err := readMessage(iotest.OneByteReader(bytes.NewReader(msg)), &buf, 100)
		if err != nil || !bytes.Equal(got, msg) {
			t.Errorf("%d bytes: %d, %v", n, len(got), err)
		}
	}
	if _, err := readMessage(bytes.NewReader(make([]byte, 101)), &buf, 100); err != errTooBig {
		t.Errorf("101 bytes over a 100 cap: %v", err)
	}
	if len(buf) > 101 {
		t.Errorf("buffer grew to %d bytes past the cap", len(buf))
	}
}

func TestAffordable(t *testing.T) {
	p := streamParams{Encoding: "s16le", SampleRate: 16000, Channels: 1, FrameBytes: 2, BytesPerSecond: 32000}
	quota := func(unit string, used, limit float64) error {
		return &tollgate.Error{Code: tollgate.CodeQuotaExceeded, Details: map[string]any{"unit": unit, "used": used, "limit": limit}}
	}
	tests := []struct {
		err   error
		price float64
		want  float64
		ok    bool
	}{
		{quota("audio_seconds", 28, 30), 2, 2, true},
		{quota("credits", 7, 10), 2, 1.5, true},
		{quota("credits", 10, 10), 2, 0, false},
		{quota("credits", 5, 10), 0, 0, false},
		{quota("audio_seconds", 30, 30), 0, 0, false},
		{quota("audio_seconds", 30-1e-6, 30), 0, 0, false}, // less than one sample frame
		{&tollgate.Error{Code: tollgate.CodeBillingRequired, Details: map[string]any{"free_credits": 3.0, "used": 1.0}}, 4, 0.5, true},
		{tollgate.NewError(tollgate.CodeRateLimitExceeded), 1, 0, false},
	}
	for i, tt := range tests {
		got, ok := affordable(tt.err, tt.price, p)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("case %d: %v %v, want %v %v", i, got, ok, tt.want, tt.ok)
		}
	}
}
