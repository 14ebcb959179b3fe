// Package demomodel is a demo model server: the upstream of `tollgate demo`,
// the end-to-end tests and the load harness. It answers like a small
// FastAPI model server ({"detail": ...} errors) and counts its in-flight
// requests, so tests can check the gateway's concurrency cap from the
// upstream's side.
//
// Routes (upstream paths):
//
//	POST /v1/text/generate   {"text": s} or {"inputs": s, ...} → {"model":"echo-text","output":UPPER(s),"characters":N}
//	POST /v1/audio/transcribe audio/* body or multipart "file" → {"model":"demo-stt","bytes":N,"sha256":...}
//	POST /v1/slow?ms=N        waits N ms (default 5000) or until the request ends
//	POST /v1/fail?status=N    answers 500 (or N) with an internal-looking body
//	GET  /v1/hello, POST /v1/echo   a fixed 179-byte JSON answer
//	GET  /v1/stream           WebSocket: raw PCM chunks in, one JSON answer per chunk (stream.go)
package demomodel

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Model names in the answers.
const (
	TextModel  = "echo-text"
	AudioModel = "demo-stt"
	SlowModel  = "demo-slow"
)

// Transcript is the text every transcription answers.
const Transcript = "Hello from the tollgate demo model. This is a fixed transcript."

// MaxTextBody caps a text request's body.
const MaxTextBody = 1 << 20

// HelloAnswer is the fixed answer of /v1/hello and /v1/echo.
var HelloAnswer = []byte(`{"model":"demo-hello","output":"hello","usage":{"characters":5,"credits":1},"request_id":"00000000-0000-0000-0000-000000000000","latency_ms":0,"cached":false,"note":"fixed reply"}`)

// FailBody is what /v1/fail answers with a 500: internals a gateway must
// never pass to its clients.
const FailBody = "Traceback (most recent call last):\n" +
	"  File \"/srv/model/app.py\", line 42, in generate\n" +
	"    out = model(batch.to(\"cuda:0\"))\n" +
	"RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (secret-internal-host gpu-07)\n"

// Handler serves the demo model's routes. It is safe for concurrent use.
type Handler struct {
	mux         *http.ServeMux
	inFlight    atomic.Int64
	maxInFlight atomic.Int64
	requests    atomic.Int64
	lastHeaders atomic.Pointer[http.Header]
	lastQuery   atomic.Pointer[string]
	streams     atomic.Int64
	streamBytes atomic.Int64
}

// New returns the demo model's handler.
func New() *Handler {
	h := &Handler{mux: http.NewServeMux()}
	h.mux.HandleFunc("POST /v1/text/generate", textGenerate)
	h.mux.HandleFunc("POST /v1/audio/transcribe", audioTranscribe)
	h.mux.HandleFunc("POST /v1/slow", slow)
	h.mux.HandleFunc("POST /v1/fail", fail)
	h.mux.HandleFunc("GET /v1/hello", hello)
	h.mux.HandleFunc("POST /v1/echo", hello)
	h.mux.HandleFunc("GET /v1/stream", h.stream)
	return h
}

// LastQuery returns the last request's raw query string.
func (h *Handler) LastQuery() string {
	if p := h.lastQuery.Load(); p != nil {
		return *p
	}
	return ""
}

// Streams returns the number of streams accepted.
func (h *Handler) Streams() int64 { return h.streams.Load() }

// StreamBytes returns the audio bytes received by every stream.
func (h *Handler) StreamBytes() int64 { return h.streamBytes.Load() }

// ServeHTTP counts the request and serves it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.requests.Add(1)
	n := h.inFlight.Add(1)
	defer h.inFlight.Add(-1)
	for {
		m := h.maxInFlight.Load()
		if n <= m || h.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	// The request's own map: nothing writes to it once parsed.
	hdr, q := r.Header, r.URL.RawQuery
	h.lastHeaders.Store(&hdr)
	h.lastQuery.Store(&q)
	h.mux.ServeHTTP(w, r)
}

// InFlight returns the number of requests being served.
func (h *Handler) InFlight() int64 { return h.inFlight.Load() }

// MaxInFlight returns the most requests served at once since New or the
// last ResetMaxInFlight.
func (h *Handler) MaxInFlight() int64 { return h.maxInFlight.Load() }

// ResetMaxInFlight sets MaxInFlight to the current InFlight.
func (h *Handler) ResetMaxInFlight() { h.maxInFlight.Store(h.inFlight.Load()) }

// Requests returns the number of requests received.
func (h *Handler) Requests() int64 { return h.requests.Load() }

// LastHeaders returns a copy of the last request's headers, or nil.
func (h *Handler) LastHeaders() http.Header {
	p := h.lastHeaders.Load()
	if p == nil {
		return nil
	}
	return p.Clone()
}

// detail answers a FastAPI-style error.
func detail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"detail": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"detail":"encode answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// textRequest accepts both {"text": ...} and the Hugging Face shape
// {"model": ..., "inputs": ..., "parameters": ...}.
type textRequest struct {
	Text       *string        `json:"text"`
	Model      string         `json:"model"`
	Inputs     *string        `json:"inputs"`
	Parameters map[string]any `json:"parameters"`
}

type textAnswer struct {
	Model      string `json:"model"`
	Output     string `json:"output"`
	Characters int    `json:"characters"`
}

func textGenerate(w http.ResponseWriter, r *http.Request) {
	var req textRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxTextBody))
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			detail(w, http.StatusRequestEntityTooLarge, "body larger than 1 MiB")
			return
		}
		detail(w, http.StatusBadRequest, "invalid JSON body")
		return
	}
	if dec.More() {
		detail(w, http.StatusBadRequest, "invalid JSON body: trailing data")
		return
	}
	var text string
	switch {
	case req.Text != nil:
		text = *req.Text
	case req.Inputs != nil:
		text = *req.Inputs
	default:
		detail(w, http.StatusUnprocessableEntity, `field "text" (or "inputs") is required`)
		return
	}
	writeJSON(w, http.StatusOK, textAnswer{
		Model:      TextModel,
		Output:     strings.ToUpper(text),
		Characters: utf8.RuneCountInString(text),
	})
}

type audioAnswer struct {
	Model       string `json:"model"`
	Bytes       int64  `json:"bytes"`
	SHA256      string `json:"sha256"` // of the audio received: the caller can check it arrived unchanged
	ContentType string `json:"content_type"`
	Text        string `json:"text"`
}

// audioTranscribe counts the uploaded audio as it streams in; it never
// holds more than a read buffer of it.
func audioTranscribe(w http.ResponseWriter, r *http.Request) {
	ct := r.Header.Get("Content-Type")
	mediaType, _, _ := mime.ParseMediaType(ct)
	var (
		audio io.Reader
		typ   string
	)
	switch {
	case mediaType == "multipart/form-data":
		mr, err := r.MultipartReader()
		if err != nil {
			detail(w, http.StatusBadRequest, "invalid multipart body")
			return
		}
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				detail(w, http.StatusBadRequest, `multipart field "file" is required`)
				return
			}
			if err != nil {
				detail(w, http.StatusBadRequest, "invalid multipart body")
				return
			}
			if part.FormName() == "file" {
				audio, typ = part, part.Header.Get("Content-Type")
				if typ == "" {
					typ = "application/octet-stream"
				}
				break
			}
		}
	case strings.HasPrefix(mediaType, "audio/") || mediaType == "application/octet-stream":
		audio, typ = r.Body, ct
	default:
		detail(w, http.StatusUnsupportedMediaType, "send audio/* or multipart/form-data with a file field")
		return
	}
	sum := sha256.New()
	n, err := io.Copy(sum, audio)
	if err != nil {
		detail(w, http.StatusBadRequest, "could not read the audio")
		return
	}
	if n == 0 {
		detail(w, http.StatusBadRequest, "empty audio")
		return
	}
	writeJSON(w, http.StatusOK, audioAnswer{Model: AudioModel, Bytes: n, SHA256: hex.EncodeToString(sum.Sum(nil)),
		ContentType: typ, Text: Transcript})
}

// DefaultSlow is how long /v1/slow waits without ?ms=.
const DefaultSlow = 5 * time.Second

func slow(w http.ResponseWriter, r *http.Request) {
	d := DefaultSlow
	if s := r.URL.Query().Get("ms"); s != "" {
		ms, err := strconv.Atoi(s)
		if err != nil || ms < 0 {
			detail(w, http.StatusBadRequest, "ms must be a non-negative integer")
			return
		}
		d = time.Duration(ms) * time.Millisecond
	}
	io.Copy(io.Discard, r.Body)
	start := time.Now()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return // nobody to answer
	}
	writeJSON(w, http.StatusOK, map[string]any{"model": SlowModel, "slept_ms": time.Since(start).Milliseconds()})
}

func fail(w http.ResponseWriter, r *http.Request) {
	status := http.StatusInternalServerError
	if s := r.URL.Query().Get("status"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 400 || n > 599 {
			detail(w, http.StatusBadRequest, "status must be 400-599")
			return
		}
		status = n
	}
	io.Copy(io.Discard, r.Body)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, `{"detail":"model overloaded, try again"}`)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Internal-Host", "gpu-07.internal")
	w.WriteHeader(status)
	io.WriteString(w, FailBody)
}

var (
	helloType   = []string{"application/json"}
	helloLength = []string{strconv.Itoa(len(HelloAnswer))}
)

func hello(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		io.Copy(io.Discard, r.Body)
	}
	h := w.Header()
	h["Content-Type"] = helloType
	h["Content-Length"] = helloLength
	w.Write(HelloAnswer)
}
