// Package config turns tollgate's YAML configuration, with TOLLGATE_*
// environment overrides, into validated settings and domain values.
// tollgate.example.yaml at the repository root documents every setting.
//
// The package reads nothing on its own but the file Load is given: cmd
// passes the path and the environment (os.Environ()) in.
//
// Environment overrides win over the file:
//
//   - TOLLGATE_<KEY> sets a top-level scalar: TOLLGATE_LISTEN, _STORE,
//     _LIMITER, _ADMIN_TOKEN, _KEY_SECRET, _KEY_PREFIX, _ERROR_PROFILE,
//     _KEY_CACHE_TTL, _LEASE_TTL, _SHUTDOWN_GRACE.
//   - TOLLGATE_ERROR_STATUSES__<CODE>=<status> sets one entry of
//     error_statuses (TOLLGATE_ERROR_STATUSES__MISSING_CREDENTIAL=400); the
//     file's other entries stay.
//   - An empty value counts as unset.
//   - TOLLGATE_MODELS*, TOLLGATE_PLANS* and a bare TOLLGATE_ERROR_STATUSES
//     are errors: lists and whole maps come from the file only.
//   - Other TOLLGATE_* variables are ignored; they may be cmd's
//     (TOLLGATE_CONFIG) or the tests' (TOLLGATE_TEST_POSTGRES).
package config

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"

	"github.com/tollgate/tollgate"
)

// Defaults for settings left out of the file.
const (
	DefaultListen            = "127.0.0.1:8080"
	DefaultStore             = "sqlite://tollgate.db"
	DefaultLimiter           = Memory
	DefaultKeyCacheTTL       = 2 * time.Second
	DefaultLeaseTTL          = 15 * time.Second
	DefaultShutdownGrace     = 30 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultKeepaliveTimeout  = 120 * time.Second
	DefaultHistoryRetention  = 30 * 24 * time.Hour
	DefaultHistoryPath       = tollgate.DefaultHistoryPath
	DefaultUsagePath         = tollgate.DefaultUsagePath
	DefaultErrorProfile      = tollgate.ProfileTollgate
	DefaultKeyPrefix         = tollgate.DefaultKeyPrefix
	DefaultLimiterPrefix     = "tg:"
	DefaultLimiterFailure    = FailOpen
	DefaultLimiterTimeout    = 100 * time.Millisecond
)

// What rate limits do while the Redis limiter is unreachable. Credits,
// quotas and concurrency always fail closed.
const (
	// FailOpen: each replica enforces its share of every rate limit
	// (limit ÷ replicas) in memory.
	FailOpen = "fail_open"
	// FailClosed: requests are refused with 503 overloaded + Retry-After.
	FailClosed = "fail_closed"
)

// When a ledger commit counts as done, and the request it carries is
// answered.
const (
	// LedgerSyncCommit: once the usage event and the history item are on
	// the disk (SQLite: the journal's fdatasync; PostgreSQL: the commit).
	// Nothing answered is lost to a power loss.
	LedgerSyncCommit = "commit"
	// LedgerSyncBackground (SQLite only): once they are written to the
	// journal file; the journal is synced every 10 ms in the background.
	// A crash of the gateway loses nothing; a crash of the machine or a
	// power loss can lose the last 10 ms of usage and history.
	LedgerSyncBackground = "background"
)

// Config is a deployment's configuration. Parse and Load fill the defaults;
// a Config built by hand should be checked with Validate.
type Config struct {
	// Listen is the HTTP listen address, host:port.
	Listen string `yaml:"listen" koanf:"listen"`
	// Store is sqlite://PATH, sqlite:PATH, a bare PATH ending .db, or a
	// postgres:// DSN. See ParseStore.
	Store string `yaml:"store" koanf:"store"`
	// Limiter is "memory" or a redis:// URL. See ParseLimiter.
	Limiter string `yaml:"limiter" koanf:"limiter"`
	// LimiterPrefix starts every Redis key the limiter uses, so several
	// deployments can share one Redis. Default "tg:".
	LimiterPrefix string `yaml:"limiter_prefix,omitempty" koanf:"limiter_prefix"`
	// LimiterFailure is what rate limits do while Redis is unreachable:
	// FailOpen (default) or FailClosed.
	LimiterFailure string `yaml:"limiter_failure,omitempty" koanf:"limiter_failure"`
	// LimiterTimeout bounds each Redis call. Default 100ms.
	LimiterTimeout time.Duration `yaml:"limiter_timeout,omitempty" koanf:"limiter_timeout"`
	// Replicas is how many gateway replicas share the limiter: under
	// FailOpen each enforces limit ÷ Replicas. Default 1.
	Replicas int `yaml:"replicas,omitempty" koanf:"replicas"`
	// AdminToken guards /admin/ (Authorization: Bearer); at least 16 bytes.
	AdminToken string `yaml:"admin_token" koanf:"admin_token"`
	// KeySecret is the HMAC secret for stored key hashes; at least 16 bytes.
	KeySecret string `yaml:"key_secret" koanf:"key_secret"`
	// KeyPrefix starts every issued key: [A-Za-z0-9_]{2,32}.
	KeyPrefix string `yaml:"key_prefix" koanf:"key_prefix"`
	// KeyCacheTTL is how long a resolved key is trusted without a store
	// read (the revocation backstop). Positive.
	KeyCacheTTL time.Duration `yaml:"key_cache_ttl" koanf:"key_cache_ttl"`
	// LeaseTTL is the concurrency lease TTL. Positive.
	LeaseTTL time.Duration `yaml:"lease_ttl" koanf:"lease_ttl"`
	// ShutdownGrace bounds how long in-flight requests may finish on
	// shutdown; 0 stops at once.
	ShutdownGrace time.Duration `yaml:"shutdown_grace" koanf:"shutdown_grace"`
	// ReadHeaderTimeout bounds how long a client may take to send a
	// request's headers (slowloris); the connection is closed after it.
	// Positive. Default: 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout" koanf:"read_header_timeout"`
	// KeepaliveTimeout is how long an idle keep-alive connection is kept
	// open for the client's next request. Positive. Default: 120s.
	KeepaliveTimeout time.Duration `yaml:"keepalive_timeout" koanf:"keepalive_timeout"`
	// LedgerSync is when a ledger commit counts as done: LedgerSyncCommit
	// (default) or LedgerSyncBackground.
	LedgerSync string `yaml:"ledger_sync,omitempty" koanf:"ledger_sync"`
	// HistoryRetention is how long history items are kept. Default: 720h.
	HistoryRetention time.Duration `yaml:"history_retention" koanf:"history_retention"`
	// HistoryPath is where the account API serves history: GET lists it,
	// GET and DELETE HistoryPath/{id} one item. Default: /v1/history.
	HistoryPath string `yaml:"history_path" koanf:"history_path"`
	// UsagePath is where the account API serves usage (GET). Default:
	// /v1/usage.
	UsagePath string `yaml:"usage_path" koanf:"usage_path"`
	// ErrorProfile is the deployment's error envelope (tollgate.ProfileNames).
	ErrorProfile string `yaml:"error_profile" koanf:"error_profile"`
	// ErrorStatuses remaps HTTP statuses per error code.
	ErrorStatuses map[string]int `yaml:"error_statuses,omitempty" koanf:"error_statuses"`
	// ErrorMessages replaces messages per error code.
	ErrorMessages map[string]string `yaml:"error_messages,omitempty" koanf:"error_messages"`
	Models        []ModelConfig     `yaml:"models,omitempty" koanf:"models"`
	Plans         []PlanConfig      `yaml:"plans,omitempty" koanf:"plans"`
}

// ModelConfig is one model: its public routes and its upstream.
type ModelConfig struct {
	// ID is [A-Za-z0-9][A-Za-z0-9._-]{0,63}, unique among models.
	ID string `yaml:"id" koanf:"id"`
	// Feature groups models for plans; optional.
	Feature string `yaml:"feature,omitempty" koanf:"feature"`
	// Route is "METHOD /path", a net/http ServeMux pattern with a method.
	// Routes lists several; set one of the two.
	Route  string   `yaml:"route,omitempty" koanf:"route"`
	Routes []string `yaml:"routes,omitempty" koanf:"routes"`
	// Upstream is the model server's absolute http(s) base URL (ws:// or
	// wss:// for a stream).
	Upstream string `yaml:"upstream" koanf:"upstream"`
	// UpstreamPath replaces the request path upstream; optional.
	UpstreamPath string `yaml:"upstream_path,omitempty" koanf:"upstream_path"`
	// Timeout bounds the upstream call; Parse turns 0 into
	// tollgate.DefaultTimeout (60s).
	Timeout time.Duration `yaml:"timeout,omitempty" koanf:"timeout"`
	// Fallbacks are model ids tried in order when the upstream fails.
	Fallbacks []string `yaml:"fallbacks,omitempty" koanf:"fallbacks"`
	// ErrorProfile overrides the deployment's profile for this model.
	ErrorProfile string `yaml:"error_profile,omitempty" koanf:"error_profile"`
	// ErrorStatuses remaps statuses for this model, over the deployment's.
	ErrorStatuses map[string]int `yaml:"error_statuses,omitempty" koanf:"error_statuses"`
	// ErrorMessages replaces messages for this model, over the deployment's.
	ErrorMessages map[string]string `yaml:"error_messages,omitempty" koanf:"error_messages"`
	// UpstreamErrorCode is upstream_error (default) or grpc_error.
	UpstreamErrorCode string `yaml:"upstream_error_code,omitempty" koanf:"upstream_error_code"`
	// Input holds the model's input rules (optional).
	Input *InputConfig `yaml:"input,omitempty" koanf:"input"`
	// Meter says how usage is counted and priced (default: requests, free;
	// a stream's: audio_seconds, free).
	Meter *MeterConfig `yaml:"meter,omitempty" koanf:"meter"`
	// Stream makes the model a WebSocket stream (optional).
	Stream *StreamConfig `yaml:"stream,omitempty" koanf:"stream"`
}

// patterns returns the model's routes, Route first.
func (m *ModelConfig) patterns() []string {
	if m.Route == "" {
		return m.Routes
	}
	return append([]string{m.Route}, m.Routes...)
}

// PlanConfig is one plan: default limits and features for its orgs.
type PlanConfig struct {
	// ID is [A-Za-z0-9][A-Za-z0-9._-]{0,63}, unique among plans.
	ID string `yaml:"id" koanf:"id"`
	// RPM is each key's requests per minute. Positive.
	RPM int `yaml:"rpm" koanf:"rpm"`
	// Concurrency is the in-flight limit per org × model; 0 is unlimited.
	Concurrency int `yaml:"concurrency,omitempty" koanf:"concurrency"`
	// ModelConcurrency overrides Concurrency per model id.
	ModelConcurrency map[string]int `yaml:"model_concurrency,omitempty" koanf:"model_concurrency"`
	// Features lists the model features included; "*" is all.
	Features []string `yaml:"features,omitempty" koanf:"features"`
	// BillingRequired: orgs without billing draw on FreeCredits, then get
	// billing_required (402).
	BillingRequired bool `yaml:"billing_required,omitempty" koanf:"billing_required"`
	// FreeCredits is the one-time grant for orgs without billing.
	FreeCredits float64 `yaml:"free_credits,omitempty" koanf:"free_credits"`
	// MonthlyCreditCap caps credits per org per month (0: none); an org's
	// own limit may only be lower.
	MonthlyCreditCap float64 `yaml:"monthly_credit_cap,omitempty" koanf:"monthly_credit_cap"`
	// MonthlyLimits caps units per model per org per month.
	MonthlyLimits map[string]float64 `yaml:"monthly_limits,omitempty" koanf:"monthly_limits"`
}

// defaults returns a Config holding every default; decoding overwrites the
// settings present, so an explicit value (even 0s) is kept.
func defaults() Config {
	return Config{
		Listen:            DefaultListen,
		Store:             DefaultStore,
		Limiter:           DefaultLimiter,
		LimiterPrefix:     DefaultLimiterPrefix,
		LimiterFailure:    DefaultLimiterFailure,
		LimiterTimeout:    DefaultLimiterTimeout,
		Replicas:          1,
		KeyPrefix:         DefaultKeyPrefix,
		KeyCacheTTL:       DefaultKeyCacheTTL,
		LeaseTTL:          DefaultLeaseTTL,
		ShutdownGrace:     DefaultShutdownGrace,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		KeepaliveTimeout:  DefaultKeepaliveTimeout,
		LedgerSync:        LedgerSyncCommit,
		HistoryRetention:  DefaultHistoryRetention,
		HistoryPath:       DefaultHistoryPath,
		UsagePath:         DefaultUsagePath,
		ErrorProfile:      DefaultErrorProfile,
	}
}

// Load reads the YAML file at path and parses it with Parse. A missing file
// is an error (errors.Is(err, fs.ErrNotExist)).
func Load(path string, environ []string) (*Config, error) {
	if path == "" {
		return nil, errors.New("config: no file given")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, environ)
}

// Parse decodes YAML data strictly (unknown keys are errors), layers the
// TOLLGATE_* variables of environ over it, fills defaults and validates.
// The error lists every problem found, one per line (errors.Join), each
// prefixed with its location: "models[2].route: ...", or the variable's
// name for an environment problem. On error the Config is nil.
func Parse(data []byte, environ []string) (*Config, error) {
	k := koanf.New(".")
	if err := k.Load(rawbytes.Provider(data), yaml.Parser()); err != nil {
		// A syntax error: yaml reports its line; nothing else is known.
		return nil, fmt.Errorf("config: %w", err)
	}
	var envErrs []*fieldError
	if err := k.Load(envProvider(environ, &envErrs), nil); err != nil {
		return nil, fmt.Errorf("config: environment: %w", err)
	}

	c := defaults()
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:      &c,
		TagName:     "koanf",
		ErrorUnused: true,
		DecodeHook:  durationHook,
		// Keys are matched exactly: "Listen:" is a typo, not "listen:".
		MatchName: func(key, field string) bool { return key == field },
	})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var decodeErrs []*fieldError
	if err := dec.Decode(k.Raw()); err != nil {
		decodeErrs = flattenDecodeError(err, nil)
	}
	for i := range c.Models {
		if c.Models[i].Timeout == 0 {
			c.Models[i].Timeout = tollgate.DefaultTimeout
		}
	}

	// A value that failed to decode is left zero; validating it again would
	// only repeat the problem ("required"), so those locations are skipped.
	all := append(decodeErrs, envErrs...)
	for _, e := range c.problems() {
		if !covered(e.Field, decodeErrs) {
			all = append(all, e)
		}
	}
	if err := join(all); err != nil {
		return nil, err
	}
	return &c, nil
}

// MeterConfig is a model's meter (`meter:`).
type MeterConfig struct {
	// Unit: requests (default), audio_seconds or characters.
	Unit string `yaml:"unit,omitempty" koanf:"unit"`
	// Price in credits per unit (default 0).
	Price float64 `yaml:"price,omitempty" koanf:"price"`
	// TrustUpstream takes the actual quantity from the upstream's
	// Tollgate-Usage response header.
	TrustUpstream bool `yaml:"trust_upstream,omitempty" koanf:"trust_upstream"`
}
