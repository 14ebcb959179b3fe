package config

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Backend kinds.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
	Memory   = "memory"
	Redis    = "redis"
)

// Backend is a parsed store or limiter setting.
type Backend struct {
	// Kind is SQLite or Postgres for a store, Memory or Redis for a limiter.
	Kind string
	// Target is the SQLite file path, the PostgreSQL DSN (the whole URL) or
	// the Redis URL; empty for Memory.
	Target string
}

// ParseStore parses a store setting: sqlite://PATH, sqlite:PATH, a bare
// PATH ending .db, or a postgres:// (postgresql://) URL. Errors never
// repeat a URL, which may hold a password.
func ParseStore(s string) (Backend, error) {
	if s == "" {
		return Backend{}, errors.New("required")
	}
	scheme, rest, hasScheme := strings.Cut(s, ":")
	if !hasScheme || strings.ContainsAny(scheme, `/\.`) {
		if strings.HasSuffix(s, ".db") {
			return Backend{Kind: SQLite, Target: s}, nil
		}
		return Backend{}, fmt.Errorf("%q is not sqlite://PATH, a path ending .db, or postgres://...", s)
	}
	switch strings.ToLower(scheme) {
	case "sqlite":
		path := strings.TrimPrefix(rest, "//")
		if path == "" {
			return Backend{}, errors.New("sqlite: empty path")
		}
		return Backend{Kind: SQLite, Target: path}, nil
	case "postgres", "postgresql":
		if _, err := parseURL(s); err != nil {
			return Backend{}, fmt.Errorf("postgres: %w", err)
		}
		if !strings.HasPrefix(rest, "//") {
			return Backend{}, errors.New("postgres: want postgres://[user[:password]@]host[:port]/dbname")
		}
		return Backend{Kind: Postgres, Target: s}, nil
	}
	if strings.HasSuffix(s, ".db") && len(scheme) == 1 {
		return Backend{Kind: SQLite, Target: s}, nil // a Windows drive letter
	}
	return Backend{}, fmt.Errorf("unsupported store scheme %q (want sqlite or postgres)", scheme)
}

// ParseLimiter parses a limiter setting: "memory" or
// redis://[user:password@]host:port[/db] (rediss:// for TLS).
func ParseLimiter(s string) (Backend, error) {
	if s == "" {
		return Backend{}, errors.New("required")
	}
	if s == Memory {
		return Backend{Kind: Memory}, nil
	}
	scheme, _, hasScheme := strings.Cut(s, "://")
	if !hasScheme {
		return Backend{}, errors.New("want memory or redis://host:port/db")
	}
	switch strings.ToLower(scheme) {
	case "redis", "rediss":
	default:
		return Backend{}, fmt.Errorf("unsupported limiter scheme %q (want memory or redis)", scheme)
	}
	u, err := parseURL(s)
	if err != nil {
		return Backend{}, fmt.Errorf("redis: %w", err)
	}
	if u.Host == "" {
		return Backend{}, errors.New("redis: no host")
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 {
			return Backend{}, fmt.Errorf("redis: database %q is not a number", db)
		}
	}
	return Backend{Kind: Redis, Target: s}, nil
}

// parseURL is url.Parse with an error that leaves the URL out.
func parseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return nil, fmt.Errorf("invalid URL: %w", ue.Err)
		}
		return nil, errors.New("invalid URL")
	}
	return u, nil
}

// StoreBackend returns the parsed Store; the zero Backend when it is
// invalid (Validate reports why).
func (c *Config) StoreBackend() Backend {
	b, _ := ParseStore(c.Store)
	return b
}

// LimiterBackend returns the parsed Limiter; the zero Backend when it is
// invalid (Validate reports why).
func (c *Config) LimiterBackend() Backend {
	b, _ := ParseLimiter(c.Limiter)
	return b
}
