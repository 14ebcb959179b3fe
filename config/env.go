package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/knadh/koanf/providers/env/v2"
)

// EnvPrefix starts every environment override.
const EnvPrefix = "TOLLGATE_"

// envKind is how an environment variable's value is read.
type envKind int

const (
	envString envKind = iota
	envDuration
	envInt
)

// envScalars are the top-level settings an environment variable may set:
// TOLLGATE_ + the key in upper case, read as its kind.
var envScalars = map[string]envKind{
	"listen":              envString,
	"store":               envString,
	"limiter":             envString,
	"limiter_prefix":      envString,
	"limiter_failure":     envString,
	"limiter_timeout":     envDuration,
	"replicas":            envInt,
	"admin_token":         envString,
	"key_secret":          envString,
	"key_prefix":          envString,
	"error_profile":       envString,
	"key_cache_ttl":       envDuration,
	"lease_ttl":           envDuration,
	"shutdown_grace":      envDuration,
	"read_header_timeout": envDuration,
	"keepalive_timeout":   envDuration,
	"ledger_sync":         envString,
	"history_retention":   envDuration,
	"history_path":        envString,
	"usage_path":          envString,
}

// envProvider reads the overrides in environ (KEY=VALUE entries, as
// os.Environ returns them), following the rules in the package doc.
// Problems are appended to errs, in no particular order.
func envProvider(environ []string, errs *[]*fieldError) *env.Env {
	return env.Provider(".", env.Opt{
		Prefix:      EnvPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, value string) (string, any) {
			key, v, err := envValue(name, value)
			if err != nil {
				*errs = append(*errs, &fieldError{Field: name, Err: err})
				return "", nil
			}
			return key, v
		},
	})
}

// envValue maps one TOLLGATE_* variable to its koanf key and typed value;
// key "" means the variable is ignored.
func envValue(name, value string) (key string, v any, err error) {
	if value == "" {
		return "", nil, nil
	}
	key = strings.ToLower(strings.TrimPrefix(name, EnvPrefix))
	if kind, ok := envScalars[key]; ok {
		switch kind {
		case envDuration:
			d, err := time.ParseDuration(value)
			if err != nil {
				return "", nil, fmt.Errorf("invalid duration %q (want e.g. \"30s\")", value)
			}
			return key, d, nil
		case envInt:
			n, err := strconv.Atoi(value)
			if err != nil {
				return "", nil, fmt.Errorf("%q is not a whole number", value)
			}
			return key, n, nil
		}
		return key, value, nil
	}
	if code, ok := strings.CutPrefix(key, "error_statuses__"); ok {
		if code == "" || strings.Contains(code, ".") {
			return "", nil, errors.New("want TOLLGATE_ERROR_STATUSES__<CODE>")
		}
		status, err := strconv.Atoi(value)
		if err != nil {
			return "", nil, fmt.Errorf("status %q is not a number", value)
		}
		return "error_statuses." + code, status, nil
	}
	switch {
	case key == "error_statuses":
		return "", nil, errors.New("set one code at a time: TOLLGATE_ERROR_STATUSES__<CODE>=<status>")
	case key == "models" || strings.HasPrefix(key, "models__"),
		key == "plans" || strings.HasPrefix(key, "plans__"):
		return "", nil, errors.New("models and plans are set in the file only")
	}
	return "", nil, nil
}
