package demomodel

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/coder/websocket"

	"github.com/tollgate/tollgate/audio"
)

// StallFor is how long stall_after leaves a stream unread before it
// drops it.
const StallFor = 10 * time.Second

// StreamModel is the streaming model's name in its answers.
const StreamModel = "demo-stream"

// The streaming model, GET /v1/stream (WebSocket):
//
//	?audio_format=s16le|s24le|s32le|f32le|mulaw|alaw&sample_rate=N&num_channels=N
//
// It answers every binary message (a chunk of raw PCM) with one text
// message:
//
//	{"model":"demo-stream","chunk":1,"bytes":640,"duration_ms":20,"rms":0.2121,"total_seconds":0.02}
//
// chunk counts from 1; rms is the chunk's root mean square level, 0 to 1
// (full scale). A missing or bad parameter closes with 1003. Test knobs,
// also query parameters: close_after=N closes after the Nth answer with
// close_code (default 1011) and close_reason; drop_after=N drops the
// connection after the Nth answer, without a close frame (the model
// crashed); stall_after=N stops reading after the Nth answer, so pings go
// unanswered (the model hung); reject=STATUS answers the handshake with
// that HTTP status instead.

func (h *Handler) stream(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if s := q.Get("reject"); s != "" {
		status, err := strconv.Atoi(s)
		if err != nil || status < 400 || status > 599 {
			status = http.StatusBadRequest
		}
		detail(w, status, "handshake rejected")
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(16 << 20)
	enc := q.Get("audio_format")
	rate, _ := strconv.Atoi(q.Get("sample_rate"))
	channels, _ := strconv.Atoi(q.Get("num_channels"))
	size := audio.SampleSize(enc)
	if size == 0 || rate <= 0 || channels <= 0 {
		c.Close(websocket.StatusUnsupportedData, "audio_format, sample_rate and num_channels are required")
		return
	}
	closeAfter, _ := strconv.Atoi(q.Get("close_after"))
	closeCode := websocket.StatusInternalError
	if n, err := strconv.Atoi(q.Get("close_code")); err == nil {
		closeCode = websocket.StatusCode(n)
	}
	closeReason := q.Get("close_reason")
	dropAfter, _ := strconv.Atoi(q.Get("drop_after"))
	stallAfter, _ := strconv.Atoi(q.Get("stall_after"))
	h.streams.Add(1)

	ctx := context.Background()
	buf := make([]byte, 4096)
	out := make([]byte, 0, 160)
	var chunks, total int64
	for {
		typ, rd, err := c.Reader(ctx)
		if err != nil {
			return // the peer closed or went away
		}
		n, err := readAll(rd, &buf)
		if err != nil {
			return
		}
		if typ != websocket.MessageBinary {
			continue
		}
		chunks++
		total += int64(n)
		h.streamBytes.Add(int64(n))
		frame := size * channels
		seconds := float64(total/int64(frame)) / float64(rate)
		out = out[:0]
		out = append(out, `{"model":"`+StreamModel+`","chunk":`...)
		out = strconv.AppendInt(out, chunks, 10)
		out = append(out, `,"bytes":`...)
		out = strconv.AppendInt(out, int64(n), 10)
		out = append(out, `,"duration_ms":`...)
		out = strconv.AppendFloat(out, float64(n/frame)*1000/float64(rate), 'f', -1, 64)
		out = append(out, `,"rms":`...)
		out = strconv.AppendFloat(out, math.Round(rms(buf[:n], enc)*1e4)/1e4, 'f', -1, 64)
		out = append(out, `,"total_seconds":`...)
		out = strconv.AppendFloat(out, seconds, 'f', -1, 64)
		out = append(out, '}')
		if err := c.Write(ctx, websocket.MessageText, out); err != nil {
			return
		}
		switch {
		case closeAfter > 0 && chunks >= int64(closeAfter):
			c.Close(closeCode, closeReason)
			return
		case dropAfter > 0 && chunks >= int64(dropAfter):
			return // CloseNow: the TCP connection ends without a close frame
		case stallAfter > 0 && chunks >= int64(stallAfter):
			time.Sleep(StallFor) // nothing read: no pong, no close
			return
		}
	}
}

// readAll reads a message into *buf, growing it.
func readAll(r io.Reader, buf *[]byte) (int, error) {
	b := *buf
	n := 0
	for {
		if n == len(b) {
			b = append(b, make([]byte, len(b))...)
		}
		k, err := r.Read(b[n:])
		n += k
		if errors.Is(err, io.EOF) {
			*buf = b
			return n, nil
		}
		if err != nil {
			*buf = b
			return n, err
		}
	}
}

// rms is the root mean square of the samples in p, full scale 1.
func rms(p []byte, enc string) float64 {
	size := audio.SampleSize(enc)
	n := len(p) / size
	if n == 0 {
		return 0
	}
	var sum float64
	for i := 0; i < n; i++ {
		s := p[i*size:]
		var v float64
		switch enc {
		case "s16le":
			v = float64(int16(binary.LittleEndian.Uint16(s))) / (1 << 15)
		case "s24le":
			v = float64(int32(uint32(s[0])<<8|uint32(s[1])<<16|uint32(s[2])<<24)>>8) / (1 << 23)
		case "s32le":
			v = float64(int32(binary.LittleEndian.Uint32(s))) / (1 << 31)
		case "f32le":
			v = float64(math.Float32frombits(binary.LittleEndian.Uint32(s)))
			if math.IsNaN(v) || math.IsInf(v, 0) {
				v = 0
			}
		case "mulaw":
			v = float64(mulaw(s[0])) / (1 << 15)
		case "alaw":
			v = float64(alaw(s[0])) / (1 << 15)
		}
		sum += v * v
	}
	return math.Sqrt(sum / float64(n))
}

// mulaw decodes a G.711 µ-law byte.
func mulaw(b byte) int16 {
	b = ^b
	t := (int(b&0x0F)<<3 + 0x84) << (int(b&0x70) >> 4)
	if b&0x80 != 0 {
		return int16(0x84 - t)
	}
	return int16(t - 0x84)
}

// alaw decodes a G.711 A-law byte.
func alaw(b byte) int16 {
	b ^= 0x55
	t := int(b&0x0F) << 4
	seg := int(b&0x70) >> 4
	switch seg {
	case 0:
		t += 8
	case 1:
		t += 0x108
	default:
		t = (t + 0x108) << (seg - 1)
	}
	if b&0x80 != 0 {
		return int16(t)
	}
	return int16(-t)
}
