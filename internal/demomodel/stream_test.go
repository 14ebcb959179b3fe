package demomodel

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func sine16(n int, amp float64) []byte {
	b := make([]byte, 2*n)
	for i := range n {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(int16(amp*32767*math.Sin(2*math.Pi*float64(i)/32))))
	}
	return b
}

func dialStream(t *testing.T, query string) *websocket.Conn {
	t.Helper()
	srv := httptest.NewServer(New())
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/v1/stream?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func TestStreamAnswersEveryChunk(t *testing.T) {
	c := dialStream(t, "audio_format=s16le&sample_rate=16000&num_channels=1")
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		if err := c.Write(ctx, websocket.MessageBinary, sine16(320, 0.5)); err != nil {
			t.Fatal(err)
		}
		typ, b, err := c.Read(ctx)
		if err != nil || typ != websocket.MessageText {
			t.Fatalf("answer %d: %v %v", i, typ, err)
		}
		var a struct {
			Model        string
			Chunk        int
			Bytes        int
			DurationMS   float64 `json:"duration_ms"`
			RMS          float64
			TotalSeconds float64 `json:"total_seconds"`
		}
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if a.Model != StreamModel || a.Chunk != i || a.Bytes != 640 || a.DurationMS != 20 ||
			math.Abs(a.RMS-0.5/math.Sqrt2) > 0.001 || math.Abs(a.TotalSeconds-0.02*float64(i)) > 1e-9 {
			t.Errorf("answer %d: %s", i, b)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}

func TestStreamKnobs(t *testing.T) {
	c := dialStream(t, "audio_format=mulaw&sample_rate=8000&num_channels=1&close_after=2&close_code=4400&close_reason=enough")
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		c.Write(ctx, websocket.MessageBinary, make([]byte, 160))
		if _, _, err := c.Read(ctx); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := c.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4400 || ce.Reason != "enough" {
		t.Errorf("close after 2: %v", err)
	}

	c = dialStream(t, "audio_format=s16le")
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusUnsupportedData {
		t.Errorf("missing parameters: %v", err)
	}

	srv := httptest.NewServer(New())
	defer srv.Close()
	_, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/v1/stream?reject=503", nil)
	if err == nil || resp == nil || resp.StatusCode != 503 {
		t.Errorf("reject=503: %v, %v", resp, err)
	}
}

func TestG711(t *testing.T) {
	for _, c := range []struct {
		got, want int16
	}{
		{mulaw(0x80), 32124}, {mulaw(0x00), -32124}, {mulaw(0xFF), 0}, {mulaw(0x7F), 0},
		{alaw(0xAA), 32256}, {alaw(0x2A), -32256}, {alaw(0xD5), 8}, {alaw(0x55), -8},
	} {
		if c.got != c.want {
			t.Errorf("got %d, want %d", c.got, c.want)
		}
	}
	if r := rms([]byte{0x80, 0x00}, "mulaw"); math.Abs(r-32124.0/32768) > 1e-9 {
		t.Errorf("mulaw rms %v", r)
	}
}
