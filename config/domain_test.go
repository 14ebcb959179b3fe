package config

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tollgate/tollgate"
)

func TestDomain(t *testing.T) {
	c, err := Load(examplePath, nil)
	if err != nil {
		t.Fatal(err)
	}

	wantModels := []*tollgate.Model{
		{
			ID:                "echo-text",
			Feature:           "text",
			Method:            "POST",
			Path:              "/v1/text",
			Upstream:          "http://127.0.0.1:9100",
			UpstreamPath:      "/v1/text/generate",
			Timeout:           60 * time.Second,
			Fallbacks:         []string{"echo-text-backup"},
			Profile:           tollgate.ProfileDetail,
			Statuses:          map[tollgate.Code]int{tollgate.CodeQuotaExceeded: 403},
			UpstreamErrorCode: tollgate.CodeGRPCError,
			Input: &tollgate.Input{
				MaxBytes:  65536,
				Schema:    []byte(`{"properties":{"text":{"type":"string"}},"required":["text"],"type":"object"}`),
				MaxLength: map[string]int{"/text": 200},
				TextField: "/text",
			},
			Meter: tollgate.Meter{Unit: tollgate.UnitCharacters, Price: 0.0002},
		},
		{
			ID: "stt", Feature: "stt", Method: "POST", Path: "/v1/speech-to-text",
			Upstream: "http://127.0.0.1:9102", Timeout: 60 * time.Second, UpstreamErrorCode: tollgate.CodeUpstreamError,
			Input: &tollgate.Input{MaxBytes: 104857600, Audio: &tollgate.AudioInput{Field: "file",
				Formats: []string{"ogg/opus", "webm/opus"}, MinSeconds: 0.5, MaxSeconds: 3600}},
		},
		{
			ID: "stt-stream", Feature: "stt", Method: "GET", Path: "/v1/stream/speech-to-text",
			Upstream: "ws://127.0.0.1:9103", UpstreamPath: "/v1/stream", Timeout: 10 * time.Second, UpstreamErrorCode: tollgate.CodeUpstreamError,
			Meter: tollgate.Meter{Unit: tollgate.UnitAudioSeconds, Price: 0.0001},
			Stream: &tollgate.Stream{Formats: []string{"s16le", "f32le"}, SampleRates: []int{8000, 16000, 48000},
				Channels: []int{1, 2}, MaxFrameBytes: 65536, ChunkSeconds: 30, IdleTimeout: 30 * time.Second, PingInterval: 15 * time.Second},
		},
		{
			ID: "echo-text-backup", Feature: "text", Method: "POST", Path: "/v1/text-backup",
			Upstream: "http://127.0.0.1:9101", Timeout: 60 * time.Second, UpstreamErrorCode: tollgate.CodeUpstreamError,
		},
		{
			ID: "echo-text-backup", Feature: "text", Method: "POST", Path: "/v1/text-backup/{variant}",
			Upstream: "http://127.0.0.1:9101", Timeout: 60 * time.Second, UpstreamErrorCode: tollgate.CodeUpstreamError,
		},
	}
	if diff := cmp.Diff(c.DomainModels(), wantModels, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("DomainModels (-got +want):\n%s", diff)
	}

	wantPlans := []*tollgate.Plan{
		{ID: "free", RPM: 1000, Concurrency: 5, ModelConcurrency: map[string]int{"echo-text": 2}, Features: []string{"text", "stt"},
			BillingRequired: true, FreeCredits: 100, MonthlyCreditCap: 1000, MonthlyLimits: map[string]float64{"stt": 36000}},
		{ID: "scale", RPM: 1000000, Features: []string{"*"}},
	}
	if diff := cmp.Diff(c.DomainPlans(), wantPlans, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("DomainPlans (-got +want):\n%s", diff)
	}

	wantProfile := tollgate.Profile{Name: tollgate.ProfileTollgate, Statuses: map[tollgate.Code]int{tollgate.CodeMissingCredential: 400}}
	if diff := cmp.Diff(c.Profile(), wantProfile); diff != "" {
		t.Errorf("Profile (-got +want):\n%s", diff)
	}

	// The domain values are copies: changing them leaves the Config alone.
	ms, ps := c.DomainModels(), c.DomainPlans()
	ms[0].Fallbacks[0] = "changed"
	ms[0].Statuses[tollgate.CodeQuotaExceeded] = 500
	ps[0].ModelConcurrency["echo-text"] = 99
	ps[0].Features[0] = "changed"
	if c.Models[0].Fallbacks[0] != "echo-text-backup" || c.Models[0].ErrorStatuses["quota_exceeded"] != 403 ||
		c.Plans[0].ModelConcurrency["echo-text"] != 2 || c.Plans[0].Features[0] != "text" {
		t.Error("domain values share memory with the Config")
	}
}

func TestParseStore(t *testing.T) {
	tests := []struct {
		in      string
		want    Backend
		wantErr string
	}{
		{in: "sqlite://data/tollgate.db", want: Backend{SQLite, "data/tollgate.db"}},
		{in: "sqlite:///var/lib/tollgate.db", want: Backend{SQLite, "/var/lib/tollgate.db"}},
		{in: "sqlite:tollgate.db", want: Backend{SQLite, "tollgate.db"}},
		{in: "SQLite://x", want: Backend{SQLite, "x"}},
		{in: "data/tollgate.db", want: Backend{SQLite, "data/tollgate.db"}},
		{in: "/tmp/a:b.db", want: Backend{SQLite, "/tmp/a:b.db"}},
		{in: `C:\data\tollgate.db`, want: Backend{SQLite, `C:\data\tollgate.db`}},
		{in: "postgres://u:p@db:5432/tollgate?sslmode=disable", want: Backend{Postgres, "postgres://u:p@db:5432/tollgate?sslmode=disable"}},
		{in: "postgresql://db/tollgate", want: Backend{Postgres, "postgresql://db/tollgate"}},
		{in: "", wantErr: "required"},
		{in: "sqlite://", wantErr: "sqlite: empty path"},
		{in: "sqlite:", wantErr: "sqlite: empty path"},
		{in: "tollgate", wantErr: `"tollgate" is not sqlite://PATH, a path ending .db, or postgres://...`},
		{in: "postgres:tollgate", wantErr: "postgres: want postgres://[user[:password]@]host[:port]/dbname"},
		{in: "postgres://u:secret@db:port/x", wantErr: `postgres: invalid URL: invalid port ":port" after host`},
		{in: "mysql://db", wantErr: `unsupported store scheme "mysql" (want sqlite or postgres)`},
	}
	for _, tt := range tests {
		got, err := ParseStore(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("ParseStore(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseStore(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseLimiter(t *testing.T) {
	tests := []struct {
		in      string
		want    Backend
		wantErr string
	}{
		{in: "memory", want: Backend{Kind: Memory}},
		{in: "redis://localhost:6379", want: Backend{Redis, "redis://localhost:6379"}},
		{in: "redis://:pw@cache:6379/3", want: Backend{Redis, "redis://:pw@cache:6379/3"}},
		{in: "rediss://cache:6380/0", want: Backend{Redis, "rediss://cache:6380/0"}},
		{in: "", wantErr: "required"},
		{in: "Memory", wantErr: "want memory or redis://host:port/db"},
		{in: "redis:cache", wantErr: "want memory or redis://host:port/db"},
		{in: "memcached://cache", wantErr: `unsupported limiter scheme "memcached" (want memory or redis)`},
		{in: "redis:///0", wantErr: "redis: no host"},
		{in: "redis://cache:6379/zero", wantErr: `redis: database "zero" is not a number`},
		{in: "redis://:secret@cache:port", wantErr: `redis: invalid URL: invalid port ":port" after host`},
	}
	for _, tt := range tests {
		got, err := ParseLimiter(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("ParseLimiter(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseLimiter(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}
