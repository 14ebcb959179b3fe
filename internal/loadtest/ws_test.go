package loadtest

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/demomodel"
)

func TestRunWS(t *testing.T) {
	srv := httptest.NewServer(demomodel.New())
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/stream?audio_format=s16le&sample_rate=16000&num_channels=1"
	var windows []bool
	r, err := RunWS(context.Background(), WSConfig{
		URL: url, Streams: 5, Frame: make([]byte, 640), Interval: 20 * time.Millisecond,
		Ramp: 50 * time.Millisecond, Warmup: 100 * time.Millisecond, Duration: 400 * time.Millisecond,
		Window: func(begin bool) { windows = append(windows, begin) },
	})
	if err != nil {
		t.Fatal(err)
	}
	// Each stream sends 20 frames in the 400 ms measured.
	if r.Opened != 5 || r.Held != 5 || r.Frames != 100 || r.Lost() != 0 || len(r.Errors) != 0 {
		t.Errorf("opened %d held %d frames %d lost %d errors %v", r.Opened, r.Held, r.Frames, r.Lost(), r.Errors)
	}
	if r.Latency.Count() != 100 || r.FromSend.Count() != 100 || r.SendLag.Count() != 100 || r.Latency.Max() > time.Second {
		t.Errorf("latencies: %d, %d, %d recorded, max %v", r.Latency.Count(), r.FromSend.Count(), r.SendLag.Count(), r.Latency.Max())
	}
	if len(windows) != 2 || !windows[0] || windows[1] {
		t.Errorf("windows %v, want [true false]", windows)
	}
}

func TestRunWSRefuses(t *testing.T) {
	frame := make([]byte, 640)
	for _, c := range []WSConfig{
		{URL: "ws://10.0.0.1:80/v1/stream", Streams: 1, Frame: frame, Interval: time.Millisecond, Duration: time.Second},
		{URL: "http://127.0.0.1:80/v1/stream", Streams: 1, Frame: frame, Interval: time.Millisecond, Duration: time.Second},
		{URL: "ws://127.0.0.1:80/", Streams: MaxStreams + 1, Frame: frame, Interval: time.Millisecond, Duration: time.Second},
		{URL: "ws://127.0.0.1:80/", Streams: 1, Frame: frame, Interval: time.Millisecond, Duration: time.Hour},
		{URL: "ws://127.0.0.1:80/", Streams: 1, Interval: time.Millisecond, Duration: time.Second},
	} {
		if _, err := RunWS(context.Background(), c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if n, ok := DemoSeq([]byte(`{"model":"demo-stream","chunk":42,"bytes":640}`)); n != 42 || !ok {
		t.Errorf("DemoSeq = %d %v", n, ok)
	}
	if _, ok := DemoSeq([]byte(`{"chunk":}`)); ok {
		t.Error("DemoSeq read a number from nothing")
	}
}
