package config

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/tollgate/tollgate"
)

// reservedPaths belong to tollgate itself: a model route whose path is one
// of them, or lies under one, is refused.
var reservedPaths = []string{"/admin", "/healthz", "/readyz", "/metrics"}

// reservedPatterns are tollgate's own fixed routes, as httpapi registers
// them; a model route ServeMux finds in conflict with one is refused.
var reservedPatterns = []string{"GET /healthz", "GET /readyz", "GET /metrics"}

// tollgateRoutes are tollgate's own routes: the fixed ones and the
// account API's at the configured paths (httpapi/account.go).
func (c *Config) tollgateRoutes() []route {
	var out []route
	for _, p := range reservedPatterns {
		out = append(out, route{field: "tollgate's route", pattern: p})
	}
	// Invalid paths are reported by accountPath; ServeMux refuses the
	// patterns they make, and routeConflicts skips those.
	for i, p := range tollgate.AccountRoutes(c.HistoryPath, c.UsagePath) {
		field := "the account API's history_path"
		if i == 3 {
			field = "the account API's usage_path"
		}
		out = append(out, route{field: field, pattern: p})
	}
	return out
}

// splitRoute splits "METHOD /path"; ok is false unless there are exactly
// two fields.
func splitRoute(route string) (method, path string, ok bool) {
	f := strings.Fields(route)
	if len(f) != 2 {
		return "", "", false
	}
	return f[0], f[1], true
}

// parseRoute checks one route and returns its ServeMux pattern.
func parseRoute(route string) (pattern string, err error) {
	if route == "" {
		return "", errors.New("required")
	}
	method, path, ok := splitRoute(route)
	if !ok {
		return "", fmt.Errorf("%q is not \"METHOD /path\"", route)
	}
	if !isToken(method) {
		return "", fmt.Errorf("method %q is not an HTTP method", method)
	}
	if method != strings.ToUpper(method) {
		return "", fmt.Errorf("method %q must be upper case (methods are case-sensitive)", method)
	}
	if !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("path %q must start with /", path)
	}
	for _, r := range reservedPaths {
		if path == r || strings.HasPrefix(path, r+"/") {
			return "", fmt.Errorf("path %q is reserved for tollgate (%s)", path, strings.Join(reservedPaths, ", "))
		}
	}
	pattern = method + " " + path
	if err := register(http.NewServeMux(), pattern); err != nil {
		msg := err.Error()
		// ServeMux says `parsing "POST /x/{": at offset 7: bad wildcard ...`.
		if rest, ok := strings.CutPrefix(msg, fmt.Sprintf("parsing %q: ", pattern)); ok {
			msg = rest
		}
		return "", fmt.Errorf("invalid pattern %q: %s", pattern, msg)
	}
	return pattern, nil
}

// isToken reports whether s is an HTTP token (RFC 9110 section 5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// register asks ServeMux whether it takes pattern: Handle panics on a bad
// or conflicting pattern, and recovering is the only way to ask.
func register(mux *http.ServeMux, pattern string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	mux.Handle(pattern, http.NotFoundHandler())
	return nil
}

// A route is one valid model route and where it was configured.
type route struct {
	field   string // "models[2].route"
	pattern string // "POST /v1/text"
}

// routeConflicts reports every route that repeats or conflicts with an
// earlier one or with one of tollgate's own, the way ServeMux would refuse
// it.
func routeConflicts(routes, reserved []route) []*fieldError {
	var errs []*fieldError
	mux := http.NewServeMux()
	var earlier []route
	for _, r := range reserved {
		if register(mux, r.pattern) == nil {
			earlier = append(earlier, r)
		}
	}
	seen := make(map[string]string, len(routes))
	for _, r := range routes {
		if other, dup := seen[r.pattern]; dup {
			errs = append(errs, &fieldError{r.field, fmt.Errorf("route %q is also %s", r.pattern, other)})
			continue
		}
		seen[r.pattern] = r.field
		if err := register(mux, r.pattern); err != nil {
			errs = append(errs, &fieldError{r.field, conflict(r, earlier, err)})
			continue
		}
		earlier = append(earlier, r)
	}
	return errs
}

// conflict finds which earlier route r conflicts with; mux's error is the
// answer when none is found alone.
func conflict(r route, earlier []route, muxErr error) error {
	for _, e := range earlier {
		mux := http.NewServeMux()
		mux.Handle(e.pattern, http.NotFoundHandler())
		err := register(mux, r.pattern)
		if err == nil {
			continue
		}
		// ServeMux explains after the first line, in up to four lines; the
		// first two say it all.
		why := err.Error()
		if _, rest, ok := strings.Cut(why, ":\n"); ok {
			lines := strings.SplitN(rest, "\n", 3)
			why = strings.Join(lines[:min(len(lines), 2)], " ")
		}
		return fmt.Errorf("route %q conflicts with %s %q: %s", r.pattern, e.field, e.pattern, why)
	}
	return fmt.Errorf("route %q: %v", r.pattern, muxErr)
}
