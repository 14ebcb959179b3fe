package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tollgate/tollgate"
)

const examplePath = "../tollgate.example.yaml"

// secrets makes a file valid when nothing else is needed.
const secrets = "admin_token: admin-token-0123456789\nkey_secret: key-secret-0123456789\n"

func TestLoadExample(t *testing.T) {
	got, err := Load(examplePath, nil)
	if err != nil {
		t.Fatalf("Load(%s): %v", examplePath, err)
	}
	want := &Config{
		Listen:            "127.0.0.1:8080",
		Store:             "sqlite://data/tollgate.db",
		Limiter:           "memory",
		LimiterPrefix:     "tg:",
		LimiterFailure:    FailOpen,
		LimiterTimeout:    100 * time.Millisecond,
		Replicas:          1,
		AdminToken:        "change-me-admin-token-0123456789",
		KeySecret:         "change-me-key-secret-0123456789",
		KeyPrefix:         "tg_live_",
		KeyCacheTTL:       2 * time.Second,
		LeaseTTL:          15 * time.Second,
		ShutdownGrace:     30 * time.Second,
		ReadHeaderTimeout: 10 * time.Second,
		KeepaliveTimeout:  120 * time.Second,
		LedgerSync:        LedgerSyncCommit,
		HistoryRetention:  720 * time.Hour,
		HistoryPath:       "/v1/history",
		UsagePath:         "/v1/usage",
		ErrorProfile:      "tollgate",
		ErrorStatuses:     map[string]int{"missing_credential": 400},
		Models: []ModelConfig{
			{
				ID:                "echo-text",
				Feature:           "text",
				Route:             "POST /v1/text",
				Upstream:          "http://127.0.0.1:9100",
				UpstreamPath:      "/v1/text/generate",
				Timeout:           60 * time.Second,
				Fallbacks:         []string{"echo-text-backup"},
				ErrorProfile:      "detail",
				ErrorStatuses:     map[string]int{"quota_exceeded": 403},
				UpstreamErrorCode: "grpc_error",
				Input: &InputConfig{
					MaxBytes: 65536,
					JSONSchema: map[string]any{
						"type":       "object",
						"required":   []any{"text"},
						"properties": map[string]any{"text": map[string]any{"type": "string"}},
					},
					MaxLength: map[string]int{"/text": 200},
					TextField: "/text",
				},
				Meter: &MeterConfig{Unit: "characters", Price: 0.0002},
			},
			{
				ID:       "stt",
				Feature:  "stt",
				Route:    "POST /v1/speech-to-text",
				Upstream: "http://127.0.0.1:9102",
				Timeout:  60 * time.Second,
				Input: &InputConfig{
					MaxBytes: 104857600,
					Audio:    &AudioConfig{Field: "file", Formats: []string{"ogg/opus", "webm/opus"}, MinSeconds: 0.5, MaxSeconds: 3600},
				},
			},
			{
				ID:           "stt-stream",
				Feature:      "stt",
				Route:        "GET /v1/stream/speech-to-text",
				Upstream:     "ws://127.0.0.1:9103",
				UpstreamPath: "/v1/stream",
				Timeout:      10 * time.Second,
				Meter:        &MeterConfig{Unit: "audio_seconds", Price: 0.0001},
				Stream: &StreamConfig{Formats: []string{"s16le", "f32le"}, SampleRates: []int{8000, 16000, 48000},
					Channels: []int{1, 2}, MaxFrameBytes: 65536, ChunkSeconds: 30, IdleTimeout: 30 * time.Second, PingInterval: 15 * time.Second},
			},
			{
				ID:       "echo-text-backup",
				Feature:  "text",
				Routes:   []string{"POST /v1/text-backup", "POST /v1/text-backup/{variant}"},
				Upstream: "http://127.0.0.1:9101",
				Timeout:  60 * time.Second,
			},
		},
		Plans: []PlanConfig{
			{ID: "free", RPM: 1000, Concurrency: 5, ModelConcurrency: map[string]int{"echo-text": 2}, Features: []string{"text", "stt"},
				BillingRequired: true, FreeCredits: 100, MonthlyCreditCap: 1000, MonthlyLimits: map[string]float64{"stt": 36000}},
			{ID: "scale", RPM: 1000000, Features: []string{"*"}},
		},
	}
	if diff := cmp.Diff(got, want, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Load(%s) (-got +want):\n%s", examplePath, diff)
	}
	if got.StoreBackend() != (Backend{Kind: SQLite, Target: "data/tollgate.db"}) {
		t.Errorf("StoreBackend() = %+v", got.StoreBackend())
	}
	if got.LimiterBackend() != (Backend{Kind: Memory}) {
		t.Errorf("LimiterBackend() = %+v", got.LimiterBackend())
	}
}

func TestParseDefaults(t *testing.T) {
	got, err := Parse([]byte(secrets+`
models:
  - id: m
    route: GET /m
    upstream: https://models.internal
plans:
  - id: p
    rpm: 10
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Listen:            DefaultListen,
		Store:             DefaultStore,
		Limiter:           DefaultLimiter,
		LimiterPrefix:     "tg:",
		LimiterFailure:    FailOpen,
		LimiterTimeout:    100 * time.Millisecond,
		Replicas:          1,
		AdminToken:        "admin-token-0123456789",
		KeySecret:         "key-secret-0123456789",
		KeyPrefix:         tollgate.DefaultKeyPrefix,
		KeyCacheTTL:       2 * time.Second,
		LeaseTTL:          15 * time.Second,
		ShutdownGrace:     30 * time.Second,
		ReadHeaderTimeout: 10 * time.Second,
		KeepaliveTimeout:  120 * time.Second,
		LedgerSync:        LedgerSyncCommit,
		HistoryRetention:  720 * time.Hour,
		HistoryPath:       "/v1/history",
		UsagePath:         "/v1/usage",
		ErrorProfile:      tollgate.ProfileTollgate,
		Models:            []ModelConfig{{ID: "m", Route: "GET /m", Upstream: "https://models.internal", Timeout: tollgate.DefaultTimeout}},
		Plans:             []PlanConfig{{ID: "p", RPM: 10}},
	}
	if diff := cmp.Diff(got, want, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Parse (-got +want):\n%s", diff)
	}
}

func TestParseExplicitZero(t *testing.T) {
	got, err := Parse([]byte(secrets+"shutdown_grace: 0s\nlisten: null\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.ShutdownGrace != 0 {
		t.Errorf("ShutdownGrace = %v, want the explicit 0s", got.ShutdownGrace)
	}
	if got.Listen != DefaultListen {
		t.Errorf("Listen = %q, want the default for null", got.Listen)
	}
}

func TestEnvOverrides(t *testing.T) {
	file := `
listen: 127.0.0.1:8080
store: sqlite://file.db
admin_token: file-admin-token-0123
key_secret: file-key-secret-0123
key_cache_ttl: 5s
error_profile: detail
error_statuses:
  missing_credential: 400
  quota_exceeded: 403
`
	environ := []string{
		"PATH=/usr/bin",
		"TOLLGATE_LISTEN=0.0.0.0:9000",
		"TOLLGATE_STORE=postgres://tollgate:pw@db:5432/tollgate",
		"TOLLGATE_LIMITER=redis://cache:6379/2",
		"TOLLGATE_LIMITER_PREFIX=acme:",
		"TOLLGATE_LIMITER_FAILURE=fail_closed",
		"TOLLGATE_LIMITER_TIMEOUT=250ms",
		"TOLLGATE_REPLICAS=3",
		"TOLLGATE_ADMIN_TOKEN=env-admin-token-0123",
		"TOLLGATE_KEY_SECRET=env-key-secret-0123",
		"TOLLGATE_KEY_PREFIX=acme_",
		"TOLLGATE_KEY_CACHE_TTL=1s",
		"TOLLGATE_LEASE_TTL=20s",
		"TOLLGATE_SHUTDOWN_GRACE=0s",
		"TOLLGATE_READ_HEADER_TIMEOUT=3s",
		"TOLLGATE_KEEPALIVE_TIMEOUT=1m",
		"TOLLGATE_ERROR_PROFILE=code",
		"TOLLGATE_ERROR_STATUSES__MISSING_CREDENTIAL=401",
		"TOLLGATE_ERROR_STATUSES__RATE_LIMIT_EXCEEDED=503",
		// Empty counts as unset; unrelated TOLLGATE_* variables are cmd's or tests'.
		"TOLLGATE_ERROR_PROFILE_UNUSED=",
		"TOLLGATE_CONFIG=/etc/tollgate.yaml",
		"TOLLGATE_TEST_POSTGRES=postgres://localhost/test",
		"tollgate_listen=lower-case-is-not-ours",
		"NOEQUALS",
	}
	got, err := Parse([]byte(file), environ)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Listen:            "0.0.0.0:9000",
		Store:             "postgres://tollgate:pw@db:5432/tollgate",
		Limiter:           "redis://cache:6379/2",
		LimiterPrefix:     "acme:",
		LimiterFailure:    FailClosed,
		LimiterTimeout:    250 * time.Millisecond,
		Replicas:          3,
		AdminToken:        "env-admin-token-0123",
		KeySecret:         "env-key-secret-0123",
		KeyPrefix:         "acme_",
		KeyCacheTTL:       time.Second,
		LeaseTTL:          20 * time.Second,
		ShutdownGrace:     0,
		ReadHeaderTimeout: 3 * time.Second,
		KeepaliveTimeout:  time.Minute,
		LedgerSync:        LedgerSyncCommit,
		HistoryRetention:  720 * time.Hour,
		HistoryPath:       "/v1/history",
		UsagePath:         "/v1/usage",
		ErrorProfile:      "code",
		ErrorStatuses:     map[string]int{"missing_credential": 401, "quota_exceeded": 403, "rate_limit_exceeded": 503},
	}
	if diff := cmp.Diff(got, want, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Parse (-got +want):\n%s", diff)
	}
	if b := got.StoreBackend(); b != (Backend{Kind: Postgres, Target: "postgres://tollgate:pw@db:5432/tollgate"}) {
		t.Errorf("StoreBackend() = %+v", b)
	}
	if b := got.LimiterBackend(); b != (Backend{Kind: Redis, Target: "redis://cache:6379/2"}) {
		t.Errorf("LimiterBackend() = %+v", b)
	}

	// An empty variable leaves the file's value.
	got, err = Parse([]byte(file), []string{"TOLLGATE_LISTEN="})
	if err != nil {
		t.Fatal(err)
	}
	if got.Listen != "127.0.0.1:8080" {
		t.Errorf("Listen = %q after an empty TOLLGATE_LISTEN, want the file's", got.Listen)
	}
}

func TestEnvOnly(t *testing.T) {
	got, err := Parse(nil, []string{"TOLLGATE_ADMIN_TOKEN=admin-token-0123456789", "TOLLGATE_KEY_SECRET=key-secret-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	if got.AdminToken != "admin-token-0123456789" || got.Listen != DefaultListen {
		t.Errorf("Parse(nil, env) = %+v", got)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(filepath.Join(dir, "missing.yaml"), nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
	if _, err := Load("", nil); err == nil {
		t.Error("Load(\"\") succeeded")
	}

	path := filepath.Join(dir, "tollgate.yaml")
	if err := os.WriteFile(path, []byte(secrets+"listen: :9090\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path, []string{"TOLLGATE_LISTEN=:9191"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Listen != ":9191" {
		t.Errorf("Listen = %q, want the environment's :9191", got.Listen)
	}
}

// parseErrorTests pin every problem Parse reports, exactly. FuzzParse is
// seeded with their inputs.
var parseErrorTests = []struct {
	name string
	yaml string
	env  []string
	want []string
}{
	{
		name: "yaml syntax",
		yaml: "listen: [",
		want: []string{"config: yaml: line 1: did not find expected node content"},
	},
	{
		name: "not a map",
		yaml: "- a\n- b\n",
		want: []string{"config: yaml: unmarshal errors:", "  line 1: cannot unmarshal !!seq into map[string]interface {}"},
	},
	{
		name: "secrets",
		yaml: "admin_token: short\n",
		want: []string{
			"admin_token: too short: 5 bytes, want at least 16",
			"key_secret: required",
		},
	},
	{
		name: "unknown keys",
		yaml: secrets + `
Listen: 127.0.0.1:1
limitter: memory
models:
  - id: m
    route: GET /m
    upstrem: http://x
plans:
  - {id: p, rpm: 1, feature: [x]}
`,
		want: []string{
			"Listen: unknown key",
			"limitter: unknown key",
			"models[0].upstream: required",
			"models[0].upstrem: unknown key",
			"plans[0].feature: unknown key",
		},
	},
	{
		name: "types",
		yaml: `
admin_token: 12345678901234567890
key_secret: [a]
lease_ttl: 15
key_cache_ttl: soon
error_statuses: {missing_credential: four hundred}
models: {id: m}
plans: [free]
`,
		want: []string{
			"admin_token: want a string, got an integer",
			"error_statuses[missing_credential]: want an integer, got a string",
			"key_cache_ttl: invalid duration \"soon\" (want e.g. \"30s\", \"1m30s\")",
			"key_secret: want a string, got a list",
			"lease_ttl: duration 15 has no unit (want e.g. \"15s\")",
			"models: source data must be an array or slice, got map",
			"plans[0]: expected a map or struct, got \"string\"",
		},
	},
	{
		name: "top-level values",
		yaml: secrets + `
listen: localhost
store: mysql://db/tollgate
limiter: redis://
key_prefix: "tg-live-"
key_cache_ttl: 0s
lease_ttl: -1s
shutdown_grace: -2s
read_header_timeout: 0s
keepalive_timeout: -1s
error_profile: problem+json
error_statuses: {missing_credential: 200, no_such_code: 400}
`,
		want: []string{
			"error_profile: unknown profile \"problem+json\" (want tollgate, detail, numeric, code)",
			"error_statuses: status 200 for \"missing_credential\" is not an error status (400-599)",
			"error_statuses: unknown error code \"no_such_code\"",
			"keepalive_timeout: -1s: must not be negative",
			"key_cache_ttl: must be positive",
			"key_prefix: \"tg-live-\": want 2 to 32 letters, digits or '_'",
			"lease_ttl: -1s: must not be negative",
			"limiter: redis: no host",
			"listen: \"localhost\" is not host:port",
			"read_header_timeout: must be positive",
			"shutdown_grace: -2s: must not be negative",
			"store: unsupported store scheme \"mysql\" (want sqlite or postgres)",
		},
	},
	{
		name: "listen",
		yaml: secrets + "listen: bad_host!:99999\n",
		want: []string{"listen: port \"99999\" is not a number from 0 to 65535"},
	},
	{
		name: "listen host",
		yaml: secrets + "listen: bad_host!:80\n",
		want: []string{"listen: host \"bad_host!\" is not an IP address or a host name"},
	},
	{
		name: "models",
		yaml: secrets + `
models:
  - id: ""
    route: GET /a
    upstream: http://a
  - id: "bad id"
    route: GET /b
    upstream: http://b
  - id: dup
    route: GET /c
    upstream: http://c
  - id: dup
    feature: "text to speech"
    route: GET /d
    upstream: ftp://d
    upstream_path: d
    timeout: -1s
    fallbacks: [dup, nope, c-backup, c-backup]
    error_profile: xml
    error_statuses: {quota_exceeded: 600}
    upstream_error_code: teapot
  - id: c-backup
    upstream: /relative
  - id: both
    route: GET /e
    routes: [GET /f]
    upstream: http://e?x=1
`,
		want: []string{
			"models[0].id: required",
			"models[1].id: \"bad id\": want letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64",
			"models[3].error_profile: unknown profile \"xml\" (want tollgate, detail, numeric, code)",
			"models[3].error_statuses: status 600 for \"quota_exceeded\" is not an error status (400-599)",
			"models[3].fallbacks[0]: model \"dup\" falls back to itself",
			"models[3].fallbacks[1]: unknown model \"nope\"",
			"models[3].fallbacks[3]: model \"c-backup\" is listed twice",
			"models[3].feature: \"text to speech\": want letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64",
			"models[3].id: duplicate id \"dup\" (also models[2])",
			"models[3].timeout: -1s: must not be negative",
			"models[3].upstream: want an absolute http:// or https:// URL",
			"models[3].upstream_error_code: \"teapot\": want upstream_error or grpc_error",
			"models[3].upstream_path: \"d\" must start with /",
			"models[4].route: required",
			"models[4].upstream: want an absolute http:// or https:// URL",
			"models[5].routes: set route or routes, not both",
			"models[5].upstream: want a base URL without query or fragment",
		},
	},
	{
		name: "routes",
		yaml: secrets + `
models:
  - {id: a, route: "/v1/a", upstream: "http://u"}
  - {id: b, route: "post /v1/b", upstream: "http://u"}
  - {id: c, route: "P(ST /v1/c", upstream: "http://u"}
  - {id: d, route: "POST v1/d", upstream: "http://u"}
  - {id: e, route: "POST /v1/{e", upstream: "http://u"}
  - {id: f, route: "GET /v1/{x}/{x}", upstream: "http://u"}
  - {id: g, route: "GET /v1/../g", upstream: "http://u"}
  - {id: h, route: "POST /v1/h extra", upstream: "http://u"}
  - {id: i, route: "GET /admin/keys", upstream: "http://u"}
  - {id: j, route: "GET /healthz", upstream: "http://u"}
  - {id: k, route: "GET /metrics/x", upstream: "http://u"}
  - {id: l, route: "GET /admin", upstream: "http://u"}
  - {id: m, route: "GET /readyz", upstream: "http://u"}
`,
		want: []string{
			"models[0].route: \"/v1/a\" is not \"METHOD /path\"",
			"models[1].route: method \"post\" must be upper case (methods are case-sensitive)",
			"models[2].route: method \"P(ST\" is not an HTTP method",
			"models[3].route: path \"v1/d\" must start with /",
			"models[4].route: invalid pattern \"POST /v1/{e\": at offset 9: bad wildcard segment (must end with '}')",
			"models[5].route: invalid pattern \"GET /v1/{x}/{x}\": at offset 12: duplicate wildcard name \"x\"",
			"models[6].route: invalid pattern \"GET /v1/../g\": at offset 4: non-CONNECT pattern with unclean path can never match",
			"models[7].route: \"POST /v1/h extra\" is not \"METHOD /path\"",
			"models[8].route: path \"/admin/keys\" is reserved for tollgate (/admin, /healthz, /readyz, /metrics)",
			"models[9].route: path \"/healthz\" is reserved for tollgate (/admin, /healthz, /readyz, /metrics)",
			"models[10].route: path \"/metrics/x\" is reserved for tollgate (/admin, /healthz, /readyz, /metrics)",
			"models[11].route: path \"/admin\" is reserved for tollgate (/admin, /healthz, /readyz, /metrics)",
			"models[12].route: path \"/readyz\" is reserved for tollgate (/admin, /healthz, /readyz, /metrics)",
		},
	},
	{
		name: "route conflicts",
		yaml: secrets + `
models:
  - {id: a, route: "POST /v1/text", upstream: "http://u"}
  - {id: b, route: "POST  /v1/text", upstream: "http://u"}
  - {id: c, routes: ["GET /v1/jobs/{id}", "GET /v1/jobs/{job}"], upstream: "http://u"}
  - {id: d, route: "GET /v3/{x}/b", upstream: "http://u"}
  - {id: e, route: "GET /v3/a/{y}", upstream: "http://u"}
  - {id: f, route: "HEAD /{any}", upstream: "http://u"}
  - {id: g, routes: ["GET /v2/text", "POST /v2/text", "GET /v2/{rest...}"], upstream: "http://u"}
  - {id: h, routes: ["GET /v1/usage", "POST /v1/usage", "DELETE /v1/history/{item}"], upstream: "http://u"}
`,
		want: []string{
			"models[1].route: route \"POST /v1/text\" is also models[0].route",
			"models[2].routes[1]: route \"GET /v1/jobs/{job}\" conflicts with models[2].routes[0] \"GET /v1/jobs/{id}\": GET /v1/jobs/{job} matches the same requests as GET /v1/jobs/{id}",
			"models[4].route: route \"GET /v3/a/{y}\" conflicts with models[3].route \"GET /v3/{x}/b\": GET /v3/a/{y} and GET /v3/{x}/b both match some paths, like \"/v3/a/b\". But neither is more specific than the other.",
			"models[5].route: route \"HEAD /{any}\" conflicts with tollgate's route \"GET /healthz\": HEAD /{any} matches fewer methods than GET /healthz, but has a more general path pattern",
			"models[7].routes[0]: route \"GET /v1/usage\" conflicts with the account API's usage_path \"GET /v1/usage\": GET /v1/usage matches the same requests as GET /v1/usage",
			"models[7].routes[2]: route \"DELETE /v1/history/{item}\" conflicts with the account API's history_path \"DELETE /v1/history/{id}\": DELETE /v1/history/{item} matches the same requests as DELETE /v1/history/{id}",
		},
	},
	{
		name: "account paths moved",
		yaml: secrets + `
history_path: /voice/history
usage_path: /voice/usage
models:
  - {id: a, routes: ["GET /v1/history", "GET /v1/usage"], upstream: "http://u"}
  - {id: b, route: "GET /voice/history/{item}", upstream: "http://u"}
`,
		want: []string{
			"models[1].route: route \"GET /voice/history/{item}\" conflicts with the account API's history_path \"GET /voice/history/{id}\": GET /voice/history/{item} matches the same requests as GET /voice/history/{id}",
		},
	},
	{
		name: "account paths invalid",
		yaml: secrets + `
history_path: voice/history
usage_path: /admin/usage
`,
		want: []string{
			"history_path: \"voice/history\": want a path such as /v1/history",
			"usage_path: path \"/admin/usage\" is reserved for tollgate (/admin, /healthz, /readyz, /metrics)",
		},
	},
	{
		name: "account path trailing slash",
		yaml: secrets + `
history_path: /h/
`,
		want: []string{
			"history_path: \"/h/\": must not end with /",
		},
	},
	{
		name: "account path wildcard",
		yaml: secrets + `
history_path: "/v1/{x}"
`,
		want: []string{
			"history_path: \"/v1/{x}\": want a fixed path, without wildcards, spaces, a query or escapes",
		},
	},
	{
		name: "account paths the same",
		yaml: secrets + `
usage_path: /v1/history
`,
		want: []string{
			"usage_path: \"/v1/history\" is also history_path",
		},
	},
	{
		name: "plans",
		yaml: secrets + `
models:
  - {id: m, route: "GET /m", upstream: "http://u"}
plans:
  - {id: "", rpm: 1}
  - {id: free, rpm: 0, concurrency: -1}
  - {id: free, rpm: -5, model_concurrency: {m: -1, ghost: 2}, features: ["*", "", "a b"]}
  - {id: "-x", rpm: 1}
`,
		want: []string{
			"plans[0].id: required",
			"plans[1].concurrency: -1: must be 0 (unlimited) or more",
			"plans[1].rpm: 0: must be positive",
			"plans[2].features[1]: \"\": want \"*\" or letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64",
			"plans[2].features[2]: \"a b\": want \"*\" or letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64",
			"plans[2].id: duplicate id \"free\" (also plans[1])",
			"plans[2].model_concurrency[ghost]: unknown model \"ghost\"",
			"plans[2].model_concurrency[m]: -1: must be 0 (unlimited) or more",
			"plans[2].rpm: -5: must be positive",
			"plans[3].id: \"-x\": want letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64",
		},
	},
	{
		name: "environment",
		yaml: secrets,
		env: []string{
			"TOLLGATE_LEASE_TTL=15",
			"TOLLGATE_ERROR_STATUSES__MISSING_CREDENTIAL=four hundred",
			"TOLLGATE_ERROR_STATUSES__=400",
			"TOLLGATE_ERROR_STATUSES={}",
			"TOLLGATE_MODELS__0__ID=x",
			"TOLLGATE_PLANS=[]",
			"TOLLGATE_ERROR_PROFILE=xml",
			"TOLLGATE_ERROR_STATUSES__NO_SUCH_CODE=400",
		},
		want: []string{
			"TOLLGATE_ERROR_STATUSES: set one code at a time: TOLLGATE_ERROR_STATUSES__<CODE>=<status>",
			"TOLLGATE_ERROR_STATUSES__: want TOLLGATE_ERROR_STATUSES__<CODE>",
			"TOLLGATE_ERROR_STATUSES__MISSING_CREDENTIAL: status \"four hundred\" is not a number",
			"TOLLGATE_LEASE_TTL: invalid duration \"15\" (want e.g. \"30s\")",
			"TOLLGATE_MODELS__0__ID: models and plans are set in the file only",
			"TOLLGATE_PLANS: models and plans are set in the file only",
			"error_profile: unknown profile \"xml\" (want tollgate, detail, numeric, code)",
			"error_statuses: unknown error code \"no_such_code\"",
		},
	},
}

func TestParseErrors(t *testing.T) {
	for _, tt := range parseErrorTests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), tt.env)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			if c != nil {
				t.Errorf("Parse returned a Config with its error")
			}
			got := strings.Split(err.Error(), "\n")
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Parse errors (-got +want):\n%s", diff)
			}
		})
	}
}

// TestParseReportsEverything checks that problems of every kind, in the
// file and the environment, come back together.
func TestParseReportsEverything(t *testing.T) {
	_, err := Parse([]byte(`
listen: nope
admin_token: short
upstrem: x
models:
  - {id: a, route: "post /a", upstream: "http://u", timeout: 5}
  - {id: a, route: "GET /b", upstream: "http://u", fallbacks: [z]}
plans:
  - {id: p, rpm: 0, model_concurrency: {z: 1}}
`), []string{"TOLLGATE_KEY_CACHE_TTL=later"})
	want := []string{
		"TOLLGATE_KEY_CACHE_TTL: invalid duration \"later\" (want e.g. \"30s\")",
		"admin_token: too short: 5 bytes, want at least 16",
		"key_secret: required",
		"listen: \"nope\" is not host:port",
		"models[0].route: method \"post\" must be upper case (methods are case-sensitive)",
		"models[0].timeout: duration 5 has no unit (want e.g. \"5s\")",
		"models[1].fallbacks[0]: unknown model \"z\"",
		"models[1].id: duplicate id \"a\" (also models[0])",
		"plans[0].model_concurrency[z]: unknown model \"z\"",
		"plans[0].rpm: 0: must be positive",
		"upstrem: unknown key",
	}
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	if diff := cmp.Diff(strings.Split(err.Error(), "\n"), want); diff != "" {
		t.Errorf("Parse errors (-got +want):\n%s", diff)
	}
}

func TestValidateHandBuilt(t *testing.T) {
	var c Config
	err := c.Validate()
	want := []string{
		"admin_token: required",
		"error_profile: unknown profile \"\" (want tollgate, detail, numeric, code)",
		"history_retention: must be positive",
		"keepalive_timeout: must be positive",
		"key_cache_ttl: must be positive",
		"key_prefix: \"\": want 2 to 32 letters, digits or '_'",
		"key_secret: required",
		"lease_ttl: must be positive",
		"ledger_sync: \"\": want commit or background",
		"limiter: required",
		"limiter_failure: \"\": want fail_open or fail_closed",
		"limiter_prefix: \"\": want 1 to 64 characters without spaces or braces",
		"limiter_timeout: must be positive",
		"listen: required",
		"read_header_timeout: must be positive",
		"replicas: 0: want at least 1",
		"store: required",
	}
	if err == nil {
		t.Fatal("Validate of the zero Config succeeded")
	}
	if diff := cmp.Diff(strings.Split(err.Error(), "\n"), want); diff != "" {
		t.Errorf("Validate (-got +want):\n%s", diff)
	}

	c = defaults()
	c.AdminToken, c.KeySecret = "admin-token-0123456789", "key-secret-0123456789"
	c.Models = []ModelConfig{{ID: "m", Route: "GET /m", Upstream: "http://u"}} // Timeout 0: the default
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

// TestLedgerSync: commit by default; background from the file or the
// environment on SQLite; refused on PostgreSQL (which has its own setting
// for it) and for any other value.
func TestLedgerSync(t *testing.T) {
	c, err := Parse([]byte(secrets), nil)
	if err != nil || c.LedgerSync != LedgerSyncCommit {
		t.Fatalf("default: %q, %v", c.LedgerSync, err)
	}
	c, err = Parse([]byte(secrets+"ledger_sync: background\n"), nil)
	if err != nil || c.LedgerSync != LedgerSyncBackground {
		t.Fatalf("from the file: %q, %v", c.LedgerSync, err)
	}
	c, err = Parse([]byte(secrets), []string{"TOLLGATE_LEDGER_SYNC=background"})
	if err != nil || c.LedgerSync != LedgerSyncBackground {
		t.Fatalf("from the environment: %q, %v", c.LedgerSync, err)
	}
	for _, tc := range []struct{ file, want string }{
		{"ledger_sync: sometimes\n", `ledger_sync: "sometimes": want commit or background`},
		{"ledger_sync: background\nstore: postgres://db/tollgate\n",
			"ledger_sync: background is for the SQLite store's journal; on PostgreSQL, set synchronous_commit = off for the gateway's role instead"},
	} {
		if _, err := Parse([]byte(secrets+tc.file), nil); err == nil || err.Error() != tc.want {
			t.Errorf("%q: %v, want %s", tc.file, err, tc.want)
		}
	}
}

func TestNaturalLess(t *testing.T) {
	in := []string{"models[10].id", "models[2].route", "listen", "models[2].id", "models[1]", "TOLLGATE_X", "models[02].a"}
	want := []string{"TOLLGATE_X", "listen", "models[1]", "models[02].a", "models[2].id", "models[2].route", "models[10].id"}
	errs := make([]*fieldError, len(in))
	for i, f := range in {
		errs[i] = &fieldError{Field: f, Err: errors.New("x")}
	}
	join(errs)
	got := make([]string, len(errs))
	for i, e := range errs {
		got[i] = e.Field
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("order (-got +want):\n%s", diff)
	}
}

// TestEnvCoversScalars keeps envScalars in step with Config: every
// top-level string, duration or int setting has its TOLLGATE_ variable,
// read as its kind.
func TestEnvCoversScalars(t *testing.T) {
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		key := f.Tag.Get("koanf")
		var want envKind
		switch {
		case f.Type == reflect.TypeFor[time.Duration]():
			want = envDuration
		case f.Type.Kind() == reflect.String:
			want = envString
		case f.Type.Kind() == reflect.Int:
			want = envInt
		default:
			continue
		}
		if k, ok := envScalars[key]; !ok || k != want {
			t.Errorf("envScalars[%q] = %v, %v; want %v, true", key, k, ok, want)
		}
	}
}

// Model ids may hold dots; they stay whole map keys, not nested paths.
func TestDottedIDs(t *testing.T) {
	c, err := Parse([]byte(secrets+`
models:
  - {id: whisper.v1, route: "POST /v1/stt", upstream: "http://u", fallbacks: [whisper.v2]}
  - {id: whisper.v2, route: "POST /v2/stt", upstream: "http://u"}
plans:
  - {id: free.2024, rpm: 10, model_concurrency: {whisper.v1: 1, whisper.v2: 0}}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"whisper.v1": 1, "whisper.v2": 0}
	if diff := cmp.Diff(c.Plans[0].ModelConcurrency, want); diff != "" {
		t.Errorf("ModelConcurrency (-got +want):\n%s", diff)
	}
}

func TestErrorMessages(t *testing.T) {
	c, err := Parse([]byte(secrets+`
error_messages: {invalid_credential: "Invalid API key."}
models:
  - {id: m, route: GET /m, upstream: "http://u", error_messages: {validation_error: "Text too long for demo endpoint."}}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Profile().Messages[tollgate.CodeInvalidCredential]; got != "Invalid API key." {
		t.Errorf("deployment message %q", got)
	}
	if got := c.DomainModels()[0].Messages[tollgate.CodeValidationError]; got != "Text too long for demo endpoint." {
		t.Errorf("model message %q", got)
	}
	_, err = Parse([]byte(secrets+`
error_messages: {nope: "x", conflict: ""}
models:
  - {id: m, route: GET /m, upstream: "http://u", error_messages: {also_nope: "y"}}
`), nil)
	want := []string{
		`error_messages: message for "conflict" must be 1 to 1000 bytes`,
		`error_messages: unknown error code "nope"`,
		`models[0].error_messages: unknown error code "also_nope"`,
	}
	if err == nil {
		t.Fatal("Parse accepted unknown codes and an empty message")
	}
	if diff := cmp.Diff(strings.Split(err.Error(), "\n"), want); diff != "" {
		t.Errorf("errors (-got +want):\n%s", diff)
	}
}
