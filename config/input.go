package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tollgate/tollgate"
)

// InputConfig is a model's input rules (`input:`), checked before the
// upstream is contacted.
type InputConfig struct {
	// MaxBytes caps the body. Default: 100 MB (1 MB for JSON-validated
	// bodies without audio).
	MaxBytes int64 `yaml:"max_bytes,omitempty" koanf:"max_bytes"`
	// Audio requires an audio upload.
	Audio *AudioConfig `yaml:"audio,omitempty" koanf:"audio"`
	// JSONSchema is a JSON Schema (written in YAML or JSON) for the body.
	JSONSchema map[string]any `yaml:"json_schema,omitempty" koanf:"json_schema"`
	// MaxLength caps text fields: JSON pointer -> characters.
	MaxLength map[string]int `yaml:"max_length,omitempty" koanf:"max_length"`
	// TextField is the JSON pointer of the metered text.
	TextField string `yaml:"text_field,omitempty" koanf:"text_field"`
}

// AudioConfig says where a model's audio is and what is accepted.
type AudioConfig struct {
	// Field is the multipart field holding the file; empty: the raw body.
	Field string `yaml:"field,omitempty" koanf:"field"`
	// Formats accepted: container (wav, ogg, mp3, flac, webm, mp4, aac,
	// pcm), codec (opus, vorbis, …) or container/codec (ogg/opus).
	Formats []string `yaml:"formats,omitempty" koanf:"formats"`
	// MinSeconds: default 0.5; a negative value disables the minimum.
	MinSeconds float64 `yaml:"min_seconds,omitempty" koanf:"min_seconds"`
	// MaxSeconds: 0 means no maximum.
	MaxSeconds float64 `yaml:"max_seconds,omitempty" koanf:"max_seconds"`
}

var (
	formatPattern = regexp.MustCompile(`^[a-z0-9_]+(/[a-z0-9_]+)?$`)
	fieldPattern  = regexp.MustCompile(`^[A-Za-z0-9_.\[\]-]{1,100}$`)
)

// CompileSchema compiles a JSON Schema given as JSON.
func CompileSchema(schema []byte) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("model.json", doc); err != nil {
		return nil, err
	}
	return c.Compile("model.json")
}

func validPointer(p string) bool {
	return p == "" || strings.HasPrefix(p, "/")
}

func (p *problems) input(at func(string) string, in *InputConfig) {
	if in == nil {
		return
	}
	if in.MaxBytes < 0 {
		p.addf(at("input.max_bytes"), "must be >= 0")
	}
	if len(in.JSONSchema) > 0 {
		b, err := json.Marshal(in.JSONSchema)
		if err != nil {
			p.addf(at("input.json_schema"), "not representable as JSON: %v", err)
		} else if _, err := CompileSchema(b); err != nil {
			p.addf(at("input.json_schema"), "invalid JSON Schema: %v", err)
		}
	}
	for _, ptr := range sortedKeys(in.MaxLength) {
		if !validPointer(ptr) || ptr == "" {
			p.addf(at("input.max_length"), "%q is not a JSON pointer (e.g. /text)", ptr)
		}
		if in.MaxLength[ptr] <= 0 {
			p.addf(at("input.max_length"), "%q: must be a positive number of characters", ptr)
		}
	}
	if in.TextField != "" && !validPointer(in.TextField) {
		p.addf(at("input.text_field"), "%q is not a JSON pointer (e.g. /text)", in.TextField)
	}
	if a := in.Audio; a != nil {
		if a.Field != "" && !fieldPattern.MatchString(a.Field) {
			p.addf(at("input.audio.field"), "%q is not a form field name", a.Field)
		}
		for k, f := range a.Formats {
			if !formatPattern.MatchString(f) {
				p.addf(at(fmt.Sprintf("input.audio.formats[%d]", k)), "%q: want a format, codec or format/codec in lower case (e.g. ogg/opus)", f)
			}
		}
		if a.MaxSeconds < 0 {
			p.addf(at("input.audio.max_seconds"), "must be >= 0 (0 = no maximum)")
		}
		if a.MaxSeconds > 0 && a.MinSeconds > a.MaxSeconds {
			p.addf(at("input.audio.min_seconds"), "%g is above max_seconds %g", a.MinSeconds, a.MaxSeconds)
		}
		if len(in.JSONSchema) > 0 || len(in.MaxLength) > 0 || in.TextField != "" {
			p.addf(at("input"), "audio and JSON rules exclude each other: an audio body is not JSON")
		}
	}
}

// domainInput converts a valid InputConfig.
func domainInput(in *InputConfig) *tollgate.Input {
	if in == nil {
		return nil
	}
	out := &tollgate.Input{MaxBytes: in.MaxBytes, TextField: in.TextField}
	if len(in.JSONSchema) > 0 {
		out.Schema, _ = json.Marshal(in.JSONSchema)
	}
	if len(in.MaxLength) > 0 {
		out.MaxLength = make(map[string]int, len(in.MaxLength))
		for k, v := range in.MaxLength {
			out.MaxLength[k] = v
		}
	}
	if a := in.Audio; a != nil {
		out.Audio = &tollgate.AudioInput{Field: a.Field, Formats: append([]string(nil), a.Formats...),
			MinSeconds: a.MinSeconds, MaxSeconds: a.MaxSeconds}
	}
	return out
}
