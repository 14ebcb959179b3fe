package httpapi_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/httpapi"
	"github.com/tollgate/tollgate/inmem"
	"github.com/tollgate/tollgate/sqlite"
)

// upstreamSeen records what reached the upstream.
type upstreamSeen struct {
	calls int
	body  []byte
	facts tollgate.Facts
	// usage is the Tollgate-Usage header the upstream answers with.
	usage string
}

func newValidatingServer(t *testing.T, models []*tollgate.Model) (http.Handler, string, *upstreamSeen) {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	seen := &upstreamSeen{}
	s := &httpapi.Server{
		Store:   store,
		Limiter: inmem.NewLimiter(0),
		Forward: func(w http.ResponseWriter, r *http.Request, chain []*tollgate.Model, id string, hook httpapi.Hook) (httpapi.Upstream, error) {
			seen.calls++
			var err error
			seen.body, err = io.ReadAll(r.Body)
			if err != nil {
				return httpapi.Upstream{}, err // as the proxy does: a body error before any answer
			}
			seen.facts = httpapi.FactsFrom(r)
			header := func(k string) string {
				if k == tollgate.UsageHeader {
					return seen.usage
				}
				return ""
			}
			if err := hook(chain[0], 200, header); err != nil {
				return httpapi.Upstream{}, err
			}
			w.WriteHeader(200)
			return httpapi.Upstream{Model: chain[0], Status: 200}, nil
		},
		Models: models,
		Hasher: tollgate.NewKeyHasher([]byte("0123456789abcdef0123")),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	h, err := s.Handler()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	store.PutPlan(ctx, &tollgate.Plan{ID: "p", RPM: 100000, Features: []string{"*"}})
	store.CreateOrg(ctx, &tollgate.Org{ID: "o", Name: "O", PlanID: "p"})
	for _, m := range models {
		store.GrantModel(ctx, "o", m.ID)
	}
	_, key, err := s.CreateKey(ctx, "o", httpapi.KeyRequest{Name: "k"})
	if err != nil {
		t.Fatal(err)
	}
	return h, key, seen
}

// wav returns a 16-bit mono PCM WAV of d at 16 kHz.
func wav(d time.Duration) []byte {
	n := int(d.Seconds() * 16000)
	b := make([]byte, 44+2*n)
	copy(b, "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+2*n))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1)
	binary.LittleEndian.PutUint16(b[22:], 1)
	binary.LittleEndian.PutUint32(b[24:], 16000)
	binary.LittleEndian.PutUint32(b[28:], 32000)
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(2*n))
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint16(b[44+2*i:], uint16(i*37))
	}
	return b
}

func multipartBody(field, filename string, data []byte) (string, []byte) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("language", "en")
	fw, _ := mw.CreateFormFile(field, filename)
	fw.Write(data)
	mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

type call struct {
	name        string
	path        string
	contentType string
	body        []byte
	status      int
	code        string
}

func run(t *testing.T, h http.Handler, key string, seen *upstreamSeen, tests []call) {
	t.Helper()
	for _, tt := range tests {
		before := seen.calls
		req := httptest.NewRequest("POST", tt.path, bytes.NewReader(tt.body))
		req.Header.Set("X-API-Key", key)
		if tt.contentType != "" {
			req.Header.Set("Content-Type", tt.contentType)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != tt.status {
			t.Errorf("%s: status %d, want %d: %s", tt.name, w.Code, tt.status, w.Body)
			continue
		}
		if tt.code != "" {
			var body map[string]any
			json.Unmarshal(w.Body.Bytes(), &body)
			if body["code"] != tt.code {
				t.Errorf("%s: code %v, want %s: %s", tt.name, body["code"], tt.code, w.Body)
			}
			if seen.calls != before {
				t.Errorf("%s: a refused request reached the upstream", tt.name)
			}
		} else if !bytes.Equal(seen.body, tt.body) {
			t.Errorf("%s: the upstream got %d bytes, not the original %d", tt.name, len(seen.body), len(tt.body))
		}
	}
}

func TestAudioValidation(t *testing.T) {
	models := []*tollgate.Model{
		{ID: "stt", Method: "POST", Path: "/stt", Input: &tollgate.Input{Audio: &tollgate.AudioInput{}}},
		{ID: "opus-only", Method: "POST", Path: "/opus", Input: &tollgate.Input{Audio: &tollgate.AudioInput{Formats: []string{"ogg/opus"}}}},
		{ID: "form", Method: "POST", Path: "/form", Input: &tollgate.Input{Audio: &tollgate.AudioInput{Field: "file", MaxSeconds: 5}}},
		{ID: "small", Method: "POST", Path: "/small", Input: &tollgate.Input{MaxBytes: 1000, Audio: &tollgate.AudioInput{}}},
	}
	h, key, seen := newValidatingServer(t, models)
	one := wav(time.Second)
	short := wav(300 * time.Millisecond)
	stripped := wav(0)
	ct, form := multipartBody("file", "a.wav", one)
	ctLong, formLong := multipartBody("file", "a.wav", wav(6*time.Second))
	ctWrong, formWrong := multipartBody("audio", "a.wav", one)
	run(t, h, key, seen, []call{
		{"1 s wav", "/stt", "audio/wav", one, 200, ""},
		{"wav sent as octet-stream", "/stt", "application/octet-stream", one, 200, ""},
		{"0.3 s wav", "/stt", "audio/wav", short, 422, "audio_too_short"},
		{"no samples", "/stt", "audio/wav", stripped, 422, "audio_too_short"},
		{"empty", "/stt", "audio/wav", nil, 422, "audio_too_short"},
		{"empty on an opus-only endpoint", "/opus", "audio/ogg", nil, 422, "audio_too_short"},
		{"not audio", "/stt", "audio/wav", []byte("hello, this is text and not audio at all"), 400, "unsupported_audio_format"},
		{"json content type", "/stt", "application/json", one, 400, "unsupported_audio_format"},
		{"wav on an opus-only endpoint", "/opus", "audio/wav", one, 400, "unsupported_audio_format"},
		{"multipart", "/form", ct, form, 200, ""},
		{"multipart too long", "/form", ctLong, formLong, 422, "validation_error"},
		{"multipart without the field", "/form", ctWrong, formWrong, 422, "validation_error"},
		{"raw body where a form is expected", "/form", "audio/wav", one, 422, "validation_error"},
		{"over max_bytes", "/small", "audio/wav", one, 413, "payload_too_large"},
	})
	// The measured duration travels with the request.
	run(t, h, key, seen, []call{{"facts", "/stt", "audio/wav", wav(2 * time.Second), 200, ""}})
	if got := seen.facts.AudioSeconds; got < 1.999 || got > 2.001 {
		t.Errorf("facts.AudioSeconds = %v, want 2", got)
	}
}

func TestPayloadTooLargeWithoutContentLength(t *testing.T) {
	models := []*tollgate.Model{{ID: "m", Method: "POST", Path: "/m", Input: &tollgate.Input{MaxBytes: 10 << 20}}}
	h, key, seen := newValidatingServer(t, models)
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, size := range []int64{10 << 20, 10<<20 + 1} {
		// An io.Reader of unknown length: sent chunked, no Content-Length.
		body := io.LimitReader(zeros{}, size)
		req, _ := http.NewRequest("POST", srv.URL+"/m", struct{ io.Reader }{body})
		req.Header.Set("X-API-Key", key)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := 200
		if size > 10<<20 {
			want = 413
		}
		if resp.StatusCode != want {
			t.Errorf("%d bytes: status %d, want %d", size, resp.StatusCode, want)
		}
		// A bound for a hang (the refusal must not wait for the rest of
		// an endless body), not a speed claim: BenchmarkUpload100MB
		// measures the speed, and a loaded -race run is slow.
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("%d bytes took %v", size, d)
		}
	}
	// Without audio or JSON rules the body streams to the upstream as it
	// arrives; the cap cuts it off there (the proxy aborts the upload).
	if seen.calls != 2 {
		t.Errorf("upstream calls %d, want 2", seen.calls)
	}
}

// TestJSONTooLargeWithoutContentLength: a model with JSON rules reads the
// body before the upstream is called, so a chunked body over the cap is
// refused with 413 and never reaches it.
func TestJSONTooLargeWithoutContentLength(t *testing.T) {
	models := []*tollgate.Model{{ID: "j", Method: "POST", Path: "/j", Input: &tollgate.Input{
		MaxBytes: 1 << 20, Schema: []byte(`{"type":"object"}`)}}}
	h, key, seen := newValidatingServer(t, models)
	srv := httptest.NewServer(h)
	defer srv.Close()
	body := io.MultiReader(strings.NewReader(`{"text":"`), io.LimitReader(zeros{}, 2<<20))
	req, _ := http.NewRequest("POST", srv.URL+"/j", struct{ io.Reader }{body})
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e struct{ Code string }
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 413 || e.Code != "payload_too_large" {
		t.Errorf("2 MB of JSON, chunked, over a 1 MB cap: %d %q, want 413 payload_too_large", resp.StatusCode, e.Code)
	}
	if seen.calls != 0 {
		t.Errorf("the upstream was called %d times", seen.calls)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestJSONValidation(t *testing.T) {
	schema := []byte(`{"type":"object","required":["text"],"properties":{"text":{"type":"string"},"speed":{"type":"number","minimum":0.5}}}`)
	models := []*tollgate.Model{{ID: "tts", Method: "POST", Path: "/tts", Input: &tollgate.Input{
		Schema: schema, MaxLength: map[string]int{"/text": 200}, TextField: "/text"}}}
	h, key, seen := newValidatingServer(t, models)
	long := `{"text":"` + strings.Repeat("é", 350) + `"}`
	run(t, h, key, seen, []call{
		{"ok", "/tts", "application/json", []byte(`{"text":"hello"}`), 200, ""},
		{"malformed", "/tts", "application/json", []byte(`{"text":`), 422, "validation_error"},
		{"empty", "/tts", "application/json", nil, 422, "validation_error"},
		{"schema", "/tts", "application/json", []byte(`{"speed":0.1}`), 422, "validation_error"},
		{"too long", "/tts", "application/json", []byte(long), 422, "validation_error"},
	})
	// Every violation is listed with its pointer; text caps carry length/max_length.
	req := httptest.NewRequest("POST", "/tts", strings.NewReader(`{"speed":0.1,"text":"`+strings.Repeat("a", 350)+`"}`))
	req.Header.Set("X-API-Key", key)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	var body struct {
		Error   string
		Details struct {
			Length    int `json:"length"`
			MaxLength int `json:"max_length"`
			Errors    []struct{ Pointer, Message string }
		}
	}
	json.Unmarshal(w.Body.Bytes(), &body)
	if body.Details.Length != 350 || body.Details.MaxLength != 200 {
		t.Errorf("details %+v", body.Details)
	}
	pointers := map[string]bool{}
	for _, e := range body.Details.Errors {
		pointers[e.Pointer] = true
	}
	if !pointers["/speed"] || !pointers["/text"] || len(body.Details.Errors) != 2 {
		t.Errorf("violations %+v, want /speed and /text", body.Details.Errors)
	}
	if body.Error != "Text exceeds maximum length of 200 characters." {
		t.Errorf("message %q", body.Error)
	}
	// Characters are metered from the text field, in characters not bytes.
	run(t, h, key, seen, []call{{"facts", "/tts", "application/json", []byte(`{"text":"héllo"}`), 200, ""}})
	if seen.facts.Characters != 5 {
		t.Errorf("facts.Characters = %d, want 5", seen.facts.Characters)
	}
}

// TestReportedUsage: a model that trusts its upstream is charged what the
// upstream reports in Tollgate-Usage (for the model's unit); one that does
// not, or a report it cannot read, is charged the estimate.
func TestReportedUsage(t *testing.T) {
	schema := []byte(`{"type":"object","required":["text"]}`)
	input := &tollgate.Input{Schema: schema, TextField: "/text"}
	models := []*tollgate.Model{
		{ID: "trusting", Method: "POST", Path: "/trusting", Input: input,
			Meter: tollgate.Meter{Unit: tollgate.UnitCharacters, Price: 2, TrustUpstream: true}},
		{ID: "wary", Method: "POST", Path: "/wary", Input: input,
			Meter: tollgate.Meter{Unit: tollgate.UnitCharacters, Price: 2}},
	}
	h, key, seen := newValidatingServer(t, models)
	body := []byte(`{"text":"hello"}`) // 5 characters estimated
	for _, c := range []struct{ path, usage string }{
		{"/trusting", "characters=42"},
		{"/trusting", "audio_seconds=3, characters=7"},
		{"/trusting", "characters=lots"}, // unreadable: the estimate
		{"/trusting", "audio_seconds=9"}, // another unit: the estimate
		{"/wary", "characters=42"},       // not trusted: the estimate
	} {
		seen.usage = c.usage
		run(t, h, key, seen, []call{{c.path + " " + c.usage, c.path, "application/json", body, 200, ""}})
	}
	req := httptest.NewRequest("GET", "/v1/usage?group_by=model", nil)
	req.Header.Set("X-API-Key", key)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	var u struct {
		Rows []struct {
			Model    string
			Quantity float64
			Credits  float64
			Requests int
		}
	}
	if err := json.Unmarshal(w.Body.Bytes(), &u); err != nil {
		t.Fatalf("usage: %d %s", w.Code, w.Body)
	}
	want := map[string][2]float64{"trusting": {42 + 7 + 5 + 5, 2 * (42 + 7 + 5 + 5)}, "wary": {5, 10}}
	for _, r := range u.Rows {
		if got := [2]float64{r.Quantity, r.Credits}; got != want[r.Model] {
			t.Errorf("%s: %v characters and credits, want %v", r.Model, got, want[r.Model])
		}
		delete(want, r.Model)
	}
	if len(want) != 0 {
		t.Errorf("no usage rows for %v: %s", want, w.Body)
	}
}

// TestMalformedStatus: a profile that remaps validation_error.malformed
// answers a request that is not well formed (empty, not JSON, a required
// field missing, not multipart or without its file) with that status,
// and a well-formed one with invalid values with validation_error's.
func TestMalformedStatus(t *testing.T) {
	schema := []byte(`{"type":"object","required":["text"],"properties":{"text":{"type":"string"},"speed":{"type":"number","minimum":0.5}}}`)
	statuses := map[tollgate.Code]int{tollgate.StatusKey(tollgate.CodeValidationError, tollgate.VariantMalformed): 400}
	models := []*tollgate.Model{
		{ID: "tts", Method: "POST", Path: "/tts", Statuses: statuses, Input: &tollgate.Input{
			Schema: schema, MaxLength: map[string]int{"/text": 200}, TextField: "/text"}},
		{ID: "stt", Method: "POST", Path: "/stt", Statuses: statuses, Input: &tollgate.Input{
			Audio: &tollgate.AudioInput{Field: "file", MinSeconds: 0.5}}},
	}
	h, key, seen := newValidatingServer(t, models)
	run(t, h, key, seen, []call{
		{"not JSON", "/tts", "application/json", []byte(`{"text":`), 400, "validation_error"},
		{"empty", "/tts", "application/json", nil, 400, "validation_error"},
		{"missing field", "/tts", "application/json", []byte(`{"speed":1}`), 400, "validation_error"},
		{"missing and invalid", "/tts", "application/json", []byte(`{"speed":0.1}`), 400, "validation_error"},
		{"invalid type", "/tts", "application/json", []byte(`{"text":5}`), 422, "validation_error"},
		{"invalid value", "/tts", "application/json", []byte(`{"text":"x","speed":0.1}`), 422, "validation_error"},
		{"too long", "/tts", "application/json", []byte(`{"text":"` + strings.Repeat("a", 201) + `"}`), 422, "validation_error"},
		{"not multipart", "/stt", "application/json", []byte(`{}`), 400, "validation_error"},
		{"ok", "/tts", "application/json", []byte(`{"text":"hello"}`), 200, ""},
	})
}
