package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/audio"
)

// Input validation (DESIGN.md step 5): size caps while reading, audio
// sniffed and measured from its container, JSON against the model's schema
// and text caps — all before the upstream is contacted. The upstream then
// receives the original bytes unchanged, from memory or a spool file.

// historySummary bounds the input summary kept in history, in bytes.
const historySummary = 200

// spoolMemory is how much of a validated body is kept in memory before it
// spills to a temp file.
const spoolMemory = 1 << 20

// inputRules is a model's compiled input rules.
type inputRules struct {
	in     *tollgate.Input
	schema *jsonschema.Schema
}

func compileInput(m *tollgate.Model) (*inputRules, error) {
	r := &inputRules{in: m.Input}
	if m.Input != nil && len(m.Input.Schema) > 0 {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(m.Input.Schema))
		if err != nil {
			return nil, fmt.Errorf("httpapi: model %s: schema: %w", m.ID, err)
		}
		c := jsonschema.NewCompiler()
		if err := c.AddResource(m.ID+".json", doc); err != nil {
			return nil, fmt.Errorf("httpapi: model %s: schema: %w", m.ID, err)
		}
		if r.schema, err = c.Compile(m.ID + ".json"); err != nil {
			return nil, fmt.Errorf("httpapi: model %s: schema: %w", m.ID, err)
		}
	}
	return r, nil
}

// readsBody reports whether validate reads the body before the upstream
// call (audio or JSON rules), rather than only capping it as it streams.
func (ir *inputRules) readsBody() bool {
	return ir.in != nil && (ir.in.Audio != nil || ir.in.ValidatesJSON())
}

// validate checks r's body against the rules and, when it had to read the
// body to do so, replaces r.Body with the same bytes. The returned cleanup
// removes any spool file; call it after the upstream call.
func (ir *inputRules) validate(r *http.Request) (tollgate.Facts, func(), error) {
	var facts tollgate.Facts
	limit := ir.in.BodyCap()
	if r.ContentLength > limit {
		return facts, nop, tooLarge(limit)
	}
	if ir.in == nil && r.ContentLength >= 0 {
		facts.Bytes = r.ContentLength
		return facts, nop, nil // net/http reads exactly Content-Length bytes
	}
	body := &capReader{r: r.Body, left: limit, limit: limit}
	r.Body = struct {
		io.Reader
		io.Closer
	}{body, r.Body}
	switch {
	case !ir.readsBody():
		facts.Bytes = r.ContentLength
		return facts, nop, nil // streamed to the upstream, capped as it goes
	case ir.in.Audio != nil:
		return ir.validateAudio(r, body)
	default:
		return ir.validateJSON(r, body)
	}
}

func nop() {}

func tooLarge(limit int64) error {
	return &tollgate.Error{Code: tollgate.CodePayloadTooLarge,
		Message: fmt.Sprintf("The request body is larger than the %s this endpoint accepts.", byteSize(limit)),
		Details: map[string]any{"max_bytes": limit}}
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// capReader fails with payload_too_large as soon as more than limit bytes
// arrive, with or without a Content-Length.
type capReader struct {
	r           io.Reader
	left, limit int64
	n           int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// One byte more tells a body of exactly limit bytes from a longer one.
		var one [1]byte
		n, err := c.r.Read(one[:])
		if n > 0 {
			return 0, tooLarge(c.limit)
		}
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	c.n += int64(n)
	return n, err
}

// spool holds a body being validated: in memory up to spoolMemory, then
// in a temp file.
type spool struct {
	mem  bytes.Buffer
	file *os.File
	n    int64
}

func (s *spool) Write(p []byte) (int, error) {
	s.n += int64(len(p))
	if s.file == nil && s.mem.Len()+len(p) <= spoolMemory {
		return s.mem.Write(p)
	}
	if s.file == nil {
		f, err := os.CreateTemp("", "tollgate-body-*")
		if err != nil {
			return 0, fmt.Errorf("spool body: %w", err)
		}
		s.file = f
		if _, err := f.Write(s.mem.Bytes()); err != nil {
			return 0, fmt.Errorf("spool body: %w", err)
		}
		s.mem = bytes.Buffer{}
	}
	return s.file.Write(p)
}

// reader rewinds the spool for the upstream.
func (s *spool) reader() (io.ReadCloser, error) {
	if s.file == nil {
		return io.NopCloser(bytes.NewReader(s.mem.Bytes())), nil
	}
	if _, err := s.file.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("spool body: %w", err)
	}
	return io.NopCloser(s.file), nil
}

func (s *spool) cleanup() {
	if s.file != nil {
		s.file.Close()
		os.Remove(s.file.Name())
	}
}

// replaceBody makes r send the spooled bytes upstream with a known length.
func replaceBody(r *http.Request, s *spool) error {
	rc, err := s.reader()
	if err != nil {
		return err
	}
	r.Body = rc
	r.ContentLength = s.n
	r.TransferEncoding = nil
	r.Header.Set("Content-Length", strconv.FormatInt(s.n, 10))
	return nil
}

// readErr turns a body read failure into its catalog error.
func readErr(err error) error {
	var te *tollgate.Error
	if errors.As(err, &te) {
		return te
	}
	return &tollgate.Error{Code: tollgate.CodeValidationError, Message: "The request body could not be read.",
		Err: fmt.Errorf("read body: %w", err)}
}

func (ir *inputRules) validateAudio(r *http.Request, body *capReader) (facts tollgate.Facts, cleanup func(), err error) {
	a := ir.in.Audio
	sp := &spool{}
	defer func() {
		if err != nil {
			sp.cleanup()
		}
	}()
	tee := io.TeeReader(body, sp)
	var info audio.Info
	ct := r.Header.Get("Content-Type")
	mt, params, _ := mime.ParseMediaType(ct)
	if a.Field != "" {
		info, err = probeMultipart(tee, mt, params, a.Field)
	} else {
		var opts audio.Options
		opts, err = rawAudioOptions(ct, mt, params)
		if err == nil {
			info, err = audio.Probe(tee, opts)
		}
	}
	// Read to the end whatever the parsers left, so the spool holds the
	// whole body (and an over-cap body is refused even after a bad probe).
	if _, derr := io.Copy(io.Discard, tee); derr != nil {
		return facts, nop, readErr(derr)
	}
	if errors.Is(err, audio.ErrEmpty) {
		// An empty file holds no samples, like a stripped one: seed 000
		// answers both audio_too_short (and 002's 400 is a remap); the
		// message says which it was.
		err = &tollgate.Error{Code: tollgate.CodeAudioTooShort,
			Message: "The upload is empty: it holds no audio samples.",
			Details: map[string]any{"bytes": 0, "min_seconds": a.Min(), "has_samples": false}}
	}
	if err != nil {
		return facts, nop, readErr(err)
	}
	if err := checkAudio(a, info); err != nil {
		return facts, nop, err
	}
	if err := replaceBody(r, sp); err != nil {
		return facts, nop, err
	}
	facts.AudioSeconds = info.Seconds()
	facts.Bytes = sp.n
	name := string(info.Format)
	if info.Codec != "" {
		name += "/" + info.Codec
	}
	facts.Summary = fmt.Sprintf("%s, %.2f s, %d Hz, %d ch, %d bytes", name, info.Seconds(), info.SampleRate, info.Channels, sp.n)
	return facts, sp.cleanup, nil
}

// rawAudioOptions reads a raw body's content type: an audio/* or
// application/octet-stream container, or declared raw PCM
// (audio/pcm;encoding=s16le;rate=16000;channels=1, or audio/basic for
// 8 kHz mu-law).
func rawAudioOptions(ct, mt string, params map[string]string) (audio.Options, error) {
	switch {
	case mt == "audio/pcm" || mt == "audio/basic":
		p := audio.RawPCM{Encoding: params["encoding"], Channels: 1}
		if mt == "audio/basic" {
			p.Encoding, p.SampleRate = "mulaw", 8000
		}
		if v, ok := params["rate"]; ok {
			p.SampleRate, _ = strconv.Atoi(v)
		}
		if v, ok := params["channels"]; ok {
			p.Channels, _ = strconv.Atoi(v)
		}
		if err := p.Validate(); err != nil {
			return audio.Options{}, &tollgate.Error{Code: tollgate.CodeUnsupportedAudioFormat,
				Message: "Raw PCM must be declared as audio/pcm;encoding=<" + strings.Join(audio.Encodings, "|") + ">;rate=<Hz>;channels=<1|2>: " + err.Error() + ".",
				Details: map[string]any{"content_type": ct}}
		}
		return audio.Options{PCM: &p}, nil
	case strings.HasPrefix(mt, "audio/") || strings.HasPrefix(mt, "video/") || mt == "application/octet-stream" || mt == "application/ogg":
		return audio.Options{}, nil
	case mt == "":
		return audio.Options{}, &tollgate.Error{Code: tollgate.CodeUnsupportedAudioFormat,
			Message: "Send the audio with an audio content type (e.g. Content-Type: audio/ogg)."}
	}
	return audio.Options{}, &tollgate.Error{Code: tollgate.CodeUnsupportedAudioFormat,
		Message: fmt.Sprintf("Content-Type %s is not audio; send the file as the raw body with an audio/* type.", mt),
		Details: map[string]any{"content_type": ct}}
}

// probeMultipart finds field in a multipart/form-data body and probes it;
// the other parts are read through.
func probeMultipart(body io.Reader, mt string, params map[string]string, field string) (audio.Info, error) {
	if mt != "multipart/form-data" || params["boundary"] == "" {
		return audio.Info{}, &tollgate.Error{Code: tollgate.CodeValidationError, Variant: tollgate.VariantMalformed,
			Message: fmt.Sprintf("Send multipart/form-data with the audio in the %q field.", field)}
	}
	mr := multipart.NewReader(body, params["boundary"])
	found := false
	var info audio.Info
	var perr error
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return audio.Info{}, malformedMultipart(err)
		}
		if part.FormName() == field && !found {
			found = true
			opts, oerr := rawAudioOptions(part.Header.Get("Content-Type"), "application/octet-stream", nil)
			if pmt, pparams, err := mime.ParseMediaType(part.Header.Get("Content-Type")); err == nil && (pmt == "audio/pcm" || pmt == "audio/basic") {
				opts, oerr = rawAudioOptions(part.Header.Get("Content-Type"), pmt, pparams)
			}
			if oerr != nil {
				perr = oerr
			} else {
				info, perr = audio.Probe(part, opts)
			}
		}
		if _, err := io.Copy(io.Discard, part); err != nil {
			return audio.Info{}, malformedMultipart(err)
		}
	}
	if !found {
		return audio.Info{}, &tollgate.Error{Code: tollgate.CodeValidationError, Variant: tollgate.VariantMalformed,
			Message: fmt.Sprintf("The multipart field %q with the audio file is missing.", field),
			Details: map[string]any{"errors": []map[string]string{{"field": field, "reason": "required"}}}}
	}
	return info, perr
}

func malformedMultipart(err error) error {
	var te *tollgate.Error
	if errors.As(err, &te) {
		return te
	}
	return &tollgate.Error{Code: tollgate.CodeValidationError, Variant: tollgate.VariantMalformed, Message: "The multipart body is malformed.",
		Err: fmt.Errorf("multipart: %w", err)}
}

// checkAudio applies the model's policy to what Probe measured.
func checkAudio(a *tollgate.AudioInput, info audio.Info) error {
	if !a.Accepts(string(info.Format), info.Codec) {
		name := string(info.Format)
		if info.Codec != "" {
			name += "/" + info.Codec
		}
		return &tollgate.Error{Code: tollgate.CodeUnsupportedAudioFormat,
			Message: fmt.Sprintf("This endpoint does not accept %s audio; accepted: %s.", name, strings.Join(a.Formats, ", ")),
			Details: map[string]any{"format": string(info.Format), "codec": info.Codec, "accepted": a.Formats}}
	}
	secs := info.Seconds()
	if !info.HasSamples {
		return noSamples(a, secs)
	}
	if secs < a.Min() || secs == 0 {
		return &tollgate.Error{Code: tollgate.CodeAudioTooShort,
			Message: fmt.Sprintf("The audio is %.2f s long; the minimum is %g s.", secs, a.Min()),
			Details: map[string]any{"duration_seconds": round3(secs), "min_seconds": a.Min(), "has_samples": true}}
	}
	if a.MaxSeconds > 0 && secs > a.MaxSeconds {
		return &tollgate.Error{Code: tollgate.CodeValidationError,
			Message: fmt.Sprintf("The audio is %.1f s long; the maximum is %g s.", secs, a.MaxSeconds),
			Details: map[string]any{"duration_seconds": round3(secs), "max_seconds": a.MaxSeconds}}
	}
	return nil
}

// noSamples refuses a file without audio samples (empty, metadata only, a
// stripped track), whatever duration its header claims (secs).
func noSamples(a *tollgate.AudioInput, secs float64) error {
	return &tollgate.Error{Code: tollgate.CodeAudioTooShort,
		Message: "The file holds no audio samples (empty, metadata only, or the audio track was stripped).",
		Details: map[string]any{"duration_seconds": round3(secs), "min_seconds": a.Min(), "has_samples": false}}
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func (ir *inputRules) validateJSON(r *http.Request, body *capReader) (tollgate.Facts, func(), error) {
	var facts tollgate.Facts
	raw, err := io.ReadAll(body)
	if err != nil {
		return facts, nop, readErr(err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return facts, nop, &tollgate.Error{Code: tollgate.CodeValidationError, Variant: tollgate.VariantMalformed, Message: "The request body is empty; send a JSON object.",
			Details: map[string]any{"errors": []map[string]string{{"pointer": "", "message": "empty body"}}}}
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return facts, nop, &tollgate.Error{Code: tollgate.CodeValidationError, Variant: tollgate.VariantMalformed, Message: "The request body is not valid JSON.",
			Details: map[string]any{"errors": []map[string]string{{"pointer": "", "message": jsonSyntax(raw)}}}}
	}
	var violations []map[string]any
	missing := false // a required property is absent: the request is malformed
	if ir.schema != nil {
		if err := ir.schema.Validate(doc); err != nil {
			var ve *jsonschema.ValidationError
			if !errors.As(err, &ve) {
				return facts, nop, fmt.Errorf("validate schema: %w", err)
			}
			for _, leaf := range leaves(ve) {
				violations = append(violations, map[string]any{"pointer": pointer(leaf.InstanceLocation), "message": leafMessage(leaf)})
				if _, ok := leaf.ErrorKind.(*kind.Required); ok {
					missing = true
				}
			}
		}
	}
	var first map[string]any
	for _, ptr := range sortedPointers(ir.in.MaxLength) {
		max := ir.in.MaxLength[ptr]
		s, ok := lookup(doc, ptr).(string)
		if !ok {
			continue
		}
		if n := utf8.RuneCountInString(s); n > max {
			v := map[string]any{"pointer": ptr, "message": fmt.Sprintf("exceeds maximum length of %d characters", max), "length": n, "max_length": max}
			if first == nil {
				first = v
			}
			violations = append(violations, v)
		}
	}
	facts.Summary = truncate(string(raw), historySummary)
	if ir.in.TextField != "" {
		if s, ok := lookup(doc, ir.in.TextField).(string); ok {
			facts.Characters = utf8.RuneCountInString(s)
			facts.Summary = truncate(s, historySummary)
		}
	}
	if len(violations) > 0 {
		e := &tollgate.Error{Code: tollgate.CodeValidationError, Details: map[string]any{"errors": violations}}
		if missing {
			e.Variant = tollgate.VariantMalformed
		}
		if first != nil {
			e.Message = fmt.Sprintf("Text exceeds maximum length of %d characters.", first["max_length"])
			e.Details["length"], e.Details["max_length"] = first["length"], first["max_length"]
		} else {
			e.Message = fmt.Sprintf("%s: %s", orRoot(violations[0]["pointer"].(string)), violations[0]["message"])
		}
		return facts, nop, e
	}
	r.Body = io.NopCloser(bytes.NewReader(raw))
	r.ContentLength = int64(len(raw))
	r.TransferEncoding = nil
	r.Header.Set("Content-Length", strconv.Itoa(len(raw)))
	facts.Bytes = int64(len(raw))
	return facts, nop, nil
}

func orRoot(p string) string {
	if p == "" {
		return "body"
	}
	return p
}

// jsonSyntax describes a JSON syntax error without echoing the input.
func jsonSyntax(raw []byte) string {
	var v any
	err := json.Unmarshal(raw, &v)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	if err != nil {
		return "malformed JSON"
	}
	return "trailing data after the JSON value"
}

// leaves returns the innermost causes of a schema failure.
func leaves(ve *jsonschema.ValidationError) []*jsonschema.ValidationError {
	if len(ve.Causes) == 0 {
		return []*jsonschema.ValidationError{ve}
	}
	var out []*jsonschema.ValidationError
	for _, c := range ve.Causes {
		out = append(out, leaves(c)...)
	}
	return out
}

func leafMessage(ve *jsonschema.ValidationError) string {
	msg := ve.Error()
	// The library's message starts with the location; keep the reason.
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.HasPrefix(msg, "at '") {
		return msg[i+2:]
	}
	return msg
}

func pointer(loc []string) string {
	if len(loc) == 0 {
		return ""
	}
	var b strings.Builder
	for _, t := range loc {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

// lookup resolves a JSON pointer in a decoded document (nil if absent).
func lookup(doc any, ptr string) any {
	if ptr == "" {
		return doc
	}
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch v := doc.(type) {
		case map[string]any:
			doc = v[tok]
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(v) {
				return nil
			}
			doc = v[i]
		default:
			return nil
		}
	}
	return doc
}

func sortedPointers(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type factsKey struct{}

// FactsFrom returns what input validation measured about r (zero when the
// model validates nothing).
func FactsFrom(r *http.Request) tollgate.Facts {
	f, _ := r.Context().Value(factsKey{}).(tollgate.Facts)
	return f
}
