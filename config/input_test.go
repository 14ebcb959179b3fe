package config

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate"
)

const inputBase = `
admin_token: 0123456789abcdef
key_secret: 0123456789abcdef
plans: [{id: free, rpm: 10}]
models:
`

func TestInputRules(t *testing.T) {
	c, err := Parse([]byte(inputBase+`
  - id: stt
    route: POST /v1/stt
    upstream: http://127.0.0.1:1
    input:
      max_bytes: 5000000
      audio: {field: file, formats: [ogg/opus], min_seconds: 0.5, max_seconds: 600}
  - id: tts
    route: POST /v1/tts
    upstream: http://127.0.0.1:1
    input:
      json_schema:
        type: object
        required: [text]
        properties: {text: {type: string}}
      max_length: {/text: 200}
      text_field: /text
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	ms := c.DomainModels()
	if diff := cmp.Diff(ms[0].Input, &tollgate.Input{MaxBytes: 5000000,
		Audio: &tollgate.AudioInput{Field: "file", Formats: []string{"ogg/opus"}, MinSeconds: 0.5, MaxSeconds: 600}}); diff != "" {
		t.Errorf("stt input (-got +want):\n%s", diff)
	}
	in := ms[1].Input
	var schema map[string]any
	if err := json.Unmarshal(in.Schema, &schema); err != nil || schema["type"] != "object" {
		t.Errorf("schema %s: %v", in.Schema, err)
	}
	if in.MaxLength["/text"] != 200 || in.TextField != "/text" || in.BodyCap() != tollgate.DefaultMaxJSONBytes {
		t.Errorf("tts input %+v", in)
	}
}

func TestInputRulesInvalid(t *testing.T) {
	_, err := Parse([]byte(inputBase+`
  - id: a
    route: POST /v1/a
    upstream: http://127.0.0.1:1
    input:
      max_bytes: -1
      audio: {formats: [OGG], min_seconds: 5, max_seconds: 1}
      max_length: {text: 0}
      json_schema: {type: 12}
`), nil)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"models[0].input.max_bytes", "models[0].input.audio.formats[0]", "models[0].input.audio.min_seconds",
		"not a JSON pointer", "positive number of characters", "invalid JSON Schema", "exclude each other",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("report lacks %q:\n%v", want, err)
		}
	}
}

func TestMeterAndBilling(t *testing.T) {
	c, err := Parse([]byte(`
admin_token: 0123456789abcdef
key_secret: 0123456789abcdef
history_retention: 48h
plans:
  - {id: free, rpm: 1000, billing_required: true, free_credits: 500, monthly_credit_cap: 10000, monthly_limits: {stt: 360000}}
models:
  - id: stt
    route: POST /v1/stt
    upstream: http://127.0.0.1:1
    input: {audio: {}}
    meter: {unit: audio_seconds, price: 0.01}
  - id: tts
    route: POST /v1/tts
    upstream: http://127.0.0.1:1
    meter: {unit: characters, price: 0.001, trust_upstream: true}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	ms, ps := c.DomainModels(), c.DomainPlans()
	if diff := cmp.Diff(ms[0].Meter, tollgate.Meter{Unit: tollgate.UnitAudioSeconds, Price: 0.01}); diff != "" {
		t.Errorf("meter (-got +want):\n%s", diff)
	}
	if !ms[1].Meter.TrustUpstream || c.HistoryRetention.Hours() != 48 {
		t.Errorf("tts meter %+v, retention %v", ms[1].Meter, c.HistoryRetention)
	}
	if p := ps[0]; !p.BillingRequired || p.FreeCredits != 500 || p.MonthlyCreditCap != 10000 || p.MonthlyLimits["stt"] != 360000 {
		t.Errorf("plan %+v", p)
	}

	_, err = Parse([]byte(`
admin_token: 0123456789abcdef
key_secret: 0123456789abcdef
plans:
  - {id: free, rpm: 1000, free_credits: -1, monthly_limits: {nope: 1}}
models:
  - {id: a, route: POST /v1/a, upstream: "http://127.0.0.1:1", meter: {unit: minutes, price: -1}}
  - {id: b, route: POST /v1/b, upstream: "http://127.0.0.1:1", meter: {unit: audio_seconds}}
`), nil)
	for _, want := range []string{"models[0].meter.unit", "models[0].meter.price", "models[1].meter.unit: audio_seconds needs input.audio",
		"plans[0].free_credits", "plans[0].monthly_limits[nope]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("report lacks %q:\n%v", want, err)
		}
	}
}
